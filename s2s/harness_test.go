package s2s_test

// The federation harness: several treff.Servers with their own domains in
// one test process, each with a memstore, an auth.Store, the IM modules and
// an s2s.Module serving on loopback listeners, and Resolve maps pointing
// every domain at the other servers' listeners. Clients are the raw XML
// clients of trefftest; stanzas are compared as XML (attribute order and
// quoting aside), so that what a client receives is checked exactly.

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/auth"
	"github.com/treff-im/treff/im"
	"github.com/treff-im/treff/s2s"
	"github.com/treff-im/treff/storage/memstore"
	"github.com/treff-im/treff/trefftest"
)

// clientTimeout bounds each wait of a client for a stanza; a federated
// stanza may wait for a stream to be set up (TLS, dialback).
const clientTimeout = 10 * time.Second

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  crypto.Signer
	pool *x509.CertPool
}

func newCA(t testing.TB) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "Treff s2s test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

var serial atomic.Int64

// issue returns a certificate for names signed by the CA, usable as a TLS
// server and client certificate (server-to-server streams use it both
// ways).
func (ca *testCA) issue(t testing.TB, names ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(100 + serial.Add(1)),
		Subject:      pkix.Name{CommonName: names[0]},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     names,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// selfSigned returns a self-signed certificate for names and a pool that
// trusts it (for the c2s clients).
func selfSigned(t testing.TB, names ...string) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	cert, err := trefftest.Certificate(names...)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert.Leaf)
	return cert, pool
}

// mode is how the servers of a federation test authenticate each other.
type mode int

const (
	// viaCA: certificates signed by a test CA that every server trusts
	// (SASL EXTERNAL).
	viaCA mode = iota
	// viaDialback: self-signed certificates nobody trusts (dialback).
	viaDialback
	// viaSelfSigned: self-signed certificates, AcceptSelfSigned on.
	viaSelfSigned
)

func (m mode) String() string {
	return [...]string{"ca", "dialback", "self-signed"}[m]
}

// countListener counts the connections it accepted and those still open.
type countListener struct {
	net.Listener
	accepted atomic.Int32
	open     atomic.Int32
}

func (l *countListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.accepted.Add(1)
	l.open.Add(1)
	return &countConn{Conn: c, l: l}, nil
}

type countConn struct {
	net.Conn
	once sync.Once
	l    *countListener
}

func (c *countConn) Close() error {
	c.once.Do(func() { c.l.open.Add(-1) })
	return c.Conn.Close()
}

func listen(t testing.TB) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// node is one server of a federation test.
type node struct {
	Domain string
	Srv    *treff.Server
	S2S    *s2s.Module
	Store  *memstore.Store
	Auth   *auth.Store
	Logs   *trefftest.LogBuffer
	// Cert is the server's certificate (for its domain and its
	// conference subdomain).
	Cert tls.Certificate

	c2s       net.Listener
	s2sL      *countListener // STARTTLS s2s listener (Serve)
	tlsL      *countListener // direct TLS s2s listener (ServeTLS)
	clientTLS *tls.Config

	serveErr     chan error // c2s Serve
	s2sErr       chan error // s2s Serve and ServeTLS
	shutdownOnce sync.Once
	shutdownErr  error
}

// C2SAddr is the address of the client listener (STARTTLS).
func (n *node) C2SAddr() string { return n.c2s.Addr().String() }

// S2SAddr is the address of the s2s listener (STARTTLS).
func (n *node) S2SAddr() string { return n.s2sL.Addr().String() }

// TLSAddr is the address of the direct TLS s2s listener.
func (n *node) TLSAddr() string { return n.tlsL.Addr().String() }

// federation is a set of servers that know where the others listen.
type federation struct {
	t     testing.TB
	CA    *testCA
	Nodes []*node
}

