package treff

import (
	"context"
	"errors"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff/router"
)

// Remote is a client session bound on another node of a cluster, as a
// cluster-wide routing table (package cluster) knows it from that node's
// announcements. The table wraps it with Server.RemoteSession, so that
// modules find it among an account's sessions (Server.Sessions) and send
// to it like to a local one; they need no cluster-specific code.
type Remote interface {
	router.Entry
	// Presence returns the session's last available broadcast presence
	// (Session.Presence on its own node), or nil.
	Presence() *Stanza
	// Shared returns a value its node set with Session.SetShared.
	Shared(key string) string
	// Send forwards raw to the session's node, which hands it to the
	// session. It must not block on the network, except that for a
	// session whose node keeps messages in flight (Session.KeepsInFlight
	// there) it waits (for a bounded time) until that node has kept a
	// message of type chat or normal, so that the message
	// survives the node's death before its sender is told it was
	// handled; if the node could not keep it, Send returns NotKept's
	// error, and ErrSessionClosed if the session is gone.
	Send(raw []byte) error
	// Close asks the session's node to close it with the stream error
	// condition (empty for none).
	Close(condition, text string)
}

// RemoteSession returns a Session standing for r, for a cluster table's
// entries: JID, Available, Priority, Presence, Shared, Send, Close and
// Context work as on a local session (Send and Close through r), modules'
// SessionState is this node's own, and Remote reports true. Call
// RemoteEnded when r's row is gone. Everything else (stream management,
// holders, LastActivity) is for local sessions: on a remote one it does
// nothing and reports a closed or zero state.
func (srv *Server) RemoteSession(r Remote) *Session {
	srv.ctxOnce.Do(srv.makeContext)
	ctx, cancel := context.WithCancel(srv.ctx)
	return &Session{srv: srv, jid: r.JID(), remote: r, ctx: ctx, cancel: cancel, fd: -1, transport: transportNone, gone: make(chan struct{}), hibDone: make(chan struct{}), closed: true}
}

// RemoteEnded ends a Session that RemoteSession made, once its row left
// the cluster table: its Context ends and this node's module state for it
// is dropped. Session-closed hooks run on the session's own node, not
// here. It does nothing for a local session or a second time.
func (srv *Server) RemoteEnded(s *Session) {
	if s.remote == nil {
		return
	}
	s.mu.Lock()
	done := s.ended
	s.ended = true
	s.mu.Unlock()
	if done {
		return
	}
	s.cancel()
	s.dropValues()
	close(s.gone)
}

// Remote reports whether s is bound on another node of a cluster.
func (s *Session) Remote() bool { return s.remote != nil }

// Presence returns the last available presence the session's client
// broadcast (a <presence/> without 'to', with 'from' stamped), or nil
// if it has sent none or went unavailable since. For a remote session it
// is the one its node announced.
func (s *Session) Presence() *Stanza {
	if s.remote != nil {
		return s.remote.Presence()
	}
	return s.presence.Load()
}

// SetShared sets a short value that a cluster publishes with the
// session's row, so that other nodes read it with Shared on their
// Session for it (a module's per-session setting that matters for
// delivery, such as message carbons). An empty value removes the key.
// Keys are namespaces or similar unique strings. It does nothing on a
// remote session. Outside a cluster it is just per-session state.
func (s *Session) SetShared(key, value string) {
	if s.remote != nil {
		return
	}
	s.smu.Lock()
	changed := false
	if i := s.findShared(key); i >= 0 {
		if value == "" {
			s.shared = append(s.shared[:i], s.shared[i+1:]...)
			changed = true
		} else if s.shared[i][1] != value {
			s.shared[i][1] = value
			changed = true
		}
	} else if value != "" {
		s.shared = append(s.shared, [2]string{key, value})
		changed = true
	}
	s.smu.Unlock()
	if changed {
		s.srv.sessionChanged(s)
	}
}

