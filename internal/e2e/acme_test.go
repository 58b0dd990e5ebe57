package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/treff-im/treff/trefftest"
)

// The tests in this file (issue 20, "Running it for real") drive the
// example server's certificates with slixmpp 1.8.3 (clients/certs.py),
// which checks the certificate against a CA and the domain's name:
//
//   - TestACMEPebble: the server obtains its certificate from Pebble
//     (Debian's pebble 2.4, the ACME test CA of Let's Encrypt) on
//     loopback, which really validates each name (acme.test and its
//     conference., pubsub. and upload. services, resolved by the test's
//     DNS server to 127.0.0.1): tls-alpn-01 on the https listener, and
//     in a second server with only the http listener, http-01. A client
//     logged in before a renewal keeps its session (its ping is
//     answered) while a new connection gets the renewed certificate.
//   - TestCertificateSIGHUP: the certificate files given with -cert and
//     -key are re-read on SIGHUP; the same.

// pebbleBin is Debian's Pebble.
const pebbleBin = "/usr/bin/pebble"

// needPebble skips the test without Pebble, or fails it when CI=true (CI
// installs it).
func needPebble(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(pebbleBin); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%v (CI=true: install it with apt-get install pebble)", err)
		}
		t.Skipf("%v (apt-get install pebble)", err)
	}
}

// certEvent is certs.py's report of the certificate a client got.
type certEvent struct {
	Client string   `json:"client"`
	Serial string   `json:"serial"`
	Issuer string   `json:"issuer"`
	SANs   []string `json:"subject_alt_names"`
}

// checkPong checks that client's ping was answered on its first
// connection.
func checkPong(t *testing.T, es events, client string) {
	t.Helper()
	var p struct {
		Connects int `json:"connects"`
	}
	es.one(t, "pong", client).decode(t, &p)
	if p.Connects != 1 {
		t.Errorf("%s connected %d times, want once (its stream must survive)", client, p.Connects)
	}
}

func certOf(t *testing.T, es events, client string) certEvent {
	t.Helper()
	var c certEvent
	es.one(t, "cert", client).decode(t, &c)
	return c
}

// runCerts runs clients/certs.py with args; at each "pause" event act is
// called, then the script is told to go on.
func runCerts(t *testing.T, act func(name string), args ...string) events {
	t.Helper()
	needSlixmpp(t)
	script, err := filepath.Abs(filepath.Join("clients", "certs.py"))
	if err != nil {
		t.Fatal(err)
	}
	argv := append([]string{script, "--timeout", fmt.Sprint(scriptTimeout.Seconds())}, args...)
	ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, argv...)
	cmd.Env = pythonEnv()
	cmd.WaitDelay = 2 * time.Second
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stdout bytes.Buffer
	stderr := new(trefftest.LogBuffer)
	cmd.Stderr = stderr
	report := func() string {
		return fmt.Sprintf("args: %q\nstdout:\n%s\nstderr:\n%s", argv[1:], &stdout, stderr)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var es events
	sc := bufio.NewScanner(io.TeeReader(out, &stdout))
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("certs.py printed a line that is not JSON: %q: %v\n%s", sc.Bytes(), err, report())
		}
		e.raw = slices.Clone(sc.Bytes())
		es = append(es, e)
		if e.Event == "pause" {
			var p struct {
				Name string `json:"name"`
			}
			e.decode(t, &p)
			act(p.Name)
			if _, err := io.WriteString(stdin, "go\n"); err != nil {
				t.Fatalf("telling certs.py to go on: %v\n%s", err, report())
			}
		}
	}
	if err := cmd.Wait(); err != nil || len(es) == 0 || es[len(es)-1].Event != "done" {
		t.Fatalf("certs.py: %v (want a done event last)\n%s", err, report())
	}
	t.Logf("certs.py:\n%s", report())
	return es
}

// pebble is a running Pebble.
type pebble struct {
	dir       string // its URL
	roots     string // file: the CA certificates its certificates chain to
	directory string
}

