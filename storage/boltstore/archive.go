package boltstore

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/treff-im/treff/storage"
)

var _ storage.Archive = (*Store)(nil)

// Message archives (storage.Archive) are kept in two buckets (and, for
// records not yet folded into them, the journal "archive_journal" of
// archivequeue.go), created on first use:
//
//   - "archive": one nested bucket per user, named by bare JID, holding
//     key = the message's time (Unix nanoseconds, 8 bytes big endian with
//     the sign bit flipped, so that byte order is time order) followed by
//     its sequence number (8 bytes big endian), value = the encoded
//     message. Sequence numbers are drawn from the "archive" bucket's own
//     sequence, so they increase across all users and are never reused.
//     AppendArchive raises a time earlier than the user's latest one to
//     it, so key order is both arrival order and time order: a time filter
//     is a cursor Seek, and paging by ID is a Seek too. The nested
//     bucket's sequence number is the number of messages in it. Empty user
//     buckets are removed.
//   - "archive_prefs": key = bare JID, value = the encoded preferences.
//
// A message's ID is its 16-byte key encrypted with AES under a random key
// kept in the "meta" bucket (key "archive_key"), in unpadded base64url
// (22 characters): it reveals neither time nor order, yet the store finds
// the message from its ID without an index. A malformed or forged ID
// decrypts to a key that is not in the user's bucket: ErrNotFound.
//
// An archived message's value is: format byte (1), flags (bit 0:
// outgoing), the With JID and the WithResource (each a uvarint length and
// the bytes), then the stanza (the rest of the value).
var (
	bucketArchive      = []byte("archive")
	bucketArchivePrefs = []byte("archive_prefs")
	keyArchiveKey      = []byte("archive_key")
)

const (
	archiveV1      = 1
	archivePrefsV1 = 1
	archiveKeyLen  = 16
	flagOutgoing   = 1
	// archiveDeleteChunk bounds the keys one transaction of
	// DeleteArchiveBefore removes, so that retention never holds the
	// write lock long.
	archiveDeleteChunk = 5000
)

// archiveKey makes the key of a message with time t and sequence seq.
func archiveKey(t time.Time, seq uint64) []byte {
	k := make([]byte, archiveKeyLen)
	putArchiveKey(k, t, seq)
	return k
}

// putArchiveKey writes the key of a message with time t and sequence seq
// into k, archiveKeyLen bytes.
func putArchiveKey(k []byte, t time.Time, seq uint64) {
	binary.BigEndian.PutUint64(k, uint64(t.UnixNano())^(1<<63))
	binary.BigEndian.PutUint64(k[8:], seq)
}

// archiveKeyTime returns the time in a key.
func archiveKeyTime(k []byte) time.Time {
	return time.Unix(0, int64(binary.BigEndian.Uint64(k)^(1<<63))).UTC()
}

// archiveCipher returns the block cipher of the archive IDs, creating its
// key if create is set (tx must then be writable). It returns nil if
// there is no key and create is not set: there are no messages yet.
func archiveCipher(tx *bolt.Tx, create bool) (cipher.Block, error) {
	meta := tx.Bucket(bucketMeta)
	k := meta.Get(keyArchiveKey)
	if k == nil {
		if !create {
			return nil, nil
		}
		k = make([]byte, archiveKeyLen)
		if _, err := rand.Read(k); err != nil {
			return nil, err
		}
		if err := meta.Put(keyArchiveKey, k); err != nil {
			return nil, err
		}
	}
	if len(k) != archiveKeyLen {
		return nil, fmt.Errorf("archive key: %w", errCorrupt)
	}
	return aes.NewCipher(k)
}

// archiveID returns the ID of the message with key k.
func archiveID(b cipher.Block, k []byte) string {
	var out [archiveKeyLen]byte
	b.Encrypt(out[:], k)
	return base64.RawURLEncoding.EncodeToString(out[:])
}

