package pep_test

import (
	"context"
	"fmt"
	"log"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/pep"
	"github.com/treff-im/treff/storage/memstore"
)

// A server with PEP for its accounts and a publish-subscribe service on
// pubsub.example.org where only the admin creates nodes; the server
// itself feeds a real-time block list node that other servers subscribe
// to.
func ExampleService() {
	ps := &pep.Service{Creators: []string{"admin@example.org"}}
	srv := &treff.Server{
		Hosts:   []treff.Host{{Domain: "example.org"}},
		Storage: memstore.New(), // keeps nodes, items and subscriptions
		Modules: []treff.Module{&pep.Module{}, ps},
	}
	if err := srv.Setup(); err != nil {
		log.Fatal(err)
	}
	// Item IDs name the blocked domains; subscribers get each as a
	// notification from pubsub.example.org.
	id, err := ps.Publish(context.Background(), jid.MustParse("pubsub.example.org"), "muc_bans_sha256",
		"spam.example", []byte("<report xmlns='urn:xmpp:reporting:1' reason='urn:xmpp:reporting:spam'/>"))
	if err != nil {
		log.Fatal(err)
	}
	// ... and serve clients and servers with srv.ListenAndServe.
	fmt.Println("published", id)
	// Output: published spam.example
}
