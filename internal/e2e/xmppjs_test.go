package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The test in this file drives the group chat service (XEP-0045) of the
// example server binary with a second, independent client library:
// xmpp.js (@xmpp/client from npm, pinned in js/package.json and
// js/package-lock.json), run by Node with the scenario js/muc.mjs. It
// prints the same kinds of JSON lines as clients/muc.py (muc_presence,
// muc_message, with the same fields), so the helpers of muc_test.go read
// them.

// jsDir holds the xmpp.js scenarios and their npm packages.
const jsDir = "js"

// nodeMin is the oldest Node that @xmpp/client 0.14 supports (its
// "engines").
var nodeMin = [2]int{20, 10}

var (
	nodeOnce sync.Once
	nodeErr  error
	nodeSkip bool // nodeErr means "not installed here", not "broken"
)

// needXMPPJS skips the test when node is not on PATH (or too old), or fails
// it when CI=true (.ci/run installs it). It runs 'npm ci' in js/ when
// node_modules is missing or older than package-lock.json.
func needXMPPJS(t *testing.T) {
	t.Helper()
	nodeOnce.Do(func() { nodeSkip, nodeErr = setupXMPPJS() })
	if nodeErr == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%v (CI=true: .ci/run installs nodejs and npm and runs npm ci --prefix internal/e2e/js)", nodeErr)
	}
	if nodeSkip {
		t.Skipf("%v (install Node >= %d.%d and npm, then npm ci --prefix internal/e2e/js)", nodeErr, nodeMin[0], nodeMin[1])
	}
	t.Fatal(nodeErr)
}

