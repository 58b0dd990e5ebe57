package treff

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff/internal/xmlscan"
	"github.com/treff-im/treff/router"
)

// Acknowledged delivery: the session layer's half of stream management
// (XEP-0198; the protocol is package sm). It sits here because it must
// run under the session's send lock and in its writer.
//
// Outbound, once a module calls Session.Track, every stanza the session
// is sent is counted and kept until the client acknowledges it; the
// writer adds the module's request element to a batch of new stanzas,
// so a busy session pays one small element per batch, not per stanza.
// Inbound, the read loop counts the stanzas it handled.
//
// A resumable session whose connection is lost (not closed with
// </stream:stream> or a stream error) hibernates: it stays in the routing
// table, keeps counting and keeping what it is sent, and waits for a new
// connection of the same account to resume it (Negotiation.Resume). The
// same *Session then continues on the new connection, so modules keep
// their per-session state; it first retransmits what the client did not
// acknowledge. A session that is not resumed in time ends like any
// other, and the messages it was sent but whose receipt the client never
// acknowledged are routed again by the bare-JID rules (to another
// resource, or to offline storage), never silently dropped; a Keeper
// makes them survive a crash (keeper.go).

const (
	// maxUnacked is the most stanzas a client may leave unacknowledged.
	maxUnacked = 10000
	// The server asks for an acknowledgement once smAskAfter stanzas are
	// unacknowledged, or smAskDelay after the first: a round trip per
	// stanza would cost a busy client (and the server) a read and a write
	// each time.
	smAskAfter = 8
	smAskDelay = time.Second
)

// smState is a session's stream management state, under Session.mu.
type smState struct {
	on      bool
	ask     []byte        // the element asking the client for an acknowledgement
	resume  time.Duration // how long a broken connection waits; 0: not resumable
	out     uint32        // stanzas sent since <enabled/> (mod 2^32)
	acked   uint32        // the client's last acknowledged count
	unacked [][]byte      // sent stanzas not acknowledged yet, oldest first
	// keys holds the Keeper's id of each unacked stanza it stored (0:
	// in memory only); nil while none is stored, else as long as
	// unacked.
	keys  []uint64
	bytes int  // total size of unacked
	asked bool // an <r/> is outstanding
	armed bool // timer will ask
	timer *time.Timer
}

// sent records a stanza sent to the client. It returns a stream error if
// the client leaves too much unacknowledged.
func (m *smState) sent(raw []byte, maxBytes int) *streamError {
	if len(m.unacked) >= maxUnacked || m.bytes+len(raw) > maxBytes {
		return &streamError{cond: "policy-violation", text: "too many unacknowledged stanzas"}
	}
	m.unacked = append(m.unacked, raw)
	m.bytes += len(raw)
	m.out++
	if m.keys != nil {
		m.keys = append(m.keys, 0)
	}
	return nil
}

// setKey records that the Keeper stored the unacknowledged stanza at
// index i under id.
func (m *smState) setKey(i int, id uint64) {
	if m.keys == nil {
		m.keys = make([]uint64, len(m.unacked), cap(m.unacked))
	}
	m.keys[i] = id
}

// ack applies the client's count h (XEP-0198 4): the stanzas it covers
// are forgotten. It reports false if h acknowledges more than was sent,
// and returns the Keeper's ids of the acknowledged stanzas it stored,
// to be released.
func (m *smState) ack(h uint32) (released []uint64, ok bool) {
	n := h - m.acked // both wrap at 2^32, so the difference is right
	if n > uint32(len(m.unacked)) {
		return nil, false
	}
	for i := range m.unacked[:n] {
		m.bytes -= len(m.unacked[i])
		m.unacked[i] = nil
	}
	m.unacked = m.unacked[n:]
	if m.keys != nil {
		for _, id := range m.keys[:n] {
			if id != 0 {
				released = append(released, id)
			}
		}
		m.keys = m.keys[n:]
		if !slices.ContainsFunc(m.keys, func(id uint64) bool { return id != 0 }) {
			m.keys = nil
		}
	}
	if len(m.unacked) == 0 {
		m.unacked = nil // give the backing array back
	}
	m.acked = h
	return released, true
}

