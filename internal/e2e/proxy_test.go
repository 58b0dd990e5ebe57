package e2e

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/treff-im/treff/trefftest"
)

// The example server behind Debian's HAProxy (issue 22): the PROXY
// protocol on the client listeners, /health for HAProxy's checks, and a
// node drained for a rolling upgrade. Each test runs its own haproxy on
// its own loopback address (127.0.4.x), with a configuration it writes,
// and stops it by PID.

// needHAProxy returns haproxy's path, or skips (fails with CI=true).
func needHAProxy(t *testing.T) string {
	t.Helper()
	needSlixmpp(t)
	p, err := exec.LookPath("haproxy")
	if err != nil {
		for _, c := range []string{"/usr/sbin/haproxy", "/usr/local/sbin/haproxy"} {
			if _, err := os.Stat(c); err == nil {
				return c
			}
		}
		if os.Getenv("CI") == "true" {
			t.Fatal("haproxy not found (CI installs it: apt-get install haproxy)")
		}
		t.Skip("haproxy not found: apt-get install haproxy")
	}
	return p
}

type haproxy struct {
	cmd  *exec.Cmd
	sock string
	logs *trefftest.LogBuffer
	done chan struct{}
}

// startHAProxy runs haproxy in the foreground with the configuration
// tmpl (text/template, given data and .Sock, the stats socket) and waits
// until its stats socket answers. It is killed by PID when the test
// ends.
func startHAProxy(t *testing.T, bin, tmpl string, data map[string]string) *haproxy {
	t.Helper()
	dir := t.TempDir()
	h := &haproxy{sock: filepath.Join(dir, "haproxy.sock"), logs: new(trefftest.LogBuffer), done: make(chan struct{})}
	data["Sock"] = h.sock
	var b bytes.Buffer
	if err := template.Must(template.New("cfg").Parse(tmpl)).Execute(&b, data); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cfg, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	h.cmd = exec.Command(bin, "-db", "-f", cfg)
	h.cmd.Stdout, h.cmd.Stderr = h.logs, h.logs
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { h.cmd.Wait(); close(h.done) }()
	t.Cleanup(func() {
		h.cmd.Process.Kill()
		<-h.done
		if t.Failed() {
			t.Logf("haproxy configuration:\n%s\nhaproxy output:\n%s", b.String(), h.logs)
		}
	})
	for range 200 {
		select {
		case <-h.done:
			t.Fatalf("haproxy exited at start:\n%s\nconfiguration:\n%s", h.logs, b.String())
		default:
		}
		if _, err := h.stats(); err == nil {
			return h
		}
		time.Sleep(25 * time.Millisecond) // the socket appears when haproxy has started
	}
	t.Fatalf("haproxy's stats socket did not answer within 5s:\n%s", h.logs)
	return nil
}

// stats returns haproxy's "show stat" rows by "proxy/server".
func (h *haproxy) stats() (map[string]map[string]string, error) {
	c, err := net.DialTimeout("unix", h.sock, time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("show stat\n")); err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if _, err := out.ReadFrom(c); err != nil {
		return nil, err
	}
	text := strings.TrimPrefix(out.String(), "# ")
	recs, err := csv.NewReader(strings.NewReader(strings.TrimSpace(text))).ReadAll()
	if err != nil || len(recs) < 2 {
		return nil, fmt.Errorf("show stat: %v: %q", err, text)
	}
	rows := map[string]map[string]string{}
	for _, r := range recs[1:] {
		row := map[string]string{}
		for i, k := range recs[0] {
			if i < len(r) {
				row[k] = r[i]
			}
		}
		rows[row["pxname"]+"/"+row["svname"]] = row
	}
	return rows, nil
}

// waitServer waits (at most 20s) until haproxy reports the server in
// the given state ("UP", "DOWN"), and returns its row.
func (h *haproxy) waitServer(t *testing.T, server, status string) map[string]string {
	t.Helper()
	var row map[string]string
	for range 400 {
		rows, err := h.stats()
		if err == nil {
			if row = rows[server]; row != nil && row["status"] == status {
				return row
			}
		}
		time.Sleep(50 * time.Millisecond) // haproxy's checks have no notification
	}
	t.Fatalf("haproxy: %s is not %s within 20s: %v", server, status, row)
	return nil
}

