package boltstore

import (
	"bytes"
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/treff-im/treff/storage"
)

var _ storage.PrivateXML = (*Store)(nil)

// bucketPrivate holds one nested bucket per user, named by bare JID, with
// key = document key, value = format byte 1 followed by the document.
// Empty user buckets are removed.
var bucketPrivate = []byte("private")

const privateV1 = 1

// PrivateXML implements storage.PrivateXML.
func (s *Store) PrivateXML(ctx context.Context, user, key string) ([]byte, error) {
	var doc []byte
	err := s.view(ctx, func(tx *bolt.Tx) error {
		var v []byte
		if b := tx.Bucket(bucketPrivate); b != nil {
			if ub := b.Bucket([]byte(user)); ub != nil {
				v = ub.Get([]byte(key))
			}
		}
		if v == nil {
			return storage.ErrNotFound
		}
		if len(v) < 1 || v[0] != privateV1 {
			return fmt.Errorf("private xml record: %w", errCorrupt)
		}
		doc = bytes.Clone(v[1:])
		return nil
	})
	if err != nil {
		return nil, fail(err, "private xml %q of %q", key, user)
	}
	return doc, nil
}

// PutPrivateXML implements storage.PrivateXML.
func (s *Store) PutPrivateXML(ctx context.Context, user, key string, doc []byte) error {
	if user == "" || key == "" {
		return fail(errEmptyJID, "put private xml")
	}
	v := make([]byte, 0, 1+len(doc))
	v = append(v, privateV1)
	v = append(v, doc...)
	err := s.update(ctx, func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketPrivate)
		if err != nil {
			return err
		}
		ub, err := b.CreateBucketIfNotExists([]byte(user))
		if err != nil {
			return err
		}
		return ub.Put([]byte(key), v)
	})
	if err != nil {
		return fail(err, "put private xml %q of %q", key, user)
	}
	return nil
}

// DeletePrivateXML implements storage.PrivateXML.
func (s *Store) DeletePrivateXML(ctx context.Context, user, key string) error {
	if user == "" {
		return fail(errEmptyJID, "delete private xml")
	}
	err := s.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPrivate)
		if b == nil {
			return nil
		}
		ub := b.Bucket([]byte(user))
		if ub == nil {
			return nil
		}
		if err := ub.Delete([]byte(key)); err != nil {
			return err
		}
		if k, _ := ub.Cursor().First(); k == nil {
			return b.DeleteBucket([]byte(user))
		}
		return nil
	})
	if err != nil {
		return fail(err, "delete private xml %q of %q", key, user)
	}
	return nil
}

// DeleteAllPrivateXML implements storage.PrivateXML.
func (s *Store) DeleteAllPrivateXML(ctx context.Context, user string) error {
	if user == "" {
		return fail(errEmptyJID, "delete all private xml")
	}
	err := s.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPrivate)
		if b == nil || b.Bucket([]byte(user)) == nil {
			return nil
		}
		return b.DeleteBucket([]byte(user))
	})
	if err != nil {
		return fail(err, "delete all private xml of %q", user)
	}
	return nil
}
