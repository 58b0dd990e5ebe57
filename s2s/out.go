package s2s

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/stanza"
)

// out is the outgoing stream for one pair of domains. Stanzas wait in
// pending until it is up, then go through a write queue and a writer
// goroutine that exists only while there is something to write.
type out struct {
	m *Module
	p pair

	mu      sync.Mutex
	ready   bool
	closed  bool
	pending []*treff.Stanza
	queue   [][]byte
	writing bool
	s       *stream
	last    time.Time
	timer   *time.Timer
}

func newOut(m *Module, p pair) *out { return &out{m: m, p: p} }

// enqueue queues st; it reports false if the stream closed meanwhile.
func (o *out) enqueue(st *treff.Stanza) bool {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return false
	}
	if !o.ready {
		if len(o.pending) >= o.m.queueLimit() {
			o.mu.Unlock()
			o.m.st.drops.Add(1)
			o.m.bounce(st, stanza.ResourceConstraint, "queue full")
			return true
		}
		o.pending = append(o.pending, st)
		o.mu.Unlock()
		return true
	}
	o.last = time.Now()
	o.queue = append(o.queue, st.Raw())
	if !o.writing {
		o.writing = true
		go o.writeLoop()
	}
	o.mu.Unlock()
	return true
}

func (o *out) writeLoop() {
	var batch [][]byte
	var buf []byte
	for {
		o.mu.Lock()
		if len(o.queue) == 0 || o.closed {
			o.writing = false
			o.mu.Unlock()
			return
		}
		batch, o.queue = o.queue, batch[:0]
		s := o.s
		o.mu.Unlock()
		buf = buf[:0]
		for i, b := range batch {
			buf = append(buf, b...)
			batch[i] = nil
		}
		if err := s.write(buf); err != nil {
			o.m.log().Info("s2s stream lost", "direction", "out", "domain", o.p.remote, "why", describe(err))
			o.mu.Lock()
			o.writing = false
			o.mu.Unlock()
			o.close("")
			return
		}
	}
}

// run sets the stream up, sends what waited, then reads until the peer
// closes it.
func (o *out) run() {
	m := o.m
	defer func() {
		if r := recover(); r != nil {
			m.srv.LogPanic("s2s", r)
			o.close("internal-server-error")
		}
	}()
	ctx, cancel := context.WithTimeout(m.srv.Context(), m.connectTimeout())
	s, method, err := m.connect(ctx, o.p)
	// A read that hit the deadline (set from ctx) may return before ctx's
	// own timer fires.
	timedOut := ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded)
	cancel()
	if err != nil {
		o.mu.Lock()
		o.closed = true
		pending := o.pending
		o.pending = nil
		o.mu.Unlock()
		m.forget(o)
		cond := stanza.RemoteServerNotFound
		if timedOut {
			cond = stanza.RemoteServerTimeout
		}
		m.log().Info("s2s stream failed", "direction", "out", "domain", o.p.remote, "why", describe(err))
		for _, st := range pending {
			m.bounce(st, cond, describe(err))
		}
		return
	}
	m.log().Debug("s2s stream authenticated", "direction", "out", "domain", o.p.remote, "local", o.p.local, "method", method)
	o.mu.Lock()
	if o.closed { // stopped meanwhile
		o.mu.Unlock()
		s.closeWith("system-shutdown")
		return
	}
	o.s, o.ready, o.last = s, true, time.Now()
	for _, st := range o.pending {
		o.queue = append(o.queue, st.Raw())
	}
	o.pending = nil
	if len(o.queue) > 0 && !o.writing {
		o.writing = true
		go o.writeLoop()
	}
	o.timer = time.AfterFunc(m.idle(), o.checkIdle)
	o.mu.Unlock()

	// Nothing is expected on an outgoing stream but its end (or dialback
	// answers for other pairs, which this server does not multiplex).
	s.nc.SetReadDeadline(time.Time{})
	for {
		el, err := s.sc.Next()
		if err != nil {
			break
		}
		if el.Local() == "error" && strings.HasPrefix(el.Name, "stream") {
			m.log().Info("s2s stream error from peer", "domain", o.p.remote, "condition", el.Child)
			break
		}
	}
	o.close("")
}

