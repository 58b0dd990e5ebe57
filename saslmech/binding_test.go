package saslmech_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/treff-im/treff/saslmech"
)

// TestDowngradeHash checks XEP-0474's own example (version 0.5.0): the
// SHA-1 hash of "SCRAM-SHA-1\x1eSCRAM-SHA-1-PLUS\x1ftls-exporter\x1etls-server-end-point",
// whatever the order offered.
func TestDowngradeHash(t *testing.T) {
	s := &saslmech.Stream{
		Mechanisms:      []string{"SCRAM-SHA-1-PLUS", "SCRAM-SHA-1"},
		ChannelBindings: []string{"tls-server-end-point", "tls-exporter"},
	}
	if got, want := s.DowngradeHash(sha1.New), "G6k/rBLDqgOhRRaCuuatSDFkJ08="; got != want {
		t.Errorf("DowngradeHash = %s, want %s (the XEP's example)", got, want)
	}
	// Without XEP-0440 no 0x1F is hashed.
	s = &saslmech.Stream{Mechanisms: []string{"SCRAM-SHA-256", "PLAIN"}}
	sum := sha256.Sum256([]byte("PLAIN\x1eSCRAM-SHA-256"))
	if got, want := s.DowngradeHash(sha256.New), b64(sum[:]); got != want {
		t.Errorf("without XEP-0440: %s, want %s", got, want)
	}
	if s.PlusOffered() {
		t.Error("PlusOffered without a -PLUS mechanism")
	}
	s.Mechanisms = append(s.Mechanisms, "SCRAM-SHA-256-PLUS")
	if !s.PlusOffered() {
		t.Error("PlusOffered false with SCRAM-SHA-256-PLUS")
	}
}

// certificate makes a self-signed certificate with key and signature
// algorithm alg.
func certificate(t *testing.T, key crypto.Signer, alg x509.SignatureAlgorithm) tls.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber:       big.NewInt(1),
		Subject:            pkix.Name{CommonName: "example.org"},
		DNSNames:           []string{"example.org"},
		NotBefore:          time.Now().Add(-time.Hour),
		NotAfter:           time.Now().Add(time.Hour),
		SignatureAlgorithm: alg,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// handshake connects a TLS client and server over a pipe with version
// and returns both states.
func handshake(t *testing.T, cert tls.Certificate, version uint16) (srv, cli tls.ConnectionState) {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	sc := tls.Server(a, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: version, MaxVersion: version})
	cc := tls.Client(b, &tls.Config{InsecureSkipVerify: true, MinVersion: version, MaxVersion: version})
	errc := make(chan error, 1)
	go func() { errc <- sc.Handshake() }()
	if err := cc.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	return sc.ConnectionState(), cc.ConnectionState()
}

// TestChannelBinding computes each type on real TLS 1.2 and 1.3
// handshakes and compares with what the client side computes from its
// own state, as a client does.
func TestChannelBinding(t *testing.T) {
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	for _, tc := range []struct {
		name    string
		key     crypto.Signer
		alg     x509.SignatureAlgorithm
		version uint16
		sum     func([]byte) []byte // nil: no tls-server-end-point
	}{
		{"ECDSA-SHA256/TLS1.3", p256, x509.ECDSAWithSHA256, tls.VersionTLS13, func(b []byte) []byte { s := sha256.Sum256(b); return s[:] }},
		{"ECDSA-SHA256/TLS1.2", p256, x509.ECDSAWithSHA256, tls.VersionTLS12, func(b []byte) []byte { s := sha256.Sum256(b); return s[:] }},
		{"ECDSA-SHA1/TLS1.3", p256, x509.ECDSAWithSHA1, tls.VersionTLS13, func(b []byte) []byte { s := sha256.Sum256(b); return s[:] }},
		{"ECDSA-SHA384/TLS1.3", p384, x509.ECDSAWithSHA384, tls.VersionTLS13, func(b []byte) []byte { s := sha512.Sum384(b); return s[:] }},
		{"Ed25519/TLS1.3", ed, x509.PureEd25519, tls.VersionTLS13, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.alg == x509.ECDSAWithSHA1 {
				t.Setenv("GODEBUG", "x509sha1=1")
			}
			cert := certificate(t, tc.key, tc.alg)
			if cert.Leaf.SignatureAlgorithm != tc.alg {
				t.Fatalf("certificate signed with %v, want %v", cert.Leaf.SignatureAlgorithm, tc.alg)
			}
			srvState, cliState := handshake(t, cert, tc.version)
			s := &saslmech.Stream{TLS: &srvState, Certificate: cert.Leaf}

			exp, err := s.ChannelBinding(saslmech.TLSExporter)
			if tc.version == tls.VersionTLS13 {
				want, _ := cliState.ExportKeyingMaterial("EXPORTER-Channel-Binding", nil, 32)
				if err != nil || len(exp) != 32 || !bytes.Equal(exp, want) {
					t.Errorf("tls-exporter = %x, %v; the client computes %x", exp, err, want)
				}
			} else if !errors.Is(err, saslmech.ErrNoChannelBinding) {
				t.Errorf("tls-exporter on TLS 1.2 = %x, %v; want ErrNoChannelBinding", exp, err)
			}

			ep, err := s.ChannelBinding(saslmech.TLSServerEndPoint)
			if tc.sum == nil {
				if !errors.Is(err, saslmech.ErrNoChannelBinding) {
					t.Errorf("tls-server-end-point for %v = %x, %v; want ErrNoChannelBinding", tc.alg, ep, err)
				}
			} else if want := tc.sum(cliState.PeerCertificates[0].Raw); err != nil || !bytes.Equal(ep, want) {
				t.Errorf("tls-server-end-point = %x, %v; want %x", ep, err, want)
			}
		})
	}
	if _, err := (&saslmech.Stream{}).ChannelBinding(saslmech.TLSExporter); !errors.Is(err, saslmech.ErrNoChannelBinding) {
		t.Errorf("without TLS: %v", err)
	}
	srvState, _ := handshake(t, certificate(t, p256, x509.ECDSAWithSHA256), tls.VersionTLS13)
	for _, typ := range []string{"tls-unique", ""} {
		if _, err := (&saslmech.Stream{TLS: &srvState}).ChannelBinding(typ); !errors.Is(err, saslmech.ErrNoChannelBinding) {
			t.Errorf("%q: %v", typ, err)
		}
	}
	if _, err := (&saslmech.Stream{TLS: &srvState}).ChannelBinding(saslmech.TLSServerEndPoint); !errors.Is(err, saslmech.ErrNoChannelBinding) {
		t.Errorf("tls-server-end-point without the certificate: %v", err)
	}
}

// BenchmarkStreamBinding is what a stream's SASL offer and a -PLUS
// exchange compute besides SCRAM itself: both binding types (the offer
// checks which are available; the exchange computes one again) and the
// XEP-0474 hash.
func BenchmarkStreamBinding(b *testing.B) {
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	t := &testing.T{}
	cert := certificate(t, p256, x509.ECDSAWithSHA256)
	srvState, _ := handshake(t, cert, tls.VersionTLS13)
	s := &saslmech.Stream{TLS: &srvState, Certificate: cert.Leaf,
		Mechanisms:      []string{"SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"},
		ChannelBindings: []string{saslmech.TLSExporter, saslmech.TLSServerEndPoint}}
	b.ReportAllocs()
	for range b.N {
		for _, typ := range s.ChannelBindings {
			if _, err := s.ChannelBinding(typ); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := s.ChannelBinding(saslmech.TLSExporter); err != nil {
			b.Fatal(err)
		}
		s.DowngradeHash(sha256.New)
	}
}
