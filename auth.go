package treff

import (
	"context"
	"errors"

	"github.com/treff-im/treff/storage"
)

// ErrNotAuthorized is returned by an Authenticator for wrong credentials or
// an unknown user. The client sees <not-authorized/>; it never learns which
// of the two it was.
var ErrNotAuthorized = errors.New("treff: not authorized")

// Authenticator decides whether a client may log in as a user.
//
// The session layer runs SASL itself; the Authenticator only answers
// questions about credentials. Every Authenticator supports PLAIN through
// CheckPassword. One that also implements SCRAMAuthenticator enables
// SCRAM-SHA-256 and SCRAM-SHA-1, which every modern client prefers, and
// on TLS their -PLUS variants with channel binding (tls-exporter on TLS
// 1.3, tls-server-end-point; announced with XEP-0440).
//
// A PLAIN-only Authenticator (one that checks passwords against LDAP or an
// HTTP service, say) gives up the following: the server receives the
// password in clear (inside TLS) on every login, so a compromised server
// process or a TLS-intercepting proxy sees it; the client cannot check that
// the server knows its credentials (SCRAM's mutual authentication); and
// clients configured to refuse PLAIN cannot log in.
//
// Methods are called concurrently from many sessions. Returning
// ErrNotAuthorized (possibly wrapped) means wrong credentials; any other
// error is reported to the client as a temporary failure.
type Authenticator interface {
	// CheckPassword verifies password for the account with the given
	// normalised bare JID ("alice@example.org").
	CheckPassword(ctx context.Context, user, password string) error
}

// SCRAMAuthenticator is implemented by authenticators that keep SCRAM salted
// credentials (RFC 5802), so that the server can run SCRAM without ever
// seeing the password.
type SCRAMAuthenticator interface {
	Authenticator
	// SCRAMCredential returns the credential for the account and mechanism
	// ("SCRAM-SHA-256", "SCRAM-SHA-1", or "SCRAM-SHA-512" for one that
	// lists it; the -PLUS variants use the same credential). It returns
	// ErrNotAuthorized if the account does not exist or has no credential
	// for the mechanism.
	SCRAMCredential(ctx context.Context, user, mechanism string) (storage.Credential, error)
}

// SCRAMMechanismLister is implemented by a SCRAMAuthenticator that keeps
// credentials for more than SCRAM-SHA-256 and SCRAM-SHA-1: the server
// offers SCRAM-SHA-512 (and SCRAM-SHA-512-PLUS) only if SCRAMMechanisms
// lists it, because a client that picks it cannot log in to an account
// without such a credential.
type SCRAMMechanismLister interface {
	SCRAMMechanisms() []string
}

// AuthenticatorFunc adapts a function to a PLAIN-only Authenticator.
type AuthenticatorFunc func(ctx context.Context, user, password string) error

// CheckPassword calls f(ctx, user, password).
func (f AuthenticatorFunc) CheckPassword(ctx context.Context, user, password string) error {
	return f(ctx, user, password)
}
