package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"mellium.im/sasl"
	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff/storage/boltstore"
	"github.com/treff-im/treff/trefftest"
)

// raceEnabled is set by race_test.go when the tests run with -race; the
// binary under test is then built with -race too.
var raceEnabled bool

// buildBinary builds the community server into a temporary folder.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "community")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", append(args, ".")...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// childEnv is the environment of the binary under test: without the race
// detector's one-second sleep at exit.
func childEnv() []string {
	env := os.Environ()
	if raceEnabled && os.Getenv("GORACE") == "" {
		env = append(env, "GORACE=atexit_sleep_ms=0")
	}
	return env
}

type result struct {
	stdout, stderr string
	code           int
}

// runCmd runs the binary to completion (at most 30 seconds).
func runCmd(t *testing.T, bin, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = childEnv()
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%q did not finish within 30s", args)
	}
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%q: %v", args, err)
	}
	return result{stdout.String(), stderr.String(), code}
}

// mustRun runs the binary and fails the test unless it exits with code 0.
func mustRun(t *testing.T, bin, stdin string, args ...string) string {
	t.Helper()
	r := runCmd(t, bin, stdin, args...)
	if r.code != 0 {
		t.Fatalf("%q: exit %d\nstdout: %s\nstderr: %s", args, r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// expectFail runs the binary and checks its exit code and error message.
func expectFail(t *testing.T, bin string, code int, msg string, args ...string) {
	t.Helper()
	r := runCmd(t, bin, "", args...)
	if r.code != code || !strings.HasPrefix(r.stderr, "community: ") || !strings.Contains(r.stderr, msg) {
		t.Errorf("%q: exit %d, stderr %q; want exit %d and community: ...%s...", args, r.code, r.stderr, code, msg)
	}
}

// server is a running community server process.
type server struct {
	cmd      *exec.Cmd
	logs     *trefftest.LogBuffer
	done     chan struct{}
	err      error // of Wait, valid after done
	data     string
	addr     string
	tlsAddr  string
	roots    *x509.CertPool
	stopOnce sync.Once
}

// startServer starts the binary with a fresh pair of ports and waits until
// it accepts connections on both and on its admin socket. If a port was
// taken in the meantime, it tries again with others.
func startServer(t *testing.T, bin, data string, extra ...string) *server {
	t.Helper()
	for try := 1; ; try++ {
		s, err := tryStartServer(t, bin, data, extra...)
		if err == nil {
			return s
		}
		if try == 3 || !strings.Contains(s.logs.String(), "address already in use") {
			t.Fatalf("%v\n%s", err, s.logs)
		}
	}
}

func tryStartServer(t *testing.T, bin, data string, extra ...string) (*server, error) {
	t.Helper()
	s := &server{logs: new(trefftest.LogBuffer), done: make(chan struct{}), data: data,
		addr: trefftest.FreeAddr(t), tlsAddr: trefftest.FreeAddr(t)}
	args := append([]string{"-data", data, "-c2s", s.addr, "-c2s-tls", s.tlsAddr, "-s2s", "", "-http", "", "-https", "", "-log-level", "debug"}, extra...)
	s.cmd = exec.Command(bin, args...)
	s.cmd.Env = childEnv()
	s.cmd.Stdout, s.cmd.Stderr = s.logs, s.logs
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.err = s.cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		select {
		case <-s.done:
		default:
			s.cmd.Process.Kill()
			<-s.done
		}
	})
	// The binary says nothing a test could wait for when its listeners are
	// up, so poll them (and its exit), bounded.
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-s.done:
			return s, fmt.Errorf("server exited early: %v", s.err)
		default:
		}
		if ready(s.addr) && ready(s.tlsAddr) && ready("unix:"+filepath.Join(data, adminSocket)) {
			break
		}
		if time.Now().After(deadline) {
			return s, errors.New("server not ready within 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	pem, err := os.ReadFile(filepath.Join(data, "cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	s.roots = x509.NewCertPool()
	if !s.roots.AppendCertsFromPEM(pem) {
		t.Fatal("cert.pem holds no certificate")
	}
	return s, nil
}

func ready(addr string) bool {
	network := "tcp"
	if a, ok := strings.CutPrefix(addr, "unix:"); ok {
		network, addr = "unix", a
	}
	c, err := net.DialTimeout(network, addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// stop sends sig and checks that the server exits with status 0 within 15
// seconds.
func (s *server) stop(t *testing.T, sig os.Signal) {
	t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.done:
	case <-time.After(15 * time.Second):
		t.Fatalf("server did not exit within 15s of %v\n%s", sig, s.logs)
	}
	if s.err != nil {
		t.Fatalf("server exit: %v\n%s", s.err, s.logs)
	}
}

func (s *server) tlsConfig() *tls.Config {
	return &tls.Config{RootCAs: s.roots, ServerName: "localhost", MinVersion: tls.VersionTLS12}
}

// register creates an account with in-band registration (XEP-0077) over
// direct TLS, speaking the protocol by hand.
func (s *server) register(t *testing.T, user, password string) {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", s.tlsAddr, s.tlsConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>"+
		"<iq type='set' id='reg'><query xmlns='jabber:iq:register'><username>"+user+"</username><password>"+password+"</password></query></iq>")
	var got []byte
	buf := make([]byte, 4096)
	for !bytes.Contains(got, []byte("id='reg'")) {
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			t.Fatalf("registering %s: %v; got %s", user, err, got)
		}
	}
	if !bytes.Contains(got, []byte("<iq type='result' id='reg'")) {
		t.Fatalf("registering %s: %s", user, got)
	}
}

// login logs in with mellium's client, over STARTTLS or direct TLS.
func (s *server) login(user, pass string, directTLS bool) (*xmpp.Session, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	features := []xmpp.StreamFeature{xmpp.SASL("", pass, sasl.ScramSha256), xmpp.BindResource()}
	var conn net.Conn
	var err error
	d := &net.Dialer{Timeout: 5 * time.Second}
	if directTLS {
		conn, err = tls.DialWithDialer(d, "tcp", s.tlsAddr, s.tlsConfig())
	} else {
		conn, err = d.Dial("tcp", s.addr)
		features = append([]xmpp.StreamFeature{xmpp.StartTLS(s.tlsConfig())}, features...)
	}
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	sess, err := xmpp.NewClientSession(ctx, jid.MustParse(user), conn, features...)
	if err != nil {
		conn.Close()
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	return sess, nil
}

func (s *server) mustLogin(t *testing.T, user, pass string, directTLS bool) *xmpp.Session {
	t.Helper()
	sess, err := s.login(user, pass, directTLS)
	if err != nil {
		t.Fatalf("login %s (direct TLS: %v): %v\n%s", user, directTLS, err, s.logs)
	}
	t.Cleanup(func() { sess.Close(); sess.Conn().Close() })
	return sess
}

func (s *server) mustNotLogin(t *testing.T, user, pass string) {
	t.Helper()
	if sess, err := s.login(user, pass, false); err == nil {
		sess.Close()
		sess.Conn().Close()
		t.Errorf("login %s with password %q succeeded", user, pass)
	}
}

// serveMessages runs the session's read loop, sending the bodies of
// messages to the returned channel; the second channel is closed when the
// session ends.
func serveMessages(sess *xmpp.Session) (<-chan string, <-chan struct{}) {
	bodies := make(chan string, 10)
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		sess.Serve(xmpp.HandlerFunc(func(r xmlstream.TokenReadEncoder, start *xml.StartElement) error {
			if start.Name.Local != "message" {
				return nil
			}
			var m struct {
				Body string `xml:"body"`
			}
			if err := xml.NewTokenDecoder(xmlstream.MultiReader(xmlstream.Token(*start), r)).Decode(&m); err != nil {
				return err
			}
			select {
			case bodies <- m.Body:
			default:
			}
			return nil
		}))
	}()
	return bodies, ended
}

func checkMode(t *testing.T, path string, want fs.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Error(err)
		return
	}
	if fi.Mode().Perm() != want {
		t.Errorf("%s: mode %v, want %v", path, fi.Mode().Perm(), want)
	}
}

