package s2s

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/internal/xmlscan"
)

// in is a stream another server opened to this one.
type in struct {
	m         *Module
	s         *stream
	directTLS bool
	ctx       context.Context // the server's, cancelled when the stream ends

	local string // the domain of this server the stream is for
	peer  string // the 'from' of the peer's header
	sasl  bool   // authenticated with SASL (no further features)

	mu        sync.Mutex
	auth      map[string]string // authenticated peer domains -> method
	verifying int               // dialback checks running
}

// serve negotiates the stream and then routes what the peer sends until
// the stream ends.
func (c *in) serve() {
	m, s := c.m, c.s
	defer s.nc.Close()
	var cancel context.CancelFunc
	c.ctx, cancel = context.WithCancel(m.srv.Context())
	defer cancel()
	defer func() {
		if r := recover(); r != nil {
			// What the peer sent put this stream in doubt, not others.
			m.srv.LogPanic("s2s", r)
			s.closeWith("internal-server-error")
		}
	}()
	if c.directTLS {
		if err := s.startTLS(m.serverTLS(""), false, m.connectTimeout()); err != nil {
			return
		}
	}
	for restarts := 0; restarts < 4; restarts++ {
		next, err := c.stream()
		if err != nil {
			var se errStream
			if errors.As(err, &se) {
				s.closeWith(string(se))
				return
			}
			if errors.Is(err, xmlscan.ErrStreamEnd) {
				s.closeWith("")
				return
			}
			if cond, ok := scanCondition(err); ok {
				s.closeWith(cond)
			}
			return
		}
		if !next {
			return
		}
	}
	s.closeWith("policy-violation")
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

// authenticated reports whether the peer proved it is domain.
func (c *in) authenticated(domain string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.auth[domain] != ""
}

func (c *in) anyAuth() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.auth) > 0
}

// stream runs one stream, from the peer's header to its end or a
// restart; it reports true for a restart (after TLS or SASL).
func (c *in) stream() (restart bool, err error) {
	m, s := c.m, c.s
	s.nc.SetReadDeadline(time.Now().Add(m.connectTimeout()))
	hdr, err := s.sc.Header()
	if err != nil {
		if errors.Is(err, xmlscan.ErrBadStreamHeader) {
			s.writeString(header("", "", newID()))
			return false, errStream("invalid-namespace")
		}
		return false, err
	}
	to, _ := hdr.Attr("to")
	from, _ := hdr.Attr("from")
	s.id = newID()
	if err := s.writeString(header(to, from, s.id)); err != nil {
		return false, err
	}
	if ns, _ := hdr.Attr("xmlns"); ns != NSServer {
		return false, errStream("invalid-namespace")
	}
	if v, _ := hdr.Attr("version"); !strings.HasPrefix(v, "1.") {
		return false, errStream("unsupported-version")
	}
	if !m.srv.Serves(to) || c.local != "" && to != c.local {
		return false, errStream("host-unknown")
	}
	c.local = to
	if from != "" {
		c.peer = from
	}
	var feats strings.Builder
	feats.WriteString("<stream:features>")
	switch {
	case !s.secure:
		feats.WriteString("<starttls xmlns='" + nsTLS + "'><required/></starttls>")
	case !c.sasl:
		if c.peer != "" && m.verify(s.certs, c.peer) {
			feats.WriteString("<mechanisms xmlns='" + nsSASL + "'><mechanism>EXTERNAL</mechanism></mechanisms>")
		}
		if !m.NoDialback {
			feats.WriteString("<dialback xmlns='" + NSDialbackFeatures + "'><errors/></dialback>")
		}
	}
	feats.WriteString("</stream:features>")
	if err := s.writeString(feats.String()); err != nil {
		return false, err
	}
	for {
		wait := m.connectTimeout()
		if c.anyAuth() {
			wait = m.idle()
			// The peer relays its users' stanzas: the server's
			// limit for authenticated clients applies, not the
			// smaller one for anyone.
			s.sc.SetMaxAttrs(m.maxAttrs())
		}
		s.nc.SetReadDeadline(time.Now().Add(wait))
		el, err := s.sc.Next()
		if err != nil {
			return false, err
		}
		ns := el.NS()
		switch {
		case el.Name == "starttls" && ns == nsTLS:
			if s.secure {
				return false, errStream("policy-violation")
			}
			if s.sc.Buffered() != 0 {
				return false, errStream("policy-violation")
			}
			if err := s.writeString("<proceed xmlns='" + nsTLS + "'/>"); err != nil {
				return false, err
			}
			if err := s.startTLS(m.serverTLS(c.local), false, m.connectTimeout()); err != nil {
				return false, err
			}
			return true, nil
		case !s.secure:
			return false, errStream("policy-violation") // TLS is required first
		case el.Name == "auth" && ns == nsSASL:
			ok, err := c.external(el)
			if err != nil || ok {
				return ok, err
			}
		case isDialback(el, "result"):
			if err := c.dialbackResult(el); err != nil {
				return false, err
			}
		case isDialback(el, "verify"):
			if err := c.dialbackVerify(el); err != nil {
				return false, err
			}
		case el.Name == "message" || el.Name == "presence" || el.Name == "iq":
			if ns != "" && ns != NSServer {
				return false, errStream("invalid-namespace")
			}
			if err := c.stanza(el); err != nil {
				return false, err
			}
		default:
			return false, errStream("unsupported-stanza-type")
		}
	}
}

