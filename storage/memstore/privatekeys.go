package memstore

import (
	"context"
	"maps"
	"slices"

	"github.com/treff-im/treff/storage"
)

var _ storage.PrivateXMLKeys = (*Store)(nil)

// PrivateXMLKeys implements storage.PrivateXMLKeys.
func (s *Store) PrivateXMLKeys(ctx context.Context, user string) ([]string, error) {
	if err := s.rlock(ctx, "private xml keys", user); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	return slices.Sorted(maps.Keys(s.private[user])), nil
}
