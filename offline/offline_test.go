package offline_test

import (
	"context"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/auth"
	"github.com/treff-im/treff/offline"
	"github.com/treff-im/treff/storage"
	"github.com/treff-im/treff/storage/boltstore"
	"github.com/treff-im/treff/trefftest"
)

func TestOfflineDelivery(t *testing.T) {
	ts := trefftest.NewServer(t, func(s *treff.Server) {
		s.Modules = []treff.Module{&offline.Module{Limit: 3}}
	})
	ts.AddUser(t, "alice", "pw")
	ts.AddUser(t, "bob", "pw")
	ctx := context.Background()

	a := ts.Login(t, "alice", "pw", "r")
	a.Send("<message to='bob@localhost' type='chat' id='m1'><body>first</body></message>")
	a.Send("<message to='bob@localhost' id='m2'><body>second &amp; more</body></message>")
	a.Send("<message to='bob@localhost' type='chat' id='cs'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>")
	a.Send("<message to='bob@localhost' type='headline' id='h'><body>news</body></message>")
	a.Send("<message to='bob@localhost' type='chat' id='m3'><body>third</body></message>")
	a.Send("<message to='bob@localhost' type='chat' id='m4'><body>too many</body></message>")
	a.Expect(`<message type='error' id='m4' to='alice@localhost/r' from='bob@localhost'><error type='wait'><resource-constraint .*?</message>`)
	if strings.Contains(a.Pending(), "error") {
		t.Errorf("unexpected error: %s", a.Pending())
	}
	if n, _ := ts.Store.CountOffline(ctx, "bob@localhost"); n != 3 {
		t.Fatalf("stored %d, want 3", n)
	}

	// A negative-priority login does not receive them.
	neg := ts.Login(t, "bob", "pw", "bot")
	neg.Send("<presence><priority>-1</priority></presence>")
	b := ts.Login(t, "bob", "pw", "phone")
	if n, _ := ts.Store.CountOffline(ctx, "bob@localhost"); n != 3 {
		t.Fatalf("delivered before initial presence: %d left", n)
	}
	b.Send("<presence/>")
	got := b.Expect(`id='m3'.*?</message>`)
	for _, want := range []string{
		`<message from='alice@localhost/r' to='bob@localhost' type='chat' id='m1'><body>first</body><delay xmlns='urn:xmpp:delay' from='localhost' stamp='`,
		`id='m2'><body>second &amp; more</body><delay`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %s in %s", want, got)
		}
	}
	if strings.Contains(got, "composing") || strings.Contains(got, "news") {
		t.Errorf("stored what should not be: %s", got)
	}
	// Delivery runs in the hook for bob's initial presence, which his
	// session runs before it handles his next stanza: after a round trip
	// the delivered messages have been deleted.
	b.Sync()
	if n, _ := ts.Store.CountOffline(ctx, "bob@localhost"); n != 0 {
		t.Fatalf("%d messages left in storage", n)
	}
	if got := neg.Sync(); strings.Contains(got, "first") {
		t.Errorf("negative priority resource got offline messages: %s", got)
	}
}

// Offline messages survive a restart with the bbolt backend.
func TestOfflineSurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "treff.db")
	run := func(f func(ts *trefftest.Server)) {
		store, err := boltstore.Open(path, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer store.Close()
		ts := trefftest.NewServer(t, func(s *treff.Server) {
			s.Storage = store
			s.Authenticator = &auth.Store{Accounts: store}
			s.Modules = []treff.Module{&offline.Module{}}
		})
		f(ts)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ts.Shutdown(ctx)
	}
	run(func(ts *trefftest.Server) {
		a := &auth.Store{Accounts: ts.Storage}
		a.CreateUser(context.Background(), "alice@localhost", "pw")
		a.CreateUser(context.Background(), "bob@localhost", "pw")
		c := ts.Login(t, "alice", "pw", "r")
		c.Send("<message to='bob@localhost' id='keep'><body>still here</body></message>")
		c.Send("<iq type='get' id='sync' to='localhost'><q xmlns='urn:x'/></iq>")
		c.Expect(`id='sync'`)
	})
	run(func(ts *trefftest.Server) {
		b := ts.Login(t, "bob", "pw", "r")
		b.Send("<presence/>")
		b.Expect(`id='keep'><body>still here</body><delay xmlns='urn:xmpp:delay'`)
	})
}

// BenchmarkOffline1000 stores 1000 messages for an offline user with the
// bbolt backend and delivers them at the next login (which is included).
func BenchmarkOffline1000(b *testing.B) {
	store, err := boltstore.Open(filepath.Join(b.TempDir(), "treff.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	ts := trefftest.NewServer(b, func(s *treff.Server) {
		s.Storage = store
		s.Authenticator = &auth.Store{Accounts: store}
		s.Modules = []treff.Module{&offline.Module{Limit: 2000}}
	})
	a := &auth.Store{Accounts: store}
	a.CreateUser(context.Background(), "alice@localhost", "pw")
	a.CreateUser(context.Background(), "bob@localhost", "pw")
	alice := ts.Login(b, "alice", "pw", "r")
	msg := "<message to='bob@localhost' type='chat'><body>Hello Bob, how are you doing today?</body></message>"
	batch := strings.Repeat(msg, 100)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j := 0; j < 10; j++ {
			alice.Send(batch)
		}
		alice.Send("<iq type='get' id='sync' to='localhost'><q xmlns='urn:x'/></iq>")
		alice.Expect(`id='sync'`)
		bob := ts.Login(b, "bob", "pw", "r")
		bob.Send("<presence/>")
		for j := 0; j < 1000; j++ {
			bob.Expect(`</delay></message>`)
		}
		bob.Send("</stream:stream>")
		bob.Expect(`</stream:stream>`)
	}
}

