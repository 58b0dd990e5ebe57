package cluster

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
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
	// Secret, if not empty, is a secret every node's embedded server
	// shares: routes are accepted only from servers that present it (it
	// authenticates, it does not encrypt). "" accepts any route: keep
	// Listen on a private network then.
	Secret string
	// Client is an address for NATS clients (a monitoring tool, another
	// program), without authentication; "" means a random loopback port
	// with a random password: the node itself talks to its server
	// in-process.
	Client string
	// TLS, if not nil, encrypts the routes between the servers and
	// authenticates them by certificate (mutual TLS): its Certificates
	// hold this node's certificate, its RootCAs (or ClientCAs) the CAs
	// that sign every node's certificate; a server dials a peer at the
	// address in Peers and checks that the peer's certificate names it
	// (an IP address SAN for an address given as an IP). Every node
	// must use TLS, or none. nil means plain routes. See RouteTLS.
	TLS *tls.Config
}

// routeTLSTimeout bounds a route's TLS handshake, in seconds.
const routeTLSTimeout = 5

// RouteTLS returns a configuration for Embedded.TLS from PEM files: the
// node's certificate chain and key, and the CA certificates that sign
// every node's certificate.
func RouteTLS(certFile, keyFile, caFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("cluster: route certificate: %w", err)
	}
	pool, err := loadCA(caFile)
	if err != nil {
		return nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, ClientCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// loadCA reads PEM CA certificates from file.
func loadCA(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("cluster: CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("cluster: CA file %s holds no PEM certificate", file)
	}
	return pool, nil
}

// routeTLS completes c for routes, which are both servers and clients:
// client certificates required and verified, the same CAs both ways.
func routeTLS(c *tls.Config) (*tls.Config, error) {
	c = c.Clone()
	if len(c.Certificates) == 0 && c.GetCertificate == nil {
		return nil, errors.New("cluster: route TLS without a certificate")
	}
	if c.RootCAs == nil {
		c.RootCAs = c.ClientCAs
	}
	if c.ClientCAs == nil {
		c.ClientCAs = c.RootCAs
	}
	if c.RootCAs == nil {
		return nil, errors.New("cluster: route TLS without the CAs of the nodes' certificates")
	}
	c.ClientAuth = tls.RequireAndVerifyClientCert
	c.MinVersion = max(c.MinVersion, tls.VersionTLS12)
	return c, nil
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
		// port nobody is told of, with a random password.
		Host: "127.0.0.1",
		Port: server.RANDOM_PORT,
	}
	var auth []nats.Option
	if e.Client == "" {
		var b [16]byte
		rand.Read(b[:])
		opts.Username, opts.Password = "treff", hex.EncodeToString(b[:])
		auth = append(auth, nats.UserInfo(opts.Username, opts.Password))
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
		if e.TLS != nil {
			c, err := routeTLS(e.TLS)
			if err != nil {
				return nil, nil, err
			}
			opts.Cluster.TLSConfig, opts.Cluster.TLSTimeout = c, routeTLSTimeout
		}
		var user *url.Userinfo
		if e.Secret != "" {
			// The password is derived, so that the secret itself never
			// travels.
			sum := sha256.Sum256([]byte("treff cluster route\x00" + e.Secret))
			opts.Cluster.Username, opts.Cluster.Password = "treff-route", hex.EncodeToString(sum[:])
			user = url.UserPassword(opts.Cluster.Username, opts.Cluster.Password)
		}
		for _, p := range e.Peers {
			if p == e.Listen {
				continue
			}
			if _, _, err := splitAddr(p); err != nil {
				return nil, nil, fmt.Errorf("cluster: peer address %q: %w", p, err)
			}
			opts.Routes = append(opts.Routes, &url.URL{Scheme: "nats-route", Host: p, User: user})
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
	nc, err := nats.Connect("", append(auth, nats.InProcessServer(ns), nats.Name(e.Name), nats.MaxReconnects(-1))...)
	if err != nil {
		ns.Shutdown()
		return nil, nil, fmt.Errorf("cluster: nats: %w", err)
	}
	return ns, nc, nil
}

// Connect connects to an external NATS server or cluster (a URL such as
// nats://127.0.0.1:4222 or tls://nats.example:4222, or several separated
// by commas), reconnecting for ever when the connection breaks. opts add
// to the connection's options, e.g. nats.RootCAs for a NATS server
// whose certificate a private CA signs (see ConnectTLS).
func Connect(url, name string, opts ...nats.Option) (*nats.Conn, error) {
	nc, err := nats.Connect(url, append([]nats.Option{nats.Name(name), nats.MaxReconnects(-1), nats.ReconnectWait(250 * time.Millisecond), nats.RetryOnFailedConnect(false)}, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("cluster: nats %s: %w", url, err)
	}
	return nc, nil
}

// ConnectTLS returns the options for Connect that trust the CA
// certificates in caFile (for a tls:// URL) and, if certFile is not
// empty, present that client certificate (with keyFile) to a NATS server
// that asks for one. Either file may be "".
func ConnectTLS(certFile, keyFile, caFile string) ([]nats.Option, error) {
	var opts []nats.Option
	if caFile != "" {
		if _, err := loadCA(caFile); err != nil {
			return nil, err
		}
		opts = append(opts, nats.RootCAs(caFile))
	}
	if certFile != "" {
		if _, err := tls.LoadX509KeyPair(certFile, keyFile); err != nil {
			return nil, fmt.Errorf("cluster: client certificate: %w", err)
		}
		opts = append(opts, nats.ClientCert(certFile, keyFile))
	}
	return opts, nil
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