// takeUnacked returns and forgets the unacknowledged stanzas and the
// Keeper's ids for them (nil if none was stored), and stops asking for
// acknowledgements.
func (m *smState) takeUnacked() (pending [][]byte, keys []uint64) {
	u, k := m.unacked, m.keys
	m.unacked, m.keys, m.bytes = nil, nil, 0
	if m.timer != nil {
		m.timer.Stop()
		m.armed = false
	}
	return u, k
}

// smAskLocked reports whether to ask for an acknowledgement now (the
// caller writes <r/>); if it is not time yet, a timer asks later.
func (s *Session) smAskLocked() bool {
	m := &s.sm
	if !m.on || m.asked || len(m.unacked) == 0 || s.final || s.offline || s.held {
		return false
	}
	if len(m.unacked) >= smAskAfter {
		m.asked = true
		return true
	}
	if !m.armed {
		m.armed = true
		if m.timer == nil {
			m.timer = time.AfterFunc(smAskDelay, s.smAskLater)
		} else {
			m.timer.Reset(smAskDelay)
		}
	}
	return false
}

func (s *Session) smAskLater() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sm.armed = false
	if s.closed || s.ended || !s.sm.on || s.sm.asked || len(s.sm.unacked) == 0 || s.final || s.offline || s.held {
		return
	}
	s.sm.asked = true
	s.enqueueLocked(s.sm.ask)
}

// smTable holds the server's hibernating sessions.
type smTable struct {
	mu  sync.Mutex
	hib map[*Session]struct{}
}

func (srv *Server) forgetHibernating(s *Session) {
	srv.sm.mu.Lock()
	defer srv.sm.mu.Unlock()
	delete(srv.sm.hib, s)
}

// hibernating returns the hibernating sessions.
func (srv *Server) hibernating() []*Session {
	srv.sm.mu.Lock()
	defer srv.sm.mu.Unlock()
	out := make([]*Session, 0, len(srv.sm.hib))
	for s := range srv.sm.hib {
		out = append(out, s)
	}
	return out
}

// ErrTracking is Session.Track's error for a session that already
// tracks delivery.
var ErrTracking = errors.New("treff: delivery already tracked")

// ErrNotTracking is Session.Acknowledge's error for a session that does
// not track delivery.
var ErrNotTracking = errors.New("treff: delivery not tracked")

// ErrNotResumable is Negotiation.Resume's error for a session that cannot
// be resumed: it ended, it is not resumable, it is another account's, or
// its old connection did not let go in time.
var ErrNotResumable = errors.New("treff: session not resumable")

// AckError is the error for an acknowledgement of more stanzas than were
// sent (XEP-0198 <handled-count-too-high/>).
type AckError struct {
	H    uint32 // the client's count
	Sent uint32 // what the server sent (mod 2^32)
}

func (e *AckError) Error() string {
	return fmt.Sprintf("treff: acknowledged %d stanzas, %d were sent", e.H, e.Sent)
}

// Track starts acknowledged delivery on the session (what XEP-0198's
// <enable/> asks for): it queues reply (the <enabled/> element, not
// counted; nil when the caller sends it otherwise, as inside XEP-0386's
// <bound/>), and from then on counts and keeps every stanza queued after
// it until the client acknowledges it (Acknowledge), and counts the
// stanzas the client sends (Handled). The writer appends ask (the <r/>
// element) to a batch once 8 stanzas are unacknowledged, or a second
// after the first. A resume duration above 0 makes the session
// resumable: a broken connection hibernates it that long instead of
// ending it. Track returns ErrTracking if the session already tracks,
// ErrSessionClosed if it is closing.
func (s *Session) Track(reply, ask []byte, resume time.Duration) error {
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		return ErrSessionClosed
	case s.sm.on:
		s.mu.Unlock()
		return ErrTracking
	}
	// Counting starts with the stanzas queued after reply.
	if reply != nil {
		s.enqueueLocked(reply)
	}
	s.sm.ask = ask
	s.sm.resume = max(resume, 0)
	s.sm.on = true
	s.smOn.Store(true)
	s.mu.Unlock()
	if s.srv.KeepInFlight {
		// A cluster publishes that the session's messages are kept
		// (KeepsInFlight): other nodes wait for that when they forward.
		s.srv.sessionChanged(s)
	}
	return nil
}

