package memstore

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/treff-im/treff/storage"
)

var _ storage.Invites = (*Store)(nil)

// CreateInvite implements storage.Invites.
func (s *Store) CreateInvite(ctx context.Context, inv storage.Invite) error {
	if inv.Token == "" {
		return fmt.Errorf("memstore: create invite: empty token")
	}
	if err := s.lock(ctx, "create invite"); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if s.invites == nil {
		s.invites = make(map[string]storage.Invite)
	}
	if old, ok := s.invites[inv.Token]; ok && old.Expires.After(time.Now()) {
		return fmt.Errorf("memstore: create invite: %w", storage.ErrExists)
	}
	inv.Created, inv.Expires = inv.Created.UTC(), inv.Expires.UTC()
	s.invites[inv.Token] = inv
	return nil
}

// Invite implements storage.Invites.
func (s *Store) Invite(ctx context.Context, token string) (storage.Invite, error) {
	if err := s.rlock(ctx, "invite"); err != nil {
		return storage.Invite{}, err
	}
	defer s.mu.RUnlock()
	inv, ok := s.invites[token]
	if !ok || !inv.Expires.After(time.Now()) {
		return storage.Invite{}, fmt.Errorf("memstore: invite: %w", storage.ErrNotFound)
	}
	return inv, nil
}

// UseInvite implements storage.Invites.
func (s *Store) UseInvite(ctx context.Context, token string) (storage.Invite, error) {
	if err := s.lock(ctx, "use invite"); err != nil {
		return storage.Invite{}, err
	}
	defer s.mu.Unlock()
	inv, ok := s.invites[token]
	delete(s.invites, token)
	if !ok || !inv.Expires.After(time.Now()) {
		return storage.Invite{}, fmt.Errorf("memstore: use invite: %w", storage.ErrNotFound)
	}
	return inv, nil
}

// ListInvites implements storage.Invites.
func (s *Store) ListInvites(ctx context.Context) ([]storage.Invite, error) {
	if err := s.rlock(ctx, "list invites"); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	now := time.Now()
	var out []storage.Invite
	for _, inv := range s.invites {
		if inv.Expires.After(now) {
			out = append(out, inv)
		}
	}
	slices.SortFunc(out, func(a, b storage.Invite) int { return a.Created.Compare(b.Created) })
	return out, nil
}

// DeleteInvite implements storage.Invites.
func (s *Store) DeleteInvite(ctx context.Context, token string) error {
	if err := s.lock(ctx, "delete invite"); err != nil {
		return err
	}
	defer s.mu.Unlock()
	delete(s.invites, token)
	return nil
}
