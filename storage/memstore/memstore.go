// Package memstore is an in-memory implementation of storage.Store.
//
// It keeps everything in maps guarded by one sync.RWMutex, so it is safe for
// concurrent use, and it copies every value on the way in and out, so callers
// never share memory with the store. Nothing survives the process: memstore is
// meant for tests, for embedding Treff in programs that bring their own
// persistence, and as a reference for backend authors.
//
// Roster versions and offline message IDs are drawn from counters shared by
// all users of one Store. They therefore only ever grow: a version or ID is
// never handed out twice, even after DeleteRoster or DeleteOffline.
package memstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/treff-im/treff/storage"
)

// Interface guards.
var (
	_ storage.Store    = (*Store)(nil)
	_ storage.Accounts = (*Store)(nil)
	_ storage.Rosters  = (*Store)(nil)
	_ storage.Offline  = (*Store)(nil)
)

// emptyRosterVersion is the version of a roster that has never been written
// or was removed with DeleteRoster.
const emptyRosterVersion = "0"

// errEmptyJID reports an empty JID or user, which every method refuses
// (package storage's convention).
var errEmptyJID = errors.New("empty JID")

// Store is an in-memory storage.Store. The zero value is not usable; create
// one with New.
type Store struct {
	mu        sync.RWMutex
	closed    bool
	accounts  map[string]storage.Account
	rosters   map[string]*roster
	offline   map[string][]storage.OfflineMessage
	last      map[string]lastSeen
	held      map[string]time.Time
	reports   []storage.Report // spam reports, oldest first
	reportSeq uint64
	invites   map[string]storage.Invite
	rooms     map[string]storage.Room
	private   map[string]map[string][]byte             // user -> key -> document (private.go)
	blocks    map[string]map[string]bool               // user -> blocked JIDs (blocklist.go)
	pep       map[string]map[string]*pepNode           // owner -> node name -> node
	archive   *archives                                // message archives (archive.go)
	uploads   map[string]storage.Upload                // by ID (upload.go)
	fast      map[string]map[string]storage.FastDevice // user -> agent -> device (fast.go)
	push      map[string]map[pushKey][]byte            // user -> registration -> form (push.go)
	secrets   map[string][]byte                        // name -> value (secrets.go)
	// lastVer is the last roster version handed out, for any user.
	lastVer uint64
	// lastID is the last offline message ID handed out, for any user.
	lastID uint64
}

// roster is one user's roster.
type roster struct {
	items map[string]storage.RosterItem
	ver   uint64
}

// New returns an empty Store.
func New() *Store {
	return &Store{
		accounts: make(map[string]storage.Account),
		rosters:  make(map[string]*roster),
		offline:  make(map[string][]storage.OfflineMessage),
	}
}

// Close releases the store's data. Every later call, including another
// Close, returns an error wrapping storage.ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("memstore: close: %w", storage.ErrClosed)
	}
	s.closed = true
	s.accounts, s.rosters, s.offline, s.last = nil, nil, nil, nil
	return nil
}

// rlock checks ctx and that none of jids is empty, read-locks s and checks
// that s is open. On success the caller must call s.mu.RUnlock.
func (s *Store) rlock(ctx context.Context, op string, jids ...string) error {
	if err := check(ctx, op, jids); err != nil {
		return err
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return fmt.Errorf("memstore: %s: %w", op, storage.ErrClosed)
	}
	return nil
}

// lock checks ctx and that none of jids is empty, write-locks s and checks
// that s is open. On success the caller must call s.mu.Unlock.
func (s *Store) lock(ctx context.Context, op string, jids ...string) error {
	if err := check(ctx, op, jids); err != nil {
		return err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return fmt.Errorf("memstore: %s: %w", op, storage.ErrClosed)
	}
	return nil
}

// check reports a done ctx, then an empty JID among jids, as the error of
// operation op.
func check(ctx context.Context, op string, jids []string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memstore: %s: %w", op, err)
	}
	if slices.Contains(jids, "") {
		return fmt.Errorf("memstore: %s: %w", op, errEmptyJID)
	}
	return nil
}

// CreateAccount implements storage.Accounts.
func (s *Store) CreateAccount(ctx context.Context, a storage.Account) error {
	if err := s.lock(ctx, "create account"); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if a.JID == "" {
		return fmt.Errorf("memstore: create account: %w", errEmptyJID)
	}
	if _, ok := s.accounts[a.JID]; ok {
		return fmt.Errorf("memstore: create account %q: %w", a.JID, storage.ErrExists)
	}
	s.accounts[a.JID] = copyAccount(a)
	return nil
}

