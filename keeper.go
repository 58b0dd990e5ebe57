package treff

import (
	"bytes"
	"context"
	"errors"

	"github.com/treff-im/treff/stanza"
)

// A Keeper makes the messages a hibernating session is sent survive a
// crash (XEP-0198 5; "acknowledged means stored"). While a resumable
// session has no connection, every message it is sent exists only in
// the session's memory, yet the server has acknowledged it to its
// sender; the Keeper writes it to storage before the sender's stanza
// counts as handled. Register one with Registry.KeepUnacked; the offline
// module is the built-in one (it keeps them in offline storage, where
// they are found at the account's next login after a crash).
//
// The server asks the Keeper about every message a hibernating session
// is sent, and about the ones its client had not acknowledged when the
// connection broke (with Server.KeepInFlight: about every message a
// session with stream management is sent, connected or not), except errors, groupchat and headline messages and
// the copies an OnUnacked hook claims (carbons, archive results).
// What it keeps it releases once the resumed client acknowledges the
// message, or once the message was delivered to another session of the
// account after the session ended. What is kept when the session ends
// without being resumed and no other session may take it is left to the
// Keeper (Leave: it is already where the account's next session will
// find it) instead of being routed again. After a crash, neither
// happens: what was kept is found at the next login.
type Keeper interface {
	// Keep stores st, sent to s, before it returns. kept reports false
	// for a message not worth keeping (a chat state), which stays in
	// memory only. An error means the message could not be stored: it
	// is not given to the session, and its sender gets the error (as
	// stanza.FromError reads it; <internal-server-error/> otherwise).
	Keep(ctx context.Context, s *Session, st *Stanza) (id uint64, kept bool, err error)
	// Release forgets kept messages: they reached the client or another
	// session. Unknown ids are ignored.
	Release(ctx context.Context, s *Session, ids []uint64) error
	// Leave hands kept messages over: s ended before its client
	// acknowledged them and no other session took them, so they are the
	// account's undelivered messages now (until then they belonged to
	// s, and another session of the account must not be given them).
	Leave(ctx context.Context, s *Session, ids []uint64)
}

// KeepUnacked makes k the server's Keeper. The last module to call it
// wins; a server without one keeps a hibernating session's messages in
// memory only.
func (r *Registry) KeepUnacked(k Keeper) {
	kh := newHook(r, k)
	r.m.keeper = &kh
}

// keepError is Session.Send's error when the Keeper could not store a
// message for a hibernating session; the router bounces the message
// with it.
type keepError struct{ err error }

// NotKept returns the error a Remote's Send reports when the session's
// node could not store a message it had to keep (Server.KeepInFlight):
// err is why, as stanza.FromError reads it (a stanza.Error such as
// <resource-constraint/>; <internal-server-error/> otherwise). The
// router then answers the message's sender with that error instead of
// counting the message as handled.
func NotKept(err error) error { return &keepError{err} }

func (e *keepError) Error() string { return "treff: message not kept: " + e.err.Error() }
func (e *keepError) Unwrap() error { return e.err }

// keeps reports whether the Keeper is asked about messages to s: it is
// resumable and has no working connection, or it has stream management
// and the server keeps messages in flight (Server.KeepInFlight). Under
// s.mu.
func (s *Session) keepsLocked() bool {
	if !s.sm.on || s.srv.mods.keeper == nil {
		return false
	}
	return s.srv.KeepInFlight || s.offline && s.sm.resume > 0
}

// keep asks the Keeper to store a message for s. It returns id 0 for a
// stanza that stays in memory only.
func (srv *Server) keep(s *Session, raw []byte) (id uint64, err error) {
	if !bytes.HasPrefix(raw, []byte("<message")) {
		return 0, nil // presence, IQs: not for the Keeper
	}
	st, perr := NewStanza(raw)
	if perr != nil || st.Kind != KindMessage || st.Type == "error" || st.Type == "groupchat" || st.Type == "headline" {
		return 0, nil
	}
	ctx := srv.detachedContext()
	if srv.unackedHandled(ctx, st) {
		return 0, nil // a copy for this session alone
	}
	k := srv.mods.keeper
	defer func() {
		if r := recover(); r != nil {
			srv.panicked(k.module, r)
			id, err = 0, &keepError{stanza.InternalServerError}
		}
	}()
	id, kept, err := k.h.Keep(ctx, s, st)
	switch {
	case err != nil:
		if _, ok := stanza.FromError(err); !ok {
			srv.logger().Error("keeping a message failed", "module", k.module, "err", err)
		}
		return 0, &keepError{err}
	case !kept:
		return 0, nil
	case id == 0:
		// A broken Keeper: the message stays in memory, as without one.
		srv.logger().Error("keeper returned id 0", "module", k.module)
		return 0, nil
	}
	return id, nil
}

// release tells the Keeper that kept messages reached a client.
func (srv *Server) release(s *Session, ids []uint64) {
	srv.toKeeper(ids, func(ctx context.Context, k Keeper, module string) {
		if err := k.Release(ctx, s, ids); err != nil {
			// The messages will be delivered once more at the next
			// login: a copy too many, not a loss.
			srv.logger().Error("releasing kept messages failed", "module", module, "n", len(ids), "err", err)
		}
	})
}

// leave tells the Keeper that kept messages stay with it.
func (srv *Server) leave(s *Session, ids []uint64) {
	srv.toKeeper(ids, func(ctx context.Context, k Keeper, module string) { k.Leave(ctx, s, ids) })
}

// toKeeper calls f with the Keeper if there are ids, recovering a panic.
func (srv *Server) toKeeper(ids []uint64, f func(ctx context.Context, k Keeper, module string)) {
	if len(ids) == 0 || srv.mods.keeper == nil {
		return
	}
	k := srv.mods.keeper
	defer func() {
		if r := recover(); r != nil {
			srv.panicked(k.module, r)
		}
	}()
	f(srv.detachedContext(), k.h, k.module)
}

// keptError returns the error of a failed keep among Send's errors.
func keptError(err error) (error, bool) {
	if err == nil {
		return nil, false // without the errors.As, whose target escapes
	}
	var ke *keepError
	if errors.As(err, &ke) {
		return ke.err, true
	}
	return nil, false
}
