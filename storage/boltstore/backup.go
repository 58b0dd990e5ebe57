package boltstore

import (
	"context"
	"fmt"
	"io"

	bolt "go.etcd.io/bbolt"
)

// Backup writes a consistent copy of the whole database file to w while
// the store stays in use, and returns the number of bytes written. The
// copy is a valid bbolt file that Open accepts.
//
// Archived messages still queued (see AppendArchive) are committed
// first, so the copy holds every message whose ID was handed out before
// Backup was called. The copy is taken in one read-only transaction:
// writes go on meanwhile, except those that need the file to grow,
// which wait until the copy is written. Write to a fast local file and
// compress or send it afterwards, not to a slow stream.
//
// ctx is checked before the copy starts; a done ctx does not interrupt a
// copy under way (make w fail for that).
func (s *Store) Backup(ctx context.Context, w io.Writer) (int64, error) {
	if err := s.check(ctx); err != nil {
		return 0, fmt.Errorf("boltstore: backup: %w", err)
	}
	if err := s.flushArchive(); err != nil {
		return 0, fmt.Errorf("boltstore: backup: %w", err)
	}
	var n int64
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	if err != nil {
		return n, fmt.Errorf("boltstore: backup: %w", err)
	}
	return n, nil
}
