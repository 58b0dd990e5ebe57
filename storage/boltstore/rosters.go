package boltstore

import (
	"context"
	"strconv"

	bolt "go.etcd.io/bbolt"

	"github.com/treff-im/treff/storage"
)

// Roster implements storage.Rosters. Items come out of bbolt in key order,
// which is the byte order of their JIDs.
func (s *Store) Roster(ctx context.Context, user string) ([]storage.RosterItem, string, error) {
	if user == "" {
		return nil, "", fail(errEmptyJID, "roster")
	}
	items := []storage.RosterItem{}
	ver := emptyRosterVersion
	err := s.view(ctx, func(tx *bolt.Tx) error {
		rb := tx.Bucket(bucketRosters).Bucket([]byte(user))
		if rb == nil {
			return nil
		}
		ver = formatVersion(rb.Sequence())
		c := rb.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			it, err := decodeRosterItem(string(k), v)
			if err != nil {
				return err
			}
			items = append(items, it)
		}
		return nil
	})
	if err != nil {
		return nil, "", fail(err, "roster of %q", user)
	}
	return items, ver, nil
}

// RosterItem implements storage.Rosters.
func (s *Store) RosterItem(ctx context.Context, user, contact string) (storage.RosterItem, error) {
	var it storage.RosterItem
	err := s.view(ctx, func(tx *bolt.Tx) error {
		rb := tx.Bucket(bucketRosters).Bucket([]byte(user))
		if rb == nil {
			return storage.ErrNotFound
		}
		v := rb.Get([]byte(contact))
		if v == nil {
			return storage.ErrNotFound
		}
		var err error
		it, err = decodeRosterItem(contact, v)
		return err
	})
	if err != nil {
		return storage.RosterItem{}, fail(err, "roster item %q of %q", contact, user)
	}
	return it, nil
}

// PutRosterItem implements storage.Rosters.
func (s *Store) PutRosterItem(ctx context.Context, user string, item storage.RosterItem) (string, error) {
	if user == "" || item.JID == "" {
		return "", fail(errEmptyJID, "put roster item %q of %q", item.JID, user)
	}
	v := encodeRosterItem(item)
	var ver uint64
	err := s.update(ctx, func(tx *bolt.Tx) error {
		root := tx.Bucket(bucketRosters)
		rb, err := root.CreateBucketIfNotExists([]byte(user))
		if err != nil {
			return err
		}
		if err := rb.Put([]byte(item.JID), v); err != nil {
			return err
		}
		ver, err = bumpVersion(root, rb)
		return err
	})
	if err != nil {
		return "", fail(err, "put roster item %q of %q", item.JID, user)
	}
	return formatVersion(ver), nil
}

// DeleteRosterItem implements storage.Rosters.
func (s *Store) DeleteRosterItem(ctx context.Context, user, contact string) (string, error) {
	var ver uint64
	err := s.update(ctx, func(tx *bolt.Tx) error {
		root := tx.Bucket(bucketRosters)
		rb := root.Bucket([]byte(user))
		if rb == nil {
			return storage.ErrNotFound
		}
		k := []byte(contact)
		if rb.Get(k) == nil {
			return storage.ErrNotFound
		}
		if err := rb.Delete(k); err != nil {
			return err
		}
		var err error
		ver, err = bumpVersion(root, rb)
		return err
	})
	if err != nil {
		return "", fail(err, "delete roster item %q of %q", contact, user)
	}
	return formatVersion(ver), nil
}

// DeleteRoster implements storage.Rosters.
func (s *Store) DeleteRoster(ctx context.Context, user string) error {
	if user == "" {
		return fail(errEmptyJID, "delete roster")
	}
	err := s.update(ctx, func(tx *bolt.Tx) error {
		root := tx.Bucket(bucketRosters)
		if root.Bucket([]byte(user)) == nil {
			return nil
		}
		return root.DeleteBucket([]byte(user))
	})
	if err != nil {
		return fail(err, "delete roster of %q", user)
	}
	return nil
}

// bumpVersion gives the user's roster bucket rb the next version from the
// store-wide counter in root and returns it.
func bumpVersion(root, rb *bolt.Bucket) (uint64, error) {
	ver, err := root.NextSequence()
	if err != nil {
		return 0, err
	}
	return ver, rb.SetSequence(ver)
}

// formatVersion renders a roster version counter as the opaque version
// string of XEP-0237.
func formatVersion(v uint64) string { return strconv.FormatUint(v, 10) }
