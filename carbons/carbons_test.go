package carbons_test

import (
	"context"
	"strings"
	"testing"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/carbons"
	"github.com/treff-im/treff/disco"
	"github.com/treff-im/treff/ping"
	"github.com/treff-im/treff/trefftest"
)

// setup starts a server with the carbons module and logs in alice on
// phone and laptop (carbons enabled) and desk (not enabled), and bob on
// pc, all available with priority 0.
func setup(t *testing.T) (ts *trefftest.Server, m *carbons.Module, phone, laptop, desk, bob *trefftest.Client) {
	t.Helper()
	return setupWith(t)
}

// setupWith is setup with more modules after the carbons module.
func setupWith(t *testing.T, more ...treff.Module) (ts *trefftest.Server, m *carbons.Module, phone, laptop, desk, bob *trefftest.Client) {
	t.Helper()
	m = &carbons.Module{}
	ts = trefftest.NewServer(t, func(s *treff.Server) {
		s.Modules = append([]treff.Module{&disco.Module{}, &ping.Module{Interval: -1}, m}, more...)
	})
	ts.AddUser(t, "alice", "pw")
	ts.AddUser(t, "bob", "pw")
	phone = ts.Login(t, "alice", "pw", "phone")
	laptop = ts.Login(t, "alice", "pw", "laptop")
	desk = ts.Login(t, "alice", "pw", "desk")
	bob = ts.Login(t, "bob", "pw", "pc")
	for i, c := range []*trefftest.Client{phone, laptop} {
		id := []string{"e1", "e2"}[i]
		c.Send("<iq type='set' id='" + id + "'><enable xmlns='urn:xmpp:carbons:2'/></iq>")
		c.Expect(`<iq type='result' id='` + id + `' to='` + c.JID + `'/>`)
	}
	for _, c := range []*trefftest.Client{phone, laptop, desk, bob} {
		c.Send("<presence/>")
		sync(c, "p0")
	}
	return ts, m, phone, laptop, desk, bob
}

