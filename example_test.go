package treff_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"log"
	"net"
	"time"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/auth"
	"github.com/treff-im/treff/stanza"
	"github.com/treff-im/treff/storage/memstore"
	"github.com/treff-im/treff/trefftest"
)

// selfSigned returns a throw-away certificate for the examples; a real
// server loads its own (tls.LoadX509KeyPair).
func selfSigned(domain string) tls.Certificate {
	cert, err := trefftest.Certificate(domain)
	if err != nil {
		log.Fatal(err)
	}
	return cert
}

// A server for one domain with an in-memory account store, serving
// STARTTLS on a loopback port and shutting down gracefully.
func ExampleServer() {
	store := memstore.New()
	accounts := &auth.Store{Accounts: store}
	if err := accounts.CreateUser(context.Background(), "alice@example.org", "correct horse"); err != nil {
		log.Fatal(err)
	}
	srv := &treff.Server{
		Hosts:         []treff.Host{{Domain: "example.org", Certificates: []tls.Certificate{selfSigned("example.org")}}},
		Storage:       store,
		Authenticator: accounts,
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	done := make(chan error)
	go func() { done <- srv.Serve(l) }()

	// ... clients connect to l.Addr() ...

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println(<-done)
	// Output: treff: server closed
}

// pingModule answers XEP-0199 pings addressed to the server.
type pingModule struct{}

func (pingModule) Name() string { return "ping" }

func (pingModule) Setup(ctx context.Context, r *treff.Registry) error {
	r.HandleIQ("urn:xmpp:ping", treff.IQHandlerFunc(func(ctx context.Context, iq *treff.Stanza) ([]byte, error) {
		return nil, nil // an empty result is the pong
	}))
	r.AddFeature("urn:xmpp:ping")
	return nil
}

// A module registers its handlers on the Registry during Setup.
func ExampleModule() {
	srv := &treff.Server{
		Hosts:   []treff.Host{{Domain: "example.org", Certificates: []tls.Certificate{selfSigned("example.org")}}},
		Modules: []treff.Module{pingModule{}},
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go srv.Serve(l)
	defer srv.Close()
	fmt.Println(srv.Features(false))
	// Output: [urn:xmpp:ping]
}

// Build an error reply for a stanza.
func ExampleAppendError() {
	st, err := treff.NewStanza([]byte("<iq type='get' id='1' from='alice@example.org/phone' to='example.org'><query xmlns='urn:example'/></iq>"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(treff.AppendError(nil, st, stanza.ServiceUnavailable)))
	// Output: <iq type='error' id='1' to='alice@example.org/phone' from='example.org'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>
}
