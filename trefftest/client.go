package trefftest

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Client is a byte-level XMPP client for tests: it writes exactly what it
// is told and reads until the server's output matches what it expects. It
// makes no protocol decisions of its own, so tests see the server's bytes.
type Client struct {
	tb     testing.TB
	domain string
	tlsCfg *tls.Config
	conn   net.Conn
	buf    bytes.Buffer
	// JID is the full JID bound by Login.
	JID string
	// Timeout bounds each Expect; 0 means 5 seconds.
	Timeout time.Duration

	syncs int
}

// Dial connects to addr (s.Addr for STARTTLS; see DialTLS for direct TLS).
// The connection is closed when the test ends.
func (s *Server) Dial(tb testing.TB, addr string) *Client {
	tb.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return NewClient(tb, c, s.Domain, s.TLSConfig())
}

// NewClient returns a client on an established connection (plain TCP or
// TLS) for a stream to domain; tlsConfig is used by StartTLS.
func NewClient(tb testing.TB, conn net.Conn, domain string, tlsConfig *tls.Config) *Client {
	return &Client{tb: tb, domain: domain, tlsCfg: tlsConfig, conn: conn}
}

// DialTLS connects to s.TLSAddr with direct TLS.
func (s *Server) DialTLS(tb testing.TB) *Client {
	tb.Helper()
	c, err := tls.Dial("tcp", s.TLSAddr, s.TLSConfig())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return NewClient(tb, c, s.Domain, s.TLSConfig())
}

// Login connects over STARTTLS, authenticates with PLAIN as
// local@Domain and binds resource (empty: the server picks one).
func (s *Server) Login(tb testing.TB, local, password, resource string) *Client {
	tb.Helper()
	c := s.Dial(tb, s.Addr)
	c.Login(local, password, resource)
	return c
}

// Conn returns the current connection (TLS after StartTLS).
func (c *Client) Conn() net.Conn { return c.conn }

// Send writes s.
func (c *Client) Send(s string) {
	c.tb.Helper()
	c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c.conn, s); err != nil {
		c.tb.Fatalf("trefftest: write: %v", err)
	}
}

// Expect reads until the output matches the regular expression, consumes
// the output up to the end of the match and returns the consumed part
// (everything since the previous Expect).
func (c *Client) Expect(pattern string) string {
	c.tb.Helper()
	re := regexp.MustCompile(pattern)
	timeout := c.Timeout
	if timeout == 0 {
		timeout = 5 * time.Second
	}
	deadline := time.Now().Add(timeout)
	p := make([]byte, 4096)
	for {
		if loc := re.FindIndex(c.buf.Bytes()); loc != nil {
			m := string(c.buf.Bytes()[:loc[1]])
			c.buf.Next(loc[1])
			return m
		}
		c.conn.SetReadDeadline(deadline)
		n, err := c.conn.Read(p)
		c.buf.Write(p[:n])
		if err != nil && n == 0 {
			c.tb.Fatalf("trefftest: waiting for %q: %v; got %q", pattern, err, c.buf.String())
		}
	}
}

// Pending returns output read but not consumed by Expect yet.
func (c *Client) Pending() string { return c.buf.String() }

// Write writes p without any check, for tests that send raw bytes.
func (c *Client) Write(p []byte) (int, error) { return c.conn.Write(p) }

// ExpectClosed reads until the server closes the connection.
func (c *Client) ExpectClosed() {
	c.tb.Helper()
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := io.Copy(io.Discard, c.conn)
	if err != nil && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
		c.tb.Fatalf("trefftest: connection not closed: %v", err)
	}
}

// Header returns a client stream header for domain to.
func Header(to string) string {
	return "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='" + to + "' version='1.0'>"
}

// PlainAuth returns a SASL PLAIN <auth/> element.
func PlainAuth(user, pass string) string {
	return "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>" +
		base64.StdEncoding.EncodeToString([]byte("\x00"+user+"\x00"+pass)) + "</auth>"
}

// StartTLS opens the stream and upgrades it with STARTTLS.
func (c *Client) StartTLS() {
	c.tb.Helper()
	c.Send(Header(c.domain))
	c.Expect(`</stream:features>`)
	c.Send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
	c.Expect(`<proceed[^>]*/>`)
	tc := tls.Client(c.conn, c.tlsCfg)
	if err := tc.Handshake(); err != nil {
		c.tb.Fatal(err)
	}
	c.conn = tc
	c.buf.Reset()
}

// Authenticate runs STARTTLS (unless the connection is direct TLS) and
// PLAIN, and restarts the stream: what follows is binding a resource or
// resuming a session (XEP-0198).
func (c *Client) Authenticate(user, pass string) {
	c.tb.Helper()
	if _, ok := c.conn.(*tls.Conn); !ok {
		c.StartTLS()
	}
	c.Send(Header(c.domain))
	c.Expect(`</stream:features>`)
	c.Send(PlainAuth(user, pass))
	c.Expect(`<success[^>]*/>`)
	c.Send(Header(c.domain))
	c.Expect(`</stream:features>`)
}

// Login runs STARTTLS (unless the connection is direct TLS), PLAIN and
// bind, and returns the bound full JID (also kept in c.JID).
func (c *Client) Login(user, pass, resource string) string {
	c.tb.Helper()
	c.Authenticate(user, pass)
	bind := "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"
	if resource != "" {
		bind = "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>" + resource + "</resource></bind>"
	}
	c.Send("<iq type='set' id='bind-1'>" + bind + "</iq>")
	m := c.Expect(`<jid>[^<]+</jid>`)
	m = m[strings.Index(m, "<jid>")+len("<jid>"):]
	c.JID = strings.TrimSuffix(m, "</jid>")
	c.Expect(`</iq>`)
	return c.JID
}

// Sync sends the server an IQ (a XEP-0199 ping to the domain) and waits for
// its answer, a result or an error (without a ping module). A session
// handles its client's stanzas in order, so when the answer arrives the
// server has processed everything sent on this stream before, and what it
// had queued for this client before answering was read before it. Sync
// returns what it read up to and including the answer, for a test that
// checks something was not delivered. It needs a bound session.
func (c *Client) Sync() string {
	c.tb.Helper()
	c.syncs++
	id := "trefftest-sync-" + strconv.Itoa(c.syncs)
	c.Send("<iq type='get' id='" + id + "' to='" + c.domain + "'><ping xmlns='urn:xmpp:ping'/></iq>")
	return c.Expect(`<iq [^>]*\bid='` + id + `'[^>]*?(?:/>|>(?s:.*?)</iq>)`)
}
