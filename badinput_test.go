package treff_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/trefftest"
)

// raw is a byte-level test client: it writes what it is told and reads
// until the server's output contains what it expects.
type raw struct {
	t    *testing.T
	ts   *trefftest.Server
	conn net.Conn
	buf  bytes.Buffer
}

func dialRaw(t *testing.T, ts *trefftest.Server, addr string) *raw {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &raw{t: t, ts: ts, conn: c}
}

func (r *raw) send(s string) {
	r.t.Helper()
	r.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(r.conn, s); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

// expect reads until the output matches the regular expression, consumes
// the output up to the end of the match and returns the consumed part.
func (r *raw) expect(pattern string) string {
	r.t.Helper()
	re := regexp.MustCompile(pattern)
	deadline := time.Now().Add(5 * time.Second)
	p := make([]byte, 4096)
	for {
		if loc := re.FindIndex(r.buf.Bytes()); loc != nil {
			m := string(r.buf.Bytes()[:loc[1]])
			r.buf.Next(loc[1])
			return m
		}
		r.conn.SetReadDeadline(deadline)
		n, err := r.conn.Read(p)
		r.buf.Write(p[:n])
		if err != nil && n == 0 {
			r.t.Fatalf("waiting for %q: %v; got %q", pattern, err, r.buf.String())
		}
	}
}

// expectClosed reads until the server closes the connection.
func (r *raw) expectClosed() {
	r.t.Helper()
	r.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := io.Copy(io.Discard, r.conn)
	if err != nil && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
		r.t.Fatalf("connection not closed: %v", err)
	}
}

func header(to string) string {
	return "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='" + to + "' version='1.0'>"
}

func (r *raw) startTLS() {
	r.t.Helper()
	r.send(header("localhost"))
	r.expect(`</stream:features>`)
	r.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
	r.expect(`<proceed[^>]*/>`)
	tc := tls.Client(r.conn, r.ts.TLSConfig())
	if err := tc.Handshake(); err != nil {
		r.t.Fatal(err)
	}
	r.conn = tc
	r.buf.Reset()
}

func plainAuth(user, pass string) string {
	return "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>" +
		base64.StdEncoding.EncodeToString([]byte("\x00"+user+"\x00"+pass)) + "</auth>"
}

// login runs STARTTLS, PLAIN and bind and returns the full JID.
func (r *raw) login(user, pass, resource string) string {
	r.t.Helper()
	r.startTLS()
	r.send(header("localhost"))
	r.expect(`</stream:features>`)
	r.send(plainAuth(user, pass))
	r.expect(`<success[^>]*/>`)
	r.send(header("localhost"))
	r.expect(`</stream:features>`)
	r.send("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>" + resource + "</resource></bind></iq>")
	m := r.expect(`<jid>[^<]+</jid>`)
	m = m[strings.Index(m, "<jid>"):]
	return strings.TrimSuffix(strings.TrimPrefix(m, "<jid>"), "</jid>")
}

func newTestServer(t *testing.T, configure func(*treff.Server)) *trefftest.Server {
	ts := trefftest.NewServer(t, configure)
	ts.AddUser(t, "alice", "alicepw")
	ts.AddUser(t, "bob", "bobpw")
	return ts
}

func TestStreamErrors(t *testing.T) {
	ts := newTestServer(t, func(s *treff.Server) { s.MaxStanzaSize = 2048 })
	for _, tc := range []struct {
		name  string
		input string // after login
		want  string
	}{
		{"not-well-formed", "<message><body></message>", "not-well-formed"},
		{"restricted-xml", "<message><!-- x --></message>", "restricted-xml"},
		{"too-large", "<message to='bob@localhost'><body>" + strings.Repeat("x", 4000) + "</body></message>", "policy-violation"},
		{"unsupported-stanza", "<foo xmlns='urn:example'/>", "unsupported-stanza-type"},
		{"bad-prefix", "<message><x:y/></message>", "bad-namespace-prefix"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := dialRaw(t, ts, ts.Addr)
			r.login("alice@localhost", "alicepw", "r1")
			r.send(tc.input)
			r.expect(`<stream:error><` + tc.want + ` xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>`)
			r.expect(`</stream:stream>`)
			r.send("</stream:stream>")
			r.expectClosed()
		})
	}
}

