package component

import (
	"context"
	"crypto/rand"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/internal/xmlscan"
)

const (
	nsStream  = "http://etherx.jabber.org/streams"
	nsStreams = "urn:ietf:params:xml:ns:xmpp-streams"
	nsClient  = "jabber:client"
	nsPing    = "urn:xmpp:ping"
	// closeTimeout bounds the write of the closing stream error.
	closeTimeout = 2 * time.Second
)

// item is one stanza (or the server's ping, with st nil) waiting to be
// written to a component.
type item struct {
	st  *treff.Stanza
	raw []byte
}

// stream is one component connection.
type stream struct {
	m      *Module
	nc     net.Conn
	sc     *xmlscan.Scanner
	id     string
	domain string // the component's domain, once the header named it
	ctx    context.Context

	wmu    sync.Mutex // serialises writes to nc
	closed bool       // under wmu: the closing tag was written

	mu     sync.Mutex // the queue
	queue  []item
	bytes  int
	ended  bool          // no more stanzas are taken
	wake   chan struct{} // signals the writer (capacity 1)
	pings  int
	writer sync.WaitGroup
}

func newStream(m *Module, nc net.Conn) *stream {
	return &stream{m: m, nc: nc, sc: xmlscan.NewScanner(nc, m.maxStanza()), id: newID(), wake: make(chan struct{}, 1)}
}