// startPebble starts Pebble on fresh loopback ports, validating http-01
// on port httpPort and tls-alpn-01 on tlsPort of the addresses dns gives,
// and writes its root to a file. caFile is the CA of Pebble's own HTTPS
// certificate (for "localhost"). Pebble is stopped (by its PID) when the
// test ends.
func startPebble(t *testing.T, dir, caFile string, dns netip.AddrPort, httpPort, tlsPort string) *pebble {
	t.Helper()
	needPebble(t)
	listen, mgmt := trefftest.FreeAddr(t), trefftest.FreeAddr(t)
	hp, _ := netip.ParseAddrPort("127.0.0.1:" + httpPort)
	tp, _ := netip.ParseAddrPort("127.0.0.1:" + tlsPort)
	conf := map[string]any{"pebble": map[string]any{
		"listenAddress":                  listen,
		"managementListenAddress":        mgmt,
		"certificate":                    filepath.Join(dir, "localhost", "cert.pem"),
		"privateKey":                     filepath.Join(dir, "localhost", "key.pem"),
		"httpPort":                       hp.Port(),
		"tlsPort":                        tp.Port(),
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
	}}
	b, err := json.Marshal(conf)
	if err != nil {
		t.Fatal(err)
	}
	confFile := filepath.Join(dir, "pebble.json")
	if err := os.WriteFile(confFile, b, 0o644); err != nil {
		t.Fatal(err)
	}
	logs := new(trefftest.LogBuffer)
	cmd := exec.Command(pebbleBin, "-config", confFile, "-dnsserver", dns.String())
	// No random sleeps before validations, no rejected nonces: the test
	// is about this server, not about retries.
	cmd.Env = append(os.Environ(), "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0")
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("pebble output:\n%s", logs)
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for !accepts(listen) || !accepts(mgmt) {
		select {
		case <-done:
			t.Fatalf("pebble exited early:\n%s", logs)
		case <-time.After(20 * time.Millisecond): // polling ports: no event to wait on
		}
		if time.Now().After(deadline) {
			t.Fatalf("pebble not ready within 20s:\n%s", logs)
		}
	}
	// Its root, made at start (the management interface serves it).
	pool := x509.NewCertPool()
	ca, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool.AppendCertsFromPEM(ca)
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	_, port, _ := net.SplitHostPort(mgmt)
	resp, err := hc.Get("https://localhost:" + port + "/roots/0")
	if err != nil {
		t.Fatal(err)
	}
	root, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("pebble's root: %v %s", err, resp.Status)
	}
	if p, _ := pem.Decode(root); p == nil || p.Type != "CERTIFICATE" {
		t.Fatalf("pebble's root is not a PEM certificate: %q", root)
	}
	roots := filepath.Join(dir, "pebble-roots.pem")
	if err := os.WriteFile(roots, root, 0o644); err != nil {
		t.Fatal(err)
	}
	_, port, _ = net.SplitHostPort(listen)
	return &pebble{dir: dir, roots: roots, directory: "https://localhost:" + port + "/dir"}
}

// loggedSerial returns the serial number of the n-th (from 1) server log
// line with msg.
func loggedSerial(t *testing.T, p *communityProc, msg string, n int) string {
	t.Helper()
	p.waitLog(t, n, "msg=\""+msg+"\"")
	re := regexp.MustCompile(`msg="` + msg + `".* serial=([0-9a-f]+)`)
	var got []string
	for _, line := range strings.Split(p.logs.String(), "\n") {
		if m := re.FindStringSubmatch(line); m != nil {
			got = append(got, m[1])
		}
	}
	if len(got) < n {
		t.Fatalf("no serial in the server's %q lines:\n%s", msg, p.logs)
	}
	return got[n-1]
}

// startCertServer starts the example server for domain with args added,
// env set for it, and waits until its client listeners accept
// connections.
func startCertServer(t *testing.T, bin, data string, env []string, args ...string) *communityProc {
	t.Helper()
	p := &communityProc{logs: new(trefftest.LogBuffer), done: make(chan struct{}),
		addr: trefftest.FreeAddr(t), tls: trefftest.FreeAddr(t)}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v) // communityEnv passes the environment on
	}
	p.start(t, bin, append([]string{"-data", data, "-c2s", p.addr, "-c2s-tls", p.tls, "-s2s", "", "-log-level", "debug"}, args...)...)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server output:\n%s", p.logs)
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for !accepts(p.addr) || !accepts(p.tls) {
		select {
		case <-p.done:
			t.Fatalf("server exited early: %v\n%s", p.err, p.logs)
		case <-time.After(20 * time.Millisecond): // polling ports: no event to wait on
		}
		if time.Now().After(deadline) {
			t.Fatalf("server not ready within 20s\n%s", p.logs)
		}
	}
	return p
}

