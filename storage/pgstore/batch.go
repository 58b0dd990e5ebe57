package pgstore

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5"

	"github.com/treff-im/treff/storage"
)

// Archive appends from concurrent callers are committed together: a
// caller that finds fewer than maxBatches batches running takes every
// append waiting (its own included) and writes them in one transaction
// sent in one round trip; the others wait for the batch that takes
// theirs. Each caller still returns only after the transaction that holds
// its message committed (acknowledged means stored), and one caller
// alone commits at once, as without batching. A caller whose context
// ends before a batch took its append returns at once and nothing is
// written; one whose append is in a batch gets the batch's outcome, and
// the batch's transaction is cancelled as soon as all its callers'
// contexts have ended. Under load this turns many
// small transactions into a few larger ones: fewer round trips, fewer
// commits and less of PostgreSQL's CPU per message.

// maxBatches is how many batches of appends may run at once.
const maxBatches = 4

// maxBatchAppends bounds the appends of one batch.
const maxBatchAppends = 256

// appendReq is one AppendArchive waiting for its batch.
type appendReq struct {
	ctx  context.Context
	user string
	id   string
	msg  storage.ArchivedMessage
	done chan appendResult // buffered: the batch never waits for the caller
}

// appendResult is the outcome of one append: the ID it got (a new one
// if its first was taken) or an error.
type appendResult struct {
	id  string
	err error
}

// archiveBatcher collects the appends.
type archiveBatcher struct {
	mu      sync.Mutex
	pending []*appendReq
	running int
	batches atomic.Int64 // batches written, for tests
}

// appendBatched queues r and waits for its batch, or for r.ctx.
func (s *Store) appendBatched(r *appendReq) (string, error) {
	b := &s.batch
	b.mu.Lock()
	b.pending = append(b.pending, r)
	lead := b.running < maxBatches
	if lead {
		b.running++
	}
	b.mu.Unlock()
	if lead {
		s.runBatch()
	}
	select {
	case res := <-r.done:
		return res.id, res.err
	case <-r.ctx.Done():
	}
	// Not taken by a batch yet: nothing is written.
	b.mu.Lock()
	for i, p := range b.pending {
		if p == r {
			b.pending = append(b.pending[:i:i], b.pending[i+1:]...)
			b.mu.Unlock()
			return "", r.ctx.Err()
		}
	}
	b.mu.Unlock()
	// In a batch: its transaction is cancelled once all its callers
	// have stopped waiting; until then the outcome is the batch's, and
	// the caller hears it as it is (stored or not).
	res := <-r.done
	return res.id, res.err
}

// runBatch writes the appends waiting (up to maxBatchAppends) in one
// transaction and hands each its outcome; then, if more are waiting and
// no other batch took them, it starts the next batch in a goroutine, so
// that its own caller returns.
func (s *Store) runBatch() {
	b := &s.batch
	b.mu.Lock()
	n := min(len(b.pending), maxBatchAppends)
	reqs := b.pending[:n:n]
	b.pending = b.pending[n:]
	if len(b.pending) == 0 {
		b.pending = nil
	}
	b.mu.Unlock()

	if len(reqs) > 0 {
		b.batches.Add(1)
		s.writeBatch(reqs)
	}

	b.mu.Lock()
	if len(b.pending) > 0 {
		b.mu.Unlock()
		go s.runBatch()
		return
	}
	b.running--
	b.mu.Unlock()
}

// writeBatch commits reqs in one transaction. The transaction's context
// ends when every caller in it has stopped waiting (their contexts are
// done), so that a write nobody waits for is cancelled. If the batch
// fails as a whole, each append is tried again on its own, so that one
// bad append fails only its caller.
func (s *Store) writeBatch(reqs []*appendReq) {
	live := len(reqs)
	var mu sync.Mutex
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stops := make([]func() bool, 0, len(reqs))
	for _, r := range reqs {
		stops = append(stops, context.AfterFunc(r.ctx, func() {
			mu.Lock()
			live--
			if live == 0 {
				cancel()
			}
			mu.Unlock()
		}))
	}
	defer func() {
		for _, stop := range stops {
			stop()
		}
	}()
	if len(reqs) == 1 {
		r := reqs[0]
		id, err := s.appendOne(ctx, r.user, r.id, r.msg)
		r.done <- appendResult{id, err}
		return
	}
	err := s.checkClosed()
	if err == nil {
		bt := &pgx.Batch{}
		users := make([]string, 0, len(reqs))
		for _, r := range reqs {
			users = append(users, archiveLock(r.user))
		}
		// The statements up to the batch's end run as one implicit
		// transaction: all or nothing. Locks in the order of their keys, so that two batches (also on
		// two nodes) never wait for each other in a circle.
		bt.Queue(`SELECT pg_advisory_xact_lock(k) FROM (SELECT DISTINCT hashtextextended(u, 0) AS k FROM unnest($1::text[]) u ORDER BY k) keys`, users)
		queueAppends(bt, reqs)
		err = s.pool.SendBatch(ctx, bt).Close()
	}
	if err == nil {
		for _, r := range reqs {
			r.done <- appendResult{id: r.id}
		}
		return
	}
	for _, r := range reqs {
		if err := r.ctx.Err(); err != nil {
			r.done <- appendResult{err: err}
			continue
		}
		id, err := s.appendOne(r.ctx, r.user, r.id, r.msg)
		r.done <- appendResult{id, err}
	}
}

