package treff_test

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"net"
	"strings"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/trefftest"
)

// raw is the byte-level test client of trefftest.
type raw = trefftest.Client

func dialRaw(t *testing.T, ts *trefftest.Server, addr string) *raw { return ts.Dial(t, addr) }

func header(to string) string { return trefftest.Header(to) }

func plainAuth(user, pass string) string { return trefftest.PlainAuth(user, pass) }

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
			r.Login("alice@localhost", "alicepw", "r1")
			r.Send(tc.input)
			r.Expect(`<stream:error><` + tc.want + ` xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>`)
			r.Expect(`</stream:stream>`)
			r.Send("</stream:stream>")
			r.ExpectClosed()
		})
	}
}

func TestHostUnknown(t *testing.T) {
	ts := newTestServer(t, nil)
	r := dialRaw(t, ts, ts.Addr)
	r.Send(header("elsewhere.example"))
	r.Expect(`<stream:stream [^>]*>`)
	r.Expect(`<host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>`)
	r.ExpectClosed()
}

func TestNotWellFormedHeader(t *testing.T) {
	ts := newTestServer(t, nil)
	r := dialRaw(t, ts, ts.Addr)
	r.Send("<stream:stream to='localhost' <<")
	r.Expect(`<not-well-formed xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>`)
	r.ExpectClosed()
}

