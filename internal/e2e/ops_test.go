package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/treff-im/treff/internal/dnstest"
	"github.com/treff-im/treff/trefftest"
)

// The tests in this file check what an operator runs: the version
// command, the check command against a running server and a DNS server
// on loopback, the start-up log of the listeners, and the systemd unit.

// runCommunityStatus runs a subcommand of the binary to completion (at
// most 60s) and returns its output and exit status.
func runCommunityStatus(t *testing.T, bin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = communityEnv()
	cmd.Stdin = strings.NewReader("")
	cmd.WaitDelay = 2 * time.Second
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("community %q did not finish within a minute\nstdout: %s\nstderr: %s", args, &out, &errb)
	}
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return out.String(), errb.String(), ee.ExitCode()
		}
		t.Fatalf("community %q: %v", args, err)
	}
	return out.String(), errb.String(), 0
}

// git runs git in dir and returns its trimmed output.
func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %q: %v: %s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// TestCommunityVersion: 'community -version' and 'community version'
// print the module and the git revision the binary was built from. The
// go command records no revision in a linked git worktree
// (golang/go#58218), so the binary is built in a fresh clone of the
// commit checked out here: its vcs.revision and vcs.time must be that
// commit's, its module version the commit's tag or pseudo-version, and
// vcs.modified false. (Uncommitted changes are not in the
// clone: this tests the committed code.)
func TestCommunityVersion(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	if err := exec.Command("git", "-C", root, "rev-parse", "HEAD").Run(); err != nil {
		t.Skipf("%s is not a git checkout: %v", root, err)
	}
	head := git(t, root, "rev-parse", "HEAD")
	when, err := time.Parse(time.RFC3339, git(t, root, "log", "-1", "--format=%cI", head))
	if err != nil {
		t.Fatal(err)
	}
	clone := filepath.Join(t.TempDir(), "src")
	git(t, root, "clone", "--quiet", "--shared", "--no-checkout", root, clone)
	git(t, clone, "-c", "advice.detachedHead=false", "checkout", "--quiet", head)

	bin := filepath.Join(t.TempDir(), "community")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "go", "build", "-buildvcs=true", "-o", bin, "./examples/community")
	build.Dir = clone
	// The environment may turn VCS stamping off (GOFLAGS=-buildvcs=false).
	build.Env = append(os.Environ(), "GOFLAGS=")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build in the clone: %v\n%s", err, out)
	}
	// The go command (1.24 on) takes the module version from git too: a
	// tag on the commit, or a pseudo-version naming its time and hash.
	version := `v\S+-` + when.UTC().Format("20060102150405") + "-" + head[:12]
	if tag, err := exec.Command("git", "-C", root, "describe", "--tags", "--exact-match", head).Output(); err == nil {
		version = regexp.QuoteMeta(strings.TrimSpace(string(tag)))
	}
	want := regexp.MustCompile(`^community github\.com/treff-im/treff ` + version +
		` \(revision ` + head + `, ` + regexp.QuoteMeta(when.UTC().Format(time.RFC3339)) + `\) go\S+\n$`)
	for _, args := range [][]string{{"-version"}, {"version"}} {
		if out := runCommunity(t, bin, args...); !want.MatchString(out) {
			t.Errorf("community %s printed %q, want one line matching %s (not modified)", args[0], out, want)
		}
	}
}

// opsListeners are the flags for every listener of the server on fresh
// loopback ports, by listener name as the server logs it.
func opsListeners(t *testing.T) map[string]string {
	t.Helper()
	return map[string]string{
		"c2s": trefftest.FreeAddr(t), "c2s_tls": trefftest.FreeAddr(t),
		"s2s": trefftest.FreeAddr(t), "s2s_tls": trefftest.FreeAddr(t),
		"http": trefftest.FreeAddr(t), "https": trefftest.FreeAddr(t),
		"component": trefftest.FreeAddr(t), "debug": trefftest.FreeAddr(t),
	}
}

// opsArgs are the server flags for the listeners ls, domain example.org
// with one component.
func opsArgs(data string, ls map[string]string) []string {
	return []string{"-data", data, "-domain", "example.org",
		"-c2s", ls["c2s"], "-c2s-tls", ls["c2s_tls"], "-s2s", ls["s2s"], "-s2s-tls", ls["s2s_tls"],
		"-http", ls["http"], "-https", ls["https"],
		"-component-listen", ls["component"], "-component", "gw.example.org=component-secret",
		"-debug-addr", ls["debug"]}
}

