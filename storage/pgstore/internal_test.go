package pgstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/treff-im/treff/internal/pgtest"
	"github.com/treff-im/treff/storage"
)

// explainer runs EXPLAIN of every query before the query itself and
// keeps the plans.
type explainer struct {
	tx    pgx.Tx
	plans []string
}

func (e *explainer) explain(ctx context.Context, sql string, args ...any) {
	rows, err := e.tx.Query(ctx, "EXPLAIN "+sql, args...)
	if err != nil {
		e.plans = append(e.plans, "EXPLAIN failed: "+err.Error())
		return
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		e.plans = append(e.plans, "EXPLAIN failed: "+err.Error())
		return
	}
	e.plans = append(e.plans, sql+"\n"+strings.Join(lines, "\n"))
}

func (e *explainer) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	e.explain(ctx, sql, args...)
	return e.tx.Query(ctx, sql, args...)
}

func (e *explainer) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	e.explain(ctx, sql, args...)
	return e.tx.QueryRow(ctx, sql, args...)
}

// TestArchivePlans fills the archive with 400,000 messages, 100,000 of
// them one user's, vacuums it as autovacuum would, and checks that every statement of an archive
// query (by time, by contact, paged by ID, backward) reads through an
// index: none scans the table, so a query's cost grows with its page and
// its count's index range, not with the table.
func TestArchivePlans(t *testing.T) {
	srv := pgtest.Start(t)
	ctx := t.Context()
	s, err := Open(ctx, srv.Schema(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Rows made in SQL as AppendArchive would make them, one message a
	// second, the user's with 40 contacts.
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	_, err = s.pool.Exec(ctx, `INSERT INTO archive (owner, id, at, with_jid, with_resource, outgoing, stanza)
		SELECT CASE WHEN i % 4 = 0 THEN 'alice@example.org' ELSE 'user' || (i % 5000) || '@example.org' END,
			md5(i::text), $1::int8 + i::int8 * 1000000000, 'c' || (i % 40) || '@example.net', 'r', i % 3 = 0, '<message/>'::bytea
		FROM generate_series(1, 400000) i`, base.UnixNano())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, "VACUUM ANALYZE archive"); err != nil {
		t.Fatal(err)
	}
	mid, err := s.QueryArchive(ctx, "alice@example.org", storage.ArchiveQuery{Start: base.Add(200000 * time.Second), Limit: 1})
	if err != nil || len(mid.Messages) != 1 {
		t.Fatalf("query: %v, %d messages", err, len(mid.Messages))
	}
	midID := mid.Messages[0].ID
	queries := []storage.ArchiveQuery{
		{Limit: 50},
		{Limit: 50, Backward: true},
		{Start: base.Add(100000 * time.Second), End: base.Add(300000 * time.Second), Limit: 50},
		{With: "c4@example.net", Limit: 50},
		{With: "c4@example.net/r", Limit: 50, Backward: true},
		{After: midID, Limit: 50},
		{Before: midID, Limit: 50, Backward: true},
		{With: "c8@example.net", AfterID: midID, Limit: 50},
		{IDs: []string{midID}, Limit: 50},
	}
	for i, q := range queries {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			tx, err := s.pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(ctx)
			e := &explainer{tx: tx}
			page, err := queryArchive(ctx, e, "alice@example.org", q)
			if err != nil {
				t.Fatal(err)
			}
			if q.Limit > 0 && len(page.Messages) == 0 {
				t.Errorf("query %+v: empty page", q)
			}
			for _, p := range e.plans {
				if strings.Contains(p, "Seq Scan") || strings.Contains(p, "failed") {
					t.Errorf("query %+v: a statement does not use an index:\n%s", q, p)
				}
			}
		})
	}
}

