package boltstore

import (
	"context"

	bolt "go.etcd.io/bbolt"

	"github.com/treff-im/treff/storage"
)

var _ storage.PrivateXMLKeys = (*Store)(nil)

// PrivateXMLKeys implements storage.PrivateXMLKeys. bbolt keeps a
// bucket's keys sorted by bytes, which is the order returned.
func (s *Store) PrivateXMLKeys(ctx context.Context, user string) ([]string, error) {
	if user == "" {
		return nil, fail(errEmptyJID, "private xml keys")
	}
	var keys []string
	err := s.view(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPrivate)
		if b == nil {
			return nil
		}
		ub := b.Bucket([]byte(user))
		if ub == nil {
			return nil
		}
		return ub.ForEach(func(k, _ []byte) error {
			keys = append(keys, string(k))
			return nil
		})
	})
	if err != nil {
		return nil, fail(err, "private xml keys of %q", user)
	}
	return keys, nil
}
