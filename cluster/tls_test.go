package cluster

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// files writes a certificate for a node (server and client use, IP
// address 127.0.0.1) signed by ca, its key and ca's certificate to dir,
// and returns their paths.
func (ca *testCA) files(t *testing.T, dir, name string) (certFile, keyFile, caFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, caFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key"), filepath.Join(dir, name+"-ca.pem")
	for _, f := range []struct {
		path string
		b    []byte
	}{
		{certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})},
		{keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb})},
		{caFile, ca.pem},
	} {
		if err := os.WriteFile(f.path, f.b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return certFile, keyFile, caFile
}

// routeTLSFor returns node name's RouteTLS configuration with a
// certificate of ca.
func routeTLSFor(t *testing.T, ca *testCA, name string) *tls.Config {
	t.Helper()
	c, err := RouteTLS(ca.files(t, t.TempDir(), name))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// errorLog keeps the errors a NATS server logs.
type errorLog struct {
	mu   sync.Mutex
	errs []string
}

func (l *errorLog) Noticef(string, ...any) {}
func (l *errorLog) Warnf(string, ...any)   {}
func (l *errorLog) Fatalf(string, ...any)  {}
func (l *errorLog) Debugf(string, ...any)  {}
func (l *errorLog) Tracef(string, ...any)  {}
func (l *errorLog) Errorf(format string, v ...any) {
	l.mu.Lock()
	l.errs = append(l.errs, fmt.Sprintf(format, v...))
	l.mu.Unlock()
}

func (l *errorLog) has(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.errs {
		if strings.Contains(e, s) {
			return true
		}
	}
	return false
}

// TestRouteTLS: two nodes whose embedded servers' routes use TLS with
// certificates of one CA (RouteTLS, from PEM files) form the cluster and
// route a chat message; their route listeners require TLS. A server
// with a certificate of another CA, and one without TLS, do not join:
// the TLS handshake fails (the errors their servers log) and no route
// comes up.
func TestRouteTLS(t *testing.T) {
	ca := newTestCA(t, "treff test cluster CA")
	c := startCluster(t, 2, &testCluster{routeTLS: func(i int) *tls.Config {
		return routeTLSFor(t, ca, fmt.Sprintf("n%d", i))
	}})
	c.addUser(t, "alice")
	c.addUser(t, "bob")
	alice := c.login(t, 0, "alice", "phone")
	bob := c.login(t, 1, "bob", "pc")
	c.waitSeen(t, "alice@localhost/phone", -200)
	bob.Send("<message to='alice@localhost/phone' type='chat'><body>over TLS routes</body></message>")
	alice.Expect(`over TLS routes`)

	// The route listener speaks TLS only, and only to a client with a
	// certificate of the CA: one without gets an alert, one with gets
	// the server's INFO (over TLS).
	probe := func(cfg *tls.Config) (string, error) {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", c.addrs[0], cfg)
		if err != nil {
			return "", err
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		return bufio.NewReader(conn).ReadString('\n')
	}
	if info, err := probe(&tls.Config{InsecureSkipVerify: true}); err == nil {
		t.Errorf("a route client without a certificate got %q", info)
	}
	good := routeTLSFor(t, ca, "probe")
	good.ServerName = "127.0.0.1"
	if info, err := probe(good); err != nil || !strings.Contains(info, `"tls_required":true`) {
		t.Errorf("a route client with a certificate of the CA got %q, %v; want the INFO with tls_required", info, err)
	}

	for _, bad := range []struct {
		name string
		tls  *tls.Config
	}{
		{"other-ca", routeTLSFor(t, newTestCA(t, "another CA"), "intruder")},
		{"plain", nil},
	} {
		// The nodes' servers log why they refuse it: a certificate of
		// another CA at once, a server without TLS when the handshake
		// times out (5 s).
		var logs []*errorLog
		for _, n := range c.nodes {
			l := &errorLog{}
			n.ns.SetLogger(l, false, false)
			logs = append(logs, l)
		}
		ns, nc, err := Embedded{Name: bad.name, Peers: c.addrs, TLS: bad.tls}.Start()
		if err != nil {
			t.Fatal(err)
		}
		refused := func() bool {
			for _, l := range logs {
				if l.has("TLS route handshake error") {
					return true
				}
			}
			return false
		}
		for try := 0; !refused(); try++ {
			if try == 1500 {
				t.Fatalf("%s: the nodes logged no TLS handshake error", bad.name)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if n := ns.NumRoutes(); n != 0 {
			t.Errorf("%s: %d routes", bad.name, n)
		}
		for _, good := range c.nodes {
			rz, err := good.ns.Routez(nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rz.Routes {
				if r.RemoteName == bad.name {
					t.Errorf("%s has a route from %s", good.node.Name, bad.name)
				}
			}
		}
		nc.Close()
		ns.Shutdown()
	}
	for _, n := range c.nodes {
		n.ns.SetLogger(nil, false, false)
	}
}

// TestConnectTLS: Connect with ConnectTLS reaches an external NATS
// server over tls:// whose certificate a private CA signs (the CA file
// given), presenting a client certificate the server requires; without
// the CA, or without the client certificate, it does not connect.
func TestConnectTLS(t *testing.T) {
	ca := newTestCA(t, "external NATS CA")
	dir := t.TempDir()
	serverCfg := routeTLSFor(t, ca, "nats") // a certificate for 127.0.0.1, client certificates required
	serverCfg, err := routeTLS(serverCfg)
	if err != nil {
		t.Fatal(err)
	}
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true,
		TLS: true, TLSVerify: true, TLSConfig: serverCfg, TLSTimeout: routeTLSTimeout})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	defer ns.Shutdown()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("the NATS server did not start")
	}
	url := "tls://" + ns.Addr().String()
	cert, key, caFile := ca.files(t, dir, "client")
	opts, err := ConnectTLS(cert, key, caFile)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := Connect(url, "n0", opts...)
	if err != nil {
		t.Fatalf("with the CA and a client certificate: %v", err)
	}
	if err := nc.Flush(); err != nil {
		t.Error(err)
	}
	nc.Close()
	for _, c := range []struct {
		what              string
		cert, key, caFile string
	}{
		{"without the CA", cert, key, ""},
		{"without a client certificate", "", "", caFile},
	} {
		opts, err := ConnectTLS(c.cert, c.key, c.caFile)
		if err != nil {
			t.Fatal(err)
		}
		if nc, err := Connect(url, "n0", opts...); err == nil {
			nc.Close()
			t.Errorf("%s: connected", c.what)
		}
	}
	if _, err := ConnectTLS("", "", filepath.Join(dir, "missing.pem")); err == nil {
		t.Error("a missing CA file was accepted")
	}
}
