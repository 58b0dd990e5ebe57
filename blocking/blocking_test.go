package blocking_test

import (
	"context"
	"regexp"
	"slices"
	"strings"
	"testing"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/blocking"
	"github.com/treff-im/treff/roster"
	"github.com/treff-im/treff/storage"
	"github.com/treff-im/treff/trefftest"
)

// newServer starts a server with the blocking and roster modules and the
// accounts alice, bob and mallory; bob and mallory share presence.
func newServer(t *testing.T, m *blocking.Module) *trefftest.Server {
	t.Helper()
	ts := trefftest.NewServer(t, func(s *treff.Server) { s.Modules = []treff.Module{m, &roster.Module{}} })
	for _, u := range []string{"alice", "bob", "mallory"} {
		ts.AddUser(t, u, "pw")
	}
	ctx := context.Background()
	ts.Store.PutRosterItem(ctx, "bob@localhost", storage.RosterItem{JID: "mallory@localhost", Subscription: storage.SubBoth})
	ts.Store.PutRosterItem(ctx, "mallory@localhost", storage.RosterItem{JID: "bob@localhost", Subscription: storage.SubBoth})
	return ts
}

// sync makes a round trip to the server: everything c sent before has
// been routed when it returns (the server handles a session's stanzas in
// order). It returns what c received meanwhile.
func sync(c *trefftest.Client, id string) string {
	c.Send("<iq type='get' id='" + id + "' to='localhost'><query xmlns='urn:test:sync'/></iq>")
	return c.Expect(`<iq type='error' id='` + id + `'[^>]*>.*?</iq>`)
}

func block(c *trefftest.Client, id string, jids ...string) {
	var items string
	for _, j := range jids {
		items += "<item jid='" + j + "'/>"
	}
	c.Send("<iq type='set' id='" + id + "'><block xmlns='urn:xmpp:blocking'>" + items + "</block></iq>")
	c.Expect(`<iq type='result' id='` + id + `'`)
}

func unblock(c *trefftest.Client, id string, jids ...string) {
	var items string
	for _, j := range jids {
		items += "<item jid='" + j + "'/>"
	}
	c.Send("<iq type='set' id='" + id + "'><unblock xmlns='urn:xmpp:blocking'>" + items + "</unblock></iq>")
	c.Expect(`<iq type='result' id='` + id + `'`)
}

