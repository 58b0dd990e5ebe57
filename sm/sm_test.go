package sm_test

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/offline"
	"github.com/treff-im/treff/sm"
	"github.com/treff-im/treff/trefftest"
)

func newTestServer(t *testing.T, configure func(*treff.Server)) *trefftest.Server {
	ts := trefftest.NewServer(t, configure)
	ts.AddUser(t, "alice", "alicepw")
	ts.AddUser(t, "bob", "bobpw")
	return ts
}

func header(to string) string { return trefftest.Header(to) }

func plainAuth(user, pass string) string { return trefftest.PlainAuth(user, pass) }

// enableResume enables stream management with resumption and returns the
// resumption id.
func enableResume(t *testing.T, c *trefftest.Client) string {
	t.Helper()
	c.Send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
	m := c.Expect(`<enabled xmlns='urn:xmpp:sm:3' id='[^']+' resume='true' max='\d+'/>`)
	return regexp.MustCompile(`id='([^']+)'`).FindStringSubmatch(m)[1]
}

func TestSMFeatureAndEnableBeforeBind(t *testing.T) {
	ts := newTestServer(t, nil)
	c := ts.Dial(t, ts.Addr)
	c.StartTLS()
	c.Send(header("localhost"))
	c.Expect(`</stream:features>`)
	c.Send(plainAuth("alice", "alicepw"))
	c.Expect(`<success`)
	c.Send(header("localhost"))
	f := c.Expect(`</stream:features>`)
	for _, want := range []string{"<sm xmlns='urn:xmpp:sm:3'/>"} {
		if !strings.Contains(f, want) {
			t.Errorf("features lack %s: %s", want, f)
		}
	}
	c.Send("<enable xmlns='urn:xmpp:sm:3'/>")
	c.Expect(`<failed xmlns='urn:xmpp:sm:3'><unexpected-request xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>`)
	c.Send("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>r</resource></bind></iq>")
	c.Expect(`</iq>`)
	c.Send("<enable xmlns='urn:xmpp:sm:3'/>")
	c.Expect(`<enabled xmlns='urn:xmpp:sm:3'/>`)
	c.Send("<enable xmlns='urn:xmpp:sm:3'/>")
	c.Expect(`<failed xmlns='urn:xmpp:sm:3'><unexpected-request`)
}

