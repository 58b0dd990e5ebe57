package bosh

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/internal/xmlscan"
	"github.com/treff-im/treff/internal/xmlsplit"
)

// request is one HTTP request of a session, from its arrival to its
// response. Several HTTP requests may wait for the same request value: a
// client that repeats a rid gets that rid's response.
type request struct {
	rid  uint64
	el   *xmlscan.Element // the body, until applied to the stream
	done chan struct{}    // closed when resp and status are set

	resp   []byte
	status int

	creation     bool // the session creation request
	needFeatures bool // answer once the stream features arrive
	featuresAt   int  // session.features when the request was applied
	timer        *time.Timer
}

// cacheSize is how many answered requests a session keeps for clients
// that repeat a rid (more than the 'requests' window needs).
const cacheSize = 4

// session is one BOSH session and the virtual connection the server's
// session layer reads and writes (a net.Conn): reads return the payloads
// of the client's requests, in rid order; writes never block, their
// elements wait for the next response.
type session struct {
	h          *Handler
	sid        string
	host, lang string
	wait       time.Duration
	hold       int
	requests   int
	inactivity time.Duration
	maxPause   time.Duration
	ver        string
	legacy     bool // the client sent no 'ver': HTTP error codes
	remote     net.Addr
	local      net.Addr
	maxQueue   int        // bytes of output waiting for a response
	maxIn      int        // bytes of input the server has not read yet
	addr       netip.Addr // the client's address, for MaxSessionsPerAddress only
	counted    bool       // addr counts against MaxSessionsPerAddress

	mu      sync.Mutex
	changed chan struct{} // closed and replaced when input, closed or the read deadline change

	// Input.
	in           []byte
	readDeadline time.Time
	closed       bool // the virtual connection is closed

	// Output.
	out         []byte // written, not yet a whole element
	pending     []byte // whole elements for the next response
	streamID    string
	features    int    // <stream:features/> elements written so far
	serverDone  bool   // the server wrote its closing tag
	clientDone  bool   // the client terminated the session
	termCond    string // condition of the terminate response
	termPayload []byte // the stream error, if any
	termSent    bool
	gone        bool // removed from the handler

	// Requests.
	nextRID  uint64 // the next rid to apply to the stream
	queued   map[uint64]*request
	held     []*request // applied, not answered, in rid order
	cache    [cacheSize]*request
	cacheN   int
	idle     *time.Timer // inactivity, while no request is held or queued
	idleGen  int
	pauseFor time.Duration
}

var errTooSlow = errors.New("bosh: the client does not fetch its data")

// header is the stream header the session layer reads for a new stream.
func (s *session) header() string {
	b := []byte("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='")
	b = treff.AppendEscaped(b, s.host)
	b = append(b, "' version='1.0'"...)
	if s.lang != "" {
		b = append(b, " xml:lang='"...)
		b = treff.AppendEscaped(b, s.lang)
		b = append(b, '\'')
	}
	return string(append(b, '>'))
}

// submit takes a request of the session. It returns the request to wait
// for, or nil and a response to send at once.
func (s *session) submit(rid uint64, el *xmlscan.Element) (*request, int, []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gone {
		return nil, http.StatusOK, terminateBody("item-not-found", nil)
	}
	s.stopIdleLocked()
	s.pauseFor = 0
	if rid < s.nextRID {
		// A repeat: the client lost the response, or gave up waiting.
		for _, r := range s.held {
			if r.rid == rid {
				return r, 0, nil
			}
		}
		for _, r := range s.cache {
			if r != nil && r.rid == rid {
				return r, 0, nil
			}
		}
		return nil, s.failLocked("item-not-found"), terminateBody("item-not-found", nil)
	}
	if rid >= s.nextRID+uint64(s.requests) {
		return nil, s.failLocked("item-not-found"), terminateBody("item-not-found", nil)
	}
	if r := s.queued[rid]; r != nil {
		return r, 0, nil
	}
	r := &request{rid: rid, el: el, done: make(chan struct{})}
	s.queued[rid] = r
	for i := 0; i < s.requests; i++ {
		q := s.queued[s.nextRID]
		if q == nil {
			break
		}
		delete(s.queued, q.rid)
		s.applyLocked(q)
	}
	if s.queued[rid] == r {
		// A request is missing before this one: wait for it, but not
		// forever.
		r.timer = time.AfterFunc(2*s.wait, func() { s.gapExpired(r) })
	}
	s.flushLocked()
	return r, 0, nil
}

