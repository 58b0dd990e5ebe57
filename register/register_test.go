package register_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/register"
	"github.com/treff-im/treff/roster"
	"github.com/treff-im/treff/storage"
	"github.com/treff-im/treff/trefftest"
	"mellium.im/xmpp/jid"
)

func newServer(t *testing.T, m *register.Module) *trefftest.Server {
	t.Helper()
	return trefftest.NewServer(t, func(s *treff.Server) { s.Modules = []treff.Module{m, &roster.Module{}} })
}

// preAuth opens a TLS-protected stream that has not authenticated.
func preAuth(t *testing.T, ts *trefftest.Server) *trefftest.Client {
	t.Helper()
	c := ts.Dial(t, ts.Addr)
	c.StartTLS()
	c.Send(trefftest.Header("localhost"))
	c.Expect(`</stream:features>`)
	return c
}

func reg(user, pw string) string {
	return "<iq type='set' id='r'><query xmlns='jabber:iq:register'><username>" + user + "</username><password>" + pw + "</password></query></iq>"
}

func TestRegistration(t *testing.T) {
	m := &register.Module{Policy: register.Open, PerAddress: register.Limit{N: 100, Period: time.Hour}}
	ts := newServer(t, m)
	c := ts.Dial(t, ts.Addr)
	c.StartTLS()
	c.Send(trefftest.Header("localhost"))
	c.Expect(`<register xmlns='http://jabber.org/features/iq-register'/>`)

	c.Send("<iq type='get' id='g'><query xmlns='jabber:iq:register'/></iq>")
	c.Expect(`<iq type='result' id='g'[^>]*><query xmlns='jabber:iq:register'><instructions>[^<]+</instructions><username/><password/><x xmlns='jabber:x:data' type='form'>.*?var='username'.*?var='password'.*?</query></iq>`)

	c.Send(reg("Alice", "alice-secret"))
	c.Expect(`<iq type='result' id='r'`)
	for _, tc := range []struct{ in, want string }{
		{reg("alice", "other-secret"), `<conflict xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><text[^>]*>this username is taken`},
		{reg("Admin", "admin-secret"), `<conflict xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><text[^>]*>this username is reserved`},
		{reg("bob", "short"), `<not-acceptable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><text[^>]*>the password must have at least 8 characters`},
		{reg("bob@x", "bob-secret"), `<not-acceptable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><text[^>]*>this username is not allowed`},
		{"<iq type='set' id='r'><query xmlns='jabber:iq:register'><username>bob</username></query></iq>", `<not-acceptable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><text[^>]*>a username and a password are required`},
		{"<iq type='set' id='r'><query xmlns='jabber:iq:register'><remove/></query></iq>", `<not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>`},
	} {
		c.Send(tc.in)
		c.Expect(`<iq type='error' id='r'[^>]*><error type='[a-z]+'>` + tc.want)
	}
	// The data form variant.
	c.Send("<iq type='set' id='f'><query xmlns='jabber:iq:register'><x xmlns='jabber:x:data' type='submit'>" +
		"<field var='FORM_TYPE'><value>jabber:iq:register</value></field><field var='username'><value>carol</value></field>" +
		"<field var='password'><value>carol-secret</value></field></x></query></iq>")
	c.Expect(`<iq type='result' id='f'`)
	// Two accounts made; the refusals do not count.
	if n := m.Registered(); n != 2 {
		t.Errorf("Registered() = %d, want 2", n)
	}

	ts.Login(t, "alice", "alice-secret", "r")
	ts.Login(t, "carol", "carol-secret", "r")
}

func TestClosedAndSwitched(t *testing.T) {
	m := &register.Module{}
	ts := newServer(t, m)
	c := preAuth(t, ts)
	if strings.Contains(c.Pending(), "iq-register") {
		t.Error("registration offered while closed")
	}
	c.Send(reg("dave", "dave-secret"))
	c.Expect(`<iq type='error' id='r'[^>]*><error type='cancel'><not-allowed xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><text[^>]*>Registration is closed for now.</text>`)
	if err := m.SetPolicy(register.Open); err != nil {
		t.Fatal(err)
	}
	c.Send(reg("dave", "dave-secret"))
	c.Expect(`<iq type='result' id='r'`)
	if err := m.SetPolicy("sometimes"); err == nil {
		t.Error("unknown policy accepted")
	}
}

