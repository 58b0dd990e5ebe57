package treff

import (
	"context"
	"crypto/hmac"
	"crypto/sha512"
	"errors"
	"fmt"
	"slices"
	"strings"

	"golang.org/x/text/secure/precis"
	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff/internal/scram"
	"github.com/treff-im/treff/saslmech"
)

// AddSASLMechanism offers m (see package saslmech) to clients, before the server's own
// mechanisms (so a module's stronger mechanism comes first). It panics if
// a mechanism of that name is registered already.
func (r *Registry) AddSASLMechanism(m saslmech.Mechanism) {
	for _, e := range r.m.mechs {
		if e.h.Name() == m.Name() {
			panic(fmt.Sprintf("treff: module %s registers SASL mechanism %s, already registered by %s", r.module, m.Name(), e.module))
		}
	}
	r.m.mechs = append(r.m.mechs, hook[saslmech.Mechanism]{module: r.module, h: m})
}

// builtinMechanisms appends the server's own mechanisms after those of
// modules, unless a module replaced one by name.
func (srv *Server) builtinMechanisms() {
	own := []saslmech.Mechanism{
		scramMechanism{srv, scram.SHA512Plus}, scramMechanism{srv, scram.SHA256Plus}, scramMechanism{srv, scram.SHA1Plus},
		scramMechanism{srv, scram.SHA512}, scramMechanism{srv, scram.SHA256}, scramMechanism{srv, scram.SHA1},
		plainMechanism{srv},
	}
next:
	for _, m := range own {
		for _, e := range srv.mods.mechs {
			if e.h.Name() == m.Name() {
				continue next
			}
		}
		srv.mods.mechs = append(srv.mods.mechs, hook[saslmech.Mechanism]{module: coreModule, h: m})
	}
}

// plainMechanism is PLAIN (RFC 4616) through the Authenticator. Every
// stream that reaches SASL is TLS-protected (STARTTLS is required, and
// ServeConn's transports are secure), so it is always offered there.
type plainMechanism struct{ srv *Server }

func (plainMechanism) Name() string { return "PLAIN" }

func (m plainMechanism) Start(ctx context.Context, s *saslmech.Stream) saslmech.Exchange {
	return &plainExchange{srv: m.srv, s: s}
}

type plainExchange struct {
	srv  *Server
	s    *saslmech.Stream
	user string // the authcid, once read
}

// Username implements saslmech.Identified.
func (p *plainExchange) Username() string { return p.user }

