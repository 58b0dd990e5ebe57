package pgstore

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/treff-im/treff/storage"
)

// The archive (XEP-0313) is one table for all users. seq, an identity
// column, orders a user's messages (archive order); id is the public
// archive ID: 16 random bytes in unpadded base64url, so that it reveals
// neither order nor size, with a unique index that maps it back to its
// row. The package README explains the indexes.

// newArchiveID returns a new random archive ID.
func newArchiveID() string {
	var b [16]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

const archiveCols = "id, at, with_jid, with_resource, outgoing, stanza"

func scanArchived(row pgx.Row) (storage.ArchivedMessage, error) {
	var m storage.ArchivedMessage
	var at int64
	err := row.Scan(&m.ID, &at, &m.With, &m.WithResource, &m.Outgoing, &m.Stanza)
	m.Time = time.Unix(0, at).UTC()
	return m, err
}

// archiveLock is the advisory lock key that serialises the appends to
// one user's archive, so that seq order and time order agree.
func archiveLock(user string) string { return "archive " + user }

// AppendArchive implements storage.Archive. Concurrent appends are
// committed together (see batch.go); each returns once its message is
// committed.
func (s *Store) AppendArchive(ctx context.Context, user string, msg storage.ArchivedMessage) (string, error) {
	if err := noEmpty(user, msg.With); err != nil {
		return "", fail(ctx, err, "append archive")
	}
	if err := s.check(ctx); err != nil {
		return "", fail(ctx, err, "append archive")
	}
	r := &appendReq{ctx: ctx, user: user, id: newArchiveID(), msg: msg, done: make(chan appendResult, 1)}
	if s.delayed(r) {
		// Queued (delay.go): committed with the next flush; the ID is
		// the one it will have (random, so taken only by chance; then
		// the flush gives it another).
		return r.id, nil
	}
	id, err := s.appendBatched(r)
	if err != nil {
		return "", fail(ctx, err, "append archive")
	}
	return id, nil
}

// ArchiveImporter is implemented by Store: it writes messages with the
// IDs and times they already have, for moving an archive from another
// store (community migrate-store) without changing the IDs that clients
// hold. A message whose ID is in the store already is skipped, so that an
// import can be run again.
type ArchiveImporter interface {
	ImportArchived(ctx context.Context, user string, msgs []storage.ArchivedMessage) error
}

var _ ArchiveImporter = (*Store)(nil)

// ImportArchived appends msgs (in archive order, after the user's
// present messages) keeping their IDs and times, in one transaction.
func (s *Store) ImportArchived(ctx context.Context, user string, msgs []storage.ArchivedMessage) error {
	if err := noEmpty(user); err != nil {
		return fail(ctx, err, "import archive")
	}
	return s.tx(ctx, "import archive", func(tx pgx.Tx) error {
		if err := lockKey(ctx, tx, archiveLock(user)); err != nil {
			return err
		}
		b := &pgx.Batch{}
		for _, m := range msgs {
			if m.ID == "" || m.With == "" {
				return errors.New("message without ID or With")
			}
			stanza := m.Stanza
			if stanza == nil {
				stanza = []byte{}
			}
			b.Queue(`INSERT INTO archive (owner, id, at, with_jid, with_resource, outgoing, stanza)
				VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING`,
				user, m.ID, m.Time.UnixNano(), m.With, m.WithResource, m.Outgoing, stanza)
		}
		return tx.SendBatch(ctx, b).Close()
	})
}

// QueryArchive implements storage.Archive in SQL: the result set is a
// range of the user's seq (Start and End become seq bounds through the
// (owner, at, seq) index) with the With filter, the page is one
// ORDER BY seq LIMIT on the index, and Count and Index are one count on
// an index. All of it reads one snapshot.
func (s *Store) QueryArchive(ctx context.Context, user string, q storage.ArchiveQuery) (storage.ArchivePage, error) {
	if err := noEmpty(user); err != nil {
		return storage.ArchivePage{}, fail(ctx, err, "query archive")
	}
	s.flushArchive(ctx)
	var page storage.ArchivePage
	err := s.readTx(ctx, "query archive", func(tx pgx.Tx) error {
		var err error
		page, err = queryArchive(ctx, tx, user, q)
		return err
	})
	return page, err
}

// sqlWhere builds a conjunction of conditions with numbered arguments.
type sqlWhere struct {
	conds []string
	args  []any
}

// add appends a condition whose "?"s are its arguments, in order.
func (w *sqlWhere) add(cond string, args ...any) {
	for _, a := range args {
		w.args = append(w.args, a)
		cond = strings.Replace(cond, "?", "$"+strconv.Itoa(len(w.args)), 1)
	}
	w.conds = append(w.conds, cond)
}

func (w *sqlWhere) String() string { return strings.Join(w.conds, " AND ") }

// clone returns a copy that can be extended without changing w.
func (w *sqlWhere) clone() *sqlWhere {
	return &sqlWhere{conds: slices.Clone(w.conds), args: slices.Clone(w.args)}
}

// querier is what queryArchive needs of a transaction (a test wraps it
// to look at the plans).
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func queryArchive(ctx context.Context, tx querier, user string, q storage.ArchiveQuery) (storage.ArchivePage, error) {
	// The seqs of the IDs the query names.
	var named []string
	for _, id := range []string{q.AfterID, q.BeforeID, q.After, q.Before} {
		if id != "" {
			named = append(named, id)
		}
	}
	named = append(named, q.IDs...)
	seqOf := make(map[string]int64, len(named))
	if len(named) > 0 {
		rows, err := tx.Query(ctx, "SELECT id, seq FROM archive WHERE owner = $1 AND id = ANY($2)", user, named)
		if err != nil {
			return storage.ArchivePage{}, err
		}
		for rows.Next() {
			var id string
			var seq int64
			if err := rows.Scan(&id, &seq); err != nil {
				rows.Close()
				return storage.ArchivePage{}, err
			}
			seqOf[id] = seq
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return storage.ArchivePage{}, err
		}
		for _, id := range named {
			if _, ok := seqOf[id]; !ok {
				return storage.ArchivePage{}, fmt.Errorf("archive ID %q: %w", id, storage.ErrNotFound)
			}
		}
	}

	// firstAt returns the seq of the user's first message at or after t,
	// or -1 if there is none.
	firstAt := func(t time.Time) (int64, error) {
		var seq int64
		err := tx.QueryRow(ctx, "SELECT seq FROM archive WHERE owner = $1 AND at >= $2 ORDER BY at, seq LIMIT 1", user, t.UnixNano()).Scan(&seq)
		if errors.Is(err, pgx.ErrNoRows) {
			return -1, nil
		}
		return seq, err
	}
	set := &sqlWhere{}
	set.add("owner = ?", user)
	if !q.Start.IsZero() {
		seq, err := firstAt(q.Start)
		if err != nil {
			return storage.ArchivePage{}, err
		}
		if seq < 0 {
			set.add("false")
		} else {
			set.add("seq >= ?", seq)
		}
	}
	if !q.End.IsZero() {
		seq, err := firstAt(q.End.Add(time.Nanosecond))
		if err != nil {
			return storage.ArchivePage{}, err
		}
		if seq >= 0 {
			set.add("seq < ?", seq)
		}
	}
	if w := storage.ParseArchiveWith(q.With); w.JID != "" {
		set.add("with_jid = ?", w.JID)
		if w.Full {
			set.add("with_resource = ?", w.Resource)
		}
	}
	if q.AfterID != "" {
		set.add("seq > ?", seqOf[q.AfterID])
	}
	if q.BeforeID != "" {
		set.add("seq < ?", seqOf[q.BeforeID])
	}
	if len(q.IDs) > 0 {
		seqs := make([]int64, 0, len(q.IDs))
		for _, id := range q.IDs {
			seqs = append(seqs, seqOf[id])
		}
		set.add("seq = ANY(?)", seqs)
	}

	// The page: the window of the result set that After and Before leave,
	// from its start (or end, backward), one more than Limit to learn
	// whether the page is complete.
	win := set.clone()
	if q.After != "" {
		win.add("seq > ?", seqOf[q.After])
	}
	if q.Before != "" {
		win.add("seq < ?", seqOf[q.Before])
	}
	limit := max(q.Limit, 0)
	dir := "ASC"
	if q.Backward {
		dir = "DESC"
	}
	rows, err := tx.Query(ctx, "SELECT seq, "+archiveCols+" FROM archive WHERE "+win.String()+
		" ORDER BY seq "+dir+" LIMIT "+strconv.Itoa(limit+1), win.args...)
	if err != nil {
		return storage.ArchivePage{}, err
	}
	var msgs []storage.ArchivedMessage
	var seqs []int64
	for rows.Next() {
		var seq, at int64
		var m storage.ArchivedMessage
		if err := rows.Scan(&seq, &m.ID, &at, &m.With, &m.WithResource, &m.Outgoing, &m.Stanza); err != nil {
			rows.Close()
			return storage.ArchivePage{}, err
		}
		m.Time = time.Unix(0, at).UTC()
		msgs, seqs = append(msgs, m), append(seqs, seq)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return storage.ArchivePage{}, err
	}
	page := storage.ArchivePage{Complete: len(msgs) <= limit}
	if len(msgs) > limit {
		msgs, seqs = msgs[:limit], seqs[:limit]
	}
	if q.Backward {
		slices.Reverse(msgs)
		slices.Reverse(seqs)
	}
	// Count, and Index: how many of the result set come before the page.
	first := int64(-1)
	if len(seqs) > 0 {
		first = seqs[0]
	}
	var count, index int64
	cw := set.clone()
	if err := tx.QueryRow(ctx, fmt.Sprintf("SELECT count(*), count(*) FILTER (WHERE seq < $%d) FROM archive WHERE %s", len(cw.args)+1, cw),
		append(cw.args, first)...).Scan(&count, &index); err != nil {
		return storage.ArchivePage{}, err
	}
	page.Count = int(count)
	if len(msgs) > 0 {
		page.Messages = msgs
		page.Index = int(index)
	}
	return page, nil
}

// CountArchive implements storage.Archive.
func (s *Store) CountArchive(ctx context.Context, user string) (int, error) {
	if err := noEmpty(user); err != nil {
		return 0, fail(ctx, err, "count archive")
	}
	s.flushArchive(ctx)
	return s.count(ctx, "count archive", "SELECT count(*) FROM archive WHERE owner = $1", user)
}

// DeleteArchiveBefore implements storage.Archive; the BRIN index on at
// finds the old rows without a scan of the table.
func (s *Store) DeleteArchiveBefore(ctx context.Context, t time.Time) (int, error) {
	s.flushArchive(ctx)
	n, err := s.exec(ctx, "delete archive before", "DELETE FROM archive WHERE at < $1", t.UnixNano())
	return int(n), err
}

// DeleteArchive implements storage.Archive.
func (s *Store) DeleteArchive(ctx context.Context, user string) error {
	if err := noEmpty(user); err != nil {
		return fail(ctx, err, "delete archive")
	}
	s.flushArchive(ctx)
	defer s.prefs.drop(user)
	return s.tx(ctx, "delete archive", func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "DELETE FROM archive WHERE owner = $1", user); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "DELETE FROM archive_prefs WHERE owner = $1", user)
		return err
	})
}

