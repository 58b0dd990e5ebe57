package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	stdlog "log"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/abuse"
	"github.com/treff-im/treff/adhoc"
	treffadmin "github.com/treff-im/treff/admin"
	"github.com/treff-im/treff/auth"
	"github.com/treff-im/treff/authlimit"
	"github.com/treff-im/treff/blocking"
	"github.com/treff-im/treff/component"
	"github.com/treff-im/treff/disco"
	"github.com/treff-im/treff/examples/motd"
	"github.com/treff-im/treff/extdisco"
	"github.com/treff-im/treff/fast"
	"github.com/treff-im/treff/im"
	"github.com/treff-im/treff/internal/certs"
	"github.com/treff-im/treff/last"
	"github.com/treff-im/treff/mam"
	"github.com/treff-im/treff/muc"
	"github.com/treff-im/treff/offline"
	"github.com/treff-im/treff/pep"
	"github.com/treff-im/treff/ping"
	"github.com/treff-im/treff/proxyproto"
	"github.com/treff-im/treff/push"
	"github.com/treff-im/treff/register"
	"github.com/treff-im/treff/roster"
	"github.com/treff-im/treff/s2s"
	"github.com/treff-im/treff/sasl2"
	"github.com/treff-im/treff/sm"
	"github.com/treff-im/treff/storage"
	"github.com/treff-im/treff/storage/boltstore"
	"github.com/treff-im/treff/storage/pgstore"
	"github.com/treff-im/treff/upload"
	"github.com/treff-im/treff/version"
	"github.com/treff-im/treff/xtime"
)

// shutdownTimeout bounds the graceful shutdown.
const shutdownTimeout = 10 * time.Second

