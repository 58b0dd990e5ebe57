package boltstore

import (
	"context"
	"slices"

	bolt "go.etcd.io/bbolt"

	"github.com/treff-im/treff/storage"
)

var _ storage.Blocklists = (*Store)(nil)

// bucketBlocklists holds one nested bucket per user, named by bare JID,
// with key = blocked JID and value = blockedV1 (a format byte; there is
// nothing else to keep). bbolt's key order is the sorted list. Empty user
// buckets are removed.
var bucketBlocklists = []byte("blocklists")

const blockedV1 = 1

// Blocklist implements storage.Blocklists.
func (s *Store) Blocklist(ctx context.Context, user string) ([]string, error) {
	if user == "" {
		return nil, fail(errEmptyJID, "blocklist")
	}
	list := []string{}
	err := s.view(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketBlocklists)
		if b == nil {
			return nil
		}
		ub := b.Bucket([]byte(user))
		if ub == nil {
			return nil
		}
		return ub.ForEach(func(k, _ []byte) error {
			list = append(list, string(k))
			return nil
		})
	})
	if err != nil {
		return nil, fail(err, "blocklist of %q", user)
	}
	return list, nil
}

// Block implements storage.Blocklists.
func (s *Store) Block(ctx context.Context, user string, jids []string) error {
	if user == "" {
		return fail(errEmptyJID, "block")
	}
	for _, j := range jids {
		if j == "" {
			return fail(errEmptyJID, "block")
		}
	}
	if len(jids) == 0 {
		if err := s.check(ctx); err != nil {
			return fail(err, "block for %q", user)
		}
		return nil
	}
	err := s.update(ctx, func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketBlocklists)
		if err != nil {
			return err
		}
		ub, err := b.CreateBucketIfNotExists([]byte(user))
		if err != nil {
			return err
		}
		for _, j := range jids {
			if err := ub.Put([]byte(j), []byte{blockedV1}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fail(err, "block for %q", user)
	}
	return nil
}

// Unblock implements storage.Blocklists.
func (s *Store) Unblock(ctx context.Context, user string, jids []string) error {
	if user == "" || slices.Contains(jids, "") {
		return fail(errEmptyJID, "unblock")
	}
	err := s.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketBlocklists)
		if b == nil {
			return nil
		}
		ub := b.Bucket([]byte(user))
		if ub == nil {
			return nil
		}
		for _, j := range jids {
			if j == "" {
				continue
			}
			if err := ub.Delete([]byte(j)); err != nil {
				return err
			}
		}
		if k, _ := ub.Cursor().First(); k == nil {
			return b.DeleteBucket([]byte(user))
		}
		return nil
	})
	if err != nil {
		return fail(err, "unblock for %q", user)
	}
	return nil
}

// UnblockAll implements storage.Blocklists.
func (s *Store) UnblockAll(ctx context.Context, user string) error {
	if user == "" {
		return fail(errEmptyJID, "unblock all")
	}
	err := s.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketBlocklists)
		if b == nil || b.Bucket([]byte(user)) == nil {
			return nil
		}
		return b.DeleteBucket([]byte(user))
	})
	if err != nil {
		return fail(err, "unblock all for %q", user)
	}
	return nil
}

// IsBlocked implements storage.Blocklists.
func (s *Store) IsBlocked(ctx context.Context, user, jid string) (bool, error) {
	if user == "" || jid == "" {
		return false, fail(errEmptyJID, "is blocked")
	}
	var found bool
	err := s.view(ctx, func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketBlocklists); b != nil {
			if ub := b.Bucket([]byte(user)); ub != nil {
				found = ub.Get([]byte(jid)) != nil
			}
		}
		return nil
	})
	if err != nil {
		return false, fail(err, "is blocked for %q", user)
	}
	return found, nil
}
