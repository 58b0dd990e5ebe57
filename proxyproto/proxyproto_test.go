package proxyproto

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// logBuf collects log output safely across goroutines.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// listen returns a Listener on a free port of 127.0.0.1 and its log.
func listen(t *testing.T) (*Listener, *logBuf) {
	t.Helper()
	nl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lb := &logBuf{}
	l := &Listener{Listener: nl, Timeout: 2 * time.Second, Logger: slog.New(slog.NewTextHandler(lb, nil))}
	t.Cleanup(func() { l.Close() })
	return l, lb
}

// dial connects to l, sends first, and returns the server's side.
func dial(t *testing.T, l *Listener, first []byte) (client, server net.Conn) {
	t.Helper()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if len(first) > 0 {
		if _, err := c.Write(first); err != nil {
			t.Fatal(err)
		}
	}
	s, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return c, s
}

func readAll(t *testing.T, c net.Conn, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(b)
}

func TestClientAddress(t *testing.T) {
	l, _ := listen(t)
	for _, v := range []int{1, 2} {
		h := Header{Command: Proxy, Source: netip.MustParseAddrPort("192.0.2.7:40000"), Destination: netip.MustParseAddrPort("198.51.100.1:5222")}
		// The header and the first data in one write: what follows the
		// header is the stream's.
		_, s := dial(t, l, append(h.Append(nil, v), "<stream>"...))
		a, ok := s.RemoteAddr().(*net.TCPAddr)
		if !ok || a.String() != "192.0.2.7:40000" {
			t.Errorf("v%d: RemoteAddr = %v, want 192.0.2.7:40000 as *net.TCPAddr", v, s.RemoteAddr())
		}
		if got := readAll(t, s, len("<stream>")); got != "<stream>" {
			t.Errorf("v%d: read %q", v, got)
		}
		if got, ok := s.(*Conn).Header(); !ok || got.Destination != h.Destination {
			t.Errorf("v%d: Header = %+v, %v", v, got, ok)
		}
	}
}

func TestLocalAndUnknownKeepTheProxysAddress(t *testing.T) {
	l, _ := listen(t)
	for _, hdr := range [][]byte{Header{Command: Local}.Append(nil, 2), []byte("PROXY UNKNOWN\r\n"), hexb(sig2 + "21 00 0000")} {
		c, s := dial(t, l, append(hdr, "GET"...))
		if s.RemoteAddr().String() != c.LocalAddr().String() {
			t.Errorf("%q: RemoteAddr = %v, want the proxy's %v", hdr, s.RemoteAddr(), c.LocalAddr())
		}
		if got := readAll(t, s, 3); got != "GET" {
			t.Errorf("%q: read %q", hdr, got)
		}
	}
}

func TestHeaderInPieces(t *testing.T) {
	l, _ := listen(t)
	b := append(Header{Command: Proxy, Source: netip.MustParseAddrPort("[2001:db8::7]:1"), Destination: netip.MustParseAddrPort("[2001:db8::1]:2")}.Append(nil, 2), "xyz"...)
	c, s := dial(t, l, nil)
	go func() {
		for i := range b {
			c.Write(b[i : i+1])
		}
	}()
	if got := readAll(t, s, 3); got != "xyz" {
		t.Errorf("read %q", got)
	}
	if s.RemoteAddr().String() != "[2001:db8::7]:1" {
		t.Errorf("RemoteAddr = %v", s.RemoteAddr())
	}
}

func TestMalformedClosesThatConnection(t *testing.T) {
	l, lb := listen(t)
	c, s := dial(t, l, []byte("PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\nhello"))
	if _, err := s.Read(make([]byte, 10)); !errors.Is(err, ErrMalformed) {
		t.Errorf("Read: %v, want ErrMalformed", err)
	}
	// The client sees the connection closed.
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("the client's read succeeded")
	}
	if l.Failures() != 1 {
		t.Errorf("Failures = %d", l.Failures())
	}
	log := lb.String()
	if !strings.Contains(log, "PROXY protocol header refused") || strings.Contains(log, "127.0.0.1") || strings.Contains(log, "1.2.3.4") {
		t.Errorf("log: %s", log)
	}
}

func TestSilentSourceTimesOutWithoutBlockingOthers(t *testing.T) {
	l, lb := listen(t)
	l.Timeout = 300 * time.Millisecond
	// A trusted source that sends nothing...
	_, silent := dial(t, l, nil)
	done := make(chan error, 1)
	go func() {
		_, err := silent.Read(make([]byte, 1))
		done <- err
	}()
	// ...holds up neither Accept nor another connection's header.
	h := Header{Command: Proxy, Source: netip.MustParseAddrPort("192.0.2.9:9"), Destination: netip.MustParseAddrPort("192.0.2.1:1")}
	_, s := dial(t, l, h.Append(nil, 2))
	if s.RemoteAddr().String() != "192.0.2.9:9" {
		t.Errorf("RemoteAddr = %v", s.RemoteAddr())
	}
	select {
	case err := <-done:
		t.Fatalf("the silent connection's read ended first: %v", err)
	default:
	}
	if err := <-done; !errors.Is(err, ErrTimeout) {
		t.Errorf("silent Read: %v, want ErrTimeout", err)
	}
	if log := lb.String(); strings.Contains(log, "127.0.0.1") || !strings.Contains(log, "no complete header in time") {
		t.Errorf("log: %s", log)
	}
}