// SharedDirected is the Shared key under which the presence module
// (package roster) publishes the JIDs a session sent directed presence to
// (RFC 6121 4.6) and that do not get its broadcasts anyway, one per line.
// When the session's node dies, another node of a cluster reads it from
// the session's row and sends them the unavailable presence the dead
// node would have sent (package cluster). JIDs contain no line breaks
// (RFC 7622: no control characters).
const SharedDirected = "urn:treff:directed"

func (s *Session) findShared(key string) int {
	for i, kv := range s.shared {
		if kv[0] == key {
			return i
		}
	}
	return -1
}

// Shared returns the value set with SetShared for key, or "".
func (s *Session) Shared(key string) string {
	if s.remote != nil {
		return s.remote.Shared(key)
	}
	s.smu.Lock()
	defer s.smu.Unlock()
	if i := s.findShared(key); i >= 0 {
		return s.shared[i][1]
	}
	return ""
}

// SharedValues returns a copy of every key and value set with SetShared,
// for a cluster table to publish.
func (s *Session) SharedValues() map[string]string {
	if s.remote != nil {
		return nil
	}
	s.smu.Lock()
	defer s.smu.Unlock()
	if len(s.shared) == 0 {
		return nil
	}
	m := make(map[string]string, len(s.shared))
	for _, kv := range s.shared {
		m[kv[0]] = kv[1]
	}
	return m
}

// sessionChanged tells the table that a local session's availability,
// priority, presence or shared values changed, if it wants to know
// (router.Updater).
func (srv *Server) sessionChanged(s *Session) {
	if u, ok := srv.table.(router.Updater); ok && srv.table != nil {
		u.Update(s)
	}
}

// ErrNoSession is returned by Deliver when no local session is bound to
// the full JID and the stanza could not go elsewhere.
var ErrNoSession = errors.New("treff: no such local session")

// Deliver hands raw, a stanza that another node of a cluster routed to
// the local session bound to the full JID to, to that session. If the
// session has gone meanwhile, a message of type chat or normal goes to
// the account's other local sessions by the bare-JID rules, or to
// offline storage (the OnUndeliverable hooks), like the unacknowledged
// messages of a session that ends; anything else is dropped and Deliver
// returns ErrNoSession. It never forwards to another node again, so a
// stale table cannot make a stanza circle.
func (srv *Server) Deliver(ctx context.Context, to jid.JID, raw []byte) error {
	if err := srv.init(); err != nil {
		return err
	}
	if e := srv.table.Lookup(to); e != nil {
		if s, ok := e.(*Session); ok && s.remote == nil {
			if err := s.Send(raw); !errors.Is(err, ErrSessionClosed) {
				return err
			}
		}
	}
	st, err := NewStanza(raw)
	if err != nil {
		return err
	}
	if st.Kind != KindMessage || (st.Type != "" && st.Type != "chat" && st.Type != "normal") {
		return ErrNoSession
	}
	var buf, lbuf, out [8]router.Entry
	live := lbuf[:0]
	for _, e := range srv.table.Resources(buf[:0], to.Bare()) {
		if s, ok := e.(*Session); ok && s.remote == nil {
			live = append(live, e)
		}
	}
	targets, act, _ := router.SelectBare(out[:0], live, st.Kind, st.Type)
	if act == router.Deliver {
		for _, e := range targets {
			if e.(*Session).Send(raw) == nil {
				return nil
			}
		}
	}
	if srv.stanzaHooks(ctx, srv.mods.undeliver, st) {
		srv.stats.offline.Add(1)
		return nil
	}
	return ErrNoSession
}

// Clustered reports whether the server's Table is cluster-wide (it
// implements router.Updater), so that the account's sessions may be on
// other nodes: a module that skips work when no local session needs it
// (no session has carbons enabled) must not skip it then.
func (srv *Server) Clustered() bool {
	_, ok := srv.Table.(router.Updater)
	return ok
}
