package memstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/treff-im/treff/storage"
)

var _ storage.Secrets = (*Store)(nil)

// errSecretArg reports an empty secret name or value.
var errSecretArg = errors.New("empty secret name or value")

// Secret implements storage.Secrets.
func (s *Store) Secret(ctx context.Context, name string) ([]byte, error) {
	if err := s.rlock(ctx, "secret"); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	if name == "" {
		return nil, fmt.Errorf("memstore: secret: %w", errSecretArg)
	}
	v, ok := s.secrets[name]
	if !ok {
		return nil, fmt.Errorf("memstore: secret %q: %w", name, storage.ErrNotFound)
	}
	return bytes.Clone(v), nil
}

// PutSecret implements storage.Secrets.
func (s *Store) PutSecret(ctx context.Context, name string, value []byte) error {
	if err := s.lock(ctx, "put secret"); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if name == "" || len(value) == 0 {
		return fmt.Errorf("memstore: put secret: %w", errSecretArg)
	}
	if s.secrets == nil {
		s.secrets = map[string][]byte{}
	}
	s.secrets[name] = bytes.Clone(value)
	return nil
}

// SwapSecret implements storage.Secrets.
func (s *Store) SwapSecret(ctx context.Context, name string, old, value []byte) (bool, error) {
	if err := s.lock(ctx, "swap secret"); err != nil {
		return false, err
	}
	defer s.mu.Unlock()
	if name == "" || len(value) == 0 {
		return false, fmt.Errorf("memstore: swap secret: %w", errSecretArg)
	}
	cur, ok := s.secrets[name]
	if ok != (len(old) > 0) || ok && !bytes.Equal(cur, old) {
		return false, nil
	}
	if s.secrets == nil {
		s.secrets = map[string][]byte{}
	}
	s.secrets[name] = bytes.Clone(value)
	return true, nil
}
