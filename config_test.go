package treff_test

import (
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/trefftest"
)

// TestNegativeLimitsRefused checks that Setup refuses negative limits
// that have no meaning, instead of (as before) a negative WriteTimeout
// making every write fail at once.
func TestNegativeLimitsRefused(t *testing.T) {
	for _, tc := range []struct {
		field string
		set   func(*treff.Server)
	}{
		{"NegotiationTimeout", func(s *treff.Server) { s.NegotiationTimeout = -time.Second }},
		{"WriteTimeout", func(s *treff.Server) { s.WriteTimeout = -1 }},
		{"MaxStanzaSize", func(s *treff.Server) { s.MaxStanzaSize = -1 }},
		{"MaxQueue", func(s *treff.Server) { s.MaxQueue = -1 }},
		{"MaxAuthFailures", func(s *treff.Server) { s.MaxAuthFailures = -1 }},
	} {
		srv := &treff.Server{Hosts: []treff.Host{{Domain: "localhost"}}}
		tc.set(srv)
		err := srv.Setup()
		if err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s negative: Setup = %v, want an error naming it", tc.field, err)
		}
	}
	// Negative means "never" where documented.
	srv := &treff.Server{Hosts: []treff.Host{{Domain: "localhost"}}, IdleTimeout: -1}
	if err := srv.Setup(); err != nil {
		t.Errorf("negative IdleTimeout: Setup = %v", err)
	}
}

func hostCert(t *testing.T, domain string) tls.Certificate {
	t.Helper()
	cert, err := trefftest.Certificate(domain)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// TestHostTLSLongestSuffix checks that a service domain gets the
// certificate of the most specific host it is under, every time (it
// depended on map order before), and that the certificate offered
// without SNI is always the first host's.
func TestHostTLSLongestSuffix(t *testing.T) {
	domains := []string{"example.org", "sub.example.org", "other.test"}
	var hosts []treff.Host
	for _, d := range domains {
		hosts = append(hosts, treff.Host{Domain: d, Certificates: []tls.Certificate{hostCert(t, d)}})
	}
	srv := &treff.Server{Hosts: hosts}
	if err := srv.Setup(); err != nil {
		t.Fatal(err)
	}
	leafName := func(cfg *tls.Config, sni string) string {
		t.Helper()
		if cfg == nil {
			return "<nil>"
		}
		var c *tls.Certificate
		var err error
		if cfg.GetCertificate != nil {
			c, err = cfg.GetCertificate(&tls.ClientHelloInfo{ServerName: sni})
		} else {
			c = &cfg.Certificates[0]
		}
		if err != nil {
			t.Fatal(err)
		}
		return c.Leaf.Subject.CommonName + strings.Join(c.Leaf.DNSNames, ",")
	}
	want := func(d string) string { return leafName(srv.HostTLS(d), d) }
	for range 50 { // map order varies between calls
		for domain, host := range map[string]string{
			"conference.sub.example.org": "sub.example.org",
			"a.b.sub.example.org":        "sub.example.org",
			"conference.example.org":     "example.org",
			"sub.example.org":            "sub.example.org",
			"upload.other.test":          "other.test",
		} {
			if got, w := leafName(srv.HostTLS(domain), domain), want(host); got != w {
				t.Fatalf("HostTLS(%q) has %q's certificate, want %q's", domain, got, host)
			}
		}
		if cfg := srv.HostTLS("example.com"); cfg != nil {
			t.Fatal("HostTLS(example.com) is not nil")
		}
		if cfg := srv.HostTLS("xample.org"); cfg != nil {
			t.Fatal("HostTLS(xample.org) is not nil")
		}
	}
	// Direct TLS: SNI picks the host, a service gets its host's, no or
	// unknown SNI gets the first host's.
	for range 50 {
		for sni, host := range map[string]string{
			"":                           "example.org",
			"unknown.test":               "example.org",
			"conference.sub.example.org": "sub.example.org",
			"other.test":                 "other.test",
		} {
			if got, w := directTLSCert(t, srv, sni), want(host); got != w {
				t.Fatalf("direct TLS with SNI %q: %q's certificate, want %q's", sni, got, host)
			}
		}
	}
}

func directTLSCert(t *testing.T, srv *treff.Server, sni string) string {
	t.Helper()
	c, err := treff.DirectTLSConfig(srv).GetCertificate(&tls.ClientHelloInfo{ServerName: sni})
	if err != nil {
		t.Fatal(err)
	}
	return c.Leaf.Subject.CommonName + strings.Join(c.Leaf.DNSNames, ",")
}
