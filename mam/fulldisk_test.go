//go:build linux

package mam

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/internal/diskfault"
	"github.com/treff-im/treff/storage"
	"github.com/treff-im/treff/storage/boltstore"
	"github.com/treff-im/treff/trefftest"
)

// lineWatch keeps log lines in buf and closes the channel of each of
// its matches when a line holds it.
type lineWatch struct {
	buf   trefftest.LogBuffer
	mu    sync.Mutex
	seen  map[string]chan struct{}
	match []string
}

func newLineWatch(match ...string) *lineWatch {
	w := &lineWatch{seen: make(map[string]chan struct{}), match: match}
	for _, m := range match {
		w.seen[m] = make(chan struct{})
	}
	return w
}

func (w *lineWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	for _, m := range w.match {
		if ch := w.seen[m]; ch != nil && bytes.Contains(p, []byte(m)) {
			close(ch)
			w.seen[m] = nil
		}
	}
	w.mu.Unlock()
	return w.buf.Write(p)
}

// wait waits for a line holding match.
func (w *lineWatch) wait(t *testing.T, match string) {
	t.Helper()
	w.mu.Lock()
	ch := w.seen[match]
	w.mu.Unlock()
	if ch == nil {
		return
	}
	select {
	case <-ch:
	case <-time.After(time.Minute):
		t.Fatalf("no line with %q:\n%s", match, w.buf.String())
	}
}

