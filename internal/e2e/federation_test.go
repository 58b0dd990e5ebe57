package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"maps"
	"math/big"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/treff-im/treff/trefftest"
)

// The federation test (issue 8): Treff's example server federates with
// Prosody 0.12 and ejabberd 23.01 from Debian, in both directions.
//
// Three domains on three loopback addresses, each server listening on its
// own address's standard ports (c2s 5222, s2s 5269), so that Prosody finds
// the others through the standard fallback (no SRV record: the domain's
// address, port 5269):
//
//	treff.test     127.0.0.2  Treff (examples/community), static routes on its command line
//	  conference.treff.test   its group chat service, same address and listeners
//	prosody.test   127.0.0.3  Prosody: libunbound with the test's hosts file
//	ejabberd.test  127.0.0.4  ejabberd: Erlang's resolver asking the test's DNS server
//
// A certificate authority made here signs one certificate per domain
// (Treff's names its group chat service too).
// Treff and Prosody trust it, so streams between them are authenticated
// with SASL EXTERNAL (XEP-0178); ejabberd does not, so streams to it fall
// back to Server Dialback (XEP-0220). Name resolution is the test's own:
// libunbound answers names under .test (RFC 6761) itself, from the hosts
// file it is given, and NXDOMAIN for all others (SRV records included);
// ejabberd finds SRV records through Erlang's resolver, pointed (inetrc)
// at a DNS server on 127.0.0.1 that this test runs, but addresses through
// the system's getaddrinfo, so that server's SRV records name the
// addresses themselves. Nothing the reference servers look up leaves the
// machine, and nothing of the system (/etc/hosts, /etc/prosody,
// /etc/ejabberd) is changed or read. Prosody and ejabberd run as their
// own users from configuration folders made here
// (internal/e2e/federation/*.in).
//
// The test needs root (runuser), prosody, lua-unbound and ejabberd, and
// the six addresses free; it skips without them, or fails with CI=true.

const (
	fedTreff    = "treff.test"
	fedProsody  = "prosody.test"
	fedEjabberd = "ejabberd.test"
	// fedTreffMUC is the group chat service of the example server (muc
	// is on by default), reached at Treff's s2s listener too.
	fedTreffMUC = "conference." + fedTreff
	// fedTreffPubsub is the publish-subscribe service of the example
	// server (on by default), reached at Treff's s2s listener too.
	fedTreffPubsub = "pubsub." + fedTreff
	// fedProsodyPubsub is Prosody's pubsub component, configured only
	// by tests that set federation.prosodyExtra (push_test.go).
	fedProsodyPubsub = "pubsub." + fedProsody
	// fedNowhere is a domain nobody resolves.
	fedNowhere = "nowhere.test"
	// fedUnreachable is routed (-s2s-resolve) to fedUnreachableAddr,
	// where nothing listens.
	fedUnreachable     = "unreachable.test"
	fedUnreachableAddr = "127.0.0.5:5269"

	fedPassword = "fed pässwörd 1"
	// fedWait bounds each wait of the client script for a server; the
	// script itself gives up after fedScriptTimeout (runClient kills it
	// after clientTimeout).
	fedWait          = 15 * time.Second
	fedScriptTimeout = 27 * time.Second
	// fedStartTimeout bounds the start of each server.
	fedStartTimeout = 20 * time.Second
)

// fedAddr is the loopback address of each domain's server.
var fedAddr = map[string]string{
	fedTreff:       "127.0.0.2",
	fedTreffMUC:    "127.0.0.2",
	fedTreffPubsub: "127.0.0.2",
	fedProsody:     "127.0.0.3",
	fedEjabberd:    "127.0.0.4",
}

// fedSkip skips the test, or fails it when CI=true (CI installs
// everything the test needs, so a missing piece is a broken setup).
func fedSkip(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (CI=true: .ci/run installs prosody lua-unbound lua-event ejabberd and stops their system instances)", msg)
	}
	t.Skipf("%s (apt-get install prosody lua-unbound lua-event ejabberd; run as root)", msg)
}

// needFederation checks what the test needs: slixmpp, the reference
// servers, root (to run them as their own users) and free addresses.
func needFederation(t *testing.T) {
	t.Helper()
	needSlixmpp(t)
	for _, prog := range []string{"prosody", "prosodyctl", "ejabberdctl", "runuser"} {
		if _, err := exec.LookPath(prog); err != nil {
			fedSkip(t, "federation test: %s not found", prog)
		}
	}
	if m, _ := filepath.Glob("/usr/lib/*/lua/*/lunbound.so"); len(m) == 0 {
		fedSkip(t, "federation test: lua-unbound not installed (Prosody's resolver)")
	}
	if os.Geteuid() != 0 {
		fedSkip(t, "federation test: needs root to run Prosody and ejabberd as their own users")
	}
	for _, u := range []string{"prosody", "ejabberd"} {
		if _, err := user.Lookup(u); err != nil {
			fedSkip(t, "federation test: no user %s: %v", u, err)
		}
	}
	for _, ip := range fedAddr {
		for _, port := range []string{"5222", "5269"} {
			l, err := net.Listen("tcp", net.JoinHostPort(ip, port))
			if err != nil {
				fedSkip(t, "federation test: cannot listen on %s:%s (a system Prosody or ejabberd on all interfaces?): %v", ip, port, err)
			}
			l.Close()
		}
	}
}

// needProsody checks what a test with a Prosody peer (and no ejabberd)
// needs: slixmpp, Prosody with libunbound, root and the user prosody (to
// run it as its own user), and ports 5222 and 5269 free on each of the
// test's addresses. test names the test in the skip message.
func needProsody(t *testing.T, test string, ips ...string) {
	t.Helper()
	needSlixmpp(t)
	for _, prog := range []string{"prosody", "prosodyctl", "runuser"} {
		if _, err := exec.LookPath(prog); err != nil {
			fedSkip(t, "%s: %s not found", test, prog)
		}
	}
	if m, _ := filepath.Glob("/usr/lib/*/lua/*/lunbound.so"); len(m) == 0 {
		fedSkip(t, "%s: lua-unbound not installed (Prosody's resolver)", test)
	}
	if os.Geteuid() != 0 {
		fedSkip(t, "%s: needs root to run Prosody as its own user", test)
	}
	if _, err := user.Lookup("prosody"); err != nil {
		fedSkip(t, "%s: no user prosody: %v", test, err)
	}
	for _, ip := range ips {
		for _, port := range []string{"5222", "5269"} {
			if a := ip + ":" + port; accepts(a) {
				fedSkip(t, "%s: %s is taken", test, a)
			}
		}
	}
}