// ArchivePrefs implements storage.Archive.
func (s *Store) ArchivePrefs(ctx context.Context, user string) (storage.ArchivePrefs, error) {
	var p storage.ArchivePrefs
	if err := noEmpty(user); err != nil {
		return p, fail(ctx, err, "archive preferences")
	}
	if err := s.check(ctx); err != nil {
		return p, fail(ctx, err, "archive preferences")
	}
	now := time.Now()
	if p, ok := s.prefs.get(user, now); ok {
		return p, nil
	}
	gen := s.prefs.gen.Load()
	var def string
	err := s.pool.QueryRow(ctx, "SELECT default_, always, never FROM archive_prefs WHERE owner = $1", user).Scan(&def, &p.Always, &p.Never)
	if errors.Is(err, pgx.ErrNoRows) {
		s.prefs.put(user, storage.ArchivePrefs{}, gen, now)
		return storage.ArchivePrefs{}, nil
	}
	if err != nil {
		return storage.ArchivePrefs{}, fail(ctx, err, "archive preferences")
	}
	p.Default = storage.ArchiveDefault(def)
	if len(p.Always) == 0 {
		p.Always = nil
	}
	if len(p.Never) == 0 {
		p.Never = nil
	}
	s.prefs.put(user, p, gen, now)
	return p, nil
}