// checkIdle closes the stream if nothing was sent for the idle timeout.
func (o *out) checkIdle() {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return
	}
	if rest := o.m.idle() - time.Since(o.last); rest > 0 || o.writing {
		o.timer.Reset(max(rest, time.Second))
		o.mu.Unlock()
		return
	}
	o.mu.Unlock()
	o.m.log().Debug("s2s stream idle", "direction", "out", "domain", o.p.remote)
	o.close("")
}

// close ends the stream; stanzas still waiting for it are answered with
// errors.
func (o *out) close(cond string) {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return
	}
	o.closed, o.ready = true, false
	pending := o.pending
	o.pending = nil
	s := o.s
	if o.timer != nil {
		o.timer.Stop()
	}
	o.mu.Unlock()
	o.m.forget(o)
	if s != nil {
		s.closeWith(cond)
	}
	for _, st := range pending {
		o.m.bounce(st, stanza.RemoteServerNotFound, "stream closed")
	}
}

// target is an address to try for a domain.
type target struct {
	addr   string
	direct bool // TLS from the start (XEP-0368)
}

// targets lists where to connect for domain: a static route, else the
// SRV records (direct TLS first at equal priority), else the domain on
// port 5269.
func (m *Module) targets(ctx context.Context, domain string) ([]target, error) {
	if a, ok := m.Resolve[domain]; ok {
		return []target{{addr: a}}, nil
	}
	r := m.Resolver
	if r == nil {
		r = net.DefaultResolver
	}
	type rec struct {
		srv    *net.SRV
		direct bool
	}
	var recs []rec
	var explicitNone bool
	for _, svc := range []struct {
		name   string
		direct bool
	}{{"xmpps-server", true}, {"xmpp-server", false}} {
		_, srvs, err := r.LookupSRV(ctx, svc.name, "tcp", domain)
		if err != nil {
			continue
		}
		for _, s := range srvs {
			if s.Target == "." {
				explicitNone = true
				continue
			}
			recs = append(recs, rec{s, svc.direct})
		}
	}
	if len(recs) == 0 {
		if explicitNone {
			return nil, fmt.Errorf("%s offers no XMPP service (SRV target '.')", domain)
		}
		return []target{{addr: net.JoinHostPort(domain, "5269")}}, nil
	}
	slices.SortStableFunc(recs, func(a, b rec) int {
		if a.srv.Priority != b.srv.Priority {
			return int(a.srv.Priority) - int(b.srv.Priority)
		}
		if a.direct != b.direct {
			if a.direct {
				return -1
			}
			return 1
		}
		return 0
	})
	out := make([]target, 0, len(recs))
	for _, r := range recs {
		out = append(out, target{addr: net.JoinHostPort(strings.TrimSuffix(r.srv.Target, "."), strconv.Itoa(int(r.srv.Port))), direct: r.direct})
	}
	return out, nil
}

// connect sets up an authenticated outgoing stream for p, trying each
// target in turn.
func (m *Module) connect(ctx context.Context, p pair) (*stream, string, error) {
	ts, err := m.targets(ctx, p.remote)
	if err != nil {
		return nil, "", err
	}
	var last error
	for _, t := range ts {
		var d net.Dialer
		nc, err := d.DialContext(ctx, "tcp", t.addr)
		if err != nil {
			last = err
			if ctx.Err() != nil {
				break
			}
			continue
		}
		// The context's end interrupts whatever the negotiation waits for.
		stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Now()) })
		s := newStream(nc, m.maxStanza())
		method, err := m.negotiateOut(ctx, s, p, t.direct)
		if !stop() && err == nil {
			err = ctx.Err()
		}
		if err == nil {
			nc.SetDeadline(time.Time{})
			return s, method, nil
		}
		nc.Close()
		last = err
		if ctx.Err() != nil {
			break
		}
	}
	if last == nil {
		last = errors.New("no address")
	}
	return nil, "", last
}

// errStream reports a stream error or a refusal from the peer.
type errStream string

