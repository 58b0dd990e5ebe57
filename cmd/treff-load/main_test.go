package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/fast"
	"github.com/treff-im/treff/im"
	"github.com/treff-im/treff/internal/certs"
	treffmuc "github.com/treff-im/treff/muc"
	"github.com/treff-im/treff/sasl2"
	"github.com/treff-im/treff/trefftest"
)

func testConfig(addr, scenario, mech string, users int) config {
	return config{addr: addr, domain: "localhost", prefix: "load", password: "loadtest-password",
		mech: mech, scenario: scenario, users: users, duration: 500 * time.Millisecond,
		pids: []int{os.Getpid()}, insecure: true, timeout: 5 * time.Second, contacts: 4, concurrency: 8,
		room: "load@conference.localhost"}
}

func TestScenarios(t *testing.T) {
	ts := trefftest.NewServer(t, func(s *treff.Server) { s.Modules = append(im.Modules(), &treffmuc.Module{}) })
	for i := 0; i < 10; i++ {
		ts.AddUser(t, fmt.Sprintf("load%d", i), "loadtest-password")
	}
	for _, tc := range []struct {
		scenario, mech string
		users          int
		rate           float64
		rounds         int
	}{
		{"login", "SCRAM-SHA-256", 4, 0, 0}, {"chat", "PLAIN", 4, 0, 0}, {"chat", "SCRAM-SHA-1", 4, 50, 0},
		{"idle", "PLAIN", 4, 0, 0}, {"presence", "PLAIN", 10, 0, 2}, {"muc", "PLAIN", 5, 0, 0},
	} {
		t.Run(tc.scenario+"-"+tc.mech, func(t *testing.T) {
			c := testConfig(ts.Addr, tc.scenario, tc.mech, tc.users)
			c.rate, c.rounds = tc.rate, tc.rounds
			r, err := run(context.Background(), c)
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			r.print(&out)
			t.Log(out.String())
			if r.errors != 0 || r.ops == 0 {
				t.Fatalf("errors=%d ops=%d first=%s", r.errors, r.ops, r.firstErr)
			}
			if tc.rounds > 0 {
				// Lockstep rounds: every user logs in once a round, and of
				// each pair of contacts one measures the other's broadcast.
				if want := int64(tc.rounds * tc.users * c.contacts / 2); r.ops != want || len(r.latencies) != int(want) {
					t.Errorf("ops=%d latencies=%d, want %d", r.ops, len(r.latencies), want)
				}
				if want := int64(tc.rounds * tc.users); r.logins != want {
					t.Errorf("logins=%d, want %d", r.logins, want)
				}
			}
			if tc.scenario == "chat" || tc.scenario == "presence" || tc.scenario == "muc" {
				if len(r.latencies) == 0 || !strings.Contains(out.String(), "latency p50=") {
					t.Error("no latencies")
				}
			}
			if r.rss1 == 0 || !strings.Contains(out.String(), "server rss_before=") {
				t.Error("no /proc readings")
			}
			out.Reset()
			r.printJSON(&out)
			var js map[string]any
			if err := json.Unmarshal(out.Bytes(), &js); err != nil || js["ops"] != float64(r.ops) || js["cpu_s"] == nil {
				t.Errorf("json %s: %v", out.String(), err)
			}
		})
	}
	// Presence for a duration: how many broadcasts land in a user's
	// online window depends on how fast logins are (a login slower than
	// the 250 ms cycle leaves no window at all), so only invariants hold.
	t.Run("presence-duration", func(t *testing.T) {
		c := testConfig(ts.Addr, "presence", "PLAIN", 10)
		c.rate = 4
		r, err := run(context.Background(), c)
		if err != nil {
			t.Fatal(err)
		}
		if r.errors != 0 || r.logins < int64(c.users) || len(r.latencies) != int(r.ops) || r.ops > r.logins*int64(c.contacts) {
			t.Errorf("errors=%d first=%s logins=%d ops=%d latencies=%d", r.errors, r.firstErr, r.logins, r.ops, len(r.latencies))
		}
	})

	// The presence setup made every user a mutual contact of its four ring
	// neighbours.
	alice := ts.Login(t, "load0", "loadtest-password", "check")
	alice.Send("<iq type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>")
	roster := alice.Expect(`<iq type='result' id='r'.*?</iq>`)
	for _, c := range []string{"load1@localhost", "load2@localhost", "load8@localhost", "load9@localhost"} {
		if !strings.Contains(roster, "jid='"+c+"' subscription='both'") {
			t.Errorf("roster of load0 lacks %s as both: %s", c, roster)
		}
	}
	if strings.Count(roster, "<item ") != 4 {
		t.Errorf("roster of load0: %s", roster)
	}

	// A wrong password is counted as an error, not a hang.
	c := testConfig(ts.Addr, "idle", "PLAIN", 2)
	c.password, c.pids, c.duration = "wrong", nil, 100*time.Millisecond
	if _, err := run(context.Background(), c); err == nil || !strings.Contains(err.Error(), "authentication failed") {
		t.Errorf("wrong password: %v", err)
	}
}

