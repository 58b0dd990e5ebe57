package treff

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/text/secure/precis"
	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff/internal/scram"
)

// SASLMechanism is a SASL mechanism (RFC 4422) offered to clients before
// they authenticate. The server itself offers SCRAM-SHA-256 and
// SCRAM-SHA-1 (when the Authenticator is a SCRAMAuthenticator) and PLAIN;
// modules add others with Registry.AddSASLMechanism (SCRAM with channel
// binding, EXTERNAL with client certificates, ...).
//
// A mechanism that implements SASLOfferer is offered only on the
// streams its Offer accepts.
type SASLMechanism interface {
	// Name is the mechanism's registered name, e.g. "SCRAM-SHA-256".
	Name() string
	// Start begins an exchange on a stream that chose the mechanism. It
	// is called once per attempt, concurrently for many streams.
	Start(ctx context.Context, s *SASLStream) SASLExchange
}

// SASLOfferer is implemented by mechanisms offered on some streams only,
// such as a -PLUS mechanism that needs TLS channel-binding data.
type SASLOfferer interface {
	Offer(s *SASLStream) bool
}

// SASLExchange is one run of a mechanism.
type SASLExchange interface {
	// Step takes the client's message, nil when the client sent no
	// initial response (and non-nil but empty for an empty one), and
	// returns either the next challenge, or, once the client has
	// authenticated, the account's bare JID with the additional data for
	// <success/> (or nil). Errors: ErrNotAuthorized (possibly wrapped) for
	// wrong credentials or an unknown user, a *SASLError for another
	// condition; any other error is logged and reported to the client
	// as <temporary-auth-failure/>.
	Step(ctx context.Context, in []byte) (out []byte, user jid.JID, err error)
}