func TestStanzaErrors(t *testing.T) {
	ts := newTestServer(t, nil)
	r := dialRaw(t, ts, ts.Addr)
	full := r.Login("alice@localhost", "alicepw", "r1")
	if full != "alice@localhost/r1" {
		t.Fatalf("bound %q", full)
	}
	// IQ to the server in a namespace nobody handles.
	r.Send("<iq type='get' id='q1' to='localhost'><query xmlns='urn:example:nothing'/></iq>")
	r.Expect(`<iq type='error' id='q1' to='alice@localhost/r1' from='localhost'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>`)
	// IQ without id.
	r.Send("<iq type='get' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
	r.Expect(`<iq type='error' to='alice@localhost/r1' from='localhost'><error type='modify'><bad-request `)
	// IQ get without payload.
	r.Send("<iq type='get' id='q2'/>")
	r.Expect(`<iq type='error' id='q2'[^>]*><error type='modify'><bad-request `)
	// Message to a local account that does not exist.
	r.Send("<message to='nobody@localhost' id='m1' type='chat'><body>hi</body></message>")
	r.Expect(`<message type='error' id='m1' to='alice@localhost/r1' from='nobody@localhost'><error type='cancel'><service-unavailable `)
	// IQ to a nonexistent account.
	r.Send("<iq to='nobody@localhost' id='q3' type='get'><vCard xmlns='vcard-temp'/></iq>")
	r.Expect(`<iq type='error' id='q3' [^>]*><error type='cancel'><service-unavailable `)
	// Malformed 'to'.
	r.Send("<message to='a@b@c' id='m2'><body>x</body></message>")
	r.Expect(`<message type='error' id='m2'[^>]*><error type='modify'><jid-malformed `)
	// Remote domain without federation.
	r.Send("<message to='x@remote.example' id='m3'><body>x</body></message>")
	r.Expect(`<message type='error' id='m3' [^>]*from='x@remote.example'><error type='cancel'><remote-server-not-found `)
	// Errors are never answered.
	r.Send("<message to='nobody@localhost' type='error' id='m4'/>")
	r.Send("<iq type='get' id='last' to='localhost'><x xmlns='urn:example:last'/></iq>")
	// An answer to m4 would come before the one to 'last', so it would be
	// in what Expect consumed.
	got := r.Expect(`<iq type='error' id='last'`)
	if strings.Contains(got, "m4") {
		t.Errorf("error stanza was answered: %s", got)
	}
}

func TestSpoofedFromIsReplaced(t *testing.T) {
	ts := newTestServer(t, nil)
	a := dialRaw(t, ts, ts.Addr)
	a.Login("alice@localhost", "alicepw", "r1")
	b := dialRaw(t, ts, ts.Addr)
	b.Login("bob@localhost", "bobpw", "phone")
	b.Send("<presence/>")
	syncServer(b)
	a.Send("<message from='admin@localhost/x' to='bob@localhost/phone' id='s1'><body>trust me</body></message>")
	m := b.Expect(`<message [^>]*id='s1'[^>]*>`)
	if !strings.Contains(m, "from='alice@localhost/r1'") || strings.Contains(m, "admin@") {
		t.Errorf("from not stamped: %s", m)
	}
}

func TestSASLRules(t *testing.T) {
	ts := newTestServer(t, func(s *treff.Server) { s.MaxAuthFailures = 2 })
	t.Run("auth-before-tls", func(t *testing.T) {
		r := dialRaw(t, ts, ts.Addr)
		r.Send(header("localhost"))
		f := r.Expect(`</stream:features>`)
		if strings.Contains(f, "mechanism") {
			t.Errorf("mechanisms offered before TLS: %s", f)
		}
		r.Send(plainAuth("alice", "alicepw"))
		r.Expect(`<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><encryption-required/></failure>`)
	})
	t.Run("retry-then-too-many", func(t *testing.T) {
		r := dialRaw(t, ts, ts.Addr)
		r.StartTLS()
		r.Send(header("localhost"))
		f := r.Expect(`</stream:features>`)
		for _, m := range []string{"SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"} {
			if !strings.Contains(f, "<mechanism>"+m+"</mechanism>") {
				t.Errorf("%s not offered: %s", m, f)
			}
		}
		r.Send(plainAuth("alice", "wrong"))
		r.Expect(`<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>`)
		r.Send(plainAuth("nosuchuser", "wrong"))
		r.Expect(`<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>`)
		r.Expect(`<policy-violation `)
		r.ExpectClosed()
	})
	t.Run("retry-succeeds", func(t *testing.T) {
		r := dialRaw(t, ts, ts.Addr)
		r.StartTLS()
		r.Send(header("localhost"))
		r.Expect(`</stream:features>`)
		r.Send(plainAuth("alice", "wrong"))
		r.Expect(`<not-authorized/>`)
		r.Send(plainAuth("alice", "alicepw"))
		r.Expect(`<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>`)
	})
	t.Run("scram-wrong-proof", func(t *testing.T) {
		r := dialRaw(t, ts, ts.Addr)
		r.StartTLS()
		r.Send(header("localhost"))
		r.Expect(`</stream:features>`)
		r.Send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>" +
			base64.StdEncoding.EncodeToString([]byte("n,,n=alice,r=abcdefgh")) + "</auth>")
		ch := r.Expect(`<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>[^<]+</challenge>`)
		ch = strings.TrimSuffix(ch[strings.Index(ch, ">")+1:], "</challenge>")
		first, _ := base64.StdEncoding.DecodeString(ch)
		nonce := strings.TrimPrefix(strings.Split(string(first), ",")[0], "r=")
		final := "c=biws,r=" + nonce + ",p=" + base64.StdEncoding.EncodeToString(make([]byte, 32))
		r.Send("<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>" + base64.StdEncoding.EncodeToString([]byte(final)) + "</response>")
		r.Expect(`<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>`)
	})
	t.Run("bad-mechanism-and-encoding", func(t *testing.T) {
		r := dialRaw(t, ts, ts.Addr)
		r.StartTLS()
		r.Send(header("localhost"))
		r.Expect(`</stream:features>`)
		r.Send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='DIGEST-MD5'/>")
		r.Expect(`<invalid-mechanism/>`)
		r.Send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>!!notbase64</auth>")
		r.Expect(`<incorrect-encoding/>`)
	})
	t.Run("stanza-before-auth", func(t *testing.T) {
		r := dialRaw(t, ts, ts.Addr)
		r.StartTLS()
		r.Send(header("localhost"))
		r.Expect(`</stream:features>`)
		r.Send("<message to='bob@localhost'><body>x</body></message>")
		r.Expect(`<not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>`)
		r.ExpectClosed()
	})
	t.Run("data-after-starttls", func(t *testing.T) {
		r := dialRaw(t, ts, ts.Addr)
		r.Send(header("localhost"))
		r.Expect(`</stream:features>`)
		r.Send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><message/>")
		r.Expect(`<policy-violation `)
		r.ExpectClosed()
	})
}

