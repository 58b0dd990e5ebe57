package boltstore

import (
	"bytes"
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/treff-im/treff/storage"
)

var _ storage.PushRegistrations = (*Store)(nil)

// bucketPush holds one nested bucket per user, named by bare JID, with
// key = app server JID, a NUL byte, node (so that keys sort by service,
// then node; JIDs hold no NUL) and value = format byte 1 followed by the
// publish-options form. Empty user buckets are removed.
var bucketPush = []byte("push")

const pushV1 = 1

func pushKey(service, node string) []byte {
	k := make([]byte, 0, len(service)+1+len(node))
	k = append(k, service...)
	k = append(k, 0)
	return append(k, node...)
}

// PushRegistrations implements storage.PushRegistrations.
func (s *Store) PushRegistrations(ctx context.Context, user string) ([]storage.PushRegistration, error) {
	if user == "" {
		return nil, fail(errEmptyJID, "push registrations")
	}
	var out []storage.PushRegistration
	err := s.view(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPush)
		if b == nil {
			return nil
		}
		ub := b.Bucket([]byte(user))
		if ub == nil {
			return nil
		}
		return ub.ForEach(func(k, v []byte) error {
			service, node, ok := bytes.Cut(k, []byte{0})
			if !ok || len(v) < 1 || v[0] != pushV1 {
				return fmt.Errorf("push registration record: %w", errCorrupt)
			}
			r := storage.PushRegistration{Service: string(service), Node: string(node)}
			if len(v) > 1 {
				r.Form = bytes.Clone(v[1:])
			}
			out = append(out, r)
			return nil
		})
	})
	if err != nil {
		return nil, fail(err, "push registrations of %q", user)
	}
	return out, nil
}

// PutPushRegistration implements storage.PushRegistrations.
func (s *Store) PutPushRegistration(ctx context.Context, user string, r storage.PushRegistration) error {
	if user == "" || r.Service == "" {
		return fail(errEmptyJID, "put push registration")
	}
	v := make([]byte, 0, 1+len(r.Form))
	v = append(v, pushV1)
	v = append(v, r.Form...)
	err := s.update(ctx, func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketPush)
		if err != nil {
			return err
		}
		ub, err := b.CreateBucketIfNotExists([]byte(user))
		if err != nil {
			return err
		}
		return ub.Put(pushKey(r.Service, r.Node), v)
	})
	if err != nil {
		return fail(err, "put push registration of %q", user)
	}
	return nil
}

// DeletePushRegistrations implements storage.PushRegistrations.
func (s *Store) DeletePushRegistrations(ctx context.Context, user, service, node string) error {
	if user == "" || service == "" {
		return fail(errEmptyJID, "delete push registrations")
	}
	err := s.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPush)
		if b == nil {
			return nil
		}
		ub := b.Bucket([]byte(user))
		if ub == nil {
			return nil
		}
		if node != "" {
			if err := ub.Delete(pushKey(service, node)); err != nil {
				return err
			}
		} else {
			prefix := pushKey(service, "")
			c := ub.Cursor()
			for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Seek(prefix) {
				if err := c.Delete(); err != nil {
					return err
				}
			}
		}
		if k, _ := ub.Cursor().First(); k == nil {
			return b.DeleteBucket([]byte(user))
		}
		return nil
	})
	if err != nil {
		return fail(err, "delete push registrations of %q", user)
	}
	return nil
}

// DeleteAllPushRegistrations implements storage.PushRegistrations.
func (s *Store) DeleteAllPushRegistrations(ctx context.Context, user string) error {
	if user == "" {
		return fail(errEmptyJID, "delete all push registrations")
	}
	err := s.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPush)
		if b == nil || b.Bucket([]byte(user)) == nil {
			return nil
		}
		return b.DeleteBucket([]byte(user))
	})
	if err != nil {
		return fail(err, "delete all push registrations of %q", user)
	}
	return nil
}
