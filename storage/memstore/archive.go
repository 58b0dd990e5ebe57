package memstore

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"slices"
	"sort"
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

// pos returns the index of the message with ID id in user's archive ua,
// and whether there is one.
func (a *archives) pos(user string, ua *userArchive, id string) (int, bool) {
	ref, ok := a.ids[id]
	if !ok || ref.user != user || ua == nil {
		return 0, false
	}
	return slices.BinarySearch(ua.seqs, ref.seq)
}

// QueryArchive implements storage.Archive with storage.PageArchive.
func (s *Store) QueryArchive(ctx context.Context, user string, q storage.ArchiveQuery) (storage.ArchivePage, error) {
	if err := s.rlock(ctx, "query archive", user); err != nil {
		return storage.ArchivePage{}, err
	}
	defer s.mu.RUnlock()
	ix := archiveIndex{user: user, a: s.archive}
	if ix.a != nil {
		ix.ua = ix.a.users[user]
	}
	page, err := storage.PageArchive(ctx, &ix, q)
	if err != nil {
		return storage.ArchivePage{}, fmt.Errorf("memstore: query archive of %q: %w", user, err)
	}
	return page, nil
}

// archiveIndex is a storage.ArchiveIndex of one user's archive, read
// while s.mu is held. A key is the message's index in ua.msgs as 8 bytes
// big endian.
type archiveIndex struct {
	user string
	a    *archives    // nil if no message was ever archived
	ua   *userArchive // nil if the user has no messages
	buf  [8]byte      // Scan's key
}

func (ix *archiveIndex) msgs() []storage.ArchivedMessage {
	if ix.ua == nil {
		return nil
	}
	return ix.ua.msgs
}

// indexKey returns the key of the message at index i.
func indexKey(i int) []byte { return binary.BigEndian.AppendUint64(nil, uint64(i)) }

// keyIndex returns the index of the first message whose key is at or
// after the key bound k.
func keyIndex(k []byte) int {
	i := int(binary.BigEndian.Uint64(k))
	if len(k) > 8 { // k's successor
		i++
	}
	return i
}

// Key implements storage.ArchiveIndex.
func (ix *archiveIndex) Key(_ context.Context, id string) ([]byte, error) {
	if ix.a == nil {
		return nil, nil
	}
	if i, ok := ix.a.pos(ix.user, ix.ua, id); ok {
		return indexKey(i), nil
	}
	return nil, nil
}

// TimeKey implements storage.ArchiveIndex.
func (ix *archiveIndex) TimeKey(_ context.Context, t time.Time) ([]byte, error) {
	msgs := ix.msgs()
	return indexKey(sort.Search(len(msgs), func(i int) bool { return !msgs[i].Time.Before(t) })), nil
}

// Scan implements storage.ArchiveIndex.
func (ix *archiveIndex) Scan(_ context.Context, from, to []byte, with storage.ArchiveWith, yield func([]byte) bool) error {
	msgs := ix.msgs()
	lo, hi := 0, len(msgs)
	if from != nil {
		lo = keyIndex(from)
	}
	if to != nil {
		hi = min(hi, keyIndex(to))
	}
	for i := lo; i < hi; i++ {
		if !with.Matches(msgs[i].With, msgs[i].WithResource) {
			continue
		}
		binary.BigEndian.PutUint64(ix.buf[:], uint64(i))
		if !yield(ix.buf[:]) {
			break
		}
	}
	return nil
}

// Messages implements storage.ArchiveIndex.
func (ix *archiveIndex) Messages(_ context.Context, dst []storage.ArchivedMessage, keys [][]byte) ([]storage.ArchivedMessage, error) {
	msgs := ix.msgs()
	for _, k := range keys {
		dst = append(dst, copyArchived(msgs[keyIndex(k)]))
	}
	return dst, nil
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

var _ storage.ArchiveEditor = (*Store)(nil)

// ReplaceArchived implements storage.ArchiveEditor.
func (s *Store) ReplaceArchived(ctx context.Context, user, id string, stanza []byte) error {
	if err := s.lock(ctx, "replace archived", user); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if s.archive == nil {
		return fmt.Errorf("memstore: replace archived %q of %q: %w", id, user, storage.ErrNotFound)
	}
	ua := s.archive.users[user]
	i, ok := s.archive.pos(user, ua, id)
	if !ok {
		return fmt.Errorf("memstore: replace archived %q of %q: %w", id, user, storage.ErrNotFound)
	}
	ua.msgs[i].Stanza = slices.Clone(stanza)
	return nil
}
