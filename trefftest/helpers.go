package trefftest

import (
	"bytes"
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
)

// LogBuffer collects output, such as a server's logs, from several
// goroutines: Write and String are safe to call at the same time.
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// FreeAddr returns a loopback address with a TCP port that was free a
// moment ago, for starting a server process on.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Clock is a settable time source for modules that take a "now" function
// (archive retention, upload expiry): pass its Now, move it with Add. It
// is safe for concurrent use.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock showing t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Add moves the clock by d.
func (c *Clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// ClosedSessions is a module that reports the full JID of every client
// session that ends, for tests that wait for that event instead of
// polling. Its OnSessionClosed hook runs after those of the modules before
// it in Server.Modules, so put it last to know that theirs ran. Make it
// with room for the ends a test does not wait for (a full buffer drops
// them): make(trefftest.ClosedSessions, 16).
type ClosedSessions chan string

// Name implements treff.Module.
func (ClosedSessions) Name() string { return "trefftest-closed-sessions" }

// Setup implements treff.Module.
func (c ClosedSessions) Setup(ctx context.Context, r *treff.Registry) error {
	r.OnSessionClosed(func(ctx context.Context, s *treff.Session) {
		select {
		case c <- s.JID().String():
		default:
		}
	})
	return nil
}

// Wait waits up to 5 seconds for the session with the full JID full to
// end, skipping the ends of other sessions, and fails tb if it does not.
func (c ClosedSessions) Wait(tb testing.TB, full string) {
	tb.Helper()
	timeout := time.NewTimer(5 * time.Second)
	defer timeout.Stop()
	for {
		select {
		case got := <-c:
			if got == full {
				return
			}
		case <-timeout.C:
			tb.Fatalf("trefftest: session %s did not end", full)
		}
	}
}

// WaitLost waits until the server noticed that the resumable session full
// (XEP-0198) lost its connection: it hibernates, or (with a short resume
// timeout) it has already ended. It fails the test after 10 seconds.
// Hibernation happens on the session's read loop and announces itself to
// no one, so this polls.
func (s *Server) WaitLost(tb testing.TB, full string) {
	tb.Helper()
	s.waitSession(tb, full, "lose its connection", func(sess *treff.Session) bool { return sess == nil || sess.Hibernating() })
}

// WaitHibernating is WaitLost for a session that must still be there,
// hibernating.
func (s *Server) WaitHibernating(tb testing.TB, full string) {
	tb.Helper()
	s.waitSession(tb, full, "hibernate", func(sess *treff.Session) bool { return sess != nil && sess.Hibernating() })
}

func (s *Server) waitSession(tb testing.TB, full, what string, cond func(*treff.Session) bool) {
	tb.Helper()
	j, err := jid.Parse(full)
	if err != nil {
		tb.Fatal(err)
	}
	for range 1000 {
		if cond(s.Session(j)) {
			return
		}
		time.Sleep(10 * time.Millisecond) // no event to wait for: see above
	}
	tb.Fatalf("trefftest: %s did not %s within 10s", full, what)
}
