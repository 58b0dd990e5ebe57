package boltstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/treff-im/treff/storage"
)

var (
	_ storage.PEP              = (*Store)(nil)
	_ storage.PEPSubscriptions = (*Store)(nil)
)

// PEP layout. The top-level bucket "pep" holds one bucket per owner (named
// by bare JID), which holds one bucket per node (named by node name). A
// node bucket holds:
//
//   - key "config": the encoded node configuration;
//   - bucket "items": key = publication sequence number (big-endian
//     uint64, so that key order is publication order), value = format
//     byte 1, the item ID as a uvarint-length-prefixed string, then the
//     payload. Its bucket sequence is the number of items.
//   - bucket "ids": key = item ID, value = its sequence number key.
//   - bucket "subs" (made on the first subscription): key = subscribed
//     JID, empty value.
//
// The node bucket's own sequence is the last sequence number handed out.
// Owner buckets left without nodes are removed.
var (
	bucketPEP   = []byte("pep")
	keyPEPCfg   = []byte("config")
	bucketItems = []byte("items")
	bucketIDs   = []byte("ids")
	bucketSubs  = []byte("subs")
)

// Node configuration formats: version 2 adds the publish model and the
// owner, publisher and outcast lists after version 1's fields; a
// configuration without them is still written as version 1.
const (
	pepConfigV1 = 1
	pepConfigV2 = 2
	pepItemV1   = 1
)

// PEP configuration flag bits.
const (
	pepPersist = 1 << iota
	pepNotifyRetract
	pepNotifyDelete
)

func encodePEPConfig(c storage.PEPNodeConfig) []byte {
	v2 := c.PublishModel != "" || len(c.Owners) > 0 || len(c.Publishers) > 0 || len(c.Outcasts) > 0
	b := []byte{pepConfigV1}
	if v2 {
		b[0] = pepConfigV2
	}
	b = appendString(b, c.AccessModel)
	var flags byte
	if c.PersistItems {
		flags |= pepPersist
	}
	if c.NotifyRetract {
		flags |= pepNotifyRetract
	}
	if c.NotifyDelete {
		flags |= pepNotifyDelete
	}
	b = append(b, flags)
	b = binary.AppendVarint(b, int64(c.MaxItems))
	b = appendString(b, c.Title)
	for _, list := range [][]string{c.Whitelist, c.RosterGroups} {
		b = binary.AppendUvarint(b, uint64(len(list)))
		for _, s := range list {
			b = appendString(b, s)
		}
	}
	if v2 {
		b = appendString(b, c.PublishModel)
		for _, list := range [][]string{c.Owners, c.Publishers, c.Outcasts} {
			b = binary.AppendUvarint(b, uint64(len(list)))
			for _, s := range list {
				b = appendString(b, s)
			}
		}
	}
	return b
}

func decodePEPConfig(v []byte) (storage.PEPNodeConfig, error) {
	d := decoder{b: v}
	var c storage.PEPNodeConfig
	f := d.byte()
	if f != pepConfigV1 && f != pepConfigV2 && d.err == nil {
		return c, fmt.Errorf("PEP node config: unknown record format %d: %w", f, errCorrupt)
	}
	c.AccessModel = d.string()
	flags := d.byte()
	if flags&^(pepPersist|pepNotifyRetract|pepNotifyDelete) != 0 {
		d.fail()
	}
	c.PersistItems = flags&pepPersist != 0
	c.NotifyRetract = flags&pepNotifyRetract != 0
	c.NotifyDelete = flags&pepNotifyDelete != 0
	c.MaxItems = int(d.varint())
	c.Title = d.string()
	lists := []*[]string{&c.Whitelist, &c.RosterGroups}
	if f == pepConfigV2 {
		lists = append(lists, &c.Owners, &c.Publishers, &c.Outcasts)
	}
	for i, list := range lists {
		if i == 2 {
			c.PublishModel = d.string()
		}
		if n := d.count(); n > 0 {
			*list = make([]string, n)
			for i := range *list {
				(*list)[i] = d.string()
			}
		}
	}
	if err := d.finish(); err != nil {
		return storage.PEPNodeConfig{}, fmt.Errorf("PEP node config: %w", err)
	}
	return c, nil
}

func encodePEPItem(it storage.PEPItem) []byte {
	b := make([]byte, 0, 1+binary.MaxVarintLen64+len(it.ID)+len(it.Payload))
	b = append(b, pepItemV1)
	b = appendString(b, it.ID)
	return append(b, it.Payload...)
}

