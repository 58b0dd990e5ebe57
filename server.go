package treff

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff/accept"
	"github.com/treff-im/treff/ratelimit"
	"github.com/treff-im/treff/router"
	"github.com/treff-im/treff/storage"
)

// ErrServerClosed is returned by Serve, ServeTLS, ListenAndServe and
// ListenAndServeTLS after Shutdown or Close.
var ErrServerClosed = errors.New("treff: server closed")

// Host is a virtual host (an XMPP domain) served by a Server.
type Host struct {
	// Domain is the host's domain, e.g. "example.org".
	Domain string
	// Certificates are offered to clients that connect to Domain (chosen by
	// the stream's 'to' for STARTTLS and by SNI for direct TLS). If empty,
	// Server.TLSConfig must provide certificates.
	Certificates []tls.Certificate
}

// Server is an XMPP server. Configure it through its exported fields, then
// call Serve, ServeTLS, ListenAndServe or ListenAndServeTLS (several at once
// for several listeners). The fields must not change once serving started.
//
// The zero value serves no host; set at least Hosts and Authenticator.
// Every stream must be TLS-protected before authentication: STARTTLS is
// required on Serve's listeners and TLS comes first on ServeTLS's.
type Server struct {
	// Hosts are the virtual hosts served. A stream to any other domain is
	// refused with <host-unknown/>.
	Hosts []Host

	// Addr is the address ListenAndServe listens on; "" means ":5222".
	Addr string
	// TLSAddr is the address ListenAndServeTLS listens on (direct TLS,
	// XEP-0368); "" means ":5223".
	TLSAddr string
	// TLSConfig is the base TLS configuration. nil means a default with TLS
	// 1.2 as minimum. Certificates come from Hosts unless TLSConfig has
	// Certificates or GetCertificate set.
	TLSConfig *tls.Config

	// Authenticator checks credentials. nil admits nobody.
	Authenticator Authenticator
	// Storage keeps accounts, rosters and offline messages. nil means no
	// account exists (every local address is unknown) and nothing is stored.
	Storage storage.Store
	// Modules add features, set up in order when serving starts.
	Modules []Module
	// Table is the table of online sessions. nil means an in-process
	// router.Local; package cluster's Node.Join sets a cluster-wide one,
	// whose entries for other nodes' sessions are remote Sessions
	// (Session.Remote).
	Table router.Table
	// Logger receives the server's logs. nil means slog.Default(). The
	// server never logs passwords, SASL data, message bodies or IP
	// addresses.
	Logger *slog.Logger

	// The limits below: zero means the default given; a negative value
	// means "never" where the field says so, and makes Setup (and so
	// Serve) fail with an error elsewhere.

	// MaxStanzaSize is the largest top-level element accepted, in bytes;
	// larger ones close the stream with <policy-violation/>. 0 means 256 KiB.
	MaxStanzaSize int
	// MaxAttributes is the most attributes one start tag may have (the
	// stream header's or any element's, at any depth) once the client
	// has authenticated; a stanza with more closes the stream with
	// <policy-violation/>. Before authentication the limit is the
	// smaller of this and 100. 0 means 100.
	MaxAttributes int
	// NegotiationTimeout bounds the time from connect to a bound resource;
	// a stream that takes longer is closed with <connection-timeout/>.
	// 0 means 30 seconds.
	NegotiationTimeout time.Duration
	// PreAuthIQs limits the IQs one stream may send before it
	// authenticates (in-band registration, invitations), as a token
	// bucket: over it, an IQ is answered with <policy-violation/> (type
	// wait). The zero Limit means 20 per minute; N < 0 means no limit.
	PreAuthIQs ratelimit.Limit
	// IdleTimeout closes a stream after that long without any data from the
	// client (whitespace keepalives count). 0 means 14 minutes (as
	// Prosody); negative means never.
	IdleTimeout time.Duration
	// WriteTimeout bounds each write to a client; a client that does not
	// read for that long is disconnected. 0 means 30 seconds.
	WriteTimeout time.Duration
	// MaxQueue is the most bytes waiting in a session's outbound queue; a
	// client that falls that far behind is disconnected so that it never
	// holds up the senders. 0 means 1 MiB.
	MaxQueue int
	// MaxAuthFailures is how many failed SASL attempts a stream may make
	// before it is closed. 0 means 3.
	MaxAuthFailures int
	// KeepInFlight has the Keeper (Registry.KeepUnacked; the offline
	// module) store every message sent to a connected session with
	// stream management until its client acknowledges it, not only the
	// messages of a hibernating session. Then a crash of this process
	// loses no message its sender was told was handled even while the
	// recipient's client was connected: the next login finds it in
	// offline storage. It costs a storage write per message and a
	// delete per acknowledgement, so it is meant for a cluster, where
	// a node's death must not lose what it held (package cluster) and
	// PostgreSQL takes the writes; a single server with an archive has
	// those messages in the archive anyway.
	KeepInFlight bool

	initOnce sync.Once
	stopOnce sync.Once
	initErr  error
	hosts    map[string]*Host
	mods     modules
	table    router.Table
	secret   [32]byte // for fake SCRAM salts of unknown users
	tlsBase  *tls.Config
	hostTLS  map[string]*tls.Config // STARTTLS configuration per host
	// c2sBase and c2sHost are tlsBase and hostTLS for client streams:
	// they note the certificate presented on the connection (for
	// tls-server-end-point channel binding).
	c2sBase *tls.Config
	c2sHost map[string]*tls.Config
	leaves  sync.Map // *tls.Certificate → *x509.Certificate, for those without Leaf
	// parkAfter is how long a session is quiet before its reader parks
	// (see idleConn); 0 means defaultParkAfter.
	parkAfter time.Duration
	parks     atomic.Int64 // sessions parked so far (for tests)

	pendingMu sync.Mutex
	pending   map[string]*pendingIQ

	sm smTable // resumable and hibernating sessions

	mu        sync.Mutex
	listeners map[*net.Listener]struct{}
	conns     map[*conn]struct{}
	closing   atomic.Bool
	wg        sync.WaitGroup // connection goroutines

	// ctx is the server's base context, cancelled by stop: at once by
	// Close, by Shutdown when its context ends or after it is done.
	ctxOnce sync.Once
	ctx     context.Context
	cancel  context.CancelFunc
	panics  atomic.Int64 // panics recovered so far (for tests)

	stats serverStats // behind Stats
}