// Account implements storage.Accounts.
func (s *Store) Account(ctx context.Context, jid string) (storage.Account, error) {
	if err := s.rlock(ctx, "account"); err != nil {
		return storage.Account{}, err
	}
	defer s.mu.RUnlock()
	a, ok := s.accounts[jid]
	if !ok {
		return storage.Account{}, fmt.Errorf("memstore: account %q: %w", jid, storage.ErrNotFound)
	}
	return copyAccount(a), nil
}

// UpdateAccount implements storage.Accounts. It replaces every field of the
// stored account, Created included, with those of a.
func (s *Store) UpdateAccount(ctx context.Context, a storage.Account) error {
	if err := s.lock(ctx, "update account"); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if _, ok := s.accounts[a.JID]; !ok {
		return fmt.Errorf("memstore: update account %q: %w", a.JID, storage.ErrNotFound)
	}
	s.accounts[a.JID] = copyAccount(a)
	return nil
}

// SetLastLogin implements storage.Accounts.
func (s *Store) SetLastLogin(ctx context.Context, jid string, t time.Time) error {
	if err := s.lock(ctx, "set last login"); err != nil {
		return err
	}
	defer s.mu.Unlock()
	a, ok := s.accounts[jid]
	if !ok {
		return fmt.Errorf("memstore: set last login %q: %w", jid, storage.ErrNotFound)
	}
	a.LastLogin = storage.Day(t)
	s.accounts[jid] = a
	return nil
}

// DeleteAccount implements storage.Accounts.
func (s *Store) DeleteAccount(ctx context.Context, jid string) error {
	if err := s.lock(ctx, "delete account"); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if _, ok := s.accounts[jid]; !ok {
		return fmt.Errorf("memstore: delete account %q: %w", jid, storage.ErrNotFound)
	}
	delete(s.accounts, jid)
	return nil
}

// ListAccounts implements storage.Accounts. An account matches domain if the
// part of its JID after the '@' equals domain byte for byte.
func (s *Store) ListAccounts(ctx context.Context, domain string) ([]storage.Account, error) {
	if err := s.rlock(ctx, "list accounts"); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	list := make([]storage.Account, 0, len(s.accounts))
	for jid, a := range s.accounts {
		if domain == "" || domainpart(jid) == domain {
			list = append(list, copyAccount(a))
		}
	}
	slices.SortFunc(list, func(a, b storage.Account) int { return strings.Compare(a.JID, b.JID) })
	return list, nil
}

// domainpart returns the domain of a bare JID: everything after the '@', or
// the whole JID if it has no localpart.
func domainpart(jid string) string {
	if i := strings.IndexByte(jid, '@'); i >= 0 {
		return jid[i+1:]
	}
	return jid
}

// Roster implements storage.Rosters.
func (s *Store) Roster(ctx context.Context, user string) ([]storage.RosterItem, string, error) {
	if err := s.rlock(ctx, "roster", user); err != nil {
		return nil, "", err
	}
	defer s.mu.RUnlock()
	r, ok := s.rosters[user]
	if !ok {
		return []storage.RosterItem{}, emptyRosterVersion, nil
	}
	items := make([]storage.RosterItem, 0, len(r.items))
	for _, it := range r.items {
		items = append(items, copyRosterItem(it))
	}
	slices.SortFunc(items, func(a, b storage.RosterItem) int { return strings.Compare(a.JID, b.JID) })
	return items, formatVersion(r.ver), nil
}

// RosterItem implements storage.Rosters.
func (s *Store) RosterItem(ctx context.Context, user, contact string) (storage.RosterItem, error) {
	if err := s.rlock(ctx, "roster item"); err != nil {
		return storage.RosterItem{}, err
	}
	defer s.mu.RUnlock()
	if r, ok := s.rosters[user]; ok {
		if it, ok := r.items[contact]; ok {
			return copyRosterItem(it), nil
		}
	}
	return storage.RosterItem{}, fmt.Errorf("memstore: roster item %q of %q: %w", contact, user, storage.ErrNotFound)
}

// PutRosterItem implements storage.Rosters.
func (s *Store) PutRosterItem(ctx context.Context, user string, item storage.RosterItem) (string, error) {
	if err := s.lock(ctx, "put roster item"); err != nil {
		return "", err
	}
	defer s.mu.Unlock()
	if user == "" || item.JID == "" {
		return "", fmt.Errorf("memstore: put roster item: %w", errEmptyJID)
	}
	r, ok := s.rosters[user]
	if !ok {
		r = &roster{items: make(map[string]storage.RosterItem)}
		s.rosters[user] = r
	}
	r.items[item.JID] = copyRosterItem(item)
	s.lastVer++
	r.ver = s.lastVer
	return formatVersion(r.ver), nil
}