// KeepsInFlight reports whether messages sent to s are kept until its
// client acknowledges them (Server.KeepInFlight and stream management
// on), so that a node forwarding one should wait until s's node has kept
// it. A cluster publishes it with the session's row.
func (s *Session) KeepsInFlight() bool {
	return s.remote == nil && s.srv.KeepInFlight && s.smOn.Load() && s.srv.mods.keeper != nil
}

// Handled returns how many stanzas the server handled from the client
// since Track (mod 2^32, as XEP-0198's h), and whether it tracks.
func (s *Session) Handled() (h uint32, tracking bool) {
	return s.smIn.Load(), s.smOn.Load()
}

// Acknowledge applies the client's count h of the stanzas it received
// since Track (XEP-0198 <a h/>): the stanzas it covers are forgotten.
// An error is ErrNotTracking, or an *AckError if h covers more than was
// sent, after which the caller closes the stream.
func (s *Session) Acknowledge(h uint32) error {
	s.mu.Lock()
	if !s.sm.on {
		s.mu.Unlock()
		return ErrNotTracking
	}
	released, ok := s.sm.ack(h)
	if !ok {
		out := s.sm.out
		s.mu.Unlock()
		return &AckError{H: h, Sent: out}
	}
	s.sm.asked = false
	if !s.closed && s.smAskLocked() {
		// More was sent since the request: ask again.
		s.enqueueLocked(s.sm.ask)
	}
	s.mu.Unlock()
	s.srv.release(s, released)
	return nil
}

