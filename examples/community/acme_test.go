package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/treff-im/treff/internal/certs"
	"golang.org/x/crypto/acme"
)

func selfSigned(t *testing.T, names ...string) tls.Certificate {
	t.Helper()
	c, k, err := certs.SelfSigned(names...)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(c, k)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// handshake runs a TLS handshake over a pipe between a server with cfg
// and a client with ccfg, and returns both ends (closed when the test
// ends).
func handshake(t *testing.T, cfg, ccfg *tls.Config) (client, server *tls.Conn, err error) {
	t.Helper()
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	server = tls.Server(a, cfg)
	client = tls.Client(b, ccfg)
	serr := make(chan error, 1)
	go func() { serr <- server.Handshake() }()
	err = client.Handshake()
	if e := <-serr; err == nil {
		err = e
	}
	return client, server, err
}

// TestCertSourceSwap: a new certificate goes to new connections; a
// connection made before keeps its own and keeps working.
func TestCertSourceSwap(t *testing.T) {
	c1, c2 := selfSigned(t, "example.org"), selfSigned(t, "example.org")
	src := newCertSource(c1)
	ccfg := &tls.Config{InsecureSkipVerify: true, ServerName: "example.org"}
	old, oldSrv, err := handshake(t, src.serverTLS(), ccfg)
	if err != nil {
		t.Fatal(err)
	}
	src.set(c2)
	nc, _, err := handshake(t, src.serverTLS(), ccfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := old.ConnectionState().PeerCertificates[0].Raw; !bytes.Equal(got, c1.Certificate[0]) {
		t.Error("the old connection does not have the first certificate")
	}
	if got := nc.ConnectionState().PeerCertificates[0].Raw; !bytes.Equal(got, c2.Certificate[0]) {
		t.Error("a new connection did not get the new certificate")
	}
	// The old connection still carries data.
	go old.Write([]byte("ping"))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(oldSrv, buf); err != nil || string(buf) != "ping" {
		t.Errorf("old connection after the swap: %q, %v", buf, err)
	}
}

// TestHTTPSTLSALPN01: the https listener answers a tls-alpn-01 validation
// (RFC 8737: only acme-tls/1 offered, SNI the name) with the challenge
// certificate, refuses one for a name without a pending challenge, and
// gives every other client the current certificate.
func TestHTTPSTLSALPN01(t *testing.T) {
	cur := selfSigned(t, "example.org")
	src := newCertSource(cur)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cl := &acme.Client{Key: key}
	chal, err := cl.TLSALPN01ChallengeCert("token-1", "example.org")
	if err != nil {
		t.Fatal(err)
	}
	src.alpn["example.org"] = &chal
	cfg := src.httpsTLS()

	c, _, err := handshake(t, cfg, &tls.Config{InsecureSkipVerify: true, ServerName: "example.org", NextProtos: []string{acme.ALPNProto}})
	if err != nil {
		t.Fatal(err)
	}
	st := c.ConnectionState()
	if st.NegotiatedProtocol != acme.ALPNProto || !bytes.Equal(st.PeerCertificates[0].Raw, chal.Certificate[0]) {
		t.Errorf("validation got protocol %q and not the challenge certificate", st.NegotiatedProtocol)
	}
	if _, _, err := handshake(t, cfg, &tls.Config{InsecureSkipVerify: true, ServerName: "other.example", NextProtos: []string{acme.ALPNProto}}); err == nil {
		t.Error("a validation for a name without a challenge succeeded")
	}
	c, _, err = handshake(t, cfg, &tls.Config{InsecureSkipVerify: true, ServerName: "example.org", NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(c.ConnectionState().PeerCertificates[0].Raw, cur.Certificate[0]) {
		t.Error("a browser got the challenge certificate")
	}
}

// TestHTTP01Handler: the key authorization for a pending token, 404 for
// others, and every other path to the web handler.
func TestHTTP01Handler(t *testing.T) {
	src := newCertSource(selfSigned(t, "example.org"))
	src.tokens["tok"] = "tok.thumbprint"
	h := src.httpHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "web") }))
	for _, tc := range []struct {
		path string
		code int
		body string
	}{
		{"/.well-known/acme-challenge/tok", 200, "tok.thumbprint"},
		{"/.well-known/acme-challenge/other", 404, ""},
		{"/.well-known/host-meta", 200, "web"},
		{"/", 200, "web"},
	} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "http://example.org"+tc.path, nil))
		if w.Code != tc.code || tc.body != "" && w.Body.String() != tc.body {
			t.Errorf("%s: %d %q, want %d %q", tc.path, w.Code, w.Body, tc.code, tc.body)
		}
	}
}

