package s2s

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/accept"
	"github.com/treff-im/treff/internal/xmlscan"
	"github.com/treff-im/treff/stanza"
)

var _ treff.Module = (*Module)(nil)
var _ treff.Stopper = (*Module)(nil)

// Name implements treff.Module.
func (m *Module) Name() string { return "s2s" }

// state is what a Module holds while it runs.
type state struct {
	mu        sync.Mutex
	outs      map[pair]*out
	ins       map[*in]struct{}
	listeners map[net.Listener]struct{}
	stopped   bool
	wg        sync.WaitGroup
	drops     atomic.Uint64 // stanzas refused for a full queue
}

// Stats counts a module's streams, for monitoring; see Module.Stats.
type Stats struct {
	// InAuthenticated are the incoming streams on which the peer
	// authenticated at least one domain; InNegotiating are the other
	// incoming streams (TLS, SASL or dialback under way).
	InAuthenticated, InNegotiating int
	// OutReady are the outgoing streams that are up; OutConnecting are
	// those being set up (resolution, connection, TLS, authentication).
	OutReady, OutConnecting int
	// QueueDrops counts the stanzas answered with <resource-constraint/>
	// because the queue of an outgoing stream being set up was full
	// (QueueLimit).
	QueueDrops uint64
}

// Stats returns the module's current counts; zero before Setup. It
// takes the module's lock once and each stream's briefly, so call it
// for a scrape, not per stanza.
func (m *Module) Stats() Stats {
	st := m.st
	if st == nil {
		return Stats{}
	}
	var s Stats
	st.mu.Lock()
	outs := make([]*out, 0, len(st.outs))
	for _, o := range st.outs {
		outs = append(outs, o)
	}
	ins := make([]*in, 0, len(st.ins))
	for c := range st.ins {
		ins = append(ins, c)
	}
	st.mu.Unlock()
	for _, o := range outs {
		o.mu.Lock()
		if o.ready && !o.closed {
			s.OutReady++
		} else if !o.closed {
			s.OutConnecting++
		}
		o.mu.Unlock()
	}
	for _, c := range ins {
		if c.anyAuth() {
			s.InAuthenticated++
		} else {
			s.InNegotiating++
		}
	}
	s.QueueDrops = st.drops.Load()
	return s
}

// pair is a local and a remote domain: one outgoing stream each.
type pair struct{ local, remote string }

// Setup implements treff.Module.
func (m *Module) Setup(ctx context.Context, r *treff.Registry) error {
	m.srv = r.Server()
	if m.RootCAs == nil {
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		for _, f := range m.CAFiles {
			pem, err := os.ReadFile(f)
			if err != nil {
				return fmt.Errorf("s2s: %w", err)
			}
			if !pool.AppendCertsFromPEM(pem) {
				return fmt.Errorf("s2s: no certificate in %s", f)
			}
		}
		m.roots = pool
	} else {
		m.roots = m.RootCAs
	}
	if len(m.Secret) == 0 {
		m.secret = make([]byte, 32)
		rand.Read(m.secret)
	} else {
		m.secret = m.Secret
	}
	m.st = &state{outs: make(map[pair]*out), ins: make(map[*in]struct{}), listeners: make(map[net.Listener]struct{})}
	r.HandleRemote(treff.StanzaHandlerFunc(m.send))
	return nil
}

func (m *Module) log() *slog.Logger {
	if m.Logger != nil {
		return m.Logger
	}
	return m.srv.Log()
}

func (m *Module) idle() time.Duration {
	if m.IdleTimeout > 0 {
		return m.IdleTimeout
	}
	return DefaultIdleTimeout
}

func (m *Module) connectTimeout() time.Duration {
	if m.ConnectTimeout > 0 {
		return m.ConnectTimeout
	}
	return DefaultConnectTimeout
}

func (m *Module) queueLimit() int {
	if m.QueueLimit > 0 {
		return m.QueueLimit
	}
	return DefaultQueueLimit
}