func TestHostUnknown(t *testing.T) {
	ts := newTestServer(t, nil)
	r := dialRaw(t, ts, ts.Addr)
	r.send(header("elsewhere.example"))
	r.expect(`<stream:stream [^>]*>`)
	r.expect(`<host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>`)
	r.expectClosed()
}

func TestNotWellFormedHeader(t *testing.T) {
	ts := newTestServer(t, nil)
	r := dialRaw(t, ts, ts.Addr)
	r.send("<stream:stream to='localhost' <<")
	r.expect(`<not-well-formed xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>`)
	r.expectClosed()
}

func TestStanzaErrors(t *testing.T) {
	ts := newTestServer(t, nil)
	r := dialRaw(t, ts, ts.Addr)
	full := r.login("alice@localhost", "alicepw", "r1")
	if full != "alice@localhost/r1" {
		t.Fatalf("bound %q", full)
	}
	// IQ to the server in a namespace nobody handles.
	r.send("<iq type='get' id='q1' to='localhost'><query xmlns='urn:example:nothing'/></iq>")
	r.expect(`<iq type='error' id='q1' to='alice@localhost/r1' from='localhost'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>`)
	// IQ without id.
	r.send("<iq type='get' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
	r.expect(`<iq type='error' to='alice@localhost/r1' from='localhost'><error type='modify'><bad-request `)
	// IQ get without payload.
	r.send("<iq type='get' id='q2'/>")
	r.expect(`<iq type='error' id='q2'[^>]*><error type='modify'><bad-request `)
	// Message to a local account that does not exist.
	r.send("<message to='nobody@localhost' id='m1' type='chat'><body>hi</body></message>")
	r.expect(`<message type='error' id='m1' to='alice@localhost/r1' from='nobody@localhost'><error type='cancel'><service-unavailable `)
	// IQ to a nonexistent account.
	r.send("<iq to='nobody@localhost' id='q3' type='get'><vCard xmlns='vcard-temp'/></iq>")
	r.expect(`<iq type='error' id='q3' [^>]*><error type='cancel'><service-unavailable `)
	// Malformed 'to'.
	r.send("<message to='a@b@c' id='m2'><body>x</body></message>")
	r.expect(`<message type='error' id='m2'[^>]*><error type='modify'><jid-malformed `)
	// Remote domain without federation.
	r.send("<message to='x@remote.example' id='m3'><body>x</body></message>")
	r.expect(`<message type='error' id='m3' [^>]*from='x@remote.example'><error type='cancel'><remote-server-not-found `)
	// Errors are never answered.
	r.send("<message to='nobody@localhost' type='error' id='m4'/>")
	r.send("<iq type='get' id='last' to='localhost'><x xmlns='urn:example:last'/></iq>")
	got := r.expect(`<iq type='error' id='last'`)
	if strings.Contains(r.buf.String(), "m4") {
		t.Errorf("error stanza was answered: %s", got)
	}
}

func TestSpoofedFromIsReplaced(t *testing.T) {
	ts := newTestServer(t, nil)
	a := dialRaw(t, ts, ts.Addr)
	a.login("alice@localhost", "alicepw", "r1")
	b := dialRaw(t, ts, ts.Addr)
	b.login("bob@localhost", "bobpw", "phone")
	b.send("<presence/>")
	time.Sleep(50 * time.Millisecond)
	a.send("<message from='admin@localhost/x' to='bob@localhost/phone' id='s1'><body>trust me</body></message>")
	m := b.expect(`<message [^>]*id='s1'[^>]*>`)
	if !strings.Contains(m, "from='alice@localhost/r1'") || strings.Contains(m, "admin@") {
		t.Errorf("from not stamped: %s", m)
	}
}

func TestSASLRules(t *testing.T) {
	ts := newTestServer(t, func(s *treff.Server) { s.MaxAuthFailures = 2 })
	t.Run("auth-before-tls", func(t *testing.T) {
		r := dialRaw(t, ts, ts.Addr)
		r.send(header("localhost"))
		f := r.expect(`</stream:features>`)
		if strings.Contains(f, "mechanism") {
			t.Errorf("mechanisms offered before TLS: %s", f)
		}
		r.send(plainAuth("alice", "alicepw"))
		r.expect(`<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><encryption-required/></failure>`)
	})
	t.Run("retry-then-too-many", func(t *testing.T) {
		r := dialRaw(t, ts, ts.Addr)
		r.startTLS()
		r.send(header("localhost"))
		f := r.expect(`</stream:features>`)
		for _, m := range []string{"SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"} {
			if !strings.Contains(f, "<mechanism>"+m+"</mechanism>") {
				t.Errorf("%s not offered: %s", m, f)
			}
		}
		r.send(plainAuth("alice", "wrong"))
		r.expect(`<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>`)
		r.send(plainAuth("nosuchuser", "wrong"))
		r.expect(`<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>`)
		r.expect(`<policy-violation `)
		r.expectClosed()
	})
	t.Run("retry-succeeds", func(t *testing.T) {
		r := dialRaw(t, ts, ts.Addr)
		r.startTLS()
		r.send(header("localhost"))
		r.expect(`</stream:features>`)
		r.send(plainAuth("alice", "wrong"))
		r.expect(`<not-authorized/>`)
		r.send(plainAuth("alice", "alicepw"))
		r.expect(`<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>`)
	})
	t.Run("scram-wrong-proof", func(t *testing.T) {
		r := dialRaw(t, ts, ts.Addr)
		r.startTLS()
		r.send(header("localhost"))
		r.expect(`</stream:features>`)
		r.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>" +
			base64.StdEncoding.EncodeToString([]byte("n,,n=alice,r=abcdefgh")) + "</auth>")
		ch := r.expect(`<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>[^<]+</challenge>`)
		ch = strings.TrimSuffix(ch[strings.Index(ch, ">")+1:], "</challenge>")
		first, _ := base64.StdEncoding.DecodeString(ch)
		nonce := strings.TrimPrefix(strings.Split(string(first), ",")[0], "r=")
		final := "c=biws,r=" + nonce + ",p=" + base64.StdEncoding.EncodeToString(make([]byte, 32))
		r.send("<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>" + base64.StdEncoding.EncodeToString([]byte(final)) + "</response>")
		r.expect(`<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>`)
	})
	t.Run("bad-mechanism-and-encoding", func(t *testing.T) {
		r := dialRaw(t, ts, ts.Addr)
		r.startTLS()
		r.send(header("localhost"))
		r.expect(`</stream:features>`)
		r.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='DIGEST-MD5'/>")
		r.expect(`<invalid-mechanism/>`)
		r.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>!!notbase64</auth>")
		r.expect(`<incorrect-encoding/>`)
	})
	t.Run("stanza-before-auth", func(t *testing.T) {
		r := dialRaw(t, ts, ts.Addr)
		r.startTLS()
		r.send(header("localhost"))
		r.expect(`</stream:features>`)
		r.send("<message to='bob@localhost'><body>x</body></message>")
		r.expect(`<not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>`)
		r.expectClosed()
	})
	t.Run("data-after-starttls", func(t *testing.T) {
		r := dialRaw(t, ts, ts.Addr)
		r.send(header("localhost"))
		r.expect(`</stream:features>`)
		r.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><message/>")
		r.expect(`<policy-violation `)
		r.expectClosed()
	})
}

