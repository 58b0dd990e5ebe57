package boltstore

import (
	"bytes"
	"context"
	"crypto/cipher"
	"encoding/binary"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/treff-im/treff/internal/logevery"
	"github.com/treff-im/treff/storage"
)

// Archive appends are written behind: AppendArchive gives the message its
// key and ID at once (the ID goes into the delivered stanza as its
// stanza-id, so the message must not wait for a disk commit) and queues
// the record; a flush commits everything queued in one transaction 25
// ms later (up to 250 ms while fewer than 512 records wait: see
// archiveFlushBatch), or at once when 512 have queued. Every read of the
// archive (and Close) flushes first, so what AppendArchive returned is
// always visible to queries. A crash can lose the archive copies of
// that last moment (the messages were delivered all the same).
//
// A scheduled flush (or one for a full queue) appends the batch to a
// journal, the bucket
// "archive_journal", in one write transaction (synced to disk like every
// commit unless Options.NoSync): its keys only grow, so a commit touches
// the journal's last page or two whatever the number of users in the
// batch. Writing each record into its user's bucket instead dirties (and
// makes bbolt copy, write and later collect) a page per user in the
// batch, which at a community server's rates (a few messages per user
// per commit or less) cost more than everything else a message does. The
// journal is folded into the users' buckets, with the batch of the
// moment, in one transaction every ten seconds (archiveFoldEvery), once it
// holds archiveFoldMax records, before every read of the archive, at
// Close and at Open (after a crash): by then most users have several
// records, and their bucket's last page is written once for all of them.
// (A build older than the journal ignores it: opened by one after a
// crash, the journal's records are not seen until a newer build opens
// the file again.)
//
// The queue is bounded in bytes (Options.ArchiveQueueBytes). A failed
// commit (a full disk, say) keeps its records queued and is tried again
// with a growing delay (archiveRetryFirst doubling up to archiveRetryMax);
// meanwhile appends are still queued while there is room, and refused
// with storage.ErrFull once there is none, so memory stays bounded and
// the caller can tell the sender. While commits succeed, an append that
// finds no room waits for the commit under way instead: a disk that is
// only slower than the appends slows them down, it does not refuse them. Outgoing messages are refused from 7/8
// of the bound: a message between two local users is appended first to
// the sender's archive (outgoing), then to the recipient's, and the
// margin keeps the second append from being refused after the first was
// taken. Reads during the retry delay fail with the last commit's error
// rather than answer without the queued messages. The failure is logged
// when it starts and then at most once a minute, and its end once; the
// lines carry no user, address or content. Close makes a last attempt
// and reports the records it could not write.

const (
	archiveFlushDelay = 25 * time.Millisecond
	// archiveFlushBatch and archiveFlushWait: a scheduled flush that
	// finds fewer than archiveFlushBatch records waits for more, until
	// archiveFlushWait after the first of them was queued. Each commit
	// costs about as much CPU as a few dozen appends (and two syncs), so
	// at a community server's rates (a few hundred messages a second)
	// committing every 25 ms cost as much as the rest of archiving; with
	// 64 records a batch, 15 to 40 commits a second at 500 to 2,000
	// messages a second still cost a quarter of the store's CPU per
	// record (BenchmarkArchiveAtRate); with 512, 4 to 8 commits a second.
	// The wait stays bounded by archiveFlushWait.
	archiveFlushBatch = 512
	archiveFlushWait  = 250 * time.Millisecond
	archiveFlushMax   = 1024 // queued records that trigger a flush at once
	// archiveRetryFirst and archiveRetryMax bound the delay before a
	// failed commit is tried again; it doubles from the first to the
	// most.
	archiveRetryFirst = 50 * time.Millisecond
	archiveRetryMax   = 5 * time.Second
	// archiveFoldEvery and archiveFoldMax: a scheduled flush folds the
	// journal into the users' buckets once this long has passed since the
	// last fold, or once this many records wait in the journal.
	archiveFoldEvery = 10 * time.Second
	archiveFoldMax   = 16384
	// archiveRecordOverhead is what a queued record costs beyond its
	// user, key and value (its slice element and headers).
	archiveRecordOverhead = 64
)

// DefaultArchiveQueueBytes is the bound of the archive's write queue when
// Options.ArchiveQueueBytes is zero.
const DefaultArchiveQueueBytes = 8 << 20

type archiveRecord struct {
	user     string
	key, val []byte
}

