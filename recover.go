package treff

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff/saslmech"
)

// A panic in a module's handler or hook harms one stanza, never the
// process (as net/http's conn.serve recovers a handler's panic): the
// server logs the module's name and the stack once, answers the stanza
// with <internal-server-error/> where it can, and goes on. A panic in the
// session code itself closes that stream only, since its state can no
// longer be trusted.
//
// The log carries the panic's value only when it is a runtime error
// (a nil map, an index out of range), whose text holds no data from the
// stanza; else only its type: a module's panic(fmt.Sprint(st)) must not
// put a message or an address into the log.

// coreModule names the server's own code in panic logs.
const coreModule = "treff"

// LogPanic logs a panic that a module recovered in a goroutine of its
// own (a listener, a timer), the way the server logs the panics it
// recovers from handlers and hooks: the module's name and the stack once,
// the panic's value only if it is a runtime error. Use it as
//
//	defer func() {
//		if r := recover(); r != nil {
//			srv.LogPanic("mymodule", r)
//			// close what r left in doubt
//		}
//	}()
func (srv *Server) LogPanic(module string, r any) { srv.panicked(module, r) }

// panicked logs a panic recovered from module's code.
func (srv *Server) panicked(module string, r any) {
	srv.panics.Add(1)
	var v string
	if re, ok := r.(runtime.Error); ok {
		v = re.Error()
	} else {
		v = fmt.Sprintf("panic value of type %T", r)
	}
	buf := make([]byte, 32<<10)
	buf = buf[:runtime.Stack(buf, false)]
	srv.logger().Error("panic recovered", "module", module, "panic", v, "stack", string(buf))
}

// stanzaHooks runs StanzaHooks in order until one handles st, under one
// recover for them all (a deferred call per hook cost the chat path about
// 1 % of its CPU). A panic counts as having handled st: it goes no
// further, and its sender gets <internal-server-error/>.
func (srv *Server) stanzaHooks(ctx context.Context, hs []hook[StanzaHook], st *Stanza) (handled bool) {
	if len(hs) == 0 {
		return false
	}
	i := 0
	defer func() {
		if r := recover(); r != nil {
			srv.panicked(hs[i].module, r)
			srv.answerError(ctx, st, errInternalServerError)
			handled = true
		}
	}()
	for ; i < len(hs); i++ {
		if hs[i].h(ctx, st) {
			return true
		}
	}
	return false
}

// deliveredHooks runs DeliveredHooks; a panic is logged and the hooks
// after the one that panicked still run (the stanza was delivered).
func (srv *Server) deliveredHooks(ctx context.Context, hs []hook[DeliveredHook], st *Stanza, to []*Session) {
	for i := 0; i < len(hs); {
		i = srv.deliveredFrom(ctx, hs, i, st, to)
	}
}

// deliveredFrom runs hs[i:] and returns the index after the last one
// that ran (one that panicked counts as run).
func (srv *Server) deliveredFrom(ctx context.Context, hs []hook[DeliveredHook], i int, st *Stanza, to []*Session) (next int) {
	next = i
	defer func() {
		if r := recover(); r != nil {
			srv.panicked(hs[next].module, r)
			next++
		}
	}()
	for ; next < len(hs); next++ {
		hs[next].h(ctx, st, to)
	}
	return next
}

// sessionHook runs a SessionHook and reports whether it returned (false:
// it panicked).
func (srv *Server) sessionHook(ctx context.Context, e hook[SessionHook], s *Session) (ok bool) {
	defer func() {
		if r := recover(); r != nil {
			srv.panicked(e.module, r)
			ok = false
		}
	}()
	e.h(ctx, s)
	return true
}

// accountHook runs an AccountHook; a panic becomes an error.
func (srv *Server) accountHook(ctx context.Context, e hook[AccountHook], user jid.JID) (err error) {
	defer func() {
		if r := recover(); r != nil {
			srv.panicked(e.module, r)
			err = fmt.Errorf("treff: module %s panicked in an account hook", e.module)
		}
	}()
	if err := e.h(ctx, user); err != nil {
		return fmt.Errorf("treff: module %s: %w", e.module, err)
	}
	return nil
}

// handleIQ runs an IQ handler; a panic becomes <internal-server-error/>.
func (srv *Server) handleIQ(ctx context.Context, e iqEntry, st *Stanza) (payload []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			srv.panicked(e.module, r)
			payload, err = nil, errInternalServerError
		}
	}()
	return e.h.HandleIQ(ctx, st)
}

