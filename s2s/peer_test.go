package s2s_test

import (
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"regexp"
	"strings"
	"testing"
)

// evilSetup starts a.test, which trusts the test CA, with alice online,
// and returns a TLS configuration for a peer claiming evil.test with a
// certificate for evil.test from that CA.
func evilSetup(t *testing.T) (*node, *tlsPeerConfig) {
	f := newFederation(t, viaCA, "a.test")
	f.start()
	a := f.node("a.test")
	a.addUser(t, "alice")
	cert := f.CA.issue(t, "evil.test")
	return a, &tlsPeerConfig{cert: cert, roots: f.CA}
}

type tlsPeerConfig struct {
	cert  tls.Certificate
	roots *testCA
}

// config is the peer's TLS configuration for a stream to server name to.
func (c *tlsPeerConfig) config(to string, alpn ...string) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{c.cert}, RootCAs: c.roots.pool, ServerName: to,
		NextProtos: alpn, MinVersion: tls.VersionTLS12}
}

// external authenticates the (TLS-protected) stream as authzid with SASL
// EXTERNAL and restarts it.
func (p *peer) external(from, to, authzid string) {
	p.t.Helper()
	p.send(serverHeader(from, to))
	if f := p.expect(featuresEnd); !strings.Contains(f, "<mechanism>EXTERNAL</mechanism>") {
		p.t.Fatalf("EXTERNAL not offered: %s", f)
	}
	p.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>" + base64.StdEncoding.EncodeToString([]byte(authzid)) + "</auth>")
	p.expect(`<success[^>]*/>`)
	p.send(serverHeader(from, to))
	p.expect(featuresEnd)
}

// streamError waits for a stream error, checks that it is cond and that
// the server closes the connection.
func (p *peer) streamError(cond string) {
	p.t.Helper()
	got := p.expect(`(?s)<stream:error>.*?</stream:error>`)
	got = got[strings.LastIndex(got, "<stream:error>"):]
	if want := "<stream:error><" + cond + " xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>"; canon(p.t, got) != canon(p.t, want) {
		p.t.Errorf("got %s, want %s", got, want)
	}
	if rest := p.expectClosed(); !strings.Contains(rest, "</stream:stream>") {
		p.t.Errorf("stream not closed with </stream:stream> after the error: %q", rest)
	}
}