func decodePEPItem(v []byte) (storage.PEPItem, error) {
	d := decoder{b: v}
	if f := d.byte(); f != pepItemV1 && d.err == nil {
		return storage.PEPItem{}, fmt.Errorf("PEP item: unknown record format %d: %w", f, errCorrupt)
	}
	it := storage.PEPItem{ID: d.string()}
	if d.err != nil {
		return storage.PEPItem{}, fmt.Errorf("PEP item: %w", d.err)
	}
	if len(d.b) > 0 {
		it.Payload = append([]byte(nil), d.b...)
	}
	return it, nil
}

// pepNodeBucket returns the node's bucket, or nil.
func pepNodeBucket(tx *bolt.Tx, owner, node string) *bolt.Bucket {
	root := tx.Bucket(bucketPEP)
	if root == nil {
		return nil
	}
	ob := root.Bucket([]byte(owner))
	if ob == nil {
		return nil
	}
	return ob.Bucket(pepNodeKey(node))
}

// pepNodeKey is the bucket name of a node: bbolt refuses empty keys, so
// every name gets a one-byte prefix.
func pepNodeKey(node string) []byte { return append([]byte{'n'}, node...) }

// pepNode returns the node's bucket or storage.ErrNotFound.
func pepNode(tx *bolt.Tx, owner, node string) (*bolt.Bucket, error) {
	if b := pepNodeBucket(tx, owner, node); b != nil {
		return b, nil
	}
	return nil, storage.ErrNotFound
}

// CreatePEPNode implements storage.PEP.
func (s *Store) CreatePEPNode(ctx context.Context, owner, node string, cfg storage.PEPNodeConfig) error {
	if owner == "" {
		return fail(errEmptyJID, "create PEP node")
	}
	err := s.update(ctx, func(tx *bolt.Tx) error {
		root, err := tx.CreateBucketIfNotExists(bucketPEP)
		if err != nil {
			return err
		}
		ob, err := root.CreateBucketIfNotExists([]byte(owner))
		if err != nil {
			return err
		}
		nb, err := ob.CreateBucket(pepNodeKey(node))
		if errors.Is(err, bolterrors.ErrBucketExists) {
			return storage.ErrExists
		}
		if err != nil {
			return err
		}
		if _, err := nb.CreateBucket(bucketItems); err != nil {
			return err
		}
		if _, err := nb.CreateBucket(bucketIDs); err != nil {
			return err
		}
		return nb.Put(keyPEPCfg, encodePEPConfig(cfg))
	})
	if err != nil {
		return fail(err, "create PEP node %q of %q", node, owner)
	}
	return nil
}

// PEPNodeConfig implements storage.PEP.
func (s *Store) PEPNodeConfig(ctx context.Context, owner, node string) (storage.PEPNodeConfig, error) {
	var c storage.PEPNodeConfig
	err := s.view(ctx, func(tx *bolt.Tx) error {
		nb, err := pepNode(tx, owner, node)
		if err != nil {
			return err
		}
		c, err = decodePEPConfig(nb.Get(keyPEPCfg))
		return err
	})
	if err != nil {
		return storage.PEPNodeConfig{}, fail(err, "PEP node config %q of %q", node, owner)
	}
	return c, nil
}

// SetPEPNodeConfig implements storage.PEP.
func (s *Store) SetPEPNodeConfig(ctx context.Context, owner, node string, cfg storage.PEPNodeConfig) error {
	err := s.update(ctx, func(tx *bolt.Tx) error {
		nb, err := pepNode(tx, owner, node)
		if err != nil {
			return err
		}
		return nb.Put(keyPEPCfg, encodePEPConfig(cfg))
	})
	if err != nil {
		return fail(err, "set PEP node config %q of %q", node, owner)
	}
	return nil
}

// DeletePEPNode implements storage.PEP.
func (s *Store) DeletePEPNode(ctx context.Context, owner, node string) error {
	err := s.update(ctx, func(tx *bolt.Tx) error {
		if _, err := pepNode(tx, owner, node); err != nil {
			return err
		}
		root := tx.Bucket(bucketPEP)
		ob := root.Bucket([]byte(owner))
		if err := ob.DeleteBucket(pepNodeKey(node)); err != nil {
			return err
		}
		if k, _ := ob.Cursor().First(); k == nil {
			return root.DeleteBucket([]byte(owner))
		}
		return nil
	})
	if err != nil {
		return fail(err, "delete PEP node %q of %q", node, owner)
	}
	return nil
}

