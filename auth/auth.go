// Package auth is Treff's default treff.Authenticator: it keeps SCRAM salted
// credentials (RFC 5802, RFC 7677) in a storage.Accounts store and never the
// password itself.
//
// For each account it stores, per mechanism (SCRAM-SHA-256 and
// SCRAM-SHA-1, and SCRAM-SHA-512 with Store.SHA512), a random 16-byte salt, the iteration count (at least 4096),
// StoredKey and ServerKey. That is enough to verify SCRAM logins and PLAIN
// logins (by deriving the keys from the given password), but a copy of the
// database lets nobody log in without first guessing the password.
package auth

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"time"

	"golang.org/x/text/secure/precis"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/internal/scram"
	"github.com/treff-im/treff/storage"
)

// MinIterations is the lowest PBKDF2 iteration count accepted.
const MinIterations = 4096

// Mechanisms are the SCRAM mechanisms credentials are kept for.
var Mechanisms = []string{scram.SHA256, scram.SHA1}

// Store authenticates against accounts in a storage.Accounts.
type Store struct {
	// Accounts holds the accounts and their credentials.
	Accounts storage.Accounts
	// Iterations is the PBKDF2 iteration count for new credentials. Values
	// below MinIterations (including 0) mean MinIterations, the RFC 7677
	// recommendation for SCRAM-SHA-256.
	Iterations int
	// SHA512 keeps SCRAM-SHA-512 credentials too for accounts created
	// and passwords set from now on, and makes the server offer
	// SCRAM-SHA-512 and SCRAM-SHA-512-PLUS. Accounts whose password was
	// set before have no such credential: a client that picks SCRAM-SHA-512
	// cannot log in to them until their password is set again, so turn it
	// on for a new server.
	SHA512 bool
}

var (
	_ treff.SCRAMAuthenticator   = (*Store)(nil)
	_ treff.SCRAMMechanismLister = (*Store)(nil)
)

// SCRAMMechanisms implements treff.SCRAMMechanismLister.
func (s *Store) SCRAMMechanisms() []string {
	if s.SHA512 {
		return append([]string{scram.SHA512}, Mechanisms...)
	}
	return Mechanisms
}

func (s *Store) iterations() int { return max(s.Iterations, MinIterations) }

// NewCredentials derives fresh SCRAM credentials for password, with a new
// random salt per mechanism. The password is normalised with the PRECIS
// OpaqueString profile (RFC 8265), as clients do.
func NewCredentials(password string, iterations int) ([]storage.Credential, error) {
	return newCredentials(password, iterations, Mechanisms)
}

func newCredentials(password string, iterations int, mechs []string) ([]storage.Credential, error) {
	pw, err := precis.OpaqueString.String(password)
	if err != nil {
		return nil, fmt.Errorf("auth: invalid password: %w", err)
	}
	iterations = max(iterations, MinIterations)
	creds := make([]storage.Credential, 0, len(mechs))
	for _, m := range mechs {
		salt := make([]byte, 16)
		if _, err := rand.Read(salt); err != nil {
			return nil, fmt.Errorf("auth: %w", err)
		}
		k, err := scram.Derive(m, pw, salt, iterations)
		if err != nil {
			return nil, fmt.Errorf("auth: %w", err)
		}
		creds = append(creds, storage.Credential{Mechanism: m, Salt: k.Salt, Iterations: k.Iterations, StoredKey: k.StoredKey, ServerKey: k.ServerKey})
	}
	return creds, nil
}

// ErrEmptyPassword is returned for an empty password.
var ErrEmptyPassword = errors.New("auth: empty password")

// CreateUser creates the account user (a normalised bare JID) with the
// given password. It returns an error wrapping storage.ErrExists if the
// account exists.
func (s *Store) CreateUser(ctx context.Context, user, password string) error {
	if password == "" {
		return ErrEmptyPassword
	}
	creds, err := newCredentials(password, s.iterations(), s.SCRAMMechanisms())
	if err != nil {
		return err
	}
	err = s.Accounts.CreateAccount(ctx, storage.Account{JID: user, Credentials: creds, Created: time.Now().UTC()})
	if err != nil {
		return fmt.Errorf("auth: create %s: %w", user, err)
	}
	return nil
}

// SetPassword replaces the credentials of an existing account.
func (s *Store) SetPassword(ctx context.Context, user, password string) error {
	if password == "" {
		return ErrEmptyPassword
	}
	a, err := s.Accounts.Account(ctx, user)
	if err != nil {
		return fmt.Errorf("auth: %s: %w", user, err)
	}
	if a.Credentials, err = newCredentials(password, s.iterations(), s.SCRAMMechanisms()); err != nil {
		return err
	}
	if err := s.Accounts.UpdateAccount(ctx, a); err != nil {
		return fmt.Errorf("auth: %s: %w", user, err)
	}
	return nil
}

// SCRAMCredential implements treff.SCRAMAuthenticator.
func (s *Store) SCRAMCredential(ctx context.Context, user, mechanism string) (storage.Credential, error) {
	a, err := s.Accounts.Account(ctx, user)
	if errors.Is(err, storage.ErrNotFound) {
		return storage.Credential{}, treff.ErrNotAuthorized
	}
	if err != nil {
		return storage.Credential{}, fmt.Errorf("auth: %w", err)
	}
	for _, c := range a.Credentials {
		if c.Mechanism == mechanism {
			return c, nil
		}
	}
	return storage.Credential{}, treff.ErrNotAuthorized
}

// CheckPassword implements treff.Authenticator (for PLAIN). password is
// already normalised by the session layer.
func (s *Store) CheckPassword(ctx context.Context, user, password string) error {
	c, err := s.SCRAMCredential(ctx, user, scram.SHA256)
	if errors.Is(err, treff.ErrNotAuthorized) {
		// Fall back to any credential the account has.
		c, err = s.SCRAMCredential(ctx, user, scram.SHA1)
	}
	if errors.Is(err, treff.ErrNotAuthorized) {
		// Spend the same time as for a real account, so that response
		// times do not tell which accounts exist.
		scram.Derive(scram.SHA256, password, make([]byte, 16), s.iterations())
		return err
	}
	if err != nil {
		return err
	}
	k, err := scram.Derive(c.Mechanism, password, c.Salt, c.Iterations)
	if err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	if subtle.ConstantTimeCompare(k.StoredKey, c.StoredKey) != 1 {
		return treff.ErrNotAuthorized
	}
	return nil
}
