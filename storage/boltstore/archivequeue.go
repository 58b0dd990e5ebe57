package boltstore

import (
	"crypto/cipher"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Archive appends are written behind: AppendArchive gives the message its
// key and ID at once (the ID goes into the delivered stanza as its
// stanza-id, so the message must not wait for a disk commit) and queues
// the record; a flush commits everything queued in one transaction a
// few milliseconds later, or at once when much has queued. Every read
// of the archive (and Close) flushes first, so what AppendArchive
// returned is always visible to queries. A machine crash can lose the
// last few milliseconds of archived messages (they were delivered all the
// same); a failed commit keeps them queued for the next flush.

const (
	archiveFlushDelay = 25 * time.Millisecond
	archiveFlushMax   = 1024 // queued records that trigger a flush at once
)

type archiveRecord struct {
	user     string
	key, val []byte
}

type archiveQueue struct {
	mu      sync.Mutex
	ready   bool                 // seq and blk loaded
	seq     uint64               // last store-wide sequence handed out
	blk     cipher.Block         // the IDs' cipher
	last    map[string]time.Time // time in the newest key of each user seen
	pending []archiveRecord
	timer   *time.Timer

	flushMu sync.Mutex // one flush at a time, in order
}

// archiveLoad reads (creating if needed) the cipher and the sequence;
// q.mu is held.
func (s *Store) archiveLoad() error {
	q := &s.archive
	if q.ready {
		return nil
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		root, err := tx.CreateBucketIfNotExists(bucketArchive)
		if err != nil {
			return err
		}
		blk, err := archiveCipher(tx, true)
		if err != nil {
			return err
		}
		q.blk, q.seq = blk, root.Sequence()
		return nil
	})
	if err != nil {
		return err
	}
	q.last = make(map[string]time.Time)
	q.ready = true
	return nil
}

// archiveLastTime returns the time in user's newest key (queued or
// stored); q.mu is held.
func (s *Store) archiveLastTime(user string) (time.Time, error) {
	q := &s.archive
	if t, ok := q.last[user]; ok {
		return t, nil
	}
	var t time.Time
	err := s.db.View(func(tx *bolt.Tx) error {
		if ub := tx.Bucket(bucketArchive).Bucket([]byte(user)); ub != nil {
			if k, _ := ub.Cursor().Last(); k != nil {
				t = archiveKeyTime(k)
			}
		}
		return nil
	})
	if err == nil {
		q.last[user] = t
	}
	return t, err
}

// archiveEnqueue queues a record; q.mu is held.
func (s *Store) archiveEnqueue(r archiveRecord) {
	q := &s.archive
	q.pending = append(q.pending, r)
	switch {
	case len(q.pending) >= archiveFlushMax:
		if q.timer != nil {
			q.timer.Stop()
			q.timer = nil
		}
		go s.flushArchive()
	case q.timer == nil:
		q.timer = time.AfterFunc(archiveFlushDelay, func() { s.flushArchive() })
	}
}

// flushArchive commits the queued records. It returns the commit's error;
// on error the records stay queued.
func (s *Store) flushArchive() error {
	q := &s.archive
	q.flushMu.Lock()
	defer q.flushMu.Unlock()
	q.mu.Lock()
	batch := q.pending
	q.pending = nil
	if q.timer != nil {
		q.timer.Stop()
		q.timer = nil
	}
	seq := q.seq
	q.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		root, err := tx.CreateBucketIfNotExists(bucketArchive)
		if err != nil {
			return err
		}
		for _, r := range batch {
			ub, err := root.CreateBucketIfNotExists([]byte(r.user))
			if err != nil {
				return err
			}
			if err := ub.Put(r.key, r.val); err != nil {
				return err
			}
			if err := ub.SetSequence(ub.Sequence() + 1); err != nil {
				return err
			}
		}
		if seq > root.Sequence() {
			return root.SetSequence(seq)
		}
		return nil
	})
	if err != nil {
		q.mu.Lock()
		q.pending = append(batch, q.pending...)
		if q.timer == nil && !s.closed.Load() {
			q.timer = time.AfterFunc(100*archiveFlushDelay, func() { s.flushArchive() })
		}
		q.mu.Unlock()
	}
	return err
}

// forgetArchiveUser drops what the queue remembers of user (after its
// archive was deleted).
func (s *Store) forgetArchiveUser(user string) {
	s.archive.mu.Lock()
	delete(s.archive.last, user)
	s.archive.mu.Unlock()
}

// forgetArchiveTimes drops every remembered newest time (after old
// messages were deleted, a user's newest key may be gone).
func (s *Store) forgetArchiveTimes() {
	s.archive.mu.Lock()
	clear(s.archive.last)
	s.archive.mu.Unlock()
}
