package memstore

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/treff-im/treff/storage"
)

var _ storage.Archive = (*Store)(nil)

// archives holds every user's message archive. IDs are random strings,
// mapped to the user and the sequence number that orders the archive.
type archives struct {
	users map[string]*userArchive
	ids   map[string]archiveRef
	prefs map[string]storage.ArchivePrefs
	// seq is the last sequence number handed out, for any user.
	seq uint64
}

// userArchive is one user's messages in archive order, with their
// sequence numbers (which increase).
type userArchive struct {
	msgs []storage.ArchivedMessage
	seqs []uint64
}

type archiveRef struct {
	user string
	seq  uint64
}

// archiveLocked returns s's archives, creating them; s.mu is write-locked.
func (s *Store) archiveLocked() *archives {
	if s.archive == nil {
		s.archive = &archives{users: map[string]*userArchive{}, ids: map[string]archiveRef{}, prefs: map[string]storage.ArchivePrefs{}}
	}
	return s.archive
}

func copyArchived(m storage.ArchivedMessage) storage.ArchivedMessage {
	m.Stanza = slices.Clone(m.Stanza)
	m.Time = m.Time.UTC()
	return m
}

// newArchiveID returns a random ID not in use.
func (a *archives) newID() (string, error) {
	var b [12]byte
	for range 10 {
		if _, err := rand.Read(b[:]); err != nil {
			return "", err
		}
		id := base64.RawURLEncoding.EncodeToString(b[:])
		if _, taken := a.ids[id]; !taken {
			return id, nil
		}
	}
	return "", fmt.Errorf("no free archive ID")
}

// AppendArchive implements storage.Archive.
func (s *Store) AppendArchive(ctx context.Context, user string, msg storage.ArchivedMessage) (string, error) {
	if user == "" {
		return "", fmt.Errorf("memstore: append archive: %w", errEmptyJID)
	}
	if err := s.lock(ctx, "append archive"); err != nil {
		return "", err
	}
	defer s.mu.Unlock()
	a := s.archiveLocked()
	id, err := a.newID()
	if err != nil {
		return "", fmt.Errorf("memstore: append archive of %q: %w", user, err)
	}
	ua := a.users[user]
	if ua == nil {
		ua = &userArchive{}
		a.users[user] = ua
	}
	msg = copyArchived(msg)
	msg.ID = id
	if n := len(ua.msgs); n > 0 && msg.Time.Before(ua.msgs[n-1].Time) {
		msg.Time = ua.msgs[n-1].Time
	}
	a.seq++
	ua.msgs = append(ua.msgs, msg)
	ua.seqs = append(ua.seqs, a.seq)
	a.ids[id] = archiveRef{user, a.seq}
	return id, nil
}

// pos returns the index of the message with ID id in user's archive.
func (a *archives) pos(user string, ua *userArchive, id string) (int, error) {
	ref, ok := a.ids[id]
	if !ok || ref.user != user || ua == nil {
		return 0, fmt.Errorf("memstore: archive ID %q of %q: %w", id, user, storage.ErrNotFound)
	}
	i, found := slices.BinarySearch(ua.seqs, ref.seq)
	if !found {
		return 0, fmt.Errorf("memstore: archive ID %q of %q: %w", id, user, storage.ErrNotFound)
	}
	return i, nil
}

// withMatches reports whether m is a message with the party with (see
// storage.ArchiveQuery.With).
func withMatches(m *storage.ArchivedMessage, with string) bool {
	if with == "" {
		return true
	}
	bare, res, full := strings.Cut(with, "/")
	return m.With == bare && (!full || m.WithResource == res)
}

