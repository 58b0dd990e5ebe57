package e2e

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"html"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/bosh"
	"github.com/treff-im/treff/trefftest"
	"github.com/treff-im/treff/websocket"
	"mellium.im/xmpp/jid"
)

// The tests in this file run StanzaJS (the "stanza" package from npm,
// pinned in js/package.json), a web client library independent of the
// server, with the scenario js/bosh.mjs: over BOSH (XEP-0124/XEP-0206)
// and over WebSocket (RFC 7395), against an in-process server whose HTTP
// handlers are served on plain HTTP on 127.0.0.1, chatting with a TCP
// client.

// TestStanzaJSBOSH: StanzaJS logs in over BOSH (SASL, restart, bind) and
// exchanges messages with bob on TCP; bob's reply reaches it through a
// held request; it then terminates the session.
func TestStanzaJSBOSH(t *testing.T) {
	stanzaJS(t, "bosh", "/http-bind")
}

// TestStanzaJSWebSocket: the same scenario over WebSocket.
func TestStanzaJSWebSocket(t *testing.T) {
	stanzaJS(t, "websocket", "/xmpp-websocket")
}

func stanzaJS(t *testing.T, transport, path string) {
	needXMPPJS(t)
	s := newServer(t)
	s.AddUser(t, "alice", alicePW)
	s.AddUser(t, "bob", bobPW)
	mux := http.NewServeMux()
	mux.Handle("/http-bind", &bosh.Handler{Server: s.Server.Server})
	mux.Handle("/xmpp-websocket", &websocket.Handler{Server: s.Server.Server})
	hs := httptest.NewServer(mux)
	defer hs.Close()
	url := hs.URL + path
	if transport == "websocket" {
		url = "ws" + strings.TrimPrefix(url, "http")
	}

	bob := s.Login(t, "bob", bobPW, "desk")
	runStanzaJS(t, transport, url, s.CertFile, bob)
	for i := 0; i < 100 && len(s.Server.Sessions(jid.MustParse("alice@localhost"))) != 0; i++ {
		time.Sleep(50 * time.Millisecond)
	}
	if n := len(s.Server.Sessions(jid.MustParse("alice@localhost"))); n != 0 {
		t.Errorf("alice still has %d sessions", n)
	}
}

// peerEcho waits (in the background, at most clientTimeout) for a chat
// message from a JID starting with fromPrefix on c's connection, checks
// that its body is body, and answers it with "reply BODY". The channel
// gets nil on success.
func peerEcho(c *trefftest.Client, fromPrefix, body string) <-chan error {
	errc := make(chan error, 1)
	re := regexp.MustCompile(`<message [^>]*from='(` + regexp.QuoteMeta(fromPrefix) + `[^']*)'[^>]*>.*?<body>([^<]*)</body>`)
	conn := c.Conn()
	buf := bytes.NewBufferString(c.Pending())
	go func() {
		deadline := time.Now().Add(clientTimeout)
		p := make([]byte, 4096)
		for time.Now().Before(deadline) {
			if m := re.FindStringSubmatch(buf.String()); m != nil {
				if got := html.UnescapeString(m[2]); got != body {
					errc <- fmt.Errorf("bob got the body %q, want %q", got, body)
					return
				}
				conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
				_, err := fmt.Fprintf(conn, "<message to='%s' type='chat' id='echo'><body>%s</body></message>",
					m[1], treff.AppendEscaped(nil, "reply "+body))
				errc <- err
				return
			}
			conn.SetReadDeadline(deadline)
			n, err := conn.Read(p)
			buf.Write(p[:n])
			if err != nil && n == 0 {
				errc <- fmt.Errorf("bob: waiting for alice's message: %v; got %q", err, buf.String())
				return
			}
		}
		errc <- fmt.Errorf("bob: no message from alice; got %q", buf.String())
	}()
	return errc
}

// runStanzaJS runs js/bosh.mjs as alice over transport at url (trusting
// certFile) and checks her exchange with bob, logged in on TCP.
func runStanzaJS(t *testing.T, transport, url, certFile string, bob *trefftest.Client) {
	t.Helper()
	body := uniqueBody("stanzajs-" + transport)
	peer := peerEcho(bob, "alice@localhost/", body)
	stanzaJSChat(t, transport, url, certFile, bob.JID, body, func() error { return <-peer })
}

// stanzaJSChat runs js/bosh.mjs as alice over transport at url (trusting
// certFile): she sends peer a chat message with body and must get "reply
// BODY" back from it; peerDone reports how the peer's side went.
func stanzaJSChat(t *testing.T, transport, url, certFile, peer, body string, peerDone func() error) {
	t.Helper()
	argv := []string{filepath.Join(jsDir, "bosh.mjs"), "--url", url, "--transport", transport,
		"--jid", "alice@localhost", "--password", alicePW, "--peer", peer, "--body", body,
		"--timeout", fmt.Sprint(scriptTimeout.Seconds())}
	if testing.Verbose() && os.Getenv("E2E_DEBUG") != "" {
		argv = append(argv, "--debug")
	}
	es := runClient(t, "node bosh.mjs "+transport, nodeEnv(certFile), "node", argv...)

	var login struct {
		JID, Mech, Transport string
	}
	es.one(t, "login", "alice").decode(t, &login)
	if !strings.HasPrefix(login.JID, "alice@localhost/") || login.Transport != transport || login.Mech == "" {
		t.Errorf("login: %+v", login)
	}
	if err := peerDone(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range es.of("message", "alice") {
		got = append(got, e.From+" "+e.Type+" "+e.Body)
	}
	if want := []string{peer + " chat reply " + body}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("alice got messages %q, want %q", got, want)
	}
	if len(es.of("offline", "alice")) != 1 {
		t.Errorf("alice did not end her session")
	}
}

// TestStanzaJSWebSocketCommunity: StanzaJS over WebSocket against the
// example server binary's https listener, chatting with a slixmpp user on
// its TCP listener.
func TestStanzaJSWebSocketCommunity(t *testing.T) {
	needXMPPJS(t)
	needSlixmpp(t)
	w := startWebAliceBob(t)
	script, err := filepath.Abs(filepath.Join("clients", "web.py"))
	if err != nil {
		t.Fatal(err)
	}
	body := uniqueBody("stanzajs-ws-slixmpp")
	bob := startClient(t, "client web.py echo", pythonEnv(), python, script,
		"--addr", w.addr, "--cert", w.cert, "--timeout", "60", "echo",
		"--jid", "bob@localhost/desk", "--password", bobPW, "--body", body, "--from", "alice@localhost/", "--wait", "30")
	bob.waitEvent(t, "ready", 30*time.Second)
	stanzaJSChat(t, "websocket", "wss://"+w.https+"/xmpp-websocket", w.cert, "bob@localhost/desk", body, func() error {
		bob.finish(t, 30*time.Second)
		return nil
	})
}

// TestStanzaJSBOSHCommunity: StanzaJS over BOSH against the example
// server binary's https listener (its certificate checked), chatting with
// bob on the binary's TCP listener.
func TestStanzaJSBOSHCommunity(t *testing.T) {
	needXMPPJS(t)
	w := startWebAliceBob(t)
	pem, err := os.ReadFile(w.cert)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	nc, err := net.Dial("tcp", w.addr)
	if err != nil {
		t.Fatal(err)
	}
	bob := trefftest.NewClient(t, nc, "localhost", &tls.Config{RootCAs: roots, ServerName: "localhost"})
	bob.Login("bob", bobPW, "desk")
	runStanzaJS(t, "bosh", "https://"+w.https+"/http-bind", w.cert, bob)
}
