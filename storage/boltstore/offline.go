package boltstore

import (
	"context"

	bolt "go.etcd.io/bbolt"

	"github.com/treff-im/treff/storage"
)

// PushOffline implements storage.Offline. The ID in msg is ignored; the
// stored message gets the next ID of the store-wide counter.
//
// Unless batching is disabled (Options.BatchDelay < 0), pushes that overlap
// other pushes share transactions through bbolt's DB.Batch; a push with no
// other in flight commits on its own without waiting. The quota check runs
// inside the transaction, so batching does not weaken it: the pushes of one
// batch are applied one after another and each sees the ones before it.
func (s *Store) PushOffline(ctx context.Context, user string, msg storage.OfflineMessage, limit int) (uint64, error) {
	if user == "" {
		return 0, fail(errEmptyJID, "push offline")
	}
	if err := s.check(ctx); err != nil {
		return 0, fail(err, "push offline for %q", user)
	}
	v := encodeOffline(msg.Received, msg.Stanza)
	name := []byte(user)
	var (
		id    uint64
		quota bool
	)
	// fn may run more than once under Batch (if another function in its
	// batch fails), so it sets all its results on every run. Exceeding the
	// quota is a result, not an error: an error would make Batch roll back
	// and retry the whole batch.
	fn := func(tx *bolt.Tx) error {
		id, quota = 0, false
		root := tx.Bucket(bucketOffline)
		ub, err := root.CreateBucketIfNotExists(name)
		if err != nil {
			return err
		}
		n := ub.Sequence()
		if limit > 0 && n >= uint64(limit) {
			quota = true
			return nil
		}
		next, err := root.NextSequence()
		if err != nil {
			return err
		}
		if err := ub.Put(offlineKey(next), v); err != nil {
			return err
		}
		if err := ub.SetSequence(n + 1); err != nil {
			return err
		}
		id = next
		return nil
	}
	err := s.write(fn)
	switch {
	case err != nil:
		return 0, fail(err, "push offline for %q", user)
	case quota:
		return 0, fail(storage.ErrQuotaExceeded, "push offline for %q (limit %d)", user, limit)
	}
	return id, nil
}

// OfflineMessages implements storage.Offline.
func (s *Store) OfflineMessages(ctx context.Context, user string) ([]storage.OfflineMessage, error) {
	if user == "" {
		return nil, fail(errEmptyJID, "offline messages")
	}
	msgs := []storage.OfflineMessage{}
	err := s.view(ctx, func(tx *bolt.Tx) error {
		ub := tx.Bucket(bucketOffline).Bucket([]byte(user))
		if ub == nil {
			return nil
		}
		msgs = make([]storage.OfflineMessage, 0, ub.Sequence())
		c := ub.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			m, err := decodeOffline(k, v)
			if err != nil {
				return err
			}
			msgs = append(msgs, m)
		}
		return nil
	})
	if err != nil {
		return nil, fail(err, "offline messages of %q", user)
	}
	return msgs, nil
}

// DeleteOfflineMessages implements storage.Offline.
func (s *Store) DeleteOfflineMessages(ctx context.Context, user string, ids []uint64) error {
	if user == "" {
		return fail(errEmptyJID, "delete offline messages")
	}
	if len(ids) == 0 {
		// Nothing to do, but still report a done context or closed store.
		if err := s.check(ctx); err != nil {
			return fail(err, "delete offline messages of %q", user)
		}
		return nil
	}
	err := s.update(ctx, func(tx *bolt.Tx) error {
		root := tx.Bucket(bucketOffline)
		ub := root.Bucket([]byte(user))
		if ub == nil {
			return nil
		}
		var deleted uint64
		for _, id := range ids {
			k := offlineKey(id)
			if ub.Get(k) == nil {
				continue
			}
			if err := ub.Delete(k); err != nil {
				return err
			}
			deleted++
		}
		n := ub.Sequence()
		if deleted > n {
			// The count is wrong; repair it rather than underflow.
			n = countKeys(ub) + deleted
		}
		if n == deleted {
			return root.DeleteBucket([]byte(user))
		}
		return ub.SetSequence(n - deleted)
	})
	if err != nil {
		return fail(err, "delete offline messages of %q", user)
	}
	return nil
}

// CountOffline implements storage.Offline. It reads the count kept in the
// user's bucket and decodes no message.
func (s *Store) CountOffline(ctx context.Context, user string) (int, error) {
	if user == "" {
		return 0, fail(errEmptyJID, "count offline")
	}
	var n uint64
	err := s.view(ctx, func(tx *bolt.Tx) error {
		if ub := tx.Bucket(bucketOffline).Bucket([]byte(user)); ub != nil {
			n = ub.Sequence()
		}
		return nil
	})
	if err != nil {
		return 0, fail(err, "count offline of %q", user)
	}
	return int(n), nil
}

// DeleteOffline implements storage.Offline.
func (s *Store) DeleteOffline(ctx context.Context, user string) error {
	if user == "" {
		return fail(errEmptyJID, "delete offline")
	}
	err := s.update(ctx, func(tx *bolt.Tx) error {
		root := tx.Bucket(bucketOffline)
		if root.Bucket([]byte(user)) == nil {
			return nil
		}
		return root.DeleteBucket([]byte(user))
	})
	if err != nil {
		return fail(err, "delete offline of %q", user)
	}
	return nil
}

// countKeys counts the keys in b without decoding values.
func countKeys(b *bolt.Bucket) uint64 {
	var n uint64
	c := b.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		n++
	}
	return n
}

// write runs fn in a write transaction. One that finds no other write of
// messages (offline pushes, archive appends) in flight commits at once;
// only writes that overlap others wait for a batch and share its commit
// and fsync, so batching costs no latency when the server is quiet.
func (s *Store) write(fn func(tx *bolt.Tx) error) error {
	var err error
	if n := s.pushing.Add(1); s.batch && n > 1 {
		err = s.db.Batch(fn)
	} else {
		err = s.db.Update(fn)
	}
	s.pushing.Add(-1)
	return err
}