func TestRateLimits(t *testing.T) {
	m := &register.Module{Policy: register.Open, PerAddress: register.Limit{N: 2, Period: time.Hour}}
	ts := newServer(t, m)
	c := preAuth(t, ts)
	for _, u := range []string{"u1", "u2"} {
		c.Send(reg(u, "long-enough"))
		c.Expect(`<iq type='result' id='r'`)
	}
	c.Send(reg("u3", "long-enough"))
	c.Expect(`<error type='wait'><resource-constraint xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>`)
	// Only accounts created count: a taken name gives its slot back.
	m3 := &register.Module{Policy: register.Open, PerAddress: register.Limit{N: 2, Period: time.Hour}}
	ts3 := newServer(t, m3)
	c3 := preAuth(t, ts3)
	for _, step := range []struct{ user, want string }{
		{"newbie", `<iq type='result' id='r'`}, {"newbie", `this username is taken`},
		{"fresh1", `<iq type='result' id='r'`}, {"fresh2", `resource-constraint`},
	} {
		c3.Send(reg(step.user, "long-enough"))
		c3.Expect(step.want)
	}
	// A refused attempt does not count against the limit.
	m2 := &register.Module{Policy: register.Open, Global: register.Limit{N: 1, Period: time.Hour}}
	ts2 := newServer(t, m2)
	c2 := preAuth(t, ts2)
	c2.Send(reg("x", "short"))
	c2.Expect(`not-acceptable`)
	c2.Send(reg("x1", "long-enough"))
	c2.Expect(`<iq type='result' id='r'`)
	// Over the global limit, registration falls back to invitations: an
	// uninvited one is told so, an invited one passes.
	c2.Send(reg("x2", "long-enough"))
	c2.Expect(`<error type='cancel'><not-allowed xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><text[^>]*>Registration is by invitation only for now: many accounts were made recently.`)
	inv, _, err := m2.NewInvite(context.Background(), "localhost", "", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c4 := preAuth(t, ts2)
	c4.Send("<iq type='set' id='pa'><preauth xmlns='urn:xmpp:pars:0' token='" + inv.Token + "'/></iq>")
	c4.Expect(`<iq type='result' id='pa'`)
	c4.Send(reg("x3", "long-enough"))
	c4.Expect(`<iq type='result' id='r'`)
	// The per-address limit passes invitations too.
	m5 := &register.Module{Policy: register.Open, PerAddress: register.Limit{N: 1, Period: time.Hour}}
	ts5 := newServer(t, m5)
	c5 := preAuth(t, ts5)
	c5.Send(reg("y1", "long-enough"))
	c5.Expect(`<iq type='result' id='r'`)
	inv5, _, err := m5.NewInvite(context.Background(), "localhost", "", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c6 := preAuth(t, ts5)
	c6.Send("<iq type='set' id='pa'><preauth xmlns='urn:xmpp:pars:0' token='" + inv5.Token + "'/></iq>")
	c6.Expect(`<iq type='result' id='pa'`)
	c6.Send(reg("y2", "long-enough"))
	c6.Expect(`<iq type='result' id='r'`)
	c6.Send(reg("y3", "long-enough"))
	c6.Expect(`resource-constraint`)
}

func TestPasswordChangeAndRemoval(t *testing.T) {
	m := &register.Module{Policy: register.Open}
	ts := newServer(t, m)
	ts.AddUser(t, "erin", "erin-secret")
	ts.AddUser(t, "frank", "frank-secret")
	erin := ts.Login(t, "erin", "erin-secret", "r")
	erin.Send("<iq type='get' id='g'><query xmlns='jabber:iq:register'/></iq>")
	erin.Expect(`<iq type='result' id='g'[^>]*><query xmlns='jabber:iq:register'><registered/><username>erin</username></query></iq>`)
	erin.Send("<iq type='set' id='p'><query xmlns='jabber:iq:register'><username>frank</username><password>new-secret</password></query></iq>")
	erin.Expect(`<iq type='error' id='p'.*?<not-authorized`)
	erin.Send("<iq type='set' id='p'><query xmlns='jabber:iq:register'><username>erin</username><password>short</password></query></iq>")
	erin.Expect(`<iq type='error' id='p'.*?<not-acceptable`)
	erin.Send("<iq type='set' id='p' to='frank@localhost'><query xmlns='jabber:iq:register'><remove/></query></iq>")
	erin.Expect(`<iq type='error' id='p'.*?<forbidden`)
	erin.Send("<iq type='set' id='p'><query xmlns='jabber:iq:register'><username>erin</username><password>erin-new-secret</password></query></iq>")
	erin.Expect(`<iq type='result' id='p'`)
	if err := ts.Authenticator.CheckPassword(context.Background(), "erin@localhost", "erin-secret"); err == nil {
		t.Error("old password still works")
	}
	ts.Login(t, "erin", "erin-new-secret", "two")

	erin.Send("<iq type='set' id='x'><query xmlns='jabber:iq:register'><remove/></query></iq>")
	erin.Expect(`<iq type='result' id='x'[^>]*/>.*<stream:error><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>`)
	erin.ExpectClosed()
	if _, err := ts.Store.Account(context.Background(), "erin@localhost"); err == nil {
		t.Error("account still stored")
	}
}

// The name of a deleted account is held back from registration.
func TestDeletedNameHeld(t *testing.T) {
	m := &register.Module{Policy: register.Open}
	ts := newServer(t, m)
	ts.AddUser(t, "gina", "gina-secret")
	if err := ts.DeleteAccount(context.Background(), jid.MustParse("gina@localhost"), "bye"); err != nil {
		t.Fatal(err)
	}
	c := preAuth(t, ts)
	c.Send(reg("Gina", "new-gina-secret"))
	c.Expect(`<conflict xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><text[^>]*>this username belonged to an account deleted recently`)
	// Other names are not affected; without a hold the name is free.
	m2 := &register.Module{Policy: register.Open, HoldDeleted: -1}
	ts2 := newServer(t, m2)
	ts2.AddUser(t, "gina", "gina-secret")
	if err := ts2.DeleteAccount(context.Background(), jid.MustParse("gina@localhost"), "bye"); err != nil {
		t.Fatal(err)
	}
	c2 := preAuth(t, ts2)
	c2.Send(reg("gina", "new-gina-secret"))
	c2.Expect(`<iq type='result' id='r'`)
}

func TestInviteOnly(t *testing.T) {
	m := &register.Module{Policy: register.Invite}
	ts := newServer(t, m)
	ctx := context.Background()
	c := preAuth(t, ts) // the server has set its modules up
	inv, link, err := m.NewInvite(ctx, "localhost", "", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if link != "xmpp:localhost?register;preauth="+inv.Token || len(inv.Token) < 20 {
		t.Errorf("link %q", link)
	}
	if !inv.Expires.Equal(inv.Created.Add(time.Hour)) {
		t.Errorf("invitation created %v expires %v, want an hour later", inv.Created, inv.Expires)
	}
	preauth := func(token string) string {
		return "<iq type='set' id='pa'><preauth xmlns='urn:xmpp:pars:0' token='" + token + "'/></iq>"
	}

	// Without a token: refused.
	c.Send(reg("hank", "hank-secret"))
	c.Expect(`<not-allowed xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><text[^>]*>Registration needs an invitation.</text>`)
	c.Send(preauth("WRONG"))
	c.Expect(`<iq type='error' id='pa'.*?<item-not-found`)

	// With a valid token: one account, once.
	c.Send(preauth(inv.Token))
	c.Expect(`<iq type='result' id='pa'`)
	c.Send(reg("hank", "hank-secret"))
	c.Expect(`<iq type='result' id='r'`)
	ts.Login(t, "hank", "hank-secret", "r")
	c2 := preAuth(t, ts)
	c2.Send(preauth(inv.Token))
	c2.Expect(`<iq type='error' id='pa'.*?<item-not-found`)
	c2.Send(reg("ivan", "ivan-secret"))
	c2.Expect(`Registration needs an invitation.`)

	// A token presented on one stream does not open another.
	inv2, _, _ := m.NewInvite(ctx, "localhost", "", time.Hour)
	c3 := preAuth(t, ts)
	c3.Send(preauth(inv2.Token))
	c3.Expect(`<iq type='result' id='pa'`)
	c4 := preAuth(t, ts)
	c4.Send(reg("ivan", "ivan-secret"))
	c4.Expect(`Registration needs an invitation.`)
	// A failed registration gives the invitation back.
	c3.Send(reg("hank", "other-secret"))
	c3.Expect(`this username is taken`)
	c3.Send(reg("ivan", "ivan-secret"))
	c3.Expect(`<iq type='result' id='r'`)

	// An expired invitation. The store decides expiry by its own clock
	// (time.Now) and neither it nor the module takes another, so rather
	// than wait for one to expire the test stores one that already has
	// (NewInvite's validity is checked above).
	past := time.Now().UTC().Add(-time.Hour)
	inv3 := storage.Invite{Token: "EXPIREDINVITATIONTOKEN", Domain: "localhost", Created: past.Add(-time.Hour), Expires: past}
	if err := ts.Store.(storage.Invites).CreateInvite(ctx, inv3); err != nil {
		t.Fatal(err)
	}
	c5 := preAuth(t, ts)
	c5.Send(preauth(inv3.Token))
	c5.Expect(`<iq type='error' id='pa'.*?<item-not-found`)
}

// pairSharer is one end of an in-process link between two servers'
// modules: what one publishes, the other receives at once.
type pairSharer struct {
	peer  *pairSharer
	recv  func([]byte)
	state func() [][]byte
	mu    sync.Mutex
	sent  []string
}

func (p *pairSharer) Share(topic string, recv func([]byte), state func() [][]byte) (func([]byte), error) {
	p.mu.Lock()
	p.recv, p.state = recv, state
	p.mu.Unlock()
	// A server that starts gets the other's state (as cluster.Node asks
	// for it).
	p.peer.mu.Lock()
	peerState := p.peer.state
	p.peer.mu.Unlock()
	if peerState != nil {
		for _, e := range peerState() {
			recv(e)
		}
	}
	return func(b []byte) {
		p.mu.Lock()
		p.sent = append(p.sent, string(b))
		p.mu.Unlock()
		p.peer.mu.Lock()
		recv := p.peer.recv
		p.peer.mu.Unlock()
		if recv != nil {
			recv(b)
		}
	}, nil
}

func (p *pairSharer) HashKey(s string) string { return "hash(" + strings.ReplaceAll(s, ".", "-") + ")" }

// TestSharedLimits: two servers whose modules share their counts
// (Module.Shared) keep one per-address limit together: a registration on
// one counts on the other, a refused taken name is given back on both,
// and what travels is the hashed address.
func TestSharedLimits(t *testing.T) {
	s0, s1 := &pairSharer{}, &pairSharer{}
	s0.peer, s1.peer = s1, s0
	lim := register.Limit{N: 3, Period: time.Hour}
	ts0 := newServer(t, &register.Module{Policy: register.Open, PerAddress: lim, Shared: s0})
	ts1 := newServer(t, &register.Module{Policy: register.Open, PerAddress: lim, Shared: s1})
	c0, c1 := preAuth(t, ts0), preAuth(t, ts1)
	c0.Send(reg("a", "long-enough"))
	c0.Expect(`<iq type='result' id='r'`)
	c1.Send(reg("b", "long-enough"))
	c1.Expect(`<iq type='result' id='r'`)
	// The servers have separate stores: the name is taken on ts1 only,
	// and the refusal gives its count back on both.
	c1.Send(reg("b", "long-enough"))
	c1.Expect(`this username is taken`)
	c0.Send(reg("c", "long-enough"))
	c0.Expect(`<iq type='result' id='r'`)
	c1.Send(reg("d", "long-enough"))
	c1.Expect(`<error type='wait'><resource-constraint xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>`)
	c0.Send(reg("d", "long-enough"))
	c0.Expect(`resource-constraint`)
	s0.mu.Lock()
	s1.mu.Lock()
	defer s0.mu.Unlock()
	defer s1.mu.Unlock()
	want0 := []string{"+hash(127-0-0-1)", "+hash(127-0-0-1)"}
	want1 := []string{"+hash(127-0-0-1)", "+hash(127-0-0-1)", "-hash(127-0-0-1)"}
	if strings.Join(s0.sent, " ") != strings.Join(want0, " ") || strings.Join(s1.sent, " ") != strings.Join(want1, " ") {
		t.Errorf("published %q and %q, want %q and %q", s0.sent, s1.sent, want0, want1)
	}
}

// TestSharedState: a server that starts after another has counted
// registrations gets its counts (the other's state) and keeps the limit.
func TestSharedState(t *testing.T) {
	s0, s1 := &pairSharer{}, &pairSharer{}
	s0.peer, s1.peer = s1, s0
	lim := register.Limit{N: 3, Period: time.Hour}
	ts0 := newServer(t, &register.Module{Policy: register.Open, PerAddress: lim, Global: register.Limit{N: 4, Period: time.Hour}, Shared: s0})
	c0 := preAuth(t, ts0)
	for _, u := range []string{"a", "b"} {
		c0.Send(reg(u, "long-enough"))
		c0.Expect(`<iq type='result' id='r'`)
	}
	ts1 := newServer(t, &register.Module{Policy: register.Open, PerAddress: lim, Global: register.Limit{N: 4, Period: time.Hour}, Shared: s1})
	c1 := preAuth(t, ts1)
	c1.Send(reg("c", "long-enough"))
	c1.Expect(`<iq type='result' id='r'`)
	c1.Send(reg("d", "long-enough"))
	c1.Expect(`<error type='wait'><resource-constraint xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>`)
	// ts0 counts "c" too (an event).
	c0.Send(reg("d", "long-enough"))
	c0.Expect(`resource-constraint`)
}