// Context returns the server's base context, which every context the
// server hands to modules derives from. It is cancelled when the server
// stops: by Close at once, by Shutdown when its context ends or once it
// is done. Modules derive the contexts of work they start on their own
// (an incoming server-to-server stream, a timer) from it.
//
// Context may be called during Setup (a module starting a job) and
// before serving; a server whose Setup failed has it cancelled.
func (srv *Server) Context() context.Context {
	srv.ctxOnce.Do(srv.makeContext)
	return srv.ctx
}

func (srv *Server) makeContext() {
	srv.ctx, srv.cancel = context.WithCancel(context.Background())
}

// detachedContext is for work that keeps what the server promised to
// keep (messages to reroute to offline storage, the state session-closed
// hooks save): it carries the base context's values but is not cancelled
// by the server's stop, so that Close does not lose acknowledged data.
func (srv *Server) detachedContext() context.Context {
	return context.WithoutCancel(srv.ctx)
}

// Log returns the logger the server and its modules write to.
func (srv *Server) Log() *slog.Logger { return srv.logger() }

func (srv *Server) logger() *slog.Logger {
	if srv.Logger != nil {
		return srv.Logger
	}
	return slog.Default()
}

func durationOr(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// Setup checks the configuration and sets the modules up, without
// serving; Serve and the other methods do it on first use. Call it to
// use modules (such as register's invitations) before or without
// serving, or to learn of a configuration error early. It is safe to call
// more than once: the first call's result stands.
func (srv *Server) Setup() error { return srv.init() }

func (srv *Server) init() error {
	srv.initOnce.Do(func() {
		srv.ctxOnce.Do(srv.makeContext)
		srv.initErr = srv.setup()
		if srv.initErr != nil {
			srv.stopModules(srv.ctx)
			srv.cancel()
		}
	})
	return srv.initErr
}

func (srv *Server) setup() error {
	if len(srv.Hosts) == 0 {
		return errors.New("treff: no hosts configured")
	}
	if err := srv.checkLimits(); err != nil {
		return err
	}
	srv.hosts = make(map[string]*Host, len(srv.Hosts))
	for i := range srv.Hosts {
		h := &srv.Hosts[i]
		d, err := jid.New("", h.Domain, "")
		if err != nil || d.String() != h.Domain {
			return fmt.Errorf("treff: invalid host domain %q", h.Domain)
		}
		if _, dup := srv.hosts[h.Domain]; dup {
			return fmt.Errorf("treff: host %q configured twice", h.Domain)
		}
		srv.hosts[h.Domain] = h
	}
	if _, err := rand.Read(srv.secret[:]); err != nil {
		return fmt.Errorf("treff: %w", err)
	}
	srv.table = srv.Table
	if srv.table == nil {
		srv.table = new(router.Local)
	}
	srv.tlsBase = srv.tlsConfig()
	srv.hostTLS = srv.hostConfigs()
	srv.c2sBase = notingCertificate(srv.tlsBase)
	srv.c2sHost = make(map[string]*tls.Config, len(srv.hostTLS))
	for d, cfg := range srv.hostTLS {
		srv.c2sHost[d] = notingCertificate(cfg)
	}
	ctx := srv.ctx
	for _, m := range srv.Modules {
		r := &Registry{srv: srv, module: m.Name(), m: &srv.mods}
		if err := m.Setup(ctx, r); err != nil {
			return fmt.Errorf("treff: module %s: %w", m.Name(), err)
		}
	}
	srv.builtinMechanisms()
	srv.mods.sortHooks()
	for d := range srv.mods.domains {
		if _, ok := srv.hosts[d]; ok {
			return fmt.Errorf("treff: domain %q is both a host and a service", d)
		}
	}
	return nil
}

// checkLimits refuses negative limits where the field gives negative no
// meaning: zero means the default, and "no limit" is not offered for
// them (a stream that may negotiate or block a write forever is a way to
// exhaust the server).
func (srv *Server) checkLimits() error {
	for _, f := range []struct {
		name string
		bad  bool
	}{
		{"NegotiationTimeout", srv.NegotiationTimeout < 0},
		{"WriteTimeout", srv.WriteTimeout < 0},
		{"MaxStanzaSize", srv.MaxStanzaSize < 0},
		{"MaxAttributes", srv.MaxAttributes < 0},
		{"MaxQueue", srv.MaxQueue < 0},
		{"MaxAuthFailures", srv.MaxAuthFailures < 0},
	} {
		if f.bad {
			return fmt.Errorf("treff: %s is negative; 0 means the default, and there is no unlimited setting", f.name)
		}
	}
	return nil
}

func (srv *Server) tlsConfig() *tls.Config {
	var cfg *tls.Config
	if srv.TLSConfig != nil {
		cfg = srv.TLSConfig.Clone()
	} else {
		cfg = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if len(cfg.Certificates) == 0 && cfg.GetCertificate == nil {
		cfg.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			name := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
			// A host's name, or a service's under it (conference.example.org
			// gets example.org's certificate).
			if h := srv.hosts[srv.hostOf(name)]; h != nil && len(h.Certificates) > 0 {
				return &h.Certificates[0], nil
			}
			// No or unknown SNI: the first host (in Hosts' order) with a
			// certificate answers; the stream's 'to' decides the rest. A
			// single-host server, the common case, has only one anyway.
			for i := range srv.Hosts {
				if h := &srv.Hosts[i]; len(h.Certificates) > 0 {
					return &h.Certificates[0], nil
				}
			}
			return nil, errors.New("treff: no certificate")
		}
	}
	return cfg
}

// c2sTLS returns the TLS configuration for a client's STARTTLS stream to
// domain.
func (srv *Server) c2sTLS(domain string) *tls.Config {
	if cfg := srv.c2sHost[domain]; cfg != nil {
		return cfg
	}
	return srv.c2sBase
}

// notingCertificate returns a copy of cfg that notes on each client
// connection (an *idleConn) the certificate its handshake presents. It
// chooses among cfg.Certificates as crypto/tls does, so that it sees the
// choice even when there is no SNI. A certificate chosen by a
// GetConfigForClient's configuration goes unnoted: tls-server-end-point
// is then not offered.
func notingCertificate(cfg *tls.Config) *tls.Config {
	c := cfg.Clone()
	get, certs := c.GetCertificate, c.Certificates
	c.Certificates = nil
	c.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		var cert *tls.Certificate
		var err error
		if get != nil {
			cert, err = get(hello)
		}
		if cert == nil && err == nil {
			cert, err = chooseCertificate(certs, hello)
		}
		if ic, ok := hello.Conn.(*idleConn); ok && err == nil {
			ic.cert = cert
		}
		return cert, err
	}
	return c
}

