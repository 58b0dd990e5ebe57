package treff

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"github.com/treff-im/treff/saslmech"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff/internal/xmlscan"
	"github.com/treff-im/treff/ratelimit"
	"github.com/treff-im/treff/stanza"
)

// idleConn sets a read deadline before every read: the idle timeout from
// now, but never later than a hard deadline (negotiation, shutdown).
//
// Under TLS it also hands the TLS layer at most one TLS record per Read,
// keeping bytes read past a record's end for the next Read. So when TLS
// asks for more at a record boundary, TLS holds nothing unread, and if the
// session has armed it, Read returns xmlscan.ErrNoData instead of
// blocking: the session's goroutine ends, and a small one waits for the
// next byte (wait). An idle session thus keeps no deep stack and no read
// buffer.
type idleConn struct {
	net.Conn
	idle time.Duration
	hard atomic.Int64 // unix nanoseconds; 0 = none
	last atomic.Int64 // unix nanoseconds of the last read that returned data

	// park is how long a session must be quiet before it parks (<0: at
	// once, for tests).
	park time.Duration

	// Used only by the goroutine reading the connection.
	records bool    // the TLS layer reads through us: track records
	armed   bool    // return ErrNoData at a record boundary
	woken   bool    // set by Session.unpark: the next Read reads
	hdr     [5]byte // record header read so far
	hdrN    int
	recLeft int     // bytes of the current record's body not yet handed on
	extra   []byte  // bytes read past a record boundary, handed on first
	pextra  *[]byte // extra's pooled backing
	pend    [1]byte // the byte wait read
	hasPend bool
	pendErr error // the error wait or a cut read met, returned after the data

	cert *tls.Certificate // presented in the TLS handshake, if noted (notingCertificate)
}

var extraPool = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10+256); return &b }}

func (c *idleConn) deadline() time.Time { return c.deadlineFrom(time.Now()) }

// parkDeadline is when a parked session times out: the idle timeout counts
// from the last data the client sent, not from when the session parked.
func (c *idleConn) parkDeadline() time.Time {
	if last := c.last.Load(); last != 0 {
		return c.deadlineFrom(time.Unix(0, last))
	}
	return c.deadline()
}

func (c *idleConn) deadlineFrom(t time.Time) time.Time {
	var d time.Time
	if c.idle > 0 {
		d = t.Add(c.idle)
	}
	if h := c.hard.Load(); h != 0 && (d.IsZero() || h < d.UnixNano()) {
		d = time.Unix(0, h)
	}
	return d
}

// readConn reads from the connection with the idle or hard deadline, or
// soon if that is earlier and not zero.
func (c *idleConn) readConn(p []byte, soon time.Time) (int, error) {
	d := c.deadline()
	if !soon.IsZero() && (d.IsZero() || soon.Before(d)) {
		d = soon
	}
	c.Conn.SetReadDeadline(d)
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.last.Store(time.Now().UnixNano())
	}
	return n, err
}

func (c *idleConn) Read(p []byte) (int, error) {
	if !c.records || len(p) == 0 {
		return c.readConn(p, time.Time{})
	}
	var soon time.Time
	if c.woken {
		// Woken by the poller: read, even if only to learn why.
		c.woken, c.armed = false, false
	}
	if c.armed && c.hdrN == 0 && c.recLeft == 0 && len(c.extra) == 0 && !c.hasPend && c.pendErr == nil {
		// TLS holds nothing: the session may park.
		if c.park < 0 {
			return 0, xmlscan.ErrNoData
		}
		soon = time.Now().Add(c.park)
	}
	c.armed = false
	switch {
	case c.hasPend:
		c.hasPend = false
		p[0] = c.pend[0]
		return c.cut(p[:1]), nil
	case len(c.extra) > 0:
		n := copy(p, c.extra)
		k := c.cut(p[:n])
		c.extra = c.extra[k:]
		if len(c.extra) == 0 {
			extraPool.Put(c.pextra)
			c.extra, c.pextra = nil, nil
		}
		return k, nil
	case c.pendErr != nil:
		err := c.pendErr
		c.pendErr = nil
		return 0, err
	}
	n, err := c.readConn(p, soon)
	if n == 0 && !soon.IsZero() && isTimeout(err) {
		if d := c.deadline(); d.IsZero() || time.Now().Before(d) {
			return 0, xmlscan.ErrNoData // quiet for c.park, not for the idle timeout
		}
	}
	k := c.cut(p[:n])
	if k < n {
		c.pextra = extraPool.Get().(*[]byte)
		c.extra = append((*c.pextra)[:0], p[k:n]...)
		c.pendErr, err = err, nil
	}
	return k, err
}