// external handles SASL EXTERNAL (XEP-0178): the peer is who its
// certificate says, if that is the domain it claims.
func (c *in) external(el *xmlscan.Element) (bool, error) {
	m, s := c.m, c.s
	fail := func(cond string) (bool, error) {
		return false, s.writeString("<failure xmlns='" + nsSASL + "'><" + cond + "/></failure>")
	}
	if c.sasl {
		return false, errStream("policy-violation")
	}
	if mech, _ := el.Attr("mechanism"); mech != "EXTERNAL" {
		return fail("invalid-mechanism")
	}
	domain := c.peer
	if v := strings.TrimSpace(el.Inner()); v != "" && v != "=" {
		b, err := base64.StdEncoding.DecodeString(v)
		if err != nil {
			return fail("incorrect-encoding")
		}
		domain = string(b)
	}
	if domain == "" || (c.peer != "" && domain != c.peer) || !m.verify(s.certs, domain) {
		m.log().Info("s2s authentication refused", "direction", "in", "domain", domain, "method", "external")
		return fail("not-authorized")
	}
	if err := s.writeString("<success xmlns='" + nsSASL + "'/>"); err != nil {
		return false, err
	}
	c.mu.Lock()
	c.auth[domain] = "external"
	c.mu.Unlock()
	c.sasl = true
	c.peer = domain
	m.log().Debug("s2s stream authenticated", "direction", "in", "domain", domain, "local", c.local, "method", "external")
	s.sc.Restart()
	return true, nil
}

// dialbackResult handles the originating server's key (XEP-0220 2.1.2):
// the key is checked with the peer's authoritative server, and the answer
// comes back on this stream.
func (c *in) dialbackResult(el *xmlscan.Element) error {
	m, s := c.m, c.s
	from, _ := el.Attr("from")
	to, _ := el.Attr("to")
	key := strings.TrimSpace(el.Inner())
	answer := func(typ, cond string) error {
		b := fmt.Sprintf("<db:result from='%s' to='%s' type='%s'", treff.AppendEscaped(nil, to), treff.AppendEscaped(nil, from), typ)
		if cond != "" {
			b += "><error type='cancel'><" + cond + " xmlns='" + nsStanzas + "'/></error></db:result>"
		} else {
			b += "/>"
		}
		return s.writeString(b)
	}
	if m.NoDialback {
		return answer("error", "feature-not-implemented")
	}
	if from == "" || key == "" {
		return errStream("improper-addressing")
	}
	if !m.srv.Serves(to) {
		return answer("error", "item-not-found")
	}
	id := s.id
	c.mu.Lock()
	busy := c.verifying >= maxVerifying
	if !busy {
		c.verifying++
	}
	c.mu.Unlock()
	if busy {
		// Each check is a connection to another server: a peer may not
		// make this server open many at once.
		return answer("error", "resource-constraint")
	}
	go func() {
		defer func() {
			c.mu.Lock()
			c.verifying--
			c.mu.Unlock()
		}()
		ctx, cancel := context.WithTimeout(c.ctx, m.connectTimeout())
		defer cancel()
		valid, err := m.askAuthoritative(ctx, to, from, id, key)
		if err != nil {
			m.log().Info("s2s dialback check failed", "domain", from, "why", describe(err))
			answer("error", "remote-server-not-found")
			return
		}
		if !valid {
			m.log().Info("s2s authentication refused", "direction", "in", "domain", from, "method", "dialback")
			answer("invalid", "")
			return
		}
		c.mu.Lock()
		c.auth[from] = "dialback"
		c.mu.Unlock()
		m.log().Debug("s2s stream authenticated", "direction", "in", "domain", from, "local", to, "method", "dialback")
		answer("valid", "")
	}()
	return nil
}

