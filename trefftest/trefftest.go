// Package trefftest starts a Treff server for tests, in the spirit of
// net/http/httptest: an in-memory store, the default authenticator, a fresh
// self-signed certificate, and listeners on 127.0.0.1 for STARTTLS and
// direct TLS. Plugin authors use it to test their modules against a real
// server.
package trefftest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/auth"
	"github.com/treff-im/treff/bind2"
	"github.com/treff-im/treff/sasl2"
	"github.com/treff-im/treff/sm"
	"github.com/treff-im/treff/storage"
	"github.com/treff-im/treff/storage/memstore"
)

// Server is a running test server.
type Server struct {
	// Server is the server; its fields may be read but not changed.
	*treff.Server
	// Domain is the served host ("localhost" unless configured otherwise).
	Domain string
	// Addr is the STARTTLS listener's address (host:port).
	Addr string
	// TLSAddr is the direct TLS listener's address.
	TLSAddr string
	// CertFile is a PEM file with the server's self-signed certificate,
	// for clients that need to trust it.
	CertFile string
	// Roots is a pool holding the server's certificate.
	Roots *x509.CertPool
	// Store is the server's in-memory store.
	Store storage.Store
	// Auth is the server's authenticator.
	Auth *auth.Store
}

// NewServer starts a server for domain "localhost" and stops it when the
// test ends. configure, if not nil, may change the server (add modules, set
// limits) before it starts; Hosts, Storage and Authenticator are preset.
// Stream management (package sm), which every client expects, is added
// unless configure put an *sm.Module in Modules; so is SASL2 (package
// sasl2, XEP-0388) with stream management's resumption and Bind 2
// (package bind2, XEP-0386) inline, unless configure put a *sasl2.Module
// in Modules. Bind 2's inline features are the modules in Modules that
// implement bind2.Feature (carbons, csi, sm).
func NewServer(tb testing.TB, configure func(*treff.Server)) *Server {
	tb.Helper()
	domain := "localhost"
	cert, err := Certificate(domain)
	if err != nil {
		tb.Fatal(err)
	}
	certFile := filepath.Join(tb.TempDir(), "cert.pem")
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})
	if err := os.WriteFile(certFile, certPEM, 0o644); err != nil {
		tb.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert.Leaf)
	store := memstore.New()
	a := &auth.Store{Accounts: store}
	srv := &treff.Server{
		Hosts:         []treff.Host{{Domain: domain, Certificates: []tls.Certificate{cert}}},
		Storage:       store,
		Authenticator: a,
	}
	if configure != nil {
		configure(srv)
	}
	var stream *sm.Module
	var features []bind2.Feature
	hasSASL2 := false
	for _, m := range srv.Modules {
		switch m := m.(type) {
		case *sm.Module:
			stream = m
		case *sasl2.Module:
			hasSASL2 = true
		}
	}
	if stream == nil {
		stream = &sm.Module{}
		srv.Modules = append(srv.Modules, stream)
	}
	if !hasSASL2 {
		// Bind 2's inline features: the modules that offer one (carbons,
		// client state indication, stream management).
		for _, m := range srv.Modules {
			if f, ok := m.(bind2.Feature); ok {
				features = append(features, f)
			}
		}
		srv.Modules = append(srv.Modules, &sasl2.Module{Inline: []sasl2.Inline{stream, &bind2.Module{Features: features}}})
	}
	l1, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	l2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	ts := &Server{Server: srv, Domain: domain, Addr: l1.Addr().String(), TLSAddr: l2.Addr().String(),
		CertFile: certFile, Roots: roots, Store: store, Auth: a}
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(l1) }()
	go func() { errc <- srv.ServeTLS(l2) }()
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			tb.Errorf("trefftest: shutdown: %v", err)
		}
		for i := 0; i < 2; i++ {
			if err := <-errc; err != treff.ErrServerClosed {
				tb.Errorf("trefftest: serve: %v", err)
			}
		}
		store.Close()
	})
	return ts
}

// AddUser creates the account local@Domain with the given password and
// returns its bare JID as a string.
func (s *Server) AddUser(tb testing.TB, local, password string) string {
	tb.Helper()
	user := local + "@" + s.Domain
	if err := s.Auth.CreateUser(context.Background(), user, password); err != nil {
		tb.Fatal(err)
	}
	return user
}

// TLSConfig returns a client TLS configuration that trusts the server.
func (s *Server) TLSConfig() *tls.Config {
	return &tls.Config{RootCAs: s.Roots, ServerName: s.Domain, MinVersion: tls.VersionTLS12}
}