// federation is the test's shared setup: a folder every server's user can
// read, the CA, a certificate per domain, and the DNS server.
type federation struct {
	dir    string // world-readable (0755): the servers run as other users
	caFile string // the CA of Treff's and Prosody's certificates, which both trust
	// ca2File is the CA of ejabberd's certificate, which no server trusts:
	// streams between ejabberd and the others use Server Dialback both
	// ways. clientCAs holds both, for the clients.
	ca2File, clientCAs string
	dns                netip.AddrPort

	prosodyLog string // Prosody's log file (debug level)
	// prosodyExtra is appended to Prosody's configuration (components).
	prosodyExtra string
	// prosodyAddrs, when set, replaces fedAddr for Prosody: its own
	// address (fedProsody's) and its hosts file; prosodyInsecure, when
	// set, replaces fedEjabberd as the domain Prosody accepts dialback
	// from (pgfederation_test.go).
	prosodyAddrs    map[string]string
	prosodyInsecure string
	ejabberdLog     string // ejabberd's log file (info level)
}

// newFederation makes the folder, the CA with one certificate per domain
// (DIR/DOMAIN/cert.pem and key.pem) and starts the DNS server.
func newFederation(t *testing.T) *federation {
	t.Helper()
	dir, err := os.MkdirTemp("", "treff-federation-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	f := &federation{dir: dir, caFile: filepath.Join(dir, "ca.pem"), ca2File: filepath.Join(dir, "ca2.pem"), clientCAs: filepath.Join(dir, "client-cas.pem")}
	makeCerts(t, f.caFile, "Treff federation test CA", dir, fedTreff, fedProsody)
	makeCerts(t, f.ca2File, "Treff federation test CA 2 (trusted by no server)", dir, fedEjabberd)
	var bundle []byte
	for _, ca := range []string{f.caFile, f.ca2File} {
		b, err := os.ReadFile(ca)
		if err != nil {
			t.Fatal(err)
		}
		bundle = append(bundle, b...)
	}
	if err := os.WriteFile(f.clientCAs, bundle, 0o644); err != nil {
		t.Fatal(err)
	}
	// ejabberd looks up SRV records through Erlang's resolver (inetrc:
	// this server) but addresses through the system's getaddrinfo, which
	// the test cannot point elsewhere without touching /etc/hosts; so its
	// SRV records name the address itself, which getaddrinfo takes as is.
	zone := map[string]dnsRecord{}
	for d, ip := range fedAddr {
		zone[d] = dnsRecord{a: netip.MustParseAddr(ip)}
		zone["_xmpp-server._tcp."+d] = dnsRecord{srvTarget: ip, srvPort: 5269}
	}
	f.dns = startTestDNS(t, zone)
	return f
}

// fedCertNames are the names of a domain's certificate besides the
// domain itself: Treff presents treff.test's certificate on the streams
// of its group chat and pubsub services too, which Prosody checks
// (s2s_secure_auth).
// Prosody's pubsub component (fedProsodyPubsub, the app server of the
// push test) presents prosody.test's.
var fedCertNames = map[string][]string{fedTreff: {fedTreffMUC, fedTreffPubsub}, fedProsody: {fedProsodyPubsub}}

// makeCerts writes a new ECDSA CA to caFile and, for each domain, a
// certificate it signed for that domain and its fedCertNames (DNS-IDs,
// for server and client use: servers present it on the streams they open
// too) with its key, to dir/DOMAIN/cert.pem and key.pem.
func makeCerts(t *testing.T, caFile, caName, dir string, domains ...string) {
	t.Helper()
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: caName},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, caFile, 0o644, "CERTIFICATE", caDER)
	for i, d := range domains {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(int64(i + 2)),
			Subject:      pkix.Name{CommonName: d},
			DNSNames:     append([]string{d}, fedCertNames[d]...),
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
		writePEM(t, filepath.Join(dir, d, "cert.pem"), 0o644, "CERTIFICATE", der)
		writePEM(t, filepath.Join(dir, d, "key.pem"), 0o600, "EC PRIVATE KEY", keyDER)
	}
}

func writePEM(t *testing.T, file string, mode os.FileMode, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode); err != nil {
		t.Fatal(err)
	}
}

// dnsRecord is what the test's DNS server knows of one name: an address
// (A record) or a XEP-0368/RFC 6120 SRV record.
type dnsRecord struct {
	a         netip.Addr
	srvTarget string // a name, or an IP address written as a name
	srvPort   uint16
}

// startTestDNS serves DNS over UDP on a free port of 127.0.0.1 until the
// test ends: the records of zone, no records of other types for those
// names and the names above them, and NXDOMAIN for every other name.
func startTestDNS(t *testing.T, zone map[string]dnsRecord) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 4096)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return // closed at the end of the test
			}
			if resp, ok := dnsAnswer(buf[:n], zone); ok {
				pc.WriteTo(resp, from)
			}
		}
	}()
	t.Cleanup(func() { pc.Close(); wg.Wait() })
	return netip.MustParseAddrPort(pc.LocalAddr().String())
}