func lines(s string) []string { return strings.Fields(s) }

func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	data := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(data, 0o700); err != nil { // admin commands make no data folder
		t.Fatal(err)
	}

	// Admin commands with the server stopped open the database directly.
	mustRun(t, bin, "", "adduser", "-data", data, "-password", "alicepw", "alice@localhost")
	mustRun(t, bin, "bobpw\n", "adduser", "Bob@LocalHost", "-data", data) // password on stdin, flags after the JID
	checkMode(t, data, 0o700)
	expectFail(t, bin, 1, "exists already", "adduser", "-data", data, "-password", "x", "alice@localhost")
	expectFail(t, bin, 2, "not on a configured domain", "adduser", "-data", data, "-password", "x", "eve@example.org")

	const motd = "Welcome to Treff & friends"
	srv := startServer(t, bin, data, "-motd", motd)
	checkMode(t, filepath.Join(data, adminSocket), 0o600)
	checkMode(t, filepath.Join(data, "key.pem"), 0o600)

	// Login over STARTTLS and over direct TLS.
	srv.mustLogin(t, "alice@localhost", "alicepw", false)
	srv.mustLogin(t, "alice@localhost", "alicepw", true)
	bob := srv.mustLogin(t, "bob@localhost", "bobpw", false)
	bobMsgs, bobEnded := serveMessages(bob)
	select {
	case body := <-bobMsgs:
		if body != motd {
			t.Errorf("motd: got %q, want %q", body, motd)
		}
	case <-time.After(10 * time.Second):
		t.Error("bob got no message of the day")
	}
	// An announcement reaches everyone online.
	if out := mustRun(t, bin, "", "announce", "-data", data, "-subject", "News", "Tea", "at", "five"); out != "announce: sent to 3 sessions\n" { // alice twice, bob
		t.Errorf("announce: %q", out)
	}
	select {
	case body := <-bobMsgs:
		if body != "Tea at five" {
			t.Errorf("announcement: got %q", body)
		}
	case <-time.After(10 * time.Second):
		t.Error("bob got no announcement")
	}
	if out := mustRun(t, bin, "", "users", "-data", data, "-count"); out != "2\n" {
		t.Errorf("users -count: %q", out)
	}

	// Admin commands while the server runs go through its socket (the
	// database is locked by the server).
	mustRun(t, bin, "", "adduser", "-data", data, "-password", "carolpw", "carol@localhost")
	if got, want := lines(mustRun(t, bin, "", "users", "-data", data)), []string{"alice@localhost", "bob@localhost", "carol@localhost"}; !reflect.DeepEqual(got, want) {
		t.Errorf("users: got %q, want %q", got, want)
	}
	srv.mustLogin(t, "carol@localhost", "carolpw", true)
	expectFail(t, bin, 1, "exists already", "adduser", "-data", data, "-password", "x", "carol@localhost")
	expectFail(t, bin, 1, "no account", "deluser", "-data", data, "nobody@localhost")
	expectFail(t, bin, 1, "no account", "passwd", "-data", data, "-password", "x", "nobody@localhost")
	expectFail(t, bin, 2, "not on a configured domain", "deluser", "-data", data, "alice@example.org")
	expectFail(t, bin, 2, "bare JID", "deluser", "-data", data, "alice@localhost/phone")
	expectFail(t, bin, 2, "empty password", "passwd", "-data", data, "-password", "", "alice@localhost")

	// Batches: every line is checked first; a bad line changes nothing.
	if r := runCmd(t, bin, "dave@localhost davepw\nerin@localhost\n", "adduser", "-batch", "-data", data); r.code != 2 || !strings.Contains(r.stderr, "line 2: ") || !strings.Contains(r.stderr, "empty password") {
		t.Errorf("adduser -batch with a line without password: exit %d, %q", r.code, r.stderr)
	}
	if out := mustRun(t, bin, "# two users\ndave@localhost dave pw with spaces\n\nerin@localhost erinpw\n", "adduser", "-batch", "-data", data); !strings.Contains(out, "adduser: 2 done") {
		t.Errorf("adduser -batch: %q", out)
	}
	srv.mustLogin(t, "dave@localhost", "dave pw with spaces", false)
	srv.mustLogin(t, "erin@localhost", "erinpw", true)
	if r := runCmd(t, bin, "erin@localhost\nalice@localhost\n", "adduser", "-batch", "-data", data); r.code != 2 || !strings.Contains(r.stderr, "line 1: ") {
		t.Errorf("adduser -batch without passwords: exit %d, %q", r.code, r.stderr)
	}
	if r := runCmd(t, bin, "erin@localhost\nnobody@localhost\ndave@localhost\n", "deluser", "-batch", "-data", data); r.code != 1 || !strings.Contains(r.stderr, "line 2 (nobody@localhost)") || !strings.Contains(r.stderr, "1 of 3 done") {
		t.Errorf("deluser -batch stopping at a missing account: exit %d, %q", r.code, r.stderr)
	}
	mustRun(t, bin, "dave@localhost\n", "deluser", "-batch", "-data", data)
	srv.mustNotLogin(t, "dave@localhost", "dave pw with spaces")
	srv.mustNotLogin(t, "erin@localhost", "erinpw")
	expectFail(t, bin, 2, "standard input only", "deluser", "-batch", "-data", data, "dave@localhost")

	// The registration policy, switched while the server runs.
	if out := mustRun(t, bin, "", "registration", "-data", data); out != "registration: closed\n" {
		t.Errorf("registration: %q", out)
	}
	if out := mustRun(t, bin, "", "registration", "-data", data, "open"); out != "registration: open\n" {
		t.Errorf("registration open: %q", out)
	}
	expectFail(t, bin, 2, "not open, closed or invite", "registration", "-data", data, "sometimes")
	mustRun(t, bin, "", "registration", "-data", data, "closed")

	mustRun(t, bin, "newalicepw\n", "passwd", "-data", data, "alice@localhost")
	srv.mustLogin(t, "alice@localhost", "newalicepw", false)
	srv.mustNotLogin(t, "alice@localhost", "alicepw")

	mustRun(t, bin, "", "deluser", "-data", data, "bob@localhost")
	select {
	case <-bobEnded:
	case <-time.After(10 * time.Second):
		t.Error("bob's session did not end within 10s of deluser")
	}
	srv.mustNotLogin(t, "bob@localhost", "bobpw")
	if got, want := lines(mustRun(t, bin, "", "users", "-data", data)), []string{"alice@localhost", "carol@localhost"}; !reflect.DeepEqual(got, want) {
		t.Errorf("users after deluser: got %q, want %q", got, want)
	}

	// In-band registration over direct TLS: the rate limit sees the
	// client's address, which must not reach the logs or the database.
	mustRun(t, bin, "", "registration", "-data", data, "open")
	srv.register(t, "frida", "frida-secret")
	srv.mustLogin(t, "frida@localhost", "frida-secret", false)
	mustRun(t, bin, "", "deluser", "-data", data, "frida@localhost")

	srv.stop(t, syscall.SIGTERM)
	if _, err := os.Lstat(filepath.Join(data, adminSocket)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("admin socket after shutdown: %v", err)
	}
	logs := srv.logs.String()
	if !strings.Contains(logs, "account deleted") || !strings.Contains(logs, "stopped") {
		t.Errorf("unexpected logs:\n%s", logs)
	}
	// The privacy promise: no client's IP address and no password in the
	// logs or anywhere in the database file. The server's own listen
	// addresses are logged at start, once each (on loopback here, where
	// the clients come from too): those lines are left out of the search.
	var others []string
	for _, l := range strings.Split(logs, "\n") {
		if !strings.Contains(l, "msg=listening ") {
			others = append(others, l)
		}
	}
	logs = strings.Join(others, "\n")
	db, err := os.ReadFile(filepath.Join(data, dbFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"127.0.0.1", "alicepw", "bobpw", "carolpw", "newalicepw", "dave pw with spaces", "erinpw", "frida-secret", motd} {
		if strings.Contains(logs, secret) {
			t.Errorf("logs contain %q:\n%s", secret, logs)
		}
		if bytes.Contains(db, []byte(secret)) {
			t.Errorf("the database file contains %q", secret)
		}
	}

	// Stopped again: directly on the database.
	if got, want := lines(mustRun(t, bin, "", "users", "-data", data)), []string{"alice@localhost", "carol@localhost"}; !reflect.DeepEqual(got, want) {
		t.Errorf("users with the server stopped: got %q, want %q", got, want)
	}

	// Another process holds the database and there is no socket: a clear
	// error, no hang.
	store, err := boltstore.Open(filepath.Join(data, dbFile), nil)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	expectFail(t, bin, 1, "another process holds the database", "users", "-data", data)
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("locked database: took %v", d)
	}
	store.Close()

	// A stale socket from a crash stops neither the admin commands nor the
	// next start.
	ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(data, adminSocket), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ul.SetUnlinkOnClose(false)
	ul.Close()
	if _, err := os.Lstat(filepath.Join(data, adminSocket)); err != nil {
		t.Fatalf("stale socket: %v", err)
	}
	mustRun(t, bin, "", "passwd", "-data", data, "-password", "alicepw3", "alice@localhost")
	// This time with a config file (flags still override it).
	conf := filepath.Join(t.TempDir(), "treff.conf")
	if err := os.WriteFile(conf, []byte("# test\nmotd = \"from the config file\"\nlog_level = error\ndata = /nonexistent\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv = startServer(t, bin, data, "-config", conf)
	alice := srv.mustLogin(t, "alice@localhost", "alicepw3", true)
	aliceMsgs, _ := serveMessages(alice)
	select {
	case body := <-aliceMsgs:
		if body != "from the config file" {
			t.Errorf("motd: got %q", body)
		}
	case <-time.After(10 * time.Second):
		t.Error("alice got no message of the day")
	}
	srv.stop(t, os.Interrupt)
	// startServer's -data and -log-level debug win over the file's.
	if logs := srv.logs.String(); !strings.Contains(logs, "level=DEBUG") {
		t.Errorf("log_level = error in the config file, but -log-level debug should win; got\n%s", logs)
	}
	if _, err := os.Lstat(filepath.Join(data, adminSocket)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("admin socket after the second shutdown: %v", err)
	}
}

// expire lists the unused accounts, then deletes them with -delete, through
// the running server and without one.
func TestExpire(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	data := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(data, 0o700); err != nil { // admin commands make no data folder
		t.Fatal(err)
	}
	mustRun(t, bin, "", "adduser", "-data", data, "-password", "oldpw-1", "old@localhost")
	mustRun(t, bin, "", "adduser", "-data", data, "-password", "usedpw-1", "used@localhost")
	srv := startServer(t, bin, data)
	srv.mustLogin(t, "used@localhost", "usedpw-1", false)
	// The thing under test is time passing: "expire -expire-after 1s"
	// runs in another process with its own clock (time.Now, nothing to
	// inject) and lists accounts created or last used before now-1s. So
	// more than a second must pass; load only makes it longer.
	time.Sleep(1100 * time.Millisecond)

	if out := mustRun(t, bin, "", "expire", "-data", data); !strings.Contains(out, "expire: no account unused since") {
		t.Errorf("expire with the default 365d: %q", out)
	}
	// A login today counts from the start of the day: both are unused for
	// a second; old never logged in.
	out := mustRun(t, bin, "", "expire", "-data", data, "-expire-after", "1s")
	if !strings.Contains(out, "old@localhost (never logged in, created ") || !strings.Contains(out, "used@localhost (last login ") ||
		!strings.Contains(out, "2 accounts unused since") {
		t.Errorf("expire dry run: %q", out)
	}
	if got := lines(mustRun(t, bin, "", "users", "-data", data)); len(got) != 2 {
		t.Errorf("the dry run deleted accounts: %q", got)
	}
	if out := mustRun(t, bin, "", "expire", "-data", data, "-expire-after", "1s", "-delete"); !strings.Contains(out, "expire: 2 accounts deleted") {
		t.Errorf("expire -delete: %q", out)
	}
	srv.mustNotLogin(t, "used@localhost", "usedpw-1")
	srv.stop(t, syscall.SIGTERM)
	if got := mustRun(t, bin, "", "users", "-data", data); got != "" {
		t.Errorf("accounts left: %q", got)
	}
	// Without a server, directly on the database.
	mustRun(t, bin, "", "adduser", "-data", data, "-password", "newpw-12", "new@localhost")
	time.Sleep(1100 * time.Millisecond) // older than -expire-after, as above
	if out := mustRun(t, bin, "", "expire", "-data", data, "-expire-after", "1s", "-delete"); !strings.Contains(out, "new@localhost") {
		t.Errorf("expire -delete without a server: %q", out)
	}
	if got := mustRun(t, bin, "", "users", "-data", data); got != "" {
		t.Errorf("accounts left: %q", got)
	}
}

// invite makes links, with and without a running server, and lists them.
func TestInviteCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	data := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(data, 0o700); err != nil { // admin commands make no data folder
		t.Fatal(err)
	}
	link := strings.TrimSpace(mustRun(t, bin, "", "invite", "-data", data, "-valid", "2d"))
	if !regexp.MustCompile(`^xmpp:localhost\?register;preauth=[A-Z2-7]{24}$`).MatchString(link) {
		t.Errorf("invite link %q", link)
	}
	srv := startServer(t, bin, data, "-registration", "invite")
	link2 := strings.TrimSpace(mustRun(t, bin, "", "invite", "-data", data))
	list := mustRun(t, bin, "", "invite", "-data", data, "-list")
	for _, l := range []string{link, link2} {
		if !strings.Contains(list, l+" (expires ") {
			t.Errorf("invite -list lacks %s:\n%s", l, list)
		}
	}
	expectFail(t, bin, 2, "not a configured domain", "invite", "-data", data, "-for", "example.org")
	if out := mustRun(t, bin, "", "registration", "-data", data); out != "registration: invite\n" {
		t.Errorf("registration: %q", out)
	}
	srv.stop(t, syscall.SIGTERM)
}