func newID() string {
	var b [16]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// errStream is a stream error condition to close with, and its text.
type errStream struct{ cond, text string }

func (e errStream) Error() string { return "component: stream error " + e.cond }

// serve runs the stream until it ends: the domain is released first (so
// that a component that sees its stream end may connect again at once),
// then the stream closed, then what was still queued answered with
// errors.
func (s *stream) serve() {
	m := s.m
	var cancel context.CancelFunc
	s.ctx, cancel = context.WithCancel(m.srv.Context())
	defer func() {
		cancel() // the writer's signal to stop
		s.writer.Wait()
		s.drain()
	}()
	defer func() {
		if r := recover(); r != nil {
			// What this component sent put its stream in doubt, not
			// others.
			m.srv.LogPanic("component", r)
			m.release(s)
			s.closeWith("internal-server-error", "")
		}
	}()
	err := s.run()
	m.release(s)
	var se errStream
	switch {
	case errors.As(err, &se):
		s.closeWith(se.cond, se.text)
	case errors.Is(err, xmlscan.ErrStreamEnd):
		s.closeWith("", "")
	default:
		cond, _ := scanCondition(err)
		s.closeWith(cond, "")
	}
}

// run reads the header, checks the handshake, and then routes the
// component's stanzas until the stream ends.
func (s *stream) run() error {
	m := s.m
	s.nc.SetReadDeadline(time.Now().Add(m.handshakeTimeout()))
	hdr, err := s.sc.Header()
	if err != nil {
		if errors.Is(err, xmlscan.ErrBadStreamHeader) {
			s.writeHeader("")
			return errStream{cond: "invalid-namespace"}
		}
		return err
	}
	to, _ := hdr.Attr("to")
	if err := s.writeHeader(to); err != nil {
		return err
	}
	if ns, _ := hdr.Attr("xmlns"); ns != NS {
		return errStream{cond: "invalid-namespace"}
	}
	if to == "" {
		return errStream{cond: "improper-addressing", text: "a 'to' attribute is required on the stream header"}
	}
	secret, ok := m.Components[to]
	if !ok {
		m.log().Info("component refused", "domain", to, "why", "host-unknown")
		return errStream{cond: "host-unknown", text: "no component is configured for that domain"}
	}
	s.domain = to

	el, err := s.sc.Next()
	if err != nil {
		return err
	}
	if el.Local() != "handshake" || el.Space() != "" && el.Space() != NS {
		m.log().Info("component refused", "domain", to, "why", "no handshake")
		return errStream{cond: "not-authorized", text: "a handshake is required first"}
	}
	want := sha1.Sum([]byte(s.id + secret))
	got := strings.ToLower(strings.TrimSpace(el.Inner()))
	if subtle.ConstantTimeCompare([]byte(got), []byte(hex.EncodeToString(want[:]))) != 1 {
		m.log().Info("component refused", "domain", to, "why", "wrong handshake")
		return errStream{cond: "not-authorized", text: "the handshake does not match the secret"}
	}
	if !m.claim(s) {
		m.log().Warn("component refused", "domain", to, "why", "conflict: another stream of this component is connected")
		return errStream{cond: "conflict", text: "the component is already connected"}
	}
	if err := s.write([]byte("<handshake/>")); err != nil {
		return err
	}
	m.log().Info("component connected", "domain", to)
	defer m.log().Info("component disconnected", "domain", to)
	s.sc.SetMaxAttrs(m.maxAttrs())
	s.writer.Add(1)
	go s.writeLoop()

	idle := m.pingInterval()
	var pinger *time.Timer
	if idle > 0 {
		pinger = time.AfterFunc(idle, s.ping)
		defer pinger.Stop()
	}
	for {
		if idle > 0 {
			s.nc.SetReadDeadline(time.Now().Add(idle + m.pingTimeout()))
		} else {
			s.nc.SetReadDeadline(time.Time{})
		}
		el, err := s.sc.Next()
		if err != nil {
			return err
		}
		if pinger != nil {
			pinger.Reset(idle)
		}
		switch el.Name {
		case "message", "presence", "iq":
			if err := s.stanza(el); err != nil {
				return err
			}
		default:
			return errStream{cond: "unsupported-stanza-type"}
		}
	}
}

// stanza checks a stanza from the component and routes it.
func (s *stream) stanza(el *xmlscan.Element) error {
	ns := el.NS()
	if ns != "" && ns != NS && ns != nsClient {
		return errStream{cond: "invalid-namespace"}
	}
	raw := []byte(el.Raw)
	if ns != "" {
		// Without it, the stanza is in whatever default namespace the
		// stream it is written to has.
		raw = el.AppendWithout(nil, "", "xmlns")
	}
	st, err := treff.NewStanza(raw)
	if err != nil {
		// The scanner checked the XML: an address is malformed.
		return errStream{cond: "improper-addressing", text: "malformed address"}
	}
	if st.From.Equal(jid.JID{}) || st.To.Equal(jid.JID{}) {
		// RFC 6120 4.9.3.14, as between servers; Prosody fills in a
		// missing 'from', which XEP-0114 does not ask for.
		return errStream{cond: "improper-addressing", text: "stanzas from a component need 'from' and 'to'"}
	}
	if st.From.Domainpart() != s.domain {
		s.m.log().Warn("component sent from another domain", "domain", s.domain, "from", st.From.String())
		return errStream{cond: "invalid-from", text: "'from' must be in the component's domain"}
	}
	s.m.srv.Route(s.ctx, st)
	return nil
}

// ping queues an XEP-0199 ping to a component that has been quiet; its
// answer (or anything else it sends) counts as a sign of life.
func (s *stream) ping() {
	s.mu.Lock()
	s.pings++
	n := s.pings
	s.mu.Unlock()
	var b []byte
	b = append(b, "<iq type='get' id='treff-ping-"...)
	b = append(b, itoa(n)...)
	b = append(b, "' from='"...)
	b = treff.AppendEscaped(b, s.m.srv.Hosts[0].Domain)
	b = append(b, "' to='"...)
	b = treff.AppendEscaped(b, s.domain)
	b = append(b, "'><ping xmlns='"+nsPing+"'/></iq>"...)
	s.send(nil, b)
}

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}

// errFull refuses a stanza that would take the queue past MaxQueue;
// errEnded one for a stream that is ending.
var (
	errFull  = errors.New("component: queue full")
	errEnded = errors.New("component: stream ended")
)