// SendNonza queues serialised XML that is not a stanza (a stream
// management or client state element) for the client: unlike Send, it
// is neither counted for acknowledgements nor held back by a Holder.
func (s *Session) SendNonza(raw []byte) error {
	if s.remote != nil {
		return ErrSessionClosed
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.offline {
		return ErrSessionClosed
	}
	s.enqueueLocked(raw)
	return nil
}

// CloseWith ends the session with the stream error e (e.g. XEP-0198's
// undefined-condition with <handled-count-too-high/> as App). It returns
// at once.
func (s *Session) CloseWith(e *StreamError) {
	s.closeStream(streamError{cond: e.Condition, text: e.Text, app: e.App, data: e.Data})
}

// connLost reports a read error that means the connection broke rather
// than that the client closed the stream or broke a rule.
func connLost(err error) bool {
	if errors.Is(err, xmlscan.ErrStreamEnd) {
		return false
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true // a silent, probably half-open, connection
	}
	_, streamErr := scanError(err)
	return !streamErr
}

// hibernate detaches a resumable session from its broken connection c
// instead of ending it, and reports whether it did.
func (s *Session) hibernate(c *conn, err error) bool {
	srv := s.srv
	s.mu.Lock()
	ok := s.sm.resume > 0 && !s.ended && !s.noResume && !srv.closing.Load() && (s.offline || !s.final && connLost(err))
	if !ok {
		s.mu.Unlock()
		return false
	}
	s.offline = true
	s.queue, s.queued = nil, 0
	s.hold = holdState{}
	s.mu.Unlock()

	c.nc.Close()
	s.drain()
	s.unwatch()
	if s.done != nil {
		s.done() // the connection is gone; the session is not
	}
	s.keepUnacked()

	srv.sm.mu.Lock()
	if srv.sm.hib == nil {
		srv.sm.hib = make(map[*Session]struct{})
	}
	srv.sm.hib[s] = struct{}{}
	srv.sm.mu.Unlock()
	s.mu.Lock()
	if s.ended || s.noResume {
		s.mu.Unlock()
		s.expire()
		return true
	}
	s.hib = true
	s.hibTimer = time.AfterFunc(s.sm.resume, s.expire)
	close(s.hibDone)
	s.mu.Unlock()
	srv.logger().Debug("session hibernating", "jid", s.jid.String())
	if srv.closing.Load() {
		s.expire()
	}
	return true
}

// keepUnacked has the Keeper store what the client had not acknowledged
// when its connection broke; what the session is sent from now on is
// kept as it comes (Send). It runs on the read loop before the session
// can be resumed, so no acknowledgement moves the list meanwhile; Send
// only appends to it.
func (s *Session) keepUnacked() {
	s.mu.Lock()
	if !s.keepsLocked() || s.ended {
		s.mu.Unlock()
		return
	}
	type item struct {
		i   int
		raw []byte
	}
	var todo []item
	for i, raw := range s.sm.unacked {
		if s.sm.keys == nil || s.sm.keys[i] == 0 {
			todo = append(todo, item{i, raw})
		}
	}
	s.mu.Unlock()
	for _, it := range todo {
		id, err := s.srv.keep(s, it.raw)
		if err != nil || id == 0 {
			// Not stored (the error is logged): it stays in memory and
			// is routed again if the session is not resumed, as without
			// a Keeper. Its sender was answered long ago.
			continue
		}
		s.mu.Lock()
		if s.ended {
			s.mu.Unlock()
			s.srv.release(s, []uint64{id}) // it was routed again with the rest
			return
		}
		s.sm.setKey(it.i, id)
		s.mu.Unlock()
	}
}

// expire ends a hibernating session that was not resumed (or must not
// be), routing again what its client did not acknowledge.
func (s *Session) expire() {
	s.mu.Lock()
	if s.ended || !s.offline {
		s.mu.Unlock()
		return
	}
	s.ended, s.closed, s.hib = true, true, false
	if s.hibTimer != nil {
		s.hibTimer.Stop()
	}
	pending, keys := s.sm.takeUnacked()
	s.mu.Unlock()
	s.srv.forgetHibernating(s)
	// Out of the routing table first, so that its messages find the
	// account's other sessions or offline storage, not itself.
	s.srv.table.Remove(s)
	s.available.Store(false)
	s.srv.reroute(s, pending, keys)
	s.finish()
}

// takeOver makes sure the session is detached from its connection: a
// client resuming a session whose old connection still looks alive (as
// happens when a phone changes networks) replaces that connection. It
// reports false if the session ended or did not let go in time.
func (s *Session) takeOver(wait time.Duration) bool {
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return false
	}
	ch := s.hibDone
	if !s.hib {
		s.offline = true // the read loop hibernates whatever it meets
		c := s.conn()
		s.mu.Unlock()
		c.nc.Close()
		s.unpark(nil)
	} else {
		s.mu.Unlock()
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
		return false
	}
	return true
}

