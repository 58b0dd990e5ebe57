package carbons

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/trefftest"
)

// closedHook is a module that reports each session whose session-closed
// hooks ran: listed after carbons, it hears of a session once carbons'
// hook is done with it.
type closedHook chan *treff.Session

func (closedHook) Name() string { return "closed-hook" }

func (c closedHook) Setup(ctx context.Context, r *treff.Registry) error {
	r.OnSessionClosed(func(ctx context.Context, s *treff.Session) {
		select {
		case c <- s:
		default:
		}
	})
	return nil
}

// The carbons setting lasts as long as the session: a stream resumed
// with XEP-0198 keeps getting copies, the count behind the hooks' fast
// path drops when the session ends, and a new session on the same
// resource starts with carbons off.
func TestSettingLastsTheSession(t *testing.T) {
	m := &Module{}
	closed := make(closedHook, 1)
	ts := trefftest.NewServer(t, func(s *treff.Server) { s.Modules = []treff.Module{m, closed} })
	ts.AddUser(t, "alice", "pw")
	ts.AddUser(t, "bob", "pw")
	fence := func(c *trefftest.Client, id string) string {
		c.Send("<iq type='get' id='" + id + "' to='localhost'><q xmlns='urn:x'/></iq>")
		return c.Expect(`id='` + id + `'.*?</iq>`)
	}

	phone := ts.Login(t, "alice", "pw", "phone")
	phone.Send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
	id := regexp.MustCompile(`id='([^']+)'`).FindStringSubmatch(phone.Expect(`<enabled xmlns='urn:xmpp:sm:3' [^>]*/>`))[1]
	phone.Send("<iq type='set' id='e1'><enable xmlns='urn:xmpp:carbons:2'/></iq><presence/>")
	fence(phone, "f1")
	desk := ts.Login(t, "alice", "pw", "desk")
	desk.Send("<presence/>")
	fence(desk, "f2")
	bob := ts.Login(t, "bob", "pw", "pc")

	resumed := ts.Dial(t, ts.Addr)
	resumed.Authenticate("alice", "pw")
	resumed.Send("<resume xmlns='urn:xmpp:sm:3' previd='" + id + "' h='0'/>")
	resumed.Expect(`<resumed xmlns='urn:xmpp:sm:3' [^>]*/>`)
	bob.Send("<message to='alice@localhost/desk' type='chat' id='m1'><body>one</body></message>")
	desk.Expect(`id='m1'`)
	resumed.Expect(`<received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' [^>]*id='m1'>`)
	if n := m.enabled.Load(); n != 1 {
		t.Errorf("%d sessions counted with carbons on, want 1", n)
	}

	resumed.Send("</stream:stream>")
	if s := <-closed; s.JID().String() != "alice@localhost/phone" {
		t.Fatalf("closed %s, want the phone's session", s.JID())
	}
	if n := m.enabled.Load(); n != 0 {
		t.Errorf("%d sessions counted with carbons on after the only one ended, want 0", n)
	}

	phone = ts.Login(t, "alice", "pw", "phone")
	phone.Send("<presence/>")
	fence(phone, "f3")
	if s := ts.Session(jid.MustParse("alice@localhost/phone")); s == nil || m.Enabled(s) {
		t.Fatalf("new session %v: missing or with carbons on", s)
	}
	bob.Send("<message to='alice@localhost/desk' type='chat' id='m2'><body>two</body></message>")
	desk.Expect(`id='m2'`)
	fence(bob, "f5") // m2's copies, if any, are queued
	if got := fence(phone, "f4"); strings.Contains(got, NS) {
		t.Errorf("a new session got a carbon: %s", got)
	}
}