// size is what the record counts against the queue's bound.
func (r archiveRecord) size() int {
	return len(r.user) + len(r.key) + len(r.val) + archiveRecordOverhead
}

type archiveQueue struct {
	mu      sync.Mutex
	ready   bool                 // seq and blk loaded
	seq     uint64               // last store-wide sequence handed out
	blk     cipher.Block         // the IDs' cipher
	last    map[string]time.Time // time in the newest key of each user seen
	pending []archiveRecord
	spare   []archiveRecord // the last committed batch's array, for the next pending
	first   time.Time       // when the first of pending was queued
	// smallBatch is archiveFlushBatch (tests that fire the timers
	// themselves set 0: every scheduled flush commits).
	smallBatch int
	bytes      int         // size of the queued records, pending or being committed
	limit      int         // the bound of bytes
	stop       func() bool // stops the scheduled flush, if any
	// kicked is set from when an append starts a flush for a full batch
	// (smallBatch or archiveFlushMax records) until a flush takes the
	// queue.
	kicked bool
	// flushing is set while a commit runs; room is signalled (with mu)
	// when one ends, for appends that wait for room.
	flushing bool
	room     sync.Cond
	// journaled counts the records committed to the journal since the
	// last fold, folded is when that fold was; only flush changes them,
	// under flushMu.
	journaled int
	folded    time.Time
	// failures counts the commits that failed in a row; while it is
	// not zero a retry is scheduled, and lastErr is the last error.
	failures int
	lastErr  error

	flushMu sync.Mutex // one flush at a time, in order

	// Set by Open; tests replace them.
	afterFunc func(time.Duration, func()) (stop func() bool)
	spawn     func(func()) // runs a flush for a full queue in a goroutine
	now       func() time.Time
	log       *slog.Logger
	logLimit  logevery.Limiter
}

func afterFunc(d time.Duration, f func()) func() bool { return time.AfterFunc(d, f).Stop }

// ArchiveQueued returns the bytes of archived messages waiting in memory
// for their commit (the measure that Options.ArchiveQueueBytes bounds).
func (s *Store) ArchiveQueued() int {
	s.archive.mu.Lock()
	defer s.archive.mu.Unlock()
	return s.archive.bytes
}

