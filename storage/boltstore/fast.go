package boltstore

import (
	"context"
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/treff-im/treff/storage"
)

var _ storage.FastTokens = (*Store)(nil)

// bucketFast holds one nested bucket per user, named by bare JID, with
// key = user agent id, value = the encoded device (encodeFastDevice).
// Empty user buckets are removed.
var bucketFast = []byte("fast")

const fastDeviceV1 = 1

// encodeFastDevice encodes d without its agent id: format byte, software,
// device, last use, then the current and the next token (ID, mechanism,
// issued, expires, min count).
func encodeFastDevice(d storage.FastDevice) []byte {
	b := make([]byte, 0, 64+len(d.Software)+len(d.Device))
	b = append(b, fastDeviceV1)
	b = appendString(b, d.Software)
	b = appendString(b, d.Device)
	b = appendTime(b, d.LastUsed)
	for _, t := range []storage.FastToken{d.Current, d.Next} {
		b = appendBytes(b, t.ID)
		b = appendString(b, t.Mechanism)
		b = appendTime(b, t.Issued)
		b = appendTime(b, t.Expires)
		b = binary.AppendUvarint(b, t.MinCount)
	}
	return b
}

func decodeFastDevice(agent string, v []byte) (storage.FastDevice, error) {
	d := decoder{b: v}
	if f := d.byte(); f != fastDeviceV1 && d.err == nil {
		return storage.FastDevice{}, fmt.Errorf("fast device %q: unknown record format %d: %w", agent, f, errCorrupt)
	}
	dev := storage.FastDevice{Agent: agent}
	dev.Software = d.string()
	dev.Device = d.string()
	dev.LastUsed = d.time()
	for _, t := range []*storage.FastToken{&dev.Current, &dev.Next} {
		t.ID = d.bytes()
		t.Mechanism = d.string()
		t.Issued = d.time()
		t.Expires = d.time()
		t.MinCount = d.uvarint()
	}
	if err := d.finish(); err != nil {
		return storage.FastDevice{}, fmt.Errorf("fast device %q: %w", agent, err)
	}
	return dev, nil
}

// FastDevice implements storage.FastTokens.
func (s *Store) FastDevice(ctx context.Context, user, agent string) (storage.FastDevice, error) {
	if err := s.check(ctx); err != nil {
		return storage.FastDevice{}, fail(err, "fast device")
	}
	if user == "" || agent == "" {
		return storage.FastDevice{}, fail(errEmptyJID, "fast device")
	}
	var dev storage.FastDevice
	err := s.view(ctx, func(tx *bolt.Tx) error {
		var v []byte
		if b := tx.Bucket(bucketFast); b != nil {
			if ub := b.Bucket([]byte(user)); ub != nil {
				v = ub.Get([]byte(agent))
			}
		}
		if v == nil {
			return storage.ErrNotFound
		}
		var err error
		dev, err = decodeFastDevice(agent, v)
		return err
	})
	if err != nil {
		return storage.FastDevice{}, fail(err, "fast device %q of %q", agent, user)
	}
	return dev, nil
}

// PutFastDevice implements storage.FastTokens.
func (s *Store) PutFastDevice(ctx context.Context, user string, d storage.FastDevice) error {
	if err := s.check(ctx); err != nil {
		return fail(err, "put fast device")
	}
	if user == "" || d.Agent == "" {
		return fail(errEmptyJID, "put fast device")
	}
	v := encodeFastDevice(d)
	// Every token login updates its device (the replay counter):
	// overlapping ones share a commit (write); the function only puts, so
	// Batch may run it twice.
	err := s.write(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketFast)
		if err != nil {
			return err
		}
		ub, err := b.CreateBucketIfNotExists([]byte(user))
		if err != nil {
			return err
		}
		return ub.Put([]byte(d.Agent), v)
	})
	if err != nil {
		return fail(err, "put fast device %q of %q", d.Agent, user)
	}
	return nil
}

// DeleteFastDevice implements storage.FastTokens.
func (s *Store) DeleteFastDevice(ctx context.Context, user, agent string) error {
	if err := s.check(ctx); err != nil {
		return fail(err, "delete fast device")
	}
	if user == "" || agent == "" {
		return fail(errEmptyJID, "delete fast device")
	}
	err := s.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketFast)
		if b == nil {
			return nil
		}
		ub := b.Bucket([]byte(user))
		if ub == nil {
			return nil
		}
		if err := ub.Delete([]byte(agent)); err != nil {
			return err
		}
		if k, _ := ub.Cursor().First(); k == nil {
			return b.DeleteBucket([]byte(user))
		}
		return nil
	})
	if err != nil {
		return fail(err, "delete fast device %q of %q", agent, user)
	}
	return nil
}

// FastDevices implements storage.FastTokens.
func (s *Store) FastDevices(ctx context.Context, user string) ([]storage.FastDevice, error) {
	if err := s.check(ctx); err != nil {
		return nil, fail(err, "fast devices")
	}
	if user == "" {
		return nil, fail(errEmptyJID, "fast devices")
	}
	out := []storage.FastDevice{}
	err := s.view(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketFast)
		if b == nil {
			return nil
		}
		ub := b.Bucket([]byte(user))
		if ub == nil {
			return nil
		}
		return ub.ForEach(func(k, v []byte) error {
			d, err := decodeFastDevice(string(k), v)
			if err != nil {
				return err
			}
			out = append(out, d)
			return nil
		})
	})
	if err != nil {
		return nil, fail(err, "fast devices of %q", user)
	}
	return out, nil
}

// DeleteFastDevices implements storage.FastTokens.
func (s *Store) DeleteFastDevices(ctx context.Context, user string) error {
	if err := s.check(ctx); err != nil {
		return fail(err, "delete fast devices")
	}
	if user == "" {
		return fail(errEmptyJID, "delete fast devices")
	}
	err := s.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketFast)
		if b == nil || b.Bucket([]byte(user)) == nil {
			return nil
		}
		return b.DeleteBucket([]byte(user))
	})
	if err != nil {
		return fail(err, "delete fast devices of %q", user)
	}
	return nil
}
