package treff

import (
	"context"
	"encoding/xml"
	"errors"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff/internal/xmlscan"
	"github.com/treff-im/treff/router"
	"github.com/treff-im/treff/stanza"
)

// ErrSessionClosed is returned by Session.Send after the session ended or
// started closing.
var ErrSessionClosed = errors.New("treff: session closed")

// Session is a client's stream with a bound resource. Modules receive it in
// session hooks and may send to it; the server owns its life. In a
// cluster (package cluster), Server.Sessions also returns the sessions
// bound on other nodes: Remote reports true for them, and Send and Close
// reach them through their node (see RemoteSession).
type Session struct {
	srv      *Server
	cp       atomic.Pointer[conn] // the current connection (replaced on resumption)
	jid      jid.JID
	fromAttr string // " from='full'" for stamping
	ctx      context.Context
	cancel   context.CancelFunc
	done     func()        // called by the read loop after end
	gone     chan struct{} // closed when end has run every hook
	pmu      sync.Mutex
	parked   bool        // no goroutine reads; unpark starts one
	timer    *time.Timer // idle or hard deadline while parked
	fd       int32       // socket registered by watch, or -1; under poller.mu
	// transport is what Stats counts the session under once it is
	// routable (attach), transportNone before.
	transport int8

	available atomic.Bool
	priority  atomic.Int32
	presence  atomic.Pointer[Stanza] // last available broadcast presence

	// remote is set on a session bound on another node of a cluster
	// (remote.go); such a session has no connection.
	remote Remote
	smu    sync.Mutex
	shared [][2]string // SetShared's keys and values, under smu

	values     sessionValues // modules' SessionState
	valuesGone bool          // under values.mu: the session ended

	mu      sync.Mutex
	queue   [][]byte
	queued  int
	writing bool
	closed  bool          // no more Send
	final   bool          // the closing tag is queued
	stuck   bool          // closed because the client does not read: writes get a short deadline
	idle    chan struct{} // made by a waiter (waitWritten), closed when the writer stops

	// Stream management (sm.go) and what a Holder keeps back (nonza.go),
	// under mu.
	sm       smState
	smOn     atomic.Bool   // sm.on, for the read loop
	smIn     atomic.Uint32 // stanzas handled from the client (XEP-0198 'h')
	hold     holdState
	offline  bool          // no working connection: lost, detaching or hibernating
	hib      bool          // hibernating: waiting for the client to resume
	ended    bool          // end or expire has begun; never resumed
	noResume bool          // closed on purpose: end instead of hibernating
	resumed  bool          // run skips the bound hooks
	hibDone  chan struct{} // closed when a lost connection was detached
	hibTimer *time.Timer

	// held: a negotiation step bound or resumed the session
	// (Negotiation.Bind, Resume) and has not returned yet. The writer
	// waits; what the step queues (SendNonza) goes out first, then the
	// stanzas in later (sent meanwhile), or for a resumed session what
	// the client did not acknowledge.
	held  bool
	later [][]byte
}

var _ router.Entry = (*Session)(nil)

func newSession(c *conn, full jid.JID) *Session {
	ctx, cancel := context.WithCancel(c.srv.ctx)
	s := &Session{srv: c.srv, jid: full, ctx: ctx, cancel: cancel, fd: -1, transport: transportNone, gone: make(chan struct{}), hibDone: make(chan struct{})}
	s.cp.Store(c)
	s.fromAttr = " from='" + string(AppendEscaped(nil, full.String())) + "'"
	return s
}

// JID returns the session's full JID.
func (s *Session) JID() jid.JID { return s.jid }

// Available reports whether the session has sent available presence.
func (s *Session) Available() bool {
	if s.remote != nil {
		return s.remote.Available()
	}
	return s.available.Load()
}

// Priority returns the priority of the session's last available presence.
func (s *Session) Priority() int {
	if s.remote != nil {
		return s.remote.Priority()
	}
	return int(s.priority.Load())
}

// LastActivity returns when the client last sent anything (including
// whitespace keepalives); the zero time for a remote session.
func (s *Session) LastActivity() time.Time {
	if s.remote != nil {
		return time.Time{}
	}
	return time.Unix(0, s.conn().ic.last.Load())
}

// conn returns the session's current connection.
func (s *Session) conn() *conn { return s.cp.Load() }

