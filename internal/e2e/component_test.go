package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/treff-im/treff/trefftest"
)

// The tests in this file connect real, independently written external
// components (XEP-0114) to the example server binary: Debian's biboumi
// (an IRC gateway, in C++) and slixmpp's ComponentXMPP.

const (
	ircDomain = "irc.localhost"
	ircSecret = "biboumi-e2e-secret"
	botDomain = "bot.localhost"
	botSecret = "slixmpp-e2e-secret"
)

// biboumi is a running biboumi process.
type biboumi struct {
	cmd  *exec.Cmd
	logs *trefftest.LogBuffer
	done chan struct{}
	err  error // of Wait, valid after done
}

// startBiboumi runs biboumi for ircDomain with secret against the
// component listener at addr: no identd (its default is port 113 on every
// address), its database in a temporary folder, debug logs (which show
// the XML) in b.logs. No IRC server is needed for what the tests ask it.
// The process is killed when the test ends if it still runs.
func startBiboumi(t *testing.T, addr, secret string) *biboumi {
	t.Helper()
	bin := needTool(t, "biboumi", "biboumi")
	dir := t.TempDir()
	host, port, _ := strings.Cut(addr, ":")
	cfg := strings.Join([]string{
		"hostname=" + ircDomain,
		"password=" + secret,
		"xmpp_server_ip=" + host,
		"port=" + port,
		"identd_port=0",
		"log_level=0",
		"db_name=" + filepath.Join(dir, "biboumi.sqlite"),
		"policy_directory=" + dir,
		"realname_customization=false",
	}, "\n") + "\n"
	file := filepath.Join(dir, "biboumi.cfg")
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	b := &biboumi{logs: new(trefftest.LogBuffer), done: make(chan struct{})}
	b.cmd = exec.Command(bin, file)
	// Only the configuration file: no BIBOUMI_* variable may override it.
	b.cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	b.cmd.Stdout, b.cmd.Stderr = b.logs, b.logs
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { b.err = b.cmd.Wait(); close(b.done) }()
	t.Cleanup(func() {
		select {
		case <-b.done:
		default:
			b.cmd.Process.Kill()
			<-b.done
		}
		if t.Failed() {
			t.Logf("biboumi output:\n%s", b.logs)
		}
	})
	return b
}

// wait waits (at most 20 s) for biboumi to exit and returns its exit
// code.
func (b *biboumi) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-b.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("biboumi did not exit within 20s\n%s", b.logs)
	}
	var ee *exec.ExitError
	if errors.As(b.err, &ee) {
		return ee.ExitCode()
	}
	if b.err != nil {
		t.Fatalf("biboumi: %v", b.err)
	}
	return 0
}

// stop ends biboumi with SIGTERM, as an init system does.
func (b *biboumi) stop(t *testing.T) {
	t.Helper()
	b.cmd.Process.Signal(syscall.SIGTERM)
	b.wait(t)
}

// waitLog waits (at most 20 s) until the server's log holds n lines with
// all the given pieces: the server logs each component event, and the
// log is how the test learns of it.
func (p *communityProc) waitLog(t *testing.T, n int, pieces ...string) {
	t.Helper()
	count := func() int {
		c := 0
		for _, line := range strings.Split(p.logs.String(), "\n") {
			if !slices.ContainsFunc(pieces, func(s string) bool { return !strings.Contains(line, s) }) {
				c++
			}
		}
		return c
	}
	deadline := time.Now().Add(20 * time.Second)
	for count() < n {
		if time.Now().After(deadline) {
			t.Fatalf("the server did not log %d lines with %q within 20s", n, pieces)
		}
		select {
		case <-p.done:
			t.Fatalf("the server exited: %v", p.err)
		case <-time.After(10 * time.Millisecond): // polling a log: no event to wait on
		}
	}
}

