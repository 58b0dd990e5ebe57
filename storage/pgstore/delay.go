package pgstore

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"time"
)

// A delayed archive (SetArchiveDelay): AppendArchive returns once its
// message is queued in memory, and a flush commits the queue in one
// transaction (in chunks of maxBatchAppends) when delayFlushAt messages
// wait or the oldest has waited the delay. At the rates of a community
// server this turns one transaction per archived message (two per chat
// message) into a few a second. Every read of the archive (queries,
// counts, edits, deletions) flushes first, so that a client that sent a
// message finds it in the archive at once. A crash of this process loses
// what was queued: at most the delay's worth of archive copies, as with
// the bbolt store's journal; delivery and offline storage are not
// delayed.

// delayFlushAt is how many queued appends start a flush before the
// delay is over.
const delayFlushAt = 512

// DefaultArchiveQueueBytes bounds the stanza bytes a delayed archive
// holds in memory; an append beyond it flushes in the caller.
const DefaultArchiveQueueBytes = 8 << 20

// archiveDelay is the queue of a delayed archive.
type archiveDelay struct {
	wait     time.Duration // 0: AppendArchive commits before it returns
	maxBytes int
	log      *slog.Logger

	mu     sync.Mutex
	reqs   []*appendReq
	bytes  int
	timer  *time.Timer
	closed bool

	flushMu sync.Mutex // one flush at a time, in queue order
}

// SetArchiveDelay makes AppendArchive return before its message is
// committed: appends wait in memory, at most wait (and at most maxBytes
// of stanzas; 0 means DefaultArchiveQueueBytes), and are committed
// together. A failed flush is logged to log (nil: slog.Default) with the
// number of messages it lost, not their content. wait 0 (the default)
// commits each append before it returns. Call it before the store is
// used.
func (s *Store) SetArchiveDelay(wait time.Duration, maxBytes int, log *slog.Logger) {
	if maxBytes <= 0 {
		maxBytes = DefaultArchiveQueueBytes
	}
	if log == nil {
		log = slog.Default()
	}
	d := &s.delay
	d.mu.Lock()
	d.wait, d.maxBytes, d.log = wait, maxBytes, log
	d.mu.Unlock()
}

// delayed queues an append if the archive is delayed, and reports
// whether it did.
func (s *Store) delayed(r *appendReq) bool {
	d := &s.delay
	d.mu.Lock()
	if d.wait <= 0 || d.closed {
		d.mu.Unlock()
		return false
	}
	r.ctx = context.Background()             // the flush's, not the caller's
	r.msg.Stanza = bytes.Clone(r.msg.Stanza) // the caller may reuse its own
	d.reqs = append(d.reqs, r)
	d.bytes += len(r.msg.Stanza)
	full := d.bytes > d.maxBytes
	due := len(d.reqs) >= delayFlushAt
	if len(d.reqs) == 1 && !due {
		if d.timer == nil {
			d.timer = time.AfterFunc(d.wait, func() { s.flushArchive(context.Background()) })
		} else {
			d.timer.Reset(d.wait)
		}
	}
	d.mu.Unlock()
	switch {
	case full:
		// Too much in memory: this caller waits for the flush.
		s.flushArchive(context.Background())
	case due:
		go s.flushArchive(context.Background())
	}
	return true
}

// flushArchive commits what the delayed archive holds, and returns once
// it did (or failed: logged). It is called before every read of the
// archive.
func (s *Store) flushArchive(ctx context.Context) {
	d := &s.delay
	d.flushMu.Lock()
	defer d.flushMu.Unlock()
	d.mu.Lock()
	reqs := d.reqs
	d.reqs, d.bytes = nil, 0
	if d.timer != nil {
		d.timer.Stop()
	}
	log := d.log
	d.mu.Unlock()
	for len(reqs) > 0 {
		n := min(len(reqs), maxBatchAppends)
		chunk := reqs[:n:n]
		reqs = reqs[n:]
		s.batch.batches.Add(1)
		s.writeBatch(chunk)
		lost := 0
		for _, r := range chunk {
			if res := <-r.done; res.err != nil {
				lost++
			}
		}
		if lost > 0 {
			log.Error("pgstore: archived messages not stored", "n", lost)
		}
	}
}

// closeDelay flushes the delayed archive and stops queueing: appends
// after it commit before they return (and fail on the closed store).
func (s *Store) closeDelay() {
	d := &s.delay
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	s.flushArchive(context.Background())
}
