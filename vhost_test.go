package treff_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"
	"time"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/auth"
	"github.com/treff-im/treff/storage/memstore"
	"github.com/treff-im/treff/trefftest"
)

// Each virtual host presents its own certificate: chosen by the stream's
// 'to' for STARTTLS and by SNI for direct TLS. Users of both hosts talk to
// each other locally.
func TestVirtualHosts(t *testing.T) {
	pool := x509.NewCertPool()
	var hosts []treff.Host
	for _, d := range []string{"a.test", "b.test"} {
		cert, err := trefftest.Certificate(d)
		if err != nil {
			t.Fatal(err)
		}
		pool.AddCert(cert.Leaf)
		hosts = append(hosts, treff.Host{Domain: d, Certificates: []tls.Certificate{cert}})
	}
	store := memstore.New()
	a := &auth.Store{Accounts: store}
	ctx := context.Background()
	a.CreateUser(ctx, "alice@a.test", "pw")
	a.CreateUser(ctx, "bob@b.test", "pw")
	srv := &treff.Server{Hosts: hosts, Storage: store, Authenticator: a}
	l1, _ := net.Listen("tcp", "127.0.0.1:0")
	l2, _ := net.Listen("tcp", "127.0.0.1:0")
	go srv.Serve(l1)
	go srv.ServeTLS(l2)
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}()

	login := func(domain, user string, direct bool) *raw {
		cfg := &tls.Config{RootCAs: pool, ServerName: domain}
		var r *raw
		if direct {
			c, err := tls.Dial("tcp", l2.Addr().String(), cfg)
			if err != nil {
				t.Fatalf("direct TLS to %s: %v", domain, err)
			}
			r = trefftest.NewClient(t, c, domain, cfg)
			t.Cleanup(func() { c.Close() })
		} else {
			c, err := net.Dial("tcp", l1.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			r = trefftest.NewClient(t, c, domain, cfg)
			r.StartTLS()
		}
		r.Send(header(domain))
		r.Expect(`</stream:features>`)
		r.Send(plainAuth(user, "pw"))
		r.Expect(`<success`)
		r.Send(header(domain))
		r.Expect(`</stream:features>`)
		r.Send("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>r</resource></bind></iq>")
		r.Expect(`</iq>`)
		return r
	}
	alice := login("a.test", "alice", false)
	bob := login("b.test", "bob", true)
	bob.Send("<presence/>")
	syncServer(bob)
	alice.Send("<message to='bob@b.test' id='x'><body>hi</body></message>")
	bob.Expect(`<message from='alice@a.test/r' to='bob@b.test' id='x'>`)
	// alice cannot log in on the other host.
	c, _ := net.Dial("tcp", l1.Addr().String())
	defer c.Close()
	r := trefftest.NewClient(t, c, "b.test", &tls.Config{RootCAs: pool, ServerName: "b.test"})
	r.StartTLS()
	r.Send(header("b.test"))
	r.Expect(`</stream:features>`)
	r.Send(plainAuth("alice", "pw"))
	r.Expect(`<not-authorized/>`)
}