// TestProxyProtocol: slixmpp clients on three loopback addresses
// register accounts in-band through HAProxy, which connects them to the
// example server's STARTTLS listener with a PROXY protocol v2 header
// (send-proxy-v2) and to its direct TLS listener with a v1 header
// (send-proxy). With registration_per_address 1/1h, the server counts
// each client's address from the headers, not HAProxy's (all of
// HAProxy's connections come from one address): the first registration
// from each address succeeds, the second is refused with
// resource-constraint whichever listener and header version it came
// through. With auth_limit 1/1h, one wrong password locks its address
// out (temporary-auth-failure), not another. SIGUSR1 drains the server
// (its listeners close) and it still exits 0 on SIGTERM. No client
// address appears in the server's output.
func TestProxyProtocol(t *testing.T) {
	hap := needHAProxy(t)
	bin, data, p := startRegCommunity(t, []string{"-registration", "open", "-registration-per-address", "1/1h",
		"-auth-limit", "1/1h", "-proxy-protocol", "yes"})
	const ip = "127.0.4.1"
	v2, v1 := freeAddrOn(t, ip), freeAddrOn(t, ip)
	startHAProxy(t, hap, `global
    stats socket {{.Sock}} mode 600 level admin
defaults
    mode tcp
    timeout connect 5s
    timeout client 1m
    timeout server 1m
frontend starttls
    bind {{.V2}}
    default_backend c2s
frontend directtls
    bind {{.V1}}
    default_backend c2s_tls
backend c2s
    server n1 {{.C2S}} send-proxy-v2
backend c2s_tls
    server n1 {{.TLS}} send-proxy
`, map[string]string{"V2": v2, "V1": v1, "C2S": p.addr, "TLS": p.tls})
	s := p.clients()
	register := func(front, source, user string, directTLS bool) regReply {
		t.Helper()
		args := []string{"--addr", front, "--source", source, "--jid", user + "@localhost", "--password", user + " password"}
		if directTLS {
			args = append(args, "--direct-tls")
		}
		es := s.client(t, "proxy.py", "register", args...)
		rs := regReplies(t, es, "r1")
		if len(rs) != 1 || rs[0].Stage != "set" {
			t.Fatalf("%s from %s: registration replies %+v, want one to the set", user, source, rs)
		}
		return rs[0]
	}
	ok := func(r regReply, what string) {
		t.Helper()
		if r.Type != "result" || r.Error != nil {
			t.Errorf("%s: %s %+v, want a result", what, r.Type, r.Error)
		}
	}
	refused := func(r regReply, what string) {
		t.Helper()
		checkError(t, what, r.Error, "resource-constraint", "wait", "too many registrations; try again later")
	}
	ok(register(v2, "127.0.4.21", "one", false), "the first registration from 127.0.4.21 (v2)")
	refused(register(v2, "127.0.4.21", "two", false), "the second registration from 127.0.4.21 (v2)")
	ok(register(v2, "127.0.4.22", "three", false), "the first registration from 127.0.4.22 (v2)")
	ok(register(v1, "127.0.4.23", "four", true), "the first registration from 127.0.4.23 (v1, direct TLS)")
	refused(register(v1, "127.0.4.23", "five", true), "the second registration from 127.0.4.23 (v1, direct TLS)")
	refused(register(v1, "127.0.4.22", "six", true), "a registration from 127.0.4.22 through the other listener (v1)")
	checkUsers(t, bin, data, "four@localhost", "one@localhost", "three@localhost")

	// auth_limit 1/1h counts the header's address too: after one wrong
	// password from 127.0.4.24, that address is locked out, another is not.
	login := func(source, password string) events {
		t.Helper()
		return s.client(t, "proxy.py", "login", "--addr", v2, "--source", source, "--jid", "one@localhost",
			"--password", password, "--try-mech", "SCRAM-SHA-256")
	}
	conds := func(es events) []string {
		var out []string
		for _, e := range es.of("failed_auth", "login-SCRAM-SHA-256") {
			out = append(out, e.Conditions...)
		}
		return out
	}
	if got := conds(login("127.0.4.24", "wrong password")); !slices.Equal(got, []string{"not-authorized"}) {
		t.Errorf("a wrong password from 127.0.4.24: %q, want not-authorized", got)
	}
	if got := conds(login("127.0.4.24", "one password")); !slices.Equal(got, []string{"temporary-auth-failure"}) {
		t.Errorf("the right password from 127.0.4.24 after a failure: %q, want temporary-auth-failure", got)
	}
	login("127.0.4.25", "one password").one(t, "login", "login-SCRAM-SHA-256")

	// SIGUSR1 drains too; the drained server keeps running and exits 0 on
	// SIGTERM.
	if err := p.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	// (A login client that just left may still count as a stream.)
	waitLog(t, p, `msg="drained: client streams closed"`)
	if accepts(p.addr) {
		t.Error("the drained server still accepts on c2s")
	}
	p.stop(t)
	if out := p.logs.String(); strings.Contains(out, "127.0.4.2") || strings.Contains(out, "PROXY protocol header refused") {
		t.Errorf("the server's output names a client address or refused a header:\n%s", out)
	}
}