func checkMode(t *testing.T, file string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != want {
		t.Errorf("%s: mode %v, want %v", file, fi.Mode().Perm(), want)
	}
}

func TestACMEPebble(t *testing.T) {
	needPebble(t)
	needSlixmpp(t)
	const (
		domain = "acme.test"
		pw     = "acme-pass-1"
	)
	bin := buildCommunity(t)
	dir := t.TempDir()
	caFile := filepath.Join(dir, "pebble-https-ca.pem")
	makeCerts(t, caFile, "pebble https CA", dir, "localhost")
	zone := map[string]dnsRecord{}
	lo := netip.MustParseAddr("127.0.0.1")
	for _, n := range []string{domain, "conference." + domain, "pubsub." + domain, "upload." + domain} {
		zone[n] = dnsRecord{a: lo}
	}
	dns := startTestDNS(t, zone)
	// The https listener of the first server (tls-alpn-01) and the http
	// listener of the second (http-01): Pebble checks these ports.
	httpsAddr, httpAddr := trefftest.FreeAddr(t), trefftest.FreeAddr(t)
	_, httpsPort, _ := net.SplitHostPort(httpsAddr)
	_, httpPort, _ := net.SplitHostPort(httpAddr)
	peb := startPebble(t, dir, caFile, dns, httpPort, httpsPort)
	// The server checks Pebble's HTTPS certificate against caFile only.
	env := []string{"SSL_CERT_FILE=" + caFile, "TREFF_ACME_RENEW_ON_HUP=1"}

	t.Run("tls-alpn-01", func(t *testing.T) {
		data := t.TempDir()
		runCommunity(t, bin, "adduser", "-data", data, "-domain", domain, "-password", pw, "alice@"+domain)
		p := startCertServer(t, bin, data, env, "-domain", domain, "-http", "", "-https", httpsAddr,
			"-acme", "yes", "-acme-directory", peb.directory, "-acme-email", "admin@"+domain)
		first := loggedSerial(t, p, "certificate obtained", 1)
		if !strings.Contains(p.logs.String(), `type=tls-alpn-01`) {
			t.Errorf("the server did not answer tls-alpn-01 challenges:\n%s", p.logs)
		}
		var renewed string
		es := runCerts(t, func(name string) {
			if name != "change" {
				t.Fatalf("unexpected pause %q", name)
			}
			if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
			renewed = loggedSerial(t, p, "certificate renewed", 1)
		}, "change", "--addr", p.tls, "--jid", "alice@"+domain, "--password", pw, "--ca", peb.roots)
		before, after := certOf(t, es, "before"), certOf(t, es, "after")
		if before.Serial != first {
			t.Errorf("before the renewal the client got serial %s, want the first certificate's %s", before.Serial, first)
		}
		if renewed == first || after.Serial != renewed {
			t.Errorf("after the renewal a new connection got serial %s, want the renewed certificate's %s (first: %s)", after.Serial, renewed, first)
		}
		checkPong(t, es, "before") // the old session lives on
		checkPong(t, es, "after")
		want := []string{domain, "conference." + domain, "pubsub." + domain, "upload." + domain}
		for _, c := range []certEvent{before, after} {
			if !strings.HasPrefix(c.Issuer, "Pebble Intermediate CA") || !sameSet(c.SANs, want) {
				t.Errorf("%s got a certificate from %q for %q, want one from Pebble for %q", c.Client, c.Issuer, c.SANs, want)
			}
		}
		for _, f := range []string{"account-key.pem", "cert.pem", "key.pem"} {
			checkMode(t, filepath.Join(data, "acme", f), 0o600)
		}
		p.stop(t)

		// A restart uses the certificate kept in the data folder.
		p = startCertServer(t, bin, data, env, "-domain", domain, "-http", "", "-https", httpsAddr,
			"-acme", "yes", "-acme-directory", peb.directory)
		p.waitLog(t, 1, "renewal planned")
		es = runCerts(t, noPause(t), "login", "--addr", p.tls, "--jid", "alice@"+domain, "--password", pw, "--ca", peb.roots)
		if c := certOf(t, es, "only"); c.Serial != renewed {
			t.Errorf("after a restart the client got serial %s, want the kept certificate's %s", c.Serial, renewed)
		}
		if strings.Contains(p.logs.String(), "certificate obtained") {
			t.Errorf("the server asked for a new certificate although it had one:\n%s", p.logs)
		}
		p.stop(t)
	})

	t.Run("http-01", func(t *testing.T) {
		data := t.TempDir()
		runCommunity(t, bin, "adduser", "-data", data, "-domain", domain, "-password", pw, "alice@"+domain)
		p := startCertServer(t, bin, data, env, "-domain", domain, "-http", httpAddr, "-https", "",
			"-acme", "yes", "-acme-directory", peb.directory)
		serial := loggedSerial(t, p, "certificate obtained", 1)
		if !strings.Contains(p.logs.String(), `type=http-01`) {
			t.Errorf("the server did not answer http-01 challenges:\n%s", p.logs)
		}
		es := runCerts(t, noPause(t), "login", "--addr", p.tls, "--jid", "alice@"+domain, "--password", pw, "--ca", peb.roots)
		c := certOf(t, es, "only")
		want := []string{domain, "conference." + domain, "pubsub." + domain} // no upload without https
		if c.Serial != serial || !sameSet(c.SANs, want) {
			t.Errorf("the client got serial %s for %q, want %s for %q", c.Serial, c.SANs, serial, want)
		}
		checkPong(t, es, "only")
		p.stop(t)
	})
}