func TestTimeouts(t *testing.T) {
	ts := newTestServer(t, func(s *treff.Server) {
		s.IdleTimeout = 300 * time.Millisecond
		s.NegotiationTimeout = 500 * time.Millisecond
	})
	t.Run("negotiation", func(t *testing.T) {
		r := dialRaw(t, ts, ts.Addr)
		r.send(header("localhost"))
		r.expect(`</stream:features>`)
		// Keep sending whitespace: the negotiation deadline still applies.
		for i := 0; i < 8; i++ {
			time.Sleep(100 * time.Millisecond)
			r.conn.Write([]byte(" "))
		}
		r.expect(`<connection-timeout `)
		r.expectClosed()
	})
	t.Run("idle", func(t *testing.T) {
		r := dialRaw(t, ts, ts.Addr)
		r.login("alice@localhost", "alicepw", "idle")
		// Whitespace keepalives keep the session open.
		for i := 0; i < 6; i++ {
			time.Sleep(150 * time.Millisecond)
			r.send(" ")
		}
		r.send("<iq type='get' id='alive' to='localhost'><x xmlns='urn:example'/></iq>")
		r.expect(`id='alive'`)
		r.expect(`<connection-timeout `)
		r.expectClosed()
	})
}

func TestResourceConflictAndGeneratedResource(t *testing.T) {
	ts := newTestServer(t, nil)
	a := dialRaw(t, ts, ts.Addr)
	a.login("alice@localhost", "alicepw", "same")
	b := dialRaw(t, ts, ts.Addr)
	if got := b.login("alice@localhost", "alicepw", "same"); got != "alice@localhost/same" {
		t.Fatalf("bound %q", got)
	}
	a.expect(`<conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>`)
	c := dialRaw(t, ts, ts.Addr)
	c.startTLS()
	c.send(header("localhost"))
	c.expect(`</stream:features>`)
	c.send(plainAuth("alice", "alicepw"))
	c.expect(`<success`)
	c.send(header("localhost"))
	c.expect(`</stream:features>`)
	c.send("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
	if m := c.expect(`<jid>[^<]+</jid>`); !strings.Contains(m, "<jid>alice@localhost/treff-") {
		t.Errorf("generated %s", m)
	}
}

func TestDirectTLS(t *testing.T) {
	ts := newTestServer(t, nil)
	c, err := tls.Dial("tcp", ts.TLSAddr, ts.TLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := &raw{t: t, ts: ts, conn: c}
	r.send(header("localhost"))
	f := r.expect(`</stream:features>`)
	if strings.Contains(f, "starttls") || !strings.Contains(f, "SCRAM-SHA-256") {
		t.Errorf("features on direct TLS: %s", f)
	}
}

func TestShutdownSendsSystemShutdown(t *testing.T) {
	ts := trefftest.NewServer(t, nil)
	ts.AddUser(t, "alice", "alicepw")
	r := dialRaw(t, ts, ts.Addr)
	r.login("alice@localhost", "alicepw", "r")
	pending := dialRaw(t, ts, ts.Addr)
	pending.send(header("localhost"))
	pending.expect(`</stream:features>`)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- ts.Shutdown(ctx) }()
	r.expect(`<system-shutdown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>`)
	r.send("</stream:stream>")
	pending.expect(`<system-shutdown `)
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	r.expectClosed()
	if _, err := net.Dial("tcp", ts.Addr); err == nil {
		t.Error("listener still open")
	}
	if err := ts.Serve(&net.TCPListener{}); err != treff.ErrServerClosed {
		t.Errorf("Serve after Shutdown: %v", err)
	}
}

func TestSlowClientDoesNotBlockSender(t *testing.T) {
	ts := newTestServer(t, func(s *treff.Server) { s.MaxQueue = 64 << 10 })
	slow := dialRaw(t, ts, ts.Addr)
	slow.login("bob@localhost", "bobpw", "slow")
	slow.send("<presence/>")
	a := dialRaw(t, ts, ts.Addr)
	a.login("alice@localhost", "alicepw", "fast")
	time.Sleep(50 * time.Millisecond)
	// bob never reads; alice floods. Kernel buffers absorb some megabytes,
	// then bob's queue overflows and bob is disconnected; alice is never
	// held up and keeps getting answers.
	body := strings.Repeat("x", 8000)
	start := time.Now()
	for i := 0; i < 1500; i++ {
		a.send("<message to='bob@localhost/slow'><body>" + body + "</body></message>")
	}
	a.send("<iq type='get' id='after' to='localhost'><x xmlns='urn:example'/></iq>")
	a.expect(`id='after'`)
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("sender held up for %v", d)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(ts.Sessions(mustJID(t, "bob@localhost"))) > 0 {
		if time.Now().After(deadline) {
			t.Fatal("slow session was not closed")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func mustJID(t *testing.T, s string) jid.JID {
	t.Helper()
	j, err := jid.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return j
}