// A server peer driven by hand: what a.test accepts from evil.test.
func TestRawPeer(t *testing.T) {
	a, evil := evilSetup(t)
	alice := a.login(t, "alice", "r")

	t.Run("authenticated", func(t *testing.T) {
		p := dialPeer(t, a.S2SAddr())
		p.startTLS("evil.test", "a.test", evil.config("a.test"))
		p.external("evil.test", "a.test", "evil.test")
		p.send("<message from='mallory@evil.test/x' to='alice@a.test/r' type='chat' id='e1'><body>hi</body></message>")
		wantNext(t, alice, chatFrom("mallory@evil.test/x", "alice@a.test/r", "e1", "hi"))
		a.waitAuthenticated(t, "in", "evil.test", "external")
		// A stanza from a domain the stream is not authenticated for.
		p.send("<message from='mallory@other.test' to='alice@a.test/r' type='chat' id='e2'><body>hi</body></message>")
		// The stream error came when a.test handled the stanza: it routed
		// nothing, or alice's queue has it before her ping's answer.
		p.streamError("invalid-from")
		quiet(t, alice, "a.test", 0)
	})

	t.Run("to not served", func(t *testing.T) {
		p := dialPeer(t, a.S2SAddr())
		p.startTLS("evil.test", "a.test", evil.config("a.test"))
		p.external("evil.test", "a.test", "evil.test")
		p.send("<message from='mallory@evil.test' to='x@notmine.test' type='chat' id='e3'><body>relay me</body></message>")
		got := p.expect(`(?s)<host-unknown\b.*?(</stream:error>|</message>)`)
		if i := strings.LastIndex(got, "<stream:error>"); i >= 0 {
			if want := "<stream:error><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>"; canon(t, got[i:]) != canon(t, want) {
				t.Errorf("got %s, want %s", got[i:], want)
			}
			p.expectClosed()
		} else if !regexp.MustCompile(`<message [^>]*type='error'`).MatchString(got) {
			t.Errorf("host-unknown neither a stream nor a stanza error: %s", got)
		}
	})

	t.Run("header to not served", func(t *testing.T) {
		p := dialPeer(t, a.S2SAddr())
		p.send(serverHeader("evil.test", "notmine.test"))
		p.streamError("host-unknown")
	})

	t.Run("stanza before authentication", func(t *testing.T) {
		p := dialPeer(t, a.S2SAddr())
		p.startTLS("evil.test", "a.test", evil.config("a.test"))
		p.send(serverHeader("evil.test", "a.test"))
		p.expect(featuresEnd)
		p.send("<message from='mallory@evil.test' to='alice@a.test/r' type='chat' id='e4'><body>hi</body></message>")
		p.streamError("not-authorized")
	})

	t.Run("stanza before TLS", func(t *testing.T) {
		p := dialPeer(t, a.S2SAddr())
		p.send(serverHeader("evil.test", "a.test"))
		p.expect(featuresEnd)
		p.send("<message from='mallory@evil.test' to='alice@a.test/r' type='chat' id='e5'><body>hi</body></message>")
		got := p.expect(`(?s)<stream:error>.*?</stream:error>`)
		if !strings.Contains(got, "<policy-violation") && !strings.Contains(got, "<not-authorized") {
			t.Errorf("stanza before TLS: %s", got)
		}
		p.expectClosed()
	})

	t.Run("EXTERNAL for another domain", func(t *testing.T) {
		p := dialPeer(t, a.S2SAddr())
		p.startTLS("evil.test", "a.test", evil.config("a.test"))
		p.send(serverHeader("evil.test", "a.test"))
		p.expect(featuresEnd)
		p.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>" + base64.StdEncoding.EncodeToString([]byte("b.test")) + "</auth>")
		p.expect(`<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>.*?</failure>`)
		p.send("<message from='mallory@b.test' to='alice@a.test/r' type='chat' id='e6'><body>hi</body></message>")
		p.streamError("not-authorized")
	})

	t.Run("untrusted certificate", func(t *testing.T) {
		self, _ := selfSigned(t, "evil.test")
		cfg := evil.config("a.test")
		cfg.Certificates = []tls.Certificate{self}
		p := dialPeer(t, a.S2SAddr())
		p.startTLS("evil.test", "a.test", cfg)
		p.send(serverHeader("evil.test", "a.test"))
		if f := p.expect(featuresEnd); strings.Contains(f, "EXTERNAL") {
			t.Errorf("EXTERNAL offered for an untrusted certificate: %s", f)
		}
		p.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>" + base64.StdEncoding.EncodeToString([]byte("evil.test")) + "</auth>")
		p.expect(`<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>.*?</failure>`)
	})

	// RFC 6120 4.9.3.14: a stanza between servers without 'from' or 'to'
	// is improper-addressing.
	for name, st := range map[string]string{
		"no from": "<message to='alice@a.test/r' type='chat' id='e8'><body>hi</body></message>",
		"no to":   "<message from='mallory@evil.test' type='chat' id='e9'><body>hi</body></message>",
	} {
		t.Run(name, func(t *testing.T) {
			p := dialPeer(t, a.S2SAddr())
			p.startTLS("evil.test", "a.test", evil.config("a.test"))
			p.external("evil.test", "a.test", "evil.test")
			p.send(st)
			p.streamError("improper-addressing")
		})
	}

	t.Run("oversized stanza", func(t *testing.T) {
		p := dialPeer(t, a.S2SAddr())
		p.startTLS("evil.test", "a.test", evil.config("a.test"))
		p.external("evil.test", "a.test", "evil.test")
		p.send("<message from='mallory@evil.test' to='alice@a.test/r' type='chat' id='big'><body>" + strings.Repeat("x", 300<<10) + "</body></message>")
		p.streamError("policy-violation")
		quiet(t, alice, "a.test", 0)
	})

	// Issue 15: what Namespaces in XML forbids is refused, not relayed
	// to alice (whose client may parse with expat and drop on it).
	t.Run("namespace ill-formed stanza", func(t *testing.T) {
		p := dialPeer(t, a.S2SAddr())
		p.startTLS("evil.test", "a.test", evil.config("a.test"))
		p.external("evil.test", "a.test", "evil.test")
		p.send("<message from='mallory@evil.test/x' to='alice@a.test/r' type='chat' id='ns1' xmlns:xml='urn:other'><body>hi</body></message>")
		p.streamError("not-well-formed")
		quiet(t, alice, "a.test", 0)
	})

	t.Run("nested stream header", func(t *testing.T) {
		p := dialPeer(t, a.S2SAddr())
		p.startTLS("evil.test", "a.test", evil.config("a.test"))
		p.external("evil.test", "a.test", "evil.test")
		// Without the XML declaration, which alone would be
		// restricted-xml.
		p.send(strings.TrimPrefix(serverHeader("evil.test", "a.test"), "<?xml version='1.0'?>"))
		p.streamError("invalid-xml")
	})

	t.Run("header with too many attributes", func(t *testing.T) {
		p := dialPeer(t, a.S2SAddr())
		var b strings.Builder
		for i := range 150 {
			fmt.Fprintf(&b, " a%d='%d'", i, i)
		}
		hdr := serverHeader("evil.test", "a.test")
		p.send(strings.TrimSuffix(hdr, ">") + b.String() + ">")
		p.streamError("policy-violation")
	})

	t.Run("direct TLS", func(t *testing.T) {
		p := dialPeerTLS(t, a.TLSAddr(), evil.config("a.test", "xmpp-server"))
		p.external("evil.test", "a.test", "evil.test")
		p.send("<message from='mallory@evil.test/x' to='alice@a.test/r' type='chat' id='e7'><body>direct</body></message>")
		wantNext(t, alice, chatFrom("mallory@evil.test/x", "alice@a.test/r", "e7", "direct"))
	})
}