func TestCertNames(t *testing.T) {
	cfg := Default()
	cfg.Domains = []string{"a.example", "b.example"}
	want := []string{"a.example", "b.example", "conference.a.example", "conference.b.example",
		"pubsub.a.example", "pubsub.b.example", "upload.a.example", "upload.b.example"}
	if got := certNames(cfg); !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	cfg.MUC, cfg.PubSub, cfg.HTTPS = false, false, "" // no upload without https
	if got := certNames(cfg); !reflect.DeepEqual(got, cfg.Domains) {
		t.Errorf("without services: got %q", got)
	}
}

// leafFor makes a leaf for names valid from nb for life.
func leafFor(t *testing.T, nb time.Time, life time.Duration, names ...string) *x509.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: nb, NotAfter: nb.Add(life)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	l, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestRenewAt: at once without a certificate or when one misses a name,
// else at two thirds of the lifetime.
func TestRenewAt(t *testing.T) {
	nb := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	m := &acmeManager{names: []string{"example.org", "conference.example.org"}}
	if !m.renewAt().IsZero() {
		t.Error("without a certificate: not at once")
	}
	m.leaf = leafFor(t, nb, 90*24*time.Hour, "example.org", "conference.example.org")
	if got, want := m.renewAt(), nb.Add(60*24*time.Hour); !got.Equal(want) {
		t.Errorf("90 days: renewal at %v, want %v", got, want)
	}
	m.leaf = leafFor(t, nb, 90*24*time.Hour, "example.org")
	if !m.renewAt().IsZero() {
		t.Error("a certificate missing a name: not renewed at once")
	}
}

