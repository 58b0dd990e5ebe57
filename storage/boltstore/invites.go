package boltstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/treff-im/treff/storage"
)

var _ storage.Invites = (*Store)(nil)

// bucketInvites holds key = token, value = format byte 1, then domain and
// creator (each a uvarint length and the bytes), then created and expires
// (8-byte big-endian Unix nanoseconds each).
var bucketInvites = []byte("invites")

func encodeInvite(inv storage.Invite) []byte {
	b := []byte{1}
	b = binary.AppendUvarint(b, uint64(len(inv.Domain)))
	b = append(b, inv.Domain...)
	b = binary.AppendUvarint(b, uint64(len(inv.Creator)))
	b = append(b, inv.Creator...)
	b = binary.BigEndian.AppendUint64(b, uint64(inv.Created.UnixNano()))
	return binary.BigEndian.AppendUint64(b, uint64(inv.Expires.UnixNano()))
}

func decodeInvite(token string, v []byte) (storage.Invite, error) {
	bad := fmt.Errorf("invite record: %w", errCorrupt)
	if len(v) < 1 || v[0] != 1 {
		return storage.Invite{}, bad
	}
	v = v[1:]
	str := func() (string, bool) {
		n, k := binary.Uvarint(v)
		if k <= 0 || uint64(len(v)-k) < n {
			return "", false
		}
		s := string(v[k : k+int(n)])
		v = v[k+int(n):]
		return s, true
	}
	inv := storage.Invite{Token: token}
	var ok1, ok2 bool
	inv.Domain, ok1 = str()
	inv.Creator, ok2 = str()
	if !ok1 || !ok2 || len(v) != 16 {
		return storage.Invite{}, bad
	}
	inv.Created = time.Unix(0, int64(binary.BigEndian.Uint64(v[:8]))).UTC()
	inv.Expires = time.Unix(0, int64(binary.BigEndian.Uint64(v[8:]))).UTC()
	return inv, nil
}

// CreateInvite implements storage.Invites.
func (s *Store) CreateInvite(ctx context.Context, inv storage.Invite) error {
	if inv.Token == "" {
		return fail(fmt.Errorf("empty token"), "create invite")
	}
	err := s.update(ctx, func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketInvites)
		if err != nil {
			return err
		}
		if v := b.Get([]byte(inv.Token)); v != nil {
			if old, err := decodeInvite(inv.Token, v); err != nil || old.Expires.After(time.Now()) {
				return storage.ErrExists
			}
		}
		return b.Put([]byte(inv.Token), encodeInvite(inv))
	})
	if err != nil {
		return fail(err, "create invite")
	}
	return nil
}

// getInvite reads the invitation with token in tx; ErrNotFound if there
// is none. It does not look at the expiry.
func getInvite(tx *bolt.Tx, token string) (storage.Invite, error) {
	b := tx.Bucket(bucketInvites)
	if b == nil {
		return storage.Invite{}, storage.ErrNotFound
	}
	v := b.Get([]byte(token))
	if v == nil {
		return storage.Invite{}, storage.ErrNotFound
	}
	return decodeInvite(token, v)
}

// Invite implements storage.Invites.
func (s *Store) Invite(ctx context.Context, token string) (storage.Invite, error) {
	var inv storage.Invite
	err := s.view(ctx, func(tx *bolt.Tx) error {
		var err error
		if inv, err = getInvite(tx, token); err != nil {
			return err
		}
		if !inv.Expires.After(time.Now()) {
			return storage.ErrNotFound
		}
		return nil
	})
	if err != nil {
		return storage.Invite{}, fail(err, "invite")
	}
	return inv, nil
}

// UseInvite implements storage.Invites.
func (s *Store) UseInvite(ctx context.Context, token string) (storage.Invite, error) {
	var inv storage.Invite
	err := s.update(ctx, func(tx *bolt.Tx) error {
		got, err := getInvite(tx, token)
		if errors.Is(err, storage.ErrNotFound) {
			return err
		}
		if derr := tx.Bucket(bucketInvites).Delete([]byte(token)); derr != nil {
			return derr
		}
		// A corrupt or expired one is removed (the transaction commits
		// the removal) and reported as not found below.
		if err == nil && got.Expires.After(time.Now()) {
			inv = got
		}
		return nil
	})
	if err != nil {
		return storage.Invite{}, fail(err, "use invite")
	}
	if inv.Token == "" {
		return storage.Invite{}, fail(storage.ErrNotFound, "use invite")
	}
	return inv, nil
}

// ListInvites implements storage.Invites.
func (s *Store) ListInvites(ctx context.Context) ([]storage.Invite, error) {
	var out []storage.Invite
	now := time.Now()
	err := s.view(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketInvites)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			inv, err := decodeInvite(string(k), v)
			if err != nil {
				return err
			}
			if inv.Expires.After(now) {
				out = append(out, inv)
			}
			return nil
		})
	})
	if err != nil {
		return nil, fail(err, "list invites")
	}
	slices.SortFunc(out, func(a, b storage.Invite) int { return a.Created.Compare(b.Created) })
	return out, nil
}

// DeleteInvite implements storage.Invites.
func (s *Store) DeleteInvite(ctx context.Context, token string) error {
	err := s.update(ctx, func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketInvites); b != nil {
			return b.Delete([]byte(token))
		}
		return nil
	})
	if err != nil {
		return fail(err, "delete invite")
	}
	return nil
}