// applyLocked appends a request's payload to the stream and holds it.
func (s *session) applyLocked(r *request) {
	el := r.el
	r.el = nil
	s.nextRID = r.rid + 1
	s.held = append(s.held, r)
	r.timer = time.AfterFunc(s.wait, func() { s.expire(r) })
	if s.endedLocked() {
		return // answered with a terminate body
	}
	data := el.Inner()
	if v, ok := xboshAttr(el, "restart"); ok && v == "true" {
		if to := attr(el, "to"); to != "" {
			s.host = to
		}
		if l, ok := el.Attr("xml:lang"); ok {
			s.lang = l
		}
		s.appendInLocked(s.header())
		r.needFeatures, r.featuresAt = true, s.features
	}
	switch {
	case strings.TrimSpace(data) != "":
		s.appendInLocked(data)
	case !r.needFeatures:
		// An empty poll is a whitespace keepalive: the server's idle
		// timeout counts from the client's last request.
		s.appendInLocked(" ")
	}
	if attr(el, "type") == "terminate" {
		s.appendInLocked("</stream:stream>")
		s.clientDone = true
		return
	}
	if d, ok := seconds(attr(el, "pause")); ok && d > 0 {
		// XEP-0124 section 10: answer everything now; the inactivity
		// limit until the next request is the pause.
		s.pauseFor = min(d, s.maxPause)
		first := true
		for len(s.held) > 0 {
			h := s.held[0]
			s.held = s.held[1:]
			var payload []byte
			if first {
				payload, s.pending = s.pending, nil
				first = false
			}
			s.answerLocked(h, payload, false)
		}
	}
}

// appendInLocked hands data to the session layer's reads.
func (s *session) appendInLocked(data string) {
	if s.closed {
		return
	}
	if len(s.in)+len(data) > s.maxIn {
		s.failLocked("policy-violation")
		return
	}
	s.in = append(s.in, data...)
	s.broadcastLocked()
}

func (s *session) broadcastLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *session) endedLocked() bool { return s.closed || s.serverDone || s.clientDone }

// flushLocked answers the held requests that can be answered: all of them
// once the stream is over; else the oldest when there is data for it, or
// when more than 'hold' requests are held.
func (s *session) flushLocked() {
	for len(s.held) > 0 {
		r := s.held[0]
		if s.endedLocked() {
			payload := s.pending
			s.pending = nil
			s.held = s.held[1:]
			s.answerLocked(r, payload, true)
			continue
		}
		if r.needFeatures && s.features <= r.featuresAt {
			break
		}
		if len(s.pending) == 0 && len(s.held) <= s.hold {
			break
		}
		payload := s.pending
		s.pending = nil
		s.held = s.held[1:]
		s.answerLocked(r, payload, false)
	}
	if s.termSent {
		s.removeLocked()
	}
	s.updateIdleLocked()
}

// answerLocked sets r's response and wakes whoever waits for it.
func (s *session) answerLocked(r *request, payload []byte, terminate bool) {
	if r.resp != nil {
		return // answered already
	}
	if r.timer != nil {
		r.timer.Stop()
	}
	r.status = http.StatusOK
	var b []byte
	if terminate {
		cond := s.termCond
		if cond == "" && s.termPayload != nil {
			cond = "remote-stream-error"
		}
		if s.legacy {
			r.status = legacyStatus(cond)
		}
		b = terminateBody(cond, append(payload, s.termPayload...))
		s.termSent = true
		// Gone before its client reads this: a client that terminated
		// may start a new session at once, within MaxSessionsPerAddress.
		s.removeLocked()
	} else {
		b = []byte("<body xmlns='" + NS + "'")
		if r.creation {
			b = append(b, " xmlns:xmpp='"+NSXBOSH+"' sid='"+s.sid+"' wait='"+secs(s.wait)+
				"' requests='"+strconv.Itoa(s.requests)+"' hold='"+strconv.Itoa(s.hold)+
				"' inactivity='"+secs(s.inactivity)+"' polling='2' maxpause='"+secs(s.maxPause)+
				"' ver='"+s.ver+"' from='"...)
			b = treff.AppendEscaped(b, s.host)
			b = append(b, "' authid='"...)
			b = treff.AppendEscaped(b, s.streamID)
			b = append(b, "' xmpp:version='1.0' xmpp:restartlogic='true'"...)
		}
		if len(payload) == 0 {
			b = append(b, "/>"...)
		} else {
			b = append(b, '>')
			b = append(b, payload...)
			b = append(b, "</body>"...)
		}
	}
	r.resp = b
	s.cache[s.cacheN%cacheSize] = r
	s.cacheN++
	close(r.done)
}

// expire answers a request held for 'wait'.
func (s *session) expire(r *request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, h := range s.held {
		if h == r {
			s.held = append(s.held[:i], s.held[i+1:]...)
			s.answerLocked(r, nil, s.endedLocked())
			s.flushLocked()
			return
		}
	}
}

// gapExpired ends the session when a request before r never came.
func (s *session) gapExpired(r *request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.queued[r.rid] == r {
		s.failLocked("item-not-found")
	}
}

// failLocked terminates the session with a condition: every waiting
// request gets the terminate body, the virtual connection closes. It
// returns the HTTP status for the condition.
func (s *session) failLocked(cond string) int {
	if !s.termSent && s.termCond == "" {
		s.termCond = cond
	}
	s.closeLocked()
	for rid, q := range s.queued {
		delete(s.queued, rid)
		s.answerLocked(q, nil, true)
	}
	s.flushLocked()
	s.termSent = true
	s.removeLocked()
	if s.legacy {
		return legacyStatus(cond)
	}
	return http.StatusOK
}

func (s *session) closeLocked() {
	if !s.closed {
		s.closed = true
		s.broadcastLocked()
	}
}