func (p *plainExchange) Step(ctx context.Context, in []byte) ([]byte, jid.JID, error) {
	if in == nil {
		// No initial response: send an empty challenge.
		return nil, jid.JID{}, nil
	}
	parts := strings.Split(string(in), "\x00")
	if len(parts) != 3 {
		return nil, jid.JID{}, &saslmech.Error{Condition: "malformed-request"}
	}
	p.user = parts[1]
	user, err := p.s.Account(parts[1])
	if err != nil {
		return nil, jid.JID{}, err
	}
	if parts[0] != "" && parts[0] != user.String() {
		return nil, jid.JID{}, &saslmech.Error{Condition: "invalid-authzid"}
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

// scramMechanism is SCRAM-SHA-1, -256 or -512, or its -PLUS variant,
// over the keys of a SCRAMAuthenticator, offered only when the
// Authenticator is one (SCRAM-SHA-512 only when it lists it, see
// SCRAMMechanismLister), a -PLUS variant only where the stream has a
// channel binding. It uses the public saslmech API only.
type scramMechanism struct {
	srv  *Server
	name string
}

func (m scramMechanism) Name() string { return m.name }

func (m scramMechanism) Offer(s *saslmech.Stream) bool {
	sa, ok := m.srv.Authenticator.(SCRAMAuthenticator)
	if !ok {
		return false
	}
	base, plus := strings.CutSuffix(m.name, scram.Plus)
	if plus && len(s.ChannelBindings) == 0 {
		return false
	}
	if base == scram.SHA512 {
		l, ok := sa.(SCRAMMechanismLister)
		return ok && slices.Contains(l.SCRAMMechanisms(), scram.SHA512)
	}
	return true
}

func (m scramMechanism) Start(ctx context.Context, s *saslmech.Stream) saslmech.Exchange {
	sa := m.srv.Authenticator.(SCRAMAuthenticator)
	x := &scramExchange{s: s}
	base := strings.TrimSuffix(m.name, scram.Plus) // -PLUS uses the same keys
	x.ss = scram.NewServer(m.name, func(username, authzid string) (scram.Keys, bool, error) {
		user, err := s.Account(username)
		if err != nil {
			return scram.Keys{}, false, nil
		}
		if authzid != "" && authzid != user.String() {
			return scram.Keys{}, false, scram.ErrAuthzid
		}
		cred, err := sa.SCRAMCredential(x.ctx, user.String(), base)
		if errors.Is(err, ErrNotAuthorized) {
			return scram.Keys{}, false, nil
		}
		if err != nil {
			return scram.Keys{}, false, err
		}
		return scram.Keys{Salt: cred.Salt, Iterations: cred.Iterations, StoredKey: cred.StoredKey, ServerKey: cred.ServerKey}, true, nil
	}, func(username string) scram.Keys { return m.srv.fakeSCRAMKeys(s.Host, base, username) })
	x.ss.SetBinding(scram.Binding{Offered: s.PlusOffered(), Data: func(typ string) ([]byte, bool) {
		if !slices.Contains(s.ChannelBindings, typ) {
			return nil, false // not announced on this stream
		}
		data, err := s.ChannelBinding(typ)
		return data, err == nil
	}, Refused: func() { x.bindingRefused = true; s.RefuseBinding() }, RefusedBefore: s.BindingRefused})
	x.ss.SetDowngradeHash(s.DowngradeHash(scram.Hash(m.name)))
	return x
}

type scramExchange struct {
	s   *saslmech.Stream
	ss  *scram.Server
	ctx context.Context // of the current Step, for the credential lookup
	// bindingRefused is set when the client asked for a channel binding
	// the stream does not offer (tls-unique on TLS 1.3): the exchange
	// failed before any credential was looked at.
	bindingRefused bool
}

// bindingRefused reports whether x failed because its client asked for a
// channel binding the stream does not offer. Such a failure is not told
// to the login guards: no password was tried, and clients that know
// tls-unique alone (slixmpp 1.8, nbxmpp 4) try two -PLUS mechanisms
// before plain SCRAM on every login, which the guards would otherwise
// count and hold back as guesses.
func bindingRefused(x saslmech.Exchange) bool {
	sx, ok := x.(*scramExchange)
	return ok && sx.bindingRefused
}

// Username implements saslmech.Identified.
func (x *scramExchange) Username() string { return x.ss.Username() }

func (x *scramExchange) Step(ctx context.Context, in []byte) ([]byte, jid.JID, error) {
	if in == nil {
		// SCRAM is client-first: an absent initial response is malformed.
		return nil, jid.JID{}, &saslmech.Error{Condition: "malformed-request"}
	}
	x.ctx = ctx
	out, done, err := x.ss.Step(in)
	x.ctx = nil
	switch {
	case errors.Is(err, scram.ErrMalformed):
		return nil, jid.JID{}, &saslmech.Error{Condition: "malformed-request"}
	case errors.Is(err, scram.ErrAuthzid):
		return nil, jid.JID{}, &saslmech.Error{Condition: "invalid-authzid"}
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
// the exchange looks the same as for a real one: a salt of its own per
// mechanism (mech without -PLUS), keys of the hash's size.
func (srv *Server) fakeSCRAMKeys(host, mech, username string) scram.Keys {
	sum := func(label string) []byte {
		m := hmac.New(sha512.New, srv.secret[:])
		m.Write([]byte(label + "\x00" + mech + "\x00" + host + "\x00" + username))
		return m.Sum(nil)
	}
	key := sum("key")[:scram.Hash(mech)().Size()]
	return scram.Keys{Salt: sum("salt")[:16], Iterations: 4096, StoredKey: key, ServerKey: key}
}
