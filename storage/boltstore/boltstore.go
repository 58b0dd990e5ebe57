// Package boltstore is a storage.Store kept in a single bbolt file
// (go.etcd.io/bbolt), Treff's default backend.
//
// Every write is one bbolt read-write transaction, committed (and, unless
// Options.NoSync is set, synced to disk) before the method returns, so a
// write that returned nil survives a crash. Reads run in read-only
// transactions, concurrently with each other and with the one writer. PushOffline, which runs for every
// message to an offline user, coalesces overlapping calls into shared
// transactions with bbolt's DB.Batch; see Options.BatchDelay.
//
// AppendArchive is the exception: it queues the message and commits it
// with others a few milliseconds later (the message's ID must be known
// before it is delivered), into a journal that is folded into the users'
// buckets every ten seconds and before every read (see archivequeue.go). That queue is bounded by
// Options.ArchiveQueueBytes; when commits fail (a full disk), they are
// retried with a growing delay, and once the queue is full AppendArchive
// fails with storage.ErrFull, so that the server refuses the message
// instead of keeping it in memory without end. bbolt stays usable after
// a commit that failed to write: the transaction is rolled back, and the
// file keeps its last committed state.
//
// bbolt allows one process at a time to open a file for writing. Open waits
// Options.Timeout for the lock and then fails with an error wrapping
// ErrLocked, typically because the server is running.
//
// # Layout
//
// The file holds four top-level buckets:
//
//   - "meta": key "schema" holds the schema version as a big-endian uint64.
//     Open refuses a file whose version is newer than SchemaVersion.
//   - "accounts": key = bare JID, value = the encoded account.
//   - "rosters": one nested bucket per user, named by bare JID, holding
//     key = contact JID, value = the encoded roster item. The nested bucket's
//     sequence number is the roster version; versions are drawn from the
//     "rosters" bucket's own sequence, so they increase across all users and
//     a version is never reused, even after DeleteRoster.
//   - "offline": one nested bucket per user holding key = message ID as a
//     big-endian uint64, value = the encoded message. IDs are drawn from the
//     "offline" bucket's sequence, so they increase across all users and are
//     never reused; big-endian keys make bbolt's key order arrival order.
//     The nested bucket's sequence number is the number of messages in it,
//     so CountOffline and the quota check of PushOffline read one integer
//     instead of walking or decoding the messages. Empty user buckets are
//     removed.
//
// # Encoding
//
// Values are a small hand-written binary format rather than JSON or gob:
// encoding needs no reflection, allocates once per record, and the stored
// bytes do not depend on Go struct layouts or field names. Every value
// starts with a format byte so a later version can change a record and still
// read the old one. Accounts and roster items are sequences of
// encoding/binary varints and uvarint-length-prefixed strings; an offline
// message, written on the hot path, is a fixed 13-byte header (format byte,
// Unix seconds, nanoseconds) followed by the raw stanza, so encoding it is
// one allocation and one copy. Times are stored as seconds and nanoseconds
// and read back in UTC.
package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/treff-im/treff/storage"
)

// Interface guards.
var (
	_ storage.Store    = (*Store)(nil)
	_ storage.Accounts = (*Store)(nil)
	_ storage.Rosters  = (*Store)(nil)
	_ storage.Offline  = (*Store)(nil)
)

// SchemaVersion is the version of the bucket layout and record formats this
// package writes. Open refuses files with a newer version; upgrades of older
// versions will happen in Open once there are any.
const SchemaVersion = 1

// Defaults for Options.
const (
	// DefaultTimeout is how long Open waits for the file lock by default.
	DefaultTimeout = time.Second
	// DefaultBatchDelay is how long overlapping PushOffline calls wait by
	// default for others to share their transaction.
	DefaultBatchDelay = 2 * time.Millisecond
)

var (
	// ErrLocked reports that Open could not lock the database file within
	// Options.Timeout because another process, or another Store in this
	// process, has it open.
	ErrLocked = errors.New("boltstore: database is locked by another process (is the server running?)")
	// ErrSchemaTooNew reports a database written by a newer version of
	// Treff, whose layout this version does not know.
	ErrSchemaTooNew = errors.New("boltstore: database schema is newer than this version of Treff supports")
)

// Bucket and key names.
var (
	bucketMeta     = []byte("meta")
	bucketAccounts = []byte("accounts")
	bucketRosters  = []byte("rosters")
	bucketOffline  = []byte("offline")
	keySchema      = []byte("schema")
)

// emptyRosterVersion is the version of a roster that was never written or
// was removed with DeleteRoster. Real versions start at 1.
const emptyRosterVersion = "0"

// errEmptyJID reports an empty JID or user, which every method refuses
// (package storage's convention; bbolt cannot store empty keys either).
var errEmptyJID = errors.New("empty JID")

// Options configure Open. The zero value, and a nil *Options, select the
// defaults.
type Options struct {
	// Timeout is how long Open waits for the exclusive file lock before it
	// fails with ErrLocked. Zero or negative means DefaultTimeout.
	Timeout time.Duration

	// BatchDelay is how long a PushOffline that overlaps other pushes waits
	// for more to join its transaction, so that they share one commit and
	// one fsync. A push with no other in flight commits at once, so a quiet
	// server pays no delay and a busy one gains throughput. Zero means
	// DefaultBatchDelay; negative disables batching, so every push commits
	// on its own.
	BatchDelay time.Duration

	// NoSync skips the fsync after each commit. Writes become much faster,
	// but a crash of the machine (not just of the process) can lose recent
	// writes or corrupt the file. Meant for tests and benchmarks.
	NoSync bool

	// ArchiveQueueBytes bounds the archived messages that wait in memory
	// for their commit (see AppendArchive), in bytes: the records' users,
	// keys and encoded messages, plus 64 bytes each. When the disk fails
	// (full, say), failed commits stay queued and are retried; once the
	// queue is full, AppendArchive fails with storage.ErrFull until they
	// are written. Outgoing messages are refused from 7/8 of it. It must
	// be larger than the largest stanza the server accepts. Zero means
	// DefaultArchiveQueueBytes (8 MiB).
	ArchiveQueueBytes int

	// Logger receives the store's own log lines: commits behind
	// AppendArchive that fail (at most one line a minute) and their
	// recovery. nil means slog.Default().
	Logger *slog.Logger
}