func TestCallerDeadlineKept(t *testing.T) {
	l, _ := listen(t)
	h := Header{Command: Proxy, Source: netip.MustParseAddrPort("192.0.2.9:9"), Destination: netip.MustParseAddrPort("192.0.2.1:1")}
	_, s := dial(t, l, h.Append(nil, 1))
	s.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	// The header arrives; the data does not: the caller's deadline, not
	// the header's, ends the read.
	start := time.Now()
	_, err := s.Read(make([]byte, 1))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Read: %v, want a timeout", err)
	}
	if time.Since(start) > l.Timeout {
		t.Errorf("the read waited %v", time.Since(start))
	}
}

func TestUntrustedSource(t *testing.T) {
	l, lb := listen(t)
	l.noLoopback = true
	// A direct client: its own address, its bytes untouched.
	c, s := dial(t, l, []byte("<?xml version='1.0'?>"))
	if got := readAll(t, s, 21); got != "<?xml version='1.0'?>" {
		t.Errorf("read %q", got)
	}
	if s.RemoteAddr().String() != c.LocalAddr().String() {
		t.Errorf("RemoteAddr = %v, want %v", s.RemoteAddr(), c.LocalAddr())
	}
	// A header from it is not believed: the connection is closed.
	h := Header{Command: Proxy, Source: netip.MustParseAddrPort("192.0.2.9:9"), Destination: netip.MustParseAddrPort("192.0.2.1:1")}
	c2, s2 := dial(t, l, h.Append(nil, 2))
	if _, err := s2.Read(make([]byte, 64)); !errors.Is(err, ErrUntrusted) {
		t.Errorf("Read: %v, want ErrUntrusted", err)
	}
	if s2.RemoteAddr().String() != c2.LocalAddr().String() {
		t.Errorf("RemoteAddr = %v, want %v", s2.RemoteAddr(), c2.LocalAddr())
	}
	if log := lb.String(); !strings.Contains(log, "not trusted") || strings.Contains(log, "127.0.0.1") {
		t.Errorf("log: %s", log)
	}
	// Trusted by its prefix, the same source's header counts.
	l.Trusted = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	_, s3 := dial(t, l, h.Append(nil, 1))
	if s3.RemoteAddr().String() != "192.0.2.9:9" {
		t.Errorf("trusted: RemoteAddr = %v", s3.RemoteAddr())
	}
}

func TestPortCheckIsQuiet(t *testing.T) {
	l, lb := listen(t)
	c, s := dial(t, l, nil)
	c.Close()
	if _, err := s.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("Read: %v, want io.EOF", err)
	}
	if lb.String() != "" || l.Failures() != 0 {
		t.Errorf("a connection that sent nothing was logged: %q", lb.String())
	}
}

// A version 2 header with TLVs longer than the first read buffer, and
// one over MaxHeader, and a version 1 header with a MaxHeader below
// version 1's own bound.
func TestHeaderSizes(t *testing.T) {
	l, _ := listen(t)
	h := Header{Command: Proxy, Source: netip.MustParseAddrPort("192.0.2.7:1"), Destination: netip.MustParseAddrPort("192.0.2.1:2")}
	withTLV := func(n int) []byte {
		b := h.Append(nil, 2)
		// One TLV of type 0xE0 (custom) with n bytes of value.
		b = append(b, 0xe0, byte(n>>8), byte(n))
		b = append(b, bytes.Repeat([]byte{'x'}, n)...)
		total := len(b) - 16
		b[14], b[15] = byte(total>>8), byte(total)
		return b
	}
	_, s := dial(t, l, append(withTLV(900), "ok"...))
	if got := readAll(t, s, 2); got != "ok" || s.RemoteAddr().String() != "192.0.2.7:1" {
		t.Errorf("900-byte TLV: read %q from %v", got, s.RemoteAddr())
	}
	_, s = dial(t, l, withTLV(1100))
	if _, err := s.Read(make([]byte, 1)); !errors.Is(err, ErrTooLong) {
		t.Errorf("1100-byte TLV: %v, want ErrTooLong", err)
	}
	l.MaxHeader = 20
	_, s = dial(t, l, append([]byte("PROXY TCP6 2001:db8:1:2:3:4:5:6 2001:db8:1:2:3:4:5:7 65535 65535\r\n"), "ok"...))
	if got := readAll(t, s, 2); got != "ok" || s.RemoteAddr().String() != "[2001:db8:1:2:3:4:5:6]:65535" {
		t.Errorf("v1 with a small MaxHeader: read %q from %v", got, s.RemoteAddr())
	}
}