// TestCertificateSIGHUP: the server re-reads -cert and -key on SIGHUP; a
// client connected before keeps its session, a new one gets the new
// certificate; a broken file keeps the current certificate.
func TestCertificateSIGHUP(t *testing.T) {
	needSlixmpp(t)
	const (
		domain = "reload.test"
		pw     = "reload-pass-1"
	)
	bin := buildCommunity(t)
	dir := t.TempDir()
	oldCA, newCA := filepath.Join(dir, "old-ca.pem"), filepath.Join(dir, "new-ca.pem")
	makeCerts(t, oldCA, "old CA", filepath.Join(dir, "old"), domain)
	makeCerts(t, newCA, "new CA", filepath.Join(dir, "new"), domain)
	// The server's files, first the old CA's.
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	copyFile := func(from, to string) {
		t.Helper()
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	copyFile(filepath.Join(dir, "old", domain, "cert.pem"), certFile)
	copyFile(filepath.Join(dir, "old", domain, "key.pem"), keyFile)
	// The clients trust both CAs.
	both := filepath.Join(dir, "both.pem")
	a, _ := os.ReadFile(oldCA)
	b, _ := os.ReadFile(newCA)
	if err := os.WriteFile(both, append(a, b...), 0o644); err != nil {
		t.Fatal(err)
	}

	data := t.TempDir()
	runCommunity(t, bin, "adduser", "-data", data, "-domain", domain, "-password", pw, "alice@"+domain)
	p := startCertServer(t, bin, data, nil, "-domain", domain, "-http", "", "-https", "", "-cert", certFile, "-key", keyFile)
	es := runCerts(t, func(name string) {
		// A broken key first: the server keeps its certificate.
		if err := os.WriteFile(keyFile, []byte("not a key"), 0o600); err != nil {
			t.Fatal(err)
		}
		p.cmd.Process.Signal(syscall.SIGHUP)
		p.waitLog(t, 1, "could not be reloaded")
		copyFile(filepath.Join(dir, "new", domain, "cert.pem"), certFile)
		copyFile(filepath.Join(dir, "new", domain, "key.pem"), keyFile)
		p.cmd.Process.Signal(syscall.SIGHUP)
		p.waitLog(t, 1, "certificate reloaded")
	}, "change", "--addr", p.tls, "--jid", "alice@"+domain, "--password", pw, "--ca", both)
	if c := certOf(t, es, "before"); c.Issuer != "old CA" {
		t.Errorf("before the reload the client got a certificate from %q, want the old CA's", c.Issuer)
	}
	if c := certOf(t, es, "after"); c.Issuer != "new CA" {
		t.Errorf("after the reload a new connection got a certificate from %q, want the new CA's", c.Issuer)
	}
	checkPong(t, es, "before")
	checkPong(t, es, "after")
	p.stop(t)
}

// sameSet reports whether a and b hold the same strings.
func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
