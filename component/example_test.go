package component_test

import (
	"log"
	"net"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/component"
)

// A server that accepts biboumi (or any XEP-0114 component) for
// irc.example.org on the loopback port components usually use.
func ExampleModule() {
	comps := &component.Module{
		Components: map[string]string{"irc.example.org": "a long random secret"},
		Names:      map[string]string{"irc.example.org": "IRC gateway"},
	}
	srv := &treff.Server{
		Hosts:   []treff.Host{{Domain: "example.org"}},
		Modules: []treff.Module{comps},
	}
	if err := srv.Setup(); err != nil {
		log.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:5347")
	if err != nil {
		log.Fatal(err)
	}
	go comps.Serve(l) // returns component.ErrStopped after srv.Shutdown
	// ... and serve clients with srv.ListenAndServe.
}
