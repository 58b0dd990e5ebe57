package trefftest_test

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"testing"

	"github.com/treff-im/treff/trefftest"
)

// A client that trusts the certificate's Leaf connects by name and by
// loopback address; one that does not trust it fails.
func TestCertificate(t *testing.T) {
	if _, err := trefftest.Certificate(); err == nil {
		t.Error("a certificate without a name")
	}
	cert, err := trefftest.Certificate("example.org", "conference.example.org")
	if err != nil {
		t.Fatal(err)
	}
	if got := cert.Leaf.DNSNames; len(got) != 2 || got[0] != "example.org" || got[1] != "conference.example.org" {
		t.Errorf("DNS names %v", got)
	}
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				c.(*tls.Conn).Handshake()
				io.WriteString(c, "ok")
				c.Close()
			}()
		}
	}()
	roots := x509.NewCertPool()
	roots.AddCert(cert.Leaf)
	for _, name := range []string{"example.org", "conference.example.org", "127.0.0.1"} {
		c, err := tls.Dial("tcp", l.Addr().String(), &tls.Config{RootCAs: roots, ServerName: name})
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		c.Close()
	}
	if c, err := tls.Dial("tcp", l.Addr().String(), &tls.Config{RootCAs: roots, ServerName: "other.example"}); err == nil {
		c.Close()
		t.Error("certificate accepted for a name it does not have")
	}
	if c, err := tls.Dial("tcp", l.Addr().String(), &tls.Config{ServerName: "example.org"}); err == nil {
		c.Close()
		t.Error("self-signed certificate accepted without trusting it")
	}
}