// newFederation prepares one server per domain for mode; their fields
// (S2S settings, Srv.Modules) may be changed before start.
func newFederation(t testing.TB, m mode, domains ...string) *federation {
	t.Helper()
	f := &federation{t: t, CA: newCA(t)}
	for _, d := range domains {
		n := &node{Domain: d, Store: memstore.New(), Logs: &trefftest.LogBuffer{},
			c2s: listen(t), s2sL: &countListener{Listener: listen(t)}, tlsL: &countListener{Listener: listen(t)},
			serveErr: make(chan error, 1), s2sErr: make(chan error, 2)}
		n.Auth = &auth.Store{Accounts: n.Store}
		n.S2S = &s2s.Module{}
		pool := f.CA.pool
		switch m {
		case viaCA:
			n.Cert = f.CA.issue(t, d, "conference."+d)
			n.S2S.RootCAs = f.CA.pool
		case viaDialback:
			n.Cert, pool = selfSigned(t, d, "conference."+d)
		case viaSelfSigned:
			n.Cert, pool = selfSigned(t, d, "conference."+d)
			n.S2S.AcceptSelfSigned = true
		}
		n.clientTLS = &tls.Config{RootCAs: pool, ServerName: d, MinVersion: tls.VersionTLS12}
		n.Srv = &treff.Server{
			Hosts:         []treff.Host{{Domain: d, Certificates: []tls.Certificate{n.Cert}}},
			Storage:       n.Store,
			Authenticator: n.Auth,
			Modules:       im.Modules(),
			Logger:        slog.New(slog.NewJSONHandler(n.Logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		}
		f.Nodes = append(f.Nodes, n)
	}
	return f
}

// node returns the server for domain.
func (f *federation) node(domain string) *node {
	for _, n := range f.Nodes {
		if n.Domain == domain {
			return n
		}
	}
	f.t.Fatalf("no server for %s", domain)
	return nil
}

// start points every server's Resolve at the others' s2s listeners (for
// their domains and conference subdomains; entries set by the test stay),
// adds the s2s module, sets the servers up and serves. The servers are
// shut down when the test ends.
func (f *federation) start() {
	t := f.t
	t.Helper()
	for _, n := range f.Nodes {
		res := map[string]string{}
		for _, o := range f.Nodes {
			if o != n {
				res[o.Domain] = o.S2SAddr()
				res["conference."+o.Domain] = o.S2SAddr()
			}
		}
		for k, v := range n.S2S.Resolve {
			res[k] = v
		}
		n.S2S.Resolve = res
		n.Srv.Modules = append(n.Srv.Modules, n.S2S)
		if err := n.Srv.Setup(); err != nil {
			t.Fatalf("%s: setup: %v", n.Domain, err)
		}
	}
	for _, n := range f.Nodes {
		go func() { n.serveErr <- n.Srv.Serve(n.c2s) }()
		go func() { n.s2sErr <- n.S2S.Serve(n.s2sL) }()
		go func() { n.s2sErr <- n.S2S.ServeTLS(n.tlsL) }()
		t.Cleanup(func() {
			if err := n.shutdown(); err != nil {
				t.Errorf("%s: %v", n.Domain, err)
			}
			if t.Failed() {
				t.Logf("%s logs:\n%s", n.Domain, n.Logs.String())
			}
		})
	}
}

// shutdown shuts the server down (once) and waits, bounded, for its
// listeners' Serve calls to return.
func (n *node) shutdown() error {
	n.shutdownOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var errs []error
		if err := n.Srv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("shutdown: %w", err))
		}
		timer := time.NewTimer(10 * time.Second)
		defer timer.Stop()
		select {
		case err := <-n.serveErr:
			if err != treff.ErrServerClosed {
				errs = append(errs, fmt.Errorf("c2s Serve returned %v", err))
			}
		case <-timer.C:
			errs = append(errs, errors.New("c2s Serve did not return"))
		}
		for i := 0; i < 2; i++ {
			select {
			case err := <-n.s2sErr:
				if err == nil {
					errs = append(errs, errors.New("s2s Serve returned nil"))
				}
			case <-timer.C:
				errs = append(errs, errors.New("s2s Serve or ServeTLS did not return after Shutdown"))
				i = 2
			}
		}
		n.Store.Close()
		n.shutdownErr = errors.Join(errs...)
	})
	return n.shutdownErr
}

// addUser creates local@Domain with password "pw" and returns the bare JID.
func (n *node) addUser(t testing.TB, local string) string {
	t.Helper()
	user := local + "@" + n.Domain
	if err := n.Auth.CreateUser(context.Background(), user, "pw"); err != nil {
		t.Fatal(err)
	}
	return user
}