// PEPNodes implements storage.PEP.
func (s *Store) PEPNodes(ctx context.Context, owner string) ([]string, error) {
	if owner == "" {
		return nil, fail(errEmptyJID, "PEP nodes")
	}
	var out []string
	err := s.view(ctx, func(tx *bolt.Tx) error {
		root := tx.Bucket(bucketPEP)
		if root == nil {
			return nil
		}
		ob := root.Bucket([]byte(owner))
		if ob == nil {
			return nil
		}
		// Keys are the names with a one-byte prefix, so key order is
		// name order.
		return ob.ForEachBucket(func(k []byte) error {
			out = append(out, string(k[1:]))
			return nil
		})
	})
	if err != nil {
		return nil, fail(err, "PEP nodes of %q", owner)
	}
	return out, nil
}

// PublishPEPItem implements storage.PEP.
func (s *Store) PublishPEPItem(ctx context.Context, owner, node string, it storage.PEPItem, max int) error {
	v := encodePEPItem(it)
	err := s.update(ctx, func(tx *bolt.Tx) error {
		nb, err := pepNode(tx, owner, node)
		if err != nil {
			return err
		}
		items, ids := nb.Bucket(bucketItems), nb.Bucket(bucketIDs)
		count := items.Sequence()
		if old := ids.Get([]byte(it.ID)); old != nil {
			if err := items.Delete(old); err != nil {
				return err
			}
			count--
		}
		seq, err := nb.NextSequence()
		if err != nil {
			return err
		}
		key := binary.BigEndian.AppendUint64(nil, seq)
		if err := items.Put(key, v); err != nil {
			return err
		}
		if err := ids.Put([]byte(it.ID), key); err != nil {
			return err
		}
		count++
		if max > 0 {
			c := items.Cursor()
			// Every step removes one item, so this ends after at most
			// count-max steps.
			for k, v := c.First(); k != nil && count > uint64(max); k, v = c.First() {
				old, err := decodePEPItem(v)
				if err != nil {
					return err
				}
				if err := ids.Delete([]byte(old.ID)); err != nil {
					return err
				}
				if err := c.Delete(); err != nil {
					return err
				}
				count--
			}
		}
		return items.SetSequence(count)
	})
	if err != nil {
		return fail(err, "publish PEP item on %q of %q", node, owner)
	}
	return nil
}

// PEPItems implements storage.PEP.
func (s *Store) PEPItems(ctx context.Context, owner, node string, ids []string, last int) ([]storage.PEPItem, error) {
	var out []storage.PEPItem
	err := s.view(ctx, func(tx *bolt.Tx) error {
		nb, err := pepNode(tx, owner, node)
		if err != nil {
			return err
		}
		items := nb.Bucket(bucketItems)
		if len(ids) > 0 {
			byID := nb.Bucket(bucketIDs)
			var keys [][]byte
			for _, id := range ids {
				if k := byID.Get([]byte(id)); k != nil {
					keys = append(keys, k)
				}
			}
			// Publication order, without duplicates.
			c := items.Cursor()
			for k, v := c.First(); k != nil; k, v = c.Next() {
				for _, want := range keys {
					if string(k) == string(want) {
						it, err := decodePEPItem(v)
						if err != nil {
							return err
						}
						out = append(out, it)
						break
					}
				}
			}
			return nil
		}
		c := items.Cursor()
		if last > 0 {
			// Walk back from the newest, then reverse.
			for k, v := c.Last(); k != nil && len(out) < last; k, v = c.Prev() {
				it, err := decodePEPItem(v)
				if err != nil {
					return err
				}
				out = append(out, it)
			}
			for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
				out[i], out[j] = out[j], out[i]
			}
			return nil
		}
		for k, v := c.First(); k != nil; k, v = c.Next() {
			it, err := decodePEPItem(v)
			if err != nil {
				return err
			}
			out = append(out, it)
		}
		return nil
	})
	if err != nil {
		return nil, fail(err, "PEP items of %q of %q", node, owner)
	}
	return out, nil
}

// RetractPEPItem implements storage.PEP.
func (s *Store) RetractPEPItem(ctx context.Context, owner, node, id string) error {
	err := s.update(ctx, func(tx *bolt.Tx) error {
		nb, err := pepNode(tx, owner, node)
		if err != nil {
			return err
		}
		items, ids := nb.Bucket(bucketItems), nb.Bucket(bucketIDs)
		key := ids.Get([]byte(id))
		if key == nil {
			return storage.ErrNotFound
		}
		if err := items.Delete(key); err != nil {
			return err
		}
		if err := ids.Delete([]byte(id)); err != nil {
			return err
		}
		return items.SetSequence(items.Sequence() - 1)
	})
	if err != nil {
		return fail(err, "retract PEP item %q from %q of %q", id, node, owner)
	}
	return nil
}

