package boltstore

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/treff-im/treff/storage"
)

var _ storage.HeldNames = (*Store)(nil)

// bucketHeld holds key = bare JID of a deleted account, value = 8-byte
// big-endian Unix nanoseconds until which the name is held.
var bucketHeld = []byte("held")

// HoldName implements storage.HeldNames. It also forgets passed holds.
func (s *Store) HoldName(ctx context.Context, jid string, until time.Time) error {
	if jid == "" {
		return fail(errEmptyJID, "hold name")
	}
	now := time.Now().UnixNano()
	err := s.update(ctx, func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketHeld)
		if err != nil {
			return err
		}
		var old [][]byte
		b.ForEach(func(k, v []byte) error {
			if len(v) != 8 || int64(binary.BigEndian.Uint64(v)) <= now {
				old = append(old, k)
			}
			return nil
		})
		for _, k := range old {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return b.Put([]byte(jid), binary.BigEndian.AppendUint64(nil, uint64(until.UnixNano())))
	})
	if err != nil {
		return fail(err, "hold name %q", jid)
	}
	return nil
}

// NameHeldUntil implements storage.HeldNames.
func (s *Store) NameHeldUntil(ctx context.Context, jid string) (time.Time, error) {
	if jid == "" {
		return time.Time{}, fail(errEmptyJID, "name held")
	}
	var t time.Time
	err := s.view(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketHeld)
		if b == nil {
			return nil
		}
		v := b.Get([]byte(jid))
		if v == nil {
			return nil
		}
		if len(v) != 8 {
			return fmt.Errorf("held name record: %w", errCorrupt)
		}
		t = time.Unix(0, int64(binary.BigEndian.Uint64(v))).UTC()
		return nil
	})
	if err != nil {
		return time.Time{}, fail(err, "name held %q", jid)
	}
	if !t.After(time.Now()) {
		return time.Time{}, nil
	}
	return t, nil
}

// HeldNames returns every name held now with its end, for copying the
// holds to another store (community migrate-store); storage.HeldNames has
// no way to list them.
func (s *Store) HeldNames(ctx context.Context) (map[string]time.Time, error) {
	out := make(map[string]time.Time)
	now := time.Now()
	err := s.view(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketHeld)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			if len(v) != 8 {
				return fmt.Errorf("held name record: %w", errCorrupt)
			}
			if t := time.Unix(0, int64(binary.BigEndian.Uint64(v))).UTC(); t.After(now) {
				out[string(k)] = t
			}
			return nil
		})
	})
	if err != nil {
		return nil, fail(err, "held names")
	}
	return out, nil
}
