package memstore

import (
	"context"
	"fmt"
	"slices"
	"sort"

	"github.com/treff-im/treff/storage"
)

var (
	_ storage.PEP              = (*Store)(nil)
	_ storage.PEPSubscriptions = (*Store)(nil)
)

// pepNode is one stored PEP node; items are oldest first.
type pepNode struct {
	cfg   storage.PEPNodeConfig
	items []storage.PEPItem
	subs  map[string]bool // subscribed JIDs
}

func copyPEPConfig(c storage.PEPNodeConfig) storage.PEPNodeConfig {
	c.Whitelist = slices.Clone(c.Whitelist)
	c.RosterGroups = slices.Clone(c.RosterGroups)
	c.Owners = slices.Clone(c.Owners)
	c.Publishers = slices.Clone(c.Publishers)
	c.Outcasts = slices.Clone(c.Outcasts)
	return c
}

func copyPEPItem(it storage.PEPItem) storage.PEPItem {
	it.Payload = slices.Clone(it.Payload)
	return it
}

// pepNodeLocked returns the node or an ErrNotFound error; s.mu is held.
func (s *Store) pepNodeLocked(op, owner, node string) (*pepNode, error) {
	n := s.pep[owner][node]
	if n == nil {
		return nil, fmt.Errorf("memstore: %s %q of %q: %w", op, node, owner, storage.ErrNotFound)
	}
	return n, nil
}

// CreatePEPNode implements storage.PEP.
func (s *Store) CreatePEPNode(ctx context.Context, owner, node string, cfg storage.PEPNodeConfig) error {
	if owner == "" {
		return fmt.Errorf("memstore: create PEP node: %w", errEmptyJID)
	}
	if err := s.lock(ctx, "create PEP node"); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if s.pep == nil {
		s.pep = make(map[string]map[string]*pepNode)
	}
	nodes := s.pep[owner]
	if nodes == nil {
		nodes = make(map[string]*pepNode)
		s.pep[owner] = nodes
	}
	if _, ok := nodes[node]; ok {
		return fmt.Errorf("memstore: create PEP node %q of %q: %w", node, owner, storage.ErrExists)
	}
	nodes[node] = &pepNode{cfg: copyPEPConfig(cfg)}
	return nil
}

// PEPNodeConfig implements storage.PEP.
func (s *Store) PEPNodeConfig(ctx context.Context, owner, node string) (storage.PEPNodeConfig, error) {
	if err := s.rlock(ctx, "PEP node config"); err != nil {
		return storage.PEPNodeConfig{}, err
	}
	defer s.mu.RUnlock()
	n, err := s.pepNodeLocked("PEP node config", owner, node)
	if err != nil {
		return storage.PEPNodeConfig{}, err
	}
	return copyPEPConfig(n.cfg), nil
}

// SetPEPNodeConfig implements storage.PEP.
func (s *Store) SetPEPNodeConfig(ctx context.Context, owner, node string, cfg storage.PEPNodeConfig) error {
	if err := s.lock(ctx, "set PEP node config"); err != nil {
		return err
	}
	defer s.mu.Unlock()
	n, err := s.pepNodeLocked("set PEP node config", owner, node)
	if err != nil {
		return err
	}
	n.cfg = copyPEPConfig(cfg)
	return nil
}

// DeletePEPNode implements storage.PEP.
func (s *Store) DeletePEPNode(ctx context.Context, owner, node string) error {
	if err := s.lock(ctx, "delete PEP node"); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if _, err := s.pepNodeLocked("delete PEP node", owner, node); err != nil {
		return err
	}
	delete(s.pep[owner], node)
	if len(s.pep[owner]) == 0 {
		delete(s.pep, owner)
	}
	return nil
}

// PEPNodes implements storage.PEP.
func (s *Store) PEPNodes(ctx context.Context, owner string) ([]string, error) {
	if err := s.rlock(ctx, "PEP nodes", owner); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	var out []string
	for name := range s.pep[owner] {
		out = append(out, name)
	}
	sort.Strings(out)
	return out, nil
}

// PublishPEPItem implements storage.PEP.
func (s *Store) PublishPEPItem(ctx context.Context, owner, node string, it storage.PEPItem, max int) error {
	if err := s.lock(ctx, "publish PEP item"); err != nil {
		return err
	}
	defer s.mu.Unlock()
	n, err := s.pepNodeLocked("publish PEP item", owner, node)
	if err != nil {
		return err
	}
	n.items = slices.DeleteFunc(n.items, func(o storage.PEPItem) bool { return o.ID == it.ID })
	n.items = append(n.items, copyPEPItem(it))
	if max > 0 && len(n.items) > max {
		n.items = slices.Delete(n.items, 0, len(n.items)-max)
	}
	return nil
}

