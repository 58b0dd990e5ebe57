package cluster

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Embedded configures a NATS server that runs inside the node's process,
// for a cluster without an external NATS: each node runs one, and the
// servers form a NATS cluster through their routes.
type Embedded struct {
	// Name is the NATS server's name, unique in the NATS cluster (the
	// node's name).
	Name string
	// Listen is the address ("host:port") the server accepts routes from
	// the other nodes' servers on. "" means none: a single node, or one
	// that only dials its Peers.
	Listen string
	// Peers are the other nodes' Listen addresses. The servers dial each
	// other and retry until the peer is up; a node may list all nodes,
	// itself included.
	Peers []string
	// Client is an address for NATS clients (a monitoring tool, another
	// program); "" means a random loopback port: the node itself talks to
	// its server in-process.
	Client string
}

// Start starts the server and returns it with an in-process connection
// to it. Stop both with conn.Close and srv.Shutdown.
func (e Embedded) Start() (*server.Server, *nats.Conn, error) {
	opts := &server.Options{
		ServerName: e.Name,
		NoSigs:     true,
		NoLog:      true,
		// The route listener starts only after the client listener (with
		// DontListen it never would): without Client, a random loopback
		// port nobody is told of.
		Host: "127.0.0.1",
		Port: server.RANDOM_PORT,
	}
	if e.Client != "" {
		host, port, err := splitAddr(e.Client)
		if err != nil {
			return nil, nil, fmt.Errorf("cluster: client address: %w", err)
		}
		opts.Host, opts.Port = host, port
	}
	if e.Listen != "" || len(e.Peers) > 0 {
		opts.Cluster.Name = "treff"
		if e.Listen != "" {
			host, port, err := splitAddr(e.Listen)
			if err != nil {
				return nil, nil, fmt.Errorf("cluster: listen address: %w", err)
			}
			opts.Cluster.Host, opts.Cluster.Port = host, port
		} else {
			opts.Cluster.Host, opts.Cluster.Port = "127.0.0.1", -1 // random, unused
		}
		opts.Cluster.NoAdvertise = true
		for _, p := range e.Peers {
			if p == e.Listen {
				continue
			}
			if _, _, err := splitAddr(p); err != nil {
				return nil, nil, fmt.Errorf("cluster: peer address %q: %w", p, err)
			}
			opts.Routes = append(opts.Routes, &url.URL{Scheme: "nats-route", Host: p})
		}
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster: nats server: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, nil, errors.New("cluster: nats server did not start")
	}
	nc, err := nats.Connect("", nats.InProcessServer(ns), nats.Name(e.Name), nats.MaxReconnects(-1))
	if err != nil {
		ns.Shutdown()
		return nil, nil, fmt.Errorf("cluster: nats: %w", err)
	}
	return ns, nc, nil
}

// Connect connects to an external NATS server or cluster (a URL such as
// nats://127.0.0.1:4222, or several separated by commas), reconnecting
// for ever when the connection breaks.
func Connect(url, name string) (*nats.Conn, error) {
	nc, err := nats.Connect(url, nats.Name(name), nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond), nats.RetryOnFailedConnect(false))
	if err != nil {
		return nil, fmt.Errorf("cluster: nats %s: %w", url, err)
	}
	return nc, nil
}

func splitAddr(a string) (string, int, error) {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return "", 0, err
	}
	p, err := strconv.Atoi(port)
	if err != nil || p <= 0 || p > 65535 {
		return "", 0, fmt.Errorf("bad port in %q", a)
	}
	return host, p, nil
}
