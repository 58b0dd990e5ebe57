package boltstore

import (
	"bytes"
	"context"
	"errors"

	bolt "go.etcd.io/bbolt"

	"github.com/treff-im/treff/storage"
)

var _ storage.Secrets = (*Store)(nil)

// bucketSecrets holds key = the secret's name, value = its bytes as given
// (storage.Secrets).
var bucketSecrets = []byte("secrets")

// errSecretArg reports an empty secret name or value.
var errSecretArg = errors.New("empty secret name or value")

// Secret implements storage.Secrets.
func (s *Store) Secret(ctx context.Context, name string) ([]byte, error) {
	var out []byte
	err := s.view(ctx, func(tx *bolt.Tx) error {
		if name == "" {
			return errSecretArg
		}
		b := tx.Bucket(bucketSecrets)
		if b == nil {
			return storage.ErrNotFound
		}
		v := b.Get([]byte(name))
		if v == nil {
			return storage.ErrNotFound
		}
		out = bytes.Clone(v)
		return nil
	})
	if err != nil {
		return nil, fail(err, "secret %q", name)
	}
	return out, nil
}

// PutSecret implements storage.Secrets.
func (s *Store) PutSecret(ctx context.Context, name string, value []byte) error {
	err := s.update(ctx, func(tx *bolt.Tx) error {
		if name == "" || len(value) == 0 {
			return errSecretArg
		}
		b, err := tx.CreateBucketIfNotExists(bucketSecrets)
		if err != nil {
			return err
		}
		return b.Put([]byte(name), bytes.Clone(value))
	})
	if err != nil {
		return fail(err, "put secret %q", name)
	}
	return nil
}

// SwapSecret implements storage.Secrets. bbolt runs one write transaction
// at a time, which makes the comparison and the write atomic.
func (s *Store) SwapSecret(ctx context.Context, name string, old, value []byte) (bool, error) {
	var swapped bool
	err := s.update(ctx, func(tx *bolt.Tx) error {
		if name == "" || len(value) == 0 {
			return errSecretArg
		}
		b, err := tx.CreateBucketIfNotExists(bucketSecrets)
		if err != nil {
			return err
		}
		cur := b.Get([]byte(name))
		if (cur != nil) != (len(old) > 0) || cur != nil && !bytes.Equal(cur, old) {
			return nil
		}
		swapped = true
		return b.Put([]byte(name), bytes.Clone(value))
	})
	if err != nil {
		return false, fail(err, "swap secret %q", name)
	}
	return swapped, nil
}
