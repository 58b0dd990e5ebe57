package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/crypto/acme"

	"github.com/treff-im/treff/storage"
)

// Files of the ACME client, in the folder acmeDir of the data folder, all
// with mode 0600.
const (
	acmeDir         = "acme"
	acmeAccountFile = "account-key.pem"
	acmeCertFile    = "cert.pem" // the chain the CA returned
	acmeKeyFile     = "key.pem"
)

// Timing of the ACME client: an order gives up after acmeOrderTimeout; a
// failed one is retried after acmeRetryMin, doubling up to acmeRetryMax
// (Let's Encrypt allows 5 failed validations per name and hour).
const (
	acmeOrderTimeout = 5 * time.Minute
	acmeRetryMin     = 5 * time.Minute
	acmeRetryMax     = 12 * time.Hour
)

// acmeRenewOnHUPEnv is a test knob, not for operators (a CA limits how
// often a certificate may be renewed): set to 1, each SIGHUP renews the
// ACME certificate at once.
const acmeRenewOnHUPEnv = "TREFF_ACME_RENEW_ON_HUP"

// certSource holds the certificate every TLS listener presents, through
// tls.Config.GetCertificate: a new one (renewed, or re-read on SIGHUP)
// goes to new connections while existing ones keep theirs. It also holds
// the ACME challenge responses: http-01 on the http listener,
// tls-alpn-01 on the https listener.
type certSource struct {
	cert atomic.Pointer[tls.Certificate]

	mu     sync.Mutex
	tokens map[string]string           // http-01: token → key authorization
	alpn   map[string]*tls.Certificate // tls-alpn-01: name → challenge certificate
}

func newCertSource(c tls.Certificate) *certSource {
	s := &certSource{tokens: map[string]string{}, alpn: map[string]*tls.Certificate{}}
	s.cert.Store(&c)
	return s
}

// set makes c the certificate of new connections.
func (s *certSource) set(c tls.Certificate) { s.cert.Store(&c) }

// GetCertificate returns the current certificate, for every name.
func (s *certSource) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.cert.Load(), nil
}

// serverTLS is the TLS configuration of the XMPP listeners.
func (s *certSource) serverTLS() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: s.GetCertificate}
}

// httpsTLS is the TLS configuration of the https listener: the current
// certificate, or a tls-alpn-01 challenge certificate (RFC 8737) for a
// client that offers only the acme-tls/1 protocol.
func (s *certSource) httpsTLS() *tls.Config {
	cfg := s.serverTLS()
	cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		if !slices.Contains(hello.SupportedProtos, acme.ALPNProto) {
			return nil, nil
		}
		s.mu.Lock()
		c := s.alpn[strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))]
		s.mu.Unlock()
		if c == nil {
			return nil, errors.New("no tls-alpn-01 challenge pending for this name")
		}
		return &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{acme.ALPNProto}, Certificates: []tls.Certificate{*c}}, nil
	}
	return cfg
}

// httpHandler answers http-01 challenges (RFC 8555 8.3) under
// /.well-known/acme-challenge/ and hands every other request to next.
func (s *certSource) httpHandler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := strings.CutPrefix(r.URL.Path, "/.well-known/acme-challenge/")
		if !ok {
			next.ServeHTTP(w, r)
			return
		}
		s.mu.Lock()
		ka := s.tokens[token]
		s.mu.Unlock()
		if ka == "" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		io.WriteString(w, ka)
	})
}

// reloadOnHUP re-reads the certificate with load on each SIGHUP until ctx
// ends (for operators whose certificates another program renews, e.g.
// certbot's deploy hook). A certificate that fails to load is logged and
// the current one stays. With am, the certificate is the ACME client's:
// nothing is read (the test knob acmeRenewOnHUPEnv renews it instead).
func reloadOnHUP(ctx context.Context, src *certSource, load func() (tls.Certificate, error), am *acmeManager, log *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		if am != nil {
			if am.renewOnHUP {
				select {
				case am.kick <- struct{}{}:
				default: // one is pending already
				}
			} else if am.shared != nil {
				select {
				case am.reload <- struct{}{}:
				default:
				}
				log.Info("SIGHUP: re-reading the certificate from the store")
			} else {
				log.Info("SIGHUP: the certificate comes from ACME; nothing to reload")
			}
			continue
		}
		c, err := load()
		if err != nil {
			log.Error("SIGHUP: the certificate could not be reloaded; keeping the current one", "err", err)
			continue
		}
		src.set(c)
		log.Info("certificate reloaded", "serial", serialOf(c), "not_after", notAfterOf(c))
	}
}

