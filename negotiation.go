package treff

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff/internal/xmlscan"
	"github.com/treff-im/treff/saslmech"
)

// Negotiation is a client stream that has not bound a resource yet, as a
// module that adds a step to stream negotiation sees it: an
// authentication protocol besides RFC 6120 SASL (XEP-0388 SASL2, XEP-0484
// FAST), or an element the client sends before binding. A Negotiation is
// valid only during the handler call that received it, and only from
// that goroutine.
type Negotiation struct {
	c       *conn
	readErr error // what Next last failed with
}

// Host returns the server domain the stream is for.
func (n *Negotiation) Host() string { return n.c.host }

// StreamID returns the stream's ID.
func (n *Negotiation) StreamID() string { return n.c.streamID }

// User returns the account the stream authenticated as, or the zero JID.
func (n *Negotiation) User() jid.JID { return n.c.user }

// SASL describes the stream to SASL mechanisms, with the names of the
// mechanisms offered on it (see Mechanism).
func (n *Negotiation) SASL() *saslmech.Stream {
	if n.c.saslInfo == nil {
		n.c.offerMechanisms()
	}
	s := *n.c.saslInfo
	return &s
}

// Mechanism returns the SASL mechanism of that name offered on the
// stream (the server's own and those modules added), for a protocol that
// runs SASL exchanges in its own elements (XEP-0388).
func (n *Negotiation) Mechanism(name string) (saslmech.Mechanism, bool) {
	if n.c.saslInfo == nil {
		n.c.offerMechanisms()
	}
	for _, e := range n.c.mechs {
		if e.h.Name() == name {
			return e.h, true
		}
	}
	return nil, false
}

// Write writes raw to the stream at once.
func (n *Negotiation) Write(raw []byte) error { return n.c.write(string(raw)) }

// Next reads the client's next top-level element (the next step of an
// exchange). An error means the stream cannot go on: return it from the
// handler.
func (n *Negotiation) Next() (*Nonza, error) {
	el, err := n.c.sc.Next()
	if err != nil {
		if se, ok := n.c.readErr(err); ok {
			err = se
		}
		n.readErr = err
		return nil, err
	}
	return &Nonza{Name: xml.Name{Space: el.Space(), Local: el.Local()}, el: el}, nil
}

// Authenticated records that the client proved it is user (a bare JID
// on the stream's host), through a protocol of the module's: the stream
// goes on without a restart, and the client binds a resource next. It
// returns an error for a JID that is no account of the host, and a
// *saslmech.Error, whose condition and text the client is to get, when a
// LoginGuard refuses the login; the handler then calls Failed.
func (n *Negotiation) Authenticated(user jid.JID) error {
	err := n.c.authenticate(user, n.c.stepMech)
	var se *saslmech.Error
	if errors.As(err, &se) {
		n.c.refusedStep = true
	}
	return err
}

// Begin tells the server that the client starts an authentication
// attempt with the named mechanism, for a protocol that runs SASL
// exchanges in its own elements (XEP-0388): the login guards (see
// LoginGuard) may refuse it at once, with a *saslmech.Error whose
// condition and text the client is to get; the handler then answers so
// and calls Failed.
func (n *Negotiation) Begin(mechanism string) error {
	if se := n.c.startLogin(mechanism); se != nil {
		n.c.stepCond = se.Condition
		return se
	}
	return nil
}

// Failed counts a failed authentication attempt of the stream against
// Server.MaxAuthFailures: it returns an error, to be returned by the
// handler, once there were too many. The stream is no longer
// authenticated, and a session the handler bound or resumed is given up
// (see Bind and Resume).
func (n *Negotiation) Failed() error {
	n.c.dropStepSession()
	cond := n.c.stepCond
	n.c.stepCond = ""
	if n.c.refusedStep {
		n.c.refusedStep = false
	} else {
		// The login guards' delay, before the handler answers.
		n.c.loginFailed(cond)
	}
	return n.c.failedAttempt(cond)
}

// ErrBound is Negotiation.Bind's error when the handler already bound or
// resumed a session on the stream.
var ErrBound = errors.New("treff: a session is bound already")

// ErrNotAuthenticated is Negotiation.Bind's error on a stream that has
// not authenticated.
var ErrNotAuthenticated = errors.New("treff: stream not authenticated")

// Bind binds resource to the stream (for a protocol that binds in its own
// elements, XEP-0386) and returns the new session, for the handler to
// set up (enable stream management, carbons, client state) and to queue
// its answer on with Session.SendNonza. An empty resource gets a random
// one. An invalid resource is an error.
//
// The session becomes the stream's when the handler returns nil: it
// then enters the routing table, replacing a session with the same full
// JID as resource binding does (RFC 6120 7.7.2.2), and its writer
// starts, with what the handler queued before anything the session is
// sent. Until then nobody can route to it. If the handler fails, or
// calls Failed, the session is dropped: it never was routable, and the
// session-closed hooks run for the modules that set it up.
func (n *Negotiation) Bind(resource string) (*Session, error) {
	c := n.c
	switch {
	case c.user.Equal(jid.JID{}):
		return nil, ErrNotAuthenticated
	case c.bound != nil || c.resumed != nil:
		return nil, ErrBound
	}
	if resource == "" {
		resource = newResource()
	}
	full, err := jid.New(c.user.Localpart(), c.user.Domainpart(), resource)
	if err != nil {
		return nil, fmt.Errorf("treff: invalid resource: %w", err)
	}
	s := newSession(c, full)
	s.mu.Lock()
	s.writing, s.held = true, true
	s.mu.Unlock()
	c.bound = s
	return s, nil
}