// PurgePEPNode implements storage.PEP.
func (s *Store) PurgePEPNode(ctx context.Context, owner, node string) error {
	err := s.update(ctx, func(tx *bolt.Tx) error {
		nb, err := pepNode(tx, owner, node)
		if err != nil {
			return err
		}
		for _, name := range [][]byte{bucketItems, bucketIDs} {
			if err := nb.DeleteBucket(name); err != nil {
				return err
			}
			if _, err := nb.CreateBucket(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fail(err, "purge PEP node %q of %q", node, owner)
	}
	return nil
}

// DeletePEPOwner implements storage.PEP.
func (s *Store) DeletePEPOwner(ctx context.Context, owner string) error {
	if owner == "" {
		return fail(errEmptyJID, "delete PEP nodes")
	}
	err := s.update(ctx, func(tx *bolt.Tx) error {
		root := tx.Bucket(bucketPEP)
		if root == nil || root.Bucket([]byte(owner)) == nil {
			return nil
		}
		return root.DeleteBucket([]byte(owner))
	})
	if err != nil {
		return fail(err, "delete PEP nodes of %q", owner)
	}
	return nil
}

// SubscribePEPNode implements storage.PEPSubscriptions.
func (s *Store) SubscribePEPNode(ctx context.Context, owner, node, jid string) error {
	if jid == "" {
		return fail(errEmptyJID, "subscribe to PEP node")
	}
	err := s.update(ctx, func(tx *bolt.Tx) error {
		nb, err := pepNode(tx, owner, node)
		if err != nil {
			return err
		}
		sb, err := nb.CreateBucketIfNotExists(bucketSubs)
		if err != nil {
			return err
		}
		return sb.Put([]byte(jid), nil)
	})
	if err != nil {
		return fail(err, "subscribe %q to %q of %q", jid, node, owner)
	}
	return nil
}

// UnsubscribePEPNode implements storage.PEPSubscriptions.
func (s *Store) UnsubscribePEPNode(ctx context.Context, owner, node, jid string) error {
	err := s.update(ctx, func(tx *bolt.Tx) error {
		nb, err := pepNode(tx, owner, node)
		if err != nil {
			return err
		}
		sb := nb.Bucket(bucketSubs)
		if jid == "" || sb == nil || sb.Get([]byte(jid)) == nil {
			return storage.ErrNotFound
		}
		return sb.Delete([]byte(jid))
	})
	if err != nil {
		return fail(err, "unsubscribe %q from %q of %q", jid, node, owner)
	}
	return nil
}

// PEPSubscribers implements storage.PEPSubscriptions.
func (s *Store) PEPSubscribers(ctx context.Context, owner, node string) ([]string, error) {
	out := []string{}
	err := s.view(ctx, func(tx *bolt.Tx) error {
		nb, err := pepNode(tx, owner, node)
		if err != nil {
			return err
		}
		sb := nb.Bucket(bucketSubs)
		if sb == nil {
			return nil
		}
		return sb.ForEach(func(k, _ []byte) error {
			out = append(out, string(k))
			return nil
		})
	})
	if err != nil {
		return nil, fail(err, "PEP subscribers of %q of %q", node, owner)
	}
	return out, nil
}

// PEPSubscriptionsOf implements storage.PEPSubscriptions. It visits every
// node of the owner.
func (s *Store) PEPSubscriptionsOf(ctx context.Context, owner, jid string) ([]string, error) {
	if owner == "" || jid == "" {
		return nil, fail(errEmptyJID, "PEP subscriptions")
	}
	var out []string
	err := s.view(ctx, func(tx *bolt.Tx) error {
		root := tx.Bucket(bucketPEP)
		if root == nil {
			return nil
		}
		ob := root.Bucket([]byte(owner))
		if ob == nil {
			return nil
		}
		return ob.ForEachBucket(func(k []byte) error {
			if sb := ob.Bucket(k).Bucket(bucketSubs); sb != nil && sb.Get([]byte(jid)) != nil {
				out = append(out, string(k[1:]))
			}
			return nil
		})
	})
	if err != nil {
		return nil, fail(err, "PEP subscriptions of %q on %q", jid, owner)
	}
	return out, nil
}