func TestSMAcknowledgements(t *testing.T) {
	ts := newTestServer(t, nil)
	alice := ts.Login(t, "alice", "alicepw", "phone")
	bob := ts.Login(t, "bob", "bobpw", "desk")
	alice.Send("<enable xmlns='urn:xmpp:sm:3'/>")
	alice.Expect(`<enabled xmlns='urn:xmpp:sm:3'/>`)
	// The server asks for an acknowledgement with what it sends.
	bob.Send("<message to='alice@localhost/phone' id='m1' type='chat'><body>one</body></message>")
	alice.Expect(`id='m1'.*</message><r xmlns='urn:xmpp:sm:3'/>`)
	alice.Send("<a xmlns='urn:xmpp:sm:3' h='1'/>")
	// Our own count: three stanzas handled.
	alice.Send("<iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
	alice.Send("<presence/>")
	alice.Send("<message to='bob@localhost/desk' id='m2'><body>two</body></message>")
	alice.Send("<r xmlns='urn:xmpp:sm:3'/>")
	alice.Expect(`<a xmlns='urn:xmpp:sm:3' h='3'/>`)
	bob.Expect(`id='m2'`)
	// An acknowledgement of more than was sent ends the stream.
	alice.Send("<a xmlns='urn:xmpp:sm:3' h='7'/>")
	alice.Expect(`<stream:error><undefined-condition xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>[^<]*</text><handled-count-too-high xmlns='urn:xmpp:sm:3' h='7' send-count='\d+'/></stream:error>`)
}

func TestSMResume(t *testing.T) {
	closed := make(trefftest.ClosedSessions, 8)
	ts := newTestServer(t, func(s *treff.Server) { s.Modules = []treff.Module{closed} })
	phone := ts.Login(t, "alice", "alicepw", "phone")
	id := enableResume(t, phone)
	phone.Send("<presence><priority>5</priority></presence>")
	bob := ts.Login(t, "bob", "bobpw", "desk")
	bob.Send("<message to='alice@localhost/phone' id='m1' type='chat'><body>one</body></message>")
	phone.Expect(`id='m1'`)
	// The phone loses its connection without closing the stream; the
	// server keeps the session.
	phone.Conn().Close()
	ts.WaitHibernating(t, "alice@localhost/phone")
	if n := len(ts.Server.OnlineSessions()); n != 2 {
		t.Fatalf("%d sessions online while the phone hibernates, want 2", n)
	}
	bob.Send("<message to='alice@localhost' id='m2' type='chat'><body>two</body></message>")
	bob.Send("<message to='alice@localhost/phone' id='m3' type='chat'><body>three</body></message>")
	bob.Send("<iq type='get' id='sync' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
	bob.Expect(`id='sync'`)

	// Resuming with a wrong id fails; the client may then bind.
	other := ts.Dial(t, ts.Addr)
	other.Authenticate("alice", "alicepw")
	other.Send("<resume xmlns='urn:xmpp:sm:3' previd='nope' h='0'/>")
	other.Expect(`<failed xmlns='urn:xmpp:sm:3'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>`)
	// Bob may not take alice's session.
	thief := ts.Dial(t, ts.Addr)
	thief.Authenticate("bob", "bobpw")
	thief.Send("<resume xmlns='urn:xmpp:sm:3' previd='" + id + "' h='0'/>")
	thief.Expect(`<failed xmlns='urn:xmpp:sm:3'><item-not-found`)

	// The phone had acknowledged nothing: m1 comes again, then m2 and m3.
	phone2 := ts.Dial(t, ts.Addr)
	phone2.Authenticate("alice", "alicepw")
	phone2.Send("<resume xmlns='urn:xmpp:sm:3' previd='" + id + "' h='0'/>")
	got := phone2.Expect(`<resumed xmlns='urn:xmpp:sm:3' h='1' previd='` + regexp.QuoteMeta(id) + `'/>`)
	_ = got
	got = phone2.Expect(`id='m3'.*?</message>`)
	if !regexp.MustCompile(`(?s)id='m1'.*id='m2'.*id='m3'`).MatchString(got) {
		t.Errorf("retransmission out of order: %s", got)
	}
	// Acknowledge them; the session goes on with its priority and
	// presence as before.
	phone2.Send("<a xmlns='urn:xmpp:sm:3' h='3'/>")
	bob.Send("<message to='alice@localhost' id='m4' type='chat'><body>four</body></message>")
	phone2.Expect(`id='m4'`)
	s := ts.Session(jid.MustParse("alice@localhost/phone"))
	if s == nil || !s.Available() || s.Priority() != 5 {
		t.Fatalf("resumed session lost its state: %v", s)
	}
	// A clean close ends it for good.
	phone2.Send("<a xmlns='urn:xmpp:sm:3' h='4'/></stream:stream>")
	phone2.Expect(`</stream:stream>`)
	closed.Wait(t, "alice@localhost/phone")
	again := ts.Dial(t, ts.Addr)
	again.Authenticate("alice", "alicepw")
	again.Send("<resume xmlns='urn:xmpp:sm:3' previd='" + id + "' h='4'/>")
	again.Expect(`<failed xmlns='urn:xmpp:sm:3'><item-not-found`)
}

func TestSMResumeReplacesLiveConnection(t *testing.T) {
	ts := newTestServer(t, nil)
	phone := ts.Login(t, "alice", "alicepw", "phone")
	id := enableResume(t, phone)
	bob := ts.Login(t, "bob", "bobpw", "desk")
	bob.Send("<message to='alice@localhost/phone' id='m1' type='chat'><body>one</body></message>")
	phone.Expect(`id='m1'.*<r xmlns='urn:xmpp:sm:3'/>`)
	phone.Send("<a xmlns='urn:xmpp:sm:3' h='1'/>")
	// The phone changed networks; its old connection still looks alive.
	phone2 := ts.Dial(t, ts.Addr)
	phone2.Authenticate("alice", "alicepw")
	phone2.Send("<resume xmlns='urn:xmpp:sm:3' previd='" + id + "' h='1'/>")
	phone2.Expect(`<resumed xmlns='urn:xmpp:sm:3' h='0' previd='[^']+'/>`)
	phone.ExpectClosed()
	bob.Send("<message to='alice@localhost/phone' id='m2' type='chat'><body>two</body></message>")
	got := phone2.Expect(`id='m2'`)
	if strings.Contains(got, "m1") {
		t.Errorf("an acknowledged stanza was sent again: %s", got)
	}
}

func TestSMExpiredSessionReroutes(t *testing.T) {
	closed := make(trefftest.ClosedSessions, 8)
	ts := newTestServer(t, func(s *treff.Server) {
		s.Modules = []treff.Module{&sm.Module{ResumeTimeout: 300 * time.Millisecond}, &offline.Module{}, closed}
	})
	laptop := ts.Login(t, "alice", "alicepw", "laptop")
	laptop.Send("<presence><priority>-1</priority></presence>")
	phone := ts.Login(t, "alice", "alicepw", "phone")
	id := enableResume(t, phone)
	phone.Send("<presence><priority>1</priority></presence>")
	bob := ts.Login(t, "bob", "bobpw", "desk")
	bob.Send("<message to='alice@localhost/phone' id='m1' type='chat'><body>one</body></message>")
	phone.Expect(`id='m1'`)
	phone.Conn().Close()
	ts.WaitLost(t, "alice@localhost/phone")
	bob.Send("<message to='alice@localhost/phone' id='m2' type='chat'><body>two</body></message>")
	bob.Send("<iq type='get' id='q1' to='alice@localhost/phone'><ping xmlns='urn:xmpp:ping'/></iq>")
	// Not resumed in time: the messages go to the other resource (a
	// full-JID message is treated as if sent to the bare JID, and the
	// laptop's negative priority makes it take no bare-JID messages, so
	// they go offline), the IQ is answered with an error.
	bob.Expect(`<iq type='error' id='q1'[^>]*><error type='cancel'><service-unavailable`)
	closed.Wait(t, "alice@localhost/phone")
	late := ts.Dial(t, ts.Addr)
	late.Authenticate("alice", "alicepw")
	late.Send("<resume xmlns='urn:xmpp:sm:3' previd='" + id + "' h='0'/>")
	late.Expect(`<failed xmlns='urn:xmpp:sm:3'><item-not-found`)
	late.Send("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>new</resource></bind></iq>")
	late.Expect(`</iq>`)
	late.Send("<presence/>")
	got := late.Expect(`id='m2'.*?</message>`)
	if !strings.Contains(got, "id='m1'") || !strings.Contains(got, "urn:xmpp:delay") {
		t.Errorf("unacknowledged messages not stored offline: %s", got)
	}
	if p := laptop.Pending(); strings.Contains(p, "m1") {
		t.Errorf("negative-priority resource got bare-JID messages: %s", p)
	}
}

func TestSMExpiredSessionToOtherResource(t *testing.T) {
	ts := newTestServer(t, func(s *treff.Server) {
		s.Modules = []treff.Module{&sm.Module{ResumeTimeout: 200 * time.Millisecond}}
	})
	laptop := ts.Login(t, "alice", "alicepw", "laptop")
	laptop.Send("<presence/>")
	phone := ts.Login(t, "alice", "alicepw", "phone")
	enableResume(t, phone)
	phone.Send("<presence/>")
	bob := ts.Login(t, "bob", "bobpw", "desk")
	phone.Conn().Close()
	ts.WaitLost(t, "alice@localhost/phone")
	bob.Send("<message to='alice@localhost/phone' id='m1' type='chat'><body>one</body></message>")
	laptop.Expect(`<message from='bob@localhost/desk' to='alice@localhost/phone' id='m1' type='chat'><body>one</body></message>`)
}

// Settle tells the client the server's count and asks for its own, and
// returns when the client answers; a session without stream management
// settles at once, and a client that does not answer is given up on.
func TestSettle(t *testing.T) {
	m := &sm.Module{}
	ts := newTestServer(t, func(s *treff.Server) { s.Modules = []treff.Module{m, &offline.Module{}} })
	alice := ts.Login(t, "alice", "alicepw", "phone")
	bob := ts.Login(t, "bob", "bobpw", "desk")
	ctx := t.Context()
	if err := m.Settle(ctx, ts.Session(jid.MustParse("bob@localhost/desk"))); err != nil {
		t.Errorf("Settle without stream management: %v", err)
	}
	alice.Send("<enable xmlns='urn:xmpp:sm:3'/>")
	alice.Expect(`<enabled xmlns='urn:xmpp:sm:3'/>`)
	alice.Send("<message to='bob@localhost/desk' id='a1' type='chat'><body>one</body></message>")
	bob.Expect(`id='a1'`)
	bob.Send("<message to='alice@localhost/phone' id='b1' type='chat'><body>two</body></message>")
	alice.Expect(`id='b1'.*</message>`)
	s := ts.Session(jid.MustParse("alice@localhost/phone"))
	done := make(chan error, 1)
	go func() { done <- m.Settle(ctx, s) }()
	alice.Expect(`<a xmlns='urn:xmpp:sm:3' h='1'/><r xmlns='urn:xmpp:sm:3'/>`)
	select {
	case err := <-done:
		t.Fatalf("Settle returned before the client answered: %v", err)
	default:
	}
	alice.Send("<a xmlns='urn:xmpp:sm:3' h='1'/>")
	if err := <-done; err != nil {
		t.Errorf("Settle: %v", err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := m.Settle(short, s); err != context.DeadlineExceeded {
		t.Errorf("Settle with a silent client: %v", err)
	}
}