// serve runs the server until ctx is done or a signal arrives.
func serve(ctx context.Context, cfg Config, stderr io.Writer) error {
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	if cfg.C2S == "" && cfg.C2STLS == "" {
		return usageErrorf("both listeners are disabled (c2s and c2s_tls are empty)")
	}
	if (cfg.Cert == "") != (cfg.Key == "") {
		return usageErrorf("cert and key must be given together")
	}
	if cfg.ACME && cfg.Cert != "" {
		return usageErrorf("acme and cert exclude each other")
	}
	if cfg.ACME && cfg.HTTP == "" && cfg.HTTPS == "" {
		return usageErrorf("acme needs the http listener (http-01) or the https listener (tls-alpn-01)")
	}
	if err := checkComponents(cfg); err != nil {
		return err
	}
	if err := checkCluster(cfg); err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.Data, 0o700); err != nil {
		return err
	}
	if fi, err := os.Stat(cfg.Data); err == nil && fi.Mode().Perm()&0o077 != 0 {
		log.Warn("the data folder is accessible to other users; consider chmod 700", "data", cfg.Data)
	}
	var am *acmeManager
	if cfg.ACME {
		// Until the CA's certificate comes, the listeners present the
		// self-signed one.
		var err error
		if am, err = newACMEManager(cfg, log); err != nil {
			return err
		}
	}
	cert, err := loadCertificate(cfg, am, log)
	if err != nil {
		return err
	}
	tlsCerts := newCertSource(cert)

	var store fullStore
	if cfg.Store == storePostgres {
		var pg *pgstore.Store
		pg, err = openPostgres(cfg)
		if err == nil {
			// Archive copies are committed in groups, as the bbolt
			// store's journal does (same bound on what a crash loses:
			// docs/benchmarks.md, "What is fsynced when").
			pg.SetArchiveDelay(pgArchiveDelay, cfg.ArchiveMaxQueue, log)
			store = pg
		}
	} else {
		store, err = openStore(filepath.Join(cfg.Data, dbFile), "is a server already running with this data folder?",
			&boltstore.Options{ArchiveQueueBytes: cfg.ArchiveMaxQueue, Logger: log})
	}
	if err != nil {
		return err
	}
	// From here on, this process owns the data folder: the database lock
	// keeps out other servers and direct admin commands.
	defer func() {
		// Closed already at the end of a normal shutdown.
		if err := store.Close(); err != nil && !errors.Is(err, storage.ErrClosed) {
			log.Error("closing the database", "err", err)
		}
	}()
	if am != nil && cfg.Store == storePostgres {
		shareACME(am, store, tlsCerts, log)
	}
	authn := &auth.Store{Accounts: store}

	timed := &timedStore{fullStore: store}
	srv := newServer(cfg, timed, authn, log, &cert)
	if cfg.Cluster {
		leave, err := joinCluster(cfg, srv, log)
		if err != nil {
			return err
		}
		defer leave() // after the server's shutdown below
	}
	// Every listener takes the certificate from tlsCerts, which ACME renewals
	// and SIGHUP replace.
	srv.TLSConfig = tlsCerts.serverTLS()
	fed := s2sModule(srv)
	comps := componentModule(srv)
	if err := loadSecrets(ctx, cfg, srv, store, log); err != nil {
		return err
	}
	// The drain module closes streams that bind while the node drains.
	drain := newDrainer(cfg, srv, log)
	srv.Modules = append(srv.Modules, drain)
	// Modules are set up before any listener runs: the server-to-server
	// listeners need them.
	if err := srv.Setup(); err != nil {
		return err
	}

	type listener struct {
		name      string
		l         net.Listener
		directTLS bool
	}
	var ls []listener
	closeAll := func() {
		for _, l := range ls {
			l.l.Close()
		}
	}
	for _, spec := range []struct {
		name, addr string
		directTLS  bool
	}{{"c2s", cfg.C2S, false}, {"c2s_tls", cfg.C2STLS, true}, {"s2s", cfg.S2S, false}, {"s2s_tls", cfg.S2STLS, true}, {"component", cfg.ComponentListen, false}} {
		if spec.addr == "" || fed == nil && strings.HasPrefix(spec.name, "s2s") || comps == nil && spec.name == "component" {
			continue
		}
		if spec.name == "component" && !isLoopback(spec.addr) {
			log.Warn("the component listener is not on loopback: components authenticate over an unencrypted stream", "component_listen", spec.addr)
		}
		l, err := net.Listen("tcp", spec.addr)
		if err != nil {
			closeAll()
			return fmt.Errorf("%s: %w", spec.name, err)
		}
		l = proxied(cfg, spec.name, l, log)
		if spec.name == "c2s" || spec.name == "c2s_tls" {
			drain.addListener(l)
		}
		ls = append(ls, listener{spec.name, l, spec.directTLS})
	}

	ul, err := listenAdmin(filepath.Join(cfg.Data, adminSocket))
	if err != nil {
		closeAll()
		return err
	}
	logListening(log, "admin", ul.Addr().String())
	admin := &adminServer{
		l:    ul,
		log:  log,
		data: cfg.Data,
		acct: &accounts{store: store, auth: authn, domains: cfg.Domains, srv: srv,
			log:     log.With("component", "admin"),
			landing: func(link string) string { return inviteLanding(cfg, link) }},
	}

	admin.drain = drain
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	go drainOnSignal(ctx, drain)

	errc := make(chan error, len(ls)+3) // the listeners, the web listeners, one more
	for _, l := range ls {
		go func() {
			var err error
			switch {
			case l.name == "s2s":
				err = fed.Serve(l.l)
			case l.name == "s2s_tls":
				err = fed.ServeTLS(l.l)
			case l.name == "component":
				err = comps.Serve(l.l)
			case l.directTLS:
				err = srv.ServeTLS(l.l)
			default:
				err = srv.Serve(l.l)
			}
			if errors.Is(err, s2s.ErrStopped) || errors.Is(err, component.ErrStopped) {
				err = treff.ErrServerClosed
			}
			if drain.listenerClosed(err) {
				err = errDrained
			}
			if !errors.Is(err, treff.ErrServerClosed) {
				err = fmt.Errorf("%s: %w", l.name, err)
			}
			errc <- err
		}()
		logListening(log, l.name, l.l.Addr().String())
	}
	webServers, err := startWeb(cfg, srv, tlsCerts, drain, log, errc)
	if err != nil {
		closeAll()
		ul.Close()
		return err
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(cfg.GCPercent)
	}
	if cfg.DebugAddr != "" {
		dl, err := net.Listen("tcp", cfg.DebugAddr)
		if err != nil {
			closeAll()
			ul.Close()
			return fmt.Errorf("debug_addr: %w", err)
		}
		defer dl.Close()
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		go http.Serve(dl, mux)
		logListening(log, "debug", dl.Addr().String())
	}
	go reloadOnHUP(ctx, tlsCerts, func() (tls.Certificate, error) { return loadCertificate(cfg, am, log) }, am, log)
	if am != nil {
		go am.run(ctx, tlsCerts)
	}
	if err := startMetrics(ctx, cfg, srv, timed, log); err != nil {
		closeAll()
		ul.Close()
		return err
	}
	if cfg.ExpireDaily {
		go expireDaily(ctx, admin.acct, cfg.ExpireAfter, log)
	}
	dailyDone := make(chan struct{})
	if cfg.BackupDaily != "" && cfg.Store == storePostgres {
		log.Warn("backup_daily copies a bbolt data folder; with store = postgres back up the database with pg_dump", "backup_daily", cfg.BackupDaily)
		close(dailyDone)
	} else if cfg.BackupDaily != "" {
		go func() { backupDaily(ctx, cfg, store, log); close(dailyDone) }()
	} else {
		close(dailyDone)
	}
	admDone := make(chan error, 1)
	go func() { admDone <- admin.serve() }()
	log.Info("server started", "domains", cfg.Domains, "data", cfg.Data, "motd", cfg.MOTD != "")

	var runErr error
	drained := 0 // listeners closed by draining, whose error was taken here