// TestFullDisk runs chats through the module onto a bbolt store whose
// disk fills up (diskfault): the messages accepted meanwhile are
// delivered and queued, the queue stays within its bound, then the
// sender gets <resource-constraint/> before its message reaches anybody,
// the failure is logged once a minute without addresses or content, and
// once the disk has room the store writes the queue by itself and chats
// are archived again, with every delivered stanza-id in the archives.
func TestFullDisk(t *testing.T) {
	ctx := context.Background()
	const bound = 32 << 10
	const failed, recovered = "writing archived messages failed", "archived messages are written again"
	logs := newLineWatch(failed, recovered)
	logger := slog.New(slog.NewTextHandler(logs, nil))
	path := filepath.Join(t.TempDir(), "treff.db")
	opts := &boltstore.Options{ArchiveQueueBytes: bound, Logger: logger}
	store, err := boltstore.Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	// The archive's buckets exist before the fault; bbolt must not map
	// more of its file while the writes fail.
	if _, err := store.AppendArchive(ctx, "nobody@localhost", storage.ArchivedMessage{With: "x@localhost"}); err != nil {
		t.Fatal(err)
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	if err := diskfault.Grow(path, 16<<20); err != nil {
		t.Fatal(err)
	}
	if store, err = boltstore.Open(path, opts); err != nil {
		t.Fatal(err)
	}
	disk, err := diskfault.Find(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		disk.Close()
		if err := store.Close(); err != nil {
			t.Error(err)
		}
	})
	clock := trefftest.NewClock(t0)
	m := &Module{Store: store, now: clock.Now}
	ts := trefftest.NewServer(t, func(s *treff.Server) {
		s.Modules = []treff.Module{m}
		s.Logger = logger
	})
	for _, u := range []string{"alice", "bob"} {
		ts.AddUser(t, u, "pw")
	}
	alice := ts.Login(t, "alice", "pw", "phone")
	bob := ts.Login(t, "bob", "pw", "laptop")
	bob.Send("<presence/>")
	bob.Sync()
	start := time.Now()
	text := strings.Repeat("All work and no play. ", 40)
	send := func(id string) {
		alice.Send("<message type='chat' id='" + id + "' to='bob@localhost'><body>" + id + " " + text + "</body></message>")
	}
	stanzaID := regexp.MustCompile(`<stanza-id xmlns='urn:xmpp:sid:0' by='bob@localhost' id='([^']+)'/>`)
	var delivered []string // bob's archive IDs of the messages bob got
	receive := func(id string) {
		t.Helper()
		got := bob.Expect(`(?s)<message[^>]*id='` + id + `'.*?</message>`)
		sid := stanzaID.FindStringSubmatch(got)
		if sid == nil {
			t.Fatalf("message %s delivered without bob's stanza-id: %s", id, got)
		}
		delivered = append(delivered, sid[1])
	}
	send("before")
	receive("before")

	if err := disk.Fill(); err != nil {
		t.Fatal(err)
	}
	refusedAt := 0
	for i := 1; refusedAt == 0; i++ {
		id := fmt.Sprint("m", i)
		send(id)
		got := alice.Sync()
		if strings.Contains(got, "<message type='error'") {
			if !regexp.MustCompile(`<message type='error' id='` + id + `'[^>]*>.*<resource-constraint xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>`).MatchString(got) {
				t.Fatalf("the refusal of %s: %s", id, got)
			}
			refusedAt = i
			break
		}
		receive(id)
		if q := store.ArchiveQueued(); q > bound {
			t.Fatalf("%d bytes queued, bound %d", q, bound)
		}
		if i > 1000 {
			t.Fatal("no message was refused")
		}
	}
	if refusedAt < 5 {
		t.Errorf("refused from message %d: the queue took almost nothing", refusedAt)
	}
	// Refused messages reach nobody; every one is answered.
	for i := refusedAt + 1; i <= refusedAt+20; i++ {
		send(fmt.Sprint("m", i))
	}
	got := alice.Sync()
	if n := strings.Count(got, "<resource-constraint "); n != 20 {
		t.Errorf("%d errors for 20 refused messages: %s", n, got)
	}
	if got := bob.Sync(); strings.Contains(got, "<message") {
		t.Errorf("bob got a refused message: %s", got)
	}
	if q := store.ArchiveQueued(); q > bound {
		t.Fatalf("%d bytes queued, bound %d", q, bound)
	}
	// The store's first failed commit may come after the refusals (the
	// first flush waits a few milliseconds).
	logs.wait(t, failed)
	logged := logs.buf.String()
	if n := strings.Count(logged, "mam: archiving failed"); n != 1 {
		t.Errorf("%d lines for 21 refusals within a minute, want 1:\n%s", n, logged)
	}
	// The store's own line: once, and once more per minute of the test.
	if n, most := strings.Count(logged, failed), 1+int(time.Since(start)/time.Minute); n < 1 || n > most {
		t.Errorf("%d lines about the failed commits, want 1 to %d:\n%s", n, most, logged)
	}
	clock.Add(time.Minute)
	send("late")
	alice.Sync()
	if logged := logs.buf.String(); strings.Count(logged, "mam: archiving failed") != 2 || !strings.Contains(logged, "refused=21") {
		t.Errorf("a minute later, want a second line counting the 21 refusals since the first:\n%s", logged)
	}
	for _, line := range strings.Split(logs.buf.String(), "\n") {
		if !strings.Contains(line, "mam:") && !strings.Contains(line, "boltstore:") {
			continue // the server's own lines
		}
		for _, c := range []string{"alice@", "bob@", "phone", "laptop", "All work"} {
			if strings.Contains(line, c) {
				t.Errorf("a line holds %q: %s", c, line)
			}
		}
	}

	// Room on the disk again: the store writes its queue by itself.
	if err := disk.Free(); err != nil {
		t.Fatal(err)
	}
	logs.wait(t, recovered)
	if q := store.ArchiveQueued(); q != 0 {
		t.Errorf("%d bytes queued after the recovery", q)
	}
	send("after")
	receive("after")
	g := query(t, bob, "<max>1000</max>")
	wantFin(t, "bob's archive", g, true, 0, len(delivered))
	if strings.Join(g.ids(), ",") != strings.Join(delivered, ",") {
		t.Errorf("bob's archive holds %q, bob got %q", g.ids(), delivered)
	}
	if g := query(t, alice, "<max>0</max>"); g.reply.Fin == nil || g.reply.Fin.Count != len(delivered) {
		t.Errorf("alice's archive: %s, want %d messages", g.reply.Inner, len(delivered))
	}
}