// sync makes a round trip to the server and returns everything c got
// before the answer: the server handles a client's stanzas in order and
// queues what they cause before it answers.
func sync(c *trefftest.Client, id string) string {
	c.Send("<iq type='get' id='" + id + "' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
	got := c.Expect(`<iq [^>]*id='` + id + `'[^>]*/>`)
	return got[:strings.LastIndex(got, "<iq ")]
}

// fence sends c a chat message from bob and returns everything c got
// before it: carbons are queued right after the message they copy, so
// anything copied to c earlier is in there.
func fence(t *testing.T, bob, c *trefftest.Client, tag string) string {
	t.Helper()
	bob.Send("<message to='" + c.JID + "' type='headline' id='" + tag + "'><body>" + tag + "</body></message>")
	got := c.Expect(`<message [^>]*id='` + tag + `'>.*?</message>`)
	return got[:strings.LastIndex(got, "<message ")]
}

func noCarbon(t *testing.T, who, got string) {
	t.Helper()
	if strings.Contains(got, "urn:xmpp:carbons:2") {
		t.Errorf("%s got a carbon: %s", who, got)
	}
}

func TestEnableDisable(t *testing.T) {
	ts := trefftest.NewServer(t, func(s *treff.Server) { s.Modules = []treff.Module{&disco.Module{}, &carbons.Module{}} })
	ts.AddUser(t, "alice", "pw")
	ts.AddUser(t, "bob", "pw")
	a := ts.Login(t, "alice", "pw", "r")

	a.Send("<iq type='get' id='d' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
	info := a.Expect(`</iq>`)
	for _, f := range []string{carbons.NS, carbons.NSRules} {
		if !strings.Contains(info, "<feature var='"+f+"'/>") {
			t.Errorf("disco#info without %s: %s", f, info)
		}
	}

	// Twice is no error (section 8.1), to the server, the own bare JID or
	// without 'to'.
	a.Send("<iq type='set' id='1'><enable xmlns='urn:xmpp:carbons:2'/></iq>")
	a.Expect(`<iq type='result' id='1' to='alice@localhost/r'/>`)
	a.Send("<iq type='set' id='2' to='localhost'><enable xmlns='urn:xmpp:carbons:2'/></iq>")
	a.Expect(`<iq type='result' id='2' to='alice@localhost/r' from='localhost'/>`)
	a.Send("<iq type='set' id='3' to='alice@localhost'><disable xmlns='urn:xmpp:carbons:2'/></iq>")
	a.Expect(`<iq type='result' id='3' to='alice@localhost/r' from='alice@localhost'/>`)
	a.Send("<iq type='set' id='4'><disable xmlns='urn:xmpp:carbons:2'/></iq>")
	a.Expect(`<iq type='result' id='4' to='alice@localhost/r'/>`)

	// Not someone else's, not a get, not another element.
	a.Send("<iq type='set' id='5' to='bob@localhost'><enable xmlns='urn:xmpp:carbons:2'/></iq>")
	a.Expect(`<iq type='error' id='5' to='alice@localhost/r' from='bob@localhost'><error type='cancel'><not-allowed `)
	a.Send("<iq type='get' id='6'><enable xmlns='urn:xmpp:carbons:2'/></iq>")
	a.Expect(`<iq type='error' id='6' [^>]*><error type='modify'><bad-request `)
	a.Send("<iq type='set' id='7'><private xmlns='urn:xmpp:carbons:2'/></iq>")
	a.Expect(`<iq type='error' id='7' [^>]*><error type='modify'><bad-request `)
}

// A chat message to one resource is copied, as <received/>, to the user's
// other resources with carbons enabled, and one a resource sends, as
// <sent/>; neither to the resource that has the original nor to one
// without carbons.
func TestReceivedAndSent(t *testing.T) {
	_, _, phone, laptop, desk, bob := setup(t)

	bob.Send("<message to='alice@localhost/phone' type='chat' id='m1'><body>hi &amp; bye</body></message>")
	phone.Expect(`<message from='bob@localhost/pc' to='alice@localhost/phone' type='chat' id='m1'><body>hi &amp; bye</body></message>`)
	laptop.Expect(`<message from='alice@localhost' to='alice@localhost/laptop' type='chat'><received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>` +
		`<message xmlns='jabber:client' from='bob@localhost/pc' to='alice@localhost/phone' type='chat' id='m1'><body>hi &amp; bye</body></message>` +
		`</forwarded></received></message>`)

	laptop.Send("<message to='bob@localhost' type='chat' id='m2'><body>yes?</body></message>")
	bob.Expect(`<message from='alice@localhost/laptop' to='bob@localhost' type='chat' id='m2'><body>yes\?</body></message>`)
	phone.Expect(`<message from='alice@localhost' to='alice@localhost/phone' type='chat'><sent xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>` +
		`<message xmlns='jabber:client' from='alice@localhost/laptop' to='bob@localhost' type='chat' id='m2'><body>yes\?</body></message>` +
		`</forwarded></sent></message>`)

	// A normal message keeps its (absent) type on the wrapper; a client
	// that wrote xmlns='jabber:client' itself (the server drops it when
	// stamping) does not get it twice.
	bob.Send("<message xmlns='jabber:client' to='alice@localhost/phone' id='m3'><body>normal</body></message>")
	laptop.Expect(`<message from='alice@localhost' to='alice@localhost/laptop'><received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>` +
		`<message xmlns='jabber:client' from='bob@localhost/pc' to='alice@localhost/phone' id='m3'><body>normal</body></message></forwarded></received></message>`)

	noCarbon(t, "phone", fence(t, bob, phone, "f1"))
	noCarbon(t, "desk", fence(t, bob, desk, "f2"))
	noCarbon(t, "laptop", fence(t, bob, laptop, "f3"))
}

// A message to the bare JID that several resources of equal priority get
// is not copied to any of them; neither are messages between the user's
// own resources.
func TestBareJIDNoDuplicate(t *testing.T) {
	_, _, phone, laptop, desk, bob := setup(t)
	bob.Send("<message to='alice@localhost' type='chat' id='b1'><body>all of you</body></message>")
	for _, c := range []*trefftest.Client{phone, laptop, desk} {
		got := c.Expect(`id='b1'><body>all of you</body></message>`)
		noCarbon(t, c.JID, got)
	}
	laptop.Send("<message to='alice@localhost/phone' type='chat' id='s1'><body>note to self</body></message>")
	phone.Expect(`id='s1'><body>note to self</body></message>`)
	for _, c := range []*trefftest.Client{phone, laptop, desk} {
		noCarbon(t, c.JID, fence(t, bob, c, "f-"+c.JID[strings.IndexByte(c.JID, '/')+1:]))
	}
}

// <private/> and <no-copy/> stop copies both ways; the receiving server
// removes <private/> (leaving a <no-copy/> hint).
func TestPrivate(t *testing.T) {
	_, _, phone, laptop, _, bob := setup(t)

	bob.Send("<message to='alice@localhost/phone' type='chat' id='p1'><body>secret</body><private xmlns='urn:xmpp:carbons:2'/></message>")
	phone.Expect(`<message from='bob@localhost/pc' to='alice@localhost/phone' type='chat' id='p1'><body>secret</body><no-copy xmlns='urn:xmpp:hints'/></message>`)
	bob.Send("<message to='alice@localhost/phone' type='chat' id='p2'><body>secret</body><private xmlns='urn:xmpp:carbons:2'/><no-copy xmlns='urn:xmpp:hints'/></message>")
	phone.Expect(`<message from='bob@localhost/pc' to='alice@localhost/phone' type='chat' id='p2'><body>secret</body><no-copy xmlns='urn:xmpp:hints'/></message>`)
	bob.Send("<message to='alice@localhost/phone' type='chat' id='p3'><body>secret</body><no-copy xmlns='urn:xmpp:hints'/></message>")
	phone.Expect(`id='p3'>`)
	noCarbon(t, "laptop", fence(t, bob, laptop, "f1"))

	laptop.Send("<message to='bob@localhost' type='chat' id='p4'><body>secret</body><private xmlns='urn:xmpp:carbons:2'/></message>")
	bob.Expect(`<message from='alice@localhost/laptop' to='bob@localhost' type='chat' id='p4'><body>secret</body><no-copy xmlns='urn:xmpp:hints'/></message>`)
	laptop.Send("<message to='bob@localhost' type='chat' id='p5'><body>secret</body><no-copy xmlns='urn:xmpp:hints'/></message>")
	bob.Expect(`id='p5'>`)
	noCarbon(t, "phone", fence(t, bob, phone, "f2"))
}

// Groupchat, headline and error messages are not copied; private
// messages through a room (with a muc#user <x/>) are, and so are receipts
// and chat states without a body; a normal message with nothing of the
// kind is not.
func TestWhichMessages(t *testing.T) {
	ts, _, phone, laptop, _, bob := setup(t)
	for _, msg := range []string{
		"<message to='alice@localhost/phone' type='groupchat' id='n1'><body>room talk</body></message>",
		"<message to='alice@localhost/phone' type='headline' id='n2'><body>news</body></message>",
		"<message to='alice@localhost/phone' type='error' id='n3'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>",
		"<message to='alice@localhost/phone' id='n4'><subject>no body</subject></message>",
	} {
		bob.Send(msg)
	}
	phone.Expect(`id='n4'>`)
	noCarbon(t, "laptop", fence(t, bob, laptop, "f1"))

	bob.Send("<message to='alice@localhost/phone' id='y1'><received xmlns='urn:xmpp:receipts' id='x'/></message>")
	laptop.Expect(`<received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' [^>]*id='y1'>`)
	bob.Send("<message to='alice@localhost/phone' type='chat' id='y2'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>")
	laptop.Expect(`<received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' [^>]*id='y2'>`)

	// A private message from a room occupant (as the MUC service routes
	// it) is copied.
	pm, err := treff.NewStanza([]byte("<message from='lounge@conference.localhost/bob' to='alice@localhost/phone' type='chat' id='y3'>" +
		"<body>psst</body><x xmlns='http://jabber.org/protocol/muc#user'/></message>"))
	if err != nil {
		t.Fatal(err)
	}
	ts.Route(context.Background(), pm)
	phone.Expect(`id='y3'>`)
	laptop.Expect(`<message from='alice@localhost' to='alice@localhost/laptop' type='chat'><received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>` +
		`<message xmlns='jabber:client' from='lounge@conference.localhost/bob' to='alice@localhost/phone' type='chat' id='y3'><body>psst</body><x xmlns='http://jabber.org/protocol/muc#user'/></message></forwarded></received></message>`)

	// A carbon (here a forged one) is not copied again.
	bob.Send("<message to='alice@localhost/phone' type='chat' id='n5'><received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' type='chat'><body>x</body></message></forwarded></received></message>")
	phone.Expect(`id='n5'>`)
	noCarbon(t, "laptop", fence(t, bob, laptop, "f2"))
}

// After <disable/> a session gets no more copies; a session that is not
// available gets none; a session that ended is forgotten.
func TestDisableAndClose(t *testing.T) {
	closed := make(trefftest.ClosedSessions, 16)
	ts, m, phone, laptop, _, bob := setupWith(t, closed)
	laptop.Send("<iq type='set' id='d1'><disable xmlns='urn:xmpp:carbons:2'/></iq>")
	laptop.Expect(`<iq type='result' id='d1' to='alice@localhost/laptop'/>`)
	bob.Send("<message to='alice@localhost/phone' type='chat' id='m1'><body>one</body></message>")
	phone.Expect(`id='m1'>`)
	noCarbon(t, "laptop", fence(t, bob, laptop, "f1"))

	// Enabled but unavailable: no copies.
	laptop.Send("<iq type='set' id='e3'><enable xmlns='urn:xmpp:carbons:2'/></iq>")
	laptop.Expect(`id='e3'`)
	laptop.Send("<presence type='unavailable'/>")
	sync(laptop, "p1")
	bob.Send("<message to='alice@localhost/phone' type='chat' id='m2'><body>two</body></message>")
	phone.Expect(`id='m2'>`)
	noCarbon(t, "laptop", fence(t, bob, laptop, "f2"))

	sess := ts.Session(mustJID(t, phone.JID))
	if sess == nil || !m.Enabled(sess) {
		t.Fatal("phone's session not found or not enabled")
	}
	phone.Send("</stream:stream>")
	phone.ExpectClosed()
	// The module's OnSessionClosed hook runs before closed's.
	closed.Wait(t, phone.JID)
	if m.Enabled(sess) {
		t.Error("a closed session is still enabled")
	}
}

func mustJID(t *testing.T, s string) jid.JID {
	t.Helper()
	j, err := jid.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return j
}