wait:
	for {
		select {
		case <-ctx.Done():
			log.Info("shutting down")
		case runErr = <-errc:
			if errors.Is(runErr, errDrained) {
				drained, runErr = drained+1, nil
				continue
			}
			log.Error("server failed; shutting down", "err", runErr)
			errc <- runErr // counted below
		case runErr = <-admDone:
			log.Error("server failed; shutting down", "err", runErr)
			admDone <- runErr
		}
		break wait
	}
	stop() // a second signal kills at once

	// The admin socket goes first, so that no admin command runs against a
	// store about to close, and its file is gone before the database lock
	// is released (the next server then finds no socket of ours).
	admin.close()
	if err := <-admDone; err != nil && runErr == nil {
		runErr = err
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	for _, h := range webServers {
		// Hijacked WebSocket connections are streams of srv: its
		// Shutdown closes them.
		h.Shutdown(sctx)
	}
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("graceful shutdown timed out; connections closed", "err", err)
		// Shutdown gave up waiting; Close waits for the sessions to end
		// and the modules to stop before the store closes.
		srv.Close()
	}
	for range len(ls) + len(webServers) - drained {
		if err := <-errc; !errors.Is(err, treff.ErrServerClosed) && runErr == nil {
			runErr = err
		}
	}
	<-dailyDone // a daily backup under way stops at its next file
	if err := store.Close(); err != nil && runErr == nil {
		runErr = err
	}
	if runErr == nil {
		log.Info("stopped")
	}
	return runErr
}

// proxied wraps the named listener for the PROXY protocol if the
// configuration says so.
func proxied(cfg Config, name string, l net.Listener, log *slog.Logger) net.Listener {
	if !cfg.proxied(name) {
		return l
	}
	return &proxyproto.Listener{Listener: l, Trusted: cfg.ProxyTrusted, Timeout: cfg.ProxyTimeout,
		MaxHeader: cfg.ProxyMaxHeader, Logger: log.With("listener", name)}
}

// drainOnSignal drains the node on SIGUSR1, until ctx ends.
func drainOnSignal(ctx context.Context, d *drainer) {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGUSR1)
	defer signal.Stop(c)
	for {
		select {
		case <-ctx.Done():
			return
		case <-c:
			go d.drain()
		}
	}
}

// errDrained is the result of a client listener that draining closed.
var errDrained = fmt.Errorf("listener closed for draining: %w", treff.ErrServerClosed)

