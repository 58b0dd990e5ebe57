package s2s_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"log"
	"net"
	"time"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/auth"
	"github.com/treff-im/treff/im"
	"github.com/treff-im/treff/s2s"
	"github.com/treff-im/treff/storage/memstore"
	"github.com/treff-im/treff/trefftest"
)

// A server that federates: the module in Server.Modules routes stanzas
// for other domains, and its listener (port 5269 in a real deployment)
// accepts other servers' streams once the modules are set up.
func ExampleModule() {
	cert, err := trefftest.Certificate("example.org") // use a real one in production
	if err != nil {
		log.Fatal(err)
	}
	store := memstore.New()
	fed := &s2s.Module{} // system roots, dialback as the fallback
	srv := &treff.Server{
		Hosts:         []treff.Host{{Domain: "example.org", Certificates: []tls.Certificate{cert}}},
		Storage:       store,
		Authenticator: &auth.Store{Accounts: store},
		Modules:       append(im.Modules(), fed),
	}
	if err := srv.Setup(); err != nil {
		log.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0") // ":5269" for real
	if err != nil {
		log.Fatal(err)
	}
	done := make(chan error)
	go func() { done <- fed.Serve(l) }()

	// ... srv.Serve for clients; users now reach other servers ...

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(ctx) // stops the modules, and so the listener
	fmt.Println(<-done)
	// Output: s2s: stopped
}
