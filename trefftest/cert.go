package trefftest

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"

	"github.com/treff-im/treff/internal/certs"
)

// Certificate returns a fresh self-signed certificate (ECDSA P-256) for
// tests and local use: valid for ten years for the DNS names in hosts
// (at least one) and for 127.0.0.1 and ::1. It is its own CA, so a client
// trusts it by adding Leaf to its roots:
//
//	cert, err := trefftest.Certificate("example.org")
//	...
//	roots := x509.NewCertPool()
//	roots.AddCert(cert.Leaf)
//
// Never serve it to clients that are not yours: it proves nothing.
func Certificate(hosts ...string) (tls.Certificate, error) {
	certPEM, keyPEM, err := certs.SelfSigned(hosts...)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("trefftest: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("trefftest: %w", err)
	}
	if cert.Leaf == nil { // X509KeyPair sets it since Go 1.23
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return tls.Certificate{}, fmt.Errorf("trefftest: %w", err)
		}
	}
	return cert, nil
}
