package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/treff-im/treff/extdisco"
	"github.com/treff-im/treff/trefftest"
)

// needTool skips the test when a program is missing, or fails it when
// CI=true (CI installs it).
func needTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not found (CI=true: install it with apt-get install %s)", name, pkg)
		}
		t.Skipf("%s not found (apt-get install %s)", name, pkg)
	}
	return p
}

// startCoturn runs Debian's coturn on 127.0.0.6 with the TURN REST API
// shared secret, and returns its address.
func startCoturn(t *testing.T, secret string) string {
	t.Helper()
	bin := needTool(t, "turnserver", "coturn")
	dir := t.TempDir()
	for try := 0; ; try++ {
		port := 30000 + rand.IntN(20000)
		relay := 40000 + rand.IntN(10000)
		addr := net.JoinHostPort("127.0.0.6", strconv.Itoa(port))
		logs := new(trefftest.LogBuffer)
		cmd := exec.Command(bin, "-n", "--listening-ip=127.0.0.6", "--listening-port="+strconv.Itoa(port),
			"--relay-ip=127.0.0.6", "--min-port="+strconv.Itoa(relay), "--max-port="+strconv.Itoa(relay+50),
			"--use-auth-secret", "--static-auth-secret="+secret, "--realm=localhost",
			"--no-tls", "--no-dtls", "--no-cli", "--allow-loopback-peers", "--no-software-attribute",
			"--log-file=stdout", "--simple-log", "--pidfile="+filepath.Join(dir, "turn.pid"), "--userdb="+filepath.Join(dir, "turn.db"))
		cmd.Stdout, cmd.Stderr = logs, logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		t.Cleanup(func() {
			cmd.Process.Kill()
			<-done
		})
		for range 200 {
			select {
			case <-done:
			default:
				if accepts(addr) {
					return addr
				}
				time.Sleep(50 * time.Millisecond) // waiting for a process to listen: no event
				continue
			}
			break
		}
		if try == 2 {
			t.Fatalf("coturn did not start on %s:\n%s", addr, logs)
		}
	}
}

// allocate runs coturn's own client, turnutils_uclient, to allocate a
// relay with the credentials and send a few packets through it; it
// reports whether the allocation succeeded.
func allocate(t *testing.T, addr, user, pass string) (bool, string) {
	t.Helper()
	bin := needTool(t, "turnutils_uclient", "coturn")
	host, port, _ := net.SplitHostPort(addr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "-p", port, "-u", user, "-w", pass, "-y", "-c", "-n", "2", "-m", "1", host).CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("turnutils_uclient did not finish within 30s:\n%s", out)
	}
	return err == nil && !strings.Contains(string(out), "Cannot complete Allocation"), string(out)
}

// TestTURNCredentials: the example server lists a TURN server over
// XEP-0215 and hands out credentials from the shared secret; coturn (an
// independent TURN server, use-auth-secret) allocates a relay with them,
// refuses them with a wrong password, and refuses expired ones.
func TestTURNCredentials(t *testing.T) {
	const secret = "e2e-turn-secret"
	turn := startCoturn(t, secret)
	bin := buildCommunity(t)
	data := t.TempDir()
	runCommunity(t, bin, "adduser", "-data", data, "-password", "alicepw", "alice@localhost")
	p := startCommunity(t, withFlags(t, bin, "-turn", turn, "-stun", turn, "-turn-secret", secret, "-turn-ttl", "1h"), data)
	ts := crashClients(t, p)
	c := ts.Login(t, "alice", "alicepw", "phone")

	c.Send("<iq type='get' id='s' to='localhost'><services xmlns='urn:xmpp:extdisco:2'/></iq>")
	got := c.Expect(`(?s)<iq type='result' id='s'.*?</iq>`)
	host, port, _ := net.SplitHostPort(turn)
	for _, want := range []string{
		fmt.Sprintf("<service type='stun' host='%s' port='%s' transport='udp'/>", host, port),
		fmt.Sprintf("<service type='turn' host='%s' port='%s' transport='udp' restricted='1' username='", host, port),
		fmt.Sprintf("<service type='turn' host='%s' port='%s' transport='tcp' restricted='1' username='", host, port),
	} {
		if !strings.Contains(got, want) {
			t.Errorf("services lack %s:\n%s", want, got)
		}
	}
	c.Send("<iq type='get' id='c' to='localhost'><credentials xmlns='urn:xmpp:extdisco:2'><service type='turn' host='" + host + "'/></credentials></iq>")
	got = c.Expect(`(?s)<iq type='result' id='c'.*?</iq>`)
	m := regexp.MustCompile(`username='([^']+)' password='([^']+)' expires='([^']+)'`).FindStringSubmatch(got)
	if m == nil {
		t.Fatalf("no credentials: %s", got)
	}
	user, pass := m[1], m[2]
	if exp, err := time.Parse(time.RFC3339, m[3]); err != nil || exp.Before(time.Now().Add(50*time.Minute)) {
		t.Errorf("expires %q: not about an hour from now", m[3])
	}
	if strings.Contains(user, "alice") {
		t.Errorf("the TURN username %q names the user", user)
	}

	if ok, out := allocate(t, turn, user, pass); !ok {
		t.Fatalf("coturn refused the credentials Treff handed out:\n%s", out)
	}
	if ok, _ := allocate(t, turn, user, pass+"x"); ok {
		t.Errorf("coturn accepted a wrong password")
	}
	// Credentials built the same way, expired a minute ago.
	oldUser, oldPass := extdisco.Credentials(secret, time.Now().Add(-time.Minute))
	if ok, _ := allocate(t, turn, oldUser, oldPass); ok {
		t.Errorf("coturn accepted expired credentials")
	}
	p.stop(t)
}