// archiveIDKey returns the key an ID stands for, or nil if it cannot be
// one.
func archiveIDKey(b cipher.Block, id string) []byte {
	if b == nil || len(id) != base64.RawURLEncoding.EncodedLen(archiveKeyLen) {
		return nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(id)
	if err != nil || len(raw) != archiveKeyLen {
		return nil
	}
	k := make([]byte, archiveKeyLen)
	b.Decrypt(k, raw)
	return k
}

func encodeArchived(m storage.ArchivedMessage) []byte {
	return appendArchived(make([]byte, 0, archivedLen(m)), m)
}

// archivedLen is the length of m's encoded value, at most.
func archivedLen(m storage.ArchivedMessage) int {
	return 2 + 2*binary.MaxVarintLen16 + len(m.With) + len(m.WithResource) + len(m.Stanza)
}

// appendArchived appends m's encoded value to b.
func appendArchived(b []byte, m storage.ArchivedMessage) []byte {
	var flags byte
	if m.Outgoing {
		flags |= flagOutgoing
	}
	b = append(b, archiveV1, flags)
	b = binary.AppendUvarint(b, uint64(len(m.With)))
	b = append(b, m.With...)
	b = binary.AppendUvarint(b, uint64(len(m.WithResource)))
	b = append(b, m.WithResource...)
	return append(b, m.Stanza...)
}

// archivedHeader splits a value into its parts without copying.
func archivedHeader(v []byte) (flags byte, with, res, stanza []byte, err error) {
	if len(v) < 2 || v[0] != archiveV1 {
		return 0, nil, nil, nil, fmt.Errorf("archived message: %w", errCorrupt)
	}
	flags, v = v[1], v[2:]
	str := func() ([]byte, bool) {
		n, k := binary.Uvarint(v)
		if k <= 0 || uint64(len(v)-k) < n {
			return nil, false
		}
		s := v[k : k+int(n)]
		v = v[k+int(n):]
		return s, true
	}
	var ok1, ok2 bool
	with, ok1 = str()
	res, ok2 = str()
	if !ok1 || !ok2 {
		return 0, nil, nil, nil, fmt.Errorf("archived message: %w", errCorrupt)
	}
	return flags, with, res, v, nil
}

func decodeArchived(b cipher.Block, k, v []byte) (storage.ArchivedMessage, error) {
	flags, with, res, st, err := archivedHeader(v)
	if err != nil {
		return storage.ArchivedMessage{}, err
	}
	return storage.ArchivedMessage{
		ID:           archiveID(b, k),
		Time:         archiveKeyTime(k),
		With:         string(with),
		WithResource: string(res),
		Outgoing:     flags&flagOutgoing != 0,
		Stanza:       bytes.Clone(st),
	}, nil
}

// AppendArchive implements storage.Archive. The record is queued and
// committed behind the call, with others (see archivequeue.go); if the
// queue has no room (Options.ArchiveQueueBytes), it waits for the commit
// under way if commits succeed, and fails at once with an error wrapping
// storage.ErrFull if they fail.
func (s *Store) AppendArchive(ctx context.Context, user string, msg storage.ArchivedMessage) (string, error) {
	if user == "" {
		return "", fail(errEmptyJID, "append archive")
	}
	if err := s.check(ctx); err != nil {
		return "", fail(err, "append archive")
	}
	// One buffer holds the record's key (filled in below) and value.
	buf := appendArchived(make([]byte, archiveKeyLen, archiveKeyLen+archivedLen(msg)), msg)
	r := archiveRecord{user: user, key: buf[:archiveKeyLen:archiveKeyLen], val: buf[archiveKeyLen:]}
	q := &s.archive
	q.mu.Lock()
	defer q.mu.Unlock()
	if err := s.archiveWait(ctx, r.size(), msg.Outgoing); err != nil {
		return "", err
	}
	if err := s.archiveLoad(); err != nil {
		return "", fail(err, "append archive")
	}
	t := msg.Time
	lt, err := s.archiveLastTime(user)
	if err != nil {
		return "", fail(err, "append archive")
	}
	if t.Before(lt) {
		t = lt // keys in arrival order are in time order too
	}
	q.seq++
	putArchiveKey(r.key, t, q.seq)
	q.last[user] = t
	s.archiveEnqueue(r)
	return archiveID(q.blk, r.key), nil
}

// QueryArchive implements storage.Archive with storage.PageArchive, after
// flushing the queued appends. Its archiveIndex scans keys, decoding only
// the With of each message when the query filters by it, and decodes only
// the page's messages.
func (s *Store) QueryArchive(ctx context.Context, user string, q storage.ArchiveQuery) (storage.ArchivePage, error) {
	if user == "" {
		return storage.ArchivePage{}, fail(errEmptyJID, "query archive")
	}
	var page storage.ArchivePage
	if err := s.flushArchive(); err != nil {
		return page, fail(err, "query archive of %q", user)
	}
	err := s.view(ctx, func(tx *bolt.Tx) error {
		ix := archiveIndex{}
		if root := tx.Bucket(bucketArchive); root != nil {
			ix.ub = root.Bucket([]byte(user))
		}
		var err error
		if ix.blk, err = archiveCipher(tx, false); err != nil {
			return err
		}
		page, err = storage.PageArchive(ctx, &ix, q)
		return err
	})
	if err != nil {
		return storage.ArchivePage{}, fail(err, "query archive of %q", user)
	}
	return page, nil
}

// archiveIndex is a storage.ArchiveIndex of one user's archive in a read
// transaction. Its keys are the bucket's keys.
type archiveIndex struct {
	ub  *bolt.Bucket // nil if the user has no messages
	blk cipher.Block // nil if no message was ever archived
}

// Key implements storage.ArchiveIndex.
func (ix *archiveIndex) Key(_ context.Context, id string) ([]byte, error) {
	k := archiveIDKey(ix.blk, id)
	if k == nil || ix.ub == nil || ix.ub.Get(k) == nil {
		return nil, nil
	}
	return k, nil
}

// TimeKey implements storage.ArchiveIndex: sequence numbers start at 1.
func (ix *archiveIndex) TimeKey(_ context.Context, t time.Time) ([]byte, error) {
	return archiveKey(t, 0), nil
}

// Scan implements storage.ArchiveIndex.
func (ix *archiveIndex) Scan(_ context.Context, from, to []byte, with storage.ArchiveWith, yield func([]byte) bool) error {
	if ix.ub == nil {
		return nil
	}
	c := ix.ub.Cursor()
	var k, v []byte
	if from != nil {
		k, v = c.Seek(from)
	} else {
		k, v = c.First()
	}
	for ; k != nil && (to == nil || bytes.Compare(k, to) < 0); k, v = c.Next() {
		if with.JID != "" {
			_, w, r, _, err := archivedHeader(v)
			if err != nil {
				return err
			}
			if string(w) != with.JID || with.Full && string(r) != with.Resource {
				continue
			}
		}
		if !yield(k) {
			break
		}
	}
	return nil
}

// Messages implements storage.ArchiveIndex. One cursor seeks them all
// (Bucket.Get would make a cursor per key).
func (ix *archiveIndex) Messages(_ context.Context, dst []storage.ArchivedMessage, keys [][]byte) ([]storage.ArchivedMessage, error) {
	c := ix.ub.Cursor()
	for _, k := range keys {
		ck, v := c.Seek(k)
		if !bytes.Equal(ck, k) {
			return dst, fmt.Errorf("archive key %x: %w", k, errCorrupt)
		}
		m, err := decodeArchived(ix.blk, k, v)
		if err != nil {
			return dst, err
		}
		dst = append(dst, m)
	}
	return dst, nil
}

// CountArchive implements storage.Archive. It reads the count kept in the
// user's bucket.
func (s *Store) CountArchive(ctx context.Context, user string) (int, error) {
	if user == "" {
		return 0, fail(errEmptyJID, "count archive")
	}
	var n uint64
	if err := s.flushArchive(); err != nil {
		return 0, fail(err, "count archive of %q", user)
	}
	err := s.view(ctx, func(tx *bolt.Tx) error {
		if root := tx.Bucket(bucketArchive); root != nil {
			if ub := root.Bucket([]byte(user)); ub != nil {
				n = ub.Sequence()
			}
		}
		return nil
	})
	if err != nil {
		return 0, fail(err, "count archive of %q", user)
	}
	return int(n), nil
}

// DeleteArchiveBefore implements storage.Archive. It removes the messages
// of one user at a time, in transactions of at most a few thousand, so
// that the writes of a running server wait little.
func (s *Store) DeleteArchiveBefore(ctx context.Context, t time.Time) (int, error) {
	end := archiveKey(t, 0)
	if err := s.flushArchive(); err != nil {
		return 0, fail(err, "delete archived messages")
	}
	defer s.forgetArchiveTimes()
	// The users with something to delete; the others cost no write.
	var users [][]byte
	err := s.view(ctx, func(tx *bolt.Tx) error {
		root := tx.Bucket(bucketArchive)
		if root == nil {
			return nil
		}
		return root.ForEachBucket(func(name []byte) error {
			if k, _ := root.Bucket(name).Cursor().First(); k != nil && bytes.Compare(k, end) < 0 {
				users = append(users, bytes.Clone(name))
			}
			return nil
		})
	})
	if err != nil {
		return 0, fail(err, "delete archive before %v", t)
	}
	total := 0
	for _, user := range users {
		for more := true; more; {
			n := 0
			err := s.update(ctx, func(tx *bolt.Tx) error {
				n = 0
				root := tx.Bucket(bucketArchive)
				if root == nil || root.Bucket(user) == nil {
					return nil
				}
				ub := root.Bucket(user)
				var old [][]byte
				c := ub.Cursor()
				for k, _ := c.First(); k != nil && bytes.Compare(k, end) < 0 && len(old) < archiveDeleteChunk; k, _ = c.Next() {
					old = append(old, bytes.Clone(k))
				}
				for _, k := range old {
					if err := ub.Delete(k); err != nil {
						return err
					}
				}
				n = len(old)
				left := ub.Sequence() - min(ub.Sequence(), uint64(n))
				if k, _ := ub.Cursor().First(); k == nil {
					return root.DeleteBucket(user)
				}
				return ub.SetSequence(left)
			})
			if err != nil {
				return total, fail(err, "delete archive of %q before %v", user, t)
			}
			total += n
			more = n == archiveDeleteChunk
		}
	}
	return total, nil
}

// DeleteArchive implements storage.Archive.
func (s *Store) DeleteArchive(ctx context.Context, user string) error {
	if user == "" {
		return fail(errEmptyJID, "delete archive")
	}
	if err := s.flushArchive(); err != nil {
		return fail(err, "delete archive of %q", user)
	}
	defer s.forgetArchiveUser(user)
	defer s.prefs.forget(user)
	s.prefs.forget(user)
	err := s.update(ctx, func(tx *bolt.Tx) error {
		if root := tx.Bucket(bucketArchive); root != nil && root.Bucket([]byte(user)) != nil {
			if err := root.DeleteBucket([]byte(user)); err != nil {
				return err
			}
		}
		if b := tx.Bucket(bucketArchivePrefs); b != nil {
			return b.Delete([]byte(user))
		}
		return nil
	})
	if err != nil {
		return fail(err, "delete archive of %q", user)
	}
	return nil
}

func encodeArchivePrefs(p storage.ArchivePrefs) []byte {
	b := []byte{archivePrefsV1}
	str := func(s string) {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	str(string(p.Default))
	for _, l := range [][]string{p.Always, p.Never} {
		b = binary.AppendUvarint(b, uint64(len(l)))
		for _, j := range l {
			str(j)
		}
	}
	return b
}

func decodeArchivePrefs(v []byte) (storage.ArchivePrefs, error) {
	bad := fmt.Errorf("archive preferences: %w", errCorrupt)
	if len(v) < 1 || v[0] != archivePrefsV1 {
		return storage.ArchivePrefs{}, bad
	}
	v = v[1:]
	num := func() (uint64, bool) {
		n, k := binary.Uvarint(v)
		if k <= 0 {
			return 0, false
		}
		v = v[k:]
		return n, true
	}
	str := func() (string, bool) {
		n, ok := num()
		if !ok || uint64(len(v)) < n {
			return "", false
		}
		s := string(v[:n])
		v = v[n:]
		return s, true
	}
	var p storage.ArchivePrefs
	d, ok := str()
	if !ok {
		return p, bad
	}
	p.Default = storage.ArchiveDefault(d)
	for _, l := range []*[]string{&p.Always, &p.Never} {
		n, ok := num()
		if !ok || n > uint64(len(v)) {
			return storage.ArchivePrefs{}, bad
		}
		for range n {
			j, ok := str()
			if !ok {
				return storage.ArchivePrefs{}, bad
			}
			*l = append(*l, j)
		}
	}
	if len(v) != 0 {
		return storage.ArchivePrefs{}, bad
	}
	return p, nil
}

// ArchivePrefs implements storage.Archive. Preferences are read for
// every archived message (twice for one between two local users), so
// the store keeps them in memory once read (see prefsCache).
func (s *Store) ArchivePrefs(ctx context.Context, user string) (storage.ArchivePrefs, error) {
	if user == "" {
		return storage.ArchivePrefs{}, fail(errEmptyJID, "archive preferences")
	}
	if err := s.check(ctx); err != nil {
		return storage.ArchivePrefs{}, fail(err, "archive preferences of %q", user)
	}
	p, ok, gen := s.prefs.get(user)
	if ok {
		return p, nil
	}
	err := s.view(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketArchivePrefs)
		if b == nil {
			return nil
		}
		v := b.Get([]byte(user))
		if v == nil {
			return nil
		}
		var err error
		p, err = decodeArchivePrefs(v)
		return err
	})
	if err != nil {
		return storage.ArchivePrefs{}, fail(err, "archive preferences of %q", user)
	}
	s.prefs.put(user, p, gen)
	return clonePrefs(p), nil
}

