package pgstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/treff-im/treff/internal/pgtest"
	"github.com/treff-im/treff/storage"
	"github.com/treff-im/treff/storage/pgstore"
	"github.com/treff-im/treff/storage/storagetest"
)

// TestConformance runs the storage conformance suite on a fresh schema
// per subtest of one PostgreSQL server (TREFF_PGSQL_DSN, or a throwaway
// one that pgtest starts).
func TestConformance(t *testing.T) {
	srv := pgtest.Start(t)
	storagetest.Run(t, func(t *testing.T) storage.Store {
		s, err := pgstore.Open(context.Background(), srv.Schema(t))
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// TestConformanceDelayedArchive runs the suite with the archive delayed
// (SetArchiveDelay, as the example server runs it): every read of the
// archive flushes first, so a message appended is found at once. The
// delay is long, so that only the reads' flushes (and Close) commit.
func TestConformanceDelayedArchive(t *testing.T) {
	srv := pgtest.Start(t)
	storagetest.Run(t, func(t *testing.T) storage.Store {
		s, err := pgstore.Open(context.Background(), srv.Schema(t))
		if err != nil {
			t.Fatal(err)
		}
		s.SetArchiveDelay(time.Hour, 0, nil)
		return s
	})
}
