package main

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/sm"
)

// Draining for a rolling upgrade behind a load balancer (docs/deploy.md):
// asked to drain (SIGUSR1, or the drain admin command), the node closes
// its client listeners (c2s, c2s_tls), so the balancer's connections go
// to other nodes; /health answers 503 "draining", so its checks mark the
// node down; WebSocket and BOSH refuse new sessions; and every client
// stream ends: after clients with stream management have had
// drain_ack_wait to acknowledge what they received (and learnt, from the
// server's <a h/>, which of their own stanzas arrived), streams over TCP
// end with <see-other-host/> naming drain_see_other_host (RFC 6120
// 4.9.3.19), or with <system-shutdown/>; WebSocket and BOSH streams with
// <system-shutdown/>. What clients did not acknowledge goes to offline
// storage as the sessions end, so nothing acknowledged is lost; clients
// reconnect through the balancer. The node keeps running (federation,
// admin commands, the health check) until it is stopped.

// drainer drains the server; it is also the module that closes streams
// that bind while the node drains.
type drainer struct {
	srv       *treff.Server
	sm        *sm.Module // nil: no stream management
	otherHost string
	ackWait   time.Duration
	log       *slog.Logger

	draining atomic.Bool
	mu       sync.Mutex
	ls       []net.Listener // the client listeners to close
	done     chan struct{}  // closed when the first drain has closed the streams
	closed   int
}

func newDrainer(cfg Config, srv *treff.Server, log *slog.Logger) *drainer {
	d := &drainer{srv: srv, otherHost: cfg.DrainSeeOtherHost, ackWait: cfg.DrainAckWait, log: log, done: make(chan struct{})}
	for _, m := range srv.Modules {
		if s, ok := m.(*sm.Module); ok {
			d.sm = s
		}
	}
	return d
}

// Name implements treff.Module.
func (d *drainer) Name() string { return "drain" }

// Setup implements treff.Module.
func (d *drainer) Setup(ctx context.Context, r *treff.Registry) error {
	r.OnSessionBound(func(ctx context.Context, s *treff.Session) {
		if d.draining.Load() {
			// Negotiated before the listeners closed, or over WebSocket
			// or BOSH in the meantime: nothing to acknowledge yet.
			s.CloseWith(d.streamError(s))
		}
	})
	return nil
}

// addListener registers a client listener that draining closes.
func (d *drainer) addListener(l net.Listener) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ls = append(d.ls, l)
}

// Draining reports whether the node drains (or has drained).
func (d *drainer) Draining() bool { return d != nil && d.draining.Load() }

// listenerClosed reports whether err is a drained listener's.
func (d *drainer) listenerClosed(err error) bool {
	return d != nil && d.draining.Load() && isClosedErr(err)
}

// streamError is how s's stream ends.
func (d *drainer) streamError(s *treff.Session) *treff.StreamError {
	if t := s.Transport(); d.otherHost != "" && (t == "tcp" || t == "tls") {
		return &treff.StreamError{Condition: "see-other-host", Data: d.otherHost}
	}
	return &treff.StreamError{Condition: "system-shutdown", Text: "this node is going down for maintenance; reconnect"}
}

// drain drains the node, once; a second call waits for the first and
// returns the same count: the client streams it closed.
func (d *drainer) drain() int {
	if !d.draining.CompareAndSwap(false, true) {
		<-d.done
		return d.closed
	}
	d.log.Info("draining: client listeners closed, /health says draining, client streams closing")
	d.mu.Lock()
	for _, l := range d.ls {
		l.Close()
	}
	d.mu.Unlock()
	sessions := d.srv.OnlineSessions()
	var wg sync.WaitGroup
	for _, s := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if d.sm != nil && d.ackWait > 0 {
				ctx, cancel := context.WithTimeout(context.Background(), d.ackWait)
				d.sm.Settle(ctx, s)
				cancel()
			}
			s.CloseWith(d.streamError(s))
		}()
	}
	wg.Wait()
	d.closed = len(sessions)
	d.log.Info("drained: client streams closed", "streams", d.closed)
	close(d.done)
	return d.closed
}

var _ treff.Module = (*drainer)(nil)
