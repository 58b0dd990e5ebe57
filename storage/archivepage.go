package storage

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// ArchiveIndex is one user's message archive as PageArchive reads it: a
// consistent view (one read transaction, or a read lock held) of the
// user's messages ordered by key. A backend implements it to answer
// Archive.QueryArchive with PageArchive and gets XEP-0313 filtering and
// XEP-0059 paging without writing either.
//
// Every message has a key, a byte string; bytes.Compare on keys gives
// archive order, which is also time order (see Archive). Keys need to be
// valid only for the life of the view, so a position in a slice will do.
// Where a method takes a key bound, it is a key the index returned or such
// a key followed by one zero byte, which stands for the smallest key after
// it.
//
// The context passed to each method is the one given to PageArchive.
type ArchiveIndex interface {
	// Key returns the key of the message with the given archive ID, or
	// nil if the ID is not that of a message in this archive (unknown,
	// malformed, deleted or another user's).
	Key(ctx context.Context, id string) ([]byte, error)
	// TimeKey returns a key bound k such that the messages whose Time is
	// at or after t are exactly those whose key is at or after k. Such a
	// k exists because times never decrease in archive order; it need not
	// be the key of a message (a position past the last one, for
	// example).
	TimeKey(ctx context.Context, t time.Time) ([]byte, error)
	// Scan calls yield with the key of each message whose key is at or
	// after from and before to (a nil bound is no bound) and that with
	// matches, in key order, until yield returns false. It yields nothing
	// if from is not before to. yield may keep the key only until it
	// returns, so Scan may reuse the key's memory.
	Scan(ctx context.Context, from, to []byte, with ArchiveWith, yield func(key []byte) bool) error
	// Messages appends to dst the messages with the given keys, each the
	// key of a message of this archive, in the order given, and returns
	// the extended slice. The messages are copies (see the package's
	// conventions) with Time in UTC.
	Messages(ctx context.Context, dst []ArchivedMessage, keys [][]byte) ([]ArchivedMessage, error)
}

// ArchiveWith is the With filter of an ArchiveQuery, split into its parts
// for ArchiveIndex.Scan.
type ArchiveWith struct {
	// JID is the bare JID a message's With must equal; "" matches every
	// message.
	JID string
	// Resource is what a message's WithResource must equal, if Full.
	Resource string
	// Full reports that the filter was a full JID, so that the resource
	// must match too.
	Full bool
}

// ParseArchiveWith splits the With of an ArchiveQuery ("" or a bare or
// full JID) into an ArchiveWith.
func ParseArchiveWith(with string) ArchiveWith {
	bare, res, full := strings.Cut(with, "/")
	return ArchiveWith{JID: bare, Resource: res, Full: full}
}

// Matches reports whether a message with the given With and WithResource
// passes w.
func (w ArchiveWith) Matches(with, resource string) bool {
	return w.JID == "" || with == w.JID && (!w.Full || resource == w.Resource)
}

// archiveCheckEvery is how many messages PageArchive scans between two
// looks at its context.
const archiveCheckEvery = 1024