func TestCommandsAndPushes(t *testing.T) {
	ts := newServer(t, &blocking.Module{Limit: 3})
	if !slices.Contains(ts.Features(false), blocking.NS) {
		t.Errorf("server features %v lack %s", ts.Features(false), blocking.NS)
	}
	r1 := ts.Login(t, "bob", "pw", "r1")
	r2 := ts.Login(t, "bob", "pw", "r2")
	r3 := ts.Login(t, "bob", "pw", "r3") // never asks for the list: no pushes
	for _, c := range []*trefftest.Client{r1, r2} {
		c.Send("<iq type='get' id='l0'><blocklist xmlns='urn:xmpp:blocking'/></iq>")
		c.Expect(`<iq type='result' id='l0'[^>]*><blocklist xmlns='urn:xmpp:blocking'/></iq>`)
	}

	r1.Send("<iq type='set' id='b1'><block xmlns='urn:xmpp:blocking'><item jid='Mallory@LOCALHOST'/><item jid='spam.example'/></block></iq>")
	// The requester gets its result and, like every session that asked for
	// the list, the push with the normalised JIDs.
	r1.Expect(`<iq type='result' id='b1'`)
	for _, c := range []*trefftest.Client{r1, r2} {
		c.Expect(`<iq type='set' id='push-[0-9a-f]+' to='bob@localhost/r[12]'><block xmlns='urn:xmpp:blocking'><item jid='mallory@localhost'/><item jid='spam.example'/></block></iq>`)
	}
	r2.Send("<iq type='get' id='l1'><blocklist xmlns='urn:xmpp:blocking'/></iq>")
	r2.Expect(`id='l1'[^>]*><blocklist xmlns='urn:xmpp:blocking'><item jid='mallory@localhost'/><item jid='spam.example'/></blocklist></iq>`)

	for _, tc := range []struct{ in, want string }{
		{"<block xmlns='urn:xmpp:blocking'/>", `<error type='modify'><bad-request xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>`},
		{"<block xmlns='urn:xmpp:blocking'><item jid='a@@b'/></block>", `<error type='modify'><jid-malformed `},
		{"<block xmlns='urn:xmpp:blocking'><item/></block>", `<error type='modify'><jid-malformed `},
		{"<unblock xmlns='urn:xmpp:blocking'><item jid='@x'/></unblock>", `<error type='modify'><jid-malformed `},
		{"<blocklist xmlns='urn:xmpp:blocking'/>", `<error type='modify'><bad-request `},
		{"<block xmlns='urn:xmpp:blocking'><item jid='a@x'/><item jid='b@x'/></block>", `<error type='modify'><not-acceptable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><text[^>]*>a block list may hold at most 3 JIDs`},
	} {
		r1.Send("<iq type='set' id='e'>" + tc.in + "</iq>")
		r1.Expect(`<iq type='error' id='e'[^>]*>` + tc.want)
	}
	a := ts.Login(t, "alice", "pw", "r")
	a.Send("<iq type='get' id='o' to='bob@localhost'><blocklist xmlns='urn:xmpp:blocking'/></iq>")
	a.Expect(`<iq type='error' id='o'[^>]*><error type='auth'><forbidden `)

	unblock(r1, "u1", "spam.example", "never@blocked.example")
	for _, c := range []*trefftest.Client{r1, r2} {
		c.Expect(`<iq type='set' id='push-[0-9a-f]+' to='bob@localhost/r[12]'><unblock xmlns='urn:xmpp:blocking'><item jid='spam.example'/><item jid='never@blocked.example'/></unblock></iq>`)
	}
	unblock(r2, "u2")
	for _, c := range []*trefftest.Client{r1, r2} {
		c.Expect(`<iq type='set' id='push-[0-9a-f]+' to='bob@localhost/r[12]'><unblock xmlns='urn:xmpp:blocking'/></iq>`)
	}
	r1.Send("<iq type='get' id='l2'><blocklist xmlns='urn:xmpp:blocking'/></iq>")
	r1.Expect(`id='l2'[^>]*><blocklist xmlns='urn:xmpp:blocking'/></iq>`)
	if got := sync(r3, "s3"); strings.Contains(got, "urn:xmpp:blocking") {
		t.Errorf("a session that never asked for the list got pushes: %s", got)
	}
}