// login connects a client of local@Domain with the given resource.
func (n *node) login(t testing.TB, local, resource string) *trefftest.Client {
	t.Helper()
	conn, err := net.Dial("tcp", n.C2SAddr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := trefftest.NewClient(t, conn, n.Domain, n.clientTLS)
	c.Timeout = clientTimeout
	c.Login(local, "pw", resource)
	return c
}

// online logs a client in and sends its initial presence.
func (n *node) online(t testing.TB, local, resource string) *trefftest.Client {
	t.Helper()
	c := n.login(t, local, resource)
	c.Send("<presence/>")
	full := local + "@" + n.Domain + "/" + resource
	want(t, c, "<presence from='"+full+"' to='"+full+"'/>")
	return c
}

// logRecords returns the server's log records with message msg.
func (n *node) logRecords(msg string) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(n.Logs.String(), "\n") {
		if !strings.Contains(line, msg) {
			continue
		}
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

// authenticated returns the methods logged for streams with peer in
// direction ("in" or "out").
func (n *node) authenticated(direction, peer string) []string {
	var methods []string
	for _, r := range n.logRecords("s2s stream authenticated") {
		if r["direction"] == direction && r["domain"] == peer {
			m, _ := r["method"].(string)
			methods = append(methods, m)
		}
	}
	return methods
}

// waitAuthenticated waits (bounded) until the server logged a stream
// with peer in direction, and checks that every such stream used method.
// It polls the log: the record is written by the stream's goroutine, and
// the server has no hook for a stream's authentication.
func (n *node) waitAuthenticated(t testing.TB, direction, peer, method string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := n.authenticated(direction, peer)
		if len(got) > 0 {
			for _, m := range got {
				if m != method {
					t.Errorf("%s: %s stream with %s authenticated by %q, want %q (all: %v)", n.Domain, direction, peer, m, method, got)
				}
			}
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%s: no %q stream with %s logged as authenticated", n.Domain, direction, peer)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitFor polls cond every 10ms until it holds or d has passed. It is for
// conditions nothing signals: a listener's count of open connections (an
// idle timeout or a shutdown closing them), the number of goroutines.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// stanzaPattern matches the next top-level stanza in a client's input.
const stanzaPattern = `^\s*<(?:message|presence|iq)\b(?:[^>]*/>|(?s:.*?)</(?:message|presence|iq)>)`

// next returns the next stanza c receives.
func next(c *trefftest.Client) string {
	return strings.TrimSpace(c.Expect(stanzaPattern))
}

// want reads stanzas until one is, as XML, the same as expected (the
// order and quoting of attributes aside), and fails if none comes within
// the client's timeout. Stanzas before it are logged and skipped.
func want(t testing.TB, c *trefftest.Client, expected string) {
	t.Helper()
	w := canon(t, expected)
	for i := 0; i < 1000; i++ {
		got := next(c)
		if canon(t, got) == w {
			return
		}
		t.Logf("skipped while waiting for %s: %s", expected, got)
	}
	t.Fatalf("never got %s", expected)
}

// wantNext checks that the next stanza c receives is expected.
func wantNext(t testing.TB, c *trefftest.Client, expected string) {
	t.Helper()
	got := next(c)
	if canon(t, got) != canon(t, expected) {
		t.Fatalf("got\n\t%s\nwant\n\t%s", got, expected)
	}
}

// wantSet reads as many stanzas as expected and checks that they are the
// expected ones, in any order.
func wantSet(t testing.TB, c *trefftest.Client, expected ...string) {
	t.Helper()
	left := map[string]int{}
	for _, e := range expected {
		left[canon(t, e)]++
	}
	for range expected {
		got := next(c)
		k := canon(t, got)
		if left[k] == 0 {
			t.Fatalf("got\n\t%s\nwant one of\n\t%s", got, strings.Join(expected, "\n\t"))
		}
		left[k]--
	}
}

var quietN atomic.Int64

// quiet waits d, then checks that c received nothing but the answer to a
// ping it sends to domain (its own server, or a remote one to fence what
// comes over federation). Give d only where no event says that what must
// not arrive would have arrived by now, and say why at the call.
func quiet(t testing.TB, c *trefftest.Client, domain string, d time.Duration) {
	t.Helper()
	time.Sleep(d)
	id := "quiet-" + strconv.FormatInt(quietN.Add(1), 10)
	c.Send("<iq type='get' id='" + id + "' to='" + domain + "'><ping xmlns='urn:xmpp:ping'/></iq>")
	for i := 0; i < 100; i++ {
		got := next(c)
		if strings.HasPrefix(got, "<iq") && strings.Contains(got, "id='"+id+"'") {
			return
		}
		t.Errorf("unexpected stanza: %s", got)
	}
}

// canon returns s, one XML element, in a canonical form: attributes
// sorted and single-quoted, empty elements self-closed, and a top-level
// xmlns='jabber:client' dropped (a client stream's default namespace).
func canon(t testing.TB, s string) string {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(s))
	var b strings.Builder
	type open struct {
		start string
		empty bool
	}
	var stack []*open
	flush := func() {
		if len(stack) > 0 && stack[len(stack)-1].empty {
			b.WriteString(stack[len(stack)-1].start + ">")
			stack[len(stack)-1].empty = false
		}
	}
	for {
		tok, err := d.RawToken()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not XML: %v: %s", err, s)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			flush()
			var attrs []string
			for _, a := range tok.Attr {
				name := qname(a.Name)
				if len(stack) == 0 && name == "xmlns" && a.Value == "jabber:client" {
					continue
				}
				attrs = append(attrs, name+"='"+escape(a.Value, true)+"'")
			}
			sort.Strings(attrs)
			start := "<" + qname(tok.Name)
			if len(attrs) > 0 {
				start += " " + strings.Join(attrs, " ")
			}
			stack = append(stack, &open{start: start, empty: true})
		case xml.EndElement:
			top := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if top.empty {
				b.WriteString(top.start + "/>")
			} else {
				b.WriteString("</" + qname(tok.Name) + ">")
			}
		case xml.CharData:
			flush()
			b.WriteString(escape(string(tok), false))
		}
	}
	return b.String()
}

func qname(n xml.Name) string {
	if n.Space != "" {
		return n.Space + ":" + n.Local
	}
	return n.Local
}

func escape(s string, attr bool) string {
	r := []string{"&", "&amp;", "<", "&lt;", ">", "&gt;"}
	if attr {
		r = append(r, "'", "&apos;", `"`, "&quot;")
	}
	return strings.NewReplacer(r...).Replace(s)
}

// peer is a raw server-to-server connection driven by the test, for
// checks of what a Treff server accepts from other servers.
type peer struct {
	t    testing.TB
	conn net.Conn
	buf  []byte
}

// dialPeer connects to addr (plain TCP).
func dialPeer(t testing.TB, addr string) *peer {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &peer{t: t, conn: c}
}

// dialPeerTLS connects to addr with direct TLS (XEP-0368).
func dialPeerTLS(t testing.TB, addr string, cfg *tls.Config) *peer {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &peer{t: t, conn: c}
}

func (p *peer) send(s string) {
	p.t.Helper()
	p.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(p.conn, s); err != nil {
		p.t.Fatalf("peer: write: %v", err)
	}
}

// expect reads until the input matches pattern and returns the input up
// to the end of the match, which it consumes.
func (p *peer) expect(pattern string) string {
	p.t.Helper()
	re := regexp.MustCompile(pattern)
	deadline := time.Now().Add(clientTimeout)
	b := make([]byte, 4096)
	for {
		if loc := re.FindIndex(p.buf); loc != nil {
			m := string(p.buf[:loc[1]])
			p.buf = slices.Clone(p.buf[loc[1]:])
			return m
		}
		p.conn.SetReadDeadline(deadline)
		n, err := p.conn.Read(b)
		p.buf = append(p.buf, b[:n]...)
		if err != nil && n == 0 {
			p.t.Fatalf("peer: waiting for %q: %v; got %q", pattern, err, p.buf)
		}
	}
}

// expectClosed reads until the server closes the connection and returns
// what was left to read.
func (p *peer) expectClosed() string {
	p.t.Helper()
	p.conn.SetReadDeadline(time.Now().Add(clientTimeout))
	rest, err := io.ReadAll(p.conn)
	if err != nil && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
		p.t.Fatalf("peer: connection not closed: %v (read %q)", err, rest)
	}
	out := string(p.buf) + string(rest)
	p.buf = nil
	return out
}

// serverHeader is a server-to-server stream header.
func serverHeader(from, to string) string {
	return "<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' from='" + from + "' to='" + to + "' version='1.0'>"
}

const featuresEnd = `<stream:features/>|</stream:features>`

// startTLS opens a stream to 'to' and upgrades it with STARTTLS.
func (p *peer) startTLS(from, to string, cfg *tls.Config) {
	p.t.Helper()
	p.send(serverHeader(from, to))
	if f := p.expect(featuresEnd); !strings.Contains(f, "urn:ietf:params:xml:ns:xmpp-tls") {
		p.t.Fatalf("no STARTTLS offered: %s", f)
	}
	p.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
	p.expect(`<proceed[^>]*/>`)
	tc := tls.Client(p.conn, cfg)
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	if err := tc.Handshake(); err != nil {
		p.t.Fatal(err)
	}
	tc.SetDeadline(time.Time{})
	p.conn = tc
	p.buf = nil
}