// DeleteRosterItem implements storage.Rosters.
func (s *Store) DeleteRosterItem(ctx context.Context, user, contact string) (string, error) {
	if err := s.lock(ctx, "delete roster item"); err != nil {
		return "", err
	}
	defer s.mu.Unlock()
	r, ok := s.rosters[user]
	if ok {
		_, ok = r.items[contact]
	}
	if !ok {
		return "", fmt.Errorf("memstore: delete roster item %q of %q: %w", contact, user, storage.ErrNotFound)
	}
	delete(r.items, contact)
	s.lastVer++
	r.ver = s.lastVer
	return formatVersion(r.ver), nil
}

// DeleteRoster implements storage.Rosters.
func (s *Store) DeleteRoster(ctx context.Context, user string) error {
	if err := s.lock(ctx, "delete roster", user); err != nil {
		return err
	}
	defer s.mu.Unlock()
	delete(s.rosters, user)
	return nil
}

// formatVersion renders a roster version counter as the opaque version
// string of XEP-0237.
func formatVersion(v uint64) string { return strconv.FormatUint(v, 10) }

// PushOffline implements storage.Offline. The ID in msg is ignored; the
// stored message gets the next ID of the store-wide counter.
func (s *Store) PushOffline(ctx context.Context, user string, msg storage.OfflineMessage, limit int) (uint64, error) {
	if err := s.lock(ctx, "push offline"); err != nil {
		return 0, err
	}
	defer s.mu.Unlock()
	if user == "" {
		return 0, fmt.Errorf("memstore: push offline: %w", errEmptyJID)
	}
	msgs := s.offline[user]
	if limit > 0 && len(msgs) >= limit {
		return 0, fmt.Errorf("memstore: push offline for %q (limit %d): %w", user, limit, storage.ErrQuotaExceeded)
	}
	s.lastID++
	msg.ID = s.lastID
	s.offline[user] = append(msgs, copyOfflineMessage(msg))
	return msg.ID, nil
}

// OfflineMessages implements storage.Offline.
func (s *Store) OfflineMessages(ctx context.Context, user string) ([]storage.OfflineMessage, error) {
	if err := s.rlock(ctx, "offline messages", user); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	msgs := s.offline[user]
	out := make([]storage.OfflineMessage, len(msgs))
	for i, m := range msgs {
		out[i] = copyOfflineMessage(m)
	}
	return out, nil
}

// DeleteOfflineMessages implements storage.Offline.
func (s *Store) DeleteOfflineMessages(ctx context.Context, user string, ids []uint64) error {
	if err := s.lock(ctx, "delete offline messages", user); err != nil {
		return err
	}
	defer s.mu.Unlock()
	msgs, ok := s.offline[user]
	if !ok || len(ids) == 0 {
		return nil
	}
	del := make(map[uint64]struct{}, len(ids))
	for _, id := range ids {
		del[id] = struct{}{}
	}
	msgs = slices.DeleteFunc(msgs, func(m storage.OfflineMessage) bool {
		_, ok := del[m.ID]
		return ok
	})
	if len(msgs) == 0 {
		delete(s.offline, user)
	} else {
		s.offline[user] = msgs
	}
	return nil
}

// CountOffline implements storage.Offline.
func (s *Store) CountOffline(ctx context.Context, user string) (int, error) {
	if err := s.rlock(ctx, "count offline", user); err != nil {
		return 0, err
	}
	defer s.mu.RUnlock()
	return len(s.offline[user]), nil
}

// DeleteOffline implements storage.Offline.
func (s *Store) DeleteOffline(ctx context.Context, user string) error {
	if err := s.lock(ctx, "delete offline", user); err != nil {
		return err
	}
	defer s.mu.Unlock()
	delete(s.offline, user)
	return nil
}

// copyAccount returns a deep copy of a with times normalised to UTC.
func copyAccount(a storage.Account) storage.Account {
	a.Created = a.Created.UTC()
	a.LastLogin = a.LastLogin.UTC()
	a.Suspended = a.Suspended.UTC()
	a.Approved = a.Approved.UTC()
	if a.Credentials != nil {
		creds := make([]storage.Credential, len(a.Credentials))
		for i, c := range a.Credentials {
			c.Salt = slices.Clone(c.Salt)
			c.StoredKey = slices.Clone(c.StoredKey)
			c.ServerKey = slices.Clone(c.ServerKey)
			creds[i] = c
		}
		a.Credentials = creds
	}
	return a
}

// copyRosterItem returns a deep copy of it.
func copyRosterItem(it storage.RosterItem) storage.RosterItem {
	it.Groups = slices.Clone(it.Groups)
	return it
}

// copyOfflineMessage returns a deep copy of m with the time normalised to
// UTC.
func copyOfflineMessage(m storage.OfflineMessage) storage.OfflineMessage {
	m.Received = m.Received.UTC()
	m.Stanza = slices.Clone(m.Stanza)
	return m
}