// archiveLoad reads (creating if needed) the cipher and the sequence;
// q.mu is held.
func (s *Store) archiveLoad() error {
	q := &s.archive
	if q.ready {
		return nil
	}
	// A read is enough once the archive exists, so that a server
	// restarted on a full disk can queue appends.
	err := s.db.View(func(tx *bolt.Tx) error {
		root := tx.Bucket(bucketArchive)
		if root == nil {
			return nil
		}
		blk, err := archiveCipher(tx, false)
		if err == nil && blk != nil {
			q.blk, q.seq, q.ready = blk, root.Sequence(), true
		}
		return err
	})
	if err != nil {
		return err
	}
	if q.ready {
		q.last = make(map[string]time.Time)
		return nil
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
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

// archiveWait makes room in the queue for a record of size bytes: while
// commits succeed, it waits for the one under way (starting one if none
// is), so that a disk that is only slower than the appends slows them
// down; while they fail, or once ctx is done, it returns the
// storage.ErrFull of archiveRoom. q.mu is held.
func (s *Store) archiveWait(ctx context.Context, size int, outgoing bool) error {
	q := &s.archive
	for {
		err := s.archiveRoom(size, outgoing)
		if err == nil || q.failures > 0 || ctx.Err() != nil || s.closed.Load() {
			return err
		}
		if !q.flushing {
			q.flushing = true // the flush started here will clear it
			go s.flushArchive()
		}
		q.room.Wait()
	}
}

// archiveRoom returns storage.ErrFull, wrapped, if a record of size bytes
// does not fit in the queue; q.mu is held.
func (s *Store) archiveRoom(size int, outgoing bool) error {
	q := &s.archive
	limit := q.limit
	if outgoing {
		limit -= limit / 8
	}
	if q.bytes+size <= limit {
		return nil
	}
	if q.failures > 0 {
		return fmt.Errorf("boltstore: append archive: %w: %d bytes wait for a commit that fails (%v)", storage.ErrFull, q.bytes, q.lastErr)
	}
	return fmt.Errorf("boltstore: append archive: %w: %d bytes wait for a commit", storage.ErrFull, q.bytes)
}

// archiveEnqueue queues a record; q.mu is held.
func (s *Store) archiveEnqueue(r archiveRecord) {
	q := &s.archive
	if len(q.pending) == 0 {
		q.first = q.now()
	}
	q.pending = append(q.pending, r)
	q.bytes += r.size()
	switch {
	case q.failures > 0:
		// A retry is scheduled; it takes this record too.
	case len(q.pending) >= archiveFlushMax || q.smallBatch > 0 && len(q.pending) >= q.smallBatch:
		// Enough for a commit now, without waiting for the timer.
		if q.stop != nil {
			q.stop()
			q.stop = nil
		}
		if !q.kicked {
			// One flush at a time: the appends that come before it takes
			// the queue do not start more.
			q.kicked = true
			q.spawn(func() { s.flush(flushFull) })
		}
	case q.stop == nil:
		q.stop = q.afterFunc(archiveFlushDelay, s.flushArchiveLater)
	}
}

// Why a flush runs.
const (
	flushRead  = iota // a read, or appends waiting for room: not during the retry delay
	flushTimer        // the scheduled flush or retry
	flushClose        // the last one
	flushFull         // a full batch queued: to the journal, as flushTimer
)

// flushArchive commits the queued records, for a read; see flush.
func (s *Store) flushArchive() error { return s.flush(flushRead) }

// flushArchiveLater is the scheduled flush.
func (s *Store) flushArchiveLater() { s.flush(flushTimer) }

// flush commits the queued records and returns the commit's error; on
// error the records stay queued and a retry is scheduled. During the
// delay before a retry, a flush for a read returns the last error
// without trying.
func (s *Store) flush(why int) error {
	q := &s.archive
	q.flushMu.Lock()
	defer q.flushMu.Unlock()
	if (why == flushTimer || why == flushFull) && s.closed.Load() {
		return nil // Close made the last attempt
	}
	q.mu.Lock()
	if why == flushFull && q.failures > 0 {
		q.kicked = false
		q.mu.Unlock()
		return nil // the retry scheduled takes the queue
	}
	if why == flushRead && q.failures > 0 {
		err := q.lastErr
		q.flushing = false // in case an append started this flush
		q.mu.Unlock()
		return fmt.Errorf("archived messages wait for a retry of a commit that failed: %w", err)
	}
	if why == flushTimer && q.failures == 0 && len(q.pending) > 0 && len(q.pending) < q.smallBatch {
		if wait := archiveFlushWait - q.now().Sub(q.first); wait > 0 {
			// A small batch: wait for more (see archiveFlushBatch), until
			// the end of the wait, or until the batch is full
			// (archiveEnqueue then starts the flush): one wake-up.
			q.stop = q.afterFunc(wait, s.flushArchiveLater)
			q.mu.Unlock()
			return nil
		}
	}
	batch := q.pending
	q.pending, q.spare = q.spare, nil
	q.kicked = false
	if q.stop != nil {
		q.stop()
		q.stop = nil
	}
	seq := q.seq
	if len(batch) == 0 && (why == flushTimer || why == flushFull || q.journaled == 0) {
		// Nothing to write, nor to fold: a read or Close folds the
		// journal even with nothing queued.
		q.flushing = false
		q.room.Broadcast()
		q.mu.Unlock()
		return nil
	}
	q.flushing = true
	q.mu.Unlock()
	fold := why == flushRead || why == flushClose || q.journaled+len(batch) >= archiveFoldMax || q.now().Sub(q.folded) >= archiveFoldEvery
	err := s.db.Update(func(tx *bolt.Tx) error {
		if fold {
			return foldArchive(tx, batch, seq, q.journaled)
		}
		return journalArchive(tx, batch, seq)
	})
	if err == nil {
		if fold {
			q.journaled, q.folded = 0, q.now()
		} else {
			q.journaled += len(batch)
		}
	}
	q.mu.Lock()
	q.flushing = false
	q.room.Broadcast()
	if err != nil {
		q.pending = append(batch, q.pending...)
		q.failures++
		q.lastErr = err
		failures, queued := q.failures, q.bytes
		delay := archiveRetry(failures)
		if why != flushClose {
			q.stop = q.afterFunc(delay, s.flushArchiveLater)
		}
		q.mu.Unlock()
		if why != flushClose {
			s.logArchive(slog.LevelError, "boltstore: writing archived messages failed; they stay queued and the write is retried",
				"err", err, "queued_bytes", queued, "failed_attempts", failures, "retry_in", delay.String())
		}
		return err
	}
	n := 0
	for _, r := range batch {
		n += r.size()
	}
	q.bytes -= n
	if q.spare == nil && cap(batch) <= 2*archiveFlushMax {
		clear(batch) // the records' buffers go
		q.spare = batch[:0]
	}
	failures := q.failures
	q.failures, q.lastErr = 0, nil
	if len(q.pending) > 0 && q.stop == nil && why != flushClose {
		q.stop = q.afterFunc(archiveFlushDelay, s.flushArchiveLater)
	}
	q.mu.Unlock()
	if failures > 0 {
		// Once per failure: not rate-limited.
		q.log.Info("boltstore: archived messages are written again", "failed_attempts", failures, "written", len(batch))
	}
	return nil
}

// bucketArchiveJournal holds the records committed by scheduled flushes
// and not yet folded into the users' buckets: key = 8-byte big-endian
// sequence number of the journal bucket. A value is either records of
// one batch (up to journalChunk bytes of what one flush committed:
// journalBatchV1, then for each record the user and the value, each a
// uvarint length and the bytes, with the record's key, archiveKeyLen
// bytes, between them), or, as builds before the batch format wrote it,
// one record: the user (a uvarint length, never zero, and the bytes),
// the record's key, then its value. Both are read (eachJournalRecord).
// A build from before the batch values, given a file that a crash left
// with some, fails to open it (its fold finds an empty user name) rather
// than misread it; after a clean Close there is no journal.
var bucketArchiveJournal = []byte("archive_journal")

// journalBatchV1 starts a journal value holding a batch of records; a
// single record's value starts with its user's length, never zero.
const journalBatchV1 = 0

// journalChunk bounds a batch value of the journal (but for a single
// record larger than it): two fit in a page, so a commit rewrites at
// most one page of the values before it (bbolt never splits a leaf of
// four keys or fewer, so four values of a whole batch each would be
// rewritten by every commit).
const journalChunk = 1900

// journalArchive appends batch to the journal, in values of up to
// journalChunk bytes, and records seq as the archive's last sequence
// number. A Put for a few records instead of one per record: bbolt's
// per-key work (the search, the node's element, the page's header
// entry) is shared.
func journalArchive(tx *bolt.Tx, batch []archiveRecord, seq uint64) error {
	root, err := tx.CreateBucketIfNotExists(bucketArchive)
	if err != nil {
		return err
	}
	j, err := tx.CreateBucketIfNotExists(bucketArchiveJournal)
	if err != nil {
		return err
	}
	j.FillPercent = 1 // keys only grow: fill pages instead of splitting them in half
	// One buffer for the batch's keys and values: bbolt keeps them until
	// the commit.
	n := 0
	for _, r := range batch {
		n += 8 + 1 + 2*binary.MaxVarintLen64 + len(r.user) + len(r.key) + len(r.val)
	}
	buf := make([]byte, 0, n)
	next := j.Sequence()
	start := -1 // where the value being filled starts (its key before)
	put := func() error {
		if start < 0 {
			return nil
		}
		return j.Put(buf[start-8:start:start], buf[start:len(buf):len(buf)])
	}
	for _, r := range batch {
		size := 2*binary.MaxVarintLen64 + len(r.user) + len(r.key) + len(r.val)
		if start < 0 || len(buf)-start+size > journalChunk {
			if err := put(); err != nil {
				return err
			}
			next++
			buf = binary.BigEndian.AppendUint64(buf, next)
			start = len(buf)
			buf = append(buf, journalBatchV1)
		}
		buf = binary.AppendUvarint(buf, uint64(len(r.user)))
		buf = append(buf, r.user...)
		buf = append(buf, r.key...)
		buf = binary.AppendUvarint(buf, uint64(len(r.val)))
		buf = append(buf, r.val...)
	}
	if err := put(); err != nil {
		return err
	}
	if err := j.SetSequence(next); err != nil {
		return err
	}
	if seq > root.Sequence() {
		return root.SetSequence(seq)
	}
	return nil
}

// eachJournalRecord calls fn with the records of the journal value v (a
// batch or a single record, see bucketArchiveJournal), in order; the
// slices point into v. k is the journal key, for errors.
func eachJournalRecord(k, v []byte, fn func(user, key, val []byte) error) error {
	bad := func() error { return fmt.Errorf("archive journal record %x: %w", k, errCorrupt) }
	if len(v) == 0 {
		return bad()
	}
	str := func() ([]byte, bool) {
		n, w := binary.Uvarint(v)
		if w <= 0 || uint64(len(v)-w) < n {
			return nil, false
		}
		s := v[w : w+int(n) : w+int(n)]
		v = v[w+int(n):]
		return s, true
	}
	if v[0] != journalBatchV1 {
		user, ok := str()
		if !ok || len(v) < archiveKeyLen {
			return bad()
		}
		return fn(user, v[:archiveKeyLen:archiveKeyLen], v[archiveKeyLen:])
	}
	v = v[1:]
	for len(v) > 0 {
		user, ok := str()
		if !ok || len(user) == 0 || len(v) < archiveKeyLen {
			return bad()
		}
		key := v[:archiveKeyLen:archiveKeyLen]
		v = v[archiveKeyLen:]
		val, ok := str()
		if !ok {
			return bad()
		}
		if err := fn(user, key, val); err != nil {
			return err
		}
	}
	return nil
}

// foldArchive moves the journal's records, then batch's, into the users'
// buckets, removes the journal and records seq (if higher) as the
// archive's last sequence number; hint is the number of records in the
// journal, if known. The records are grouped by user (in arrival order
// within each user, which is their keys' order): each user's bucket is
// looked up, and its count written, once per fold.
func foldArchive(tx *bolt.Tx, batch []archiveRecord, seq uint64, hint int) error {
	root, err := tx.CreateBucketIfNotExists(bucketArchive)
	if err != nil {
		return err
	}
	type rec struct {
		user, key, val []byte
		u              int // the user's number, in order of first appearance
	}
	recs := make([]rec, 0, hint+len(batch))
	users := make(map[string]int)
	add := func(user, key, val []byte) error {
		u, ok := users[string(user)]
		if !ok {
			u = len(users)
			users[string(user)] = u
		}
		recs = append(recs, rec{user, key, val, u})
		return nil
	}
	if j := tx.Bucket(bucketArchiveJournal); j != nil {
		c := j.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			// v points into the mmap, which the commit may remap: one copy.
			if err := eachJournalRecord(k, bytes.Clone(v), add); err != nil {
				return err
			}
		}
		if err := tx.DeleteBucket(bucketArchiveJournal); err != nil {
			return err
		}
	}
	for _, r := range batch {
		add([]byte(r.user), r.key, r.val)
	}
	// Grouped by user with a counting sort, which keeps each user's
	// records in arrival order, which is their keys' order.
	start := make([]int, len(users)+1)
	for _, r := range recs {
		start[r.u+1]++
	}
	for u := range len(users) {
		start[u+1] += start[u]
	}
	grouped := make([]rec, len(recs))
	next := slices.Clone(start[:len(users)])
	for _, r := range recs {
		grouped[next[r.u]] = r
		next[r.u]++
	}
	for u := range len(users) {
		g := grouped[start[u]:start[u+1]]
		ub, err := root.CreateBucketIfNotExists(g[0].user)
		if err != nil {
			return err
		}
		ub.FillPercent = 1 // a user's keys only grow, see AppendArchive
		for _, r := range g {
			if err := ub.Put(r.key, r.val); err != nil {
				return err
			}
		}
		if err := ub.SetSequence(ub.Sequence() + uint64(len(g))); err != nil {
			return err
		}
	}
	if seq > root.Sequence() {
		return root.SetSequence(seq)
	}
	return nil
}

// foldArchiveJournal folds a journal left by a crash into the users'
// buckets (Open).
func foldArchiveJournal(tx *bolt.Tx) error {
	if tx.Bucket(bucketArchiveJournal) == nil {
		return nil
	}
	return foldArchive(tx, nil, 0, 0)
}

// archiveRetry is the delay before the next attempt after the given
// number of failed commits in a row.
func archiveRetry(failures int) time.Duration {
	d := archiveRetryFirst
	for i := 1; i < failures && d < archiveRetryMax; i++ {
		d *= 2
	}
	return min(d, archiveRetryMax)
}

// logArchive logs a line about the archive queue at most once per
// interval, with the number of lines held back since the last.
func (s *Store) logArchive(level slog.Level, msg string, args ...any) {
	q := &s.archive
	ok, n := q.logLimit.Allow(q.now())
	if !ok {
		return
	}
	if n > 0 {
		args = append(args, "similar_lines_suppressed", n)
	}
	q.log.Log(context.Background(), level, msg, args...)
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
