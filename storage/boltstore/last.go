package boltstore

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/treff-im/treff/storage"
)

var _ storage.LastActivity = (*Store)(nil)

// bucketLast holds key = user JID, value = format byte 1, 8-byte big-endian
// Unix nanoseconds, then the status text.
var bucketLast = []byte("last")

// SetLastActivity implements storage.LastActivity.
func (s *Store) SetLastActivity(ctx context.Context, user string, t time.Time, status string) error {
	if user == "" {
		return fail(errEmptyJID, "set last activity")
	}
	v := make([]byte, 0, 9+len(status))
	v = append(v, 1)
	v = binary.BigEndian.AppendUint64(v, uint64(t.UnixNano()))
	v = append(v, status...)
	if err := s.check(ctx); err != nil {
		return fail(err, "set last activity of %q", user)
	}
	// Logouts come in bursts (a restart of a network, a login storm):
	// overlapping ones share a commit (write). The function only puts,
	// so Batch may run it twice.
	err := s.write(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketLast)
		if err != nil {
			return err
		}
		return b.Put([]byte(user), v)
	})
	if err != nil {
		return fail(err, "set last activity of %q", user)
	}
	return nil
}

// LastActivity implements storage.LastActivity.
func (s *Store) LastActivity(ctx context.Context, user string) (time.Time, string, error) {
	var t time.Time
	var status string
	err := s.view(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketLast)
		var v []byte
		if b != nil {
			v = b.Get([]byte(user))
		}
		if v == nil {
			return storage.ErrNotFound
		}
		if len(v) < 9 || v[0] != 1 {
			return fmt.Errorf("last activity record: %w", errCorrupt)
		}
		t = time.Unix(0, int64(binary.BigEndian.Uint64(v[1:9]))).UTC()
		status = string(v[9:])
		return nil
	})
	if err != nil {
		return time.Time{}, "", fail(err, "last activity of %q", user)
	}
	return t, status, nil
}

// DeleteLastActivity implements storage.LastActivity.
func (s *Store) DeleteLastActivity(ctx context.Context, user string) error {
	if user == "" {
		return fail(errEmptyJID, "delete last activity")
	}
	err := s.update(ctx, func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketLast); b != nil {
			return b.Delete([]byte(user))
		}
		return nil
	})
	if err != nil {
		return fail(err, "delete last activity of %q", user)
	}
	return nil
}