// cut follows the TLS records in b, which is handed on next, and returns
// how much of b to hand on: up to the end of the first record that ends in
// b, or all of it.
func (c *idleConn) cut(b []byte) int {
	for i := 0; i < len(b); {
		if c.recLeft > 0 {
			k := min(c.recLeft, len(b)-i)
			c.recLeft -= k
			i += k
			if c.recLeft == 0 {
				return i
			}
			continue
		}
		c.hdr[c.hdrN] = b[i]
		c.hdrN++
		i++
		if c.hdrN == len(c.hdr) {
			c.hdrN = 0
			c.recLeft = int(c.hdr[3])<<8 | int(c.hdr[4])
			if c.recLeft == 0 {
				return i
			}
		}
	}
	return len(b)
}

// defaultParkAfter is how long a session is quiet before its reader
// parks: long enough that a busy session never pays for parking. The
// package's own tests set it to park at once.
var defaultParkAfter = 2 * time.Second

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// wait blocks until the client sends a byte (kept for the next Read) or the
// read fails (the error is kept likewise).
func (c *idleConn) wait() {
	n, err := c.readConn(c.pend[:], time.Time{})
	c.hasPend = n > 0
	c.pendErr = err
}

func (c *idleConn) setHard(t time.Time) {
	if t.IsZero() {
		c.hard.Store(0)
		return
	}
	c.hard.Store(t.UnixNano())
}

// conn is one client connection, from accept to close. Until a resource is
// bound its goroutine negotiates the stream and writes directly; after that
// all writes go through the Session's queue.
type conn struct {
	srv         *Server
	nc          net.Conn
	ic          *idleConn
	rw          net.Conn // ic, or the TLS connection on top of it
	sc          *xmlscan.Scanner
	directTLS   bool
	secure      bool
	preSecure   bool // secured by the transport (ServeConn): no STARTTLS
	host        string
	streamID    string
	user        jid.JID                     // authenticated bare JID; written only by the conn's goroutine
	authed      atomic.Pointer[jid.JID]     // copy of user for other goroutines
	revoked     atomic.Pointer[streamError] // set by CloseUser
	failures    int
	preAuth     ratelimit.Bucket // IQs before authentication (Server.PreAuthIQs)
	shutting    atomic.Bool
	sess        atomic.Pointer[Session]
	resumed     *Session   // set by Negotiation.Resume for negotiate to return
	stepMech    string     // the mechanism of a negotiation step's successful exchange
	stepCond    string     // the condition of its failed one
	tryMech     string     // the mechanism of the current or last exchange, for LoginGuard.Failed
	tryUser     jid.JID    // the account it tries, if the mechanism says
	tryBinding  bool       // it failed for its channel binding alone (saslmech.ErrBindingRefused)
	refusedStep bool       // a LoginGuard refused the negotiation step's login (not a failure for the guards)
	bound       *Session   // set by Negotiation.Bind likewise
	wmu         sync.Mutex // direct writes before bind

	// ctx is the negotiation's context (TLS handshake, SASL, the
	// Authenticator, pre-authentication IQs): the server's context with
	// the negotiation deadline, cancelled when negotiation ends.
	ctx context.Context

	mechs    []hook[saslmech.Mechanism] // offered on this stream
	saslInfo *saslmech.Stream
	binding  string // the channel-binding type of the last SASL exchange, for the log
}

func (srv *Server) newConn(nc net.Conn, directTLS bool) *conn {
	idle := durationOr(srv.IdleTimeout, 14*time.Minute)
	if idle < 0 {
		idle = 0
	}
	ic := &idleConn{Conn: nc, idle: idle, park: srv.parkAfter}
	if ic.park == 0 {
		ic.park = defaultParkAfter
	}
	return &conn{srv: srv, nc: nc, ic: ic, rw: ic, directTLS: directTLS}
}

// streamError is a stream error condition (RFC 6120 4.9.3).
type streamError struct {
	cond, text string
	app        string // an application-specific condition element, or ""
	data       string // the condition element's character data, or ""
	// stuck: the client does not read, so what is queued will not be
	// written: the connection's writes get a short deadline too.
	stuck bool
}

func (e streamError) Error() string { return "treff: stream error " + e.cond }