// Resume moves the hibernating (or still connected) session s of the
// stream's account onto this stream (XEP-0198 <resume/>, before binding
// or inline in SASL2): it applies the client's count h, queues
// resumed(handled) (the <resumed/> element, with the count of stanzas
// the server handled; nothing if it returns nil) and retransmits what h
// does not cover; the session then goes on on this stream. Modules keep
// their per-session state; the session-bound hooks do not run again. An
// error is ErrNotResumable (the caller answers <failed/>), or an
// *AckError if h covers more than was sent (the caller closes the
// stream).
//
// The session's writer waits until the handler returns: what it queues
// on the session meanwhile (Session.SendNonza: the SASL2 <success/> that
// carries <resumed/>) goes out before the retransmitted stanzas and
// anything sent to the session since. If the handler fails, or calls
// Failed, the session hibernates again.
func (n *Negotiation) Resume(s *Session, h uint32, resumed func(handled uint32) []byte) error {
	c := n.c
	srv := c.srv
	if s == nil || c.user.Equal(jid.JID{}) || !s.jid.Bare().Equal(c.user) || s.srv != srv || c.bound != nil || c.resumed != nil {
		return ErrNotResumable
	}
	s.mu.Lock()
	resumable := s.sm.resume > 0
	s.mu.Unlock()
	if !resumable || !s.takeOver(5*time.Second) {
		return ErrNotResumable
	}
	// The old connection's writer, if it still runs, fails at once on
	// the closed connection.
	s.waitWritten()
	s.mu.Lock()
	if s.ended || !s.hib || s.writing {
		s.mu.Unlock()
		return ErrNotResumable
	}
	released, ok := s.sm.ack(h)
	if !ok {
		out := s.sm.out
		s.mu.Unlock()
		return &AckError{H: h, Sent: out}
	}
	s.hibTimer.Stop()
	s.hib, s.offline, s.closed, s.final = false, false, false, false
	s.hibDone = make(chan struct{})
	s.resumed = true
	s.sm.asked = false
	s.cp.Store(c)
	s.pmu.Lock()
	s.parked, s.fd = false, -1
	s.pmu.Unlock()
	// The writer waits for the handler (release).
	s.writing, s.held = true, true
	if b := resumed(s.smIn.Load()); b != nil {
		s.enqueueLocked(b)
	}
	s.mu.Unlock()
	srv.forgetHibernating(s)
	srv.release(s, released)
	c.ic.setHard(time.Time{})
	c.sess.Store(s)
	c.resumed = s
	srv.logger().Debug("session resumed", "jid", s.jid.String())
	if c.shutting.Load() {
		s.closeStream(streamError{cond: "system-shutdown"})
	}
	if e := c.revoked.Load(); e != nil {
		s.closeStream(*e)
	}
	return nil
}

// reroute handles the stanzas a session was sent but whose receipt its
// client never acknowledged, after the session left the routing table
// (XEP-0198 5 "the server SHOULD treat unacknowledged stanzas..."):
// messages go to the account's other sessions or offline storage by the
// bare-JID rules, IQ requests are answered with an error, presence is
// dropped (the next presence replaces it anyway). Errors, groupchat and
// headline messages are dropped, and so are the copies modules made for
// this session alone (carbons, archive results), which their
// OnUnacked hooks claim.
//
// What the Keeper stored (keys[i] != 0) goes to the account's other
// available sessions if it has any, and is then released; otherwise it
// stays where the Keeper put it, for the account's next session.
func (srv *Server) reroute(s *Session, pending [][]byte, keys []uint64) {
	if len(pending) == 0 {
		return
	}
	ctx := srv.detachedContext()
	var released, left []uint64
	for i, raw := range pending {
		if keys != nil && keys[i] != 0 {
			if st, err := NewStanza(raw); err == nil && srv.redeliverKept(st) {
				released = append(released, keys[i])
			} else {
				left = append(left, keys[i])
			}
			continue
		}
		st, err := NewStanza(raw)
		if err != nil {
			continue
		}
		switch st.Kind {
		case KindIQ:
			if st.Type == "get" || st.Type == "set" {
				srv.bounce(ctx, st, errServiceUnavailable)
			}
		case KindMessage:
			if st.Type == "error" || st.Type == "groupchat" || st.Type == "headline" {
				continue
			}
			if srv.unackedHandled(ctx, st) {
				continue
			}
			srv.redeliver(ctx, st)
		}
	}
	srv.release(s, released)
	srv.leave(s, left)
}

// redeliverKept delivers a message the Keeper stored to the account's
// available sessions by the bare-JID rules, and reports whether any took
// it; if none may, it is left to the Keeper.
func (srv *Server) redeliverKept(st *Stanza) bool {
	bare := st.To.Bare()
	var buf, out [8]router.Entry
	sessions := srv.table.Resources(buf[:0], bare)
	targets, act, _ := router.SelectBare(out[:0], sessions, st.Kind, st.Type)
	if act != router.Deliver {
		return false
	}
	took := false
	for _, e := range targets {
		if s, ok := e.(sender); ok && s.Send(st.raw) == nil {
			took = true
		}
	}
	return took
}