// dnsAnswer builds the response to one query; ok is false for something
// that is not a query with one question.
func dnsAnswer(query []byte, zone map[string]dnsRecord) (_ []byte, ok bool) {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil || h.Response {
		return nil, false
	}
	q, err := p.Question()
	if err != nil {
		return nil, false
	}
	name := strings.ToLower(strings.TrimSuffix(q.Name.String(), "."))
	rec, known := zone[name]
	// A name above a known one ("test", the root) exists without records:
	// resolvers that minimise their queries ask for it first.
	exists := known || name == ""
	for n := range zone {
		exists = exists || strings.HasSuffix(n, "."+name)
	}
	rh := dnsmessage.Header{ID: h.ID, Response: true, OpCode: h.OpCode, Authoritative: true,
		RecursionDesired: h.RecursionDesired, RecursionAvailable: true}
	if !exists {
		rh.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, rh)
	if b.StartQuestions() != nil || b.Question(q) != nil || b.StartAnswers() != nil {
		return nil, false
	}
	rr := dnsmessage.ResourceHeader{Name: q.Name, Type: q.Type, Class: dnsmessage.ClassINET, TTL: 60}
	switch {
	case q.Class != dnsmessage.ClassINET:
	case q.Type == dnsmessage.TypeA && rec.a.Is4():
		err = b.AResource(rr, dnsmessage.AResource{A: rec.a.As4()})
	case q.Type == dnsmessage.TypeSRV && rec.srvTarget != "":
		target, nerr := dnsmessage.NewName(rec.srvTarget + ".")
		if nerr != nil {
			return nil, false
		}
		err = b.SRVResource(rr, dnsmessage.SRVResource{Target: target, Port: rec.srvPort})
	}
	if err != nil {
		return nil, false
	}
	resp, err := b.Finish()
	return resp, err == nil
}

// refServer is a running reference server (Prosody or ejabberd), started
// through runuser in a process group of its own.
type refServer struct {
	name string
	cmd  *exec.Cmd
	out  *trefftest.LogBuffer // its standard output and error
	done chan struct{}
	err  error // of Wait, valid after done
	logs []string
}

// startRef starts argv (as given to runuser) with dir as its folder and
// waits until it accepts connections on the addresses. It is stopped
// (SIGTERM to its process group, SIGKILL after 10s) when the test ends,
// and its logs are shown if the test failed.
func startRef(t *testing.T, name, dir string, logs []string, addrs []string, argv ...string) *refServer {
	t.Helper()
	s := &refServer{name: name, out: new(trefftest.LogBuffer), done: make(chan struct{}), logs: logs}
	s.cmd = exec.Command("runuser", argv...)
	s.cmd.Dir = dir
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.err = s.cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			t.Logf("%s output:\n%s", name, s.out)
			for _, f := range s.logs {
				t.Logf("%s log %s:\n%s", name, f, tail(f, 150))
			}
		}
	})
	deadline := time.Now().Add(fedStartTimeout)
	for _, a := range addrs {
		for !accepts(a) {
			select {
			case <-s.done:
				t.Fatalf("%s exited before it accepted connections on %s: %v\noutput:\n%s", name, a, s.err, s.out)
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s did not accept connections on %s within %v\noutput:\n%s", name, a, fedStartTimeout, s.out)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return s
}

// stop ends the server's whole process group: runuser, the shell, the
// server (and, for ejabberd, the Erlang VM's helpers).
func (s *refServer) stop() {
	pgid := s.cmd.Process.Pid
	select {
	case <-s.done:
	default:
		syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			syscall.Kill(-pgid, syscall.SIGKILL)
			<-s.done
		}
	}
	// The server itself may end a moment after runuser: give the group 5s
	// to empty, then kill what is left of it.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		if !groupRuns(pgid) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	syscall.Kill(-pgid, syscall.SIGKILL)
}

// groupRuns reports whether a process of the process group still runs
// (zombies, already ended, do not count), as /proc shows it.
func groupRuns(pgid int) bool {
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		if _, err := strconv.Atoi(d.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", d.Name(), "stat"))
		if err != nil {
			continue
		}
		// "pid (comm) state ppid pgrp ...", where comm may hold spaces.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) >= 3 && f[0] != "Z" && f[0] != "X" && f[2] == strconv.Itoa(pgid) {
			return true
		}
	}
	return false
}

// tail returns the last n lines of a file (or why it cannot).
func tail(file string, n int) string {
	b, err := os.ReadFile(file)
	if err != nil {
		return err.Error()
	}
	lines := strings.SplitAfter(string(b), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "")
}

