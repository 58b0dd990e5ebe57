package offline_test

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/offline"
	"github.com/treff-im/treff/storage"
	"github.com/treff-im/treff/trefftest"
)

// hibernate logs alice's phone in with resumable stream management,
// makes bob@localhost/desk send it m1, and cuts the phone's connection
// without closing the stream. It returns the resumption id and bob.
func hibernate(t *testing.T, ts *trefftest.Server) (id string, bob *trefftest.Client) {
	t.Helper()
	phone := ts.Login(t, "alice", "pw", "phone")
	phone.Send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
	m := phone.Expect(`<enabled xmlns='urn:xmpp:sm:3' id='[^']+' resume='true'[^>]*/>`)
	id = regexp.MustCompile(`id='([^']+)'`).FindStringSubmatch(m)[1]
	phone.Send("<presence/>")
	bob = ts.Login(t, "bob", "pw", "desk")
	bob.Send("<message to='alice@localhost/phone' id='m1' type='chat'><body>one</body></message>")
	phone.Expect(`id='m1'`)
	phone.Conn().Close()
	ts.WaitHibernating(t, "alice@localhost/phone")
	return id, bob
}

// count returns how many messages alice has in offline storage.
func count(t *testing.T, ts *trefftest.Server) int {
	t.Helper()
	// Released messages are deleted together a moment later; Stop
	// deletes what waits (and leaves the module working).
	for _, m := range ts.Modules {
		if m, ok := m.(*offline.Module); ok {
			m.Stop(context.Background())
		}
	}
	n, err := ts.Store.CountOffline(context.Background(), "alice@localhost")
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func newKeeperServer(t *testing.T, limit int) *trefftest.Server {
	ts := trefftest.NewServer(t, func(s *treff.Server) {
		s.Modules = []treff.Module{&offline.Module{Limit: limit}}
	})
	ts.AddUser(t, "alice", "pw")
	ts.AddUser(t, "bob", "pw")
	return ts
}

// While a session hibernates, every message it is sent, and what its
// client had not acknowledged, is in offline storage before the sender's
// stanza counts as handled; the resumed client's acknowledgement deletes
// them, and they are not delivered a second time at the next login.
func TestKeptWhileHibernating(t *testing.T) {
	ts := newKeeperServer(t, 0)
	id, bob := hibernate(t, ts)
	// m1 was sent before the connection broke: kept on hibernation.
	if n := count(t, ts); n != 1 {
		t.Fatalf("%d stored when the session hibernates, want 1 (m1)", n)
	}

	bob.Send("<message to='alice@localhost/phone' id='m2' type='chat'><body>two</body></message>")
	bob.Send("<message to='alice@localhost' id='cs' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>")
	bob.Send("<message to='alice@localhost' id='m3'><body>three</body></message>")
	// Bob's stream management acknowledgement comes after his stanzas
	// were handled: by then they are stored.
	bob.Send("<enable xmlns='urn:xmpp:sm:3'/><r xmlns='urn:xmpp:sm:3'/>")
	bob.Expect(`<a xmlns='urn:xmpp:sm:3' h='0'/>`)
	if n := count(t, ts); n != 3 {
		t.Fatalf("%d messages stored while the phone hibernates, want 3 (m1, m2, m3; not the chat state)", n)
	}

	phone := ts.Dial(t, ts.Addr)
	phone.Authenticate("alice", "pw")
	phone.Send("<resume xmlns='urn:xmpp:sm:3' previd='" + id + "' h='0'/>")
	phone.Expect(`<resumed xmlns='urn:xmpp:sm:3' h='1'`)
	got := phone.Expect(`id='m3'.*?</message>`)
	if !regexp.MustCompile(`(?s)id='m1'.*id='m2'.*id='cs'.*id='m3'`).MatchString(got) {
		t.Fatalf("retransmission: %s", got)
	}
	if strings.Contains(got, "urn:xmpp:delay") {
		t.Errorf("a resumed session got offline copies: %s", got)
	}
	// Two acknowledged: m1 and m2 are released, m3 stays until its turn.
	phone.Send("<a xmlns='urn:xmpp:sm:3' h='2'/><r xmlns='urn:xmpp:sm:3'/>")
	phone.Expect(`<a xmlns='urn:xmpp:sm:3' h='1'/>`)
	if n := count(t, ts); n != 1 {
		t.Fatalf("%d stored after the client acknowledged m1 and m2, want 1", n)
	}
	phone.Send("<a xmlns='urn:xmpp:sm:3' h='4'/><r xmlns='urn:xmpp:sm:3'/>")
	phone.Expect(`<a xmlns='urn:xmpp:sm:3' h='1'/>`)
	if n := count(t, ts); n != 0 {
		t.Fatalf("%d stored after the client acknowledged everything, want 0", n)
	}
}

// A hibernating session that ends without being resumed leaves what was
// kept in offline storage (not a second copy): the next login gets each
// message once, with its delay stamp.
func TestKeptWhenNotResumed(t *testing.T) {
	closed := make(trefftest.ClosedSessions, 8)
	ts := trefftest.NewServer(t, func(s *treff.Server) {
		s.Modules = []treff.Module{&offline.Module{}, closed}
	})
	ts.AddUser(t, "alice", "pw")
	ts.AddUser(t, "bob", "pw")
	_, bob := hibernate(t, ts)
	bob.Send("<message to='alice@localhost/phone' id='m2' type='chat'><body>two</body></message>")
	bob.Send("<iq type='get' id='sync' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
	bob.Expect(`id='sync'`)
	if n := count(t, ts); n != 2 {
		t.Fatalf("%d stored, want 2 (m1 and m2)", n)
	}
	ts.Session(jid.MustParse("alice@localhost/phone")).Close("", "")
	closed.Wait(t, "alice@localhost/phone")
	if n := count(t, ts); n != 2 {
		t.Fatalf("%d stored after the session ended, want 2 (each once)", n)
	}
	c := ts.Login(t, "alice", "pw", "desk")
	c.Send("<presence/>")
	got := c.Expect(`id='m2'.*?</message>`)
	if strings.Count(got, "<delay") != 2 || strings.Count(got, "id='m1'") != 1 {
		t.Errorf("offline delivery: %s", got)
	}
	c.Sync()
	if strings.Contains(c.Pending(), "id='m") {
		t.Errorf("a message came twice: %s", c.Pending())
	}
}

// Ended without resumption while another session of the account is
// available: the kept messages go there and leave offline storage.
func TestKeptGoToOtherSession(t *testing.T) {
	closed := make(trefftest.ClosedSessions, 8)
	ts := trefftest.NewServer(t, func(s *treff.Server) {
		s.Modules = []treff.Module{&offline.Module{}, closed}
	})
	ts.AddUser(t, "alice", "pw")
	ts.AddUser(t, "bob", "pw")
	hibernate(t, ts)
	if n := count(t, ts); n != 1 {
		t.Fatalf("%d stored when the session hibernates, want 1 (m1)", n)
	}
	// While the phone may come back, m1 is its own: the desk's initial
	// presence does not fetch it from offline storage.
	desk := ts.Login(t, "alice", "pw", "desk")
	desk.Send("<presence/>")
	desk.Sync()
	if strings.Contains(desk.Pending(), "id='m1'") {
		t.Fatalf("a new session got a hibernating session's message: %s", desk.Pending())
	}
	ts.Session(jid.MustParse("alice@localhost/phone")).Close("", "")
	closed.Wait(t, "alice@localhost/phone")
	desk.Expect(`<message from='bob@localhost/desk' to='alice@localhost/phone' id='m1' type='chat'><body>one</body></message>`)
	if n := count(t, ts); n != 0 {
		t.Fatalf("%d stored after another session took them, want 0", n)
	}
}

// A message that cannot be kept is not taken: its sender gets an error
// instead of an acknowledgement for a message a crash would lose.
func TestKeepRefused(t *testing.T) {
	ts := newKeeperServer(t, 1)
	_, bob := hibernate(t, ts) // m1 fills the limit of 1
	if n := count(t, ts); n != 1 {
		t.Fatalf("%d stored when the session hibernates, want 1 (m1)", n)
	}
	bob.Send("<message to='alice@localhost/phone' id='m2' type='chat'><body>two</body></message>")
	bob.Expect(`<message type='error' id='m2'[^>]*><error type='wait'><resource-constraint xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>`)
}

// slowDelete is an offline store whose deletes wait until released.
type slowDelete struct {
	storage.Offline
	entered chan struct{}
	release chan struct{}
}

func (s *slowDelete) DeleteOfflineMessages(ctx context.Context, user string, ids []uint64) error {
	s.entered <- struct{}{}
	<-s.release
	return s.Offline.DeleteOfflineMessages(ctx, user, ids)
}

// A second session's initial presence while the first is still being
// given the offline messages (they are not deleted yet) does not get
// them a second time.
func TestDeliverOnce(t *testing.T) {
	slow := &slowDelete{entered: make(chan struct{}, 1), release: make(chan struct{})}
	ts := trefftest.NewServer(t, func(s *treff.Server) {
		slow.Offline = s.Storage.(storage.Offline)
		s.Modules = []treff.Module{&offline.Module{Store: slow}}
	})
	ts.AddUser(t, "alice", "pw")
	ts.AddUser(t, "bob", "pw")
	bob := ts.Login(t, "bob", "pw", "r")
	bob.Send("<message to='alice@localhost' id='m1' type='chat'><body>one</body></message>")
	bob.Sync()
	first := ts.Login(t, "alice", "pw", "one")
	first.Send("<presence/>")
	first.Expect(`id='m1'`)
	<-slow.entered // the first Deliver is deleting
	second := ts.Login(t, "alice", "pw", "two")
	second.Send("<presence/>")
	got := second.Sync()
	close(slow.release)
	first.Sync() // the first Deliver has deleted
	if strings.Contains(got, "id='m1'") {
		t.Fatalf("the message went to a second session before it was deleted: %s", got)
	}
	if n := count(t, ts); n != 0 {
		t.Fatalf("%d left in offline storage", n)
	}
}