// QueryArchive implements storage.Archive.
func (s *Store) QueryArchive(ctx context.Context, user string, q storage.ArchiveQuery) (storage.ArchivePage, error) {
	if err := s.rlock(ctx, "query archive", user); err != nil {
		return storage.ArchivePage{}, err
	}
	defer s.mu.RUnlock()
	var ua *userArchive
	a := s.archive
	if a != nil {
		ua = a.users[user]
	}
	anyID := q.AfterID != "" || q.BeforeID != "" || q.After != "" || q.Before != "" || len(q.IDs) > 0
	if a == nil || ua == nil {
		if anyID {
			return storage.ArchivePage{}, fmt.Errorf("memstore: query archive of %q: %w", user, storage.ErrNotFound)
		}
		return storage.ArchivePage{Complete: true}, nil
	}
	msgs := ua.msgs
	// [lo, hi) bounds the result set, [wlo, whi) the page's window.
	lo, hi := 0, len(msgs)
	if !q.Start.IsZero() {
		lo = max(lo, sort.Search(len(msgs), func(i int) bool { return !msgs[i].Time.Before(q.Start) }))
	}
	if !q.End.IsZero() {
		hi = min(hi, sort.Search(len(msgs), func(i int) bool { return msgs[i].Time.After(q.End) }))
	}
	bound := func(id string, after bool, l, h *int) error {
		if id == "" {
			return nil
		}
		p, err := a.pos(user, ua, id)
		if err != nil {
			return err
		}
		if after {
			*l = max(*l, p+1)
		} else {
			*h = min(*h, p)
		}
		return nil
	}
	if err := bound(q.AfterID, true, &lo, &hi); err != nil {
		return storage.ArchivePage{}, err
	}
	if err := bound(q.BeforeID, false, &lo, &hi); err != nil {
		return storage.ArchivePage{}, err
	}
	wlo, whi := 0, len(msgs)
	if err := bound(q.After, true, &wlo, &whi); err != nil {
		return storage.ArchivePage{}, err
	}
	if err := bound(q.Before, false, &wlo, &whi); err != nil {
		return storage.ArchivePage{}, err
	}
	var only map[int]bool
	if len(q.IDs) > 0 {
		only = make(map[int]bool, len(q.IDs))
		for _, id := range q.IDs {
			p, err := a.pos(user, ua, id)
			if err != nil {
				return storage.ArchivePage{}, err
			}
			only[p] = true
		}
	}
	var page storage.ArchivePage
	var window []int // result set indexes inside the window
	before := 0      // result set messages before the window
	for i := lo; i < hi; i++ {
		if (only != nil && !only[i]) || !withMatches(&msgs[i], q.With) {
			continue
		}
		page.Count++
		switch {
		case i < wlo:
			before++
		case i < whi:
			window = append(window, i)
		}
	}
	limit := max(q.Limit, 0)
	page.Complete = len(window) <= limit
	page.Index = before
	if len(window) > limit {
		if q.Backward {
			page.Index += len(window) - limit
			window = window[len(window)-limit:]
		} else {
			window = window[:limit]
		}
	}
	if len(window) == 0 {
		page.Index = 0
	}
	for _, i := range window {
		page.Messages = append(page.Messages, copyArchived(msgs[i]))
	}
	return page, nil
}

// CountArchive implements storage.Archive.
func (s *Store) CountArchive(ctx context.Context, user string) (int, error) {
	if err := s.rlock(ctx, "count archive", user); err != nil {
		return 0, err
	}
	defer s.mu.RUnlock()
	if s.archive == nil || s.archive.users[user] == nil {
		return 0, nil
	}
	return len(s.archive.users[user].msgs), nil
}

// DeleteArchiveBefore implements storage.Archive.
func (s *Store) DeleteArchiveBefore(ctx context.Context, t time.Time) (int, error) {
	if err := s.lock(ctx, "delete archive before"); err != nil {
		return 0, err
	}
	defer s.mu.Unlock()
	if s.archive == nil {
		return 0, nil
	}
	n := 0
	for user, ua := range s.archive.users {
		k := sort.Search(len(ua.msgs), func(i int) bool { return !ua.msgs[i].Time.Before(t) })
		for _, m := range ua.msgs[:k] {
			delete(s.archive.ids, m.ID)
		}
		n += k
		if k == len(ua.msgs) {
			delete(s.archive.users, user)
			continue
		}
		ua.msgs = slices.Delete(ua.msgs, 0, k)
		ua.seqs = slices.Delete(ua.seqs, 0, k)
	}
	return n, nil
}

// DeleteArchive implements storage.Archive.
func (s *Store) DeleteArchive(ctx context.Context, user string) error {
	if err := s.lock(ctx, "delete archive", user); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if s.archive == nil {
		return nil
	}
	if ua := s.archive.users[user]; ua != nil {
		for _, m := range ua.msgs {
			delete(s.archive.ids, m.ID)
		}
	}
	delete(s.archive.users, user)
	delete(s.archive.prefs, user)
	return nil
}

func copyPrefs(p storage.ArchivePrefs) storage.ArchivePrefs {
	p.Always = slices.Clone(p.Always)
	p.Never = slices.Clone(p.Never)
	return p
}

// ArchivePrefs implements storage.Archive.
func (s *Store) ArchivePrefs(ctx context.Context, user string) (storage.ArchivePrefs, error) {
	if err := s.rlock(ctx, "archive prefs", user); err != nil {
		return storage.ArchivePrefs{}, err
	}
	defer s.mu.RUnlock()
	if s.archive == nil {
		return storage.ArchivePrefs{}, nil
	}
	return copyPrefs(s.archive.prefs[user]), nil
}

// SetArchivePrefs implements storage.Archive.
func (s *Store) SetArchivePrefs(ctx context.Context, user string, p storage.ArchivePrefs) error {
	if user == "" {
		return fmt.Errorf("memstore: set archive prefs: %w", errEmptyJID)
	}
	if err := s.lock(ctx, "set archive prefs"); err != nil {
		return err
	}
	defer s.mu.Unlock()
	s.archiveLocked().prefs[user] = copyPrefs(p)
	return nil
}