// handleStanza hands st to a module's StanzaHandler; a panic is answered
// with <internal-server-error/>.
func (srv *Server) handleStanza(ctx context.Context, e *domainEntry, st *Stanza) {
	defer func() {
		if r := recover(); r != nil {
			srv.panicked(e.module, r)
			srv.answerError(ctx, st, errInternalServerError)
		}
	}()
	e.h.HandleStanza(ctx, st)
}

// renderFeature serialises a stream feature; a panic in its Render
// leaves it out.
func (srv *Server) renderFeature(e hook[StreamFeature], c *conn) (xml string) {
	defer func() {
		if r := recover(); r != nil {
			srv.panicked(e.module, r)
			xml = ""
		}
	}()
	return e.h.xml(c)
}

// offers asks a mechanism whether to offer it; a panic leaves it out.
func (srv *Server) offers(module string, o saslmech.Offerer, s *saslmech.Stream) (ok bool) {
	defer func() {
		if r := recover(); r != nil {
			srv.panicked(module, r)
			ok = false
		}
	}()
	return o.Offer(s)
}

// startSASL starts a mechanism's exchange; a panic becomes an error.
func (srv *Server) startSASL(ctx context.Context, e hook[saslmech.Mechanism], s *saslmech.Stream) (x saslmech.Exchange, err error) {
	defer func() {
		if r := recover(); r != nil {
			srv.panicked(e.module, r)
			x, err = nil, errPanicked
		}
	}()
	// Each exchange gets its own copy: a mechanism may keep it.
	c := *s
	if x = e.h.Start(ctx, &c); x == nil {
		return nil, errPanicked
	}
	return x, nil
}

// stepSASL runs one step of an exchange; a panic becomes an error.
func (srv *Server) stepSASL(ctx context.Context, module string, x saslmech.Exchange, in []byte) (out []byte, user jid.JID, err error) {
	defer func() {
		if r := recover(); r != nil {
			srv.panicked(module, r)
			out, user, err = nil, jid.JID{}, errPanicked
		}
	}()
	return x.Step(ctx, in)
}

// handleNegotiation runs a NegotiationHandler; a panic becomes
// errPanicked (the stream closes).
func (srv *Server) handleNegotiation(ctx context.Context, e hook[NegotiationHandler], n *Negotiation, el *Nonza) (err error) {
	defer func() {
		if r := recover(); r != nil {
			srv.panicked(e.module, r)
			err = errPanicked
		}
	}()
	return e.h.HandleNegotiation(ctx, n, el)
}

// errPanicked stands for a recovered panic (already logged).
var errPanicked = errors.New("treff: module panicked")

// handleNonza runs a NonzaHandler; a panic closes the stream, whose
// state the handler may have left half changed.
func (srv *Server) handleNonza(ctx context.Context, e hook[NonzaHandler], s *Session, n *Nonza) {
	defer func() {
		if r := recover(); r != nil {
			srv.panicked(e.module, r)
			s.closeStream(streamError{cond: "internal-server-error"})
		}
	}()
	e.h.HandleNonza(ctx, s, n)
}

// holderHold asks a Holder about a stanza; if it panics, the stanza is
// sent.
func (srv *Server) holderHold(h Holder, raw []byte, held [][]byte) (wait bool, sup int) {
	defer func() {
		if r := recover(); r != nil {
			srv.panicked(fmt.Sprintf("holder %T", h), r)
			wait, sup = false, -1
		}
	}()
	return h.Hold(raw, held)
}

// guardStart runs a LoginGuard's Start; a panic refuses the attempt.
func (srv *Server) guardStart(ctx context.Context, e hook[LoginGuard], a LoginAttempt) (err error) {
	defer func() {
		if r := recover(); r != nil {
			srv.panicked(e.module, r)
			err = errPanicked
		}
	}()
	return e.h.Start(ctx, a)
}

// guardAllow runs a LoginGuard's Allow; a panic refuses the login.
func (srv *Server) guardAllow(ctx context.Context, e hook[LoginGuard], a LoginAttempt) (err error) {
	defer func() {
		if r := recover(); r != nil {
			srv.panicked(e.module, r)
			err = errPanicked
		}
	}()
	return e.h.Allow(ctx, a)
}

// guardFailed runs a LoginGuard's Failed; a panic means no delay.
func (srv *Server) guardFailed(ctx context.Context, e hook[LoginGuard], a LoginAttempt) (d time.Duration) {
	defer func() {
		if r := recover(); r != nil {
			srv.panicked(e.module, r)
			d = 0
		}
	}()
	return e.h.Failed(ctx, a)
}