func (e errStream) Error() string { return "s2s: " + string(e) }

// open writes a stream header for p and reads the peer's header and
// features.
func (m *Module) open(ctx context.Context, s *stream, p pair) (features, error) {
	if err := s.writeString(header(p.local, p.remote, "")); err != nil {
		return features{}, err
	}
	dl, _ := ctx.Deadline()
	s.nc.SetReadDeadline(dl)
	hdr, err := s.sc.Header()
	if err != nil {
		return features{}, err
	}
	if ns, _ := hdr.Attr("xmlns"); ns != NSServer {
		return features{}, errStream("peer's stream is not jabber:server")
	}
	if v, _ := hdr.Attr("version"); !strings.HasPrefix(v, "1.") {
		return features{}, errStream("peer does not speak XMPP 1.0")
	}
	s.id, _ = hdr.Attr("id")
	el, err := s.sc.Next()
	if err != nil {
		return features{}, err
	}
	if el.Local() != "features" {
		return features{}, errStream("expected stream features, got " + el.Name + ": " + el.Inner())
	}
	return parseFeatures(el), nil
}

// secure opens the stream for p on a new outgoing connection with TLS
// (direct, or STARTTLS, which the peer must offer) and returns the
// features the peer offers on the secure stream.
func (m *Module) secure(ctx context.Context, s *stream, p pair, direct bool) (features, error) {
	dl, _ := ctx.Deadline()
	if direct {
		if err := s.startTLS(m.clientTLS(p.local, p.remote), true, time.Until(dl)); err != nil {
			return features{}, err
		}
	}
	f, err := m.open(ctx, s, p)
	if err != nil || s.secure {
		return f, err
	}
	if !f.starttls {
		return f, errStream("peer does not offer TLS")
	}
	if err := s.writeString("<starttls xmlns='" + nsTLS + "'/>"); err != nil {
		return f, err
	}
	el, err := s.sc.Next()
	if err != nil {
		return f, err
	}
	if el.Local() != "proceed" {
		return f, errStream("STARTTLS refused")
	}
	if err := s.startTLS(m.clientTLS(p.local, p.remote), true, time.Until(dl)); err != nil {
		return f, err
	}
	return m.open(ctx, s, p)
}

// negotiateOut runs TLS and authentication on a new outgoing connection
// and returns the method that authenticated it.
func (m *Module) negotiateOut(ctx context.Context, s *stream, p pair, direct bool) (string, error) {
	f, err := m.secure(ctx, s, p, direct)
	if err != nil {
		return "", err
	}
	if f.external {
		auth := "<auth xmlns='" + nsSASL + "' mechanism='EXTERNAL'>" + base64.StdEncoding.EncodeToString([]byte(p.local)) + "</auth>"
		if err := s.writeString(auth); err != nil {
			return "", err
		}
		el, err := s.sc.Next()
		if err != nil {
			return "", err
		}
		if el.Local() == "success" {
			s.sc.Restart()
			if _, err := m.open(ctx, s, p); err != nil {
				return "", err
			}
			return "external", nil
		}
		// Refused (our certificate is not good enough for the peer): try
		// dialback on the same stream.
	}
	if !f.dialback || m.NoDialback {
		return "", errStream("no authentication method the peer and this server share")
	}
	key := m.dialbackKey(p.remote, p.local, s.id)
	res := fmt.Sprintf("<db:result from='%s' to='%s'>%s</db:result>", treff.AppendEscaped(nil, p.local), treff.AppendEscaped(nil, p.remote), key)
	if err := s.writeString(res); err != nil {
		return "", err
	}
	for i := 0; i < 100; i++ {
		el, err := s.sc.Next()
		if err != nil {
			return "", err
		}
		if el.Local() == "error" && strings.HasPrefix(el.Name, "stream") {
			return "", errStream("stream error: " + el.Inner())
		}
		if !isDialback(el, "result") {
			continue
		}
		switch typ, _ := el.Attr("type"); typ {
		case "valid":
			return "dialback", nil
		default:
			return "", errStream("dialback " + typ)
		}
	}
	return "", errStream("no dialback answer")
}
