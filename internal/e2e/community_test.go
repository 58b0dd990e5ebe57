package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/treff-im/treff/trefftest"
)

// The tests in this file run the IM scenarios of clients/im.py against the
// real example server (examples/community), built as a binary and started
// as its own process with a data folder, not against the in-process
// trefftest server: accounts are created with its adduser subcommand, it
// serves its own self-signed certificate (DATA/cert.pem), and it must exit
// cleanly on SIGTERM. Its store is not reachable from here, so what was
// stored is checked through the clients.

// raceBuild reports whether this test binary was built with -race (the
// server binary is then built with -race too).
func raceBuild() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// buildCommunity builds examples/community into a temporary folder.
func buildCommunity(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "community")
	args := []string{"build", "-o", bin}
	if raceBuild() {
		args = append(args, "-race")
	}
	args = append(args, "./examples/community")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = filepath.Join("..", "..") // the module root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %q: %v\n%s", args, err, out)
	}
	return bin
}

// communityEnv is the environment of the binary: without the race
// detector's one-second sleep at exit.
func communityEnv() []string {
	env := os.Environ()
	if raceBuild() && os.Getenv("GORACE") == "" {
		env = append(env, "GORACE=atexit_sleep_ms=0")
	}
	return env
}

// runCommunity runs a subcommand of the binary to completion (at most 30s)
// and fails the test unless it exits 0.
func runCommunity(t *testing.T, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = communityEnv()
	cmd.Stdin = strings.NewReader("")
	cmd.WaitDelay = 2 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("community %q did not finish within 30s\nstdout: %s\nstderr: %s", args, &stdout, &stderr)
	}
	if err != nil {
		t.Fatalf("community %q: %v\nstdout: %s\nstderr: %s", args, err, &stdout, &stderr)
	}
	return stdout.String()
}

// communityProc is a running community server process.
type communityProc struct {
	cmd  *exec.Cmd
	logs *trefftest.LogBuffer
	done chan struct{}
	err  error // of Wait, valid after done
	addr string
	tls  string
	cert string
}

// startCommunity starts the binary on fresh loopback ports and waits until
// it accepts connections on both listeners; if a port was taken in the
// meantime, it tries again with others. The process is killed when the
// test ends if it still runs.
func startCommunity(t *testing.T, bin, data string) *communityProc {
	t.Helper()
	for try := 1; ; try++ {
		p, err := tryStartCommunity(t, bin, data)
		if err == nil {
			return p
		}
		if try == 3 || !strings.Contains(p.logs.String(), "address already in use") {
			t.Fatalf("%v\nserver output:\n%s", err, p.logs)
		}
	}
}

// start runs the binary with args, its output going to p.logs; the
// process is killed when the test ends if it still runs.
func (p *communityProc) start(t *testing.T, bin string, args ...string) {
	t.Helper()
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = communityEnv()
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
	})
}

func tryStartCommunity(t *testing.T, bin, data string) (*communityProc, error) {
	t.Helper()
	p := &communityProc{logs: new(trefftest.LogBuffer), done: make(chan struct{}),
		addr: trefftest.FreeAddr(t), tls: trefftest.FreeAddr(t), cert: filepath.Join(data, "cert.pem")}
	// -new-account-age 0: the tests' accounts are all fresh, and most
	// tests are about other things than the limits for new accounts
	// (spambot_test.go sets its own age, which comes later and wins).
	p.start(t, bin, "-data", data, "-c2s", p.addr, "-c2s-tls", p.tls, "-s2s", "", "-http", "", "-https", "", "-log-level", "debug",
		"-new-account-age", "0")
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-p.done:
			return p, fmt.Errorf("server exited early: %v", p.err)
		default:
		}
		if accepts(p.addr) && accepts(p.tls) {
			if _, err := os.Stat(p.cert); err == nil {
				return p, nil
			}
		}
		if time.Now().After(deadline) {
			return p, errors.New("server not ready within 20s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func accepts(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// stop sends SIGTERM and checks that the server exits with status 0
// within 15 seconds.
func (p *communityProc) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		t.Fatalf("server did not exit within 15s of SIGTERM\nserver output:\n%s", p.logs)
	}
	if p.err != nil {
		t.Fatalf("server exit after SIGTERM: %v\nserver output:\n%s", p.err, p.logs)
	}
}

// clients returns a server value for the client helpers (slix, im): only
// the address, the certificate and the domain are set, nothing in-process.
func (p *communityProc) clients() *server {
	return &server{Server: &trefftest.Server{Domain: "localhost", Addr: p.addr, TLSAddr: p.tls, CertFile: p.cert}}
}

