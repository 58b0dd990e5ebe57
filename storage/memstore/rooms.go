package memstore

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/treff-im/treff/storage"
)

var _ storage.Rooms = (*Store)(nil)

func copyRoom(r storage.Room) storage.Room {
	r.Affiliations = maps.Clone(r.Affiliations)
	r.Created = r.Created.UTC()
	r.OccupantIDKey = slices.Clone(r.OccupantIDKey)
	r.History = slices.Clone(r.History)
	return r
}

// PutRoom implements storage.Rooms.
func (s *Store) PutRoom(ctx context.Context, r storage.Room) error {
	if r.JID == "" {
		return fmt.Errorf("memstore: put room: %w", errEmptyJID)
	}
	if err := s.lock(ctx, "put room"); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if s.rooms == nil {
		s.rooms = make(map[string]storage.Room)
	}
	s.rooms[r.JID] = copyRoom(r)
	return nil
}

// Room implements storage.Rooms.
func (s *Store) Room(ctx context.Context, jid string) (storage.Room, error) {
	if err := s.rlock(ctx, "room"); err != nil {
		return storage.Room{}, err
	}
	defer s.mu.RUnlock()
	r, ok := s.rooms[jid]
	if !ok {
		return storage.Room{}, fmt.Errorf("memstore: room %q: %w", jid, storage.ErrNotFound)
	}
	return copyRoom(r), nil
}

// DeleteRoom implements storage.Rooms.
func (s *Store) DeleteRoom(ctx context.Context, jid string) error {
	if err := s.lock(ctx, "delete room", jid); err != nil {
		return err
	}
	defer s.mu.Unlock()
	delete(s.rooms, jid)
	return nil
}

// ListRooms implements storage.Rooms.
func (s *Store) ListRooms(ctx context.Context, service string) ([]storage.Room, error) {
	if err := s.rlock(ctx, "list rooms"); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	var out []storage.Room
	for j, r := range s.rooms {
		if _, d, ok := strings.Cut(j, "@"); ok && d == service {
			out = append(out, copyRoom(r))
		}
	}
	sort.Slice(out, func(i, k int) bool { return out[i].JID < out[k].JID })
	return out, nil
}
