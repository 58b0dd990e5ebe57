package muc_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/disco"
	"github.com/treff-im/treff/mam"
	"github.com/treff-im/treff/muc"
	"github.com/treff-im/treff/storage"
	"github.com/treff-im/treff/storage/memstore"
	"github.com/treff-im/treff/trefftest"
)

// faultArchive is an archive whose appends fail with err while it is set,
// or wait for hold to close while it is not nil (entered then gets a
// value).
type faultArchive struct {
	storage.Archive
	mu      sync.Mutex
	err     error
	hold    chan struct{}
	entered chan struct{}
}

func (f *faultArchive) AppendArchive(ctx context.Context, user string, msg storage.ArchivedMessage) (string, error) {
	f.mu.Lock()
	err, hold := f.err, f.hold
	f.mu.Unlock()
	if hold != nil {
		f.entered <- struct{}{}
		<-hold
	}
	if err != nil {
		return "", err
	}
	return f.Archive.AppendArchive(ctx, user, msg)
}

func (f *faultArchive) set(err error, hold chan struct{}) {
	f.mu.Lock()
	f.err, f.hold = err, hold
	f.mu.Unlock()
}

func newFaultServer(t *testing.T, m *muc.Module) (*trefftest.Server, *faultArchive, *trefftest.LogBuffer) {
	t.Helper()
	store := memstore.New()
	t.Cleanup(func() { store.Close() })
	fa := &faultArchive{Archive: store, entered: make(chan struct{}, 1)}
	m.Archive = &mam.Archiver{Store: fa}
	logs := &trefftest.LogBuffer{}
	ts := trefftest.NewServer(t, func(s *treff.Server) {
		s.Modules = []treff.Module{&disco.Module{}, m}
		s.Logger = slog.New(slog.NewTextHandler(logs, nil))
	})
	for _, u := range []string{"alice", "bob", "carol"} {
		ts.AddUser(t, u, "pw")
	}
	return ts, fa, logs
}

func say(c *trefftest.Client, id, body string) {
	c.Send("<message to='" + room + "' type='groupchat' id='" + id + "'><body>" + body + "</body></message>")
}

// TestRoomArchiveFails: a message the room cannot archive is sent to
// nobody and kept out of the history; its sender gets
// <resource-constraint/> (archive full) or <internal-server-error/>
// (another error); the failures are logged once a minute without the
// room's address; once the archive works, messages flow again.
func TestRoomArchiveFails(t *testing.T) {
	start := time.Now()
	ts, fa, logs := newFaultServer(t, &muc.Module{})
	alice := open(t, ts)
	bob := ts.Login(t, "bob", "pw", "r")
	enter(t, bob, "Bob")
	alice.Expect(`from='` + room + `/Bob'`)

	fa.set(fmt.Errorf("boltstore: append archive: %w", storage.ErrFull), nil)
	say(alice, "full", "not now")
	alice.Expect(`<message type='error' id='full' to='alice@localhost/r' from='` + room + `'><error type='wait'><resource-constraint xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>`)
	fa.set(errors.New("disk on fire"), nil)
	say(alice, "broken", "not now either")
	alice.Expect(`<message type='error' id='broken' to='alice@localhost/r' from='` + room + `'><error type='wait'><internal-server-error xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>`)
	if got := bob.Sync(); strings.Contains(got, "<message") {
		t.Errorf("bob got a message that was not archived: %s", got)
	}
	carol := ts.Login(t, "carol", "pw", "r")
	join(carol, "Carol", "")
	if got := carol.Expect(`<subject>[^<]*</subject></message>`); strings.Contains(got, "not now") {
		t.Errorf("a message that was not archived is in the history: %s", got)
	}

	fa.set(nil, nil)
	say(alice, "ok", "now")
	got := bob.Expect(`(?s)<message[^>]*id='ok'.*?</message>`)
	if !regexp.MustCompile(`<stanza-id xmlns='urn:xmpp:sid:0' by='` + room + `' id='[^']+'/>`).MatchString(got) {
		t.Errorf("the message after the fault: %s", got)
	}
	line := "muc: archiving a room's message failed"
	if n, most := strings.Count(logs.String(), line), 1+int(time.Since(start)/time.Minute); n < 1 || n > most {
		t.Errorf("%d lines for 2 failures, want 1 to %d:\n%s", n, most, logs)
	}
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, line) && (strings.Contains(l, "lobby") || strings.Contains(l, "alice")) {
			t.Errorf("the line names the room or the sender: %s", l)
		}
	}
}

// TestRoomQueueBound: behind an archive that does not answer, a room
// queues what its occupants send up to Module.MaxQueueBytes, then
// refuses messages with <resource-constraint/>; once the archive
// answers, the queue drains in order and the room takes messages again.
func TestRoomQueueBound(t *testing.T) {
	const bound = 8 << 10
	ts, fa, _ := newFaultServer(t, &muc.Module{MaxQueueBytes: bound})
	alice := open(t, ts)
	bob := ts.Login(t, "bob", "pw", "r")
	enter(t, bob, "Bob")
	alice.Expect(`from='` + room + `/Bob'`)
	// Whoever finds the room's queue idle carries it out, also what
	// others queue meanwhile: bob's stream must be done with his join
	// (his Sync is answered after it), or it could be the one to carry
	// out alice's message below and block on the archive.
	bob.Sync()

	hold := make(chan struct{})
	fa.set(nil, hold)
	say(alice, "first", "waits for the archive")
	<-fa.entered // alice's stream now carries out the room's queue
	fa.set(nil, nil)
	body := strings.Repeat("b", 1000)
	accepted := 0
	for i := 1; ; i++ {
		id := fmt.Sprint("q", i)
		say(bob, id, body)
		got := bob.Sync()
		if strings.Contains(got, "<message type='error'") {
			if !strings.Contains(got, "id='"+id+"'") || !strings.Contains(got, "<resource-constraint ") {
				t.Fatalf("the refusal of %s: %s", id, got)
			}
			break
		}
		if strings.Contains(got, "<message") {
			t.Fatalf("a message went out while the room's queue was held: %s", got)
		}
		accepted++
		if accepted*1000 > 2*bound {
			t.Fatalf("%d messages of 1000 bytes queued, bound %d", accepted, bound)
		}
	}
	if accepted < bound/2/1100 {
		t.Errorf("refused after %d messages of 1000 bytes, bound %d", accepted, bound)
	}
	close(hold)
	bob.Expect(`id='first'`)
	for i := 1; i <= accepted; i++ {
		bob.Expect(fmt.Sprintf(`id='q%d'`, i))
	}
	say(bob, "later", "again")
	alice.Expect(`id='later'`)
}