func (e streamError) xml() string {
	s := "<stream:error><" + e.cond + " xmlns='" + nsStreams + "'/>"
	if e.data != "" {
		s = "<stream:error><" + e.cond + " xmlns='" + nsStreams + "'>" + string(AppendEscaped(nil, e.data)) + "</" + e.cond + ">"
	}
	if e.text != "" {
		s += "<text xmlns='" + nsStreams + "'>" + string(AppendEscaped(nil, e.text)) + "</text>"
	}
	return s + e.app + "</stream:error>"
}

func scanError(err error) (streamError, bool) {
	if cond, text, ok := xmlscan.Condition(err); ok {
		return streamError{cond: cond, text: text}, true
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return streamError{cond: "connection-timeout"}, true
	}
	return streamError{}, false
}

// maxAttrs is the attribute limit per start tag after authentication.
func (srv *Server) maxAttrs() int {
	if srv.MaxAttributes > 0 {
		return srv.MaxAttributes
	}
	return xmlscan.DefaultMaxAttrs
}

// write writes directly to the connection (negotiation phase only).
func (c *conn) write(s string) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.rw.SetWriteDeadline(time.Now().Add(durationOr(c.srv.WriteTimeout, 30*time.Second)))
	_, err := io.WriteString(c.rw, s)
	return err
}

func (c *conn) header(from string) string {
	var b strings.Builder
	b.WriteString("<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='" + nsStream + "' id='")
	b.WriteString(c.streamID)
	b.WriteString("'")
	if from != "" {
		b.WriteString(" from='")
		b.Write(AppendEscaped(nil, from))
		b.WriteString("'")
	}
	b.WriteString(" version='1.0' xml:lang='en'>")
	return b.String()
}

