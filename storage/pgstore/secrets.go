package pgstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/treff-im/treff/storage"
)

var _ storage.Secrets = (*Store)(nil)

// errSecretArg reports an empty secret name or value.
var errSecretArg = errors.New("empty secret name or value")

// Secret implements storage.Secrets.
func (s *Store) Secret(ctx context.Context, name string) ([]byte, error) {
	if name == "" {
		return nil, fail(ctx, errSecretArg, "secret")
	}
	if err := s.check(ctx); err != nil {
		return nil, fail(ctx, err, "secret")
	}
	var v []byte
	err := s.pool.QueryRow(ctx, "SELECT value FROM secrets WHERE name = $1", name).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("pgstore: secret %q: %w", name, storage.ErrNotFound)
	}
	if err != nil {
		return nil, fail(ctx, err, "secret")
	}
	return v, nil
}

// PutSecret implements storage.Secrets.
func (s *Store) PutSecret(ctx context.Context, name string, value []byte) error {
	if name == "" || len(value) == 0 {
		return fail(ctx, errSecretArg, "put secret")
	}
	_, err := s.exec(ctx, "put secret", `INSERT INTO secrets (name, value) VALUES ($1, $2)
		ON CONFLICT (name) DO UPDATE SET value = excluded.value`, name, value)
	return err
}

// SwapSecret implements storage.Secrets. Each case is one statement, so
// PostgreSQL makes it atomic across nodes: the insert of an absent name
// conflicts with a concurrent one (and then changes nothing), the update
// re-checks its condition on the row a concurrent update left.
func (s *Store) SwapSecret(ctx context.Context, name string, old, value []byte) (bool, error) {
	if name == "" || len(value) == 0 {
		return false, fail(ctx, errSecretArg, "swap secret")
	}
	var n int64
	var err error
	if len(old) == 0 {
		n, err = s.exec(ctx, "swap secret", "INSERT INTO secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING", name, value)
	} else {
		n, err = s.exec(ctx, "swap secret", "UPDATE secrets SET value = $3 WHERE name = $1 AND value = $2", name, old, value)
	}
	if err != nil {
		return false, err
	}
	return n == 1, nil
}