// drainClient is a client script running in the background whose events
// the test reads as they come.
type drainClient struct {
	cmd    *exec.Cmd
	events chan event
	all    []event // every event, once the script has ended
	done   chan struct{}
	stderr bytes.Buffer
}

// startDrainClient runs clients/script like server.client, in the background.
func startDrainClient(t *testing.T, s *server, script, scenario string, timeout time.Duration, args ...string) *drainClient {
	t.Helper()
	path, err := filepath.Abs(filepath.Join("clients", script))
	if err != nil {
		t.Fatal(err)
	}
	argv := []string{path, "--cert", s.CertFile, "--timeout", fmt.Sprint(timeout.Seconds())}
	if testing.Verbose() && os.Getenv("E2E_DEBUG") != "" {
		argv = append(argv, "--debug")
	}
	argv = append(append(argv, scenario), args...)
	c := &drainClient{events: make(chan event, 10000), done: make(chan struct{})}
	c.cmd = exec.Command(python, argv...)
	c.cmd.Env = pythonEnv()
	c.cmd.Stderr = &c.stderr
	out, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(c.done)
		sc := bufio.NewScanner(out)
		sc.Buffer(nil, 4<<20)
		for sc.Scan() {
			var e event
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				// A scenario's own fields may not fit event's; its name
				// and client do, and decode reads the rest.
				var head struct{ Event, Client string }
				if json.Unmarshal(sc.Bytes(), &head) != nil {
					continue
				}
				e = event{Event: head.Event, Client: head.Client}
			}
			e.raw = slices.Clone(sc.Bytes())
			c.all = append(c.all, e)
			c.events <- e
		}
		c.cmd.Wait()
	}()
	t.Cleanup(func() {
		c.cmd.Process.Kill()
		<-c.done
		if t.Failed() || testing.Verbose() && os.Getenv("E2E_DEBUG") != "" {
			var b strings.Builder
			for _, e := range c.all {
				b.Write(e.raw)
				b.WriteByte('\n')
			}
			t.Logf("client %s events:\n%s\nstderr:\n%s", scenario, b.String(), c.stderr.String())
		}
	})
	return c
}

// wait returns the first event (from now on) for which match is true,
// failing the test if the script ends or within bound.
func (c *drainClient) wait(t *testing.T, what string, bound time.Duration, match func(event) bool) event {
	t.Helper()
	timer := time.NewTimer(bound)
	defer timer.Stop()
	for {
		select {
		case e := <-c.events:
			if e.Event == "error" || e.Event == "timeout" {
				t.Fatalf("waiting for %s, the client failed: %s (step %s)", what, e.Message, e.Step)
			}
			if match(e) {
				return e
			}
		case <-timer.C:
			t.Fatalf("no %s within %v", what, bound)
		}
	}
}

