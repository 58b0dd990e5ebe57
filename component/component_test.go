package component_test

import (
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"net"
	"regexp"
	"strings"
	"testing"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/component"
	"github.com/treff-im/treff/disco"
	"github.com/treff-im/treff/trefftest"
)

const (
	compDomain  = "irc.localhost"
	compSecret  = "s3cret <&>"
	otherDomain = "bot.localhost"
	otherSecret = "other"
)

// env is a test server with the component module listening on its own
// loopback port.
type env struct {
	*trefftest.Server
	m    *component.Module
	addr string
}

func newEnv(t *testing.T, configure ...func(*treff.Server, *component.Module)) *env {
	t.Helper()
	m := &component.Module{
		Components: map[string]string{compDomain: compSecret, otherDomain: otherSecret},
		Names:      map[string]string{compDomain: "IRC gateway"},
	}
	ts := trefftest.NewServer(t, func(s *treff.Server) {
		s.Modules = append(s.Modules, &disco.Module{}, m)
		for _, f := range configure {
			f(s, m)
		}
	})
	if err := ts.Setup(); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- m.Serve(l) }()
	t.Cleanup(func() {
		// trefftest's clean-up (registered before, so run after this
		// one) stops the server; Stop ends Serve.
		go func() {
			if err := <-served; !errors.Is(err, component.ErrStopped) {
				t.Errorf("Serve: %v", err)
			}
		}()
	})
	ts.AddUser(t, "alice", "alice-pw")
	ts.AddUser(t, "bob", "bob-pw")
	return &env{Server: ts, m: m, addr: l.Addr().String()}
}

var idRE = regexp.MustCompile(`\bid='([^']+)'`)

// open connects a component to domain and returns its client after the
// server's header, and the stream ID.
func (e *env) open(t *testing.T, header string) (*trefftest.Client, string) {
	t.Helper()
	nc, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	c := trefftest.NewClient(t, nc, "", nil)
	c.Send(header)
	hdr := c.Expect(`<stream:stream [^>]*>`)
	if !strings.Contains(hdr, "xmlns='jabber:component:accept'") {
		t.Errorf("server header %q is not in jabber:component:accept", hdr)
	}
	m := idRE.FindStringSubmatch(hdr)
	if m == nil {
		t.Fatalf("no stream id in %q", hdr)
	}
	return c, m[1]
}

func componentHeader(to string) string {
	return "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='" + to + "'>"
}

func handshake(id, secret string) string {
	sum := sha1.Sum([]byte(id + secret))
	return "<handshake>" + hex.EncodeToString(sum[:]) + "</handshake>"
}

// connect opens an authenticated component stream for domain.
func (e *env) connect(t *testing.T, domain, secret string) *trefftest.Client {
	t.Helper()
	c, id := e.open(t, componentHeader(domain))
	c.Send(handshake(id, secret))
	c.Expect(`<handshake/>`)
	return c
}

// expectStreamError waits for the stream error cond and the closing of
// the connection.
func expectStreamError(t *testing.T, c *trefftest.Client, cond string) {
	t.Helper()
	c.Expect(`<stream:error><` + cond + ` xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>(?:<text[^>]*>[^<]*</text>)?</stream:error></stream:stream>`)
	c.ExpectClosed()
}

func TestHandshake(t *testing.T) {
	e := newEnv(t)
	t.Run("OK", func(t *testing.T) {
		c, id := e.open(t, componentHeader(compDomain))
		c.Send(handshake(id, compSecret))
		c.Expect(`<handshake/>`)
		if !e.m.Connected(compDomain) {
			t.Error("Connected = false after the handshake")
		}
		c.Send("</stream:stream>")
		c.Expect(`</stream:stream>`)
		c.ExpectClosed()
	})
	t.Run("WrongSecret", func(t *testing.T) {
		c, id := e.open(t, componentHeader(compDomain))
		c.Send(handshake(id, "wrong"))
		expectStreamError(t, c, "not-authorized")
	})
	t.Run("SecretOfAnotherStream", func(t *testing.T) {
		c, _ := e.open(t, componentHeader(compDomain))
		c.Send(handshake("some-other-id", compSecret))
		expectStreamError(t, c, "not-authorized")
	})
	t.Run("NoHandshake", func(t *testing.T) {
		c, _ := e.open(t, componentHeader(compDomain))
		c.Send("<message to='alice@localhost' from='irc.localhost'><body>hi</body></message>")
		expectStreamError(t, c, "not-authorized")
	})
	t.Run("UnknownDomain", func(t *testing.T) {
		c, _ := e.open(t, componentHeader("unknown.localhost"))
		expectStreamError(t, c, "host-unknown")
	})
	t.Run("HostDomain", func(t *testing.T) {
		c, _ := e.open(t, componentHeader("localhost"))
		expectStreamError(t, c, "host-unknown")
	})
	t.Run("NoTo", func(t *testing.T) {
		c, _ := e.open(t, "<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams'>")
		expectStreamError(t, c, "improper-addressing")
	})
	t.Run("ClientNamespace", func(t *testing.T) {
		c, _ := e.open(t, "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='"+compDomain+"'>")
		expectStreamError(t, c, "invalid-namespace")
	})
}

// TestConflict: a second stream for a connected domain is refused with
// <conflict/>, and the first keeps the domain's traffic.
func TestConflict(t *testing.T) {
	e := newEnv(t)
	first := e.connect(t, compDomain, compSecret)
	second, id := e.open(t, componentHeader(compDomain))
	second.Send(handshake(id, compSecret))
	expectStreamError(t, second, "conflict")

	alice := e.Login(t, "alice", "alice-pw", "phone")
	alice.Send("<message to='#chan@irc.localhost' type='groupchat' id='m1'><body>after the conflict</body></message>")
	first.Expect(`<message [^>]*from='alice@localhost/phone'[^>]*>(?s:.*)after the conflict`)

	// Once the first is gone, the domain is free again.
	first.Send("</stream:stream>")
	first.ExpectClosed()
	e.connect(t, compDomain, compSecret)
}