// Context returns a context that is cancelled when the session ends.
func (s *Session) Context() context.Context { return s.ctx }

// Send queues serialised XML (a stanza or nonza) for the client and returns
// at once; the session's own writer goroutine writes it. It never blocks on
// the network. If the client lags more than Server.MaxQueue bytes behind,
// the session is closed with a <policy-violation/> stream error and Send
// returns an error. raw must not be modified after the call.
func (s *Session) Send(raw []byte) error {
	if s.remote != nil {
		return s.remote.Send(raw)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrSessionClosed
	}
	s.srv.stats.countOut(raw)
	var key uint64
	if s.keepsLocked() {
		// Hibernating: the message is stored before it counts as sent
		// (keeper.go), without holding the lock across storage.
		s.mu.Unlock()
		id, err := s.srv.keep(s, raw)
		if err != nil {
			return err
		}
		s.mu.Lock()
		if s.closed {
			// The session ended meanwhile; what was kept waits for the
			// account's next session.
			s.mu.Unlock()
			if id != 0 {
				s.srv.leave(s, []uint64{id})
				return nil
			}
			return ErrSessionClosed
		}
		key = id
	}
	if s.hold.h != nil {
		if key == 0 && s.holdLocked(raw) {
			s.mu.Unlock()
			return nil
		}
		// Something that matters: what was held goes first, in order.
		if e := s.sendHeldLocked(); e != nil {
			s.mu.Unlock()
			s.closeStream(*e)
			return ErrSessionClosed
		}
	}
	if e := s.sendLocked(raw); e != nil {
		s.mu.Unlock()
		s.closeStream(*e)
		if key != 0 {
			s.srv.leave(s, []uint64{key})
			return nil // stored for the account's next session
		}
		return ErrSessionClosed
	}
	if key != 0 && s.sm.on {
		s.sm.setKey(len(s.sm.unacked)-1, key)
	}
	s.mu.Unlock()
	return nil
}

// sendLocked counts raw for stream management and queues it unless the
// connection is gone (a resumed session gets it from the unacknowledged
// stanzas). It returns the stream error to close with if the client is
// too far behind.
func (s *Session) sendLocked(raw []byte) *streamError {
	if s.sm.on {
		if e := s.sm.sent(raw, s.srv.maxQueue()); e != nil {
			s.srv.stats.queueDrops.Add(1)
			return e
		}
	}
	if s.offline {
		return nil
	}
	if s.held {
		if !s.resumed {
			s.later = append(s.later, raw)
		} // else it is in s.sm.unacked, sent on release
		return nil
	}
	if queued := s.queued; queued+len(raw) > s.srv.maxQueue() {
		s.srv.logger().Warn("closing slow session", "jid", s.jid.String(), "queued", queued)
		s.srv.stats.queueDrops.Add(1)
		return &streamError{cond: "policy-violation", text: "too slow to read", stuck: true}
	}
	s.enqueueLocked(raw)
	return nil
}

// maxQueue is MaxQueue or its default.
func (srv *Server) maxQueue() int {
	if srv.MaxQueue <= 0 {
		return 1 << 20
	}
	return srv.MaxQueue
}

func (s *Session) enqueueLocked(raw []byte) {
	s.queue = append(s.queue, raw)
	s.queued += len(raw)
	if !s.writing {
		s.writing = true
		go s.writeLoop()
	}
}

// closeStream queues a stream error (unless cond is empty) and the closing
// tag, refuses further sends and gives the client a moment to close its
// side before the connection is dropped.
func (s *Session) closeStream(e streamError) {
	if s.remote != nil {
		s.remote.Close(e.cond, e.text)
		return
	}
	s.mu.Lock()
	s.noResume = true
	if s.hib {
		s.mu.Unlock()
		s.expire()
		return
	}
	if s.final || s.offline {
		s.closed = true
		s.mu.Unlock()
		return
	}
	s.closed, s.final = true, true
	s.stuck = e.stuck
	tail := "</stream:stream>"
	if e.cond != "" {
		tail = e.xml() + tail
	}
	s.enqueueLocked([]byte(tail))
	c := s.conn()
	s.mu.Unlock()
	// The reader goroutine waits for the client's </stream:stream> at most
	// this long.
	c.ic.setHard(time.Now().Add(2 * time.Second))
	c.nc.SetReadDeadline(time.Now().Add(2 * time.Second))
	if e.stuck {
		// The writer, blocked on a client that does not read, gives up as
		// soon: the session ends in seconds, not after WriteTimeout.
		c.nc.SetWriteDeadline(time.Now().Add(2 * time.Second))
	}
	s.unpark(nil)
}