// isClosedErr reports whether err is the error of a closed listener.
func isClosedErr(err error) bool { return errors.Is(err, net.ErrClosed) }

// logListening logs a listener's address once, at start, for the
// operator. These are the server's own addresses; the server logs no
// client's (see the README's Privacy section).
func logListening(log *slog.Logger, name, addr string) {
	log.Info("listening", "listener", name, "addr", addr)
}

// loadCertificate loads cfg's certificate, the one obtained by am (if
// not nil) before, or the self-signed one in the data folder, creating it
// on first start.
func loadCertificate(cfg Config, am *acmeManager, log *slog.Logger) (tls.Certificate, error) {
	var cert tls.Certificate
	var err error
	if am != nil {
		if cert, err = am.loadCert(); err == nil {
			return cert, nil
		} else if !errors.Is(err, fs.ErrNotExist) {
			log.Warn("the certificate obtained before does not load; asking for a new one", "err", err)
		}
	}
	if cfg.Cert != "" {
		cert, err = tls.LoadX509KeyPair(cfg.Cert, cfg.Key)
	} else {
		certFile, keyFile := filepath.Join(cfg.Data, "cert.pem"), filepath.Join(cfg.Data, "key.pem")
		cert, err = certs.LoadOrCreate(certFile, keyFile, certNames(cfg)...)
		if err == nil {
			log.Debug("using the self-signed certificate", "file", certFile)
		}
	}
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("certificate: %w", err)
	}
	if cert.Leaf != nil && am == nil {
		for _, d := range cfg.Domains {
			if cert.Leaf.VerifyHostname(d) != nil {
				log.Warn("the certificate is not valid for a served domain; clients will refuse it (delete cert.pem and key.pem in the data folder to make a new self-signed one)",
					"domain", d)
			}
		}
	}
	return cert, nil
}