func (s *session) removeLocked() {
	if s.gone {
		return
	}
	s.gone = true
	s.stopIdleLocked()
	s.h.remove(s)
}

func (s *session) stopIdleLocked() {
	if s.idle != nil {
		s.idle.Stop()
		s.idle = nil
		s.idleGen++
	}
}

// updateIdleLocked runs the inactivity timer while no request is held or
// queued.
func (s *session) updateIdleLocked() {
	if s.gone || len(s.held) > 0 || len(s.queued) > 0 {
		s.stopIdleLocked()
		return
	}
	if s.idle != nil {
		return
	}
	d := s.inactivity
	if s.pauseFor > 0 {
		d = s.pauseFor
	}
	s.idleGen++
	gen := s.idleGen
	s.idle = time.AfterFunc(d, func() { s.idleExpired(gen) })
}

func (s *session) idleExpired(gen int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if gen != s.idleGen || s.idle == nil {
		return
	}
	s.idle = nil
	if !s.endedLocked() {
		s.h.Server.Log().Debug("bosh session inactive", "after", s.inactivity)
	}
	s.closeLocked()
	s.removeLocked()
}

// Read returns the next input of the stream, waiting for a request to
// bring some (or for the read deadline).
// Transport names the transport for treff.Server.Stats (see ServeConn).
func (s *session) Transport() string { return "bosh" }

func (s *session) Read(p []byte) (int, error) {
	s.mu.Lock()
	for {
		if len(s.in) > 0 {
			n := copy(p, s.in)
			s.in = s.in[n:]
			if len(s.in) == 0 {
				s.in = nil
			}
			s.mu.Unlock()
			return n, nil
		}
		if s.closed {
			s.mu.Unlock()
			return 0, io.EOF
		}
		d := s.readDeadline
		if !d.IsZero() && !time.Now().Before(d) {
			s.mu.Unlock()
			return 0, os.ErrDeadlineExceeded
		}
		ch := s.changed
		s.mu.Unlock()
		if d.IsZero() {
			<-ch
		} else {
			t := time.NewTimer(time.Until(d))
			select {
			case <-ch:
			case <-t.C:
			}
			t.Stop()
		}
		s.mu.Lock()
	}
}

// Write takes what the session layer writes; whole elements wait for the
// next response. It never blocks; if the client leaves more than
// maxQueue bytes unfetched, the session ends.
func (s *session) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, net.ErrClosed
	}
	if s.clientDone || s.serverDone {
		return len(p), nil // nobody reads it
	}
	s.out = append(s.out, p...)
	for i := 0; i < len(s.out); i++ { // bounded: each pass consumes bytes
		n := xmlsplit.ElementEnd(s.out)
		if n == 0 {
			break
		}
		s.takeLocked(bytes.TrimSpace(s.out[:n]))
		s.out = s.out[n:]
	}
	if len(bytes.TrimSpace(s.out)) == 0 {
		s.out = nil
	}
	if len(s.pending)+len(s.out) > s.maxQueue {
		s.failLocked("policy-violation")
		return 0, errTooSlow
	}
	s.flushLocked()
	return len(p), nil
}

// takeLocked files one element the server wrote.
func (s *session) takeLocked(el []byte) {
	switch {
	case len(el) == 0 || bytes.HasPrefix(el, []byte("<?")):
	case bytes.HasPrefix(el, []byte("<stream:stream")):
		selfClosed := append(bytes.Clone(bytes.TrimSuffix(el, []byte(">"))), "/>"...)
		if hdr, err := xmlscan.Parse(selfClosed, 0); err == nil {
			s.streamID = attr(hdr, "id")
		}
	case bytes.HasPrefix(el, []byte("</stream:stream")):
		// Nothing follows: the session layer's reads end too.
		s.serverDone = true
		s.closeLocked()
	case bytes.HasPrefix(el, []byte("<stream:error")):
		s.termPayload = bytes.Clone(xmlsplit.Standalone(el))
		if bytes.Contains(el, []byte("<host-unknown")) {
			s.termCond = "host-unknown"
		} else if bytes.Contains(el, []byte("<system-shutdown")) {
			s.termCond = "system-shutdown"
		}
	default:
		if bytes.HasPrefix(el, []byte("<stream:features")) {
			s.features++
		}
		s.pending = append(s.pending, xmlsplit.Standalone(el)...)
	}
}

// Close closes the virtual connection; the next response (or a held one)
// terminates the session.
func (s *session) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeLocked()
	s.flushLocked()
	return nil
}

func (s *session) LocalAddr() net.Addr  { return s.local }
func (s *session) RemoteAddr() net.Addr { return s.remote }

func (s *session) SetDeadline(t time.Time) error { return s.SetReadDeadline(t) }

func (s *session) SetReadDeadline(t time.Time) error {
	s.mu.Lock()
	s.readDeadline = t
	if !s.closed {
		s.broadcastLocked()
	}
	s.mu.Unlock()
	return nil
}

// SetWriteDeadline does nothing: writes never block.
func (s *session) SetWriteDeadline(time.Time) error { return nil }

var _ net.Conn = (*session)(nil)