// unackedHandled runs the OnUnacked hooks. If one panics, the message is
// delivered again like any other: a copy too many rather than a message
// lost.
func (srv *Server) unackedHandled(ctx context.Context, st *Stanza) (handled bool) {
	hs := srv.mods.unacked
	i := 0
	defer func() {
		if r := recover(); r != nil {
			srv.panicked(hs[i].module, r)
			handled = false
		}
	}()
	for ; i < len(hs); i++ {
		if hs[i].h(ctx, st) {
			return true
		}
	}
	return false
}

// redeliver delivers a message again by the bare-JID rules (RFC 6121
// 8.5.2), without the account hooks it passed the first time (it was
// archived, filtered and stamped then).
func (srv *Server) redeliver(ctx context.Context, st *Stanza) {
	bare := st.To.Bare()
	if bare.Localpart() == "" || !srv.isHost(bare.Domainpart()) {
		return
	}
	var buf, out [8]router.Entry
	sessions := srv.table.Resources(buf[:0], bare)
	targets, act, fallback := router.SelectBare(out[:0], sessions, st.Kind, st.Type)
	if act == router.Deliver {
		took := false
		for _, e := range targets {
			if s, ok := e.(sender); ok && s.Send(st.raw) == nil {
				took = true
			}
		}
		if took {
			return
		}
		// Every target failed (ending too, or on a node that died): as
		// if there were none, so that the message reaches offline
		// storage instead of being dropped.
		_, act, fallback = router.SelectBare(out[:0], nil, st.Kind, st.Type)
	}
	switch act {
	case router.Undeliverable:
		if srv.stanzaHooks(ctx, srv.mods.undeliver, st) {
			return
		}
		if fallback != router.ErrorReply {
			return
		}
	}
	srv.bounce(ctx, st, errServiceUnavailable)
}

// Hibernating reports whether the session lost its connection and waits
// for its client to resume it (XEP-0198): it is detached from the
// connection, and what its client had not acknowledged is with the
// Keeper. What it is sent meanwhile is kept for the client; a module
// that expects an answer (a ping) should wait until the session is back.
func (s *Session) Hibernating() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hib && !s.ended
}

// release lets the writer of a session that a negotiation step bound or
// resumed start, once the step succeeded: after what the step queued
// come the stanzas sent to the session meanwhile, or, for a resumed
// session, what its client did not acknowledge.
func (s *Session) release() {
	s.mu.Lock()
	s.held = false
	if s.resumed {
		for _, raw := range s.sm.unacked {
			s.queue = append(s.queue, raw)
			s.queued += len(raw)
		}
	} else {
		for _, raw := range s.later {
			s.queue = append(s.queue, raw)
			s.queued += len(raw)
		}
	}
	s.later = nil
	s.mu.Unlock()
	go s.writeLoop()
}

// rehibernate puts a session that a failed negotiation step resumed back
// to waiting for its client, as it was before Resume (what was queued
// for the failed stream is dropped; what the client did not acknowledge
// is kept).
func (s *Session) rehibernate() {
	srv := s.srv
	s.mu.Lock()
	s.held = false
	s.queue, s.queued = nil, 0
	s.writing = false
	s.writerStoppedLocked()
	s.offline, s.hib = true, true
	s.hibTimer = time.AfterFunc(s.sm.resume, s.expire)
	close(s.hibDone)
	s.mu.Unlock()
	srv.sm.mu.Lock()
	if srv.sm.hib == nil {
		srv.sm.hib = make(map[*Session]struct{})
	}
	srv.sm.hib[s] = struct{}{}
	srv.sm.mu.Unlock()
	srv.logger().Debug("session hibernating again", "jid", s.jid.String())
	if srv.closing.Load() {
		s.expire()
	}
}