// newServer returns the server the configuration describes, with its
// modules. cert is nil for the admin commands that run without a server
// (they use it only to delete accounts with all their data).
func newServer(cfg Config, store storage.Store, authn *auth.Store, log *slog.Logger, cert *tls.Certificate) *treff.Server {
	srv := &treff.Server{
		Storage:            store,
		Authenticator:      authn,
		Logger:             log,
		MaxStanzaSize:      cfg.MaxStanzaSize,
		MaxAttributes:      cfg.MaxAttributes,
		NegotiationTimeout: cfg.NegotiationTimeout,
		IdleTimeout:        cfg.IdleTimeout,
		WriteTimeout:       cfg.WriteTimeout,
		MaxQueue:           cfg.MaxQueue,
		MaxAuthFailures:    cfg.MaxAuthFailures,
		KeepInFlight:       cfg.KeepInFlight == "yes" || cfg.KeepInFlight == "auto" && cfg.Cluster,
	}
	if cfg.IdleTimeout == 0 {
		srv.IdleTimeout = -1 // never
	}
	for _, d := range cfg.Domains {
		h := treff.Host{Domain: d}
		if cert != nil {
			h.Certificates = []tls.Certificate{*cert}
		}
		srv.Hosts = append(srv.Hosts, h)
	}
	resumeTimeout := cfg.ResumeTimeout
	if resumeTimeout == 0 {
		resumeTimeout = -1 // no resumption
	}
	pingInterval := cfg.PingInterval
	if pingInterval == 0 {
		pingInterval = -1 // never
	}
	core := []treff.Module{
		&roster.Module{MaxSharedDirected: cfg.ClusterDirectedPresence},
		&offline.Module{Limit: cfg.OfflineLimit},
		&disco.Module{Contacts: cfg.contacts()},
		&ping.Module{Interval: pingInterval},
		&version.Module{Hide: cfg.HideVersion},
		&xtime.Module{},
		&last.Module{},
		&sm.Module{ResumeTimeout: resumeTimeout},
	}
	if cfg.Archive {
		core = append(core, &mam.Module{Retention: cfg.ArchiveRetention})
	}
	// im.Devices puts blocking, vCard and private storage before these
	// (block lists filter first, vCard stamps presence before the roster
	// broadcasts it) and PEP and carbons after them (sent carbons carry
	// the archive's stanza-id), and adds SASL2 (XEP-0388) with this
	// stream management's resumption and Bind 2 (XEP-0386, with carbons,
	// CSI and stream management inline).
	srv.Modules = im.Devices(core...)
	if svcs := externalServices(cfg); len(svcs) > 0 {
		srv.Modules = append(srv.Modules, &extdisco.Module{Services: svcs, Secret: cfg.TURNSecret, TTL: cfg.TURNTTL})
	}
	if cfg.Push {
		srv.Modules = append(srv.Modules, &push.Module{WithBody: cfg.PushBody})
	}
	if cfg.MOTD != "" {
		srv.Modules = append(srv.Modules, &motd.Module{Text: cfg.MOTD})
	}
	reg := &register.Module{
		Policy:            cfg.Registration,
		Accounts:          authn,
		MinPasswordLength: cfg.RegistrationMinPassword,
		PerAddress:        cfg.RegistrationPerAddress,
		Global:            cfg.RegistrationGlobal,
		HoldDeleted:       cfg.RegistrationHoldDeleted,
	}
	if cfg.MUC {
		rooms := &muc.Module{Creators: cfg.MUCCreators, MaxOccupants: cfg.MUCMaxOccupants, MaxHistory: cfg.MUCMaxHistory, MaxQueueBytes: cfg.MUCMaxQueue,
			MaxRetractable: cfg.MUCMaxRetractable, MaxVCardSize: cfg.MUCMaxVCard,
			KeepTemporary: cfg.MUCKeepTemporary, SaveHistory: cfg.MUCSaveHistory}
		if cfg.MUCKeepTemporary == 0 {
			rooms.KeepTemporary = -1 // the module's 0 is its default
		}
		if cfg.Archive {
			// Rooms keep archives too (each can turn it off in its
			// configuration); the mam module's retention job expires
			// them with the users' archives, in the same store.
			rooms.Archive = &mam.Archiver{}
		}
		srv.Modules = append(srv.Modules, rooms)
	}
	if cfg.PubSub {
		ps := &pep.Service{}
		if len(cfg.PubSubCreators) > 0 {
			ps.Creators = cfg.PubSubCreators // nil: every user of this server
		}
		srv.Modules = append(srv.Modules, ps)
	}
	if cfg.Upload && cfg.HTTPS != "" {
		srv.Modules = append(srv.Modules, &upload.Module{
			BaseURL:     publicURL(cfg) + "upload/",
			Dir:         filepath.Join(cfg.Data, "uploads"),
			MaxFileSize: cfg.UploadMaxSize,
			Quota:       cfg.UploadQuota,
			Expire:      cfg.UploadExpire,
		})
	}
	if cfg.S2S != "" || cfg.S2STLS != "" {
		srv.Modules = append(srv.Modules, &s2s.Module{
			Resolve:          cfg.S2SResolve,
			CAFiles:          cfg.S2SCA,
			AcceptSelfSigned: cfg.S2SSelfSigned,
			NoDialback:       !cfg.S2SDialback,
			IdleTimeout:      cfg.S2SIdleTimeout,
		})
	}
	if len(cfg.Components) > 0 {
		srv.Modules = append(srv.Modules, &component.Module{Components: cfg.Components})
	}
	ah := &adhoc.Module{}
	addAntispam(srv, cfg, ah)
	// FAST tokens (XEP-0484) ride on SASL2: the same value goes last into
	// the sasl2.Module's Inline list (after stream management's and Bind
	// 2's) and into Modules, for its hooks (password change, account
	// deletion) and the users' devices command; serve sets its Secret.
	tokens := &fast.Module{Expiry: cfg.FASTExpiry, RotateAfter: cfg.FASTRotate, AdHoc: ah}
	for _, m := range srv.Modules {
		if s2, ok := m.(*sasl2.Module); ok {
			s2.Inline = append(s2.Inline, tokens)
		}
	}
	srv.Modules = append(srv.Modules, tokens)
	// The server-wide block list, real-time block lists and spam reports
	// (package abuse): reports come from the blocking module (XEP-0377),
	// registrations from in-band registration.
	ab := &abuse.Module{Admins: cfg.Admins}
	if cfg.ReportForward != "" {
		ab.ForwardTo, _ = jid.Parse(cfg.ReportForward) // checked with the configuration
	}
	for _, f := range cfg.RTBL {
		feed, _ := abuse.ParseFeed(f) // checked with the configuration
		ab.RTBL = append(ab.RTBL, feed)
	}
	for _, m := range srv.Modules {
		if b, ok := m.(*blocking.Module); ok {
			b.OnReport = ab.Report
		}
	}
	if cfg.NotifyRegistrations {
		reg.OnRegistered = ab.NotifyRegistration
	}
	srv.Modules = append(srv.Modules, ab)
	for _, m := range srv.Modules {
		// The abuse module answers blocked senders itself, before the
		// stranger filter would drop them silently; rooms ask it (MUC
		// RTBL).
		if m, ok := m.(*muc.Module); ok {
			m.Blocklist = ab
		}
	}
	srv.Modules = append(srv.Modules, &authlimit.Module{
		PerAddress: authlimit.Rate(cfg.AuthLimit),
		PerAccount: authlimit.Rate(cfg.AuthLimitAccount),
	})
	srv.Modules = append(srv.Modules, reg, ah, &treffadmin.Module{
		AdHoc:          ah,
		Admins:         cfg.Admins,
		Accounts:       authn,
		Register:       reg,
		UsersMayInvite: cfg.InvitesByUsers,
		InviteValidity: cfg.InviteValidity,
		LandingURL: func(inv storage.Invite) string {
			return inviteLanding(cfg, register.InviteLink(inv))
		},
	})
	return srv
}