// logLine waits up to 5s (servers write their logs a moment after the
// stanza that made them) for a line of the file that matches re, and
// returns it, or "" after reporting its absence with t.Errorf: why says
// what the line proves.
func logLine(t *testing.T, file, re, why string) string {
	t.Helper()
	rx := regexp.MustCompile(re)
	for deadline := time.Now().Add(5 * time.Second); ; {
		b, _ := os.ReadFile(file)
		if m := rx.Find(b); m != nil {
			return string(m)
		}
		if time.Now().After(deadline) {
			t.Errorf("%s: no line matching %q in %s", why, re, file)
			return ""
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// fillTemplate reads internal/e2e/federation/name.in, replaces the keys
// of vars ("@DIR@" ...) and writes it to file.
func fillTemplate(t *testing.T, name, file string, vars map[string]string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("federation", name+".in"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for k, v := range vars {
		s = strings.ReplaceAll(s, k, v)
	}
	if left := regexp.MustCompile(`@[A-Z]+@`).FindString(s); left != "" {
		t.Fatalf("%s: %s left unreplaced", name, left)
	}
	if err := os.WriteFile(file, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// runAs runs a command as user (at most 30s) and fails the test unless it
// exits 0.
func runAs(t *testing.T, usr, dir string, env []string, argv ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := append([]string{"-u", usr, "--", "env"}, env...)
	cmd := exec.CommandContext(ctx, "runuser", append(args, argv...)...)
	cmd.Dir = dir
	cmd.WaitDelay = 2 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%q as %s: %v (%v)\n%s", argv, usr, err, ctx.Err(), out)
	}
	return string(out)
}

// chownR gives dir and everything in it to the user.
func chownR(t *testing.T, dir, usr string) {
	t.Helper()
	u, err := user.Lookup(usr)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	err = filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// startProsody configures and starts Prosody for prosody.test with the
// given users (local parts; password fedPassword).
func (f *federation) startProsody(t *testing.T, users ...string) *refServer {
	t.Helper()
	dir := filepath.Join(f.dir, fedProsody)
	cfg := filepath.Join(dir, "prosody.cfg.lua")
	addrs, insecure := fedAddr, fedEjabberd
	if f.prosodyAddrs != nil {
		addrs = f.prosodyAddrs
	}
	if f.prosodyInsecure != "" {
		insecure = f.prosodyInsecure
	}
	fillTemplate(t, "prosody.cfg.lua", cfg, map[string]string{
		"@DIR@": dir, "@IP@": addrs[fedProsody], "@DOMAIN@": fedProsody, "@CA@": f.caFile, "@EJABBERD@": insecure,
	})
	if f.prosodyExtra != "" {
		cf, err := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		_, err = cf.WriteString("\n" + f.prosodyExtra + "\n")
		if cerr := cf.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	var hosts strings.Builder
	for _, d := range slices.Sorted(maps.Keys(addrs)) {
		fmt.Fprintf(&hosts, "%s %s\n", addrs[d], d)
	}
	if err := os.WriteFile(filepath.Join(dir, "hosts"), []byte(hosts.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o750); err != nil {
		t.Fatal(err)
	}
	chownR(t, dir, "prosody")
	for _, u := range users {
		runAs(t, "prosody", dir, nil, "prosodyctl", "--config", cfg, "register", u, fedProsody, fedPassword)
	}
	ip := addrs[fedProsody]
	f.prosodyLog = filepath.Join(dir, "prosody.log")
	return startRef(t, "prosody", dir, []string{f.prosodyLog},
		[]string{ip + ":5222", ip + ":5269"},
		"-u", "prosody", "--", "sh", "-c", `ulimit -n 4096 2>/dev/null; exec prosody -F --config "$0"`, cfg)
}

// startEjabberd configures and starts ejabberd for ejabberd.test and
// registers the given users (local parts; password fedPassword).
func (f *federation) startEjabberd(t *testing.T, users ...string) *refServer {
	t.Helper()
	dir := filepath.Join(f.dir, fedEjabberd)
	distPort := freePort(t)
	vars := map[string]string{
		"@DIR@": dir, "@IP@": fedAddr[fedEjabberd], "@DOMAIN@": fedEjabberd,
		"@DISTPORT@":   strconv.Itoa(distPort),
		"@DNSIPTUPLE@": strings.ReplaceAll(f.dns.Addr().String(), ".", ","),
		"@DNSIP@":      f.dns.Addr().String(), "@DNSPORT@": strconv.Itoa(int(f.dns.Port())),
	}
	for _, name := range []string{"ejabberd.yml", "ejabberdctl.cfg", "inetrc"} {
		fillTemplate(t, name, filepath.Join(dir, name), vars)
	}
	for _, sub := range []string{"db", "log"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o750); err != nil {
			t.Fatal(err)
		}
	}
	chownR(t, dir, "ejabberd")
	ctl := []string{"ejabberdctl", "--config-dir", dir, "--spool", filepath.Join(dir, "db"), "--logs", filepath.Join(dir, "log")}
	ip := fedAddr[fedEjabberd]
	f.ejabberdLog = filepath.Join(dir, "log", "ejabberd.log")
	s := startRef(t, "ejabberd", dir, []string{f.ejabberdLog},
		[]string{ip + ":5222", ip + ":5269"},
		append([]string{"-u", "ejabberd", "--", "env", "HOME=" + dir, "sh", "-c",
			`ulimit -n 4096 2>/dev/null; exec "$@" foreground`, "sh"}, ctl...)...)
	// HOME holds the Erlang cookie that the node and ejabberdctl share.
	for _, u := range users {
		runAs(t, "ejabberd", dir, []string{"HOME=" + dir}, append(slices.Clone(ctl), "register", u, fedEjabberd, fedPassword)...)
	}
	return s
}

// freePort returns a TCP port of 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	_, port, err := net.SplitHostPort(trefftest.FreeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(port)
	return n
}

// startTreff builds the example server and starts it for treff.test with
// s2s, static routes to the reference servers and the given users (local
// parts; password fedPassword).
func (f *federation) startTreff(t *testing.T, users ...string) *communityProc {
	t.Helper()
	bin := buildCommunity(t)
	data := t.TempDir()
	var batch strings.Builder
	for _, u := range users {
		fmt.Fprintf(&batch, "%s@%s %s\n", u, fedTreff, fedPassword)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "adduser", "-batch", "-data", data, "-domain", fedTreff)
	cmd.Env = communityEnv()
	cmd.Stdin = strings.NewReader(batch.String())
	cmd.WaitDelay = 2 * time.Second
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("community adduser -batch: %v\n%s", err, out)
	}

	ip := fedAddr[fedTreff]
	certDir := filepath.Join(f.dir, fedTreff)
	p := &communityProc{logs: new(trefftest.LogBuffer), done: make(chan struct{}),
		addr: ip + ":5222", cert: f.caFile}
	p.start(t, bin, "-data", data, "-domain", fedTreff,
		"-cert", filepath.Join(certDir, "cert.pem"), "-key", filepath.Join(certDir, "key.pem"),
		"-c2s", p.addr, "-c2s-tls", "",
		"-s2s", ip+":5269", "-s2s-tls", "", "-s2s-ca", f.caFile,
		"-s2s-resolve", fmt.Sprintf("%s=%s:5269,%s=%s:5269,%s=%s:5269,%s=%s", fedProsody, fedAddr[fedProsody],
			fedProsodyPubsub, fedAddr[fedProsody],
			fedEjabberd, fedAddr[fedEjabberd], fedUnreachable, fedUnreachableAddr),
		"-http", "", "-https", "",
		"-log-level", "debug")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("treff output:\n%s", p.logs)
		}
	})
	deadline := time.Now().Add(fedStartTimeout)
	for _, a := range []string{p.addr, ip + ":5269"} {
		for !accepts(a) {
			select {
			case <-p.done:
				t.Fatalf("treff exited before it accepted connections on %s: %v\noutput:\n%s", a, p.err, p.logs)
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("treff did not accept connections on %s within %v\noutput:\n%s", a, fedStartTimeout, p.logs)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return p
}

// fedClient runs clients/federation.py with the scenario and arguments.
func (f *federation) fedClient(t *testing.T, scenario string, args ...string) events {
	t.Helper()
	script, err := filepath.Abs(filepath.Join("clients", "federation.py"))
	if err != nil {
		t.Fatal(err)
	}
	argv := []string{script, "--cert", f.clientCAs, "--timeout", fmt.Sprint(fedScriptTimeout.Seconds()),
		"--wait", fmt.Sprint(fedWait.Seconds())}
	if testing.Verbose() && os.Getenv("E2E_DEBUG") != "" {
		argv = append(argv, "--debug")
	}
	argv = append(argv, scenario)
	argv = append(argv, args...)
	return runClient(t, "federation.py "+scenario, pythonEnv(), python, argv...)
}

// fedUser is an account on one of the servers.
type fedUser struct{ local, domain string }

func (u fedUser) jid() string  { return u.local + "@" + u.domain }
func (u fedUser) addr() string { return fedAddr[u.domain] + ":5222" }

// checkPair runs the pair scenario, a (on one server) initiating with b
// (on another), and checks every step on both sides.
func (f *federation) checkPair(t *testing.T, a, b fedUser) {
	t.Helper()
	body := uniqueBody("federation")
	es := f.fedClient(t, "pair", "--body", body,
		"--a-jid", a.jid(), "--a-password", fedPassword, "--a-addr", a.addr(), "--a-nobody", "nobody@"+b.domain,
		"--b-jid", b.jid(), "--b-password", fedPassword, "--b-addr", b.addr(), "--b-nobody", "nobody@"+a.domain)
	full := map[string]string{
		"a": es.one(t, "login", "a").JID,
		"b": es.one(t, "login", "b").JID,
	}
	bare := map[string]string{"a": a.jid(), "b": b.jid()}
	nobody := map[string]string{"a": "nobody@" + b.domain, "b": "nobody@" + a.domain}
	for _, c := range []struct{ me, peer string }{{"a", "b"}, {"b", "a"}} {
		// Subscription both ways, and the peer online.
		st := imStateOf(t, es, c.me)
		checkRoster(t, c.me, st, bare[c.peer], "both")
		if !slices.Contains(st.Online, full[c.peer]) {
			t.Errorf("%s: available presence from %q, want %s among them", c.me, st.Online, full[c.peer])
		}
		// The peer's status change.
		want := c.peer + " " + body
		saw := false
		for _, pr := range presences(t, es, c.me) {
			if pr.Type == "" && pr.From == full[c.peer] && pr.Status == want {
				saw = true
			}
		}
		if !saw {
			t.Errorf("%s did not see the status %q of %s", c.me, want, full[c.peer])
		}
		// The peer's message, once.
		wantBody := "from " + c.peer + ": " + body
		var got []event
		for _, m := range es.of("message", c.me) {
			if m.Type != "error" {
				got = append(got, m)
			}
		}
		if len(got) != 1 || got[0].Body != wantBody || got[0].From != full[c.peer] || got[0].Type != "chat" {
			t.Errorf("%s got messages %+v, want one chat message from %s with body %q", c.me, got, full[c.peer], wantBody)
		}
		// The ping of the peer's full JID, answered by the peer itself.
		var pg struct {
			SentTo string       `json:"sent_to"`
			Type   string       `json:"type"`
			From   string       `json:"from_jid"`
			Error  *stanzaError `json:"error"`
		}
		es.one(t, "ping", c.me).decode(t, &pg)
		if pg.Type != "result" || pg.From != full[c.peer] {
			t.Errorf("%s: ping of %s answered with type %q from %q (error %+v), want a result from it", c.me, pg.SentTo, pg.Type, pg.From, pg.Error)
		}
		// The message to a user that does not exist on the peer's server.
		var bo struct {
			SentTo  string       `json:"sent_to"`
			From    string       `json:"from"`
			Type    string       `json:"type"`
			Error   *stanzaError `json:"error"`
			Seconds float64      `json:"seconds"`
		}
		es.one(t, "bounce", c.me).decode(t, &bo)
		if bo.From != nobody[c.me] || bo.Type != "error" || bo.Error == nil ||
			!slices.ContainsFunc(bo.Error.Conditions, func(c string) bool {
				return c == "service-unavailable" || c == "item-not-found" || c == "recipient-unavailable"
			}) {
			t.Errorf("%s: message to %s came back from %q, type %q, error %+v; want an error from it (service-unavailable, item-not-found or recipient-unavailable)",
				c.me, nobody[c.me], bo.From, bo.Type, bo.Error)
		} else {
			t.Logf("%s: message to %s came back after %.3fs with %q", c.me, nobody[c.me], bo.Seconds, bo.Error.Conditions)
		}
	}
	if t.Failed() {
		return
	}
	t.Logf("%s and %s: subscriptions, presence, messages, pings and errors across servers", a.jid(), b.jid())
}

// checkMUC runs the muc scenario: owner, a user of Treff, creates rooms
// on conference.treff.test, and guest, a user of another server, takes
// part in them through his own server (every stanza between guest and
// the rooms crosses the servers' s2s streams). It checks every step: the
// guest cannot create a room (muc: only users of the service's own
// domains may) and the room does not exist afterwards; he joins an open
// room without an invitation and leaves it, and the owner sees both; a
// members-only room refuses him until the owner's mediated invitation,
// which reaches him from the room and makes him a member; then each gets
// both groupchat messages once, from the sender's occupant JID, a
// private message through the room goes each way, the owner sees the
// guest's full JID in his presence (she is a moderator) and lists him as
// a member, and when he leaves both hear of it. It returns the unique
// part of the bodies sent.
func (f *federation) checkMUC(t *testing.T, owner, guest fedUser, room string) (stamp string) {
	t.Helper()
	body := uniqueBody("muc")
	stamp = body[strings.LastIndexByte(body, ' ')+1:]
	members, open, refused := room+"@"+fedTreffMUC, room+"-open@"+fedTreffMUC, room+"-theirs@"+fedTreffMUC
	const reason = "Join us & talk <here>"
	es := f.fedClient(t, "muc", "--body", body, "--service", fedTreffMUC,
		"--room", room, "--room-2", room+"-open", "--room-3", room+"-theirs", "--reason", reason,
		"--a-jid", owner.jid(), "--a-password", fedPassword, "--a-addr", owner.addr(),
		"--b-jid", guest.jid(), "--b-password", fedPassword, "--b-addr", guest.addr())
	an, bn := owner.local, guest.local
	full := map[string]string{
		"a": es.one(t, "login", "a").JID,
		"b": es.one(t, "login", "b").JID,
	}

	// Room creation is for the service's own users: not-allowed (cancel),
	// with the MUC element echoed, and no room.
	checkJoinError(t, es, "create", refused+"/"+bn, "not-allowed", "cancel", "only users of this server may create rooms")
	var echo struct {
		HasMUCJoin bool `json:"has_muc_join"`
	}
	for _, e := range es.of("join_error", "b") {
		e.decode(t, &echo)
		if !echo.HasMUCJoin {
			t.Errorf("the refusal of %s lacks the <x xmlns='http://jabber.org/protocol/muc'/> echo", e.From)
		}
	}
	if d := discoInfo(t, es, "a"); d.Type != "error" || d.Error == nil || !slices.Equal(d.Error.Conditions, []string{"item-not-found"}) {
		t.Errorf("disco#info of %s after the refused creation: %s %+v, want item-not-found", refused, d.Type, d.Error)
	}

	checkJoined(t, es, "a", members, an, 110, 201)
	checkJoined(t, es, "a", open, an, 110, 201)
	for _, e := range es.of("config_reply", "a") {
		var r mucIQReply
		e.decode(t, &r)
		if r.Type != "result" {
			t.Errorf("a configuration of the owner was refused: %+v", r.Error)
		}
	}

	// The open room.
	checkJoined(t, es, "b", open, bn, 110)
	if n := len(removals(t, es, "a", open+"/"+bn)); n != 1 {
		t.Errorf("%s saw %s leave %s %d times, want once", an, bn, open, n)
	}

	// The members-only room: refused, invited, in.
	checkJoinError(t, es, "members_only", members+"/"+bn, "registration-required", "auth", "this room is for members only")
	var invites []mucMessage
	for _, m := range mucMessages(t, es, "b") {
		if m.Invite != nil {
			invites = append(invites, m)
		}
	}
	if len(invites) != 1 {
		t.Fatalf("%s got %d invitations (%+v), want 1", guest.jid(), len(invites), invites)
	}
	if m := invites[0]; m.From != members || m.Type == "groupchat" || m.Type == "error" || m.Invite.From != owner.jid() || m.Invite.Reason != reason {
		t.Errorf("the invitation: %+v (invite %+v), want a message from %s with <invite from='%s'> and the reason %q",
			m, *m.Invite, members, owner.jid(), reason)
	}
	j := checkJoined(t, es, "b", members, bn, 110)
	if !slices.Contains(j.Occupants, members+"/"+an) {
		t.Errorf("%s joined %s with the occupants %q, want %s/%s among them", bn, members, j.Occupants, members, an)
	}
	var selfItem, seenItem *mucItem
	for _, pr := range mucPresences(t, es, "b") {
		if pr.From == members+"/"+bn && pr.Type == "" {
			selfItem = pr.Item
		}
	}
	for _, pr := range mucPresences(t, es, "a") {
		if pr.From == members+"/"+bn && pr.Type == "" {
			seenItem = pr.Item
		}
	}
	if selfItem == nil || selfItem.Affiliation != "member" || selfItem.Role != "participant" {
		t.Errorf("%s's self-presence in %s has the item %+v, want member and participant", bn, members, selfItem)
	}
	if seenItem == nil || seenItem.JID != full["b"] || seenItem.Affiliation != "member" {
		t.Errorf("%s's presence in %s, as %s saw it, has the item %+v, want member with the JID %s", bn, members, an, seenItem, full["b"])
	}

	// Groupchat both ways, each message once to each, from the sender's
	// occupant JID; private messages through the room.
	for _, c := range []string{"a", "b"} {
		var got []string
		var private []mucMessage
		for _, m := range mucMessages(t, es, c) {
			switch {
			case m.Type == "error":
				t.Errorf("%s got an error from the room: %+v", c, m)
			case m.Type == "groupchat" && m.Body != nil && m.Subject == nil:
				got = append(got, m.From+" "+*m.Body)
			case m.Type == "chat":
				private = append(private, m)
			}
		}
		want := []string{members + "/" + an + " a " + body, members + "/" + bn + " b " + body}
		if !slices.Equal(slices.Sorted(slices.Values(got)), want) {
			t.Errorf("%s got the groupchat messages %q, want each of %q once", c, got, want)
		}
		other, otherNick := "b", bn
		if c == "b" {
			other, otherNick = "a", an
		}
		wantBody := "private " + other + " " + body
		if len(private) != 1 || private[0].Body == nil || *private[0].Body != wantBody ||
			private[0].From != members+"/"+otherNick || !private[0].MUCUser {
			t.Errorf("%s got the private messages %+v, want one from %s/%s with %q and the muc#user marker", c, private, members, otherNick, wantBody)
		}
	}
	if r := checkAdmin(t, es, "a", "list_member"); !slices.Equal(r.JIDs, []string{guest.jid()}) {
		t.Errorf("members of %s: %q, want %s", members, r.JIDs, guest.jid())
	}

	// He leaves: his own exit (110), and the owner sees it.
	var self bool
	for _, pr := range removals(t, es, "b", members+"/"+bn) {
		self = self || slices.Contains(pr.Codes, 110)
	}
	if !self {
		t.Errorf("%s got no unavailable self-presence (110) from %s", bn, members)
	}
	if n := len(removals(t, es, "a", members+"/"+bn)); n != 1 {
		t.Errorf("%s saw %s leave %s %d times, want once", an, bn, members, n)
	}
	if t.Failed() {
		return stamp
	}
	t.Logf("%s in rooms of %s: creation refused, open room, invitation into a members-only room, groupchat and private messages both ways, exit", guest.jid(), fedTreffMUC)
	return stamp
}

// s2sAuth is one "s2s stream authenticated" record of Treff's log: the
// peer domain, Treff's domain of the stream, in or out, and how.
type s2sAuth struct{ domain, local, direction, method string }

// treffS2SAuths reads Treff's log (slog's text format) for the s2s
// streams it authenticated.
func treffS2SAuths(logs string) []s2sAuth {
	var out []s2sAuth
	sc := bufio.NewScanner(strings.NewReader(logs))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		kv := logfmt(sc.Text())
		if kv["msg"] == "s2s stream authenticated" {
			out = append(out, s2sAuth{domain: kv["domain"], local: kv["local"], direction: kv["direction"], method: kv["method"]})
		}
	}
	return out
}

// logfmt splits a line of slog's text format into its keys and values
// (quoted values unquoted).
func logfmt(line string) map[string]string {
	kv := map[string]string{}
	for s := strings.TrimSpace(line); s != ""; s = strings.TrimLeft(s, " ") {
		eq := strings.IndexByte(s, '=')
		if eq < 0 {
			break
		}
		k, rest := s[:eq], s[eq+1:]
		var v string
		if strings.HasPrefix(rest, `"`) {
			q, err := strconv.QuotedPrefix(rest)
			if err != nil {
				break
			}
			v, _ = strconv.Unquote(q)
			rest = rest[len(q):]
		} else if sp := strings.IndexByte(rest, ' '); sp >= 0 {
			v, rest = rest[:sp], rest[sp:]
		} else {
			v, rest = rest, ""
		}
		kv[k] = v
		s = rest
	}
	return kv
}

// checkMUCStreams checks, in Treff's log, that the streams between its
// group chat service and remote were authenticated in both directions,
// all with method, and that no message content of the run (stamp, from
// checkMUC) was logged.
func checkMUCStreams(t *testing.T, logs, remote, method, stamp string) {
	t.Helper()
	if strings.Contains(logs, stamp) {
		t.Errorf("Treff's log holds message content (%s)", stamp)
	}
	dirs := map[string]bool{}
	for _, a := range treffS2SAuths(logs) {
		if a.local != fedTreffMUC || a.domain != remote {
			continue
		}
		dirs[a.direction] = true
		if a.method != method {
			t.Errorf("Treff authenticated a stream (%s) between %s and %s with %s, want %s", a.direction, fedTreffMUC, remote, a.method, method)
		}
	}
	if !dirs["in"] || !dirs["out"] {
		t.Errorf("Treff authenticated streams between %s and %s in the directions %v, want in and out", fedTreffMUC, remote, dirs)
	}
}

// TestFederation: Prosody and ejabberd from Debian, each started here on
// its own loopback address, federate with each other (Reference: proof
// that the names, certificates and listeners of the setup are sound), and
// Treff's example server federates with each of them, both ways: for each
// pair and each side starting, a subscription request is approved and
// returned, both see each other's presence and status, a message goes
// each way, a ping to the other's full JID is answered, and a message to
// a user that does not exist on the other server comes back as an error.
// A user of each reference server takes part in group chats on
// conference.treff.test (checkMUC): he may not create a room there, joins
// an open room, and a members-only one once invited, and exchanges
// groupchat and private messages with the Treff user who owns it. A
// message from Treff to a domain that does not resolve comes back as
// remote-server-not-found (or -timeout). Treff's log shows that its
// streams with Prosody used SASL EXTERNAL and those with ejabberd (whose
// certificate comes from a CA nobody trusts, and which trusts none)
// Server Dialback, in both directions, for treff.test and its group chat
// service alike.
func TestFederation(t *testing.T) {
	needFederation(t)
	f := newFederation(t)
	prosodyUsers := []string{"bob", "bob2", "bob3", "bob4"}
	ejabberdUsers := []string{"carol", "carol2", "carol3", "carol4"}
	f.startProsody(t, prosodyUsers...)
	f.startEjabberd(t, ejabberdUsers...)

	t.Run("Reference", func(t *testing.T) {
		f.checkPair(t, fedUser{"bob", fedProsody}, fedUser{"carol", fedEjabberd})
		// The authentication paths the setup intends, as the two servers
		// log them: neither trusts the other's CA, so both directions use
		// dialback (Prosody allows it for ejabberd.test only, through
		// s2s_insecure_domains).
		logLine(t, f.ejabberdLog, `Accepted inbound s2s dialback authentication prosody\.test -> ejabberd\.test`,
			"prosody.test -> ejabberd.test: dialback")
		logLine(t, f.ejabberdLog, `Accepted outbound s2s dialback authentication ejabberd\.test -> prosody\.test`,
			"ejabberd.test -> prosody.test: dialback")
	})

	t.Run("Treff", func(t *testing.T) {
		p := f.startTreff(t, "alice", "alice2", "alice3", "alice4", "alice5", "alice6", "alice7")
		for _, c := range []struct {
			name          string
			treff, remote fedUser
			remoteFirst   bool
		}{
			{"Prosody/RemoteFirst", fedUser{"alice", fedTreff}, fedUser{"bob2", fedProsody}, true},
			{"Prosody/TreffFirst", fedUser{"alice2", fedTreff}, fedUser{"bob3", fedProsody}, false},
			{"Ejabberd/RemoteFirst", fedUser{"alice3", fedTreff}, fedUser{"carol2", fedEjabberd}, true},
			{"Ejabberd/TreffFirst", fedUser{"alice4", fedTreff}, fedUser{"carol3", fedEjabberd}, false},
		} {
			t.Run(c.name, func(t *testing.T) {
				if c.remoteFirst {
					f.checkPair(t, c.remote, c.treff)
				} else {
					f.checkPair(t, c.treff, c.remote)
				}
			})
		}

		// Group chat across servers (issue 6's policy, see checkMUC): a
		// user of Prosody, whose server reaches conference.treff.test with
		// SASL EXTERNAL both ways (Treff's certificate names the service
		// too), and one of ejabberd, with dialback both ways (ejabberd, as
		// the receiving server, checks the service's key with the
		// service's own name).
		t.Run("MUC/Prosody", func(t *testing.T) {
			stamp := f.checkMUC(t, fedUser{"alice6", fedTreff}, fedUser{"bob4", fedProsody}, "prosody-club")
			logLine(t, f.prosodyLog, `Accepting SASL EXTERNAL identity from conference\.treff\.test`,
				"conference.treff.test -> prosody.test: SASL EXTERNAL")
			logLine(t, f.prosodyLog, `SASL EXTERNAL with conference\.treff\.test succeeded`,
				"prosody.test -> conference.treff.test: SASL EXTERNAL")
			checkMUCStreams(t, p.logs.String(), fedProsody, "external", stamp)
		})
		t.Run("MUC/Ejabberd", func(t *testing.T) {
			stamp := f.checkMUC(t, fedUser{"alice7", fedTreff}, fedUser{"carol4", fedEjabberd}, "ejabberd-club")
			logLine(t, f.ejabberdLog, `Accepted inbound s2s dialback authentication conference\.treff\.test -> ejabberd\.test`,
				"conference.treff.test -> ejabberd.test: dialback")
			logLine(t, f.ejabberdLog, `Accepted outbound s2s dialback authentication ejabberd\.test -> conference\.treff\.test`,
				"ejabberd.test -> conference.treff.test: dialback")
			checkMUCStreams(t, p.logs.String(), fedEjabberd, "dialback", stamp)
		})

		// A domain that does not resolve (Treff asks the system's DNS,
		// which answers NXDOMAIN for .test), and one whose static route
		// leads nowhere (nothing listens there).
		for _, c := range []struct{ name, domain string }{
			{"UnknownDomain", fedNowhere},
			{"UnreachableDomain", fedUnreachable},
		} {
			t.Run(c.name, func(t *testing.T) {
				if c.domain == fedUnreachable && accepts(fedUnreachableAddr) {
					t.Skipf("something listens on %s", fedUnreachableAddr)
				}
				to := "someone@" + c.domain
				es := f.fedClient(t, "unknown", "--a-jid", "alice5@"+fedTreff, "--a-password", fedPassword,
					"--a-addr", fedAddr[fedTreff]+":5222", "--a-nobody", to, "--wait", "20")
				var bo struct {
					From    string       `json:"from"`
					Type    string       `json:"type"`
					Error   *stanzaError `json:"error"`
					Seconds float64      `json:"seconds"`
				}
				es.one(t, "bounce", "a").decode(t, &bo)
				if bo.Type != "error" || bo.Error == nil || !slices.ContainsFunc(bo.Error.Conditions, func(c string) bool {
					return c == "remote-server-not-found" || c == "remote-server-timeout"
				}) {
					t.Errorf("message to %s came back from %q, type %q, error %+v; want remote-server-not-found or remote-server-timeout",
						to, bo.From, bo.Type, bo.Error)
				} else {
					t.Logf("message to %s came back after %.3fs with %q", to, bo.Seconds, bo.Error.Conditions)
				}
			})
		}

		t.Run("AuthMethods", func(t *testing.T) {
			// As the reference servers saw it: Treff and Prosody trust each
			// other's certificates (SASL EXTERNAL both ways); ejabberd and
			// Treff do not trust each other's, so both directions use
			// dialback: ejabberd checks Treff's key with treff.test's
			// server (Treff, as the authoritative server), and Treff
			// checks ejabberd's with ejabberd.
			logLine(t, f.prosodyLog, `Accepting SASL EXTERNAL identity from treff\.test`,
				"treff.test -> prosody.test: SASL EXTERNAL")
			logLine(t, f.prosodyLog, `SASL EXTERNAL with treff\.test succeeded`,
				"prosody.test -> treff.test: SASL EXTERNAL")
			logLine(t, f.ejabberdLog, `Accepted inbound s2s dialback authentication treff\.test -> ejabberd\.test`,
				"treff.test -> ejabberd.test: dialback")
			logLine(t, f.ejabberdLog, `Accepted outbound s2s dialback authentication ejabberd\.test -> treff\.test`,
				"ejabberd.test -> treff.test: dialback")

			// As Treff logs it.
			auths := treffS2SAuths(p.logs.String())
			methods := map[string][]string{}
			for _, a := range auths {
				methods[a.domain] = append(methods[a.domain], a.method)
			}
			t.Logf("s2s streams authenticated by Treff: %v", methods)
			pm := methods[fedProsody]
			if len(pm) == 0 || slices.ContainsFunc(pm, func(m string) bool { return m != "external" }) {
				t.Errorf("streams with %s authenticated by %q, want only (and at least one) external: both trust the test's CA", fedProsody, pm)
			}
			em := methods[fedEjabberd]
			if len(em) < 2 || slices.ContainsFunc(em, func(m string) bool { return m != "dialback" }) {
				t.Errorf("streams with %s authenticated by %q, want only dialback, both ways: neither trusts the other's CA", fedEjabberd, em)
			}
		})

		// Federation logs who, whom and why, never an address: Treff's
		// debug log of all of the above names no 127.0.0.x, but for the
		// start-up lines of its own listeners.
		for _, l := range strings.Split(p.logs.String(), "\n") {
			if strings.Contains(l, "msg=listening ") {
				continue
			}
			if m := regexp.MustCompile(`127\.0\.0\.\d+`).FindString(l); m != "" {
				t.Errorf("Treff logged the address %s: %s", m, l)
				break
			}
		}
		p.stop(t)
	})
}