func newID() string {
	var b [12]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// fail sends a stream error (with a header first if none was sent yet) and
// the closing tag, then closes the connection.
func (c *conn) fail(e streamError, headerSent bool) {
	s := ""
	if !headerSent {
		c.streamID = newID()
		s = c.header(c.host)
	}
	c.write(s + e.xml() + "</stream:stream>")
	c.srv.logger().Debug("stream closed with error", "cond", e.cond, "user", c.user.String())
	c.nc.Close()
}

// shutdown is called by Server.Shutdown.
func (c *conn) shutdown() {
	c.shutting.Store(true)
	if s := c.sess.Load(); s != nil {
		s.closeStream(streamError{cond: "system-shutdown"})
		return
	}
	// Interrupt the negotiation's read; it sends the stream error itself.
	c.ic.setHard(time.Now())
	c.nc.SetReadDeadline(time.Now())
}

// serve negotiates the stream and returns the bound session, or nil after
// closing the connection. The caller runs the session in a new goroutine:
// its stack starts small again, instead of keeping the size the TLS
// handshake and SASL grew it to for as long as the session stays idle.
func (c *conn) serve() (sess *Session) {
	srv := c.srv
	deadline := time.Now().Add(durationOr(srv.NegotiationTimeout, 30*time.Second))
	c.ic.setHard(deadline)
	ctx, cancel := context.WithDeadline(srv.ctx, deadline)
	defer cancel()
	c.ctx = ctx
	defer func() {
		if r := recover(); r != nil {
			// The server's own code failed (a module's panic is caught
			// where the module is called): this stream's state cannot
			// be trusted.
			srv.panicked(coreModule, r)
			if c.streamID != "" {
				c.write(streamError{cond: "internal-server-error"}.xml() + "</stream:stream>")
			}
			c.nc.Close()
			sess = nil
		}
	}()
	if c.directTLS {
		c.ic.records = true
		tc := tls.Server(c.ic, srv.c2sBase)
		if err := tc.HandshakeContext(ctx); err != nil {
			c.nc.Close()
			return nil
		}
		c.rw, c.secure = tc, true
	}
	if c.preSecure {
		c.secure = true
	}
	c.sc = xmlscan.NewScanner(c.rw, srv.MaxStanzaSize)
	c.sc.SetMaxAttrs(min(xmlscan.DefaultMaxAttrs, srv.maxAttrs()))
	for {
		next, err := c.negotiate()
		if err != nil {
			var se streamError
			if errors.As(err, &se) {
				c.fail(se, true)
			}
			c.nc.Close()
			return nil
		}
		if next == nil {
			continue // stream restart
		}
		// The session keeps its connection: drop what only negotiation
		// needed (the SASL stream's TLS state, the offered mechanisms,
		// the negotiation's timer).
		c.mechs, c.saslInfo, c.ctx = nil, nil, srv.ctx
		return next
	}
}

// readStreamHeader reads the client's stream header and answers with ours.
func (c *conn) readStreamHeader() error {
	hdr, err := c.sc.Header()
	if err != nil {
		if se, ok := c.readErr(err); ok {
			c.fail(se, false)
		}
		return err
	}
	to, _ := hdr.Attr("to")
	if d, err := jid.Parse(to); err == nil && d.Localpart() == "" && d.Resourcepart() == "" {
		to = d.Domainpart()
	}
	if c.host != "" && to != c.host {
		// A restarted stream must be for the same host.
		c.fail(streamError{cond: "host-unknown"}, false)
		return io.EOF
	}
	if _, ok := c.srv.hosts[to]; !ok {
		c.host = ""
		c.fail(streamError{cond: "host-unknown", text: "this server does not serve that domain"}, false)
		return io.EOF
	}
	c.host = to
	if ns := hdr.NS(); ns != nsClient {
		c.fail(streamError{cond: "invalid-namespace"}, false)
		return io.EOF
	}
	if v, _ := hdr.Attr("version"); !versionOK(v) {
		c.fail(streamError{cond: "unsupported-version"}, false)
		return io.EOF
	}
	c.streamID = newID()
	return nil
}

// versionOK reports whether the stream version is 1.x (RFC 6120 4.7.5).
func versionOK(v string) bool {
	major, _, ok := strings.Cut(v, ".")
	return ok && major == "1"
}

// readErr maps a read error to a stream error to send, if any, and tells
// a connection that wants to know (a readFailedNoter) the error the stream
// is about to end for.
func (c *conn) readErr(err error) (streamError, bool) {
	if c.shutting.Load() {
		return streamError{cond: "system-shutdown"}, true
	}
	se, ok := scanError(err)
	if ok {
		if n, isNoter := c.nc.(readFailedNoter); isNoter {
			n.ReadFailed(err)
		}
	}
	return se, ok
}

// readFailedNoter is implemented by connections given to ServeConn whose
// transport ends differently depending on why the server ends the stream:
// the WebSocket handler closes with status 1009 (message too big) when
// the error wraps xmlscan.ErrTooLarge. ReadFailed is called with the read
// error before the stream error that answers it is written; Close comes
// after.
type readFailedNoter interface {
	ReadFailed(err error)
}

// negotiate runs one stream (from header to restart). It returns the bound
// session when negotiation is complete, or nil for a restart.
func (c *conn) negotiate() (*Session, error) {
	if err := c.readStreamHeader(); err != nil {
		return nil, err
	}
	if err := c.write(c.header(c.host) + c.features()); err != nil {
		return nil, err
	}
	for {
		el, err := c.sc.Next()
		if err != nil {
			if se, ok := c.readErr(err); ok {
				return nil, se
			}
			if errors.Is(err, xmlscan.ErrStreamEnd) {
				c.write("</stream:stream>")
			}
			return nil, err
		}
		ns := el.NS()
		switch {
		case !c.secure:
			if el.Name == "starttls" && ns == nsTLS {
				return nil, c.startTLS()
			}
			if el.Name == "auth" && ns == nsSASL {
				c.write("<failure xmlns='" + nsSASL + "'><encryption-required/></failure>")
				continue
			}
			return nil, streamError{cond: "policy-violation", text: "STARTTLS is required"}
		case c.user.Equal(jid.JID{}):
			switch {
			case el.Name == "auth" && ns == nsSASL:
				ok, err := c.sasl(el)
				if err != nil {
					return nil, err
				}
				if ok {
					c.sc.Restart()
					return nil, nil
				}
			case el.Name == "iq" && (ns == "" || ns == nsClient):
				if err := c.preAuthIQ(el); err != nil {
					return nil, err
				}
			default:
				// A module's authentication protocol (XEP-0388) may
				// also bind or resume a session in the same step.
				if ok, err := c.negotiationStep(el); ok {
					if s := c.stepSession(err); s != nil || err != nil {
						return s, err
					}
					continue
				}
				return nil, streamError{cond: "not-authorized"}
			}
		default:
			if el.Name != "iq" || (ns != "" && ns != nsClient) {
				if ok, err := c.negotiationStep(el); ok {
					// A module resumed a session (XEP-0198): it goes
					// on on this stream.
					if s := c.stepSession(err); s != nil || err != nil {
						return s, err
					}
					continue
				}
				return nil, streamError{cond: "not-authorized", text: "bind a resource first"}
			}
			s, err := c.bindIQ(el)
			if s != nil || err != nil {
				return s, err
			}
		}
	}
}

// features returns the stream features offered on the stream in its
// present state: after a negotiation step bound or resumed a session,
// none (XEP-0388 sends them after <success/>).
func (c *conn) features() string {
	srv := c.srv
	var feats strings.Builder
	feats.WriteString("<stream:features>")
	switch {
	case c.bound != nil || c.resumed != nil:
	case !c.secure:
		feats.WriteString("<starttls xmlns='" + nsTLS + "'><required/></starttls>")
	case c.user.Equal(jid.JID{}):
		feats.WriteString("<mechanisms xmlns='" + nsSASL + "'>")
		for _, name := range c.offerMechanisms() {
			feats.WriteString("<mechanism>" + name + "</mechanism>")
		}
		feats.WriteString("</mechanisms>")
		if cbs := c.saslInfo.ChannelBindings; len(cbs) > 0 {
			// XEP-0440: which binding the -PLUS mechanisms can use.
			feats.WriteString("<sasl-channel-binding xmlns='" + nsSASLCB + "'>")
			for _, typ := range cbs {
				feats.WriteString("<channel-binding type='" + typ + "'/>")
			}
			feats.WriteString("</sasl-channel-binding>")
		}
		for _, f := range srv.mods.streamFeats {
			if f.h.Phase == BeforeAuth {
				feats.WriteString(srv.renderFeature(f, c))
			}
		}
	default:
		feats.WriteString("<bind xmlns='" + nsBind + "'/><session xmlns='" + nsSession + "'><optional/></session>")
		for _, f := range srv.mods.streamFeats {
			if f.h.Phase == AfterAuth {
				feats.WriteString(srv.renderFeature(f, c))
			}
		}
	}
	feats.WriteString("</stream:features>")
	return feats.String()
}

// stepSession completes a negotiation step that bound or resumed a
// session (Negotiation.Bind, Resume), and returns the session if the
// step succeeded (err is nil): a bound one enters the routing table,
// and its writer starts. If the step failed, a bound session is
// dropped and a resumed one hibernates again.
func (c *conn) stepSession(err error) *Session {
	if err != nil {
		c.dropStepSession()
		return nil
	}
	if s := c.resumed; s != nil {
		c.resumed = nil
		s.release()
		return s
	}
	s := c.bound
	if s == nil {
		return nil
	}
	c.bound = nil
	c.attach(s, true)
	return s
}

// dropStepSession gives up the session a negotiation step bound or
// resumed, if any.
func (c *conn) dropStepSession() {
	if s := c.bound; s != nil {
		c.bound = nil
		// Never routable and never run: modules that set it up in the
		// step (carbons, stream management) learn that it ended.
		s.mu.Lock()
		s.held, s.closed, s.ended = false, true, true
		s.later = nil
		s.mu.Unlock()
		s.finish()
	}
	if s := c.resumed; s != nil {
		c.resumed = nil
		c.sess.Store(nil)
		s.rehibernate()
	}
}

func (c *conn) startTLS() error {
	if !c.sc.BufferedSpace() {
		// Data sent after <starttls/> but before the handshake must not be
		// processed as if TLS protected it (whitespace means nothing and
		// is dropped with the buffer).
		return streamError{cond: "policy-violation", text: "data after starttls"}
	}
	if err := c.write("<proceed xmlns='" + nsTLS + "'/>"); err != nil {
		return err
	}
	c.ic.records = true
	tc := tls.Server(c.ic, c.srv.c2sTLS(c.host))
	if err := tc.HandshakeContext(c.ctx); err != nil {
		return err
	}
	c.rw, c.secure = tc, true
	c.sc.Reset(tc)
	return nil
}

// preAuthIQs is the limit of Server.PreAuthIQs.
func (srv *Server) preAuthIQs() ratelimit.Limit {
	switch l := srv.PreAuthIQs; {
	case l.N < 0:
		return ratelimit.Limit{}
	case l.N == 0 && l.Period == 0:
		return ratelimit.Limit{N: 20, Period: time.Minute}
	default:
		return l
	}
}

// preAuthIQ handles an IQ on a secure but unauthenticated stream.
func (c *conn) preAuthIQ(el *xmlscan.Element) error {
	st, err := stanzaFrom(el)
	if err != nil || (st.Type != "get" && st.Type != "set") || st.ID == "" {
		return streamError{cond: "not-authorized"}
	}
	e, ok := c.srv.mods.preAuthIQ[st.Payload.Space]
	if !ok {
		return streamError{cond: "not-authorized"}
	}
	st.raw = []byte(el.Raw)
	if l := c.srv.preAuthIQs(); !c.preAuth.Allow(l, time.Now()) {
		reply := *st
		reply.To = jid.JID{}
		return c.write(string(AppendError(nil, &reply, stanza.Error{Type: stanza.Wait, Condition: stanza.PolicyViolation,
			Text: "too many requests before logging in (the limit is " + l.Text() + "); try again later"})))
	}
	st.To, _ = jid.New("", c.host, "")
	ctx := context.WithValue(c.ctx, peerAddrKey{}, c.nc.RemoteAddr())
	ctx = context.WithValue(ctx, streamIDKey{}, c.streamID)
	payload, herr := c.srv.handleIQ(ctx, e, st)
	if herr == ErrNoReply {
		return nil
	}
	// The client addressed nobody: the reply comes from nobody either.
	reply := *st
	reply.To = jid.JID{}
	var out []byte
	if herr != nil {
		out = AppendError(nil, &reply, c.srv.stanzaErr(herr, e.module))
	} else {
		out = AppendResult(nil, &reply, payload)
	}
	return c.write(string(out))
}

// stanzaErr returns the stanza error behind a handler's error (see
// stanza.FromError); any other error is logged and becomes
// internal-server-error.
func (srv *Server) stanzaErr(err error, module string) stanza.Error {
	if se, ok := stanza.FromError(err); ok {
		return se
	}
	srv.logger().Error("handler failed", "module", module, "err", err)
	return errInternalServerError
}

func saslFailure(cond, text string) string {
	s := "<failure xmlns='" + nsSASL + "'><" + cond + "/>"
	if text != "" {
		s += "<text xml:lang='en'>" + string(AppendEscaped(nil, text)) + "</text>"
	}
	return s + "</failure>"
}

// channelBindingTypes are the types the server can announce, in the
// order announced (the stronger first).
var channelBindingTypes = []string{saslmech.TLSExporter, saslmech.TLSServerEndPoint}

// saslStream describes the stream to SASL mechanisms, with the channel
// bindings available on it.
func (c *conn) saslStream() *saslmech.Stream {
	s := saslmech.NewStream(c.host)
	tc, ok := c.rw.(*tls.Conn)
	if !ok {
		return s
	}
	cs := tc.ConnectionState()
	s.TLS = &cs
	if c.ic.cert != nil && !cs.DidResume {
		s.Certificate = c.srv.leaf(c.ic.cert)
	}
	for _, typ := range channelBindingTypes {
		if _, err := s.ChannelBinding(typ); err == nil {
			s.ChannelBindings = append(s.ChannelBindings, typ)
		}
	}
	return s
}

// offerMechanisms returns the names of the SASL mechanisms offered on
// the stream, and remembers the stream's description for sasl. The
// channel-binding types are announced only with a -PLUS mechanism.
func (c *conn) offerMechanisms() []string {
	s := c.saslStream()
	c.mechs = c.mechs[:0]
	var names []string
	for _, e := range c.srv.mods.mechs {
		if o, ok := e.h.(saslmech.Offerer); ok && !c.srv.offers(e.module, o, s) {
			continue
		}
		c.mechs = append(c.mechs, e)
		names = append(names, e.h.Name())
	}
	s.Mechanisms = names
	if !s.PlusOffered() {
		s.ChannelBindings = nil
	}
	c.saslInfo = s
	return s.Mechanisms
}

// sasl runs one SASL exchange (RFC 6120 6.4) and reports success.
func (c *conn) sasl(el *xmlscan.Element) (bool, error) {
	srv := c.srv
	name, _ := el.Attr("mechanism")
	var mech *hook[saslmech.Mechanism]
	for i := range c.mechs {
		if c.mechs[i].h.Name() == name {
			mech = &c.mechs[i]
			break
		}
	}
	if mech == nil {
		return false, c.write(saslFailure("invalid-mechanism", ""))
	}
	if se := c.startLogin(name); se != nil {
		c.loginFailed(se.Condition)
		serr := c.failedAttempt(se.Condition)
		if err := c.write(saslFailure(se.Condition, se.Text)); err != nil {
			return false, err
		}
		return false, serr
	}
	x, err := srv.startSASL(c.ctx, *mech, c.saslInfo)
	if err != nil {
		return false, c.saslFailed("temporary-auth-failure")
	}
	data, err := saslData(el)
	for i := 0; ; i++ {
		if err != nil {
			return false, c.saslFailed("incorrect-encoding")
		}
		out, user, serr := srv.stepSASL(c.ctx, mech.module, x, data)
		if sx, ok := x.(*scramExchange); ok {
			c.binding = sx.ss.ChannelBinding()
		}
		c.noteTry(name, x)
		if serr != nil {
			c.tryBinding = errors.Is(serr, saslmech.ErrBindingRefused)
			return false, c.saslFailed(srv.saslCondition(name, serr))
		}
		if !user.Equal(jid.JID{}) {
			if err := c.authenticate(user, name); err != nil {
				var se *saslmech.Error
				if errors.As(err, &se) {
					return false, c.refused(se)
				}
				srv.logger().Error("SASL mechanism authenticated a JID that is no account of the stream's host", "mechanism", name)
				return false, c.saslFailed("temporary-auth-failure")
			}
			s := "<success xmlns='" + nsSASL + "'"
			if len(out) > 0 {
				s += ">" + base64.StdEncoding.EncodeToString(out) + "</success>"
			} else {
				s += "/>"
			}
			return true, c.write(s)
		}
		if i > 4 {
			return false, c.saslFailed("malformed-request")
		}
		if err := c.write("<challenge xmlns='" + nsSASL + "'>" + base64.StdEncoding.EncodeToString(out) + "</challenge>"); err != nil {
			return false, err
		}
		resp, rerr := c.sc.Next()
		if rerr != nil {
			if se, ok := c.readErr(rerr); ok {
				return false, se
			}
			return false, rerr
		}
		if resp.NS() != nsSASL {
			return false, streamError{cond: "not-authorized", text: "SASL exchange expected"}
		}
		switch resp.Name {
		case "abort":
			return false, c.write(saslFailure("aborted", ""))
		case "response":
			data, err = saslData(resp)
		default:
			return false, c.saslFailed("malformed-request")
		}
	}
}

// saslCondition maps an error from a SASL exchange to the failure
// condition the client sees (RFC 6120 6.5), logging unexpected ones.
func (srv *Server) saslCondition(mechanism string, err error) string {
	var se *saslmech.Error
	switch {
	case errors.As(err, &se):
		return se.Condition
	case errors.Is(err, ErrNotAuthorized), errors.Is(err, saslmech.ErrNotAuthorized):
		return "not-authorized"
	case errors.Is(err, errPanicked):
		return "temporary-auth-failure"
	}
	srv.logger().Error("authentication backend failed", "mechanism", mechanism, "err", err)
	return "temporary-auth-failure"
}

// saslFailed answers a failed attempt (after the login guards' delay)
// and closes the stream after too many.
func (c *conn) saslFailed(cond string) error {
	c.loginFailed(cond)
	serr := c.failedAttempt(cond)
	if err := c.write(saslFailure(cond, "")); err != nil {
		return err
	}
	return serr
}

// refused answers a login a LoginGuard refused; it counts against
// MaxAuthFailures but not as a failure for the guards.
func (c *conn) refused(se *saslmech.Error) error {
	serr := c.failedAttempt(se.Condition)
	if err := c.write(saslFailure(se.Condition, se.Text)); err != nil {
		return err
	}
	return serr
}

// failedAttempt counts a failed authentication attempt and returns the
// stream error to close with once there were MaxAuthFailures.
func (c *conn) failedAttempt(cond string) error {
	c.failures++
	c.user = jid.JID{}
	c.srv.logger().Info("authentication failed", "cond", cond)
	max := c.srv.MaxAuthFailures
	if max <= 0 {
		max = 3
	}
	if c.failures >= max {
		return streamError{cond: "policy-violation", text: "too many failed authentication attempts"}
	}
	return nil
}

// authenticate records that the client proved it is user, by whatever
// mechanism or protocol, and reports an error for a JID that is no
// account of the stream's host.
func (c *conn) authenticate(user jid.JID, mechanism string) error {
	if user.Localpart() == "" || user.Domainpart() != c.host || user.Resourcepart() != "" {
		return fmt.Errorf("treff: %s is no account of %s", user, c.host)
	}
	if err := c.allowLogin(user, mechanism); err != nil {
		c.srv.logger().Info("login refused", "cond", err.(*saslmech.Error).Condition)
		return err
	}
	c.user = user
	c.authed.Store(&user)
	// An account holder may send what the operator allows; before, only
	// the small pre-authentication limit holds.
	c.sc.SetMaxAttrs(c.srv.maxAttrs())
	c.srv.logger().Debug("authenticated", "user", user.String(), "mechanism", mechanism, "channel_binding", c.binding)
	c.srv.recordLogin(c.ctx, user)
	return nil
}

// saslData decodes the base64 content of <auth/> or <response/>; "=" is an
// empty response (RFC 6120 6.4.2), no content none.
func saslData(el *xmlscan.Element) ([]byte, error) {
	s := strings.TrimSpace(el.Inner())
	switch s {
	case "":
		return nil, nil
	case "=":
		return []byte{}, nil
	}
	return base64.StdEncoding.DecodeString(s)
}

// bindIQ handles IQs between authentication and binding: resource binding
// (RFC 6120 7) and the legacy session request (RFC 3921 3).
func (c *conn) bindIQ(el *xmlscan.Element) (*Session, error) {
	st, err := stanzaFrom(el)
	if err != nil {
		return nil, streamError{cond: "bad-format"}
	}
	st.raw = []byte(el.Raw)
	st.To = jid.JID{}
	if st.Type != "set" || st.ID == "" || st.Payload.Space != nsBind || st.Payload.Local != "bind" {
		if st.Payload.Space == nsSession && st.Type == "set" {
			return nil, c.write(string(AppendResult(nil, st, nil)))
		}
		return nil, c.write(string(AppendError(nil, st, stanza.NotAllowed.WithText("bind a resource first"))))
	}
	res, err := bindResource(el.Raw)
	if err != nil {
		return nil, c.write(string(AppendError(nil, st, errBadRequest)))
	}
	if res == "" {
		res = newResource()
	}
	full, err := jid.New(c.user.Localpart(), c.user.Domainpart(), res)
	if err != nil {
		return nil, c.write(string(AppendError(nil, st, stanza.BadRequest.WithText("invalid resource"))))
	}
	s := newSession(c, full)
	// The reply goes through the queue so that it precedes anything routed
	// to the new session, and the writer starts only once the session is
	// in the routing table: a client that has read the reply may be sent
	// to at once (a message routed before that would find no session).
	var b []byte
	b = append(b, "<iq type='result' id='"...)
	b = AppendEscaped(b, st.ID)
	b = append(b, "'><bind xmlns='"+nsBind+"'><jid>"...)
	b = AppendEscaped(b, full.String())
	b = append(b, "</jid></bind></iq>"...)
	s.mu.Lock()
	s.writing = true // held until routable
	s.queue, s.queued = append(s.queue, b), len(b)
	s.mu.Unlock()
	c.attach(s, false)
	return s, nil
}

// newResource returns a random resource for a client that asked for none.
func newResource() string {
	var b [8]byte
	rand.Read(b[:])
	return "treff-" + hex.EncodeToString(b[:])
}

// attach makes the new session s, whose writer is held, the stream's:
// it enters the routing table (replacing a session with the same full
// JID), and its writer starts. held says a negotiation step bound it
// (Negotiation.Bind).
func (c *conn) attach(s *Session, held bool) {
	t := transportOf(c)
	s.transport = t
	c.srv.stats.sessions[t].Add(1)
	c.srv.stats.sessionsBound[t].Add(1)
	c.ic.setHard(time.Time{})
	c.sess.Store(s)
	if c.shutting.Load() {
		s.closeStream(streamError{cond: "system-shutdown"})
	}
	if e := c.revoked.Load(); e != nil {
		s.closeStream(*e)
	}
	if old := c.srv.table.Add(s); old != nil {
		if os, ok := old.(*Session); ok {
			os.closeStream(streamError{cond: "conflict", text: "replaced by a new connection with the same resource"})
		}
	}
	if held {
		s.release()
		return
	}
	go s.writeLoop()
}

// bindResource extracts the requested resource from a bind IQ.
func bindResource(raw string) (string, error) {
	var v struct {
		Bind struct {
			Resource string `xml:"resource"`
		} `xml:"urn:ietf:params:xml:ns:xmpp-bind bind"`
	}
	if err := xml.Unmarshal([]byte(raw), &v); err != nil {
		return "", err
	}
	return strings.TrimSpace(v.Bind.Resource), nil
}