// TestACMEFiles: the chain and key are saved with mode 0600 and load back;
// the account key is made once and then read back; check refuses a
// certificate for another key or missing a name.
func TestACMEFiles(t *testing.T) {
	dir := t.TempDir()
	m := &acmeManager{dir: dir, names: []string{"example.org"}}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(9), DNSNames: []string{"example.org"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.check([][]byte{der}, key); err != nil {
		t.Fatal(err)
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if _, err := m.check([][]byte{der}, other); err == nil {
		t.Error("check accepted a certificate for another key")
	}
	m2 := &acmeManager{names: []string{"example.org", "pubsub.example.org"}}
	if _, err := m2.check([][]byte{der}, key); err == nil {
		t.Error("check accepted a certificate missing a name")
	}
	if err := m.save([][]byte{der}, key); err != nil {
		t.Fatal(err)
	}
	c, err := m.loadCert()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(c.Certificate[0], der) {
		t.Error("the saved certificate does not load back")
	}
	k1, err := loadOrCreateKey(filepath.Join(dir, acmeAccountFile))
	if err != nil {
		t.Fatal(err)
	}
	k2, err := loadOrCreateKey(filepath.Join(dir, acmeAccountFile))
	if err != nil {
		t.Fatal(err)
	}
	if !k1.(*ecdsa.PrivateKey).Equal(k2) {
		t.Error("the account key changed between starts")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 3 {
		t.Errorf("the acme folder holds %d files, want 3 (no temporary files left)", len(entries))
	}
	for _, e := range entries {
		fi, _ := e.Info()
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", e.Name(), fi.Mode().Perm())
		}
	}
}

// TestServeACMEUsage: acme with cert, or without an http or https
// listener, is a usage error before anything is created.
func TestServeACMEUsage(t *testing.T) {
	for _, tc := range []struct {
		set  func(*Config)
		want string
	}{
		{func(c *Config) { c.Cert, c.Key = "c.pem", "k.pem" }, "acme and cert exclude each other"},
		{func(c *Config) { c.HTTP, c.HTTPS = "", "" }, "acme needs the http listener"},
	} {
		cfg := Default()
		cfg.Data = filepath.Join(t.TempDir(), "data")
		cfg.ACME = true
		tc.set(&cfg)
		err := serve(context.Background(), cfg, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) || errorKind(err) != kindUsage {
			t.Errorf("got %v, want a usage error %q", err, tc.want)
		}
		if _, err := os.Stat(cfg.Data); err == nil {
			t.Error("the data folder was created")
		}
	}
}

// TestLoadCertificateFiles: loadCertificate, which SIGHUP calls, re-reads
// -cert and -key, and fails on a broken file (the caller then keeps the
// current certificate).
func TestLoadCertificateFiles(t *testing.T) {
	dir := t.TempDir()
	c, k, err := certs.SelfSigned("example.org")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Default()
	cfg.Domains = []string{"example.org"}
	cfg.Cert, cfg.Key = filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	os.WriteFile(cfg.Cert, c, 0o600)
	os.WriteFile(cfg.Key, k, 0o600)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	got, err := loadCertificate(cfg, nil, log)
	if err != nil || got.Leaf == nil || got.Leaf.VerifyHostname("example.org") != nil {
		t.Fatalf("loadCertificate: %v", err)
	}
	os.WriteFile(cfg.Key, []byte("broken"), 0o600)
	if _, err := loadCertificate(cfg, nil, log); err == nil {
		t.Error("a broken key loaded")
	}
}

// errorLog sends each error record's retry_in to a channel.
type errorLog struct{ retries chan time.Duration }

func (h errorLog) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelError }
func (h errorLog) WithAttrs([]slog.Attr) slog.Handler           { return h }
func (h errorLog) WithGroup(string) slog.Handler                { return h }
func (h errorLog) Handle(_ context.Context, r slog.Record) error {
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "retry_in" {
			h.retries <- a.Value.Duration()
		}
		return true
	})
	return nil
}

// TestACMERetryBackoff: a CA that fails every request is retried after
// retryMin, doubling up to retryMax, and the current certificate stays.
func TestACMERetryBackoff(t *testing.T) {
	// A CA that is down: nothing listens on its port any more.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	caAddr := l.Addr().String()
	l.Close()
	cfg := Default()
	cfg.Data = t.TempDir()
	cfg.ACMEDirectory = "https://" + caAddr + "/dir"
	h := errorLog{retries: make(chan time.Duration, 1)}
	m, err := newACMEManager(cfg, slog.New(h))
	if err != nil {
		t.Fatal(err)
	}
	m.retryMin, m.retryMax = time.Millisecond, 4*time.Millisecond
	cur := selfSigned(t, "localhost")
	src := newCertSource(cur)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.run(ctx, src); close(done) }()
	var got []time.Duration
	for len(got) < 5 {
		select {
		case d := <-h.retries:
			got = append(got, d)
		case <-time.After(30 * time.Second):
			t.Fatalf("no retry within 30s; got %v", got)
		}
	}
	cancel()
	for {
		select {
		case <-h.retries: // one more attempt may have failed meanwhile
			continue
		case <-done:
		}
		break
	}
	want := []time.Duration{time.Millisecond, 2 * time.Millisecond, 4 * time.Millisecond, 4 * time.Millisecond, 4 * time.Millisecond}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("retry waits %v, want %v", got, want)
	}
	if src.cert.Load().Leaf != cur.Leaf {
		t.Error("the current certificate changed after failures")
	}
}