func serialOf(c tls.Certificate) string {
	if c.Leaf == nil {
		return ""
	}
	return fmt.Sprintf("%x", c.Leaf.SerialNumber)
}

func notAfterOf(c tls.Certificate) time.Time {
	if c.Leaf == nil {
		return time.Time{}
	}
	return c.Leaf.NotAfter.UTC()
}

// certNames are the names the server's certificate must cover: the
// served domains and their services' subdomains (other servers check them
// when a service talks to their users).
func certNames(cfg Config) []string {
	names := slices.Clone(cfg.Domains)
	for _, svc := range []struct {
		on     bool
		prefix string
	}{{cfg.MUC, "conference."}, {cfg.PubSub, "pubsub."}, {cfg.Upload && cfg.HTTPS != "", "upload."}} {
		if svc.on {
			for _, d := range cfg.Domains {
				names = append(names, svc.prefix+d)
			}
		}
	}
	return names
}

// acmeManager obtains and renews the server's certificate from an ACME
// CA (RFC 8555) for names, answering tls-alpn-01 (RFC 8737) on the https
// listener or, without one, http-01 on the http listener (which is on
// loopback: a proxy forwards port 80 to it).
type acmeManager struct {
	dir       string // the data folder's acme folder
	directory string // the CA's directory URL
	email     string // contact address, or ""
	names     []string
	src       *certSource
	http01    bool // the http listener runs
	tlsALPN01 bool // the https listener runs
	log       *slog.Logger

	renewOnHUP bool          // acmeRenewOnHUPEnv
	retryMin   time.Duration // acmeRetryMin
	retryMax   time.Duration // acmeRetryMax
	kick       chan struct{} // renew now
	now        func() time.Time

	client *acme.Client
	leaf   *x509.Certificate // of the current ACME certificate, or nil

	// With a shared store (see acmeshared.go): where the account and
	// certificate live instead of dir, this process's lease holder name,
	// SIGHUP's request to re-read the store, and how often it is re-read
	// anyway. shared is nil with bbolt.
	shared storage.Secrets
	node   string
	reload chan struct{}
	poll   time.Duration
}

func newACMEManager(cfg Config, log *slog.Logger) (*acmeManager, error) {
	m := &acmeManager{
		dir:       filepath.Join(cfg.Data, acmeDir),
		directory: cfg.ACMEDirectory,
		email:     cfg.ACMEEmail,
		names:     certNames(cfg),
		http01:    cfg.HTTP != "",
		tlsALPN01: cfg.HTTPS != "",
		log:       log.With("component", "acme"),
		now:       time.Now,
		retryMin:  acmeRetryMin,
		retryMax:  acmeRetryMax,
		poll:      acmeSharedPoll,
	}
	// The CA connects to port 443 (tls-alpn-01) or 80 (http-01) of each
	// name: a listener on loopback is reached only through a proxy.
	switch {
	case m.tlsALPN01 && isLoopback(cfg.HTTPS):
		m.log.Warn("the https listener is on loopback: the CA validates on port 443 of each name, so forward it here (TLS passthrough) or set https = :443", "https", cfg.HTTPS)
	case !m.tlsALPN01:
		m.log.Info("the CA validates on port 80 of each name: forward /.well-known/acme-challenge/ there to the http listener", "http", cfg.HTTP)
	}
	m.renewOnHUP = os.Getenv(acmeRenewOnHUPEnv) == "1"
	m.kick = make(chan struct{}, 1)
	if err := os.MkdirAll(m.dir, 0o700); err != nil {
		return nil, err
	}
	return m, nil
}

// loadCert reads the certificate obtained before, if any: fs.ErrNotExist
// when there is none.
func (m *acmeManager) loadCert() (tls.Certificate, error) {
	if m.shared != nil {
		return m.loadShared()
	}
	return tls.LoadX509KeyPair(filepath.Join(m.dir, acmeCertFile), filepath.Join(m.dir, acmeKeyFile))
}

// renewAt is when the current certificate is due for renewal: at once
// without one or when it misses a name, else at two thirds of its
// lifetime (day 60 of Let's Encrypt's 90).
func (m *acmeManager) renewAt() time.Time {
	l := m.leaf
	if l == nil {
		return time.Time{}
	}
	for _, n := range m.names {
		if l.VerifyHostname(n) != nil {
			return time.Time{}
		}
	}
	return l.NotBefore.Add(l.NotAfter.Sub(l.NotBefore) * 2 / 3)
}