func TestTimeouts(t *testing.T) {
	ts := newTestServer(t, func(s *treff.Server) {
		s.IdleTimeout = 800 * time.Millisecond
		s.NegotiationTimeout = 500 * time.Millisecond
	})
	t.Run("negotiation", func(t *testing.T) {
		r := dialRaw(t, ts, ts.Addr)
		r.Send(header("localhost"))
		r.Expect(`</stream:features>`)
		// Keep sending whitespace: the negotiation deadline still applies.
		// The pauses are the point of the test (the server's timeouts run
		// on the real clock, which it does not let tests replace).
		for i := 0; i < 8; i++ {
			time.Sleep(100 * time.Millisecond)
			r.Write([]byte(" "))
		}
		r.Expect(`<connection-timeout `)
		r.ExpectClosed()
	})
	t.Run("idle", func(t *testing.T) {
		r := dialRaw(t, ts, ts.Addr)
		r.Login("alice@localhost", "alicepw", "idle")
		// Whitespace keepalives every 100 ms keep the session open for
		// 1.2 s, longer than the 800 ms idle timeout (real time, as
		// above); a pause may stretch by 700 ms on a loaded machine.
		for i := 0; i < 12; i++ {
			time.Sleep(100 * time.Millisecond)
			r.Send(" ")
		}
		r.Send("<iq type='get' id='alive' to='localhost'><x xmlns='urn:example'/></iq>")
		r.Expect(`id='alive'`)
		r.Expect(`<connection-timeout `)
		r.ExpectClosed()
	})
}