// TestCommunityBinaryIM: the example server binary, driven by slixmpp,
// does what the IM tests check in-process: alice and bob subscribe to
// each other while online (both rosters end at 'both' and each sees the
// other online and his status change), and a chat message from carol to
// dave while he is offline reaches dave after his initial presence with a
// <delay/> from the server, once: a second login gets nothing (it was
// deleted after delivery). The server then exits 0 on SIGTERM.
func TestCommunityBinaryIM(t *testing.T) {
	needSlixmpp(t)
	bin := buildCommunity(t)
	data := t.TempDir()
	const carolPW, davePW = "carol pässwörd", "dave-pw"
	for _, a := range [][2]string{
		{"alice@localhost", alicePW}, {"bob@localhost", bobPW},
		{"carol@localhost", carolPW}, {"dave@localhost", davePW},
	} {
		runCommunity(t, bin, "adduser", "-data", data, "-password", a[1], a[0])
	}
	p := startCommunity(t, bin, data)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server output:\n%s", p.logs)
		}
	})
	s := p.clients()

	// The accounts, through the running server's admin socket.
	users := strings.Fields(runCommunity(t, bin, "users", "-data", data))
	if want := []string{"alice@localhost", "bob@localhost", "carol@localhost", "dave@localhost"}; !slices.Equal(users, want) {
		t.Errorf("users: %q, want %q", users, want)
	}

	t.Run("SubscribeOnline", func(t *testing.T) {
		body := uniqueBody("community-subscribe")
		es := s.im(t, "subscribe_online", "--jid", "alice@localhost", "--password", alicePW,
			"--peer", "bob@localhost", "--peer-password", bobPW, "--body", body)
		aliceJID := es.one(t, "login", "alice").JID
		bobJID := es.one(t, "login", "bob").JID
		for _, c := range []struct{ name, peer, peerFull, status string }{
			{"alice", "bob@localhost", bobJID, "bob " + body},
			{"bob", "alice@localhost", aliceJID, "alice " + body},
		} {
			st := imStateOf(t, es, c.name)
			checkRoster(t, c.name, st, c.peer, "both")
			if !slices.Contains(st.Online, c.peerFull) {
				t.Errorf("%s: got_online for %q, want %s among them", c.name, st.Online, c.peerFull)
			}
			sawStatus := false
			for _, pr := range presences(t, es, c.name) {
				if pr.Type == "" && pr.From == c.peerFull && pr.Status == c.status {
					sawStatus = true
				}
			}
			if !sawStatus {
				t.Errorf("%s did not see %s's status change", c.name, c.peerFull)
			}
		}
	})

	t.Run("OfflineMessage", func(t *testing.T) {
		body := uniqueBody("community-offline")
		t0 := time.Now().Truncate(time.Millisecond)
		es := s.slix(t, "send", "--jid", "carol@localhost", "--password", carolPW, "--to", "dave@localhost", "--body", body)
		t1 := time.Now()
		carolJID := es.one(t, "login", "alice").JID // slix.py's first client is named alice
		if got := es.of("message", "alice"); len(got) != 0 {
			t.Errorf("carol got %+v, want nothing (no error for a stored message)", got)
		}

		type offlineWait struct {
			Before int `json:"before_presence"`
			After  int `json:"after_presence"`
		}
		es = s.im(t, "offline_login", "--jid", "dave@localhost", "--password", davePW, "--wait", "3")
		var wait offlineWait
		es.one(t, "offline_wait", "bob").decode(t, &wait)
		msgs := es.of("message", "bob")
		if wait.Before != 0 {
			t.Errorf("dave got %d messages before his initial presence, want 0", wait.Before)
		}
		if wait.After != 1 || len(msgs) != 1 {
			t.Fatalf("dave got %d messages after his initial presence (%d in all), want the stored one", wait.After, len(msgs))
		}
		m := msgs[0]
		if m.From != carolJID || m.To != "dave@localhost" || m.Type != "chat" || m.Body != body {
			t.Errorf("got from=%q to=%q type=%q body=%q; want carol's chat message from %s to dave@localhost with body %q",
				m.From, m.To, m.Type, m.Body, carolJID, body)
		}
		var d struct {
			RawStamp string `json:"raw_stamp"`
			From     string `json:"delay_from"`
		}
		es.one(t, "delay", "bob").decode(t, &d)
		if d.From != "localhost" {
			t.Errorf("delay from %q, want the server, localhost", d.From)
		}
		stamp, err := time.Parse(time.RFC3339Nano, d.RawStamp)
		if err != nil {
			t.Fatalf("delay stamp %q: %v", d.RawStamp, err)
		}
		if !strings.HasSuffix(d.RawStamp, "Z") || stamp.Before(t0) || stamp.After(t1) {
			t.Errorf("delay stamp %s, want a UTC time between %s and %s (when carol sent it)", d.RawStamp,
				t0.UTC().Format(time.RFC3339Nano), t1.UTC().Format(time.RFC3339Nano))
		}

		// Delivered once: the server deleted it, so a second login (after
		// the first session ended) gets nothing within a second.
		es = s.im(t, "offline_login", "--jid", "dave@localhost", "--password", davePW, "--wait", "1")
		wait = offlineWait{}
		es.one(t, "offline_wait", "bob").decode(t, &wait)
		if got := es.of("message", "bob"); wait.Before != 0 || wait.After != 0 || len(got) != 0 {
			t.Errorf("dave's second login got %d+%d messages (%+v), want none: the stored message was not deleted after delivery",
				wait.Before, wait.After, got)
		}
		if got := es.of("delay", "bob"); len(got) != 0 {
			t.Errorf("dave's second login got delayed messages %+v, want none", got)
		}
	})

	p.stop(t)
}

// startAlice builds the example server, creates alice@localhost (alicePW)
// in a new data folder, starts it and logs its output if the test fails.
func startAlice(t *testing.T) (p *communityProc, data string) {
	t.Helper()
	bin := buildCommunity(t)
	data = t.TempDir()
	runCommunity(t, bin, "adduser", "-data", data, "-password", alicePW, "alice@localhost")
	p = startCommunity(t, bin, data)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server output:\n%s", p.logs)
		}
	})
	return p, data
}