// SASLStream describes the stream a SASL exchange runs on.
type SASLStream struct {
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
func (s *SASLStream) Account(username string) (jid.JID, error) {
	if strings.IndexByte(username, '@') >= 0 {
		j, err := jid.Parse(username)
		if err != nil || j.Domainpart() != s.Host || j.Resourcepart() != "" {
			return jid.JID{}, ErrNotAuthorized
		}
		return j, nil
	}
	j, err := jid.New(username, s.Host, "")
	if err != nil {
		return jid.JID{}, ErrNotAuthorized
	}
	return j, nil
}

// SASLError is a SASL failure condition other than not-authorized
// (RFC 6120 6.5), such as "malformed-request" or "invalid-authzid". The
// client sees the condition and the text.
type SASLError struct {
	Condition string
	Text      string
}

func (e *SASLError) Error() string { return "treff: SASL " + e.Condition }

// AddSASLMechanism offers m to clients, before the server's own
// mechanisms (so a module's stronger mechanism comes first). It panics if
// a mechanism of that name is registered already.
func (r *Registry) AddSASLMechanism(m SASLMechanism) {
	for _, e := range r.m.mechs {
		if e.h.Name() == m.Name() {
			panic(fmt.Sprintf("treff: module %s registers SASL mechanism %s, already registered by %s", r.module, m.Name(), e.module))
		}
	}
	r.m.mechs = append(r.m.mechs, hook[SASLMechanism]{module: r.module, h: m})
}

// builtinMechanisms appends the server's own mechanisms after those of
// modules, unless a module replaced one by name.
func (srv *Server) builtinMechanisms() {
	own := []SASLMechanism{scramMechanism{srv, scram.SHA256}, scramMechanism{srv, scram.SHA1}, plainMechanism{srv}}
next:
	for _, m := range own {
		for _, e := range srv.mods.mechs {
			if e.h.Name() == m.Name() {
				continue next
			}
		}
		srv.mods.mechs = append(srv.mods.mechs, hook[SASLMechanism]{module: coreModule, h: m})
	}
}

// plainMechanism is PLAIN (RFC 4616) through the Authenticator. Every
// stream that reaches SASL is TLS-protected, so it is always offered.
type plainMechanism struct{ srv *Server }

func (plainMechanism) Name() string { return "PLAIN" }

func (m plainMechanism) Start(ctx context.Context, s *SASLStream) SASLExchange {
	return &plainExchange{srv: m.srv, s: s}
}

type plainExchange struct {
	srv *Server
	s   *SASLStream
}

func (p *plainExchange) Step(ctx context.Context, in []byte) ([]byte, jid.JID, error) {
	if in == nil {
		// No initial response: send an empty challenge.
		return nil, jid.JID{}, nil
	}
	parts := strings.Split(string(in), "\x00")
	if len(parts) != 3 {
		return nil, jid.JID{}, &SASLError{Condition: "malformed-request"}
	}
	user, err := p.s.Account(parts[1])
	if err != nil {
		return nil, jid.JID{}, err
	}
	if parts[0] != "" && parts[0] != user.String() {
		return nil, jid.JID{}, &SASLError{Condition: "invalid-authzid"}
	}
	if p.srv.Authenticator == nil {
		return nil, jid.JID{}, ErrNotAuthorized
	}
	pw, err := precis.OpaqueString.String(parts[2])
	if err != nil {
		return nil, jid.JID{}, ErrNotAuthorized
	}
	if err := p.srv.Authenticator.CheckPassword(ctx, user.String(), pw); err != nil {
		return nil, jid.JID{}, err
	}
	return nil, user, nil
}

// scramMechanism is SCRAM-SHA-1 or SCRAM-SHA-256 over the keys of a
// SCRAMAuthenticator, offered only when the Authenticator is one.
type scramMechanism struct {
	srv  *Server
	name string
}

func (m scramMechanism) Name() string { return m.name }

func (m scramMechanism) Offer(*SASLStream) bool {
	_, ok := m.srv.Authenticator.(SCRAMAuthenticator)
	return ok
}

func (m scramMechanism) Start(ctx context.Context, s *SASLStream) SASLExchange {
	sa := m.srv.Authenticator.(SCRAMAuthenticator)
	x := &scramExchange{s: s}
	x.ss = scram.NewServer(m.name, func(username, authzid string) (scram.Keys, bool, error) {
		user, err := s.Account(username)
		if err != nil {
			return scram.Keys{}, false, nil
		}
		if authzid != "" && authzid != user.String() {
			return scram.Keys{}, false, scram.ErrAuthzid
		}
		cred, err := sa.SCRAMCredential(x.ctx, user.String(), m.name)
		if errors.Is(err, ErrNotAuthorized) {
			return scram.Keys{}, false, nil
		}
		if err != nil {
			return scram.Keys{}, false, err
		}
		return scram.Keys{Salt: cred.Salt, Iterations: cred.Iterations, StoredKey: cred.StoredKey, ServerKey: cred.ServerKey}, true, nil
	}, func(username string) scram.Keys { return m.srv.fakeSCRAMKeys(s.Host, username) })
	return x
}

type scramExchange struct {
	s   *SASLStream
	ss  *scram.Server
	ctx context.Context // of the current Step, for the credential lookup
}

func (x *scramExchange) Step(ctx context.Context, in []byte) ([]byte, jid.JID, error) {
	if in == nil {
		// SCRAM is client-first: an absent initial response is malformed.
		return nil, jid.JID{}, &SASLError{Condition: "malformed-request"}
	}
	x.ctx = ctx
	out, done, err := x.ss.Step(in)
	x.ctx = nil
	switch {
	case errors.Is(err, scram.ErrMalformed):
		return nil, jid.JID{}, &SASLError{Condition: "malformed-request"}
	case errors.Is(err, scram.ErrAuthzid):
		return nil, jid.JID{}, &SASLError{Condition: "invalid-authzid"}
	case errors.Is(err, scram.ErrNotAuthorized):
		return nil, jid.JID{}, ErrNotAuthorized
	case err != nil:
		return nil, jid.JID{}, err
	}
	if !done {
		return out, jid.JID{}, nil
	}
	user, err := x.s.Account(x.ss.Username())
	if err != nil {
		return nil, jid.JID{}, err
	}
	return out, user, nil
}

// fakeSCRAMKeys returns stable made-up keys for an unknown user, so that
// the exchange looks the same as for a real one.
func (srv *Server) fakeSCRAMKeys(host, username string) scram.Keys {
	m := hmac.New(sha256.New, srv.secret[:])
	m.Write([]byte(host + "\x00" + username))
	sum := m.Sum(nil)
	return scram.Keys{Salt: sum[:16], Iterations: 4096, StoredKey: sum, ServerKey: sum}
}