// checkClosed returns storage.ErrClosed after Close.
func (s *Store) checkClosed() error {
	if s.closed.Load() {
		return storage.ErrClosed
	}
	return nil
}

// queueAppend adds the insert of one archived message to bt: its time
// is raised to the user's latest, so that time order follows archive
// order.
func queueAppend(bt *pgx.Batch, user, id string, msg storage.ArchivedMessage) {
	stanza := msg.Stanza
	if stanza == nil {
		stanza = []byte{}
	}
	bt.Queue(`INSERT INTO archive (owner, id, at, with_jid, with_resource, outgoing, stanza)
		SELECT $1, $2, greatest($3, coalesce((SELECT at FROM archive WHERE owner = $1 ORDER BY at DESC, seq DESC LIMIT 1), $3)), $4, $5, $6, $7`,
		user, id, msg.Time.UnixNano(), msg.With, msg.WithResource, msg.Outgoing, stanza)
}

// queueAppends adds to bt one insert of every message of reqs, in their
// order. Each time is raised to the latest of its user's earlier ones
// (stored, or earlier in reqs): a running maximum per user over the
// batch, started at the user's latest stored time. The rows are inserted
// in the order of the batch, so that seq follows it.
func queueAppends(bt *pgx.Batch, reqs []*appendReq) {
	n := len(reqs)
	owners, ids, withs, ress := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	ats := make([]int64, n)
	outs := make([]bool, n)
	stanzas := make([][]byte, n)
	for i, r := range reqs {
		owners[i], ids[i], ats[i] = r.user, r.id, r.msg.Time.UnixNano()
		withs[i], ress[i], outs[i] = r.msg.With, r.msg.WithResource, r.msg.Outgoing
		stanzas[i] = r.msg.Stanza
		if stanzas[i] == nil {
			stanzas[i] = []byte{}
		}
	}
	bt.Queue(`INSERT INTO archive (owner, id, at, with_jid, with_resource, outgoing, stanza)
		SELECT b.owner, b.id,
			greatest(max(b.at) OVER (PARTITION BY b.owner ORDER BY b.ord ROWS UNBOUNDED PRECEDING),
				coalesce((SELECT a.at FROM archive a WHERE a.owner = b.owner ORDER BY a.at DESC, a.seq DESC LIMIT 1), b.at)),
			b.with_jid, b.with_resource, b.outgoing, b.stanza
		FROM unnest($1::text[], $2::text[], $3::int8[], $4::text[], $5::text[], $6::bool[], $7::bytea[])
			WITH ORDINALITY AS b(owner, id, at, with_jid, with_resource, outgoing, stanza, ord)
		ORDER BY b.ord`,
		owners, ids, ats, withs, ress, outs, stanzas)
}

// appendOne commits one append in its own implicit transaction, one
// round trip: the user's lock and the insert. A taken ID (a collision
// of random IDs) is tried again with new ones.
func (s *Store) appendOne(ctx context.Context, user, id string, msg storage.ArchivedMessage) (string, error) {
	for range 3 {
		if err := s.check(ctx); err != nil {
			return "", err
		}
		bt := &pgx.Batch{}
		bt.Queue("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", archiveLock(user))
		queueAppend(bt, user, id, msg)
		err := s.pool.SendBatch(ctx, bt).Close()
		if !isUnique(err) {
			return id, err
		}
		id = newArchiveID()
	}
	return "", errors.New("no free archive ID after three tries")
}