// run obtains the certificate when it is due, again and again, until ctx
// ends, and hands each to src; failures are retried with a bounded
// exponential back-off.
func (m *acmeManager) run(ctx context.Context, src *certSource) {
	m.src = src
	if c, err := m.loadCert(); err == nil {
		m.leaf = c.Leaf
	}
	retry := m.retryMin
	var planned time.Time
	// wait waits for d, a kick (reported) or a reload request.
	wait := func(d time.Duration) (kicked, done bool) {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return false, true
		case <-t.C:
		case <-m.kick:
			return true, false
		case <-m.reload: // nil without a shared store
		}
		return false, false
	}
	for {
		if d := m.renewAt().Sub(m.now()); d > 0 {
			if at := m.now().Add(d).UTC().Round(time.Second); !at.Equal(planned) {
				planned = at
				m.log.Info("certificate valid; renewal planned", "at", at)
			}
			if m.shared != nil {
				// Re-read the store now and then: another node may
				// renew first.
				d = min(d, m.poll)
			}
			kicked, done := wait(d)
			if done {
				return
			}
			if m.shared != nil {
				// A certificate another node obtained meanwhile also
				// answers a kick.
				if m.refresh() || !kicked && m.renewAt().After(m.now()) {
					continue
				}
			}
		} else if m.shared != nil && m.refresh() {
			continue
		}
		if m.shared != nil {
			ok, err := m.takeLease(ctx)
			if err != nil {
				m.log.Error("could not take the ACME lease; trying again later", "err", err)
			} else if !ok {
				m.log.Info("another node is ordering the certificate; waiting for it", "poll", m.poll)
			}
			if err != nil || !ok {
				if _, done := wait(m.poll); done {
					return
				}
				continue
			}
		}
		renewal := m.leaf != nil
		err := m.obtain(ctx)
		if m.shared != nil {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), secretTimeout)
			m.releaseLease(rctx)
			cancel()
		}
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			m.log.Error("could not obtain a certificate; trying again later", "err", err, "retry_in", retry)
			t := time.NewTimer(retry)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			retry = min(retry*2, m.retryMax)
			continue
		}
		retry = m.retryMin
		what := "certificate obtained"
		if renewal {
			what = "certificate renewed"
		}
		m.log.Info(what, "names", m.names, "serial", fmt.Sprintf("%x", m.leaf.SerialNumber), "not_after", m.leaf.NotAfter.UTC())
	}
}