func TestInbound(t *testing.T) {
	ts := newServer(t, &blocking.Module{})
	b := ts.Login(t, "bob", "pw", "r")
	b.Send("<presence/>")
	b.Expect(`<presence from='bob@localhost/r'`)
	a := ts.Login(t, "alice", "pw", "r")
	m := ts.Login(t, "mallory", "pw", "phone")
	m.Send("<presence/>")
	m.Expect(`<presence from='mallory@localhost/phone'`)
	b.Expect(`<presence from='mallory@localhost/phone'`)
	block(b, "b1", "mallory@localhost")
	// mallory sees bob go offline.
	m.Expect(`<presence from='bob@localhost/r' to='mallory@localhost' type='unavailable'/>`)

	m.Send("<message to='bob@localhost' type='chat' id='m1'><body>to bare</body></message>")
	m.Send("<message to='bob@localhost/r' type='chat' id='m2'><body>to full</body></message>")
	m.Send("<message to='bob@localhost/r' type='groupchat' id='m3'><body>groupchat</body></message>")
	m.Send("<presence to='bob@localhost' type='subscribe'/>")
	m.Send("<presence><status>new status</status></presence>")
	m.Send("<iq type='get' id='i1' to='bob@localhost/r'><ping xmlns='urn:xmpp:ping'/></iq>")
	m.Send("<iq type='get' id='i2' to='bob@localhost'><query xmlns='jabber:iq:roster'/></iq>")
	m.Send("<iq type='result' id='i3' to='bob@localhost/r'/>")
	got := sync(m, "s1")
	for _, want := range []string{
		`<message type='error' id='m1' to='mallory@localhost/phone' from='bob@localhost'><error type='cancel'><service-unavailable `,
		`<message type='error' id='m2' to='mallory@localhost/phone' from='bob@localhost/r'><error type='cancel'><service-unavailable `,
		`<iq type='error' id='i1' to='mallory@localhost/phone' from='bob@localhost/r'><error type='cancel'><service-unavailable `,
		`<iq type='error' id='i2' to='mallory@localhost/phone' from='bob@localhost'><error type='cancel'><service-unavailable `,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("mallory did not get %s; got %s", want, got)
		}
	}
	if strings.Contains(got, "'m3'") || strings.Contains(got, "<presence from='bob") {
		t.Errorf("mallory got an answer to groupchat or presence: %s", got)
	}
	// bob got nothing of it: alice's message is the next thing he sees.
	a.Send("<message to='bob@localhost' type='chat' id='c1'><body>control</body></message>")
	if got := b.Expect(`<message[^>]*id='c1'`); strings.Contains(got, "mallory") {
		t.Errorf("bob got something from mallory: %s", got)
	}
	// Messages to an offline user are not stored for later either.
	b.Send("<presence type='unavailable'/>")
	m.Send("<message to='bob@localhost' type='chat' id='m4'><body>offline</body></message>")
	sync(m, "s2")
	if n, _ := ts.Store.CountOffline(context.Background(), "bob@localhost"); n != 0 {
		t.Errorf("%d offline messages stored from a blocked sender", n)
	}
}

func TestMatching(t *testing.T) {
	for _, tc := range []struct {
		name    string
		blocked string
		phone   bool // mallory/phone is blocked
		laptop  bool // mallory/laptop is blocked
		alice   bool // alice (same domain) is blocked
	}{
		{"full JID", "mallory@localhost/phone", true, false, false},
		{"bare JID", "mallory@localhost", true, true, false},
		{"domain", "localhost", true, true, true},
		{"domain/resource", "localhost/phone", false, false, false},
		{"other domain", "example.org", false, false, false},
		{"parent domain", "host", false, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := newServer(t, &blocking.Module{})
			b := ts.Login(t, "bob", "pw", "r")
			block(b, "b", tc.blocked)
			for _, s := range []struct {
				user, res string
				want      bool
			}{{"mallory", "phone", tc.phone}, {"mallory", "laptop", tc.laptop}, {"alice", "r", tc.alice}} {
				c := ts.Login(t, s.user, "pw", s.res)
				c.Send("<message to='bob@localhost/r' type='chat' id='x'><body>hi</body></message>")
				got := sync(c, "s")
				if blocked := strings.Contains(got, "<message type='error' id='x'"); blocked != s.want {
					t.Errorf("%s/%s blocked: %v, want %v (%s)", s.user, s.res, blocked, s.want, got)
				}
			}
		})
	}
}