// TestExternalComponents: the example server with two external
// components configured (-component-listen, -component).
//
//   - biboumi with a wrong secret is refused with <not-authorized/> (the
//     server logs it; biboumi logs the stream error and exits 1);
//     with the right one it connects, and a user's disco#info of
//     irc.localhost and of an IRC server's and channel's JIDs are answered
//     by biboumi (no IRC server is contacted for these); the server's
//     disco#items lists both component domains. A second biboumi for the
//     same domain gets <conflict/> and exits; the first keeps serving.
//   - slixmpp's ComponentXMPP on bot.localhost exchanges messages with a
//     user both ways, and sending as admin@localhost closes its stream
//     with <invalid-from/>; the user never gets that message.
func TestExternalComponents(t *testing.T) {
	needSlixmpp(t)
	bin := buildCommunity(t)
	data := t.TempDir()
	runCommunity(t, bin, "adduser", "-data", data, "-password", alicePW, "alice@localhost")
	compAddr := trefftest.FreeAddr(t)
	p := startCommunity(t, withFlags(t, bin, "-component-listen", compAddr,
		"-component", ircDomain+"="+ircSecret+","+botDomain+"="+botSecret), data)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server output:\n%s", p.logs)
		}
	})
	s := p.clients()

	t.Run("Biboumi", func(t *testing.T) {
		bad := startBiboumi(t, compAddr, "wrong-secret")
		if code := bad.wait(t); code == 0 {
			t.Errorf("biboumi with a wrong secret exited 0")
		}
		p.waitLog(t, 1, `msg="component refused"`, "domain="+ircDomain, `why="wrong handshake"`)
		if out := bad.logs.String(); !strings.Contains(out, "<not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>") {
			t.Errorf("biboumi did not receive <not-authorized/>:\n%s", out)
		}

		good := startBiboumi(t, compAddr, ircSecret)
		p.waitLog(t, 1, `msg="component connected"`, "domain="+ircDomain)

		ask := func(t *testing.T) {
			t.Helper()
			es := s.client(t, "component.py", "disco_info", "--jid", "alice@localhost", "--password", alicePW,
				"--info-to", ircDomain, "--info-to", "irc.example.org@"+ircDomain, "--info-to", "#treff%irc.example.org@"+ircDomain)
			var got []string
			for _, e := range es.of("disco_info", "alice") {
				var r struct {
					SentTo     string `json:"sent_to"`
					Type       string `json:"type"`
					Identities []struct{ Category, Type, Name string }
					Features   []string
				}
				e.decode(t, &r)
				if r.Type != "result" || len(r.Identities) == 0 {
					t.Errorf("disco#info of %s: %s", r.SentTo, e.raw)
					continue
				}
				id := r.Identities[0]
				got = append(got, fmt.Sprintf("%s: %s/%s %q", r.SentTo, id.Category, id.Type, id.Name))
				if !slices.Contains(r.Features, "http://jabber.org/protocol/muc") {
					t.Errorf("disco#info of %s lacks the MUC feature: %s", r.SentTo, e.raw)
				}
			}
			want := []string{
				ircDomain + `: conference/irc "Biboumi XMPP-IRC gateway"`,
				"irc.example.org@" + ircDomain + `: conference/irc "IRC server irc.example.org over Biboumi"`,
				"#treff%irc.example.org@" + ircDomain + `: conference/irc "#treff on irc.example.org"`,
			}
			if !slices.Equal(got, want) {
				t.Errorf("biboumi's disco#info answers:\n%q\nwant\n%q", got, want)
			}
			var items struct{ JIDs []string }
			es.one(t, "items", "alice").decode(t, &items)
			for _, d := range []string{ircDomain, botDomain} {
				if !slices.Contains(items.JIDs, d) {
					t.Errorf("the server's disco#items %q lack %s", items.JIDs, d)
				}
			}
		}
		ask(t)

		second := startBiboumi(t, compAddr, ircSecret)
		if code := second.wait(t); code == 0 {
			t.Errorf("a second biboumi for the same domain exited 0")
		}
		if out := second.logs.String(); !strings.Contains(out, "<conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>") {
			t.Errorf("the second biboumi did not receive <conflict/>:\n%s", out)
		}
		select {
		case <-good.done:
			t.Fatalf("the first biboumi exited: %v", good.err)
		default:
		}
		ask(t) // still answered by the first

		good.stop(t)
		p.waitLog(t, 1, `msg="component disconnected"`, "domain="+ircDomain)
	})

	t.Run("SlixmppComponent", func(t *testing.T) {
		body := uniqueBody("component")
		es := s.client(t, "component.py", "chat", "--jid", "alice@localhost", "--password", alicePW,
			"--component-addr", compAddr, "--component-domain", botDomain, "--component-secret", botSecret, "--body", body)
		aliceJID := es.one(t, "login", "alice").JID
		cm := es.one(t, "component_message", "component")
		if cm.From != aliceJID || cm.To != "bot@"+botDomain || cm.Body != "to component "+body {
			t.Errorf("the component got from=%q to=%q body=%q; want alice's message from %s", cm.From, cm.To, cm.Body, aliceJID)
		}
		var answered bool
		for _, m := range es.of("message", "alice") {
			if m.From == "bot@"+botDomain && m.Body == "from component "+body {
				answered = true
			}
		}
		if !answered {
			t.Errorf("alice did not get the component's answer")
		}
		se := es.one(t, "stream_error", "component")
		if !slices.Equal(se.Conditions, []string{"invalid-from"}) {
			t.Errorf("the component's stream error: %v, want invalid-from", se.Conditions)
		}
		var recv struct{ Bodies []string }
		es.one(t, "received", "alice").decode(t, &recv)
		for _, b := range recv.Bodies {
			if strings.Contains(b, "spoofed") {
				t.Errorf("alice got the message sent as admin@localhost: %q", b)
			}
		}
		p.waitLog(t, 1, `msg="component sent from another domain"`, "domain="+botDomain, "from=admin@localhost")
	})

	p.stop(t)
}