// Close ends the session with the given stream error condition (e.g.
// "policy-violation"; empty for none). It returns at once.
func (s *Session) Close(condition, text string) {
	s.closeStream(streamError{cond: condition, text: text})
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

func (s *Session) writeLoop() {
	srv := s.srv
	c := s.conn()
	wt := durationOr(srv.WriteTimeout, 30*time.Second)
	var batch [][]byte
	for {
		s.mu.Lock()
		if len(s.queue) == 0 {
			if cap(s.queue) == 0 && cap(batch) <= 64 {
				// The next writer starts with this goroutine's spare
				// slice: the queue then takes the next stanza without
				// allocating.
				s.queue = batch[:0]
			}
			s.writing = false
			s.writerStoppedLocked()
			s.mu.Unlock()
			return
		}
		batch, s.queue = s.queue, batch[:0]
		s.queued = 0
		// Ask for an acknowledgement of what this batch carries
		// (XEP-0198), in the same write, or soon.
		ask := s.smAskLocked()
		askFor := s.sm.ask
		deadline := wt
		if s.stuck {
			deadline = 2 * time.Second
		}
		s.mu.Unlock()

		bp := bufPool.Get().(*[]byte)
		buf := (*bp)[:0]
		for i, b := range batch {
			buf = append(buf, b...)
			batch[i] = nil
		}
		if ask {
			buf = append(buf, askFor...)
		}
		c.rw.SetWriteDeadline(time.Now().Add(deadline))
		_, err := c.rw.Write(buf)
		if cap(buf) <= 64<<10 {
			*bp = buf
			bufPool.Put(bp)
		}
		if err != nil {
			s.mu.Lock()
			// The connection is gone. A resumable session keeps counting
			// what it is sent until the read loop has detached it.
			s.offline = true
			if s.sm.resume == 0 {
				s.closed, s.final = true, true
			}
			s.queue, s.queued = nil, 0
			s.mu.Unlock()
			c.nc.Close()
			s.unpark(nil)
		}
	}
}

// drain waits until the writer has written everything queued, at most
// the write timeout.
func (s *Session) drain() {
	done := make(chan struct{})
	go func() { s.waitWritten(); close(done) }()
	select {
	case <-done:
	case <-time.After(durationOr(s.srv.WriteTimeout, 30*time.Second)):
	}
}

// waitWritten waits until the writer has written everything queued.
func (s *Session) waitWritten() {
	s.mu.Lock()
	if !s.writing {
		s.mu.Unlock()
		return
	}
	if s.idle == nil {
		s.idle = make(chan struct{})
	}
	idle := s.idle
	s.mu.Unlock()
	<-idle
}

// writerStoppedLocked tells those waiting in waitWritten that the writer
// stopped. The channel is made only when someone waits: a writer starts
// and stops for every burst a session is sent.
func (s *Session) writerStoppedLocked() {
	if s.idle != nil {
		close(s.idle)
		s.idle = nil
	}
}

// run runs the session-bound hooks and the read loop; done is called when
// the session has ended.
func (s *Session) run(done func()) {
	s.done = done
	if !s.resumed {
		for _, h := range s.srv.mods.bound {
			if !s.srv.sessionHook(s.ctx, h, s) {
				// The module could not set the session up: it would
				// work in part only.
				s.closeStream(streamError{cond: "internal-server-error"})
				break
			}
		}
	}
	s.loop()
}

// loop is the session's read loop. When the client has sent nothing more,
// it parks the session: the goroutine ends and a new one with a small
// stack waits for the next byte, then loops again.
func (s *Session) loop() {
	c := s.conn()
	for {
		if c.sc.Buffered() == 0 {
			c.ic.armed = true
		}
		el, err := c.sc.Next()
		if err == xmlscan.ErrNoData {
			c.srv.parks.Add(1)
			c.sc.Release()
			s.mu.Lock()
			if !s.writing {
				s.queue = nil // a parked session keeps no queue either
			}
			s.mu.Unlock()
			s.park()
			return
		}
		if err != nil {
			if s.hibernate(c, err) {
				return
			}
			s.readFailed(c, err)
			s.end(c)
			if s.done != nil {
				s.done()
			}
			return
		}
		if s.closing() {
			continue // wait for the client's </stream:stream>; process nothing
		}
		s.dispatch(el)
	}
}

// dispatch processes one top-level element from the client. Modules'
// panics are recovered where the server calls them; one that reaches
// here comes from the session's own code, so the stream is closed.
func (s *Session) dispatch(el *xmlscan.Element) {
	defer func() {
		if r := recover(); r != nil {
			s.srv.panicked(coreModule, r)
			s.closeStream(streamError{cond: "internal-server-error"})
		}
	}()
	ns := el.NS()
	switch {
	case ns != "" && ns != nsClient || strings.IndexByte(el.Name, ':') >= 0:
		if space := el.Space(); space != "" {
			if h, ok := s.srv.mods.nonzas[space]; ok {
				s.srv.handleNonza(s.ctx, h, s, &Nonza{Name: xml.Name{Space: space, Local: el.Local()}, el: el})
				return
			}
		}
		s.closeStream(streamError{cond: "unsupported-stanza-type"})
		return
	case el.Name != "message" && el.Name != "presence" && el.Name != "iq":
		s.closeStream(streamError{cond: "unsupported-stanza-type"})
		return
	}
	if s.smOn.Load() {
		s.smIn.Add(1)
	}
	s.handle(el)
}

// park lets the session wait for its client without a goroutine where the
// platform allows (see watch), else in a new goroutine with a small stack.
// unpark starts the read loop again; the idle or hard deadline does so
// with a timeout error.
func (s *Session) park() {
	s.pmu.Lock()
	s.parked = true
	if d := s.conn().ic.parkDeadline(); !d.IsZero() {
		if s.timer == nil {
			s.timer = time.AfterFunc(time.Until(d), s.parkTimeout)
		} else {
			s.timer.Reset(time.Until(d))
		}
	}
	s.pmu.Unlock()
	if s.watch() {
		return
	}
	s.pmu.Lock()
	still := s.parked
	s.parked = false
	if still && s.timer != nil {
		s.timer.Stop()
	}
	s.pmu.Unlock()
	if still {
		go s.wait()
	}
}

func (s *Session) parkTimeout() { s.unpark(os.ErrDeadlineExceeded) }

// unpark starts the read loop of a parked session in a new goroutine; err,
// if not nil, is what its next read returns. It does nothing if the
// session is not parked.
func (s *Session) unpark(err error) {
	s.pmu.Lock()
	if !s.parked {
		s.pmu.Unlock()
		return
	}
	s.parked = false
	if s.timer != nil {
		s.timer.Stop()
	}
	c := s.conn()
	if err != nil {
		c.ic.pendErr = err
	}
	c.ic.woken = true
	s.pmu.Unlock()
	go s.loop()
}

// wait waits for the client's next byte in a goroutine, then loops.
func (s *Session) wait() {
	s.conn().ic.wait()
	s.loop()
}

// closing reports whether the closing tag has been queued.
func (s *Session) closing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.final
}

