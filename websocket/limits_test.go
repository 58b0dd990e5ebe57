package websocket_test

import (
	"bufio"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/trefftest"
	"github.com/treff-im/treff/websocket"
)

// rawWS is a WebSocket client written for these tests (RFC 6455 by hand):
// it sends frames exactly as told, fragmented or oversized, and shows the
// close frame's status code, which golang.org/x/net/websocket hides.
type rawWS struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, hsURL string) *rawWS {
	t.Helper()
	addr := strings.TrimPrefix(hsURL, "http://")
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(20 * time.Second)) // a watchdog, never reached when the test passes
	var k [16]byte
	rand.Read(k[:])
	key := base64.StdEncoding.EncodeToString(k[:])
	fmt.Fprintf(nc, "GET /xmpp-websocket HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: xmpp\r\n\r\n", addr, key)
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Accept") != base64.StdEncoding.EncodeToString(sum[:]) {
		t.Fatalf("handshake: %s %v", resp.Status, resp.Header)
	}
	return &rawWS{t: t, nc: nc, br: br}
}

// header is a masked client frame header for a payload of n bytes.
func frameHeader(fin bool, op byte, n int, mask [4]byte) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	h := []byte{b0}
	switch {
	case n <= 125:
		h = append(h, 0x80|byte(n))
	case n < 1<<16:
		h = append(h, 0x80|126, byte(n>>8), byte(n))
	default:
		h = append(h, 0x80|127)
		h = binary.BigEndian.AppendUint64(h, uint64(n))
	}
	return append(h, mask[:]...)
}

// frame sends one masked frame.
func (c *rawWS) frame(fin bool, op byte, payload string) {
	c.t.Helper()
	var mask [4]byte
	rand.Read(mask[:])
	b := frameHeader(fin, op, len(payload), mask)
	for i := 0; i < len(payload); i++ {
		b = append(b, payload[i]^mask[i%4])
	}
	if _, err := c.nc.Write(b); err != nil {
		c.t.Fatal(err)
	}
}

func (c *rawWS) text(s string) { c.frame(true, 1, s) }

// next reads the next frame from the server: its opcode and payload.
func (c *rawWS) next() (byte, []byte) {
	c.t.Helper()
	var h [2]byte
	if _, err := io.ReadFull(c.br, h[:]); err != nil {
		c.t.Fatalf("reading a frame: %v", err)
	}
	if h[1]&0x80 != 0 {
		c.t.Fatal("the server masked a frame")
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var l [2]byte
		io.ReadFull(c.br, l[:])
		n = uint64(binary.BigEndian.Uint16(l[:]))
	case 127:
		var l [8]byte
		io.ReadFull(c.br, l[:])
		n = binary.BigEndian.Uint64(l[:])
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(c.br, p); err != nil {
		c.t.Fatalf("reading a frame: %v", err)
	}
	return h[0] & 0x0f, p
}

// expect reads text messages until one starts with prefix; a close frame
// before it fails the test.
func (c *rawWS) expect(prefix string) string {
	c.t.Helper()
	for {
		op, p := c.next()
		if op == 8 {
			c.t.Fatalf("waiting for %q: closed with %v", prefix, closeStatus(p))
		}
		if op == 1 && strings.HasPrefix(string(p), prefix) {
			return string(p)
		}
	}
}

// closed reads until the close frame and returns its status code.
func (c *rawWS) closed() int {
	c.t.Helper()
	for {
		op, p := c.next()
		if op == 8 {
			return closeStatus(p)
		}
		if op == 1 {
			c.t.Fatalf("a message where the close frame was expected: %.200s", p)
		}
	}
}

func closeStatus(p []byte) int {
	if len(p) < 2 {
		return 1005 // no status code (RFC 6455 7.4.1)
	}
	return int(binary.BigEndian.Uint16(p))
}

const openMsg = "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>"

// TestWebSocketTooBig: a message over the stanza size limit ends the
// stream with <policy-violation/> and <close/>, as an oversized stanza
// over TCP does, and then the WebSocket with 1009 (message too big, RFC
// 6455 7.4.1), whether it came as one frame or as fragments under the
// limit each. An ordinary <close/> still ends with 1000.
func TestWebSocketTooBig(t *testing.T) {
	const max = 16 << 10
	ts := trefftest.NewServer(t, func(s *treff.Server) { s.MaxStanzaSize = max })
	ts.AddUser(t, "alice", "alicepw")
	hs := httptest.NewServer(&websocket.Handler{Server: ts.Server})
	defer hs.Close()

	login := func(c *rawWS) {
		c.text(openMsg)
		c.expect("<open ")
		c.expect("<stream:features")
		c.text("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>" + base64.StdEncoding.EncodeToString([]byte("\x00alice\x00alicepw")) + "</auth>")
		c.expect("<success ")
		c.text(openMsg)
		c.expect("<open ")
		c.expect("<stream:features")
		c.text("<iq xmlns='jabber:client' type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
		c.expect("<iq ")
	}
	tooBig := func(c *rawWS) {
		t.Helper()
		e := c.expect("<stream:error")
		if !strings.Contains(e, "<policy-violation ") {
			t.Errorf("stream error: %s", e)
		}
		c.expect("<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>")
		if got := c.closed(); got != 1009 {
			t.Errorf("close status %d, want 1009", got)
		}
	}
	big := "<message xmlns='jabber:client' to='alice@localhost'><body>" + strings.Repeat("x", 2*max) + "</body></message>"

	t.Run("one frame, before login", func(t *testing.T) {
		c := dialRaw(t, hs.URL)
		c.text(openMsg)
		c.expect("<open ")
		c.expect("<stream:features")
		c.text(big)
		tooBig(c)
	})
	t.Run("one frame, in session", func(t *testing.T) {
		c := dialRaw(t, hs.URL)
		login(c)
		c.text(big)
		tooBig(c)
	})
	t.Run("fragments", func(t *testing.T) {
		c := dialRaw(t, hs.URL)
		login(c)
		// Each fragment is a quarter of the limit; the message is twice it.
		for i, op := 0, byte(1); i < len(big); i, op = i+max/4, 0 {
			end := min(i+max/4, len(big))
			c.frame(end == len(big), op, big[i:end])
		}
		tooBig(c)
	})
	t.Run("close", func(t *testing.T) {
		c := dialRaw(t, hs.URL)
		login(c)
		c.text("<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>")
		c.expect("<close ")
		if got := c.closed(); got != 1000 {
			t.Errorf("close status %d, want 1000", got)
		}
	})
}
