package memstore

import (
	"context"
	"fmt"
	"slices"

	"github.com/treff-im/treff/storage"
)

var _ storage.PrivateXML = (*Store)(nil)

// PrivateXML implements storage.PrivateXML.
func (s *Store) PrivateXML(ctx context.Context, user, key string) ([]byte, error) {
	if err := s.rlock(ctx, "private xml"); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	doc, ok := s.private[user][key]
	if !ok {
		return nil, fmt.Errorf("memstore: private xml %q of %q: %w", key, user, storage.ErrNotFound)
	}
	return slices.Clone(doc), nil
}

// PutPrivateXML implements storage.PrivateXML.
func (s *Store) PutPrivateXML(ctx context.Context, user, key string, doc []byte) error {
	if user == "" || key == "" {
		return fmt.Errorf("memstore: put private xml: %w", errEmptyJID)
	}
	if err := s.lock(ctx, "put private xml"); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if s.private == nil {
		s.private = make(map[string]map[string][]byte)
	}
	docs := s.private[user]
	if docs == nil {
		docs = make(map[string][]byte)
		s.private[user] = docs
	}
	docs[key] = append([]byte{}, doc...)
	return nil
}

// DeletePrivateXML implements storage.PrivateXML.
func (s *Store) DeletePrivateXML(ctx context.Context, user, key string) error {
	if err := s.lock(ctx, "delete private xml", user); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if docs := s.private[user]; docs != nil {
		delete(docs, key)
		if len(docs) == 0 {
			delete(s.private, user)
		}
	}
	return nil
}

// DeleteAllPrivateXML implements storage.PrivateXML.
func (s *Store) DeleteAllPrivateXML(ctx context.Context, user string) error {
	if err := s.lock(ctx, "delete all private xml", user); err != nil {
		return err
	}
	defer s.mu.Unlock()
	delete(s.private, user)
	return nil
}