// expireDaily deletes the accounts unused for after, a minute after start
// and then once a day, until ctx ends.
func expireDaily(ctx context.Context, a *accounts, after time.Duration, log *slog.Logger) {
	t := time.NewTimer(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		deleted, err := a.expire(ctx, time.Now().Add(-after), true)
		if err != nil {
			log.Error("expiring unused accounts failed", "err", err)
		}
		log.Info("unused accounts expired", "deleted", len(deleted), "unused_for", after.String())
		t.Reset(24 * time.Hour)
	}
}

// s2sSecretFile keeps the dialback secret (XEP-0185) in the data folder,
// so that keys handed out before a restart still verify after it.
const s2sSecretFile = "s2s-secret"

// fastSecretFile keeps the key FAST tokens are derived from (package
// fast) in the data folder, outside the database, so that tokens survive
// a restart and a copy of treff.db alone lets nobody log in.
const fastSecretFile = "fast-secret"

// fastModule returns the server's FAST module, or nil.
func fastModule(srv *treff.Server) *fast.Module {
	for _, m := range srv.Modules {
		if f, ok := m.(*fast.Module); ok {
			return f
		}
	}
	return nil
}

// s2sModule returns the server's federation module, or nil.
func s2sModule(srv *treff.Server) *s2s.Module {
	for _, m := range srv.Modules {
		if f, ok := m.(*s2s.Module); ok {
			return f
		}
	}
	return nil
}

// componentModule returns the server's external component module, or nil.
func componentModule(srv *treff.Server) *component.Module {
	for _, m := range srv.Modules {
		if c, ok := m.(*component.Module); ok {
			return c
		}
	}
	return nil
}

// checkComponents refuses component domains that are served domains or
// the services' (group chat, upload) of this configuration.
func checkComponents(cfg Config) error {
	taken := map[string]string{}
	for _, d := range cfg.Domains {
		taken[d] = "a served domain"
		if cfg.MUC {
			taken["conference."+d] = "the group chat service"
		}
		if cfg.PubSub {
			taken["pubsub."+d] = "the publish-subscribe service"
		}
		if cfg.Upload && cfg.HTTPS != "" {
			taken["upload."+d] = "the upload service"
		}
	}
	for d := range cfg.Components {
		if what, ok := taken[d]; ok {
			return usageErrorf("component %s: that is %s", d, what)
		}
	}
	return nil
}

