// Package ping implements XEP-0199: XMPP Ping for a Treff server: it answers
// pings to the server and to accounts, and pings clients that have been
// silent for a while so that dead connections are found and closed.
package ping

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"time"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/stanza"
)

// NS is the XEP-0199 namespace.
const NS = "urn:xmpp:ping"

// Module answers pings and detects dead clients.
type Module struct {
	// Interval is how long a client may be silent before the server pings
	// it. 0 means 5 minutes; negative disables server-initiated pings.
	Interval time.Duration
	// Timeout is how long the server waits for the answer before closing
	// the session with <connection-timeout/>. 0 means 60 seconds.
	Timeout time.Duration

	srv *treff.Server
}

var _ treff.Module = (*Module)(nil)

// Name implements treff.Module.
func (m *Module) Name() string { return "ping" }

// Setup implements treff.Module.
func (m *Module) Setup(ctx context.Context, r *treff.Registry) error {
	m.srv = r.Server()
	pong := treff.IQHandlerFunc(func(ctx context.Context, iq *treff.Stanza) ([]byte, error) {
		if iq.Type != "get" {
			return nil, stanza.BadRequest
		}
		return nil, nil
	})
	r.HandleIQ(NS, pong)
	r.HandleAccountIQ(NS, pong)
	r.AddFeature(NS)
	if m.interval() > 0 {
		r.OnSessionBound(m.watch)
	}
	return nil
}

func (m *Module) interval() time.Duration {
	if m.Interval == 0 {
		return 5 * time.Minute
	}
	return m.Interval
}

func (m *Module) timeout() time.Duration {
	if m.Timeout <= 0 {
		return 60 * time.Second
	}
	return m.Timeout
}

// watch checks the session every interval and pings it when it was silent
// for a whole interval. One timer per session, no goroutine while waiting;
// the timer stops when the session ends, so that an ended session (its
// connection, TLS state and buffers) is not kept for up to an interval
// after it logged out.
func (m *Module) watch(ctx context.Context, s *treff.Session) {
	iv := m.interval()
	sctx := s.Context()
	var mu sync.Mutex
	var t *time.Timer
	again := func(d time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		// After the session's end, stop (below) has run or runs next.
		if sctx.Err() == nil {
			t.Reset(d)
		}
	}
	check := func() {
		if sctx.Err() != nil {
			return
		}
		idle := time.Since(s.LastActivity())
		if s.Hibernating() {
			idle = 0 // no connection to ping; look again later
		}
		if idle < iv {
			again(iv - idle)
			return
		}
		if m.Ping(sctx, s) != nil && sctx.Err() == nil {
			s.Close("connection-timeout", "no answer to ping")
			return
		}
		again(iv)
	}
	mu.Lock()
	t = time.AfterFunc(iv, check)
	mu.Unlock()
	context.AfterFunc(sctx, func() {
		mu.Lock()
		t.Stop()
		mu.Unlock()
	})
}

// Ping sends a ping from the server to the session and waits for the
// answer (at most the module's Timeout). Any answer, an error too (a
// client that does not know XEP-0199 says service-unavailable), proves
// the client is alive and counts as success; only silence is an error.
func (m *Module) Ping(ctx context.Context, s *treff.Session) error {
	ctx, cancel := context.WithTimeout(ctx, m.timeout())
	defer cancel()
	var id [8]byte
	rand.Read(id[:])
	raw := "<iq type='get' id='ping-" + hex.EncodeToString(id[:]) + "' from='" + s.JID().Domainpart() +
		"' to='" + string(treff.AppendEscaped(nil, s.JID().String())) + "'><ping xmlns='" + NS + "'/></iq>"
	st, err := treff.NewStanza([]byte(raw))
	if err != nil {
		return err
	}
	_, err = m.srv.SendIQ(ctx, st)
	return err
}
