package boltstore

import (
	"context"
	"testing"
	"time"

	"github.com/treff-im/treff/storage"
)

// TestArchiveReopen checks that archived messages, their IDs and the
// preferences survive closing and reopening the file, and that new
// messages keep coming after the old ones.
func TestArchiveReopen(t *testing.T) {
	ctx := context.Background()
	s, path := openTemp(t, nil)
	const user = "alice@example.org"
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	var ids []string
	for i := range 3 {
		id, err := s.AppendArchive(ctx, user, storage.ArchivedMessage{Time: t0.Add(time.Duration(i) * time.Second),
			With: "bob@example.org", Stanza: []byte("<message><body>hi</body></message>")})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if err := s.SetArchivePrefs(ctx, user, storage.ArchivePrefs{Default: storage.ArchiveRoster}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p, err := s.QueryArchive(ctx, user, storage.ArchiveQuery{After: ids[0], Limit: 10})
	if err != nil {
		t.Fatalf("query after reopening: %v", err)
	}
	if len(p.Messages) != 2 || p.Messages[0].ID != ids[1] || p.Messages[1].ID != ids[2] || p.Count != 3 || p.Index != 1 {
		t.Errorf("after reopening: %+v", p)
	}
	id, err := s.AppendArchive(ctx, user, storage.ArchivedMessage{Time: t0, With: "bob@example.org"})
	if err != nil {
		t.Fatal(err)
	}
	p, _ = s.QueryArchive(ctx, user, storage.ArchiveQuery{Limit: 1, Backward: true})
	if len(p.Messages) != 1 || p.Messages[0].ID != id || !p.Messages[0].Time.Equal(t0.Add(2*time.Second)) {
		t.Errorf("a message appended after reopening with an older time: %+v", p.Messages)
	}
	if pr, _ := s.ArchivePrefs(ctx, user); pr.Default != storage.ArchiveRoster {
		t.Errorf("prefs after reopening: %+v", pr)
	}
}

// TestArchiveQueueSlowDisk: appends faster than the disk commits (a
// small bound, synced commits) wait for the commit under way instead of
// being refused, and the queue stays within its bound.
func TestArchiveQueueSlowDisk(t *testing.T) {
	ctx := context.Background()
	const limit = 16 << 10
	s, _ := openTemp(t, &Options{ArchiveQueueBytes: limit})
	defer s.Close()
	const n = 2000
	for i := range n {
		if _, err := s.AppendArchive(ctx, "alice@example.org", storage.ArchivedMessage{With: "bob@example.org", Outgoing: i%2 == 0,
			Stanza: []byte("<message type='chat'><body>a message of about two hundred bytes, give or take a few, to fill the queue quickly</body></message>")}); err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		if q := s.ArchiveQueued(); q > limit {
			t.Fatalf("%d bytes queued, bound %d", q, limit)
		}
	}
	if c, err := s.CountArchive(ctx, "alice@example.org"); err != nil || c != n {
		t.Errorf("CountArchive = %d, %v; want %d", c, err, n)
	}
}
