package memstore

import (
	"context"
	"fmt"
	"time"

	"github.com/treff-im/treff/storage"
)

var _ storage.HeldNames = (*Store)(nil)

// HoldName implements storage.HeldNames.
func (s *Store) HoldName(ctx context.Context, jid string, until time.Time) error {
	if jid == "" {
		return fmt.Errorf("memstore: hold name: %w", errEmptyJID)
	}
	if err := s.lock(ctx, "hold name"); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if s.held == nil {
		s.held = make(map[string]time.Time)
	}
	now := time.Now()
	for k, t := range s.held {
		if !t.After(now) {
			delete(s.held, k)
		}
	}
	s.held[jid] = until.UTC()
	return nil
}

// NameHeldUntil implements storage.HeldNames.
func (s *Store) NameHeldUntil(ctx context.Context, jid string) (time.Time, error) {
	if err := s.rlock(ctx, "name held", jid); err != nil {
		return time.Time{}, err
	}
	defer s.mu.RUnlock()
	t, ok := s.held[jid]
	if !ok || !t.After(time.Now()) {
		return time.Time{}, nil
	}
	return t, nil
}
