package boltstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/treff-im/treff/storage"
)

// journalLen returns user's records in the archive journal and those in
// user's bucket.
func journalLen(t *testing.T, s *Store, user string) (journal, stored int) {
	t.Helper()
	err := s.db.View(func(tx *bolt.Tx) error {
		if j := tx.Bucket(bucketArchiveJournal); j != nil {
			err := j.ForEach(func(k, v []byte) error {
				return eachJournalRecord(k, v, func(u, _, _ []byte) error {
					if string(u) == user {
						journal++
					}
					return nil
				})
			})
			if err != nil {
				return err
			}
		}
		if root := tx.Bucket(bucketArchive); root != nil {
			if ub := root.Bucket([]byte(user)); ub != nil {
				stored = ub.Stats().KeyN
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return journal, stored
}

// appendN appends messages from to to-1 from bob to alice's archive
// (message i has body i and time i seconds after midnight) and returns
// their IDs.
func appendN(t *testing.T, s *Store, from, to int) []string {
	t.Helper()
	var ids []string
	for i := from; i < to; i++ {
		id, err := s.AppendArchive(context.Background(), "alice@example.org", storage.ArchivedMessage{
			Time:   time.Date(2026, 12, 7, 0, 0, i, 0, time.UTC),
			With:   "bob@example.org",
			Stanza: fmt.Appendf(nil, "<message type='chat'><body>%d</body></message>", i),
		})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}

// checkArchive checks that alice's archive holds exactly the messages
// with ids, in order, with their stanzas.
func checkArchive(t *testing.T, s *Store, ids []string) {
	t.Helper()
	page, err := s.QueryArchive(context.Background(), "alice@example.org", storage.ArchiveQuery{Limit: len(ids) + 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Messages) != len(ids) {
		t.Fatalf("archive holds %d messages, want %d", len(page.Messages), len(ids))
	}
	for i, m := range page.Messages {
		if m.ID != ids[i] {
			t.Errorf("message %d has ID %s, want %s", i, m.ID, ids[i])
		}
		if want := fmt.Sprintf("<message type='chat'><body>%d</body></message>", i); string(m.Stanza) != want {
			t.Errorf("message %d is %s, want %s", i, m.Stanza, want)
		}
	}
	n, err := s.CountArchive(context.Background(), "alice@example.org")
	if err != nil || n != len(ids) {
		t.Errorf("CountArchive = %d, %v; want %d", n, err, len(ids))
	}
}

// TestArchiveJournal: a scheduled flush commits the queue to the journal;
// a read folds the journal into the user's bucket first.
func TestArchiveJournal(t *testing.T) {
	s, _ := openTemp(t, &Options{NoSync: true})
	defer s.Close()
	ft := &fakeTimers{}
	s.archive.afterFunc, s.archive.smallBatch = ft.afterFunc, 0
	ids := appendN(t, s, 0, 3)
	if ft.fire() != 1 {
		t.Fatal("no flush was scheduled")
	}
	if j, u := journalLen(t, s, "alice@example.org"); j != 3 || u != 0 {
		t.Fatalf("after the scheduled flush: %d records in the journal, %d in the bucket; want 3, 0", j, u)
	}
	// A read with nothing queued folds the journal too.
	checkArchive(t, s, ids)
	if j, u := journalLen(t, s, "alice@example.org"); j != 0 || u != 3 {
		t.Fatalf("after a query: %d records in the journal, %d in the bucket; want 0, 3", j, u)
	}
	ids = append(ids, appendN(t, s, 3, 5)...)
	ft.fire()
	ids = append(ids, appendN(t, s, 5, 7)...) // queued, not committed
	checkArchive(t, s, ids)                   // the query flushes and folds
	if j, u := journalLen(t, s, "alice@example.org"); j != 0 || u != 7 {
		t.Fatalf("after a query: %d records in the journal, %d in the bucket; want 0, 7", j, u)
	}
}

// TestArchiveJournalFoldDue: a scheduled flush folds once archiveFoldEvery
// has passed since the last fold.
func TestArchiveJournalFoldDue(t *testing.T) {
	s, _ := openTemp(t, &Options{NoSync: true})
	defer s.Close()
	ft := &fakeTimers{}
	s.archive.afterFunc, s.archive.smallBatch = ft.afterFunc, 0
	now := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	s.archive.now = func() time.Time { return now }
	s.archive.folded = now
	appendN(t, s, 0, 2)
	ft.fire()
	if j, u := journalLen(t, s, "alice@example.org"); j != 2 || u != 0 {
		t.Fatalf("before the fold is due: %d in the journal, %d in the bucket; want 2, 0", j, u)
	}
	now = now.Add(archiveFoldEvery)
	appendN(t, s, 2, 3)
	ft.fire()
	if j, u := journalLen(t, s, "alice@example.org"); j != 0 || u != 3 {
		t.Fatalf("once the fold is due: %d in the journal, %d in the bucket; want 0, 3", j, u)
	}
}

// TestArchiveJournalCrash: what a scheduled flush committed survives a
// crash (the file closed without Close) and is folded by Open, with the
// same IDs; new appends after it get new keys.
func TestArchiveJournalCrash(t *testing.T) {
	s, path := openTemp(t, nil) // synced, as in production
	ft := &fakeTimers{}
	s.archive.afterFunc, s.archive.smallBatch = ft.afterFunc, 0
	ids := appendN(t, s, 0, 4)
	ft.fire()
	if j, _ := journalLen(t, s, "alice@example.org"); j != 4 {
		t.Fatalf("%d records in the journal, want 4", j)
	}
	// The crash: the file is closed as a killed process leaves it, no
	// last flush or fold.
	if err := s.db.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if j, u := journalLen(t, s, "alice@example.org"); j != 0 || u != 4 {
		t.Fatalf("after Open: %d in the journal, %d in the bucket; want 0, 4", j, u)
	}
	checkArchive(t, s, ids)
	more, err := s.AppendArchive(context.Background(), "alice@example.org", storage.ArchivedMessage{
		Time: time.Date(2026, 12, 7, 0, 0, 4, 0, time.UTC), With: "bob@example.org",
		Stanza: []byte("<message type='chat'><body>4</body></message>"),
	})
	if err != nil {
		t.Fatal(err)
	}
	checkArchive(t, s, append(ids, more))
}

// TestArchiveJournalOldFormat: a journal left by a crash of a build that
// wrote one record per value (before the batch values), followed by
// batch values of this build, is folded by Open with every record in
// place and the same IDs.
func TestArchiveJournalOldFormat(t *testing.T) {
	s, path := openTemp(t, nil)
	ft := &fakeTimers{}
	s.archive.afterFunc, s.archive.smallBatch = ft.afterFunc, 0
	ids := appendN(t, s, 0, 3)
	ft.fire()
	// The first batch rewritten as the old build wrote it: one value per
	// record, under the journal's next keys.
	err := s.db.Update(func(tx *bolt.Tx) error {
		j := tx.Bucket(bucketArchiveJournal)
		k, v := j.Cursor().First()
		var old [][]byte
		err := eachJournalRecord(k, v, func(user, key, val []byte) error {
			r := binary.AppendUvarint(nil, uint64(len(user)))
			r = append(r, user...)
			r = append(r, key...)
			old = append(old, append(r, val...))
			return nil
		})
		if err != nil {
			return err
		}
		if len(old) != 3 {
			return fmt.Errorf("the batch holds %d records, want 3", len(old))
		}
		if err := j.Delete(k); err != nil {
			return err
		}
		for _, r := range old {
			seq, err := j.NextSequence()
			if err != nil {
				return err
			}
			if err := j.Put(binary.BigEndian.AppendUint64(nil, seq), r); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ids = append(ids, appendN(t, s, 3, 5)...)
	ft.fire()
	if j, _ := journalLen(t, s, "alice@example.org"); j != 5 {
		t.Fatalf("%d records in the journal, want 5", j)
	}
	if err := s.db.Close(); err != nil { // the crash
		t.Fatal(err)
	}
	s, err = Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if j, u := journalLen(t, s, "alice@example.org"); j != 0 || u != 5 {
		t.Fatalf("after Open: %d in the journal, %d in the bucket; want 0, 5", j, u)
	}
	if n, err := s.CountArchive(context.Background(), "alice@example.org"); err != nil || n != 5 {
		t.Fatalf("CountArchive = %d, %v; want 5", n, err)
	}
	checkArchive(t, s, ids)
}

// TestArchiveFoldManyUsers: a fold of records of several users, their
// appends interleaved, puts each in its user's archive in order, with
// the counts right.
func TestArchiveFoldManyUsers(t *testing.T) {
	s, _ := openTemp(t, &Options{NoSync: true})
	defer s.Close()
	ft := &fakeTimers{}
	s.archive.afterFunc, s.archive.smallBatch = ft.afterFunc, 0
	ctx := context.Background()
	users := []string{"carol@example.org", "alice@example.org", "bob@example.org"}
	want := map[string][]string{}
	for i := range 30 {
		u := users[i*7%len(users)]
		body := fmt.Sprintf("<message type='chat'><body>%d</body></message>", i)
		if _, err := s.AppendArchive(ctx, u, storage.ArchivedMessage{Time: time.Date(2026, 12, 7, 0, 0, i, 0, time.UTC),
			With: "dave@example.org", Stanza: []byte(body)}); err != nil {
			t.Fatal(err)
		}
		want[u] = append(want[u], body)
		if i%4 == 3 {
			ft.fire() // to the journal: several batch values
		}
	}
	for _, u := range users {
		page, err := s.QueryArchive(ctx, u, storage.ArchiveQuery{Limit: 100}) // folds
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, m := range page.Messages {
			got = append(got, string(m.Stanza))
		}
		if !slices.Equal(got, want[u]) {
			t.Errorf("%s's archive: %q, want %q", u, got, want[u])
		}
		if n, err := s.CountArchive(ctx, u); err != nil || n != len(want[u]) {
			t.Errorf("CountArchive(%s) = %d, %v; want %d", u, n, err, len(want[u]))
		}
	}
}

// TestArchiveSmallBatchWaits: a scheduled flush that finds a small batch
// waits for more, until archiveFlushWait after its first record (one
// timer); a batch of archiveFlushBatch records is committed at once,
// without the timer; a read still sees everything at once.
func TestArchiveSmallBatchWaits(t *testing.T) {
	s, _ := openTemp(t, nil)
	defer s.Close()
	ft := &fakeTimers{}
	now := time.Now()
	s.archive.afterFunc = ft.afterFunc
	s.archive.now = func() time.Time { return now }
	appendN(t, s, 0, 3)
	if ft.fire() != 1 {
		t.Fatal("no flush was scheduled")
	}
	if j, u := journalLen(t, s, "alice@example.org"); j+u != 0 {
		t.Fatalf("a small batch was committed at once: %d in the journal, %d in the bucket", j, u)
	}
	// One wake-up for the rest of the wait, not one every 25 ms.
	if d := ft.delays[len(ft.delays)-1]; d != archiveFlushWait {
		t.Fatalf("the waiting flush was scheduled in %v, want %v", d, archiveFlushWait)
	}
	now = now.Add(archiveFlushWait)
	if ft.fire() != 1 {
		t.Fatal("the waiting flush was not scheduled again")
	}
	if j, u := journalLen(t, s, "alice@example.org"); j+u != 3 {
		t.Fatalf("after the wait: %d in the journal, %d in the bucket; want 3 in all", j, u)
	}
	// A full batch goes at once, without waiting for the timer.
	var kicks []func()
	s.archive.spawn = func(f func()) { kicks = append(kicks, f) }
	appendN(t, s, 3, 3+archiveFlushBatch)
	if len(kicks) != 1 {
		t.Fatalf("%d flushes started by a full batch, want 1", len(kicks))
	}
	if ft.fire() != 0 {
		t.Fatal("the timer of a full batch was not stopped")
	}
	kicks[0]()
	if j, u := journalLen(t, s, "alice@example.org"); j+u != 3+archiveFlushBatch {
		t.Fatalf("after a full batch: %d in the journal, %d in the bucket; want %d in all", j, u, 3+archiveFlushBatch)
	}
	// A read does not wait.
	ids := appendN(t, s, 0, 2)
	if ft.fire() != 1 {
		t.Fatal("no flush was scheduled")
	}
	page, err := s.QueryArchive(context.Background(), "alice@example.org", storage.ArchiveQuery{IDs: ids, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Messages) != 2 {
		t.Fatalf("a read found %d of the 2 queued messages", len(page.Messages))
	}
}

// TestArchiveFullQueueFlush: archiveFlushMax queued records start one
// flush (not one per append until it takes the queue), which writes them
// to the journal without a fold.
func TestArchiveFullQueueFlush(t *testing.T) {
	s, _ := openTemp(t, &Options{NoSync: true})
	defer s.Close()
	ft := &fakeTimers{}
	var kicks []func()
	s.archive.afterFunc = ft.afterFunc
	s.archive.spawn = func(f func()) { kicks = append(kicks, f) }
	appendN(t, s, 0, archiveFlushMax+50)
	if len(kicks) != 1 {
		t.Fatalf("%d flushes started for a full queue, want 1", len(kicks))
	}
	kicks[0]()
	if j, u := journalLen(t, s, "alice@example.org"); j != archiveFlushMax+50 || u != 0 {
		t.Fatalf("after the flush: %d in the journal, %d in the bucket; want %d, 0", j, u, archiveFlushMax+50)
	}
	if n := s.ArchiveQueued(); n != 0 {
		t.Fatalf("%d bytes still queued", n)
	}
	appendN(t, s, archiveFlushMax+50, 2*archiveFlushMax+50)
	if len(kicks) != 2 {
		t.Fatalf("%d flushes started for two full queues, want 2", len(kicks))
	}
	kicks[1]()
	kicks[0]() // a late one finds nothing to do
	if j, u := journalLen(t, s, "alice@example.org"); j != 2*archiveFlushMax+50 || u != 0 {
		t.Fatalf("after the second flush: %d in the journal, %d in the bucket; want %d, 0", j, u, 2*archiveFlushMax+50)
	}
	if n, err := s.CountArchive(context.Background(), "alice@example.org"); err != nil || n != 2*archiveFlushMax+50 {
		t.Fatalf("CountArchive = %d, %v; want %d", n, err, 2*archiveFlushMax+50)
	}
}

// TestEachJournalRecordCorrupt: a journal value cut short or empty is
// reported as corrupt, not read past its end.
func TestEachJournalRecordCorrupt(t *testing.T) {
	rec := binary.AppendUvarint([]byte{journalBatchV1}, 3)
	rec = append(rec, "a@b"...)
	rec = append(rec, make([]byte, archiveKeyLen)...)
	rec = binary.AppendUvarint(rec, 2)
	rec = append(rec, "xy"...)
	n := 0
	if err := eachJournalRecord([]byte{1}, rec, func(user, key, val []byte) error {
		if string(user) != "a@b" || len(key) != archiveKeyLen || string(val) != "xy" {
			t.Errorf("record %q %x %q", user, key, val)
		}
		n++
		return nil
	}); err != nil || n != 1 {
		t.Fatalf("a whole value: %d records, %v", n, err)
	}
	for _, v := range [][]byte{nil, rec[:len(rec)-1], rec[:5], rec[:1+1+3+archiveKeyLen], {5, 'a'}, append([]byte{journalBatchV1, 0}, make([]byte, 20)...)} {
		err := eachJournalRecord([]byte{1}, v, func(_, _, _ []byte) error { return nil })
		if !errors.Is(err, errCorrupt) {
			t.Errorf("value %x: %v, want errCorrupt", v, err)
		}
	}
}