func setupXMPPJS() (skip bool, err error) {
	node, err := exec.LookPath("node")
	if err != nil {
		return true, fmt.Errorf("xmpp.js tests need node: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, node, "--version").Output()
	if err != nil {
		return true, fmt.Errorf("%s --version: %v", node, err)
	}
	m := regexp.MustCompile(`^v(\d+)\.(\d+)\.`).FindStringSubmatch(string(out))
	if m == nil {
		return true, fmt.Errorf("%s --version printed %q", node, out)
	}
	major, _ := strconv.Atoi(m[1])
	minor, _ := strconv.Atoi(m[2])
	if major < nodeMin[0] || major == nodeMin[0] && minor < nodeMin[1] {
		return true, fmt.Errorf("xmpp.js tests need Node >= %d.%d, %s is %s", nodeMin[0], nodeMin[1], node, bytes.TrimSpace(out))
	}

	// npm ci writes node_modules/.package-lock.json last.
	lock, err := os.Stat(filepath.Join(jsDir, "package-lock.json"))
	if err != nil {
		return false, err
	}
	if hidden, err := os.Stat(filepath.Join(jsDir, "node_modules", ".package-lock.json")); err == nil && !hidden.ModTime().Before(lock.ModTime()) {
		return false, nil
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		return true, fmt.Errorf("%s/node_modules is missing or stale and npm is not on PATH: %v", jsDir, err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund", "--loglevel=error")
	cmd.Dir = jsDir
	cmd.WaitDelay = 2 * time.Second
	if out, err := cmd.CombinedOutput(); err != nil {
		// Most likely no registry from here: a missing setup, not a bug.
		return true, fmt.Errorf("npm ci in %s: %v\n%s", jsDir, err, out)
	}
	return false, nil
}

// nodeEnv is the environment of the scenarios: the server's self-signed
// certificate trusted (xmpp.js checks it), and nothing that would change
// what Node loads or turn certificate checks off.
func nodeEnv(cert string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if k == "NODE_OPTIONS" || k == "NODE_PATH" || k == "NODE_TLS_REJECT_UNAUTHORIZED" || k == "NODE_EXTRA_CA_CERTS" {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "NODE_EXTRA_CA_CERTS="+cert)
}

// xmppjs runs js/script against the server p with the arguments and
// returns the events it printed. It must exit 0 after a "done" event.
func xmppjs(t *testing.T, p *communityProc, script string, args ...string) events {
	t.Helper()
	needXMPPJS(t)
	argv := []string{filepath.Join(jsDir, script), "--addr", p.addr, "--timeout", fmt.Sprint(scriptTimeout.Seconds())}
	if testing.Verbose() && os.Getenv("E2E_DEBUG") != "" {
		argv = append(argv, "--debug")
	}
	argv = append(argv, args...)
	return runClient(t, "node "+script, nodeEnv(p.cert), "node", argv...)
}

// TestXMPPJSMUC: xmpp.js, a client independent of slixmpp, logs alice and
// bob in over STARTTLS (SCRAM-SHA-1, the certificate checked), alice
// creates a room (110 and 201, owner and moderator) and unlocks it with an
// empty owner form, bob joins (alice's presence before his own, 110, not
// 201), each gets both groupchat messages once, each gets the other's
// private message from the room with a muc#user <x/>, alice kicks bob
// (he gets 110 and 307, she 307, both with role none and the reason), bob
// rejoins (history now delayed) and leaves, alice leaves; no error
// anywhere, and the server then exits 0 on SIGTERM.
func TestXMPPJSMUC(t *testing.T) {
	needXMPPJS(t)
	bin := buildCommunity(t)
	data := t.TempDir()
	for _, a := range [][2]string{{"alice@localhost", alicePW}, {"bob@localhost", bobPW}} {
		runCommunity(t, bin, "adduser", "-data", data, "-password", a[1], a[0])
	}
	p := startCommunity(t, bin, data)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server output:\n%s", p.logs)
		}
	})

	const room = "xmppjs@" + mucService
	body := uniqueBody("xmppjs-muc")
	es := xmppjs(t, p, "muc.mjs", "--jid", "alice@localhost", "--password", alicePW,
		"--peer", "bob@localhost", "--peer-password", bobPW,
		"--room", "xmppjs", "--service", mucService, "--body", body)

	type login struct {
		JID        string `json:"jid"`
		TLS        string `json:"tls"`
		Authorized bool   `json:"authorized"`
		Mech       string `json:"mech"`
	}
	jids := map[string]string{}
	for _, c := range []string{"alice", "bob"} {
		var l login
		es.one(t, "login", c).decode(t, &l)
		if !strings.HasPrefix(l.JID, c+"@localhost/") || !strings.HasPrefix(l.TLS, "TLSv1.") || !l.Authorized || l.Mech != "SCRAM-SHA-1" {
			t.Errorf("%s logged in as %+v, want %s@localhost/... over TLS with a trusted certificate, SCRAM-SHA-1", c, l, c)
		}
		jids[c] = l.JID
	}
	// The events of each client between two steps of the scenario.
	stepOf := func(name string) int {
		for i, e := range es {
			if e.Event == "step" && bytes.Contains(e.raw, []byte(`"name":"`+name+`"`)) {
				return i
			}
		}
		t.Fatalf("no step %q", name)
		return 0
	}
	between := func(from, to string) events { return es[stepOf(from):stepOf(to)] }

	// Presences, per step: (from nick, type, codes, affiliation, role,
	// real JID) in the order they arrived.
	type pres struct {
		from, typ   string
		codes       []int
		aff, role   string
		jid, reason string
	}
	presOf := func(seg events, c string) []pres {
		var out []pres
		for _, e := range seg.of("muc_presence", c) {
			var pr struct {
				mucPresence
				Item *struct {
					mucItem
					Reason *string `json:"reason"`
				} `json:"item"`
			}
			e.decode(t, &pr)
			if pr.Error != nil {
				t.Errorf("%s got an error presence: %s", c, e.raw)
			}
			x := pres{from: strings.TrimPrefix(pr.From, room+"/"), typ: pr.Type, codes: pr.Codes}
			if pr.Item != nil {
				x.aff, x.role, x.jid = pr.Item.Affiliation, pr.Item.Role, pr.Item.JID
				if pr.Item.Reason != nil {
					x.reason = *pr.Item.Reason
				}
			}
			out = append(out, x)
		}
		return out
	}
	checkPres := func(what string, got []pres, want ...pres) {
		t.Helper()
		ok := len(got) == len(want)
		for i := 0; ok && i < len(got); i++ {
			g, w := got[i], want[i]
			slices.Sort(g.codes)
			ok = g.from == w.from && g.typ == w.typ && slices.Equal(g.codes, w.codes) &&
				g.aff == w.aff && g.role == w.role && g.jid == w.jid && g.reason == w.reason
		}
		if !ok {
			t.Errorf("%s: presences\n  %+v\nwant\n  %+v", what, got, want)
		}
	}

	checkReply(t, between("configure", "join"), "iq_reply", "alice", "unlocking the room (muc#owner submit)")
	checkPres("alice creates the room", presOf(between("create", "configure"), "alice"),
		pres{"alice", "", []int{110, 201}, "owner", "moderator", jids["alice"], ""})
	// Semi-anonymous: bob does not see alice's real JID, alice (a
	// moderator) sees his.
	checkPres("bob joins (bob)", presOf(between("join", "groupchat"), "bob"),
		pres{"alice", "", nil, "owner", "moderator", "", ""},
		pres{"bob", "", []int{110}, "none", "participant", jids["bob"], ""})
	checkPres("bob joins (alice)", presOf(between("join", "groupchat"), "alice"),
		pres{"bob", "", nil, "none", "participant", jids["bob"], ""})
	checkPres("alice kicks bob (bob)", presOf(between("kick", "rejoin"), "bob"),
		pres{"bob", "unavailable", []int{110, 307}, "none", "none", jids["bob"], "xmpp.js kick"})
	checkPres("alice kicks bob (alice)", presOf(between("kick", "rejoin"), "alice"),
		pres{"bob", "unavailable", []int{307}, "none", "none", jids["bob"], "xmpp.js kick"})
	checkReply(t, between("kick", "rejoin"), "iq_reply", "alice", "kicking bob (muc#admin role none)")
	checkPres("bob rejoins (bob)", presOf(between("rejoin", "leave"), "bob"),
		pres{"alice", "", nil, "owner", "moderator", "", ""},
		pres{"bob", "", []int{110}, "none", "participant", jids["bob"], ""})
	checkPres("bob rejoins (alice)", presOf(between("rejoin", "leave"), "alice"),
		pres{"bob", "", nil, "none", "participant", jids["bob"], ""})
	checkPres("both leave (bob)", presOf(between("leave", "stop"), "bob"),
		pres{"bob", "unavailable", []int{110}, "none", "none", jids["bob"], ""})
	checkPres("both leave (alice)", presOf(between("leave", "stop"), "alice"),
		pres{"bob", "unavailable", nil, "none", "none", jids["bob"], ""},
		pres{"alice", "unavailable", []int{110}, "owner", "none", jids["alice"], ""})

	// Messages: live ones (no <delay/>) once each; delayed ones only as
	// history on bob's rejoin; no errors, no other stanzas.
	for _, c := range []string{"alice", "bob"} {
		live := map[string]int{}
		var history []string
		for _, m := range mucMessages(t, es, c) {
			if m.Error != nil {
				t.Errorf("%s got an error message: %+v", c, m)
				continue
			}
			if m.Body == nil {
				continue // the subject, on joining
			}
			k := fmt.Sprintf("%s %s %s muc_user=%v", strings.TrimPrefix(m.From, room+"/"), m.Type, *m.Body, m.MUCUser)
			if m.Delay != nil {
				history = append(history, k)
			} else {
				live[k]++
			}
		}
		peer := map[string]string{"alice": "bob", "bob": "alice"}[c]
		want := map[string]int{
			"alice groupchat alice " + body + " muc_user=false":                 1,
			"bob groupchat bob " + body + " muc_user=false":                     1,
			peer + " chat private from " + peer + " " + body + " muc_user=true": 1,
		}
		if fmt.Sprint(live) != fmt.Sprint(want) {
			t.Errorf("%s got messages\n  %v\nwant\n  %v", c, live, want)
		}
		var wantHistory []string
		if c == "bob" {
			wantHistory = []string{"alice groupchat alice " + body + " muc_user=false", "bob groupchat bob " + body + " muc_user=false"}
		}
		if !slices.Equal(history, wantHistory) {
			t.Errorf("%s got delayed messages %q, want %q", c, history, wantHistory)
		}
		if other := es.of("stanza", c); len(other) != 0 {
			t.Errorf("%s got other stanzas: %+v", c, other)
		}
		if len(es.of("offline", c)) != 1 {
			t.Errorf("%s did not close its stream", c)
		}
	}

	p.stop(t)
}

// TestXMPPJSSASL2: xmpp.js logs in to the example server with SASL2 and
// Bind 2 (XEP-0388, XEP-0386), over TCP with STARTTLS (SCRAM-SHA-1) and
// over WebSocket (PLAIN, as carol): its resource is its tag and a stable part
// derived from its user-agent id, and it enables stream management inside
// Bind 2. Its connection is cut, bob sends it a message, and it resumes
// inside SASL2 with its first writes on the new connection after TLS: the
// stream header and <authenticate/> (and SCRAM's one <response/>), nothing
// else; <success/> carries <resumed/>, and bob's message follows it. A
// new login of the same device later gets the same resource. The server's
// debug log shows the SASL2 logins and the resumption.
func TestXMPPJSSASL2(t *testing.T) {
	needXMPPJS(t)
	// carol's password is ASCII: xmpp.js 0.14's PLAIN sends a password's
	// characters as Latin-1 bytes, not UTF-8 (alice's has an ä).
	const carolPW = "carol-ascii-password"
	bin := buildCommunity(t)
	data := t.TempDir()
	for _, a := range [][2]string{{"alice@localhost", alicePW}, {"bob@localhost", bobPW}, {"carol@localhost", carolPW}} {
		runCommunity(t, bin, "adduser", "-data", data, "-password", a[1], a[0])
	}
	w := startWebCommunity(t, bin, data)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server output:\n%s", w.logs)
		}
	})
	const uaID = "9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d"
	for _, tc := range []struct {
		name, service, mech string
		user, password      string
		writes              []string // what the client writes to resume, after TLS
		fast                bool     // reconnect with a FAST token (XEP-0484)
	}{
		{"tcp", "xmpp://" + w.addr, "SCRAM-SHA-1", "alice", alicePW, []string{"<?xml", "<authenticate", "<response"}, false},
		{"websocket", "wss://" + w.https + "/xmpp-websocket", "PLAIN", "carol", carolPW, []string{"<open", "<authenticate"}, false},
		// A phone's reconnect: the FAST token from the password login,
		// HT-SHA-256-NONE and <resume/> in one <authenticate/>: one
		// round trip after the stream header.
		{"tcp-fast", "xmpp://" + w.addr, "SCRAM-SHA-1", "alice", alicePW, []string{"<?xml", "<authenticate"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tag := "treff-e2e-" + tc.name
			body := uniqueBody("sasl2-" + tc.name)
			args := []string{"--service", tc.service,
				"--jid", tc.user + "@localhost", "--password", tc.password, "--peer", "bob@localhost", "--peer-password", bobPW,
				"--ua-id", uaID, "--tag", tag, "--mech", tc.mech, "--body", body}
			if tc.fast {
				args = append(args, "--fast")
			}
			es := xmppjs(t, w.communityProc, "sasl2.mjs", args...)

			type auth struct {
				Mechanism    string `json:"mechanism"`
				Resume       bool   `json:"resume"`
				Fast         bool   `json:"fast"`
				RequestToken bool   `json:"request_token"`
				Bind         bool   `json:"bind"`
				BindEnableSM bool   `json:"bind_enable_sm"`
			}
			type success struct {
				AID     string `json:"aid"`
				Resumed bool   `json:"resumed"`
				Bound   bool   `json:"bound"`
				Enabled bool   `json:"enabled"`
			}
			var login struct {
				JID          string   `json:"jid"`
				Authenticate *auth    `json:"authenticate"`
				Success      *success `json:"success"`
				SMID         string   `json:"sm_id"`
			}
			es.one(t, "login", "alice").decode(t, &login)
			resRE := regexp.MustCompile(`^` + tc.user + `@localhost/` + tag + `/[0-9a-f]{12}$`)
			if !resRE.MatchString(login.JID) {
				t.Errorf("alice bound %q, want %s@localhost/%s/ and a stable part", login.JID, tc.user, tag)
			}
			if a := login.Authenticate; a == nil || a.Mechanism != tc.mech || !a.Bind || !a.BindEnableSM || a.Resume {
				t.Errorf("alice's <authenticate/>: %+v; want SASL2 with %s and Bind 2 enabling stream management", a, tc.mech)
			}
			if s := login.Success; s == nil || s.AID != login.JID || !s.Bound || !s.Enabled || s.Resumed {
				t.Errorf("alice's <success/>: %+v; want the full JID and <bound/> with <enabled/>", s)
			}
			if login.SMID == "" {
				t.Error("no stream management id")
			}
			es.one(t, "cut", "alice")
			es.one(t, "sent", "bob")

			var resumed struct {
				JID          string   `json:"jid"`
				Authenticate *auth    `json:"authenticate"`
				Success      *success `json:"success"`
				Writes       struct {
					N    int      `json:"n"`
					What []string `json:"what"`
				} `json:"writes"`
			}
			es.one(t, "resumed", "alice").decode(t, &resumed)
			if resumed.JID != login.JID {
				t.Errorf("resumed as %s, want %s", resumed.JID, login.JID)
			}
			resumeMech := tc.mech
			if tc.fast {
				resumeMech = "HT-SHA-256-NONE"
				if !login.Authenticate.RequestToken {
					t.Errorf("the password login asked for no FAST token: %+v", login.Authenticate)
				}
			}
			if a := resumed.Authenticate; a == nil || !a.Resume || a.Mechanism != resumeMech || a.Fast != tc.fast {
				t.Errorf("resuming <authenticate/>: %+v; want <resume/> inline with %s", a, resumeMech)
			}
			if s := resumed.Success; s == nil || !s.Resumed || s.AID != login.JID || s.Bound {
				t.Errorf("resuming <success/>: %+v; want <resumed/> and the full JID, no new binding", s)
			}
			ok := resumed.Writes.N == len(tc.writes)
			for i := 0; ok && i < len(tc.writes); i++ {
				ok = strings.HasPrefix(resumed.Writes.What[i], tc.writes[i])
			}
			if !ok {
				t.Errorf("writes after TLS to resume: %d %q; want %q", resumed.Writes.N, resumed.Writes.What, tc.writes)
			}
			t.Logf("%s: %d client writes after TLS to resume (%s): %q", tc.name, resumed.Writes.N, tc.mech, resumed.Writes.What)

			msgs := es.of("message", "alice")
			if len(msgs) != 1 || msgs[0].From == "" || !strings.HasPrefix(msgs[0].From, "bob@localhost/") || msgs[0].Body != body {
				t.Errorf("alice got %+v, want bob's one message", msgs)
			}
			var rec struct {
				Names []string `json:"names"`
			}
			es.one(t, "received", "alice").decode(t, &rec)
			si, mi := slices.Index(rec.Names, "success"), slices.Index(rec.Names, "message")
			if si < 0 || mi < si {
				t.Errorf("alice received %q on the new connection; want <success/> before the message", rec.Names)
			}

			var again struct {
				JID     string   `json:"jid"`
				Success *success `json:"success"`
			}
			es.one(t, "login", "alice2").decode(t, &again)
			if again.JID != login.JID || again.Success == nil || !again.Success.Bound {
				t.Errorf("the same device logged in again as %s (%+v), want %s", again.JID, again.Success, login.JID)
			}

			logs := w.logs.String()
			for _, want := range []string{
				`msg="SASL2 authenticated" user=` + tc.user + `@localhost mechanism=` + tc.mech + ` jid=` + login.JID,
				`msg="session resumed" jid=` + login.JID,
			} {
				if !strings.Contains(logs, want) {
					t.Errorf("server log has no %s", want)
				}
			}
		})
	}
}
