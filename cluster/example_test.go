package cluster_test

import (
	"context"
	"log"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/cluster"
)

// A node of a three-node cluster with embedded NATS servers routed to
// each other. Every node uses the same store (PostgreSQL, say) and runs
// the same code with its own name and address.
func ExampleNode() {
	ns, nc, err := cluster.Embedded{
		Name:   "node1",
		Listen: "127.0.0.1:6222",
		Peers:  []string{"127.0.0.1:6222", "127.0.0.2:6222", "127.0.0.3:6222"},
	}.Start()
	if err != nil {
		log.Fatal(err)
	}
	defer ns.Shutdown()
	defer nc.Close()

	srv := &treff.Server{ /* Hosts, a shared Storage, Authenticator, Modules */ }
	node := &cluster.Node{Name: "node1", Conn: nc}
	if err := node.Join(srv); err != nil { // sets srv.Table
		log.Fatal(err)
	}
	go srv.ListenAndServe()

	// ... until it is time to stop:
	srv.Shutdown(context.Background())
	node.Leave()
}
