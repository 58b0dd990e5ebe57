package memstore

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/treff-im/treff/storage"
)

var _ storage.FastTokens = (*Store)(nil)

// utcDevice returns a copy of d with its times in UTC.
func utcDevice(d storage.FastDevice) storage.FastDevice {
	d = d.Clone()
	d.LastUsed = d.LastUsed.UTC()
	for _, t := range []*storage.FastToken{&d.Current, &d.Next} {
		t.Issued, t.Expires = t.Issued.UTC(), t.Expires.UTC()
	}
	return d
}

// FastDevice implements storage.FastTokens.
func (s *Store) FastDevice(ctx context.Context, user, agent string) (storage.FastDevice, error) {
	if err := s.rlock(ctx, "fast device", user, agent); err != nil {
		return storage.FastDevice{}, err
	}
	defer s.mu.RUnlock()
	d, ok := s.fast[user][agent]
	if !ok {
		return storage.FastDevice{}, fmt.Errorf("memstore: fast device %q of %q: %w", agent, user, storage.ErrNotFound)
	}
	return d.Clone(), nil
}

// PutFastDevice implements storage.FastTokens.
func (s *Store) PutFastDevice(ctx context.Context, user string, d storage.FastDevice) error {
	if err := s.lock(ctx, "put fast device", user, d.Agent); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if s.fast == nil {
		s.fast = make(map[string]map[string]storage.FastDevice)
	}
	ds := s.fast[user]
	if ds == nil {
		ds = make(map[string]storage.FastDevice)
		s.fast[user] = ds
	}
	ds[d.Agent] = utcDevice(d)
	return nil
}

// DeleteFastDevice implements storage.FastTokens.
func (s *Store) DeleteFastDevice(ctx context.Context, user, agent string) error {
	if err := s.lock(ctx, "delete fast device", user, agent); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if ds := s.fast[user]; ds != nil {
		delete(ds, agent)
		if len(ds) == 0 {
			delete(s.fast, user)
		}
	}
	return nil
}

// FastDevices implements storage.FastTokens.
func (s *Store) FastDevices(ctx context.Context, user string) ([]storage.FastDevice, error) {
	if err := s.rlock(ctx, "fast devices", user); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	out := make([]storage.FastDevice, 0, len(s.fast[user]))
	for _, d := range s.fast[user] {
		out = append(out, d.Clone())
	}
	slices.SortFunc(out, func(a, b storage.FastDevice) int { return strings.Compare(a.Agent, b.Agent) })
	return out, nil
}

// DeleteFastDevices implements storage.FastTokens.
func (s *Store) DeleteFastDevices(ctx context.Context, user string) error {
	if err := s.lock(ctx, "delete fast devices", user); err != nil {
		return err
	}
	defer s.mu.Unlock()
	delete(s.fast, user)
	return nil
}