// send queues raw (st's bytes, or the server's own) for the writer.
func (s *stream) send(st *treff.Stanza, raw []byte) error {
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return errEnded
	}
	if s.bytes+len(raw) > s.m.maxQueue() {
		s.mu.Unlock()
		return errFull
	}
	s.queue = append(s.queue, item{st, raw})
	s.bytes += len(raw)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return nil
}

// writeLoop writes what is queued, all of it in one write each time it
// wakes, until the stream ends.
func (s *stream) writeLoop() {
	defer s.writer.Done()
	var buf []byte
	for {
		select {
		case <-s.wake:
		case <-s.ctx.Done():
			return
		}
		s.mu.Lock()
		q := s.queue
		s.queue, s.bytes = nil, 0
		s.mu.Unlock()
		if len(q) == 0 {
			continue
		}
		buf = buf[:0]
		for _, it := range q {
			buf = append(buf, it.raw...)
		}
		if err := s.write(buf); err != nil {
			// Not written: the senders hear of it, and the stream ends
			// (the read loop sees the closed connection).
			s.mu.Lock()
			s.queue = append(q, s.queue...)
			s.mu.Unlock()
			s.nc.Close()
			return
		}
		if cap(buf) > 64<<10 {
			buf = nil // do not keep a burst's buffer for a quiet component
		}
	}
}

// drain answers what was left in the queue with errors.
func (s *stream) drain() {
	s.mu.Lock()
	s.ended = true
	q := s.queue
	s.queue, s.bytes = nil, 0
	s.mu.Unlock()
	ctx := context.WithoutCancel(s.m.srv.Context())
	for _, it := range q {
		if it.st != nil {
			s.m.bounce(ctx, it.st, errNotConnected)
		}
	}
}

// write writes b within the write timeout.
func (s *stream) write(b []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.closed {
		return net.ErrClosed
	}
	s.nc.SetWriteDeadline(time.Now().Add(s.m.writeTimeout()))
	_, err := s.nc.Write(b)
	return err
}

// writeHeader answers the component's header; the stream ID is what the
// handshake hashes.
func (s *stream) writeHeader(from string) error {
	var b []byte
	b = append(b, "<?xml version='1.0'?><stream:stream xmlns:stream='"+nsStream+"' xmlns='"+NS+"'"...)
	if from != "" {
		b = append(b, " from='"...)
		b = treff.AppendEscaped(b, from)
		b = append(b, '\'')
	}
	b = append(b, " id='"...)
	b = append(b, s.id...)
	b = append(b, "'>"...)
	return s.write(b)
}

// closeWith writes a stream error (unless cond is empty) and the closing
// tag, and closes the connection. Nothing is written after it.
func (s *stream) closeWith(cond, text string) {
	s.mu.Lock()
	s.ended = true
	s.mu.Unlock()
	s.wmu.Lock()
	if !s.closed {
		s.closed = true
		tail := "</stream:stream>"
		if cond != "" {
			e := "<stream:error><" + cond + " xmlns='" + nsStreams + "'/>"
			if text != "" {
				e += "<text xmlns='" + nsStreams + "'>" + string(treff.AppendEscaped(nil, text)) + "</text>"
			}
			tail = e + "</stream:error>" + tail
		}
		s.nc.SetWriteDeadline(time.Now().Add(closeTimeout))
		io.WriteString(s.nc, tail)
	}
	s.wmu.Unlock()
	s.nc.Close()
}

// scanCondition maps a read error to the stream error to send: the
// scanner's (xmlscan.Condition, as on client streams) or a timeout.
func scanCondition(err error) (string, bool) {
	if cond, _, ok := xmlscan.Condition(err); ok {
		return cond, true
	}
	var ne interface{ Timeout() bool }
	if errors.As(err, &ne) && ne.Timeout() {
		return "connection-timeout", true
	}
	return "", false
}
