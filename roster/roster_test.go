package roster_test

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/roster"
	"github.com/treff-im/treff/storage"
	"github.com/treff-im/treff/trefftest"
)

func newServer(t *testing.T, m *roster.Module) *trefftest.Server {
	if m == nil {
		m = &roster.Module{}
	}
	ts := trefftest.NewServer(t, func(s *treff.Server) { s.Modules = []treff.Module{m} })
	for _, u := range []string{"alice", "bob", "carol"} {
		ts.AddUser(t, u, "pw")
	}
	return ts
}

var verRe = regexp.MustCompile(`ver='([^']*)'`)

func TestRosterManagement(t *testing.T) {
	ts := newServer(t, &roster.Module{MaxItems: 2, MaxLength: 10})
	a1 := ts.Login(t, "alice", "pw", "one")
	a2 := ts.Login(t, "alice", "pw", "two")
	a3 := ts.Login(t, "alice", "pw", "quiet") // never asks for the roster: gets no pushes

	a1.Send("<iq type='get' id='g1'><query xmlns='jabber:iq:roster'/></iq>")
	empty := a1.Expect(`<iq type='result' id='g1' to='alice@localhost/one'><query xmlns='jabber:iq:roster' ver='[^']+'></query></iq>`)
	ver0 := verRe.FindStringSubmatch(empty)[1]
	a2.Send("<iq type='get' id='g2'><query xmlns='jabber:iq:roster'/></iq>")
	a2.Expect(`id='g2'`)

	a1.Send("<iq type='set' id='s1'><query xmlns='jabber:iq:roster'><item jid='Bob@LocalHost' name='Bobby'><group>Friends</group><group>A &amp; B</group></item></query></iq>")
	for _, c := range []*trefftest.Client{a1, a2} {
		push := c.Expect(`<iq type='set' id='push-[^']+' to='` + regexp.QuoteMeta(c.JID) + `'><query xmlns='jabber:iq:roster' ver='[^']+'><item jid='bob@localhost' name='Bobby' subscription='none'><group>Friends</group><group>A &amp; B</group></item></query></iq>`)
		if v := verRe.FindAllStringSubmatch(push, -1); v[len(v)-1][1] == ver0 {
			t.Errorf("version did not change: %s", push)
		}
	}
	a1.Expect(`<iq type='result' id='s1' to='alice@localhost/one'/>`)

	// Versioning: a current ver gets an empty result, an old one the roster.
	a1.Send("<iq type='get' id='g3'><query xmlns='jabber:iq:roster' ver='" + ver0 + "'/></iq>")
	full := a1.Expect(`id='g3'.*?</iq>`)
	if !strings.Contains(full, "<item jid='bob@localhost'") {
		t.Errorf("old ver got %s", full)
	}
	cur := verRe.FindStringSubmatch(full)[1]
	a1.Send("<iq type='get' id='g4'><query xmlns='jabber:iq:roster' ver='" + cur + "'/></iq>")
	a1.Expect(`<iq type='result' id='g4' to='alice@localhost/one'/>`)

	// Errors.
	for _, tc := range []struct{ in, want string }{
		{"<item jid='carol@localhost' name='far too long a name'/>", "not-acceptable"},
		{"<item jid='carol@localhost'><group>x</group><group>x</group></item>", "bad-request"},
		{"<item jid='carol@localhost'><group></group></item>", "not-acceptable"},
		{"<item jid='carol@localhost'/><item jid='dave@localhost'/>", "bad-request"},
		{"<item jid='a@b@c'/>", "bad-request"},
		{"<item jid='alice@localhost'/>", "not-allowed"},
		{"<item jid='nobody@localhost' subscription='remove'/>", "item-not-found"},
	} {
		a1.Send("<iq type='set' id='e'><query xmlns='jabber:iq:roster'>" + tc.in + "</query></iq>")
		a1.Expect(`<iq type='error' id='e'[^>]*><error type='[a-z]+'><` + tc.want + ` `)
	}
	a1.Send("<iq type='set' id='c'><query xmlns='jabber:iq:roster'><item jid='carol@localhost'/></query></iq>")
	a1.Expect(`id='c'`)
	a1.Send("<iq type='set' id='full'><query xmlns='jabber:iq:roster'><item jid='dave@localhost'/></query></iq>")
	a1.Expect(`<iq type='error' id='full'[^>]*><error type='cancel'><not-allowed `)
	// Another user's roster is not ours to read.
	a1.Send("<iq type='get' id='other' to='bob@localhost'><query xmlns='jabber:iq:roster'/></iq>")
	a1.Expect(`<iq type='error' id='other'[^>]*><error type='auth'><forbidden `)

	// Remove.
	a1.Send("<iq type='set' id='r'><query xmlns='jabber:iq:roster'><item jid='bob@localhost' subscription='remove'/></query></iq>")
	a2.Expect(`<item jid='bob@localhost' subscription='remove'/>`)
	a1.Expect(`id='r'`)
	if _, err := ts.Store.RosterItem(context.Background(), "alice@localhost", "bob@localhost"); err != storage.ErrNotFound && !strings.Contains(errString(err), "not found") {
		t.Errorf("item still stored: %v", err)
	}
	a3.Send("<iq type='get' id='q' to='localhost'><x xmlns='urn:x'/></iq>")
	if got := a3.Expect(`id='q'`); strings.Contains(got, "jabber:iq:roster") {
		t.Errorf("uninterested resource got a push: %s", got)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// RFC 6121 2.6.1 and 3.4.1: roster versioning and subscription
// pre-approval are announced as stream features after authentication.
func TestStreamFeatures(t *testing.T) {
	ts := newServer(t, &roster.Module{})
	c := ts.Dial(t, ts.Addr)
	c.StartTLS()
	c.Send(trefftest.Header("localhost"))
	c.Expect(`</stream:features>`)
	c.Send(trefftest.PlainAuth("alice", "pw"))
	c.Expect(`<success`)
	c.Send(trefftest.Header("localhost"))
	f := c.Expect(`</stream:features>`)
	for _, want := range []string{"<ver xmlns='urn:xmpp:features:rosterver'/>", "<sub xmlns='urn:xmpp:features:pre-approval'/>"} {
		if !strings.Contains(f, want) {
			t.Errorf("features lack %s: %s", want, f)
		}
	}
}

// enableResume enables stream management with resumption (XEP-0198) on c
// and returns the resumption id.
func enableResume(t *testing.T, c *trefftest.Client) string {
	t.Helper()
	c.Send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
	m := c.Expect(`<enabled xmlns='urn:xmpp:sm:3' id='[^']+' resume='true'[^>]*/>`)
	return regexp.MustCompile(`id='([^']+)'`).FindStringSubmatch(m)[1]
}

// resume resumes old's session on a new connection, as a client that
// changed networks does; the server closes the old connection.
func resume(t *testing.T, ts *trefftest.Server, old *trefftest.Client, user, id string) *trefftest.Client {
	t.Helper()
	c := ts.Dial(t, ts.Addr)
	c.Authenticate(user, "pw")
	c.Send("<resume xmlns='urn:xmpp:sm:3' previd='" + id + "' h='0'/>")
	c.Expect(`<resumed xmlns='urn:xmpp:sm:3' [^>]*/>`)
	c.JID = old.JID
	return c
}

// Whether a session requested the roster lasts as long as the session: a
// resumed stream (XEP-0198) still gets pushes, and a new session on the
// same resource after a logout starts without having asked.
func TestInterestLastsTheSession(t *testing.T) {
	ts := newServer(t, nil)
	desk := ts.Login(t, "alice", "pw", "desk")
	phone := ts.Login(t, "alice", "pw", "phone")
	id := enableResume(t, phone)
	phone.Send("<iq type='get' id='g1'><query xmlns='jabber:iq:roster'/></iq>")
	phone.Expect(`id='g1'`)

	phone = resume(t, ts, phone, "alice", id)
	desk.Send("<iq type='set' id='s1'><query xmlns='jabber:iq:roster'><item jid='bob@localhost'/></query></iq>")
	desk.Expect(`id='s1'`)
	phone.Expect(`<item jid='bob@localhost' subscription='none'/>`)

	phone.Send("</stream:stream>")
	phone.ExpectClosed()
	phone = ts.Login(t, "alice", "pw", "phone")
	desk.Send("<iq type='set' id='s2'><query xmlns='jabber:iq:roster'><item jid='carol@localhost'/></query></iq>")
	desk.Expect(`id='s2'`)
	phone.Send("<iq type='get' id='q' to='localhost'><x xmlns='urn:x'/></iq>")
	if got := phone.Expect(`id='q'`); strings.Contains(got, "jabber:iq:roster") {
		t.Errorf("a new session got a push without asking for the roster: %s", got)
	}
}