// chooseCertificate picks from certs as crypto/tls does without
// GetCertificate: the only one, else the first the client supports, else
// the first.
func chooseCertificate(certs []tls.Certificate, hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	switch len(certs) {
	case 0:
		return nil, errors.New("treff: no certificate")
	case 1:
		return &certs[0], nil
	}
	for i := range certs {
		if hello.SupportsCertificate(&certs[i]) == nil {
			return &certs[i], nil
		}
	}
	return &certs[0], nil
}

// leaf returns the parsed leaf of cert, parsing it once.
func (srv *Server) leaf(cert *tls.Certificate) *x509.Certificate {
	if cert.Leaf != nil {
		return cert.Leaf
	}
	if l, ok := srv.leaves.Load(cert); ok {
		return l.(*x509.Certificate)
	}
	if len(cert.Certificate) == 0 {
		return nil
	}
	l, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil
	}
	srv.leaves.Store(cert, l)
	return l
}

// tlsFor returns the TLS configuration for a STARTTLS stream to domain.
func (srv *Server) tlsFor(domain string) *tls.Config {
	if cfg := srv.hostTLS[domain]; cfg != nil {
		return cfg
	}
	return srv.tlsBase
}

// hostConfigs makes the STARTTLS configuration of each host with its own
// certificates, once: a configuration made per connection would cost each
// session its copy (and its own session ticket keys).
func (srv *Server) hostConfigs() map[string]*tls.Config {
	if len(srv.tlsBase.Certificates) > 0 {
		return nil
	}
	m := make(map[string]*tls.Config)
	for d, h := range srv.hosts {
		if len(h.Certificates) == 0 {
			continue
		}
		cfg := srv.tlsBase.Clone()
		cfg.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return &h.Certificates[0], nil
		}
		m[d] = cfg
	}
	return m
}