func (m *Module) maxStanza() int {
	if m.MaxStanzaSize > 0 {
		return m.MaxStanzaSize
	}
	if m.srv.MaxStanzaSize > 0 {
		return m.srv.MaxStanzaSize
	}
	return 256 << 10
}

// maxAttrs is the attribute limit per start tag once a peer is
// authenticated: the server's MaxAttributes (before, at most 100).
func (m *Module) maxAttrs() int {
	if m.srv.MaxAttributes > 0 {
		return m.srv.MaxAttributes
	}
	return xmlscan.DefaultMaxAttrs
}

// ErrNotSetUp is returned by Serve and ServeTLS when the server has not
// set up its modules yet: list the module in Server.Modules and call
// Server.Setup (or start serving clients) first.
var ErrNotSetUp = errors.New("s2s: the module is not set up: call Server.Setup first")

// ErrStopped is returned by Serve and ServeTLS after Stop.
var ErrStopped = errors.New("s2s: stopped")

// Serve accepts streams from other servers on l (STARTTLS, port 5269)
// until Stop; it returns ErrStopped then.
func (m *Module) Serve(l net.Listener) error { return m.serve(l, false) }

// ServeTLS accepts streams from other servers that start with TLS
// (XEP-0368) on l until Stop; it returns ErrStopped then.
func (m *Module) ServeTLS(l net.Listener) error { return m.serve(l, true) }

