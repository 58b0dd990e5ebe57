package boltstore

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	bolt "go.etcd.io/bbolt"

	"github.com/treff-im/treff/storage"
)

var _ storage.Rooms = (*Store)(nil)

// bucketRooms holds key = room bare JID, value = format byte 1 followed by
// the room as JSON (rooms change shape more often than accounts, and are
// few and rarely written).
var bucketRooms = []byte("rooms")

func encodeRoom(r storage.Room) ([]byte, error) {
	r.Created = r.Created.UTC()
	b, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	return append([]byte{1}, b...), nil
}

func decodeRoom(v []byte) (storage.Room, error) {
	var r storage.Room
	if len(v) < 1 || v[0] != 1 {
		return r, fmt.Errorf("room record: %w", errCorrupt)
	}
	if err := json.Unmarshal(v[1:], &r); err != nil {
		return r, fmt.Errorf("room record: %w: %v", errCorrupt, err)
	}
	r.Created = r.Created.UTC()
	return r, nil
}

// PutRoom implements storage.Rooms.
func (s *Store) PutRoom(ctx context.Context, r storage.Room) error {
	if r.JID == "" {
		return fail(errEmptyJID, "put room")
	}
	v, err := encodeRoom(r)
	if err != nil {
		return fail(err, "put room %q", r.JID)
	}
	err = s.update(ctx, func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketRooms)
		if err != nil {
			return err
		}
		return b.Put([]byte(r.JID), v)
	})
	if err != nil {
		return fail(err, "put room %q", r.JID)
	}
	return nil
}

// Room implements storage.Rooms.
func (s *Store) Room(ctx context.Context, jid string) (storage.Room, error) {
	var r storage.Room
	err := s.view(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRooms)
		if b == nil {
			return storage.ErrNotFound
		}
		v := b.Get([]byte(jid))
		if v == nil {
			return storage.ErrNotFound
		}
		var err error
		r, err = decodeRoom(v)
		return err
	})
	if err != nil {
		return storage.Room{}, fail(err, "room %q", jid)
	}
	return r, nil
}

// DeleteRoom implements storage.Rooms.
func (s *Store) DeleteRoom(ctx context.Context, jid string) error {
	if jid == "" {
		return fail(errEmptyJID, "delete room")
	}
	err := s.update(ctx, func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketRooms); b != nil {
			return b.Delete([]byte(jid))
		}
		return nil
	})
	if err != nil {
		return fail(err, "delete room %q", jid)
	}
	return nil
}

// ListRooms implements storage.Rooms.
func (s *Store) ListRooms(ctx context.Context, service string) ([]storage.Room, error) {
	var out []storage.Room
	err := s.view(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRooms)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			if _, d, ok := strings.Cut(string(k), "@"); !ok || d != service {
				return nil
			}
			r, err := decodeRoom(v)
			if err != nil {
				return err
			}
			out = append(out, r)
			return nil
		})
	})
	if err != nil {
		return nil, fail(err, "list rooms of %q", service)
	}
	return out, nil
}