// SetArchivePrefs implements storage.Archive.
func (s *Store) SetArchivePrefs(ctx context.Context, user string, p storage.ArchivePrefs) error {
	if err := noEmpty(append(append([]string{user}, p.Always...), p.Never...)...); err != nil {
		return fail(ctx, err, "set archive preferences")
	}
	always, never := p.Always, p.Never
	if always == nil {
		always = []string{}
	}
	if never == nil {
		never = []string{}
	}
	defer s.prefs.drop(user) // also if it failed: the row may have changed
	_, err := s.exec(ctx, "set archive preferences", `INSERT INTO archive_prefs (owner, default_, always, never) VALUES ($1, $2, $3, $4)
		ON CONFLICT (owner) DO UPDATE SET default_ = excluded.default_, always = excluded.always, never = excluded.never`,
		user, string(p.Default), always, never)
	return err
}

// ReplaceArchived implements storage.ArchiveEditor.
func (s *Store) ReplaceArchived(ctx context.Context, user, id string, stanza []byte) error {
	if err := noEmpty(user); err != nil {
		return fail(ctx, err, "replace archived")
	}
	s.flushArchive(ctx)
	if stanza == nil {
		stanza = []byte{}
	}
	n, err := s.exec(ctx, "replace archived", "UPDATE archive SET stanza = $3 WHERE owner = $1 AND id = $2", user, id, stanza)
	if err == nil && n == 0 {
		err = fmt.Errorf("pgstore: replace archived %q: %w", id, storage.ErrNotFound)
	}
	return err
}