func (m *Module) serve(l net.Listener, directTLS bool) error {
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
	err := accept.Loop(m.srv.Context(), l, m.srv.Log(), func(nc net.Conn) error {
		c := &in{m: m, s: newStream(nc, m.maxStanza()), directTLS: directTLS, auth: make(map[string]string)}
		st.mu.Lock()
		if st.stopped {
			st.mu.Unlock()
			nc.Close()
			return ErrStopped
		}
		if len(st.ins) >= m.maxStreams() {
			// As many incoming streams as outgoing ones at most.
			st.mu.Unlock()
			nc.Close()
			return nil
		}
		st.ins[c] = struct{}{}
		st.wg.Add(1)
		st.mu.Unlock()
		go func() {
			defer st.wg.Done()
			c.serve()
			st.mu.Lock()
			delete(st.ins, c)
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

// Stop implements treff.Stopper: it closes the listeners and every stream.
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
	outs := make([]*out, 0, len(st.outs))
	for _, o := range st.outs {
		outs = append(outs, o)
	}
	ins := make([]*in, 0, len(st.ins))
	for c := range st.ins {
		ins = append(ins, c)
	}
	st.mu.Unlock()
	for _, o := range outs {
		o.close("system-shutdown")
	}
	for _, c := range ins {
		c.s.closeWith("system-shutdown")
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

// send is the server's remote handler: it queues st on the stream from
// its sender's domain to its addressee's.
func (m *Module) send(ctx context.Context, st *treff.Stanza) {
	local := st.From.Domainpart()
	if st.From.Equal(jid.JID{}) || !m.srv.Serves(local) {
		// Only this server's own domains may send through it.
		m.bounce(st, stanza.RemoteServerNotFound, "sender not local")
		return
	}
	p := pair{local, st.To.Domainpart()}
	for i := 0; i < 3; i++ {
		o, err := m.stream(p)
		if err != nil {
			m.bounce(st, stanza.ResourceConstraint, err.Error())
			return
		}
		if o == nil {
			m.bounce(st, stanza.RemoteServerNotFound, "shutting down")
			return
		}
		if o.enqueue(st) {
			return
		}
		// The stream closed meanwhile: take a new one.
	}
	m.bounce(st, stanza.RemoteServerNotFound, "stream keeps closing")
}

// errTooManyStreams refuses a new outgoing stream past MaxStreams.
var errTooManyStreams = errors.New("too many server-to-server streams")

// stream returns the outgoing stream for p, starting one if there is none
// (nil after Stop).
func (m *Module) stream(p pair) (*out, error) {
	st := m.st
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.stopped {
		return nil, nil
	}
	if o := st.outs[p]; o != nil {
		return o, nil
	}
	if len(st.outs) >= m.maxStreams() {
		// A user writing to thousands of domains must not make the
		// server open thousands of connections.
		return nil, errTooManyStreams
	}
	o := newOut(m, p)
	st.outs[p] = o
	st.wg.Add(1)
	go func() {
		defer st.wg.Done()
		o.run()
	}()
	return o, nil
}

func (m *Module) maxStreams() int {
	if m.MaxStreams > 0 {
		return m.MaxStreams
	}
	return DefaultMaxStreams
}

// forget removes o from the table when it closed.
func (m *Module) forget(o *out) {
	m.st.mu.Lock()
	if m.st.outs[o.p] == o {
		delete(m.st.outs, o.p)
	}
	m.st.mu.Unlock()
}

// bounce answers st with the error e (unless st is an error: errors are
// never answered) and logs who, whom and why.
func (m *Module) bounce(st *treff.Stanza, e stanza.Condition, why string) {
	m.log().Info("stanza not delivered", "from", st.From.String(), "to", st.To.String(), "kind", kindName(st.Kind), "why", string(e), "detail", why)
	if st.Type == "error" || st.From.Equal(jid.JID{}) {
		return
	}
	if st.Kind == treff.KindPresence && st.Type != "subscribe" && st.Type != "probe" {
		return // presence broadcasts are not answered with errors
	}
	reply, err := treff.NewStanza(treff.AppendError(nil, st, e))
	if err != nil {
		return
	}
	m.srv.Route(m.srv.Context(), reply)
}

func kindName(k treff.Kind) string {
	switch k {
	case treff.KindMessage:
		return "message"
	case treff.KindPresence:
		return "presence"
	}
	return "iq"
}

// clientTLS is the configuration of an outgoing TLS connection from local
// to remote: this server's certificate for local, and the peer's checked
// by verify (not by crypto/tls, so that an unverified peer can still
// authenticate with dialback over an encrypted stream).
func (m *Module) clientTLS(local, remote string) *tls.Config {
	host := m.srv.HostTLS(local)
	// ALPN names the protocol for direct TLS (XEP-0368); harmless after
	// STARTTLS.
	cfg := &tls.Config{ServerName: remote, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12, NextProtos: []string{"xmpp-server"}}
	if host != nil {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if len(host.Certificates) > 0 {
				return &host.Certificates[0], nil
			}
			if host.GetCertificate != nil {
				if c, err := host.GetCertificate(&tls.ClientHelloInfo{ServerName: local}); err == nil && c != nil {
					return c, nil
				}
			}
			return &tls.Certificate{}, nil
		}
	}
	return cfg
}

// serverTLS is the configuration for incoming connections: this server's
// certificate for the name asked for, and a request (not a requirement)
// for the peer's certificate, which verify checks.
func (m *Module) serverTLS(domain string) *tls.Config {
	cfg := m.srv.HostTLS(domain)
	if cfg == nil && len(m.srv.Hosts) > 0 {
		cfg = m.srv.HostTLS(m.srv.Hosts[0].Domain)
	}
	if cfg == nil {
		cfg = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	cfg.ClientAuth = tls.RequestClientCert
	if domain == "" {
		// Direct TLS (XEP-0368): the certificate for the name the peer
		// asks for, and the xmpp-server protocol if it names one.
		cfg.NextProtos = []string{"xmpp-server"}
		cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			c := m.srv.HostTLS(hello.ServerName)
			if c == nil {
				return nil, nil // the base configuration
			}
			c.ClientAuth = tls.RequestClientCert
			c.NextProtos = []string{"xmpp-server"}
			return c, nil
		}
	}
	return cfg
}