// TestReopen checks that data survives closing and opening again and
// that opening an up-to-date schema changes nothing.
func TestReopen(t *testing.T) {
	srv := pgtest.Start(t)
	dsn := srv.Schema(t)
	ctx := t.Context()
	s, err := Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateAccount(ctx, storage.Account{JID: "a@example.org"}); err != nil {
		t.Fatal(err)
	}
	id, err := s.AppendArchive(ctx, "a@example.org", storage.ArchivedMessage{With: "b@example.org", Stanza: []byte("<message/>"), Time: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := s.Account(ctx, "a@example.org"); err == nil {
		t.Error("a closed store answered")
	}
	s, err = Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Account(ctx, "a@example.org"); err != nil {
		t.Errorf("account after reopen: %v", err)
	}
	p, err := s.QueryArchive(ctx, "a@example.org", storage.ArchiveQuery{IDs: []string{id}, Limit: 1})
	if err != nil || len(p.Messages) != 1 {
		t.Errorf("archived message after reopen: %v, %d", err, len(p.Messages))
	}
	var v int
	if err := s.pool.QueryRow(ctx, "SELECT version FROM schema_version").Scan(&v); err != nil || v != SchemaVersion {
		t.Errorf("schema_version = %d, %v; want %d", v, err, SchemaVersion)
	}
}

// TestSchemaTooNew: a schema newer than the package knows is refused
// with an error that says so, and nothing is changed.
func TestSchemaTooNew(t *testing.T) {
	srv := pgtest.Start(t)
	dsn := srv.Schema(t)
	ctx := t.Context()
	s, err := Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, "UPDATE schema_version SET version = $1", SchemaVersion+1); err != nil {
		t.Fatal(err)
	}
	s.Close()
	_, err = Open(ctx, dsn)
	if err == nil || !strings.Contains(err.Error(), "newer than this program knows") {
		t.Fatalf("Open on a newer schema: %v, want a refusal", err)
	}
}

// TestPoolSize: pool_max_conns in the DSN sets the pool's size, and
// DefaultMaxConns applies without it.
func TestPoolSize(t *testing.T) {
	srv := pgtest.Start(t)
	dsn := srv.Schema(t)
	ctx := t.Context()
	s, err := Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.pool.Config().MaxConns; got != DefaultMaxConns {
		t.Errorf("default pool size %d, want %d", got, DefaultMaxConns)
	}
	s.Close()
	sep := " " // key=value DSN (TREFF_PGSQL_DSN may be one)
	if strings.Contains(dsn, "://") {
		sep = "&" // a URL: pgtest's have a query already (search_path)
	}
	s, err = Open(ctx, dsn+sep+"pool_max_conns=3")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := s.pool.Config().MaxConns; got != 3 {
		t.Errorf("pool size with pool_max_conns=3: %d", got)
	}
}

// TestContextCancelsStatement: a context that ends while a statement runs
// on the server ends the call with an error wrapping the context's.
func TestContextCancelsStatement(t *testing.T) {
	srv := pgtest.Start(t)
	ctx := t.Context()
	s, err := Open(ctx, srv.Schema(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Hold the user's archive lock in a transaction, so that an append
	// waits on the server until its context ends.
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if err := lockKey(ctx, tx, archiveLock("a@example.org")); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	_, err = s.AppendArchive(cctx, "a@example.org", storage.ArchivedMessage{With: "b@example.org", Time: time.Now()})
	if err == nil || !strings.Contains(err.Error(), "deadline") {
		t.Fatalf("append under a held lock with an ending context: %v", err)
	}
	tx.Rollback(ctx)
	if n, err := s.CountArchive(ctx, "a@example.org"); err != nil || n != 0 {
		t.Errorf("after the cancelled append: %d messages, %v", n, err)
	}
}

// TestArchiveBatching: 64 goroutines append 20 messages each to 8 users
// at once. Every append returns a distinct ID, every message is stored
// once, each user's times never decrease in archive order, and the
// appends were committed in fewer transactions than there were appends.
func TestArchiveBatching(t *testing.T) {
	srv := pgtest.Start(t)
	ctx := t.Context()
	s, err := Open(ctx, srv.Schema(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const workers, each, users = 64, 20, 8
	var mu sync.Mutex
	ids := map[string]bool{}
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, workers)
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for i := range each {
				// Times that go back now and then: stored as the latest.
				at := base.Add(time.Duration((w*7+i*13)%50) * time.Second)
				id, err := s.AppendArchive(ctx, fmt.Sprintf("u%d@example.org", (w+i)%users),
					storage.ArchivedMessage{Time: at, With: "c@example.org", Stanza: fmt.Appendf(nil, "<message><body>%d %d</body></message>", w, i)})
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				dup := ids[id]
				ids[id] = true
				mu.Unlock()
				if dup {
					errs <- fmt.Errorf("ID %s returned twice", id)
					return
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	total := 0
	for u := range users {
		p, err := s.QueryArchive(ctx, fmt.Sprintf("u%d@example.org", u), storage.ArchiveQuery{Limit: workers * each})
		if err != nil {
			t.Fatal(err)
		}
		for i, m := range p.Messages {
			if !ids[m.ID] {
				t.Errorf("stored ID %s was not returned by an append", m.ID)
			}
			if i > 0 && m.Time.Before(p.Messages[i-1].Time) {
				t.Errorf("user %d: time %v after %v in archive order", u, m.Time, p.Messages[i-1].Time)
			}
		}
		total += len(p.Messages)
	}
	if total != workers*each {
		t.Errorf("%d messages stored, want %d", total, workers*each)
	}
	if n := s.batch.batches.Load(); n >= workers*each {
		t.Errorf("%d transactions for %d appends: no batching", n, workers*each)
	} else {
		t.Logf("%d appends in %d transactions", workers*each, n)
	}
}

// TestMigrateFromVersion1: a database made by the first schema step, with
// offline messages stored the way that version stored them, is brought to
// the current version by Open in one go; the counts the new step derives
// are right, so the offline limit holds across the upgrade.
func TestMigrateFromVersion1(t *testing.T) {
	srv := pgtest.Start(t)
	dsn := srv.Schema(t)
	ctx := t.Context()
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	if err := migrateSteps(ctx, pool, migrations[:1]); err != nil {
		t.Fatal(err)
	}
	// Version 1's PushOffline: a counter row and the messages.
	if _, err := pool.Exec(ctx, `INSERT INTO offline_counters (owner, last) VALUES ('a@example.org', 5);
		INSERT INTO offline (owner, id, received, stanza) VALUES ('a@example.org', 4, 1, '<m/>'), ('a@example.org', 5, 2, '<m/>')`); err != nil {
		t.Fatal(err)
	}
	pool.Close()

	s, err := Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var v int
	if err := s.pool.QueryRow(ctx, "SELECT version FROM schema_version").Scan(&v); err != nil || v != SchemaVersion {
		t.Fatalf("version after Open: %d, %v; want %d", v, err, SchemaVersion)
	}
	// Two are stored; a limit of 3 takes one more, with the next ID.
	id, err := s.PushOffline(ctx, "a@example.org", storage.OfflineMessage{Stanza: []byte("<m/>")}, 3)
	if err != nil || id != 6 {
		t.Fatalf("push after the upgrade: %d, %v; want ID 6", id, err)
	}
	if _, err := s.PushOffline(ctx, "a@example.org", storage.OfflineMessage{Stanza: []byte("<m/>")}, 3); !errors.Is(err, storage.ErrQuotaExceeded) {
		t.Fatalf("push beyond the limit after the upgrade: %v", err)
	}
	if err := s.DeleteOfflineMessages(ctx, "a@example.org", []uint64{4, 99}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PushOffline(ctx, "a@example.org", storage.OfflineMessage{Stanza: []byte("<m/>")}, 3); err != nil {
		t.Fatalf("push after a deletion made room: %v", err)
	}
}