// Serve accepts connections on l and serves XMPP client streams that must
// be upgraded with STARTTLS before authentication. It returns a non-nil
// error, ErrServerClosed after Shutdown or Close, and closes l.
func (srv *Server) Serve(l net.Listener) error { return srv.serve(l, false) }

// ServeTLS accepts connections on l and serves client streams over direct
// TLS (XEP-0368): the TLS handshake comes before the stream. It returns a
// non-nil error, ErrServerClosed after Shutdown or Close, and closes l.
func (srv *Server) ServeTLS(l net.Listener) error { return srv.serve(l, true) }

// ListenAndServe listens on srv.Addr and calls Serve.
func (srv *Server) ListenAndServe() error {
	if srv.closing.Load() {
		return ErrServerClosed
	}
	addr := srv.Addr
	if addr == "" {
		addr = ":5222"
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return srv.Serve(l)
}

// ListenAndServeTLS listens on srv.TLSAddr and calls ServeTLS.
func (srv *Server) ListenAndServeTLS() error {
	if srv.closing.Load() {
		return ErrServerClosed
	}
	addr := srv.TLSAddr
	if addr == "" {
		addr = ":5223"
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return srv.ServeTLS(l)
}

func (srv *Server) serve(l net.Listener, directTLS bool) error {
	defer l.Close()
	if err := srv.init(); err != nil {
		return err
	}
	if !srv.trackListener(&l, true) {
		return ErrServerClosed
	}
	defer srv.trackListener(&l, false)
	err := accept.Loop(srv.ctx, l, srv.logger(), func(nc net.Conn) error {
		c := srv.newConn(nc, directTLS)
		if !srv.trackConn(c, true) {
			nc.Close()
			return ErrServerClosed
		}
		go func() {
			sess := c.serve()
			if sess == nil {
				srv.trackConn(c, false)
				srv.wg.Done()
				return
			}
			// A new goroutine: its stack starts small again, instead of
			// keeping the size the handshake grew this one's to.
			go sess.run(func() {
				c.nc.Close()
				srv.trackConn(c, false)
				srv.wg.Done()
			})
		}()
		return nil
	})
	if srv.closing.Load() {
		return ErrServerClosed
	}
	return err
}

// ServeConn runs one client stream on nc until it ends. It is for
// transports other than TCP (the WebSocket and BOSH packages): nc carries
// the stream as bytes, like a TCP connection after TLS, and the caller
// has secured it already (HTTPS, or a loopback connection it trusts), so
// no STARTTLS is offered and authentication comes first. nc.RemoteAddr
// should be the client's address (rate limits use it; it is never
// logged). If nc has a method Transport() string that returns
// "websocket" or "bosh", Stats counts the session under that transport.
// ServeConn returns ErrServerClosed if the server is shutting
// down, else nil when the stream has ended (a session with stream
// management may live on, waiting to be resumed over any transport).
func (srv *Server) ServeConn(nc net.Conn) error {
	if err := srv.init(); err != nil {
		nc.Close()
		return err
	}
	c := srv.newConn(nc, false)
	c.preSecure = true
	if !srv.trackConn(c, true) {
		nc.Close()
		return ErrServerClosed
	}
	sess := c.serve()
	if sess == nil {
		srv.trackConn(c, false)
		srv.wg.Done()
		return nil
	}
	done := make(chan struct{})
	sess.run(func() {
		nc.Close()
		srv.trackConn(c, false)
		srv.wg.Done()
		close(done)
	})
	// run returns when the session ended, hibernated or parked; wait for
	// the stream itself to end.
	<-done
	return nil
}

func (srv *Server) trackListener(l *net.Listener, add bool) bool {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if add {
		if srv.closing.Load() {
			return false
		}
		if srv.listeners == nil {
			srv.listeners = make(map[*net.Listener]struct{})
		}
		srv.listeners[l] = struct{}{}
	} else {
		delete(srv.listeners, l)
	}
	return true
}

func (srv *Server) trackConn(c *conn, add bool) bool {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if add {
		if srv.closing.Load() {
			return false
		}
		if srv.conns == nil {
			srv.conns = make(map[*conn]struct{})
		}
		srv.conns[c] = struct{}{}
		srv.wg.Add(1)
	} else {
		delete(srv.conns, c)
	}
	return true
}

// Shutdown stops the server gracefully: it closes the listeners, closes
// every stream with a <system-shutdown/> stream error, waits for the
// sessions to end, stops the modules and cancels the server's Context.
//
// If ctx ends first, Shutdown returns ctx's error at once, as
// net/http's does: it cancels the server's Context (so that handlers
// still waiting give up) and closes the remaining connections; the
// modules are stopped in the background once the last session has ended.
// Call Close after such a return to wait for that (before closing the
// storage, for instance). A server that was shut down cannot be reused.
func (srv *Server) Shutdown(ctx context.Context) error {
	srv.closing.Store(true)
	if srv.init() != nil {
		return nil
	}
	srv.mu.Lock()
	for l := range srv.listeners {
		(*l).Close()
	}
	conns := make([]*conn, 0, len(srv.conns))
	for c := range srv.conns {
		conns = append(conns, c)
	}
	srv.mu.Unlock()
	for _, c := range conns {
		c.shutdown()
	}
	for _, s := range srv.hibernating() {
		s.expire()
	}
	waited := make(chan struct{})
	go func() {
		srv.wg.Wait()
		close(waited)
	}()
	select {
	case <-waited:
		srv.stopModules(ctx)
		srv.cancel()
		return nil
	case <-ctx.Done():
		srv.cancel()
		srv.closeConns()
		go func() {
			<-waited
			srv.stopModules(srv.detachedContext())
		}()
		return ctx.Err()
	}
}

// Close stops the server at once: it cancels the server's Context and
// closes listeners and connections without a stream error, then waits
// for the sessions to end (their messages that clients did not
// acknowledge go to offline storage) and stops the modules. Use
// Shutdown for a graceful stop.
func (srv *Server) Close() error {
	srv.closing.Store(true)
	if srv.init() != nil {
		return nil
	}
	srv.cancel()
	srv.mu.Lock()
	for l := range srv.listeners {
		(*l).Close()
	}
	srv.mu.Unlock()
	srv.closeConns()
	for _, s := range srv.hibernating() {
		s.expire()
	}
	srv.wg.Wait()
	srv.stopModules(srv.detachedContext())
	return nil
}

func (srv *Server) closeConns() {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	for c := range srv.conns {
		c.nc.Close()
		if s := c.sess.Load(); s != nil {
			s.unpark(nil)
		}
	}
}

func (srv *Server) stopModules(ctx context.Context) {
	srv.stopOnce.Do(func() { srv.stopModulesNow(ctx) })
}

func (srv *Server) stopModulesNow(ctx context.Context) {
	for i := len(srv.Modules) - 1; i >= 0; i-- {
		if s, ok := srv.Modules[i].(Stopper); ok {
			if err := s.Stop(ctx); err != nil {
				srv.logger().Error("module stop failed", "module", srv.Modules[i].Name(), "err", err)
			}
		}
	}
}

// Closing reports whether Shutdown or Close has been called. The hooks
// that run as the sessions end during a stop (OnSessionClosed) can tell
// from it that the server stops, and keep for the next start what they
// would otherwise tear down (the group chat service keeps its rooms).
func (srv *Server) Closing() bool { return srv.closing.Load() }

// IsLocal reports whether domain is one of the server's hosts.
func (srv *Server) IsLocal(domain string) bool {
	if srv.init() != nil {
		return false
	}
	_, ok := srv.hosts[domain]
	return ok
}

// Session returns the client session bound to the full JID, or nil.
func (srv *Server) Session(full jid.JID) *Session {
	if srv.init() != nil {
		return nil
	}
	s, _ := srv.table.Lookup(full).(*Session)
	return s
}

// OnlineSessions returns every bound session of the server, in no order
// (for announcements to all online users).
func (srv *Server) OnlineSessions() []*Session {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	out := make([]*Session, 0, len(srv.conns))
	for c := range srv.conns {
		if s := c.sess.Load(); s != nil && s.conn() == c {
			out = append(out, s)
		}
	}
	return append(out, srv.hibernating()...)
}

// AllSessions returns every bound session of the service, in no order:
// this server's (OnlineSessions) and, when the Table is cluster-wide and
// can list its entries (router.Lister, as cluster.Node does), the other
// nodes' sessions, for which Session.Remote reports true and Send
// forwards to their node. For administrators' views and announcements;
// what only this server may do to a session (close it while draining)
// uses OnlineSessions.
func (srv *Server) AllSessions() []*Session {
	out := srv.OnlineSessions()
	if srv.init() != nil || !srv.Clustered() {
		return out
	}
	l, ok := srv.table.(router.Lister)
	if !ok {
		return out
	}
	for _, e := range l.AppendAll(nil) {
		if s, ok := e.(*Session); ok && s.Remote() {
			out = append(out, s)
		}
	}
	return out
}

// Sessions returns the client sessions currently bound to the bare JID.
func (srv *Server) Sessions(bare jid.JID) []*Session {
	return srv.AppendSessions(nil, bare)
}

// AppendSessions appends the client sessions bound to the bare JID to
// dst and returns it: Sessions without an allocation when dst has room,
// for hot paths (message carbons look up the account's sessions for
// every message).
func (srv *Server) AppendSessions(dst []*Session, bare jid.JID) []*Session {
	if srv.init() != nil {
		return dst
	}
	var buf [8]router.Entry
	for _, e := range srv.table.Resources(buf[:0], bare.Bare()) {
		if s, ok := e.(*Session); ok {
			dst = append(dst, s)
		}
	}
	return dst
}

// CloseUser ends every stream authenticated as the bare JID user, bound or
// still negotiating, with the given stream error condition and text (for
// example "not-authorized", "account deleted"). Streams that authenticate
// later are not affected: remove the account first. It returns the
// sessions that were bound, whose Context ends when they are gone.
func (srv *Server) CloseUser(user jid.JID, condition, text string) []*Session {
	user = user.Bare()
	srv.mu.Lock()
	var conns []*conn
	for c := range srv.conns {
		if u := c.authed.Load(); u != nil && u.Equal(user) {
			conns = append(conns, c)
		}
	}
	srv.mu.Unlock()
	e := &streamError{cond: condition, text: text}
	var out []*Session
	for _, c := range conns {
		// A stream that binds after this point sees the flag and closes
		// itself (conn.bindIQ); one that bound before is closed here.
		c.revoked.Store(e)
		if s := c.sess.Load(); s != nil {
			s.closeStream(*e)
			out = append(out, s)
		}
	}
	for _, s := range srv.hibernating() {
		if s.jid.Bare().Equal(user) {
			s.expire()
			out = append(out, s)
		}
	}
	// In a cluster, the user's sessions on other nodes are closed by
	// their nodes.
	if srv.init() == nil {
		var buf [8]router.Entry
		for _, e := range srv.table.Resources(buf[:0], user) {
			if s, ok := e.(*Session); ok && s.remote != nil {
				s.remote.Close(condition, text)
				out = append(out, s)
			}
		}
	}
	return out
}

// isHost is IsLocal for code that runs after start-up.
func (srv *Server) isHost(domain string) bool {
	_, ok := srv.hosts[domain]
	return ok
}

// Serves reports whether domain is one of the server's hosts or a service
// domain a module handles (such as conference.example.org).
func (srv *Server) Serves(domain string) bool {
	if srv.init() != nil {
		return false
	}
	if _, ok := srv.hosts[domain]; ok {
		return true
	}
	_, ok := srv.mods.domains[domain]
	return ok
}

// HostTLS returns a copy of the TLS configuration the server uses for
// domain (one of its hosts, or a service domain under one, which uses its
// host's certificates), for modules that open or accept other TLS
// connections for it, such as server-to-server streams. It returns nil
// for a domain the server does not serve.
func (srv *Server) HostTLS(domain string) *tls.Config {
	if srv.init() != nil {
		return nil
	}
	host := srv.hostOf(domain)
	if host == "" {
		return nil
	}
	return srv.tlsFor(host).Clone()
}

// hostOf returns the host domain is, or the longest host it is a
// subdomain of (for conference.sub.example.org with hosts example.org and
// sub.example.org: sub.example.org), or "".
func (srv *Server) hostOf(domain string) string {
	if _, ok := srv.hosts[domain]; ok {
		return domain
	}
	for i := strings.IndexByte(domain, '.'); i >= 0; {
		parent := domain[i+1:]
		if _, ok := srv.hosts[parent]; ok {
			return parent
		}
		j := strings.IndexByte(parent, '.')
		if j < 0 {
			break
		}
		i += 1 + j
	}
	return ""
}