// TestDrainRollingRestart: one node behind HAProxy, whose checks ask
// /health (option httpchk, with the PROXY header: check-send-proxy) and
// whose connections carry PROXY v2. alice and bob (slixmpp, stream
// management with resumption) log in through HAProxy from 127.0.4.31;
// bob sends alice a stream of messages. Mid-stream, 'community drain':
// HAProxy's check gets 503 and marks the node down; both clients get
// <see-other-host/> naming HAProxy's address, after the server's <a h/>
// and their acknowledgements, and follow it (HAProxy has no node up and
// closes them; they retry). The node is stopped (SIGTERM, exit 0) and
// started again on the same data folder, as in a rolling upgrade;
// HAProxy marks it up, the clients get in (resumption fails on the new
// process: new sessions, with their offline messages), and bob sends
// more. Every message the server acknowledged to bob reaches alice. No
// client address appears in the server's output.
func TestDrainRollingRestart(t *testing.T) {
	hap := needHAProxy(t)
	bin := buildCommunity(t)
	data := t.TempDir()
	for _, a := range [][2]string{{"alice", "alicepw"}, {"bob", "bobpw"}} {
		runCommunity(t, bin, "adduser", "-data", data, "-password", a[1], a[0]+"@localhost")
	}
	front := freeAddrOn(t, "127.0.4.2")
	c2s, c2stls, httpAddr := trefftest.FreeAddr(t), trefftest.FreeAddr(t), trefftest.FreeAddr(t)
	args := []string{"-data", data, "-c2s", c2s, "-c2s-tls", c2stls, "-s2s", "", "-http", httpAddr, "-https", "",
		"-log-level", "debug", "-new-account-age", "0", "-limit-messages", "none", "-offline-limit", "5000",
		"-proxy-protocol", "yes", "-drain-see-other-host", front, "-drain-ack-wait", "5s"}
	start := func() *communityProc {
		t.Helper()
		p := &communityProc{logs: new(trefftest.LogBuffer), done: make(chan struct{}), addr: c2s, tls: c2stls,
			cert: filepath.Join(data, "cert.pem")}
		p.start(t, bin, args...)
		for range 400 {
			select {
			case <-p.done:
				t.Fatalf("server exited at start: %v\n%s", p.err, p.logs)
			default:
			}
			if strings.Contains(p.logs.String(), `msg="server started"`) {
				return p
			}
			time.Sleep(50 * time.Millisecond) // the process has no other notification
		}
		t.Fatalf("server not started within 20s:\n%s", p.logs)
		return nil
	}
	p := start()
	var outputs []string
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server output:\n%s\n%s", strings.Join(outputs, "\n--- restarted ---\n"), p.logs)
		}
	})
	_, hport, _ := net.SplitHostPort(httpAddr)
	h := startHAProxy(t, hap, `global
    stats socket {{.Sock}} mode 600 level admin
defaults
    mode tcp
    timeout connect 5s
    timeout client 2m
    timeout server 2m
    retries 1
frontend xmpp
    bind {{.Front}}
    default_backend nodes
backend nodes
    option httpchk GET /health
    http-check expect status 200
    server n1 {{.C2S}} send-proxy-v2 check port {{.HTTPPort}} check-send-proxy inter 100 fall 1 rise 1
`, map[string]string{"Front": front, "C2S": c2s, "HTTPPort": hport})
	h.waitServer(t, "nodes/n1", "UP")

	stop := filepath.Join(t.TempDir(), "stop")
	s := p.clients()
	cl := startDrainClient(t, s, "proxy.py", "drain", 150*time.Second, "--addr", front, "--source", "127.0.4.31",
		"--jid", "alice@localhost", "--password", "alicepw", "--peer", "bob@localhost", "--peer-password", "bobpw",
		"--stop", stop, "--wait", "10")
	cl.wait(t, "alice's 20th message", 60*time.Second, func(e event) bool {
		var m struct{ Name string }
		e.decode(t, &m)
		return e.Event == "marker" && m.Name == "ready"
	})

	out := runCommunity(t, bin, "drain", "-data", data)
	if out != "drain: 2 client streams closed; /health says draining\n" {
		t.Errorf("community drain printed %q", out)
	}
	row := h.waitServer(t, "nodes/n1", "DOWN")
	if !strings.HasPrefix(row["check_status"], "L7") || row["check_code"] != "503" {
		t.Errorf("haproxy's last check: %s %s, want a layer 7 check answered 503", row["check_status"], row["check_code"])
	}
	redirected := map[string]bool{}
	for len(redirected) < 2 {
		e := cl.wait(t, "see-other-host for both clients", 30*time.Second, func(e event) bool { return e.Event == "redirect" })
		if e.To != front {
			t.Errorf("%s sent to %q, want %q", e.Client, e.To, front)
		}
		redirected[e.Client] = true
	}

	p.stop(t)
	outputs = append(outputs, p.logs.String())
	p = start()
	h.waitServer(t, "nodes/n1", "UP")
	back := map[string]bool{}
	for len(back) < 2 {
		e := cl.wait(t, "a new session of both clients", 60*time.Second, func(e event) bool {
			var m struct{ N int }
			e.decode(t, &m)
			return e.Event == "session" && m.N >= 2
		})
		back[e.Client] = true
	}
	if err := os.WriteFile(stop, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	sum := cl.wait(t, "the summary", 60*time.Second, func(e event) bool { return e.Event == "summary" })
	var r struct {
		Sent     int
		Acked    []string
		Received []string
		Sessions map[string]int
	}
	sum.decode(t, &r)
	missing := 0
	for _, id := range r.Acked {
		if !slices.Contains(r.Received, id) {
			missing++
			t.Errorf("message %s was acknowledged to bob but never reached alice", id)
		}
	}
	if len(r.Acked) < 40 || r.Sessions["alice"] < 2 || r.Sessions["bob"] < 2 {
		t.Errorf("sent %d, %d acknowledged, sessions %v: want at least 40 acknowledged across two sessions each", r.Sent, len(r.Acked), r.Sessions)
	}
	t.Logf("bob sent %d messages, %d acknowledged, alice received %d; %d acknowledged missing", r.Sent, len(r.Acked), len(r.Received), missing)
	cl.wait(t, "the end of the client script", 30*time.Second, func(e event) bool { return e.Event == "done" })
	p.stop(t)
	outputs = append(outputs, p.logs.String())
	for _, o := range outputs {
		if strings.Contains(o, "127.0.4.31") {
			t.Errorf("the server's output names the clients' address:\n%s", o)
		}
	}
	if !strings.Contains(outputs[0], `msg="drained: client streams closed" streams=2`) {
		t.Errorf("the drained node did not log the drain")
	}
}
