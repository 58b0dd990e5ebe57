// Package pgstore keeps Treff's data in PostgreSQL through pgx: every
// interface of package storage, for servers that already run PostgreSQL
// or that run as several nodes sharing one database.
//
// Open connects a pool, applies the package's schema migrations (see
// migrations.go) in one transaction, and returns a Store. Every method
// runs on the pool, honours its context (a done context cancels the
// statement on the server) and returns only once PostgreSQL has committed
// what it wrote: acknowledged means stored.
//
// Times are kept as int64 Unix nanoseconds, not timestamptz, because
// PostgreSQL keeps microseconds and the storage contract keeps times
// exactly. JIDs are the normalised strings the callers give.
package pgstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/treff-im/treff/storage"
)

// DefaultMaxConns is the pool size when the DSN does not set
// pool_max_conns: enough for a busy node without taking a large share of
// PostgreSQL's max_connections (100 by default) when several nodes share
// one server.
const DefaultMaxConns = 16

// cancelGrace is how long a statement whose context ended may take to
// answer the cancel request before its connection is closed.
const cancelGrace = 2 * time.Second

// Store is a storage backend on PostgreSQL. It is safe for concurrent
// use. Its zero value is not usable: call Open.
type Store struct {
	pool   *pgxpool.Pool
	closed atomic.Bool
	batch  archiveBatcher
	delay  archiveDelay
	prefs  prefsCache
}

// Interface guards.
var (
	_ storage.Store             = (*Store)(nil)
	_ storage.LastActivity      = (*Store)(nil)
	_ storage.HeldNames         = (*Store)(nil)
	_ storage.Invites           = (*Store)(nil)
	_ storage.Rooms             = (*Store)(nil)
	_ storage.PrivateXML        = (*Store)(nil)
	_ storage.PrivateXMLKeys    = (*Store)(nil)
	_ storage.Blocklists        = (*Store)(nil)
	_ storage.PEP               = (*Store)(nil)
	_ storage.PEPSubscriptions  = (*Store)(nil)
	_ storage.PushRegistrations = (*Store)(nil)
	_ storage.Archive           = (*Store)(nil)
	_ storage.ArchiveEditor     = (*Store)(nil)
	_ storage.Uploads           = (*Store)(nil)
	_ storage.FastTokens        = (*Store)(nil)
	_ storage.Reports           = (*Store)(nil)
)

// Open connects to the database named by dsn (a pgx connection string:
// a postgres:// URL or key=value pairs), brings its schema up to date and
// returns the store. The pool holds at most pool_max_conns connections
// (a DSN parameter; DefaultMaxConns if not given). ctx bounds the
// connecting and the migrations, not the store's life.
//
// A database whose schema is newer than this package knows is refused
// with an error naming both versions: an older binary does not write
// into a schema it does not understand.
func Open(ctx context.Context, dsn string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	if !strings.Contains(dsn, "pool_max_conns") {
		cfg.MaxConns = DefaultMaxConns
	}
	// A done context cancels the statement on the server (a cancel
	// request), not only the wait for its answer: pgx's default closes
	// the connection and leaves the statement running, so that a write
	// waiting for a lock could still commit after its caller gave up.
	// If the server does not answer within cancelGrace, the connection
	// is closed.
	cfg.ConnConfig.BuildContextWatcherHandler = func(c *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: c, DeadlineDelay: cancelGrace}
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	if err := migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	return &Store{pool: pool}, nil
}

// Close closes the pool, waiting for the calls in progress to return
// their connections. Later calls return storage.ErrClosed.
func (s *Store) Close() error {
	if s.closed.Load() {
		return nil
	}
	s.closeDelay()
	if s.closed.Swap(true) {
		return nil
	}
	s.pool.Close()
	return nil
}

// Pool returns the store's connection pool, for an embedder that keeps
// its own tables in the same database.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

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

// errEmptyJID is the error for a JID argument given as "".
var errEmptyJID = errors.New("empty JID")

// noEmpty returns an error if any of jids is "".
func noEmpty(jids ...string) error {
	for _, j := range jids {
		if j == "" {
			return errEmptyJID
		}
	}
	return nil
}

// fail wraps err with the package name and the operation. An error
// caused by a done context wraps the context's error, and one from a
// closed pool storage.ErrClosed, so that callers can tell them with
// errors.Is.
func fail(ctx context.Context, err error, op string) error {
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		err = fmt.Errorf("%w (%v)", cerr, err)
	}
	if strings.Contains(err.Error(), "closed pool") {
		err = fmt.Errorf("%w (%v)", storage.ErrClosed, err)
	}
	return fmt.Errorf("pgstore: %s: %w", op, err)
}

// isUnique reports whether err is a unique violation.
func isUnique(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

// ns converts t to the stored form: Unix nanoseconds, or NULL (nil) for
// the zero time.
func ns(t time.Time) *int64 {
	if t.IsZero() {
		return nil
	}
	n := t.UnixNano()
	return &n
}

// fromNS converts a stored time back: UTC, or zero for NULL.
func fromNS(n *int64) time.Time {
	if n == nil {
		return time.Time{}
	}
	return time.Unix(0, *n).UTC()
}

// tx runs fn in a read-write transaction, committed when fn returns nil.
func (s *Store) tx(ctx context.Context, op string, fn func(pgx.Tx) error) error {
	if err := s.check(ctx); err != nil {
		return fail(ctx, err, op)
	}
	err := pgx.BeginFunc(ctx, s.pool, fn)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) || errors.Is(err, storage.ErrExists) || errors.Is(err, storage.ErrQuotaExceeded) {
			return fmt.Errorf("pgstore: %s: %w", op, err)
		}
		return fail(ctx, err, op)
	}
	return nil
}

// exec runs one statement and returns the number of rows it touched.
func (s *Store) exec(ctx context.Context, op, sql string, args ...any) (int64, error) {
	if err := s.check(ctx); err != nil {
		return 0, fail(ctx, err, op)
	}
	tag, err := s.pool.Exec(ctx, sql, args...)
	if err != nil {
		return 0, fail(ctx, err, op)
	}
	return tag.RowsAffected(), nil
}

// lockKey takes a transaction-scoped advisory lock on the string key,
// serialising the transactions that work on one user's data where a row
// lock is not enough (checks of a count before an insert).
func lockKey(ctx context.Context, tx pgx.Tx, key string) error {
	_, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", key)
	return err
}

// domainOf returns the domainpart of a bare JID.
func domainOf(jid string) string {
	if i := strings.IndexByte(jid, '@'); i >= 0 {
		return jid[i+1:]
	}
	return jid
}

// dataTables are the tables that hold data (all but schema_version).
var dataTables = []string{
	"accounts", "roster_items", "offline", "last_activity", "held_names", "invites", "rooms",
	"private_xml", "blocklist", "push_registrations", "fast_devices", "reports", "uploads",
	"pep_nodes", "archive", "archive_prefs",
}

// Empty reports whether the database holds no data at all, for a tool
// that copies another store into it and refuses to mix two.
func (s *Store) Empty(ctx context.Context) (bool, error) {
	if err := s.check(ctx); err != nil {
		return false, fail(ctx, err, "empty")
	}
	for _, t := range dataTables {
		var any bool
		if err := s.pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM "+t+")").Scan(&any); err != nil {
			return false, fail(ctx, err, "empty")
		}
		if any {
			return false, nil
		}
	}
	return true, nil
}
