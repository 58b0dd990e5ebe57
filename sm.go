package treff

import (
	"context"
	"errors"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/treff-im/treff/internal/xmlscan"
	"github.com/treff-im/treff/router"
)

// Stream management (XEP-0198): acknowledgements in both directions and
// resumption of a session whose connection broke.
//
// Outbound, every stanza a session is sent after <enabled/> is counted
// and kept until the client acknowledges it; the writer asks for an
// acknowledgement (<r/>) in the same write as a batch of new stanzas, so
// a busy session pays one small element per batch, not per stanza.
// Inbound, the read loop counts the stanzas it handled.
//
// A resumable session whose connection is lost (not closed with
// </stream:stream> or a stream error) hibernates: it stays in the routing
// table, keeps counting and keeping what it is sent, and waits up to
// Server.ResumeTimeout for a new connection of the same account to send
// <resume/>. The same *Session then continues on the new connection, so
// modules keep their per-session state; it first retransmits what the
// client did not acknowledge. A session that is not resumed in time ends
// like any other, and the messages it was sent but whose receipt the
// client never acknowledged are routed again by the bare-JID rules (to
// another resource, or to offline storage), never silently dropped.

const (
	nsSM = "urn:xmpp:sm:3"
	// smRequest asks the client for an acknowledgement.
	smRequest = "<r xmlns='" + nsSM + "'/>"
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
	id      string   // resumption id; "" if the session is not resumable
	out     uint32   // stanzas sent since <enabled/> (mod 2^32)
	acked   uint32   // the client's last acknowledged count
	unacked [][]byte // sent stanzas not acknowledged yet, oldest first
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
	if !m.on || m.asked || len(m.unacked) == 0 || s.final || s.offline {
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
	if s.closed || s.ended || !s.sm.on || s.sm.asked || len(s.sm.unacked) == 0 || s.final || s.offline {
		return
	}
	s.sm.asked = true
	s.enqueueLocked([]byte(smRequest))
}

// resumeTimeout is ResumeTimeout or its default; 0 if resumption is off.
func (srv *Server) resumeTimeout() time.Duration {
	switch {
	case srv.ResumeTimeout < 0:
		return 0
	case srv.ResumeTimeout == 0:
		return 5 * time.Minute
	}
	return srv.ResumeTimeout
}

// smTable holds the server's resumable and hibernating sessions.
type smTable struct {
	mu  sync.Mutex
	ids map[string]*Session   // by resumption id
	hib map[*Session]struct{} // hibernating
}

func (srv *Server) forgetResumable(s *Session) {
	srv.sm.mu.Lock()
	defer srv.sm.mu.Unlock()
	if s.sm.id != "" && srv.sm.ids[s.sm.id] == s {
		delete(srv.sm.ids, s.sm.id)
	}
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

func smFailed(cond string) []byte {
	return []byte("<failed xmlns='" + nsSM + "'><" + cond + " xmlns='" + nsStanzas + "'/></failed>")
}

// smElement handles a stream management element from a bound client.
func (s *Session) smElement(el *xmlscan.Element) {
	switch el.Name {
	case "enable":
		s.enableSM(el)
	case "r":
		s.mu.Lock()
		if s.sm.on && !s.closed {
			s.enqueueLocked(appendSMCount(nil, "a", s.smIn.Load(), ""))
		}
		s.mu.Unlock()
	case "a":
		v, _ := el.Attr("h")
		h, err := strconv.ParseUint(v, 10, 32)
		s.mu.Lock()
		if !s.sm.on {
			s.mu.Unlock()
			s.closeStream(streamError{cond: "unsupported-stanza-type", text: "stream management is not enabled"})
			return
		}
		released, ok := s.sm.ack(uint32(h))
		if err != nil || !ok {
			out := s.sm.out
			s.mu.Unlock()
			s.closeStream(streamError{cond: "undefined-condition", text: "acknowledged more stanzas than were sent",
				app: "<handled-count-too-high xmlns='" + nsSM + "' h='" + strconv.FormatUint(h, 10) + "' send-count='" + strconv.FormatUint(uint64(out), 10) + "'/>"})
			return
		}
		s.sm.asked = false
		if !s.closed && s.smAskLocked() {
			// More was sent since the request: ask again.
			s.enqueueLocked([]byte(smRequest))
		}
		s.mu.Unlock()
		s.srv.release(s, released)
	case "resume":
		s.Send(smFailed("unexpected-request"))
	default:
		s.closeStream(streamError{cond: "unsupported-stanza-type"})
	}
}

// enableSM answers <enable/> (XEP-0198 3).
func (s *Session) enableSM(el *xmlscan.Element) {
	srv := s.srv
	v, _ := el.Attr("resume")
	resume := (v == "true" || v == "1") && srv.resumeTimeout() > 0
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	if s.sm.on {
		s.enqueueLocked(smFailed("unexpected-request"))
		return
	}
	b := []byte("<enabled xmlns='" + nsSM + "'")
	if resume {
		id := newID() + newID()
		srv.sm.mu.Lock()
		if srv.sm.ids == nil {
			srv.sm.ids = make(map[string]*Session)
		}
		srv.sm.ids[id] = s
		srv.sm.mu.Unlock()
		s.sm.id = id
		b = append(b, " id='"+id+"' resume='true' max='"...)
		b = strconv.AppendInt(b, int64(srv.resumeTimeout()/time.Second), 10)
		b = append(b, '\'')
	}
	b = append(b, "/>"...)
	// Counting starts with the stanzas queued after <enabled/>.
	s.enqueueLocked(b)
	s.sm.on = true
	s.smOn.Store(true)
}

func appendSMCount(b []byte, name string, h uint32, previd string) []byte {
	b = append(b, '<')
	b = append(b, name...)
	b = append(b, " xmlns='"+nsSM+"' h='"...)
	b = strconv.AppendUint(b, uint64(h), 10)
	b = append(b, '\'')
	if previd != "" {
		b = append(b, " previd='"...)
		b = append(b, previd...)
		b = append(b, '\'')
	}
	return append(b, "/>"...)
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
	ok := s.sm.id != "" && !s.ended && !s.noResume && !srv.closing.Load() && (s.offline || !s.final && connLost(err))
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
	s.hibTimer = time.AfterFunc(srv.resumeTimeout(), s.expire)
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
	s.srv.forgetResumable(s)
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

// resume handles <resume/> on a new authenticated stream c (XEP-0198 5):
// it returns the resumed session, or nil after answering <failed/>.
func (c *conn) resume(el *xmlscan.Element) (*Session, error) {
	srv := c.srv
	previd, _ := el.Attr("previd")
	hv, _ := el.Attr("h")
	h, herr := strconv.ParseUint(hv, 10, 32)
	srv.sm.mu.Lock()
	s := srv.sm.ids[previd]
	srv.sm.mu.Unlock()
	if s == nil || !s.jid.Bare().Equal(c.user) || herr != nil {
		return nil, c.write(string(smFailed("item-not-found")))
	}
	if !s.takeOver(5 * time.Second) {
		return nil, c.write(string(smFailed("item-not-found")))
	}
	s.mu.Lock()
	if s.ended || !s.hib {
		s.mu.Unlock()
		return nil, c.write(string(smFailed("item-not-found")))
	}
	released, ok := s.sm.ack(uint32(h))
	if !ok {
		out := s.sm.out
		s.mu.Unlock()
		return nil, streamError{cond: "undefined-condition", text: "acknowledged more stanzas than were sent",
			app: "<handled-count-too-high xmlns='" + nsSM + "' h='" + hv + "' send-count='" + strconv.FormatUint(uint64(out), 10) + "'/>"}
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
	s.enqueueLocked(appendSMCount(nil, "resumed", s.smIn.Load(), previd))
	for _, raw := range s.sm.unacked {
		s.enqueueLocked(raw)
	}
	s.mu.Unlock()
	srv.sm.mu.Lock()
	delete(srv.sm.hib, s)
	srv.sm.mu.Unlock()
	srv.release(s, released)
	c.ic.setHard(time.Time{})
	c.sess.Store(s)
	srv.logger().Debug("session resumed", "jid", s.jid.String())
	if c.shutting.Load() {
		s.closeStream(streamError{cond: "system-shutdown"})
	}
	if e := c.revoked.Load(); e != nil {
		s.closeStream(*e)
	}
	return s, nil
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
	switch act {
	case router.Deliver:
		for _, e := range targets {
			if s, ok := e.(sender); ok {
				s.Send(st.raw)
			}
		}
		return
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
// for its client to resume it (XEP-0198). What it is sent meanwhile is
// kept for the client; a module that expects an answer (a ping) should
// wait until the session is back.
func (s *Session) Hibernating() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.offline && !s.ended
}