// prefsCache keeps users' archiving preferences once read. Every write
// of preferences goes through the store, which forgets the user's entry
// after writing (forget); gen makes a read that raced with a write not
// keep what it read before the write. It holds at most prefsCacheMax
// users, and starts again empty when full.
type prefsCache struct {
	mu  sync.Mutex
	gen uint64
	m   map[string]storage.ArchivePrefs
}

const prefsCacheMax = 1 << 16

// get returns the user's preferences (a copy) if known, and the
// generation to hand to put otherwise.
func (c *prefsCache) get(user string) (storage.ArchivePrefs, bool, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.m[user]
	if ok {
		return clonePrefs(p), true, c.gen
	}
	return storage.ArchivePrefs{}, false, c.gen
}

// put keeps p for user unless a write happened since get returned gen.
func (c *prefsCache) put(user string, p storage.ArchivePrefs, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	if c.m == nil || len(c.m) >= prefsCacheMax {
		c.m = make(map[string]storage.ArchivePrefs)
	}
	c.m[user] = clonePrefs(p)
}

// forget drops the user's entry; call it after writing their
// preferences (or deleting them), whether the write succeeded or not.
func (c *prefsCache) forget(user string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	delete(c.m, user)
}

// SetArchivePrefs implements storage.Archive.
func (s *Store) SetArchivePrefs(ctx context.Context, user string, p storage.ArchivePrefs) error {
	if user == "" {
		return fail(errEmptyJID, "set archive preferences")
	}
	defer s.prefs.forget(user)
	s.prefs.forget(user)
	err := s.update(ctx, func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketArchivePrefs)
		if err != nil {
			return err
		}
		return b.Put([]byte(user), encodeArchivePrefs(p))
	})
	if err != nil {
		return fail(err, "set archive preferences of %q", user)
	}
	return nil
}

