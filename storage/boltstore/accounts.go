package boltstore

import (
	"context"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/treff-im/treff/storage"
)

// CreateAccount implements storage.Accounts.
func (s *Store) CreateAccount(ctx context.Context, a storage.Account) error {
	if a.JID == "" {
		return fail(errEmptyJID, "create account")
	}
	v := encodeAccount(a)
	err := s.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAccounts)
		k := []byte(a.JID)
		if b.Get(k) != nil {
			return storage.ErrExists
		}
		return b.Put(k, v)
	})
	if err != nil {
		return fail(err, "create account %q", a.JID)
	}
	return nil
}

// Account implements storage.Accounts.
func (s *Store) Account(ctx context.Context, jid string) (storage.Account, error) {
	var a storage.Account
	err := s.view(ctx, func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketAccounts).Get([]byte(jid))
		if v == nil {
			return storage.ErrNotFound
		}
		var err error
		a, err = decodeAccount(jid, v)
		return err
	})
	if err != nil {
		return storage.Account{}, fail(err, "account %q", jid)
	}
	return a, nil
}

// UpdateAccount implements storage.Accounts. It replaces every field of the
// stored account, Created included, with those of a.
func (s *Store) UpdateAccount(ctx context.Context, a storage.Account) error {
	v := encodeAccount(a)
	err := s.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAccounts)
		k := []byte(a.JID)
		if b.Get(k) == nil {
			return storage.ErrNotFound
		}
		return b.Put(k, v)
	})
	if err != nil {
		return fail(err, "update account %q", a.JID)
	}
	return nil
}

// SetLastLogin implements storage.Accounts: one transaction reads,
// changes and writes the account.
func (s *Store) SetLastLogin(ctx context.Context, jid string, t time.Time) error {
	err := s.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAccounts)
		k := []byte(jid)
		v := b.Get(k)
		if v == nil {
			return storage.ErrNotFound
		}
		a, err := decodeAccount(jid, v)
		if err != nil {
			return err
		}
		a.LastLogin = storage.Day(t)
		return b.Put(k, encodeAccount(a))
	})
	if err != nil {
		return fail(err, "set last login %q", jid)
	}
	return nil
}

// DeleteAccount implements storage.Accounts.
func (s *Store) DeleteAccount(ctx context.Context, jid string) error {
	err := s.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAccounts)
		k := []byte(jid)
		if b.Get(k) == nil {
			return storage.ErrNotFound
		}
		return b.Delete(k)
	})
	if err != nil {
		return fail(err, "delete account %q", jid)
	}
	return nil
}

// ListAccounts implements storage.Accounts. An account matches domain if the
// part of its JID after the '@' equals domain byte for byte. Keys are
// filtered before values are decoded, but the whole bucket is scanned.
func (s *Store) ListAccounts(ctx context.Context, domain string) ([]storage.Account, error) {
	list := []storage.Account{}
	err := s.view(ctx, func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketAccounts).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if domain != "" && !inDomain(k, domain) {
				continue
			}
			a, err := decodeAccount(string(k), v)
			if err != nil {
				return err
			}
			list = append(list, a)
		}
		return nil
	})
	if err != nil {
		return nil, fail(err, "list accounts of domain %q", domain)
	}
	return list, nil
}