// A peer claiming to be b.test with a made-up dialback key: a.test asks
// b.test, the authoritative server, which denies it; the stream stays
// unauthenticated for b.test.
func TestDialbackForgery(t *testing.T) {
	f := newFederation(t, viaDialback, "a.test", "b.test")
	f.start()
	a := f.node("a.test")
	a.addUser(t, "alice")
	alice := a.login(t, "alice", "r")
	self, _ := selfSigned(t, "b.test")
	cfg := &tls.Config{Certificates: []tls.Certificate{self}, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}
	p := dialPeer(t, a.S2SAddr())
	p.startTLS("b.test", "a.test", cfg)
	p.send(strings.Replace(serverHeader("b.test", "a.test"), " version='1.0'>", " xmlns:db='jabber:server:dialback' version='1.0'>", 1))
	if f := p.expect(featuresEnd); strings.Contains(f, "EXTERNAL") || !strings.Contains(f, "urn:xmpp:features:dialback") {
		t.Errorf("features for an untrusted certificate: %s", f)
	}
	p.send("<db:result from='b.test' to='a.test'>0123456789abcdef0123456789abcdef</db:result>")
	got := p.expect(`<db:result [^>]*(/>|>.*?</db:result>)`)
	if !strings.Contains(got, "type='invalid'") {
		t.Errorf("forged key answered with %s, want type='invalid'", got)
	}
	p.send("<message from='bob@b.test/x' to='alice@a.test/r' type='chat' id='f1'><body>it is me</body></message>")
	p.streamError("not-authorized") // a.test has handled the message
	quiet(t, alice, "a.test", 0)
	if m := a.authenticated("in", "b.test"); len(m) > 0 {
		t.Errorf("a.test authenticated the forger as b.test by %v", m)
	}
}
