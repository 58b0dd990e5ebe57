package memstore

import (
	"context"
	"fmt"
	"time"

	"github.com/treff-im/treff/storage"
)

var _ storage.LastActivity = (*Store)(nil)

type lastSeen struct {
	t      time.Time
	status string
}

// SetLastActivity implements storage.LastActivity.
func (s *Store) SetLastActivity(ctx context.Context, user string, t time.Time, status string) error {
	if user == "" {
		return fmt.Errorf("memstore: set last activity: %w", errEmptyJID)
	}
	if err := s.lock(ctx, "set last activity"); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if s.last == nil {
		s.last = make(map[string]lastSeen)
	}
	s.last[user] = lastSeen{t.UTC(), status}
	return nil
}

// LastActivity implements storage.LastActivity.
func (s *Store) LastActivity(ctx context.Context, user string) (time.Time, string, error) {
	if err := s.rlock(ctx, "last activity"); err != nil {
		return time.Time{}, "", err
	}
	defer s.mu.RUnlock()
	l, ok := s.last[user]
	if !ok {
		return time.Time{}, "", fmt.Errorf("memstore: last activity of %q: %w", user, storage.ErrNotFound)
	}
	return l.t, l.status, nil
}

// DeleteLastActivity implements storage.LastActivity.
func (s *Store) DeleteLastActivity(ctx context.Context, user string) error {
	if err := s.lock(ctx, "delete last activity", user); err != nil {
		return err
	}
	defer s.mu.Unlock()
	delete(s.last, user)
	return nil
}