// PageArchive answers q from ix as Archive.QueryArchive documents: the
// result set of Start, End, With, AfterID, BeforeID and IDs, the page that
// After, Before, Backward and Limit place in it, its Count, Index and
// Complete. An ID in q that is not in ix gives an error wrapping
// ErrNotFound.
//
// It scans the keys of the result set's range once, to count it,
// remembering only the keys of up to Limit messages, and fetches the
// messages of the page at the end; for IDs it scans only the given
// messages. It looks at ctx every thousand or so messages of the result
// set, so that a long scan ends soon after ctx does.
func PageArchive(ctx context.Context, ix ArchiveIndex, q ArchiveQuery) (ArchivePage, error) {
	key := func(id string) ([]byte, error) {
		k, err := ix.Key(ctx, id)
		if err == nil && k == nil {
			err = fmt.Errorf("archive ID %q: %w", id, ErrNotFound)
		}
		return k, err
	}
	// [lo, hi) bounds the result set's keys, [wlo, whi) the page's
	// window; nil is no bound.
	var lo, hi, wlo, whi []byte
	if !q.Start.IsZero() {
		k, err := ix.TimeKey(ctx, q.Start)
		if err != nil {
			return ArchivePage{}, err
		}
		lo = k
	}
	if !q.End.IsZero() {
		k, err := ix.TimeKey(ctx, q.End.Add(time.Nanosecond))
		if err != nil {
			return ArchivePage{}, err
		}
		hi = k
	}
	for _, b := range []struct {
		id          string
		after, page bool
	}{{q.AfterID, true, false}, {q.BeforeID, false, false}, {q.After, true, true}, {q.Before, false, true}} {
		if b.id == "" {
			continue
		}
		k, err := key(b.id)
		if err != nil {
			return ArchivePage{}, err
		}
		switch {
		case b.page && b.after:
			wlo = keyAfter(k)
		case b.page:
			whi = k
		case b.after:
			if k = keyAfter(k); lo == nil || bytes.Compare(k, lo) > 0 {
				lo = k
			}
		default:
			if hi == nil || bytes.Compare(k, hi) < 0 {
				hi = k
			}
		}
	}
	var ids [][]byte
	if len(q.IDs) > 0 {
		ids = make([][]byte, 0, len(q.IDs))
		for _, id := range q.IDs {
			k, err := key(id)
			if err != nil {
				return ArchivePage{}, err
			}
			ids = append(ids, k)
		}
		slices.SortFunc(ids, bytes.Compare)
		ids = slices.CompactFunc(ids, bytes.Equal)
	}

	pg := archivePager{ctx: ctx, wlo: wlo, whi: whi, limit: max(q.Limit, 0), backward: q.Backward}
	with := ParseArchiveWith(q.With)
	if ids == nil {
		if err := ix.Scan(ctx, lo, hi, with, pg.add); err != nil {
			return ArchivePage{}, err
		}
	} else {
		for _, k := range ids {
			if (lo != nil && bytes.Compare(k, lo) < 0) || (hi != nil && bytes.Compare(k, hi) >= 0) {
				continue
			}
			if err := ix.Scan(ctx, k, keyAfter(k), with, pg.add); err != nil {
				return ArchivePage{}, err
			}
		}
	}
	if pg.err != nil {
		return ArchivePage{}, pg.err
	}

	page := ArchivePage{Count: pg.count, Complete: pg.window <= pg.limit}
	if len(pg.keys) == 0 {
		return page, nil
	}
	page.Index = pg.before
	keys := pg.keys
	if pg.backward {
		page.Index += pg.window - len(keys)
		// Unroll the ring into archive order.
		keys = append(keys[pg.ring:len(keys):len(keys)], keys[:pg.ring]...)
	}
	msgs, err := ix.Messages(ctx, make([]ArchivedMessage, 0, len(keys)), keys)
	if err != nil {
		return ArchivePage{}, err
	}
	page.Messages = msgs
	return page, nil
}

// keyAfter returns the smallest key after k.
func keyAfter(k []byte) []byte {
	return append(k[:len(k):len(k)], 0)
}

// archivePager counts the result set of one PageArchive and keeps the keys
// of its page.
type archivePager struct {
	ctx      context.Context
	err      error
	wlo, whi []byte
	limit    int
	backward bool
	count    int // messages of the result set
	before   int // of them before the window
	window   int // of them in the window
	// keys holds the page's keys: the window's first limit or, backward,
	// a ring of the last limit, whose oldest is at keys[ring]. Their
	// memory comes from arena while it lasts.
	keys  [][]byte
	ring  int
	arena []byte
}

// add takes the key of the next message of the result set; it is
// ArchiveIndex.Scan's yield.
func (pg *archivePager) add(k []byte) bool {
	pg.count++
	if pg.count%archiveCheckEvery == 0 {
		if err := pg.ctx.Err(); err != nil {
			pg.err = err
			return false
		}
	}
	switch {
	case pg.wlo != nil && bytes.Compare(k, pg.wlo) < 0:
		pg.before++
		return true
	case pg.whi != nil && bytes.Compare(k, pg.whi) >= 0:
		return true
	}
	pg.window++
	switch {
	case pg.limit == 0:
	case len(pg.keys) < pg.limit:
		if pg.arena == nil {
			// One allocation for the page's keys if they have one length.
			pg.arena = make([]byte, 0, pg.limit*len(k))
		}
		var slot []byte
		if len(k) <= cap(pg.arena)-len(pg.arena) {
			n := len(pg.arena)
			pg.arena = append(pg.arena, k...)
			slot = pg.arena[n:len(pg.arena):len(pg.arena)]
		} else {
			slot = bytes.Clone(k)
		}
		pg.keys = append(pg.keys, slot)
	case pg.backward:
		// The ring is full: the new key replaces the oldest. Slots are
		// reused, so keys of one length cost no allocation.
		pg.keys[pg.ring] = append(pg.keys[pg.ring][:0], k...)
		pg.ring = (pg.ring + 1) % pg.limit
	default:
		// Forward and the page is full: only the count goes on.
	}
	return true
}
