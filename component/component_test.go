package component_test

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

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

// TestRouting: stanzas to the component's domain and its JIDs reach its
// stream as sent (with the sender's address stamped); the component's
// stanzas reach local users, and its answers to disco#info reach the
// asker.
func TestRouting(t *testing.T) {
	e := newEnv(t)
	comp := e.connect(t, compDomain, compSecret)
	alice := e.Login(t, "alice", "alice-pw", "phone")

	alice.Send("<message to='#treff%irc.example.org@irc.localhost/nick' type='chat' id='m1'><body>to IRC &lt;&amp;&gt;</body></message>")
	comp.Expect(regexp.QuoteMeta(`<message from='alice@localhost/phone' to='#treff%irc.example.org@irc.localhost/nick' type='chat' id='m1'><body>to IRC &lt;&amp;&gt;</body></message>`))

	comp.Send("<message from='#treff%irc.example.org@irc.localhost/nick' to='alice@localhost/phone' type='chat' id='r1'><body>from IRC</body></message>")
	alice.Expect(`<message [^>]*from='#treff%irc.example.org@irc.localhost/nick'[^>]*>(?s:.*?)from IRC</body></message>`)

	// disco#info of the domain goes to the component, and its answer
	// back to the asker.
	alice.Send("<iq type='get' to='irc.localhost' id='info1'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
	comp.Expect(regexp.QuoteMeta(`<iq from='alice@localhost/phone' type='get' to='irc.localhost' id='info1'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`))
	comp.Send("<iq type='result' from='irc.localhost' to='alice@localhost/phone' id='info1'><query xmlns='http://jabber.org/protocol/disco#info'><identity category='conference' type='irc' name='IRC'/></query></iq>")
	alice.Expect(`<iq [^>]*id='info1'[^>]*>(?s:.*?)<identity category='conference' type='irc' name='IRC'/>`)

	// An explicit namespace on the component's stanza is dropped, so
	// that the user's stream gets it in jabber:client.
	comp.Send("<message xmlns='jabber:component:accept' from='irc.localhost' to='alice@localhost/phone' id='r2'><body>ns</body></message>")
	got := alice.Expect(`<message [^>]*id='r2'[^>]*>`)
	if strings.Contains(got, "jabber:component:accept") {
		t.Errorf("alice got %q with the component namespace", got)
	}

	// To an account that does not exist: the error goes back to the
	// component.
	comp.Send("<message from='bot@irc.localhost' to='nobody@localhost' type='chat' id='r3'><body>x</body></message>")
	comp.Expect(`<message type='error' id='r3' to='bot@irc.localhost' from='nobody@localhost'>(?s:.*?)<service-unavailable `)

	// To another component.
	other := e.connect(t, otherDomain, otherSecret)
	comp.Send("<message from='gw@irc.localhost' to='bot@bot.localhost' id='r4'><body>between components</body></message>")
	other.Expect(regexp.QuoteMeta(`<message from='gw@irc.localhost' to='bot@bot.localhost' id='r4'><body>between components</body></message>`))

	// disco#items of the host lists both domains, with their names.
	alice.Send("<iq type='get' to='localhost' id='items1'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>")
	items := alice.Expect(`<iq [^>]*id='items1'[^>]*>(?s:.*?)</iq>`)
	for _, want := range []string{`<item jid='irc.localhost' name='IRC gateway'/>`, `<item jid='bot.localhost'/>`} {
		if !strings.Contains(items, want) {
			t.Errorf("disco#items: %s\nwant %s in it", items, want)
		}
	}
}

// TestFromChecked: a stanza from another domain, or without 'from' or
// 'to', closes the stream with the RFC 6120 condition, and reaches nobody.
func TestFromChecked(t *testing.T) {
	e := newEnv(t)
	alice := e.Login(t, "alice", "alice-pw", "phone")
	for _, c := range []struct {
		name, stanza, cond string
	}{
		{"AnotherHost", "<message from='admin@localhost' to='alice@localhost' id='s1'><body>spoofed</body></message>", "invalid-from"},
		{"AnotherComponent", "<message from='bot.localhost' to='alice@localhost' id='s2'><body>spoofed</body></message>", "invalid-from"},
		{"Subdomain", "<message from='x.irc.localhost' to='alice@localhost' id='s3'><body>spoofed</body></message>", "invalid-from"},
		{"NoFrom", "<message to='alice@localhost' id='s4'><body>spoofed</body></message>", "improper-addressing"},
		{"NoTo", "<message from='irc.localhost' id='s5'><body>x</body></message>", "improper-addressing"},
		{"BadJID", "<message from='irc.localhost' to='a@b@c' id='s6'><body>x</body></message>", "improper-addressing"},
		{"NotAStanza", "<foo from='irc.localhost' to='alice@localhost'/>", "unsupported-stanza-type"},
	} {
		t.Run(c.name, func(t *testing.T) {
			comp := e.connect(t, compDomain, compSecret)
			comp.Send(c.stanza)
			expectStreamError(t, comp, c.cond)
		})
	}
	// Nothing reached alice: her next ping's answer is all she has.
	if got := alice.Sync(); strings.Contains(got, "spoofed") {
		t.Errorf("alice got %q", got)
	}
}

// TestNotConnected: while no component is connected, senders get
// <remote-server-timeout type='wait'/> (as Prosody) for messages, IQ
// requests and subscriptions; presence broadcasts and IQ responses get
// nothing.
func TestNotConnected(t *testing.T) {
	e := newEnv(t)
	alice := e.Login(t, "alice", "alice-pw", "phone")
	for _, s := range []string{
		"<message to='#chan@irc.localhost' id='n1'><body>x</body></message>",
		"<iq type='get' to='irc.localhost' id='n2'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
		"<presence type='subscribe' to='irc.localhost' id='n3'/>",
	} {
		alice.Send(s)
		id := idRE.FindStringSubmatch(s)[1]
		alice.Expect(`<(message|iq|presence) type='error' id='` + id + `' to='alice@localhost/phone' from='[^']*irc.localhost'><error type='wait'><remote-server-timeout xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>`)
	}
	alice.Send("<presence to='#chan@irc.localhost/alice' id='n4'/>")
	alice.Send("<iq type='result' to='irc.localhost' id='n5'/>")
	if got := alice.Sync(); strings.Contains(got, "n4") || strings.Contains(got, "n5") {
		t.Errorf("alice got %q, want no error for a presence broadcast or an IQ result", got)
	}

	// Connected, then gone: the same again.
	comp := e.connect(t, compDomain, compSecret)
	comp.Send("</stream:stream>")
	comp.ExpectClosed()
	alice.Send("<message to='#chan@irc.localhost' id='n6'><body>x</body></message>")
	alice.Expect(`<message type='error' id='n6'[^>]*><error type='wait'><remote-server-timeout `)
}

// TestQueueBound: a stanza that would take the component's queue past
// MaxQueue is refused with <resource-constraint type='wait'/>, and the
// stream stays up for smaller ones.
func TestQueueBound(t *testing.T) {
	e := newEnv(t, func(_ *treff.Server, m *component.Module) { m.MaxQueue = 300 })
	comp := e.connect(t, compDomain, compSecret)
	alice := e.Login(t, "alice", "alice-pw", "phone")
	alice.Send("<message to='x@irc.localhost' id='big'><body>" + strings.Repeat("a", 300) + "</body></message>")
	alice.Expect(`<message type='error' id='big'[^>]*><error type='wait'><resource-constraint `)
	alice.Send("<message to='x@irc.localhost' id='small'><body>small</body></message>")
	comp.Expect(regexp.QuoteMeta(`<message from='alice@localhost/phone' to='x@irc.localhost' id='small'><body>small</body></message>`))
}

// TestLimits: the server's stanza size and attribute limits hold on
// component streams.
func TestLimits(t *testing.T) {
	e := newEnv(t, func(s *treff.Server, _ *component.Module) {
		s.MaxStanzaSize = 10000
		s.MaxAttributes = 20
	})
	t.Run("Size", func(t *testing.T) {
		comp := e.connect(t, compDomain, compSecret)
		comp.Send("<message from='irc.localhost' to='alice@localhost'><body>" + strings.Repeat("a", 10000) + "</body></message>")
		expectStreamError(t, comp, "policy-violation")
	})
	t.Run("Attributes", func(t *testing.T) {
		comp := e.connect(t, compDomain, compSecret)
		var attrs strings.Builder
		for i := range 21 {
			attrs.WriteString(" a" + strings.Repeat("x", i) + "='1'")
		}
		comp.Send("<message from='irc.localhost' to='alice@localhost'" + attrs.String() + "/>")
		expectStreamError(t, comp, "policy-violation")
	})
	t.Run("AttributesBeforeHandshake", func(t *testing.T) {
		var attrs strings.Builder
		for i := range 101 {
			attrs.WriteString(" a" + strings.Repeat("x", i) + "='1'")
		}
		c, _ := e.open(t, componentHeader(compDomain))
		c.Send("<handshake" + attrs.String() + "/>")
		expectStreamError(t, c, "policy-violation")
	})
}

// TestPing: a quiet component is pinged; one that answers stays (it is
// pinged again), one that answers nothing is closed with
// <connection-timeout/>.
func TestPing(t *testing.T) {
	t.Run("Answered", func(t *testing.T) {
		e := newEnv(t, func(_ *treff.Server, m *component.Module) {
			m.PingInterval = 50 * time.Millisecond
			m.PingTimeout = time.Minute
		})
		comp := e.connect(t, compDomain, compSecret)
		for i := 1; i <= 2; i++ {
			ping := comp.Expect(`<iq type='get' id='treff-ping-\d+' from='localhost' to='irc.localhost'><ping xmlns='urn:xmpp:ping'/></iq>`)
			id := idRE.FindStringSubmatch(ping)[1]
			comp.Send("<iq type='result' from='irc.localhost' to='localhost' id='" + id + "'/>")
		}
	})
	t.Run("Unanswered", func(t *testing.T) {
		e := newEnv(t, func(_ *treff.Server, m *component.Module) {
			m.PingInterval = 50 * time.Millisecond
			m.PingTimeout = 50 * time.Millisecond
		})
		comp := e.connect(t, compDomain, compSecret)
		comp.Expect(`<ping xmlns='urn:xmpp:ping'/>`)
		expectStreamError(t, comp, "connection-timeout")
	})
}

// TestShutdown: the server's shutdown closes component streams with
// <system-shutdown/>.
func TestShutdown(t *testing.T) {
	e := newEnv(t)
	comp := e.connect(t, compDomain, compSecret)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	expectStreamError(t, comp, "system-shutdown")
}