// Features returns the <stream:features/> element for the stream as it
// is now, which XEP-0388 sends after <success/> (no stream restart): the
// features of an authenticated stream (resource binding and the
// modules'), or none once the handler bound or resumed a session.
func (n *Negotiation) Features() string { return n.c.features() }

// Step runs one step of a SASL exchange of the stream (for a protocol
// that carries SASL in its own elements): it is x.Step with the
// server's recovery of a mechanism's panic and its mapping of errors.
// cond is the RFC 6120 failure condition when err is not nil
// ("not-authorized", "malformed-request", "temporary-auth-failure", ...).
func (n *Negotiation) Step(ctx context.Context, m saslmech.Mechanism, x saslmech.Exchange, in []byte) (out []byte, user jid.JID, cond string, err error) {
	out, user, err = n.c.srv.stepSASL(ctx, m.Name(), x, in)
	n.c.noteTry(m.Name(), x)
	if err != nil {
		n.c.tryBinding = errors.Is(err, saslmech.ErrBindingRefused)
		cond := n.c.srv.saslCondition(m.Name(), err)
		n.c.stepCond = cond // for the log line of Failed
		return nil, jid.JID{}, cond, err
	}
	if user.Localpart() != "" {
		// For the log line of Authenticated.
		n.c.stepMech = m.Name()
		if sx, ok := x.(*scramExchange); ok {
			n.c.binding = sx.ss.ChannelBinding()
		}
	}
	return out, user, "", nil
}

// StreamError is an error that closes a stream with a stream error
// condition (RFC 6120 4.9.3), such as "not-authorized" or
// "policy-violation", and an optional text. A NegotiationHandler returns
// one to close the stream so.
type StreamError struct {
	Condition string
	Text      string
	// App is an application-specific condition element (RFC 6120
	// 4.9.4), serialised, or "".
	App string
	// Data is the condition element's character data, escaped when
	// written: the alternate host[:port] of "see-other-host" (RFC 6120
	// 4.9.3.19), or "".
	Data string
}

func (e *StreamError) Error() string { return "treff: stream error " + e.Condition }

// NegotiationHandler handles the top-level elements of one namespace
// that clients send before binding a resource (see
// Registry.HandleNegotiation). It returns nil to go on reading the
// stream; an error closes it: a *StreamError with its condition, the
// error from Negotiation.Next or Failed as it is, anything else (logged)
// with <internal-server-error/>.
type NegotiationHandler interface {
	HandleNegotiation(ctx context.Context, n *Negotiation, el *Nonza) error
}

// NegotiationHandlerFunc adapts a function to a NegotiationHandler.
type NegotiationHandlerFunc func(ctx context.Context, n *Negotiation, el *Nonza) error

// HandleNegotiation calls f(ctx, n, el).
func (f NegotiationHandlerFunc) HandleNegotiation(ctx context.Context, n *Negotiation, el *Nonza) error {
	return f(ctx, n, el)
}

// HandleNegotiation makes h handle the elements of namespace ns that a
// client sends on a TLS-protected stream before it binds a resource
// (XEP-0388's <authenticate xmlns='urn:xmpp:sasl:2'/>, or XEP-0198's
// <resume/>, say). The namespaces of RFC 6120's own steps (SASL, TLS,
// binding) and jabber:client are the server's; registering one of them,
// or a taken one, panics.
func (r *Registry) HandleNegotiation(ns string, h NegotiationHandler) {
	switch ns {
	case "", nsClient, nsSASL, nsTLS, nsBind, nsSession, nsStream:
		panic(fmt.Sprintf("treff: module %s registers negotiation elements of namespace %q, which the server handles", r.module, ns))
	}
	if r.m.negotiation == nil {
		r.m.negotiation = make(map[string]hook[NegotiationHandler])
	}
	if old, ok := r.m.negotiation[ns]; ok {
		panic(fmt.Sprintf("treff: module %s registers negotiation elements of namespace %q, already registered by %s", r.module, ns, old.module))
	}
	r.m.negotiation[ns] = hook[NegotiationHandler]{module: r.module, h: h}
}

// negotiationStep hands el to the module registered for its namespace,
// if any, and returns whether there was one and the error to close the
// stream with.
func (c *conn) negotiationStep(x *xmlscan.Element) (bool, error) {
	space := x.Space()
	e, ok := c.srv.mods.negotiation[space]
	if !ok || space == "" {
		return false, nil
	}
	el := &Nonza{Name: xml.Name{Space: space, Local: x.Local()}, el: x}
	n := &Negotiation{c: c}
	err := c.srv.handleNegotiation(c.ctx, e, n, el)
	if err == nil {
		return true, nil
	}
	if n.readErr != nil && errors.Is(err, n.readErr) {
		return true, n.readErr // the stream broke, or a stream error to send
	}
	var se streamError
	var pe *StreamError
	switch {
	case errors.As(err, &se):
		return true, se
	case errors.As(err, &pe):
		return true, streamError{cond: pe.Condition, text: pe.Text, app: pe.App, data: pe.Data}
	case errors.Is(err, errPanicked):
		return true, streamError{cond: "internal-server-error"}
	}
	c.srv.logger().Error("negotiation step failed", "module", e.module, "err", err)
	return true, streamError{cond: "internal-server-error"}
}