func TestOutbound(t *testing.T) {
	ts := newServer(t, &blocking.Module{})
	b := ts.Login(t, "bob", "pw", "r")
	b.Send("<presence/>")
	b.Expect(`<presence from='bob@localhost/r'`)
	m := ts.Login(t, "mallory", "pw", "phone")
	m.Send("<presence/>")
	m.Expect(`<presence from='bob@localhost/r' to='mallory@localhost/phone'`)
	block(b, "b1", "mallory@localhost")
	m.Expect(`<presence from='bob@localhost/r' to='mallory@localhost' type='unavailable'/>`)

	b.Send("<message to='mallory@localhost' type='chat' id='o1'><body>hi</body></message>")
	b.Expect(`<message type='error' id='o1' to='bob@localhost/r' from='mallory@localhost'><error type='cancel'><not-acceptable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><blocked xmlns='urn:xmpp:blocking:errors'/></error></message>`)
	b.Send("<iq type='get' id='o2' to='mallory@localhost/phone'><ping xmlns='urn:xmpp:ping'/></iq>")
	b.Expect(`<iq type='error' id='o2' to='bob@localhost/r' from='mallory@localhost/phone'><error type='cancel'><not-acceptable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><blocked xmlns='urn:xmpp:blocking:errors'/></error></iq>`)
	// Presence, broadcast or directed, does not reach mallory, and no
	// error comes back for it.
	b.Send("<presence><status>busy</status></presence>")
	b.Send("<presence to='mallory@localhost/phone'/>")
	if got := sync(b, "s1"); strings.Contains(got, "not-acceptable") {
		t.Errorf("bob got an error for presence: %s", got)
	}
	// The next thing mallory gets is unblock's presence.
	unblock(b, "u1", "mallory@localhost")
	got := m.Expect(`<presence from='bob@localhost/r' to='mallory@localhost'[^>]*>.*?</presence>`)
	if strings.Contains(got, "type='unavailable'") || !strings.Contains(got, "<status>busy</status>") {
		t.Errorf("after unblock mallory got %s, want bob's current presence", got)
	}
	b.Send("<message to='mallory@localhost' type='chat' id='o3'><body>again</body></message>")
	m.Expect(`<message [^>]*id='o3'[^>]*><body>again</body>`)
}

func TestAccountDeleted(t *testing.T) {
	ts := newServer(t, &blocking.Module{})
	b := ts.Login(t, "bob", "pw", "r")
	block(b, "b", "mallory@localhost")
	if err := ts.DeleteAccount(context.Background(), jid.MustParse("bob@localhost"), "bye"); err != nil {
		t.Fatal(err)
	}
	if got, err := ts.Store.(storage.Blocklists).Blocklist(context.Background(), "bob@localhost"); err != nil || len(got) != 0 {
		t.Errorf("block list after account deletion: %q, %v", got, err)
	}
	// A new account of the same name blocks nobody.
	ts.AddUser(t, "bob", "pw")
	b = ts.Login(t, "bob", "pw", "r")
	b.Send("<presence/>")
	m := ts.Login(t, "mallory", "pw", "phone")
	m.Send("<message to='bob@localhost/r' type='chat' id='x'><body>hello again</body></message>")
	b.Expect(regexp.QuoteMeta(`<body>hello again</body>`))
}

// enableResume enables stream management with resumption (XEP-0198) on c
// and returns the resumption id.
func enableResume(t *testing.T, c *trefftest.Client) string {
	t.Helper()
	c.Send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
	m := c.Expect(`<enabled xmlns='urn:xmpp:sm:3' id='[^']+' resume='true'[^>]*/>`)
	return regexp.MustCompile(`id='([^']+)'`).FindStringSubmatch(m)[1]
}

// Whether a session fetched the list lasts as long as the session: a
// resumed stream (XEP-0198) still gets pushes, and a new session on the
// same resource after a logout gets none until it fetches the list.
func TestInterestLastsTheSession(t *testing.T) {
	ts := newServer(t, &blocking.Module{})
	desk := ts.Login(t, "alice", "pw", "desk")
	phone := ts.Login(t, "alice", "pw", "phone")
	id := enableResume(t, phone)
	phone.Send("<iq type='get' id='l1'><blocklist xmlns='urn:xmpp:blocking'/></iq>")
	phone.Expect(`id='l1'`)

	resumed := ts.Dial(t, ts.Addr)
	resumed.Authenticate("alice", "pw")
	resumed.Send("<resume xmlns='urn:xmpp:sm:3' previd='" + id + "' h='0'/>")
	resumed.Expect(`<resumed xmlns='urn:xmpp:sm:3' [^>]*/>`)
	block(desk, "b1", "mallory@localhost")
	resumed.Expect(`<block xmlns='urn:xmpp:blocking'><item jid='mallory@localhost'/></block>`)

	resumed.Send("</stream:stream>")
	resumed.ExpectClosed()
	phone = ts.Login(t, "alice", "pw", "phone")
	unblock(desk, "u1", "mallory@localhost")
	if got := sync(phone, "s1"); strings.Contains(got, "urn:xmpp:blocking") {
		t.Errorf("a new session got a push without fetching the list: %s", got)
	}
}