// TestCommunityCheck: the server logs each of its listeners once at
// start with its address; 'community check', with the DNS server of a
// zone served on loopback (-resolver), finds every listener accepting,
// the SRV records, the self-signed certificate presented by the running
// server (a warning: not for a public server), and exits 0; the same
// check after the server stopped fails with exit status 1, naming the
// listeners nobody accepts on.
func TestCommunityCheck(t *testing.T) {
	bin := buildCommunity(t)
	data := t.TempDir()
	runCommunity(t, bin, "adduser", "-data", data, "-domain", "example.org", "-password", alicePW, "alice@example.org")
	ls := opsListeners(t)
	args := opsArgs(data, ls)

	p := &communityProc{logs: new(trefftest.LogBuffer), done: make(chan struct{})}
	p.start(t, bin, args...)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server output:\n%s", p.logs)
		}
	})
	// Ready when the start-up log line after every listener is there.
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(p.logs.String(), "server started") {
		select {
		case <-p.done:
			t.Fatalf("server exited early: %v", p.err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("server not started within 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Each listener, once, with its address.
	logs := p.logs.String()
	want := map[string]string{"admin": filepath.Join(data, "admin.sock")}
	for name, addr := range ls {
		want[name] = addr
	}
	for name, addr := range want {
		re := regexp.MustCompile(`msg=listening listener=` + regexp.QuoteMeta(name) + ` addr=(\S+)`)
		m := re.FindAllStringSubmatch(logs, -1)
		if len(m) != 1 || m[0][1] != addr {
			t.Errorf("listener %s: logged %q, want once with addr=%s", name, m, addr)
		}
	}

	port := func(name string) uint16 {
		_, p, _ := net.SplitHostPort(ls[name])
		n, _ := strconv.Atoi(p)
		return uint16(n)
	}
	srv := func(n uint16) []net.SRV { return []net.SRV{{Target: "xmpp.example.org", Port: n, Weight: 1}} }
	public := []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")}
	dns, err := dnstest.Start("127.0.0.1:0", dnstest.Zone{
		Addrs: map[string][]netip.Addr{
			"xmpp.example.org": public, "example.org": public,
			"conference.example.org": public, "pubsub.example.org": public,
		},
		SRV: map[string][]net.SRV{
			"_xmpp-client._tcp.example.org":  srv(port("c2s")),
			"_xmpps-client._tcp.example.org": srv(port("c2s_tls")),
			"_xmpp-server._tcp.example.org":  srv(port("s2s")),
			"_xmpps-server._tcp.example.org": srv(port("s2s_tls")),
			// The group chat service has its record, pubsub has not.
			"_xmpp-server._tcp.conference.example.org": srv(port("s2s")),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer dns.Close()

	checkArgs := append([]string{"check", "-resolver", dns.Addr(), "-admins", "alice@example.org"}, args...)
	out, errOut, code := runCommunityStatus(t, bin, checkArgs...)
	if code != 0 {
		t.Errorf("check exited %d (stderr %q), want 0:\n%s", code, errOut, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	has := func(level, part string) bool {
		for _, l := range lines {
			if strings.HasPrefix(l, level+" ") && strings.Contains(l, part) {
				return true
			}
		}
		return false
	}
	for _, w := range []struct{ level, part string }{
		{"OK", "a server runs with this data folder (registration closed)"},
		{"OK", "c2s " + ls["c2s"] + " accepts connections"},
		{"OK", "c2s_tls " + ls["c2s_tls"] + " accepts connections"},
		{"OK", "s2s " + ls["s2s"] + " accepts connections"},
		{"OK", "s2s_tls " + ls["s2s_tls"] + " accepts connections"},
		{"OK", "https " + ls["https"] + " accepts connections"},
		{"OK", "component_listen " + ls["component"] + " accepts connections"},
		{"OK", "debug_addr " + ls["debug"] + " accepts connections"},
		{"WARN", "c2s listens on " + ls["c2s"] + " only"},
		{"WARN", "is self-signed"},
		{"OK", "names example.org"},
		{"OK", "the running server presents it on c2s_tls"},
		{"OK", fmt.Sprintf("SRV _xmpp-client._tcp.example.org -> xmpp.example.org:%d (192.0.2.1 2001:db8::1)", port("c2s"))},
		{"OK", fmt.Sprintf("SRV _xmpps-server._tcp.example.org -> xmpp.example.org:%d", port("s2s_tls"))},
		{"OK", fmt.Sprintf("SRV _xmpp-server._tcp.conference.example.org -> xmpp.example.org:%d", port("s2s"))},
		{"WARN", fmt.Sprintf("no SRV record _xmpp-server._tcp.pubsub.example.org, and the listener is on port %d, not 5269", port("s2s"))},
		{"WARN", "contact_abuse is not set"},
	} {
		if !has(w.level, w.part) {
			t.Errorf("check: no %s line with %q in:\n%s", w.level, w.part, out)
		}
	}
	if !strings.HasPrefix(lines[len(lines)-1], "0 failed, ") {
		t.Errorf("check: last line %q, want 0 failed", lines[len(lines)-1])
	}
	if dns.Queries() == 0 {
		t.Error("the DNS server on loopback was not asked")
	}

	p.stop(t)
	if strings.Contains(p.logs.String(), "level=ERROR") {
		t.Errorf("errors logged by a clean start and stop:\n%s", p.logs)
	}
	out, errOut, code = runCommunityStatus(t, bin, checkArgs...)
	if code != 1 || !strings.Contains(errOut, "check:") {
		t.Errorf("check after stop exited %d (stderr %q), want 1:\n%s", code, errOut, out)
	}
	lines = strings.Split(strings.TrimSpace(out), "\n")
	for _, w := range []struct{ level, part string }{
		{"FAIL", "no server answers on " + filepath.Join(data, "admin.sock")},
		{"FAIL", "c2s " + ls["c2s"] + ": nothing accepts connections"},
		{"FAIL", "https " + ls["https"] + ": nothing accepts connections"},
	} {
		if !has(w.level, w.part) {
			t.Errorf("check after stop: no %s line with %q in:\n%s", w.level, w.part, out)
		}
	}
}

// TestSystemdUnit: examples/community/treff.service passes systemd's own
// checker (systemd-analyze verify) with its ExecStart pointed at the
// built binary, and systemd-analyze security rates its exposure low
// (under 3 of 10: "OK").
func TestSystemdUnit(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("systemd-analyze is not installed (CI=true: .ci/run installs it with apt-get install systemd)")
		}
		t.Skip("systemd-analyze is not installed (apt-get install systemd)")
	}
	bin := buildCommunity(t)
	unit, err := os.ReadFile(filepath.Join("..", "..", "examples", "community", "treff.service"))
	if err != nil {
		t.Fatal(err)
	}
	const installed = "/usr/local/bin/community"
	if !bytes.Contains(unit, []byte("ExecStart="+installed+" ")) {
		t.Fatalf("treff.service: no ExecStart=%s", installed)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "treff.service")
	if err := os.WriteFile(file, bytes.ReplaceAll(unit, []byte(installed), []byte(bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// verify exits 0 on some problems (a value it cannot parse, which it
	// ignores): any output counts as a failure.
	out, err := exec.CommandContext(ctx, analyze, "verify", file).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) != 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	// And it does fail on a missing binary: the check is real.
	missing := filepath.Join(dir, "missing.service")
	os.WriteFile(missing, unit, 0o644)
	if out, err := exec.CommandContext(ctx, analyze, "verify", missing).CombinedOutput(); err == nil || !bytes.Contains(out, []byte(installed)) {
		t.Errorf("systemd-analyze verify with a missing ExecStart binary: %v, %s; want a failure naming it", err, out)
	}

	out, err = exec.CommandContext(ctx, analyze, "security", "--offline=yes", "--no-pager", file).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`Overall exposure level for treff\.service: ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("systemd-analyze security: no exposure level in\n%s", out)
	}
	if level, _ := strconv.ParseFloat(string(m[1]), 64); level >= 3 {
		t.Errorf("exposure level %s, want under 3:\n%s", m[1], out)
	}
	for _, d := range []string{"DynamicUser=", "User=", "StateDirectory=treff", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
		"NoNewPrivileges=yes", "CapabilityBoundingSet=CAP_NET_BIND_SERVICE\n", "AmbientCapabilities=CAP_NET_BIND_SERVICE\n",
		"RestrictAddressFamilies=", "SystemCallFilter=@system-service", "LimitNOFILE=", "Restart=on-failure", "ExecReload=/bin/kill -HUP $MAINPID"} {
		if d == "DynamicUser=" {
			continue // a dedicated user instead (User=treff), so that certbot's hook can give it the certificate
		}
		if !bytes.Contains(unit, []byte(d)) {
			t.Errorf("treff.service has no %q", d)
		}
	}
}
