// Package saslmech is the interface between Treff's stream negotiation
// and a SASL mechanism (RFC 4422): what a plugin implements to offer a
// mechanism the server does not have (SCRAM with channel binding,
// EXTERNAL with client certificates, a token scheme), registered with
// treff.Registry.AddSASLMechanism. The server runs the exchange on the
// stream (RFC 6120 section 6) and binds the account the mechanism
// authenticated.
//
// The server's own PLAIN and SCRAM-SHA-1/256/512 (and their -PLUS
// variants) are mechanisms on this same interface: a Stream carries what
// channel binding (RFC 5056) and downgrade protection (XEP-0474) need.
package saslmech

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"slices"
	"strings"
	"sync/atomic"

	"mellium.im/xmpp/jid"
)

// Channel-binding types (RFC 5056) that the server announces (XEP-0440)
// and Stream.ChannelBinding computes. tls-unique is not among them: it is
// undefined for TLS 1.3 and broken by renegotiation and resumption before
// it (RFC 9266).
const (
	// TLSExporter is RFC 9266's binding, on TLS 1.3 only.
	TLSExporter = "tls-exporter"
	// TLSServerEndPoint is RFC 5929's hash of the server's certificate.
	TLSServerEndPoint = "tls-server-end-point"
)

// ErrNoChannelBinding is returned by Stream.ChannelBinding for a type the
// stream cannot provide.
var ErrNoChannelBinding = errors.New("saslmech: channel binding not available")

// ErrNotAuthorized is returned by an exchange for wrong credentials or an
// unknown user (treff.ErrNotAuthorized, which an Authenticator returns,
// means the same). The client sees <not-authorized/> and never learns
// which of the two it was.
var ErrNotAuthorized = errors.New("saslmech: not authorized")

// ErrBindingRefused is ErrNotAuthorized (it wraps it: the client gets
// <not-authorized/>) for an attempt refused for its channel binding
// alone, before any credential was looked at: a client that knows only
// tls-unique trying -PLUS on TLS 1.3. Login guards do not count it as a
// failed guess (see treff.LoginGuard).
var ErrBindingRefused = fmt.Errorf("%w: channel binding refused", ErrNotAuthorized)

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

// Identified is implemented by an Exchange that knows which account the
// client tries to authenticate as once it has read it (PLAIN, SCRAM and
// FAST tokens do): the server counts a failed attempt against that
// account too (treff.LoginGuard). Username returns the username as the
// client sent it, or "" before the exchange has read one.
type Identified interface {
	Username() string
}

// Stream describes the stream a SASL exchange runs on.
type Stream struct {
	// Host is the server domain the stream is for.
	Host string
	// TLS is the state of the stream's TLS connection, or nil if the
	// transport secured it (WebSocket, BOSH). Channel binding takes its
	// data from here.
	TLS *tls.ConnectionState
	// Certificate is the certificate the server presented in TLS's
	// handshake, for tls-server-end-point; nil when the server does not
	// know it (a resumed TLS session, which presents none; a
	// configuration's own GetConfigForClient).
	Certificate *x509.Certificate
	// Mechanisms are the names of the mechanisms offered on the stream
	// in the protocol the exchange runs in (RFC 6120's <mechanisms/>, or
	// XEP-0388's list), in the order offered, for downgrade protection
	// (XEP-0474). An Offerer's Offer sees it empty.
	Mechanisms []string
	// ChannelBindings are the channel-binding types announced to the
	// client (XEP-0440), nil if none were. The server announces the types
	// ChannelBinding can compute whenever it offers a mechanism whose name
	// ends in -PLUS; an Offerer's Offer sees the types available.
	ChannelBindings []string

	// refused is shared by the copies each exchange gets (NewStream
	// allocates it): see RefuseBinding.
	refused *atomic.Bool
}

// NewStream returns a Stream for host that remembers, across the
// exchanges on one stream, whether a client's channel binding was
// refused (RefuseBinding). A Stream made otherwise forgets it.
func NewStream(host string) *Stream { return &Stream{Host: host, refused: new(atomic.Bool)} }

// RefuseBinding records that a client on this stream tried a -PLUS
// mechanism without a channel-binding type the stream offers (tls-unique,
// which TLS 1.3 lacks and which older clients such as slixmpp 1.8 and
// nbxmpp 4 know alone) and was refused. Such a client saw the -PLUS
// mechanisms, so its next attempt with gs2 flag "y" ("I could bind, you
// cannot") is not the sign of a stripped list that "y" otherwise is: see
// BindingRefused.
func (s *Stream) RefuseBinding() {
	if s.refused != nil {
		s.refused.Store(true)
	}
}

