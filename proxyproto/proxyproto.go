// Package proxyproto implements the receiving side of HAProxy's PROXY
// protocol, versions 1 (text) and 2 (binary), as a net.Listener wrapper:
// behind a TCP load balancer, a connection's RemoteAddr is the client's
// address from the header the balancer sends first, not the balancer's.
//
// Accept never waits for a header: it returns the connection at once,
// and the header is read on the connection's first Read or RemoteAddr,
// in the goroutine that serves it, with a deadline and a size bound. A
// connection whose header is malformed, too long or late is closed and
// the failure logged, without any address.
//
// Headers are read only from trusted sources: loopback addresses and
// the prefixes in Listener.Trusted. A connection from anywhere else is
// an ordinary direct connection (its own address stands, no header is
// read), except that one starting with a PROXY signature is closed (a
// header from a source not trusted is never believed; the log says to
// add the balancer's address to the trusted ones). A trusted source
// must send a header on every connection (the specification forbids
// guessing): LOCAL (a balancer's health check) and UNKNOWN keep the
// connection's own address.
package proxyproto

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// DefaultTimeout is how long a trusted source has to send its header
// unless Listener.Timeout says otherwise.
const DefaultTimeout = 5 * time.Second

// Listener wraps a listener whose trusted sources send a PROXY protocol
// header at the start of every connection. Its zero value (with
// Listener set) trusts loopback only.
type Listener struct {
	net.Listener
	// Trusted are the sources, besides loopback, whose headers are
	// read: the load balancers' addresses.
	Trusted []netip.Prefix
	// Timeout bounds the header's arrival; 0 means DefaultTimeout.
	Timeout time.Duration
	// MaxHeader bounds a version 2 header in bytes; 0 means
	// DefaultMaxHeader. (A version 1 header is at most MaxV1.)
	MaxHeader int
	// Logger gets one line per refused connection, without addresses;
	// nil means slog.Default().
	Logger *slog.Logger

	noLoopback      bool         // tests: loopback is not trusted by itself
	untrustedLogged atomic.Int64 // unix seconds of the last such warning
	failures        atomic.Int64
}

// Accept returns the next connection, wrapped; it does not read.
func (l *Listener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &Conn{Conn: nc, l: l, trusted: l.trusts(nc.RemoteAddr())}, nil
}

// Failures returns how many connections were closed for a malformed,
// late or untrusted header.
func (l *Listener) Failures() int64 { return l.failures.Load() }

