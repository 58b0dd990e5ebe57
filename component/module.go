package component

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"sync"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/accept"
	"github.com/treff-im/treff/discoinfo"
	"github.com/treff-im/treff/internal/xmlscan"
	"github.com/treff-im/treff/stanza"
)

var (
	_ treff.Module  = (*Module)(nil)
	_ treff.Stopper = (*Module)(nil)
)

// Name implements treff.Module.
func (m *Module) Name() string { return "component" }

// state is what a Module holds while it runs.
type state struct {
	mu        sync.Mutex
	streams   map[*stream]struct{} // every stream, authenticated or not
	active    map[string]*stream   // the authenticated stream of each domain
	listeners map[net.Listener]struct{}
	stopped   bool
	wg        sync.WaitGroup
}

// Setup implements treff.Module: it registers each component domain as a
// service domain of the server and lists it in disco#items.
func (m *Module) Setup(ctx context.Context, r *treff.Registry) error {
	m.srv = r.Server()
	for _, f := range []struct {
		name string
		bad  bool
	}{
		{"HandshakeTimeout", m.HandshakeTimeout < 0},
		{"PingTimeout", m.PingTimeout < 0},
		{"MaxQueue", m.MaxQueue < 0},
		{"WriteTimeout", m.WriteTimeout < 0},
		{"MaxStanzaSize", m.MaxStanzaSize < 0},
	} {
		if f.bad {
			return fmt.Errorf("component: %s is negative; 0 means the default", f.name)
		}
	}
	domains := make([]string, 0, len(m.Components))
	for d, secret := range m.Components {
		j, err := jid.New("", d, "")
		if err != nil || j.String() != d {
			return fmt.Errorf("component: invalid domain %q", d)
		}
		if secret == "" {
			return fmt.Errorf("component: %s has no secret", d)
		}
		domains = append(domains, d)
	}
	for d := range m.Names {
		if _, ok := m.Components[d]; !ok {
			return fmt.Errorf("component: a name for %s, which is not a component domain", d)
		}
	}
	// Sorted: the disco#items order does not change between starts.
	sort.Strings(domains)
	for _, d := range domains {
		// (Server.IsLocal would set the server up: it is being set up.)
		for _, h := range m.srv.Hosts {
			if h.Domain == d {
				return fmt.Errorf("component: %s is one of the server's hosts", d)
			}
		}
		r.HandleDomain(d, treff.StanzaHandlerFunc(m.deliver))
		r.AddItem(discoinfo.Item{JID: d, Name: m.Names[d]})
	}
	m.st = &state{streams: make(map[*stream]struct{}), active: make(map[string]*stream), listeners: make(map[net.Listener]struct{})}
	return nil
}

func (m *Module) log() *slog.Logger {
	if m.Logger != nil {
		return m.Logger
	}
	return m.srv.Log()
}

func orDefault[T ~int | ~int64](v, def T) T {
	if v > 0 {
		return v
	}
	return def
}

func (m *Module) handshakeTimeout() time.Duration {
	return orDefault(m.HandshakeTimeout, DefaultHandshakeTimeout)
}

// pingInterval returns the ping interval, or 0 for never.
func (m *Module) pingInterval() time.Duration {
	if m.PingInterval < 0 {
		return 0
	}
	return orDefault(m.PingInterval, DefaultPingInterval)
}

func (m *Module) pingTimeout() time.Duration { return orDefault(m.PingTimeout, DefaultPingTimeout) }
func (m *Module) maxQueue() int              { return orDefault(m.MaxQueue, DefaultMaxQueue) }
func (m *Module) writeTimeout() time.Duration {
	return orDefault(m.WriteTimeout, DefaultWriteTimeout)
}

func (m *Module) maxStanza() int {
	return orDefault(m.MaxStanzaSize, orDefault(m.srv.MaxStanzaSize, 256<<10))
}

func (m *Module) maxAttrs() int { return orDefault(m.srv.MaxAttributes, xmlscan.DefaultMaxAttrs) }

// ErrNotSetUp is returned by Serve when the server has not set up its
// modules yet: list the module in Server.Modules and call Server.Setup
// first.
var ErrNotSetUp = errors.New("component: the module is not set up: call Server.Setup first")

// ErrStopped is returned by Serve after Stop (the server's Shutdown or
// Close).
var ErrStopped = errors.New("component: stopped")