// BindingRefused reports whether RefuseBinding was called on the stream:
// a SCRAM mechanism then accepts "y" although -PLUS was offered, instead
// of refusing it as a downgrade (RFC 5802 section 6), so that a client
// whose only binding type the server does not offer still logs in. An
// attacker who strips -PLUS from the list cannot cause it: the client
// would not have tried a -PLUS mechanism.
func (s *Stream) BindingRefused() bool { return s.refused != nil && s.refused.Load() }

// ChannelBinding returns the stream's channel-binding data of type typ:
// for TLSExporter (TLS 1.3 only) 32 bytes of keying material exported
// with the label "EXPORTER-Channel-Binding" and no context (RFC 9266),
// for TLSServerEndPoint the hash of the server's certificate (RFC 5929
// section 4.1: the certificate's signature hash, SHA-256 for MD5 and
// SHA-1; none for a signature without a single hash, such as Ed25519).
// It returns ErrNoChannelBinding for another type or one the stream
// cannot provide.
func (s *Stream) ChannelBinding(typ string) ([]byte, error) {
	if s.TLS == nil {
		return nil, ErrNoChannelBinding
	}
	switch typ {
	case TLSExporter:
		if s.TLS.Version < tls.VersionTLS13 {
			return nil, ErrNoChannelBinding
		}
		b, err := s.TLS.ExportKeyingMaterial("EXPORTER-Channel-Binding", nil, 32)
		if err != nil {
			return nil, ErrNoChannelBinding
		}
		return b, nil
	case TLSServerEndPoint:
		if s.Certificate == nil {
			return nil, ErrNoChannelBinding
		}
		h := endPointHash(s.Certificate.SignatureAlgorithm)
		if h == nil {
			return nil, ErrNoChannelBinding
		}
		sum := h()
		sum.Write(s.Certificate.Raw)
		return sum.Sum(nil), nil
	}
	return nil, ErrNoChannelBinding
}

// endPointHash is the hash of tls-server-end-point for a certificate
// signed with alg, or nil (RFC 5929 section 4.1).
func endPointHash(alg x509.SignatureAlgorithm) func() hash.Hash {
	switch alg {
	case x509.MD5WithRSA, x509.SHA1WithRSA, x509.DSAWithSHA1, x509.ECDSAWithSHA1,
		x509.SHA256WithRSA, x509.DSAWithSHA256, x509.ECDSAWithSHA256, x509.SHA256WithRSAPSS:
		return sha256.New
	case x509.SHA384WithRSA, x509.ECDSAWithSHA384, x509.SHA384WithRSAPSS:
		return sha512.New384
	case x509.SHA512WithRSA, x509.ECDSAWithSHA512, x509.SHA512WithRSAPSS:
		return sha512.New
	}
	return nil
}

// DowngradeHash returns the value of XEP-0474's (version 0.5) "h"
// attribute for a SCRAM mechanism with hash function h: the base64 hash
// of the names in Mechanisms sorted by octet and joined by 0x1E,
// followed, if channel-binding types were announced, by 0x1F and
// ChannelBindings sorted and joined likewise.
func (s *Stream) DowngradeHash(h func() hash.Hash) string {
	sum := h()
	writeSorted(sum, s.Mechanisms)
	if len(s.ChannelBindings) > 0 {
		sum.Write([]byte{0x1f})
		writeSorted(sum, s.ChannelBindings)
	}
	return base64.StdEncoding.EncodeToString(sum.Sum(nil))
}

func writeSorted(w hash.Hash, names []string) {
	sorted := slices.Clone(names)
	slices.Sort(sorted) // bytewise: RFC 4790's "i;octet"
	for i, n := range sorted {
		if i > 0 {
			w.Write([]byte{0x1e})
		}
		w.Write([]byte(n))
	}
}

// PlusOffered reports whether a mechanism with channel binding (a name
// ending in -PLUS) is among Mechanisms: a SCRAM client that could bind
// but thinks the server cannot must then be refused (RFC 5802 section 6).
func (s *Stream) PlusOffered() bool {
	for _, m := range s.Mechanisms {
		if strings.HasSuffix(m, "-PLUS") {
			return true
		}
	}
	return false
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