var _ storage.ArchiveEditor = (*Store)(nil)

// ReplaceArchived implements storage.ArchiveEditor, after flushing the
// queued appends: the message keeps its key (so its ID, time and place)
// and its parties; only the stanza in its value changes.
func (s *Store) ReplaceArchived(ctx context.Context, user, id string, stanza []byte) error {
	if user == "" {
		return fail(errEmptyJID, "replace archived")
	}
	if err := s.check(ctx); err != nil {
		return fail(err, "replace archived")
	}
	if err := s.flushArchive(); err != nil {
		return fail(err, "replace archived in %q", user)
	}
	err := s.update(ctx, func(tx *bolt.Tx) error {
		root := tx.Bucket(bucketArchive)
		if root == nil || root.Bucket([]byte(user)) == nil {
			return storage.ErrNotFound
		}
		ub := root.Bucket([]byte(user))
		blk, err := archiveCipher(tx, false)
		if err != nil {
			return err
		}
		k := archiveIDKey(blk, id)
		if k == nil {
			return storage.ErrNotFound
		}
		v := ub.Get(k)
		if v == nil {
			return storage.ErrNotFound
		}
		flags, with, res, _, err := archivedHeader(v)
		if err != nil {
			return err
		}
		return ub.Put(k, encodeArchived(storage.ArchivedMessage{
			With:         string(with),
			WithResource: string(res),
			Outgoing:     flags&flagOutgoing != 0,
			Stanza:       stanza,
		}))
	})
	if err != nil {
		return fail(err, "replace archived %q in %q", id, user)
	}
	return nil
}

// clonePrefs returns p with lists of its own, so that a caller that
// changes what it was given does not change what the cache keeps.
func clonePrefs(p storage.ArchivePrefs) storage.ArchivePrefs {
	p.Always, p.Never = slices.Clone(p.Always), slices.Clone(p.Never)
	return p
}