// Serve accepts component streams on l until Stop, and returns
// ErrStopped then (or the listener's error). It closes l. Temporary
// accept errors pause the loop, as the server's own listeners do.
func (m *Module) Serve(l net.Listener) error {
	defer l.Close()
	if m.st == nil {
		return ErrNotSetUp
	}
	st := m.st
	st.mu.Lock()
	if st.stopped {
		st.mu.Unlock()
		return ErrStopped
	}
	st.listeners[l] = struct{}{}
	st.mu.Unlock()
	err := accept.Loop(m.srv.Context(), l, m.log(), func(nc net.Conn) error {
		s := newStream(m, nc)
		st.mu.Lock()
		if st.stopped {
			st.mu.Unlock()
			nc.Close()
			return ErrStopped
		}
		st.streams[s] = struct{}{}
		st.wg.Add(1)
		st.mu.Unlock()
		go func() {
			defer st.wg.Done()
			s.serve()
			st.mu.Lock()
			delete(st.streams, s)
			st.mu.Unlock()
		}()
		return nil
	})
	st.mu.Lock()
	stopped := st.stopped
	delete(st.listeners, l)
	st.mu.Unlock()
	if stopped {
		return ErrStopped
	}
	return err
}

// Stop implements treff.Stopper: it closes the listeners and every stream
// with <system-shutdown/>, and waits for them to end or ctx.
func (m *Module) Stop(ctx context.Context) error {
	st := m.st
	if st == nil {
		return nil
	}
	st.mu.Lock()
	st.stopped = true
	for l := range st.listeners {
		l.Close()
	}
	streams := make([]*stream, 0, len(st.streams))
	for s := range st.streams {
		streams = append(streams, s)
	}
	st.mu.Unlock()
	for _, s := range streams {
		s.closeWith("system-shutdown", "")
	}
	done := make(chan struct{})
	go func() { st.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Connected reports whether a component is connected and authenticated
// for domain.
func (m *Module) Connected(domain string) bool {
	if m.st == nil {
		return false
	}
	m.st.mu.Lock()
	defer m.st.mu.Unlock()
	return m.st.active[domain] != nil
}

// claim makes s the stream of its domain, unless another one is.
func (m *Module) claim(s *stream) bool {
	m.st.mu.Lock()
	defer m.st.mu.Unlock()
	if m.st.stopped || m.st.active[s.domain] != nil {
		return false
	}
	m.st.active[s.domain] = s
	return true
}

// release frees s's domain, if s holds it, and ends s's queue: stanzas
// for the domain are refused from now on.
func (m *Module) release(s *stream) {
	m.st.mu.Lock()
	if m.st.active[s.domain] == s {
		delete(m.st.active, s.domain)
	}
	m.st.mu.Unlock()
	s.mu.Lock()
	s.ended = true
	s.mu.Unlock()
}

func (m *Module) activeStream(domain string) *stream {
	m.st.mu.Lock()
	defer m.st.mu.Unlock()
	return m.st.active[domain]
}

// The errors senders get.
var (
	errNotConnected = stanza.Error{Type: stanza.Wait, Condition: stanza.RemoteServerTimeout, Text: "the component is not connected"}
	errQueueFull    = stanza.Error{Type: stanza.Wait, Condition: stanza.ResourceConstraint, Text: "the component is busy; try again"}
)

// deliver is the domain handler of every component domain: it queues st
// on the domain's stream.
func (m *Module) deliver(ctx context.Context, st *treff.Stanza) {
	s := m.activeStream(st.To.Domainpart())
	if s == nil {
		m.bounce(ctx, st, errNotConnected)
		return
	}
	switch s.send(st, st.Raw()) {
	case nil:
	case errFull:
		m.bounce(ctx, st, errQueueFull)
	default:
		m.bounce(ctx, st, errNotConnected)
	}
}

// bounce answers st with e, unless it is an error, an IQ response or a
// presence broadcast (none of which are answered with errors), and logs
// who, whom and why.
func (m *Module) bounce(ctx context.Context, st *treff.Stanza, e stanza.Error) {
	m.log().Info("stanza not delivered", "from", st.From.String(), "to", st.To.String(), "why", string(e.Condition), "detail", e.Text)
	if st.Type == "error" || st.From.Equal(jid.JID{}) {
		return
	}
	switch st.Kind {
	case treff.KindIQ:
		if st.Type != "get" && st.Type != "set" {
			return
		}
	case treff.KindPresence:
		if st.Type != "subscribe" && st.Type != "probe" {
			return
		}
	}
	reply, err := treff.NewStanza(treff.AppendError(nil, st, e))
	if err != nil {
		return
	}
	m.srv.Route(ctx, reply)
}