// dialbackVerify answers another server checking a key this server gave
// (XEP-0220 2.1.3): this server is the authoritative one.
func (c *in) dialbackVerify(el *xmlscan.Element) error {
	m := c.m
	from, _ := el.Attr("from") // the receiving server asking
	to, _ := el.Attr("to")     // this server, the originating one
	id, _ := el.Attr("id")
	key := strings.TrimSpace(el.Inner())
	typ := "invalid"
	if m.srv.Serves(to) && key != "" && key == m.dialbackKey(from, to, id) {
		typ = "valid"
	}
	// The key may come from another node of a cluster sharing Secret:
	// the stream id is not checked against this node's streams.
	m.log().Debug("s2s dialback key checked", "domain", from, "local", to, "id", id, "type", typ)
	return c.s.writeString(fmt.Sprintf("<db:verify from='%s' to='%s' id='%s' type='%s'/>",
		treff.AppendEscaped(nil, to), treff.AppendEscaped(nil, from), treff.AppendEscaped(nil, id), typ))
}

// stanza routes a stanza from the peer after checking its addresses.
func (c *in) stanza(el *xmlscan.Element) error {
	m := c.m
	if !c.anyAuth() {
		return errStream("not-authorized")
	}
	raw := []byte(el.Raw)
	if el.NS() != "" {
		raw = el.AppendWithout(nil, "", "xmlns")
	}
	st, err := treff.NewStanza(raw)
	if err != nil || st.From.Domainpart() == "" || st.To.Domainpart() == "" {
		// RFC 6120 4.9.3.14: a stanza between servers needs valid 'from'
		// and 'to'.
		return errStream("improper-addressing")
	}
	if !c.authenticated(st.From.Domainpart()) {
		return errStream("invalid-from")
	}
	if !m.srv.Serves(st.To.Domainpart()) {
		return errStream("host-unknown")
	}
	m.srv.Route(c.ctx, st)
	return nil
}

// askAuthoritative asks the authoritative server of originating whether
// key is the one it gave for the stream id to receiving (this server),
// over a new connection (XEP-0220 2.1.3).
func (m *Module) askAuthoritative(ctx context.Context, receiving, originating, id, key string) (bool, error) {
	ts, err := m.targets(ctx, originating)
	if err != nil {
		return false, err
	}
	p := pair{local: receiving, remote: originating}
	var last error
	for _, t := range ts {
		valid, err := m.verifyAt(ctx, t, p, id, key)
		if err == nil {
			return valid, nil
		}
		last = err
		if ctx.Err() != nil {
			break
		}
	}
	return false, last
}

func (m *Module) verifyAt(ctx context.Context, t target, p pair, id, key string) (bool, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", t.addr)
	if err != nil {
		return false, err
	}
	defer nc.Close()
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Now()) })
	defer stop()
	s := newStream(nc, m.maxStanza())
	// Verification runs over TLS too, like every stream of this server.
	if _, err := m.secure(ctx, s, p, t.direct); err != nil {
		return false, err
	}
	v := fmt.Sprintf("<db:verify from='%s' to='%s' id='%s'>%s</db:verify>",
		treff.AppendEscaped(nil, p.local), treff.AppendEscaped(nil, p.remote), treff.AppendEscaped(nil, id), treff.AppendEscaped(nil, key))
	if err := s.writeString(v); err != nil {
		return false, err
	}
	for i := 0; i < 100; i++ {
		el, err := s.sc.Next()
		if err != nil {
			return false, err
		}
		if el.Local() == "error" && strings.HasPrefix(el.Name, "stream") {
			return false, errStream("stream error: " + el.Inner())
		}
		if !isDialback(el, "verify") {
			continue
		}
		if vid, _ := el.Attr("id"); vid != id {
			continue
		}
		typ, _ := el.Attr("type")
		s.closeWith("")
		return typ == "valid", nil
	}
	return false, errStream("no dialback verification")
}