// Stored messages go out on a session's initial presence only, and that
// lasts as long as the session: a presence update after a XEP-0198
// resumption is not initial, while a new session on the same resource
// after a logout gets them with its initial presence.
func TestInitialPresenceLastsTheSession(t *testing.T) {
	ts := trefftest.NewServer(t, func(s *treff.Server) { s.Modules = []treff.Module{&offline.Module{}} })
	ts.AddUser(t, "bob", "pw")
	ctx := context.Background()
	fence := func(c *trefftest.Client, id string) string {
		c.Send("<iq type='get' id='" + id + "' to='localhost'><q xmlns='urn:x'/></iq>")
		return c.Expect(`id='` + id + `'.*?</iq>`)
	}

	b := ts.Login(t, "bob", "pw", "r")
	b.Send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
	id := regexp.MustCompile(`id='([^']+)'`).FindStringSubmatch(b.Expect(`<enabled xmlns='urn:xmpp:sm:3' [^>]*/>`))[1]
	b.Send("<presence/>")
	fence(b, "f1")
	// A message stored meanwhile (as for a session that was not resumed).
	msg := storage.OfflineMessage{Stanza: []byte("<message from='alice@localhost/r' to='bob@localhost' type='chat' id='late'><body>hi</body></message>"), Received: time.Now()}
	if _, err := ts.Store.PushOffline(ctx, "bob@localhost", msg, 0); err != nil {
		t.Fatal(err)
	}

	resumed := ts.Dial(t, ts.Addr)
	resumed.Authenticate("bob", "pw")
	resumed.Send("<resume xmlns='urn:xmpp:sm:3' previd='" + id + "' h='0'/>")
	resumed.Expect(`<resumed xmlns='urn:xmpp:sm:3' [^>]*/>`)
	resumed.Send("<presence><show>away</show></presence>")
	if got := fence(resumed, "f2"); strings.Contains(got, "id='late'") {
		t.Errorf("a presence update after resumption delivered stored messages: %s", got)
	}

	resumed.Send("</stream:stream>")
	resumed.ExpectClosed()
	b = ts.Login(t, "bob", "pw", "r")
	b.Send("<presence/>")
	b.Expect(`id='late'><body>hi</body><delay xmlns='urn:xmpp:delay'`)
}

// fakeSharer stands for a cluster node: it records what the module
// publishes and hands the test the module's receiver.
type fakeSharer struct {
	mu        sync.Mutex
	topic     string
	recv      func([]byte)
	published []string
}

func (f *fakeSharer) Share(topic string, recv func([]byte), state func() [][]byte) (func([]byte), error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.topic, f.recv = topic, recv
	return func(data []byte) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.published = append(f.published, string(data))
	}, nil
}

// TestStoredSharedInCluster: with Shared (a cluster node), the module
// tells the other nodes of every message it stores (the account's bare
// JID on ShareTopic), and when another node tells it of one, its
// sessions of that account that have had their initial presence (and so
// read the store already) get it from the store: a message another node
// stored before it knew they were online does not wait for the next
// login. A negative-priority session gets nothing.
func TestStoredSharedInCluster(t *testing.T) {
	f := &fakeSharer{}
	ts := trefftest.NewServer(t, func(s *treff.Server) {
		s.Modules = []treff.Module{&offline.Module{Shared: f}}
	})
	ts.AddUser(t, "alice", "pw")
	ts.AddUser(t, "bob", "pw")
	a := ts.Login(t, "alice", "pw", "r") // the server has set up
	a.Send("<message to='bob@localhost' type='chat' id='m1'><body>stored</body></message>")
	a.Sync()
	f.mu.Lock()
	topic, recv, published := f.topic, f.recv, slices.Clone(f.published)
	f.mu.Unlock()
	if topic != offline.ShareTopic {
		t.Fatalf("shared topic %q, want %q", topic, offline.ShareTopic)
	}
	if !slices.Equal(published, []string{"bob@localhost"}) {
		t.Fatalf("published %q, want bob's bare JID once", published)
	}

	neg := ts.Login(t, "bob", "pw", "bot")
	neg.Send("<presence><priority>-1</priority></presence>")
	neg.Sync()
	b := ts.Login(t, "bob", "pw", "phone")
	b.Send("<presence/>")
	b.Expect(`id='m1'><body>stored</body><delay `)
	b.Sync()
	// Another node stored one after bob's initial presence read the store.
	msg := storage.OfflineMessage{Stanza: []byte("<message from='carol@localhost/r' to='bob@localhost' type='chat' id='m2'><body>elsewhere</body></message>"), Received: time.Now()}
	if _, err := ts.Store.PushOffline(context.Background(), "bob@localhost", msg, 0); err != nil {
		t.Fatal(err)
	}
	recv([]byte("bob@localhost"))
	b.Expect(`id='m2'><body>elsewhere</body><delay `)
	if got := neg.Sync(); strings.Contains(got, "<body>") {
		t.Errorf("the negative-priority session got stored messages: %q", got)
	}
}