// Store is a storage.Store backed by a bbolt file. Create one with Open.
type Store struct {
	db     *bolt.DB
	path   string
	batch  bool
	closed atomic.Bool
	// pushing counts message writes (offline pushes, archive appends)
	// in flight, to batch only when they overlap (see write).
	pushing atomic.Int32
	// archive queues archive appends (see archivequeue.go).
	archive archiveQueue
	// prefs keeps archiving preferences once read (see ArchivePrefs).
	prefs prefsCache
}

// Open opens the bbolt database at path, creating it with mode 0600 if it
// does not exist, and checks or initialises its schema. A nil opts means
// the defaults. If another process holds the file, Open fails after
// opts.Timeout with an error wrapping ErrLocked; if the file was written by
// a newer Treff, with one wrapping ErrSchemaTooNew.
func Open(path string, opts *Options) (*Store, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.BatchDelay == 0 {
		o.BatchDelay = DefaultBatchDelay
	}
	if o.ArchiveQueueBytes <= 0 {
		o.ArchiveQueueBytes = DefaultArchiveQueueBytes
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: o.Timeout, NoSync: o.NoSync})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("%w: %s", ErrLocked, path)
		}
		return nil, fmt.Errorf("boltstore: open %s: %w", path, err)
	}
	if o.BatchDelay > 0 {
		db.MaxBatchDelay = o.BatchDelay
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		if err := initSchema(tx); err != nil {
			return err
		}
		return foldArchiveJournal(tx)
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("boltstore: open %s: %w", path, err)
	}
	s := &Store{db: db, path: path, batch: o.BatchDelay > 0}
	s.archive.limit = o.ArchiveQueueBytes
	s.archive.room.L = &s.archive.mu
	s.archive.afterFunc = afterFunc
	s.archive.spawn = func(f func()) { go f() }
	s.archive.smallBatch = archiveFlushBatch
	s.archive.now = time.Now
	s.archive.folded = time.Now()
	s.archive.log = o.Logger
	return s, nil
}

// initSchema creates the buckets of a new database and checks the schema
// version of an existing one.
func initSchema(tx *bolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		// A new file has no buckets at all; anything else is not ours.
		if err := tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
			return fmt.Errorf("not a Treff database: it has a bucket %q but no schema version", name)
		}); err != nil {
			return err
		}
		var err error
		if meta, err = tx.CreateBucket(bucketMeta); err != nil {
			return err
		}
		if err := meta.Put(keySchema, binary.BigEndian.AppendUint64(nil, SchemaVersion)); err != nil {
			return err
		}
	}
	v := meta.Get(keySchema)
	if len(v) != 8 {
		return fmt.Errorf("schema version %x: %w", v, errCorrupt)
	}
	switch ver := binary.BigEndian.Uint64(v); {
	case ver > SchemaVersion:
		return fmt.Errorf("%w: the file has schema version %d, this build supports up to %d; upgrade Treff or restore a backup", ErrSchemaTooNew, ver, SchemaVersion)
	case ver == 0:
		return fmt.Errorf("schema version 0: %w", errCorrupt)
	}
	// Upgrades from older schema versions go here once there are any.
	for _, name := range [][]byte{bucketAccounts, bucketRosters, bucketOffline} {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return err
		}
	}
	return nil
}

// Path returns the file name the store was opened with.
func (s *Store) Path() string { return s.path }

// Close closes the database file, waiting for running transactions. Every
// later call, including another Close, returns an error wrapping
// storage.ErrClosed.
func (s *Store) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return fmt.Errorf("boltstore: close: %w", storage.ErrClosed)
	}
	ferr := s.flush(flushClose)
	lost := s.ArchiveQueued()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("boltstore: close %s: %w", s.path, err)
	}
	if ferr != nil {
		return fmt.Errorf("boltstore: close %s: %d bytes of archived messages could not be written: %w", s.path, lost, ferr)
	}
	return nil
}

// check reports why an operation must not start: a done context or a
// closed store.
func (s *Store) check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.closed.Load() {
		return storage.ErrClosed
	}
	return nil
}

// view runs fn in a read-only transaction after checking ctx and s.
func (s *Store) view(ctx context.Context, fn func(*bolt.Tx) error) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	return s.db.View(fn)
}

// update runs fn in a read-write transaction after checking ctx and s.
func (s *Store) update(ctx context.Context, fn func(*bolt.Tx) error) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	return s.db.Update(fn)
}

// fail wraps err with the package name and a description of the operation,
// format and args. A database closed under a running operation is reported
// as storage.ErrClosed. Callers check err != nil first, which keeps the
// argument list off the heap on success.
func fail(err error, format string, args ...any) error {
	if errors.Is(err, bolterrors.ErrDatabaseNotOpen) {
		err = storage.ErrClosed
	}
	return fmt.Errorf("boltstore: "+format+": %w", append(args, err)...)
}

// inDomain reports whether the bare JID jid has the domainpart domain:
// everything after the '@', or the whole JID if it has no localpart.
func inDomain(jid []byte, domain string) bool {
	if i := bytes.IndexByte(jid, '@'); i >= 0 {
		jid = jid[i+1:]
	}
	return string(jid) == domain
}
