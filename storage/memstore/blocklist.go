package memstore

import (
	"context"
	"fmt"
	"slices"

	"github.com/treff-im/treff/storage"
)

var _ storage.Blocklists = (*Store)(nil)

// Blocklist implements storage.Blocklists.
func (s *Store) Blocklist(ctx context.Context, user string) ([]string, error) {
	if err := s.rlock(ctx, "blocklist", user); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	list := make([]string, 0, len(s.blocks[user]))
	for j := range s.blocks[user] {
		list = append(list, j)
	}
	slices.Sort(list)
	return list, nil
}

// Block implements storage.Blocklists.
func (s *Store) Block(ctx context.Context, user string, jids []string) error {
	if user == "" || slices.Contains(jids, "") {
		return fmt.Errorf("memstore: block: %w", errEmptyJID)
	}
	if err := s.lock(ctx, "block"); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if len(jids) == 0 {
		return nil
	}
	if s.blocks == nil {
		s.blocks = make(map[string]map[string]bool)
	}
	set := s.blocks[user]
	if set == nil {
		set = make(map[string]bool, len(jids))
		s.blocks[user] = set
	}
	for _, j := range jids {
		set[j] = true
	}
	return nil
}

// Unblock implements storage.Blocklists.
func (s *Store) Unblock(ctx context.Context, user string, jids []string) error {
	if user == "" || slices.Contains(jids, "") {
		return fmt.Errorf("memstore: unblock: %w", errEmptyJID)
	}
	if err := s.lock(ctx, "unblock"); err != nil {
		return err
	}
	defer s.mu.Unlock()
	set := s.blocks[user]
	for _, j := range jids {
		delete(set, j)
	}
	if set != nil && len(set) == 0 {
		delete(s.blocks, user)
	}
	return nil
}

// UnblockAll implements storage.Blocklists.
func (s *Store) UnblockAll(ctx context.Context, user string) error {
	if err := s.lock(ctx, "unblock all", user); err != nil {
		return err
	}
	defer s.mu.Unlock()
	delete(s.blocks, user)
	return nil
}

// IsBlocked implements storage.Blocklists.
func (s *Store) IsBlocked(ctx context.Context, user, jid string) (bool, error) {
	if err := s.rlock(ctx, "is blocked", user, jid); err != nil {
		return false, err
	}
	defer s.mu.RUnlock()
	return s.blocks[user][jid], nil
}