// obtain runs one ACME order for m.names and makes its certificate
// current.
func (m *acmeManager) obtain(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, acmeOrderTimeout)
	defer cancel()
	if m.client == nil {
		var key crypto.Signer
		var err error
		if m.shared != nil {
			key, err = m.sharedAccountKey(ctx)
		} else {
			key, err = loadOrCreateKey(filepath.Join(m.dir, acmeAccountFile))
		}
		if err != nil {
			return err
		}
		c := &acme.Client{Key: key, DirectoryURL: m.directory, UserAgent: "treff-community"}
		acct := &acme.Account{}
		if m.email != "" {
			acct.Contact = []string{"mailto:" + m.email}
		}
		if _, err := c.Register(ctx, acct, acme.AcceptTOS); err != nil && !errors.Is(err, acme.ErrAccountAlreadyExists) {
			return fmt.Errorf("account: %w", err)
		}
		m.client = c
	}
	c := m.client
	order, err := c.AuthorizeOrder(ctx, acme.DomainIDs(m.names...))
	if err != nil {
		return fmt.Errorf("order: %w", err)
	}
	for _, u := range order.AuthzURLs {
		z, err := c.GetAuthorization(ctx, u)
		if err != nil {
			return fmt.Errorf("authorization: %w", err)
		}
		if z.Status != acme.StatusPending {
			continue // valid already (reused)
		}
		if err := m.authorize(ctx, z); err != nil {
			return err
		}
	}
	if order, err = c.WaitOrder(ctx, order.URI); err != nil {
		return fmt.Errorf("order: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: m.names[0]}, DNSNames: m.names}, key)
	if err != nil {
		return err
	}
	der, _, err := c.CreateOrderCert(ctx, order.FinalizeURL, csr, true)
	if err != nil {
		return fmt.Errorf("finalize: %w", err)
	}
	cert, err := m.check(der, key)
	if err != nil {
		return err
	}
	if m.shared != nil {
		err = m.saveShared(ctx, der, key)
	} else {
		err = m.save(der, key)
	}
	if err != nil {
		return err
	}
	m.leaf = cert.Leaf
	m.src.set(cert)
	return nil
}

// authorize answers one pending authorization: tls-alpn-01 when the
// https listener runs, else http-01.
func (m *acmeManager) authorize(ctx context.Context, z *acme.Authorization) error {
	c := m.client
	name := z.Identifier.Value
	var chal *acme.Challenge
	for _, typ := range []string{"tls-alpn-01", "http-01"} {
		if typ == "http-01" && !m.http01 || typ == "tls-alpn-01" && !m.tlsALPN01 {
			continue
		}
		if i := slices.IndexFunc(z.Challenges, func(ch *acme.Challenge) bool { return ch.Type == typ }); i >= 0 {
			chal = z.Challenges[i]
			break
		}
	}
	if chal == nil {
		var offered []string
		for _, ch := range z.Challenges {
			offered = append(offered, ch.Type)
		}
		return fmt.Errorf("%s: no challenge this server can answer (offered: %s)", name, strings.Join(offered, ", "))
	}
	switch chal.Type {
	case "http-01":
		ka, err := c.HTTP01ChallengeResponse(chal.Token)
		if err != nil {
			return err
		}
		m.src.mu.Lock()
		m.src.tokens[chal.Token] = ka
		m.src.mu.Unlock()
		defer func() {
			m.src.mu.Lock()
			delete(m.src.tokens, chal.Token)
			m.src.mu.Unlock()
		}()
	case "tls-alpn-01":
		cert, err := c.TLSALPN01ChallengeCert(chal.Token, name)
		if err != nil {
			return err
		}
		m.src.mu.Lock()
		m.src.alpn[name] = &cert
		m.src.mu.Unlock()
		defer func() {
			m.src.mu.Lock()
			delete(m.src.alpn, name)
			m.src.mu.Unlock()
		}()
	}
	m.log.Debug("answering a challenge", "name", name, "type", chal.Type)
	if _, err := c.Accept(ctx, chal); err != nil {
		return fmt.Errorf("%s: %s: %w", name, chal.Type, err)
	}
	if _, err := c.WaitAuthorization(ctx, z.URI); err != nil {
		return fmt.Errorf("%s: %s: %w", name, chal.Type, err)
	}
	return nil
}

// check turns the chain the CA returned into a certificate, checking that
// it is for key and covers every name.
func (m *acmeManager) check(der [][]byte, key *ecdsa.PrivateKey) (tls.Certificate, error) {
	if len(der) == 0 {
		return tls.Certificate{}, errors.New("the CA returned no certificate")
	}
	leaf, err := x509.ParseCertificate(der[0])
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("the CA's certificate: %w", err)
	}
	if pub, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(&key.PublicKey) {
		return tls.Certificate{}, errors.New("the CA's certificate is not for the key asked for")
	}
	for _, n := range m.names {
		if err := leaf.VerifyHostname(n); err != nil {
			return tls.Certificate{}, fmt.Errorf("the CA's certificate: %w", err)
		}
	}
	return tls.Certificate{Certificate: der, PrivateKey: key, Leaf: leaf}, nil
}

// save writes the chain and its key to the acme folder, each replacing
// the old file at once (a crash leaves the old or the new one).
func (m *acmeManager) save(der [][]byte, key *ecdsa.PrivateKey) error {
	var chain []byte
	for _, b := range der {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: b})...)
	}
	k, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	// The key first: a chain next to the old key would not load.
	if err := writeFileAtomic(filepath.Join(m.dir, acmeKeyFile), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: k})); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(m.dir, acmeCertFile), chain)
}

// writeFileAtomic writes b to file with mode 0600 through a temporary file
// renamed over it.
func writeFileAtomic(file string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(file), ".tmp-"+filepath.Base(file))
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), file)
}

// loadOrCreateKey reads the ACME account key from file, or makes a new
// ECDSA P-256 key and writes it there (mode 0600).
func loadOrCreateKey(file string) (crypto.Signer, error) {
	b, err := os.ReadFile(file)
	if err == nil {
		p, _ := pem.Decode(b)
		if p == nil {
			return nil, fmt.Errorf("%s: no PEM block", file)
		}
		k, err := x509.ParseECPrivateKey(p.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		return k, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(file, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})); err != nil {
		return nil, err
	}
	return k, nil
}
