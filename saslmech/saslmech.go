// Package saslmech is the interface between Treff's stream negotiation
// and a SASL mechanism (RFC 4422): what a plugin implements to offer a
// mechanism the server does not have (SCRAM with channel binding,
// EXTERNAL with client certificates, a token scheme), registered with
// treff.Registry.AddSASLMechanism. The server runs the exchange on the
// stream (RFC 6120 section 6) and binds the account the mechanism
// authenticated.
//
// The server's own PLAIN and SCRAM-SHA-1/256 are mechanisms on this same
// interface.
package saslmech

import (
	"context"
	"crypto/tls"
	"errors"
	"strings"

	"mellium.im/xmpp/jid"
)

// ErrNotAuthorized is returned by an exchange for wrong credentials or an
// unknown user (treff.ErrNotAuthorized, which an Authenticator returns,
// means the same). The client sees <not-authorized/> and never learns
// which of the two it was.
var ErrNotAuthorized = errors.New("saslmech: not authorized")

// Mechanism is a SASL mechanism (RFC 4422) offered to clients before
// they authenticate. The server itself offers SCRAM-SHA-256 and
// SCRAM-SHA-1 (when its Authenticator is a treff.SCRAMAuthenticator) and
// PLAIN; modules add others with treff.Registry.AddSASLMechanism.
//
// A mechanism that implements Offerer is offered only on the
// streams its Offer accepts.
type Mechanism interface {
	// Name is the mechanism's registered name, e.g. "SCRAM-SHA-256".
	Name() string
	// Start begins an exchange on a stream that chose the mechanism. It
	// is called once per attempt, concurrently for many streams.
	Start(ctx context.Context, s *Stream) Exchange
}

// Offerer is implemented by mechanisms offered on some streams only,
// such as a -PLUS mechanism that needs TLS channel-binding data.
type Offerer interface {
	Offer(s *Stream) bool
}

// Exchange is one run of a mechanism.
type Exchange interface {
	// Step takes the client's message, nil when the client sent no
	// initial response (and non-nil but empty for an empty one), and
	// returns either the next challenge, or, once the client has
	// authenticated, the account's bare JID with the additional data for
	// <success/> (or nil). Errors: ErrNotAuthorized (this package's or
	// treff's, possibly wrapped) for wrong credentials or an unknown
	// user, an *Error for another condition; any other error is logged
	// and reported to the client as <temporary-auth-failure/>.
	Step(ctx context.Context, in []byte) (out []byte, user jid.JID, err error)
}

// Stream describes the stream a SASL exchange runs on.
type Stream struct {
	// Host is the server domain the stream is for.
	Host string
	// TLS is the state of the stream's TLS connection, or nil if the
	// transport secured it (WebSocket, BOSH). Channel binding takes its
	// data from here.
	TLS *tls.ConnectionState
	// Mechanisms are the names of the mechanisms offered on the stream,
	// in the order offered (for downgrade protection, XEP-0474).
	Mechanisms []string
}

// Account returns the bare JID of the account a SASL authentication
// identity names on the stream's host: a localpart (RFC 6120 6.3.8), or a
// bare JID on the host, which some clients send. It returns
// ErrNotAuthorized for any other.
func (s *Stream) Account(username string) (jid.JID, error) {
	if strings.IndexByte(username, '@') >= 0 {
		j, err := jid.Parse(username)
		if err != nil || j.Localpart() == "" || j.Domainpart() != s.Host || j.Resourcepart() != "" {
			return jid.JID{}, ErrNotAuthorized
		}
		return j, nil
	}
	j, err := jid.New(username, s.Host, "")
	if err != nil || j.Localpart() == "" {
		return jid.JID{}, ErrNotAuthorized
	}
	return j, nil
}

// Error is a SASL failure condition other than not-authorized
// (RFC 6120 6.5), such as "malformed-request" or "invalid-authzid". The
// client sees the condition and the text.
type Error struct {
	Condition string
	Text      string
}

func (e *Error) Error() string { return "saslmech: " + e.Condition }