func (l *Listener) trusts(a net.Addr) bool {
	ip := addrOf(a)
	if !ip.IsValid() {
		return false
	}
	if ip.IsLoopback() && !l.noLoopback {
		return true
	}
	for _, p := range l.Trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// addrOf is the IP address of a, unmapped, or the zero Addr.
func addrOf(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.TCPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	case nil:
		return netip.Addr{}
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

func (l *Listener) logger() *slog.Logger {
	if l.Logger != nil {
		return l.Logger
	}
	return slog.Default()
}

// Conn is a connection accepted by a Listener.
type Conn struct {
	net.Conn
	l       *Listener
	trusted bool

	once   sync.Once
	err    error  // why the header failed: the connection is closed
	hdr    Header // valid after once, if trusted
	remote net.Addr
	rest   []byte // bytes read after the header, not yet returned

	checked bool // an untrusted connection's first bytes were looked at

	mu       sync.Mutex
	deadline time.Time // the caller's read deadline
}

// Errors of a connection whose header did not arrive whole.
var (
	ErrTimeout = errors.New("proxyproto: no complete header in time")
	ErrEnded   = errors.New("proxyproto: connection ended inside the header")
)

// ErrUntrusted is the read error of a connection from a source not
// trusted that started with a PROXY protocol header.
var ErrUntrusted = errors.New("proxyproto: header from a source not trusted")

// header reads and parses the header of a trusted connection, once.
func (c *Conn) header() {
	c.once.Do(func() {
		if !c.trusted {
			return
		}
		l := c.l
		timeout := l.Timeout
		if timeout <= 0 {
			timeout = DefaultTimeout
		}
		c.mu.Lock()
		userDeadline := c.deadline
		c.mu.Unlock()
		d := time.Now().Add(timeout)
		if !userDeadline.IsZero() && userDeadline.Before(d) {
			d = userDeadline
		}
		c.Conn.SetReadDeadline(d)
		maxHdr := l.MaxHeader
		if maxHdr <= 0 {
			maxHdr = DefaultMaxHeader
		}
		// The buffer never needs more than the longest header allowed
		// (either version) and grows to it at most.
		limit := max(maxHdr, MaxV1)
		buf := make([]byte, 0, min(256, limit))
		var err error
		for {
			var h Header
			var n int
			h, n, err = Parse(buf, maxHdr)
			if err == nil {
				c.hdr, c.rest = h, buf[n:]
				break
			}
			if err != ErrIncomplete {
				break
			}
			if len(buf) == cap(buf) {
				// Only a version 2 header with TLVs gets here (Parse
				// says ErrIncomplete only below the limit).
				nb := make([]byte, len(buf), min(2*cap(buf), limit))
				copy(nb, buf)
				buf = nb
			}
			var m int
			m, err = c.Conn.Read(buf[len(buf):cap(buf)])
			buf = buf[:len(buf)+m]
			if err != nil && m == 0 {
				if len(buf) == 0 && !errors.Is(err, os.ErrDeadlineExceeded) {
					// Connected and gone (a port check): nothing to log.
					c.err = io.EOF
					c.Conn.Close()
					return
				}
				// The read error's text holds addresses: never log it.
				if errors.Is(err, os.ErrDeadlineExceeded) {
					err = ErrTimeout
				} else {
					err = ErrEnded
				}
				break
			}
			err = nil
		}
		if err != nil {
			c.err = err
			c.Conn.Close()
			l.failures.Add(1)
			l.logger().Warn("PROXY protocol header refused; connection closed", "err", err)
			return
		}
		c.mu.Lock()
		c.Conn.SetReadDeadline(c.deadline)
		c.mu.Unlock()
		if c.hdr.Command == Proxy && c.hdr.Source.IsValid() {
			s := c.hdr.Source
			c.remote = &net.TCPAddr{IP: s.Addr().Unmap().AsSlice(), Port: int(s.Port())}
		}
	})
}

// Read reads from the connection, after the header.
func (c *Conn) Read(p []byte) (int, error) {
	c.header()
	if c.err != nil {
		return 0, c.err
	}
	if len(c.rest) > 0 {
		n := copy(p, c.rest)
		c.rest = c.rest[n:]
		if len(c.rest) == 0 {
			c.rest = nil
		}
		return n, nil
	}
	n, err := c.Conn.Read(p)
	if !c.trusted && !c.checked && n > 0 {
		c.checked = true
		if (n >= len(v1Sig) || n >= len(v2Sig)) && IsPrefix(p[:n]) {
			c.err = ErrUntrusted
			c.Conn.Close()
			c.l.failures.Add(1)
			now := time.Now().Unix()
			if last := c.l.untrustedLogged.Load(); now-last >= 60 && c.l.untrustedLogged.CompareAndSwap(last, now) {
				c.l.logger().Warn("PROXY protocol header from a source not trusted; connection closed (add the load balancer's address to the trusted ones)")
			}
			return 0, c.err
		}
	}
	return n, err
}

// RemoteAddr returns the client's address from the header (a
// *net.TCPAddr), or the connection's own remote address for a source
// not trusted, a LOCAL or UNKNOWN header, or a failed one. For a trusted
// source it waits for the header.
func (c *Conn) RemoteAddr() net.Addr {
	c.header()
	if c.remote != nil {
		return c.remote
	}
	return c.Conn.RemoteAddr()
}

// Header returns the connection's header, after waiting for it, and
// whether there was one (false for a source not trusted or a failed
// header).
func (c *Conn) Header() (Header, bool) {
	c.header()
	return c.hdr, c.trusted && c.err == nil
}

// SetDeadline sets the read and write deadlines.
func (c *Conn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deadline = t
	return c.Conn.SetDeadline(t)
}

// SetReadDeadline sets the read deadline.
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deadline = t
	return c.Conn.SetReadDeadline(t)
}

// CloseWrite shuts down the writing side, if the connection can.
func (c *Conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.New("proxyproto: CloseWrite not supported")
}

// errBuffered is SyscallConn's error while bytes read with the header
// wait in the Conn: a poller on the descriptor would miss them.
var errBuffered = errors.New("proxyproto: bytes buffered")

// SyscallConn gives the underlying descriptor (for pollers), once the
// header is read and no byte read with it is still buffered.
func (c *Conn) SyscallConn() (syscall.RawConn, error) {
	c.header()
	if len(c.rest) > 0 || c.err != nil {
		return nil, errBuffered
	}
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, errors.New("proxyproto: no descriptor")
	}
	return sc.SyscallConn()
}

var (
	_ net.Listener = (*Listener)(nil)
	_ net.Conn     = (*Conn)(nil)
	_ syscall.Conn = (*Conn)(nil)
)