func (s *Session) readFailed(c *conn, err error) {
	s.mu.Lock()
	final := s.final
	s.mu.Unlock()
	if final {
		return // we were closing; whatever ended the read is fine
	}
	if errors.Is(err, xmlscan.ErrStreamEnd) {
		s.closeStream(streamError{})
		return
	}
	if se, ok := c.readErr(err); ok {
		s.closeStream(se)
		return
	}
	// connection lost: nothing more can be written
	s.mu.Lock()
	s.closed, s.final = true, true
	s.mu.Unlock()
}

// end removes the session and closes the connection c.
func (s *Session) end(c *conn) {
	srv := s.srv
	s.mu.Lock()
	s.closed, s.ended = true, true
	pending, keys := s.sm.takeUnacked()
	s.mu.Unlock()
	srv.forgetHibernating(s)
	srv.table.Remove(s)
	s.available.Store(false)
	s.drain()
	s.unwatch()
	c.nc.Close()
	// Rerouted before the session-closed hooks: whoever learns that the
	// session ended finds its unacknowledged messages delivered or stored.
	srv.reroute(s, pending, keys)
	s.finish()
}

// finish runs the session-closed hooks once the session left the routing
// table and its connection is closed.
func (s *Session) finish() {
	srv := s.srv
	if t := s.transport; t != transportNone {
		srv.stats.sessions[t].Add(-1)
	}
	srv.table.Remove(s)
	s.available.Store(false)
	s.cancel()
	ctx := srv.detachedContext()
	for _, h := range srv.mods.closed {
		srv.sessionHook(ctx, h, s)
	}
	s.dropValues()
	srv.logger().Debug("session ended", "jid", s.jid.String())
	close(s.gone)
}