// PEPItems implements storage.PEP.
func (s *Store) PEPItems(ctx context.Context, owner, node string, ids []string, last int) ([]storage.PEPItem, error) {
	if err := s.rlock(ctx, "PEP items"); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	n, err := s.pepNodeLocked("PEP items", owner, node)
	if err != nil {
		return nil, err
	}
	items := n.items
	switch {
	case len(ids) > 0:
		var out []storage.PEPItem
		for _, it := range items {
			if slices.Contains(ids, it.ID) {
				out = append(out, copyPEPItem(it))
			}
		}
		return out, nil
	case last > 0 && last < len(items):
		items = items[len(items)-last:]
	}
	out := make([]storage.PEPItem, 0, len(items))
	for _, it := range items {
		out = append(out, copyPEPItem(it))
	}
	return out, nil
}

// RetractPEPItem implements storage.PEP.
func (s *Store) RetractPEPItem(ctx context.Context, owner, node, id string) error {
	if err := s.lock(ctx, "retract PEP item"); err != nil {
		return err
	}
	defer s.mu.Unlock()
	n, err := s.pepNodeLocked("retract PEP item", owner, node)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(n.items, func(o storage.PEPItem) bool { return o.ID == id })
	if i < 0 {
		return fmt.Errorf("memstore: retract PEP item %q from %q of %q: %w", id, node, owner, storage.ErrNotFound)
	}
	n.items = slices.Delete(n.items, i, i+1)
	return nil
}

// PurgePEPNode implements storage.PEP.
func (s *Store) PurgePEPNode(ctx context.Context, owner, node string) error {
	if err := s.lock(ctx, "purge PEP node"); err != nil {
		return err
	}
	defer s.mu.Unlock()
	n, err := s.pepNodeLocked("purge PEP node", owner, node)
	if err != nil {
		return err
	}
	n.items = nil
	return nil
}

// DeletePEPOwner implements storage.PEP.
func (s *Store) DeletePEPOwner(ctx context.Context, owner string) error {
	if err := s.lock(ctx, "delete PEP owner", owner); err != nil {
		return err
	}
	defer s.mu.Unlock()
	delete(s.pep, owner)
	return nil
}

// SubscribePEPNode implements storage.PEPSubscriptions.
func (s *Store) SubscribePEPNode(ctx context.Context, owner, node, jid string) error {
	if err := s.lock(ctx, "subscribe to PEP node", jid); err != nil {
		return err
	}
	defer s.mu.Unlock()
	n, err := s.pepNodeLocked("subscribe to PEP node", owner, node)
	if err != nil {
		return err
	}
	if n.subs == nil {
		n.subs = make(map[string]bool)
	}
	n.subs[jid] = true
	return nil
}

// UnsubscribePEPNode implements storage.PEPSubscriptions.
func (s *Store) UnsubscribePEPNode(ctx context.Context, owner, node, jid string) error {
	if err := s.lock(ctx, "unsubscribe from PEP node"); err != nil {
		return err
	}
	defer s.mu.Unlock()
	n, err := s.pepNodeLocked("unsubscribe from PEP node", owner, node)
	if err != nil {
		return err
	}
	if !n.subs[jid] {
		return fmt.Errorf("memstore: unsubscribe %q from %q of %q: %w", jid, node, owner, storage.ErrNotFound)
	}
	delete(n.subs, jid)
	return nil
}

// PEPSubscribers implements storage.PEPSubscriptions.
func (s *Store) PEPSubscribers(ctx context.Context, owner, node string) ([]string, error) {
	if err := s.rlock(ctx, "PEP subscribers"); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	n, err := s.pepNodeLocked("PEP subscribers", owner, node)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(n.subs))
	for j := range n.subs {
		out = append(out, j)
	}
	sort.Strings(out)
	return out, nil
}

// PEPSubscriptionsOf implements storage.PEPSubscriptions.
func (s *Store) PEPSubscriptionsOf(ctx context.Context, owner, jid string) ([]string, error) {
	if err := s.rlock(ctx, "PEP subscriptions", owner, jid); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	var out []string
	for name, n := range s.pep[owner] {
		if n.subs[jid] {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out, nil
}