func TestResourceConflictAndGeneratedResource(t *testing.T) {
	ts := newTestServer(t, nil)
	a := dialRaw(t, ts, ts.Addr)
	a.Login("alice@localhost", "alicepw", "same")
	b := dialRaw(t, ts, ts.Addr)
	if got := b.Login("alice@localhost", "alicepw", "same"); got != "alice@localhost/same" {
		t.Fatalf("bound %q", got)
	}
	a.Expect(`<conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>`)
	c := dialRaw(t, ts, ts.Addr)
	c.StartTLS()
	c.Send(header("localhost"))
	c.Expect(`</stream:features>`)
	c.Send(plainAuth("alice", "alicepw"))
	c.Expect(`<success`)
	c.Send(header("localhost"))
	c.Expect(`</stream:features>`)
	c.Send("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
	if m := c.Expect(`<jid>[^<]+</jid>`); !strings.Contains(m, "<jid>alice@localhost/treff-") {
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
	c.Close()
	r := ts.DialTLS(t)
	r.Send(header("localhost"))
	f := r.Expect(`</stream:features>`)
	if strings.Contains(f, "starttls") || !strings.Contains(f, "SCRAM-SHA-256") {
		t.Errorf("features on direct TLS: %s", f)
	}
}

func TestShutdownSendsSystemShutdown(t *testing.T) {
	ts := trefftest.NewServer(t, nil)
	ts.AddUser(t, "alice", "alicepw")
	r := dialRaw(t, ts, ts.Addr)
	r.Login("alice@localhost", "alicepw", "r")
	pending := dialRaw(t, ts, ts.Addr)
	pending.Send(header("localhost"))
	pending.Expect(`</stream:features>`)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- ts.Shutdown(ctx) }()
	r.Expect(`<system-shutdown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>`)
	r.Send("</stream:stream>")
	pending.Expect(`<system-shutdown `)
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	r.ExpectClosed()
	if _, err := net.Dial("tcp", ts.Addr); err == nil {
		t.Error("listener still open")
	}
	if err := ts.Serve(&net.TCPListener{}); err != treff.ErrServerClosed {
		t.Errorf("Serve after Shutdown: %v", err)
	}
}

func TestSlowClientDoesNotBlockSender(t *testing.T) {
	closed := make(trefftest.ClosedSessions, 8)
	ts := newTestServer(t, func(s *treff.Server) {
		s.MaxQueue = 64 << 10
		s.Modules = []treff.Module{closed}
	})
	// bob's socket takes 4 KiB at a time: what the server cannot write
	// stays in its queue, however large the kernel's buffers may grow
	// elsewhere, so the queue overflows whatever the machine's load.
	nc, err := net.Dial("tcp", ts.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	if err := nc.(*net.TCPConn).SetReadBuffer(4096); err != nil {
		t.Fatal(err)
	}
	slow := trefftest.NewClient(t, nc, ts.Domain, ts.TLSConfig())
	slow.Login("bob@localhost", "bobpw", "slow")
	slow.Send("<presence/>")
	syncServer(slow)
	a := dialRaw(t, ts, ts.Addr)
	a.Login("alice@localhost", "alicepw", "fast")
	// bob never reads; alice floods. Kernel buffers absorb some megabytes,
	// then bob's queue overflows and bob is disconnected; alice is never
	// held up and keeps getting answers.
	body := strings.Repeat("x", 8000)
	for i := 0; i < 1500; i++ {
		a.Send("<message to='bob@localhost/slow'><body>" + body + "</body></message>")
	}
	a.Send("<iq type='get' id='after' to='localhost'><x xmlns='urn:example'/></iq>")
	a.Expect(`id='after'`)
	closed.Wait(t, "bob@localhost/slow")
	if n := len(ts.Sessions(jid.MustParse("bob@localhost"))); n > 0 {
		t.Errorf("%d sessions of bob after the slow one closed", n)
	}
	if st := ts.Stats(); st.QueueDrops < 1 || st.Sessions.TCP != 1 {
		t.Errorf("Stats: QueueDrops %d, Sessions %+v; want the drop counted and alice's session left", st.QueueDrops, st.Sessions)
	}
}

// syncServer waits until the server has processed everything c sent before.
func syncServer(c *raw) {
	c.Send("<iq type='get' id='sync' to='localhost'><sync xmlns='urn:example:sync'/></iq>")
	c.Expect(`<iq type='error' id='sync'[^>]*>.*?</iq>`)
}

// CloseUser ends bound sessions and streams that authenticated but have
// not bound yet.
func TestCloseUser(t *testing.T) {
	ts := newTestServer(t, nil)
	bound := ts.Login(t, "alice", "alicepw", "a")
	pending := ts.Dial(t, ts.Addr)
	pending.StartTLS()
	pending.Send(header("localhost"))
	pending.Expect(`</stream:features>`)
	pending.Send(plainAuth("alice", "alicepw"))
	pending.Expect(`<success`)
	other := ts.Login(t, "bob", "bobpw", "b")
	got := ts.CloseUser(jid.MustParse("alice@localhost/ignored"), "not-authorized", "account deleted")
	if len(got) != 1 || got[0].JID().String() != "alice@localhost/a" {
		t.Fatalf("CloseUser returned %v", got)
	}
	bound.Expect(`<not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>account deleted</text>`)
	pending.Send(header("localhost"))
	pending.Expect(`</stream:features>`)
	pending.Send("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
	pending.Expect(`<not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>`)
	syncServer(other)
}

// TestStartTLSTrailing: bytes sent after <starttls/> before the handshake
// close the stream, unless they are whitespace (go-xmpp sends a newline
// with it), which is dropped: the handshake and a login follow.
func TestStartTLSTrailing(t *testing.T) {
	ts := newTestServer(t, nil)
	c := ts.Dial(t, ts.Addr)
	c.Send(trefftest.Header(ts.Domain))
	c.Expect(`</stream:features>`)
	c.Send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><iq type='get' id='x'/>")
	c.Expect(`<policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text[^>]*>data after starttls</text>`)

	c = ts.Dial(t, ts.Addr)
	c.Send(trefftest.Header(ts.Domain))
	c.Expect(`</stream:features>`)
	c.Send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>\n \r\n\t")
	c.Expect(`<proceed[^>]*/>`)
	tc := tls.Client(c.Conn(), ts.TLSConfig())
	if err := tc.Handshake(); err != nil {
		t.Fatalf("handshake after whitespace: %v", err)
	}
	c = trefftest.NewClient(t, tc, ts.Domain, ts.TLSConfig())
	if jid := c.Login("alice", "alicepw", "r"); jid != "alice@localhost/r" {
		t.Errorf("bound %q", jid)
	}
}