// handle processes one stanza from the client.
func (s *Session) handle(el *xmlscan.Element) {
	srv := s.srv
	st, err := stanzaFrom(el)
	if st == nil {
		s.closeStream(streamError{cond: "bad-format"})
		return
	}
	st.From = s.jid
	srv.stats.countIn(st.Kind)
	// Stamp 'from' (RFC 6120 8.1.2.1): whatever the client wrote is replaced.
	if el.NS() == "" {
		st.raw = el.AppendWithout(make([]byte, 0, len(el.Raw)+len(s.fromAttr)), s.fromAttr, "from")
	} else {
		// An explicit xmlns='jabber:client' (WebSocket clients write it on
		// every stanza) goes: the stanza may travel on to another server,
		// whose stream's default namespace is jabber:server.
		st.raw = el.AppendWithout(make([]byte, 0, len(el.Raw)+len(s.fromAttr)), s.fromAttr, "from", "xmlns")
	}
	if err != nil {
		st.To = jid.JID{}
		s.replyError(st, errJIDMalformed)
		return
	}
	if st.Kind == KindIQ {
		switch st.Type {
		case "get", "set":
			if st.ID == "" || st.Payload.Local == "" {
				s.replyError(st, errBadRequest)
				return
			}
		case "result", "error":
			if st.ID == "" {
				s.replyError(st, errBadRequest)
				return
			}
		default:
			s.replyError(st, errBadRequest)
			return
		}
	}
	if st.Kind == KindIQ && st.Type == "set" && st.Payload.Space == nsSession && st.To.Equal(jid.JID{}) {
		// The legacy session request (RFC 3921 3) that some clients
		// (Strophe.js, under Converse) send after binding: a no-op.
		s.Send(AppendResult(nil, st, nil))
		return
	}
	if st.Kind == KindPresence && st.To.Equal(jid.JID{}) {
		s.updatePresence(st)
	}
	if srv.stanzaHooks(s.ctx, srv.mods.fromClient, st) {
		return
	}
	srv.route(s.ctx, st, s)
}

func (s *Session) replyError(st *Stanza, e stanza.Error) {
	if st.Type == "error" {
		return
	}
	// The error comes from the server: 'from' is the addressee or the host.
	from := st.To
	if from.Equal(jid.JID{}) {
		from, _ = jid.New("", s.jid.Domainpart(), "")
	}
	reply := *st
	reply.To = from
	s.Send(AppendError(nil, &reply, e))
}

// updatePresence tracks availability and priority of the session's own
// broadcast presence (RFC 6121 4.2, 4.5).
func (s *Session) updatePresence(st *Stanza) {
	switch st.Type {
	case "":
		s.priority.Store(int32(presencePriority(st)))
		s.presence.Store(st)
		s.available.Store(true)
	case "unavailable":
		s.available.Store(false)
		s.presence.Store(nil)
	default:
		return
	}
	s.srv.sessionChanged(s)
}

// presencePriority returns the value of the presence's own <priority/>
// child (RFC 6121 4.7.2.3): 0 if absent or invalid, clamped to -128..127.
// Elements named priority inside extensions do not count.
func presencePriority(st *Stanza) int {
	if !strings.Contains(st.el.Raw, "priority") {
		return 0
	}
	d := st.Decoder()
	depth := 0
	for {
		tok, err := d.Token()
		if err != nil {
			return 0
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			if depth == 2 && t.Name.Local == "priority" && (t.Name.Space == "" || t.Name.Space == nsClient) {
				var v string
				if err := d.DecodeElement(&v, &t); err != nil {
					return 0
				}
				p, err := strconv.Atoi(strings.TrimSpace(v))
				if err != nil {
					return 0
				}
				return max(-128, min(127, p))
			}
		case xml.EndElement:
			depth--
		}
	}
}