// The account hooks get every account on standard input, once each.
func TestAccountCommands(t *testing.T) {
	ts := trefftest.NewServer(t, nil)
	dir := t.TempDir()
	created, deleted := filepath.Join(dir, "created"), filepath.Join(dir, "deleted")
	c := testConfig(ts.Addr, "idle", "PLAIN", 2)
	c.prefix, c.password = "hook", "pw"
	c.createCmd = "cat > " + created
	c.deleteCmd = "cat > " + deleted
	// The accounts do not exist in ts: logins fail, the hooks run anyway.
	if _, err := run(context.Background(), c); err == nil {
		t.Error("logins without accounts succeeded")
	}
	for file, want := range map[string]string{created: "hook0 pw\nhook1 pw\n", deleted: "hook0\nhook1\n"} {
		if got, err := os.ReadFile(file); err != nil || string(got) != want {
			t.Errorf("%s: %q %v, want %q", filepath.Base(file), got, err, want)
		}
	}
	c.createCmd = "exit 3"
	if _, err := run(context.Background(), c); err == nil || !strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("failing create command: %v", err)
	}
}

// The relay baseline: clients exchange the same stanzas through
// bench/relay.
func TestRelay(t *testing.T) {
	if testing.Short() {
		t.Skip("builds bench/relay")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "relay")
	if out, err := exec.Command("go", "build", "-o", bin, "../../bench/relay").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	if _, err := certs.LoadOrCreate(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), "localhost"); err != nil {
		t.Fatal(err)
	}
	addr := trefftest.FreeAddr(t)
	cmd := exec.Command(bin, "-addr", addr, "-cert", filepath.Join(dir, "cert.pem"), "-key", filepath.Join(dir, "key.pem"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	c := testConfig(addr, "chat", "PLAIN", 4)
	c.relay, c.pids = true, []int{cmd.Process.Pid}
	// The relay says nothing when it listens: poll its port (a refused
	// connection), bounded by a deadline rather than a count so that a slow
	// start on a loaded machine still gets 30 seconds.
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		r, err := run(context.Background(), c)
		if err != nil && strings.Contains(err.Error(), "connection refused") {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if r.errors != 0 || r.ops == 0 || len(r.latencies) == 0 {
			t.Fatalf("errors=%d ops=%d first=%s", r.errors, r.ops, r.firstErr)
		}
		return
	}
	t.Fatal("relay did not start")
}

// TestModernLogin: -sasl2 logs in with SASL2 and Bind 2, -fast then with
// FAST tokens; both with stream management enabled in Bind 2. With
// -resume each user's reconnects resume its stream (the tool checks for
// <resumed/>): inline in SASL2, or after RFC 6120 SASL.
func TestModernLogin(t *testing.T) {
	tokens := &fast.Module{Secret: []byte("treff-load test secret, 32 bytes")}
	ts := trefftest.NewServer(t, func(s *treff.Server) {
		s.Modules = im.Modules()
		for _, m := range s.Modules {
			if s2, ok := m.(*sasl2.Module); ok {
				s2.Inline = append(s2.Inline, tokens)
			}
		}
		s.Modules = append(s.Modules, tokens)
	})
	for i := 0; i < 4; i++ {
		ts.AddUser(t, fmt.Sprintf("load%d", i), "loadtest-password")
	}
	for _, mode := range []string{"sasl2", "fast", "resume", "sasl2-resume", "fast-resume"} {
		t.Run(mode, func(t *testing.T) {
			fastTokens.Clear()
			c := testConfig(ts.Addr, "login", "SCRAM-SHA-256", 4)
			c.sm, c.resume = true, strings.HasSuffix(mode, "resume")
			c.sasl2 = strings.HasPrefix(mode, "sasl2") || strings.HasPrefix(mode, "fast")
			c.fast = strings.HasPrefix(mode, "fast")
			r, err := run(context.Background(), c)
			if err != nil {
				t.Fatal(err)
			}
			if r.errors != 0 || r.ops < 8 {
				t.Fatalf("errors=%d ops=%d first=%s", r.errors, r.ops, r.firstErr)
			}
			if c.fast {
				n := 0
				fastTokens.Range(func(_, v any) bool {
					if tok := v.(*fastToken); tok.token != "" && tok.count > 0 {
						n++
					}
					return true
				})
				if n != 4 {
					t.Errorf("%d users logged in with a FAST token, want 4", n)
				}
			}
		})
	}
}

// With several -addr, client i connects to the i-th address modulo
// their number: the chat pairs (0,1), (2,3)... span two of them.
func TestAddrFor(t *testing.T) {
	c := config{prefix: "load", addr: "127.0.0.2:5222, 127.0.0.3:5222,127.0.0.4:5222"}
	for user, want := range map[string]string{"load0": "127.0.0.2:5222", "load1": "127.0.0.3:5222", "load2": "127.0.0.4:5222", "load3": "127.0.0.2:5222", "load10": "127.0.0.3:5222"} {
		if got := c.addrFor(user); got != want {
			t.Errorf("addrFor(%s) = %s, want %s", user, got, want)
		}
	}
	one := config{prefix: "load", addr: "127.0.0.1:5222"}
	if got := one.addrFor("load7"); got != "127.0.0.1:5222" {
		t.Errorf("one address: %s", got)
	}
}