// loadSecret reads the secret in file, making a random one on first use.
func loadSecret(file string) ([]byte, error) {
	b, err := os.ReadFile(file)
	if err == nil && len(b) >= 32 {
		return b, nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("secret %s: %w", filepath.Base(file), err)
	}
	b = make([]byte, 32)
	rand.Read(b)
	if err := os.WriteFile(file, b, 0o600); err != nil {
		return nil, fmt.Errorf("secret %s: %w", filepath.Base(file), err)
	}
	return b, nil
}

// startWeb starts the http and https listeners, if configured; their
// errors go to errc (one each, http.ErrServerClosed when shut down).
func startWeb(cfg Config, srv *treff.Server, tlsCerts *certSource, drain *drainer, log *slog.Logger, errc chan error) ([]*http.Server, error) {
	if cfg.HTTP == "" && cfg.HTTPS == "" {
		return nil, nil
	}
	var reg *register.Module
	for _, m := range srv.Modules {
		if r, ok := m.(*register.Module); ok {
			reg = r
		}
	}
	w, err := newWeb(cfg, srv, reg)
	if err != nil {
		return nil, err
	}
	w.drain = drain
	var out []*http.Server
	for _, spec := range []struct {
		name, addr string
		tls        bool
	}{{"http", cfg.HTTP, false}, {"https", cfg.HTTPS, true}} {
		if spec.addr == "" {
			continue
		}
		l, err := net.Listen("tcp", spec.addr)
		if err != nil {
			for _, h := range out {
				h.Close()
			}
			return nil, fmt.Errorf("%s: %w", spec.name, err)
		}
		l = proxied(cfg, spec.name, l, log)
		// net/http logs failed handshakes with the client's address: the
		// server writes no IP addresses to its logs, so those go nowhere.
		hs := &http.Server{Handler: tlsCerts.httpHandler(w), ReadHeaderTimeout: 10 * time.Second, ErrorLog: stdlog.New(io.Discard, "", 0)}
		if spec.tls {
			hs.Handler = w
			hs.TLSConfig = tlsCerts.httpsTLS()
			l = tls.NewListener(l, hs.TLSConfig)
		}
		out = append(out, hs)
		logListening(log, spec.name, l.Addr().String())
		go func() {
			err := hs.Serve(l)
			if errors.Is(err, http.ErrServerClosed) {
				err = treff.ErrServerClosed
			} else {
				err = fmt.Errorf("%s: %w", spec.name, err)
			}
			errc <- err
		}()
	}
	return out, nil
}

// publicURL is the https listener's base URL as clients reach it, ending
// in a slash.
func publicURL(cfg Config) string {
	if cfg.HTTPURL != "" {
		return strings.TrimSuffix(cfg.HTTPURL, "/") + "/"
	}
	_, port, _ := net.SplitHostPort(cfg.HTTPS)
	return "https://" + net.JoinHostPort(cfg.Domains[0], port) + "/"
}

// externalServices lists the STUN and TURN servers for XEP-0215: STUN over
// UDP, TURN over UDP and TCP (coturn listens on both).
func externalServices(cfg Config) []extdisco.Service {
	var out []extdisco.Service
	add := func(typ string, hostports []string, transports ...string) {
		for _, hp := range hostports {
			host, port, err := net.SplitHostPort(hp)
			if err != nil {
				continue // checked when the configuration was read
			}
			n, _ := strconv.Atoi(port)
			for _, tr := range transports {
				out = append(out, extdisco.Service{Type: typ, Host: host, Port: n, Transport: tr})
			}
		}
	}
	add("stun", cfg.STUN, "udp")
	add("turn", cfg.TURN, "udp", "tcp")
	return out
}

// contacts returns the XEP-0157 contact addresses by kind.
func (cfg Config) contacts() map[string][]string {
	m := map[string][]string{}
	for kind, uris := range map[string][]string{"abuse": cfg.ContactAbuse, "admin": cfg.ContactAdmin, "support": cfg.ContactSupport, "security": cfg.ContactSecurity} {
		if len(uris) > 0 {
			m[kind] = uris
		}
	}
	return m
}
