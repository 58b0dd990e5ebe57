package websocket_test

import (
	"encoding/base64"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	xws "golang.org/x/net/websocket"

	"github.com/treff-im/treff/trefftest"
	"github.com/treff-im/treff/websocket"
)

// wsClient reads and writes whole RFC 7395 messages.
type wsClient struct {
	t  *testing.T
	ws *xws.Conn
}

func (c *wsClient) send(s string) {
	c.t.Helper()
	if err := xws.Message.Send(c.ws, s); err != nil {
		c.t.Fatal(err)
	}
}

// expect reads messages until one matches pattern and returns it; every
// message must be one whole element.
func (c *wsClient) expect(pattern string) string {
	c.t.Helper()
	re := regexp.MustCompile(pattern)
	c.ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	for i := 0; i < 50; i++ {
		var msg string
		if err := xws.Message.Receive(c.ws, &msg); err != nil {
			c.t.Fatalf("waiting for %q: %v", pattern, err)
		}
		if re.MatchString(msg) {
			return msg
		}
	}
	c.t.Fatalf("no message matching %q", pattern)
	return ""
}

func dialWS(t *testing.T, url, origin string) *wsClient {
	t.Helper()
	cfg, err := xws.NewConfig(url, origin)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Protocol = []string{"xmpp"}
	ws, err := xws.DialConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	return &wsClient{t: t, ws: ws}
}

func TestWebSocketSession(t *testing.T) {
	ts := trefftest.NewServer(t, nil)
	ts.AddUser(t, "alice", "alicepw")
	ts.AddUser(t, "bob", "bobpw")
	hs := httptest.NewServer(&websocket.Handler{Server: ts.Server})
	defer hs.Close()
	url := "ws" + strings.TrimPrefix(hs.URL, "http") + "/xmpp-websocket"
	c := dialWS(t, url, hs.URL)

	c.send("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>")
	c.expect(`^<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' id='[^']+' from='localhost' version='1.0' xml:lang='en'/>$`)
	// Over WebSocket the connection is secure already: no STARTTLS, SASL
	// at once; stream-level elements carry their namespace.
	f := c.expect(`^<stream:features xmlns:stream='http://etherx.jabber.org/streams'>`)
	if strings.Contains(f, "starttls") || !strings.Contains(f, "PLAIN") {
		t.Fatalf("features: %s", f)
	}
	c.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>" + base64.StdEncoding.EncodeToString([]byte("\x00alice\x00alicepw")) + "</auth>")
	c.expect(`^<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>$`)
	c.send("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>")
	c.expect(`^<open `)
	c.expect(`<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>`)
	c.send("<iq xmlns='jabber:client' type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>web</resource></bind></iq>")
	c.expect(`^<iq xmlns='jabber:client' type='result' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>alice@localhost/web</jid></bind></iq>$`)

	// A TCP client and the WebSocket client talk; a 20 KiB stanza is one
	// message.
	bob := ts.Login(t, "bob", "bobpw", "desk")
	// The server counts each session under its transport.
	if st := ts.Stats(); st.Sessions.WebSocket != 1 || st.Sessions.TCP != 1 || st.Sessions.Other != 0 {
		t.Errorf("Stats().Sessions = %+v, want one WebSocket and one TCP session", st.Sessions)
	}
	big := strings.Repeat("x", 20<<10)
	bob.Send("<message to='alice@localhost/web' id='m1'><body>" + big + "</body></message>")
	got := c.expect(`id='m1'`)
	if !strings.HasPrefix(got, "<message xmlns='jabber:client' from='bob@localhost/desk'") || !strings.HasSuffix(got, big+"</body></message>") {
		t.Errorf("the big message did not arrive whole in one WebSocket message: %d bytes", len(got))
	}
	c.send("<message xmlns='jabber:client' to='bob@localhost/desk' id='m2'><body>hi 'bob' &gt;</body></message>")
	bob.Expect(`<message from='alice@localhost/web' to='bob@localhost/desk' id='m2'><body>hi 'bob' &gt;</body></message>`)

	c.send("<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>")
	c.expect(`^<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>$`)
}

func TestWebSocketRefusals(t *testing.T) {
	ts := trefftest.NewServer(t, nil)
	hs := httptest.NewServer(&websocket.Handler{Server: ts.Server, Origins: []string{"https://chat.example"}})
	defer hs.Close()
	url := "ws" + strings.TrimPrefix(hs.URL, "http") + "/"
	for _, tc := range []struct {
		origin, proto string
	}{
		{"https://evil.example", "xmpp"},
		{"https://chat.example", "other"},
	} {
		cfg, _ := xws.NewConfig(url, tc.origin)
		cfg.Protocol = []string{tc.proto}
		if ws, err := xws.DialConfig(cfg); err == nil {
			ws.Close()
			t.Errorf("origin %s, protocol %s: connected", tc.origin, tc.proto)
		}
	}
	c := dialWS(t, url, "https://chat.example")
	c.send("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='elsewhere.example' version='1.0'/>")
	c.expect(`^<open `)
	c.expect(`^<stream:error xmlns:stream='http://etherx.jabber.org/streams'><host-unknown `)
	c.expect(`^<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>$`)
}

func TestWebSocketSeeOtherURI(t *testing.T) {
	ts := trefftest.NewServer(t, nil)
	hs := httptest.NewServer(&websocket.Handler{Server: ts.Server, SeeOtherURI: "wss://chat.example.org/xmpp-websocket"})
	defer hs.Close()
	c := dialWS(t, "ws"+strings.TrimPrefix(hs.URL, "http")+"/", hs.URL)
	c.send("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>")
	c.expect(`^<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' version='1.0' from='localhost'/>$`)
	c.expect(`^<close xmlns='urn:ietf:params:xml:ns:xmpp-framing' see-other-uri='wss://chat.example.org/xmpp-websocket'/>$`)
}
