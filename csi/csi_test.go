package csi_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/csi"
	"github.com/treff-im/treff/ping"
	"github.com/treff-im/treff/trefftest"
)

func newServer(t *testing.T, m *csi.Module) *trefftest.Server {
	ts := trefftest.NewServer(t, func(s *treff.Server) { s.Modules = []treff.Module{m, &ping.Module{}} })
	ts.AddUser(t, "alice", "alicepw")
	ts.AddUser(t, "bob", "bobpw")
	return ts
}

func TestFeature(t *testing.T) {
	ts := newServer(t, &csi.Module{})
	c := ts.Dial(t, ts.Addr)
	c.StartTLS()
	c.Send(trefftest.Header("localhost"))
	c.Expect(`</stream:features>`)
	c.Send(trefftest.PlainAuth("alice", "alicepw"))
	c.Expect(`<success`)
	c.Send(trefftest.Header("localhost"))
	if f := c.Expect(`</stream:features>`); !strings.Contains(f, "<csi xmlns='urn:xmpp:csi:0'/>") {
		t.Errorf("features after authentication lack csi: %s", f)
	}
}

func TestHoldsPresenceUntilAMessage(t *testing.T) {
	ts := newServer(t, &csi.Module{})
	alice := ts.Login(t, "alice", "alicepw", "phone")
	bob := ts.Login(t, "bob", "bobpw", "desk")
	alice.Send("<inactive xmlns='urn:xmpp:csi:0'/>")
	alice.Sync() // the server has taken <inactive/> in
	bob.Send("<presence to='alice@localhost/phone'><status>one</status></presence>")
	bob.Send("<presence to='alice@localhost/phone'><status>two</status></presence>")
	bob.Send("<message to='alice@localhost/phone' type='chat' id='c1'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>")
	bob.Sync()
	// Nothing arrives while inactive: an IQ is urgent and comes at once,
	// with what was held before it.
	alice.Send("<iq type='get' id='probe' to='alice@localhost/phone'><ping xmlns='urn:xmpp:ping'/></iq>")
	got := alice.Expect(`id='probe'`)
	if !regexp.MustCompile(`(?s)^<presence[^>]*><status>two</status></presence><message[^>]*id='c1'.*<iq[^>]*id='probe'`).MatchString(got) {
		t.Errorf("held stanzas not flushed in order, latest presence only, before the IQ: %s", got)
	}
	alice.Expect(`</iq>`)
	bob.Send("<presence to='alice@localhost/phone'><status>three</status></presence>")
	bob.Send("<message to='alice@localhost/phone' type='chat' id='c2'><paused xmlns='http://jabber.org/protocol/chatstates'/></message>")
	bob.Sync()
	bob.Send("<message to='alice@localhost/phone' type='chat' id='m1'><body>hi</body></message>")
	got = alice.Expect(`id='m1'.*?</message>`)
	if !regexp.MustCompile(`(?s)<status>three</status>.*id='c2'.*id='m1'`).MatchString(got) {
		t.Errorf("held stanzas not flushed in order before a message: %s", got)
	}
	bob.Send("<presence to='alice@localhost/phone'><status>four</status></presence>")
	bob.Sync() // the presence is held in alice's session
	alice.Send("<active xmlns='urn:xmpp:csi:0'/>")
	alice.Expect(`<status>four</status>`)
	// Active again: nothing is held.
	bob.Send("<presence to='alice@localhost/phone'><status>five</status></presence>")
	alice.Expect(`<status>five</status>`)
}

func TestUrgentNamespaces(t *testing.T) {
	ts := newServer(t, &csi.Module{})
	for _, tc := range []struct {
		raw    string
		urgent bool
	}{
		{`<message from='bob@x/a' to='alice@x/p' type='chat'><body>hi</body></message>`, true},
		{`<message from='bob@x/a' to='alice@x/p'><encrypted xmlns='eu.siacs.conversations.axolotl'/></message>`, true},
		{`<message from='bob@x/a' to='alice@x/p'><propose xmlns='urn:xmpp:jingle-message:0' id='c'/></message>`, true},
		{`<message from='alice@x' to='alice@x/p'><received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client'><body>x</body></message></forwarded></received></message>`, true},
		{`<message from='bob@x/a' to='alice@x/p' type='error'><error type='cancel'/></message>`, true},
		{`<presence from='bob@x' to='alice@x' type='subscribe'/>`, true},
		{`<iq from='bob@x/a' to='alice@x/p' type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>`, true},
		{`<message from='bob@x/a' to='alice@x/p' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>`, false},
		{`<message from='bob@x/a' to='alice@x/p'><received xmlns='urn:xmpp:receipts' id='1'/></message>`, false},
		{`<presence from='bob@x/a' to='alice@x/p'><status>urn:xmpp:jingle-message:0</status></presence>`, false},
		{`<presence from='bob@x/a' to='alice@x/p' type='unavailable'/>`, false},
	} {
		if got := ts.Urgent([]byte(tc.raw)); got != tc.urgent {
			t.Errorf("Urgent(%s) = %v, want %v", tc.raw, got, tc.urgent)
		}
	}
}

// TestBounds checks that an inactive session holds at most MaxHeld
// stanzas (presences of one sender count once), then sends them all.
func TestBounds(t *testing.T) {
	ts := newServer(t, &csi.Module{MaxHeld: 3})
	alice := ts.Login(t, "alice", "alicepw", "phone")
	alice.Send("<inactive xmlns='urn:xmpp:csi:0'/>")
	alice.Sync()
	bob := ts.Login(t, "bob", "bobpw", "desk")
	for _, st := range []string{"a", "b", "c", "d"} {
		bob.Send("<presence to='alice@localhost/phone'><status>" + st + "</status></presence>")
	}
	for _, id := range []string{"s1", "s2"} {
		bob.Send("<message to='alice@localhost/phone' type='chat' id='" + id + "'><active xmlns='http://jabber.org/protocol/chatstates'/></message>")
	}
	bob.Sync()
	// Held: presence d, s1, s2; the third chat state does not fit and
	// sends them, itself after them.
	bob.Send("<message to='alice@localhost/phone' type='chat' id='s3'><active xmlns='http://jabber.org/protocol/chatstates'/></message>")
	got := alice.Expect(`id='s3'`)
	if !regexp.MustCompile(`(?s)^<presence[^>]*><status>d</status></presence><message[^>]*id='s1'.*id='s2'.*id='s3'`).MatchString(got) {
		t.Errorf("over the bound: %s", got)
	}
}

var _ treff.Module = (*csi.Module)(nil)
