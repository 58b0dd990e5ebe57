package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/treff-im/treff/trefftest"
)

// The tests in this file (issue 19, "Defending an open server") drive the
// example server binary's defences against spam and abuse with slixmpp
// 1.8.3 (clients/abuse.py) and, across servers, with Prosody 0.12:
//
//   - TestAbuseLocal: a XEP-0377 spam report inside a XEP-0191 block
//     reaches the admin as a message and `community reports`; an in-band
//     registration gets the admin a notice (notify_registrations); a
//     suspended account's session ends and its logins get
//     <account-disabled/> with the reason until `community unsuspend`;
//     slixmpp's refused SCRAM-*-PLUS attempts (tls-unique) do not count
//     as failed logins; password guessing from one address is locked out
//     with <temporary-auth-failure/> after auth_limit failures, even with
//     the right password.
//   - TestAbuseFederation: a user of Prosody reaches a Treff user until
//     `community block prosody.test`, and again after `community
//     unblock`; the same with the SHA-256 of her JID; then a real-time
//     block list on Prosody's pubsub component, which Treff follows over
//     s2s (rtbl), lists prosody.test and the messages stop, and start
//     again when the item is retracted.
//
// The scenarios pause where the test acts on the server (admin commands,
// waiting for a list to load): runPausing answers each pause.

// abuseScriptTimeout bounds one abuse.py run; abuseClientTimeout kills it.
const (
	abuseScriptTimeout = 45 * time.Second
	abuseClientTimeout = 55 * time.Second
)

// runPausing runs clients/abuse.py with args like runClient, but answers
// each "pause" event: act is called with it (it may run admin commands
// and fail the test), then the script is told to go on.
func runPausing(t *testing.T, act func(name string), args ...string) events {
	t.Helper()
	needSlixmpp(t)
	script, err := filepath.Abs(filepath.Join("clients", "abuse.py"))
	if err != nil {
		t.Fatal(err)
	}
	argv := []string{script, "--timeout", fmt.Sprint(abuseScriptTimeout.Seconds())}
	if testing.Verbose() && os.Getenv("E2E_DEBUG") != "" {
		argv = append(argv, "--debug")
	}
	argv = append(argv, args...)
	ctx, cancel := context.WithTimeout(context.Background(), abuseClientTimeout)
	defer cancel() // kills the script if act fails the test
	cmd := exec.CommandContext(ctx, python, argv...)
	cmd.Env = pythonEnv()
	cmd.WaitDelay = 2 * time.Second
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdoutPipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stdout bytes.Buffer
	stderr := new(trefftest.LogBuffer)
	cmd.Stderr = stderr
	report := func() string {
		return fmt.Sprintf("args: %q\nstdout:\n%s\nstderr:\n%s", argv[1:], stdout.String(), stderr.String())
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var es events
	sc := bufio.NewScanner(io.TeeReader(stdoutPipe, &stdout))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var e event
		if err := json.Unmarshal(line, &e); err != nil {
			t.Fatalf("abuse.py printed a line that is not JSON: %q: %v\n%s", line, err, report())
		}
		e.raw = slices.Clone(line)
		es = append(es, e)
		if e.Event == "pause" {
			var p struct {
				Name string `json:"name"`
			}
			e.decode(t, &p)
			act(p.Name)
			if _, err := io.WriteString(stdin, "go\n"); err != nil {
				t.Fatalf("telling abuse.py to go on after %s: %v\n%s", p.Name, err, report())
			}
		}
	}
	err = cmd.Wait()
	elapsed := time.Since(start).Round(time.Millisecond)
	if ctx.Err() != nil {
		t.Fatalf("abuse.py killed after %v\n%s", abuseClientTimeout, report())
	}
	if err != nil {
		t.Fatalf("abuse.py failed after %v: %v\n%s", elapsed, err, report())
	}
	if len(es) == 0 || es[len(es)-1].Event != "done" {
		t.Fatalf("abuse.py did not finish with a done event\n%s", report())
	}
	t.Logf("abuse.py (%v):\n%s", elapsed, report())
	return es
}

// noPause is the act of scenarios without pauses.
func noPause(t *testing.T) func(string) {
	return func(name string) { t.Fatalf("unexpected pause %q", name) }
}

// failedAuth is a failed_auth event of abuse.py.
type failedAuth struct {
	Client     string   `json:"client"`
	Mech       string   `json:"mech"`
	Conditions []string `json:"conditions"`
	Text       string   `json:"text"`
}

func failedAuths(t *testing.T, es events, client string) []failedAuth {
	t.Helper()
	var out []failedAuth
	for _, e := range es.of("failed_auth", client) {
		var f failedAuth
		e.decode(t, &f)
		out = append(out, f)
	}
	return out
}

// TestAbuseLocal runs the local defences against one example server
// started with -admins boss@localhost and -auth-limit 3/1h (the default,
// 20/1h, would take minutes of growing hold-backs to reach).
func TestAbuseLocal(t *testing.T) {
	const (
		bossPW = "boss pässword"
		bobPW  = "bob pässword"
		evePW  = "eve pässword"
		reason = "Sent spam to 40 strangers <in one hour> & more"
	)
	bin, data, p := startRegCommunity(t, []string{"-admins", "boss@localhost", "-auth-limit", "3/1h",
		"-registration", "open", "-notify-registrations", "yes"},
		[2]string{"boss@localhost", bossPW}, [2]string{"bob@localhost", bobPW}, [2]string{"eve@localhost", evePW})
	common := []string{"--addr", p.addr, "--cert", p.cert, "--wait", "10"}

	// XEP-0377: bob blocks a spammer and reports him, with his words and
	// the id of one of the spammer's messages; boss, an admin, gets the
	// server's message, and the report waits in `community reports`.
	t.Run("Report", func(t *testing.T) {
		const (
			spammer = "spammer@spam.example"
			text    = "Sells watches & <pills> to everyone"
		)
		es := runPausing(t, noPause(t), append(slices.Clone(common), "report",
			"--admin-jid", "boss@localhost", "--admin-password", bossPW,
			"--jid", "bob@localhost", "--password", bobPW,
			"--reported", spammer, "--text", text, "--stanza-id", "spam.example=msg-4711")...)
		var feats struct {
			Features []string `json:"features"`
		}
		es.one(t, "server_features", "user").decode(t, &feats)
		for _, f := range []string{"urn:xmpp:blocking", "urn:xmpp:reporting:1"} {
			if !slices.Contains(feats.Features, f) {
				t.Errorf("the server's disco#info lacks %s: %q", f, feats.Features)
			}
		}
		if r := es.one(t, "block_reply", "user"); r.Type != "result" {
			t.Fatalf("the block with the report was answered with %s %+v, want a result", r.Type, r.Error)
		}
		var msg struct {
			From, Type, Subject, Body string
		}
		es.one(t, "admin_message", "admin").decode(t, &msg)
		if msg.From != "localhost" || msg.Subject != "Spam report" {
			t.Errorf("boss got %+v, want a message from localhost with the subject \"Spam report\"", msg)
		}
		for _, want := range []string{"bob@localhost reported " + spammer + " (spam)", "spam.example msg-4711", text, "community reports"} {
			if !strings.Contains(msg.Body, want) {
				t.Errorf("boss's message %q does not say %q", msg.Body, want)
			}
		}

		list := strings.Split(strings.TrimSpace(runCommunity(t, bin, "reports", "-data", data)), "\n")
		if len(list) != 1 {
			t.Fatalf("community reports listed %q, want one report", list)
		}
		id, line, _ := strings.Cut(list[0], " ")
		for _, want := range []string{"bob@localhost reported " + spammer + " (spam)", "1 message id(s): spam.example msg-4711", text} {
			if !strings.Contains(line, want) {
				t.Errorf("community reports: %q does not say %q", list[0], want)
			}
		}
		if got := runCommunity(t, bin, "reports", "-data", data, "-delete", id); !strings.Contains(got, "report "+id+" deleted") {
			t.Errorf("community reports -delete %s printed %q", id, got)
		}
		if got := strings.TrimSpace(runCommunity(t, bin, "reports", "-data", data)); got != "" {
			t.Errorf("community reports after the deletion: %q, want nothing", got)
		}
	})

	// notify_registrations: an in-band registration (XEP-0077, slixmpp's
	// plugin) while boss is online gets him a message naming the account
	// and the command that stops it; users -recent lists it.
	t.Run("RegistrationNotice", func(t *testing.T) {
		es := runPausing(t, noPause(t), append(slices.Clone(common), "registration",
			"--admin-jid", "boss@localhost", "--admin-password", bossPW,
			"--jid", "newbie@localhost", "--password", "newbie pässword")...)
		var reg struct {
			Stage, Type string
		}
		es.one(t, "register_reply", "newbie").decode(t, &reg)
		if reg.Stage != "set" || reg.Type != "result" {
			t.Fatalf("the registration was answered with %+v, want a result to the set", reg)
		}
		var msg struct {
			From, Type, Subject, Body string
		}
		es.one(t, "admin_message", "admin").decode(t, &msg)
		if msg.From != "localhost" || msg.Subject != "New account" {
			t.Errorf("boss got %+v, want a message from localhost with the subject \"New account\"", msg)
		}
		for _, want := range []string{"newbie@localhost was registered by in-band registration", "community suspend newbie@localhost"} {
			if !strings.Contains(msg.Body, want) {
				t.Errorf("boss's message %q does not say %q", msg.Body, want)
			}
		}
		if recent := runCommunity(t, bin, "users", "-data", data, "-recent"); !regexp.MustCompile(`(?m)^newbie@localhost created .*, never logged in$`).MatchString(recent) {
			t.Errorf("community users -recent does not list newbie:\n%s", recent)
		}
	})

	// Suspension while the server runs: eve's session ends with
	// <policy-violation/>, her next login gets <account-disabled/> with
	// the reason, `community users -recent` shows it, and after
	// `community unsuspend` she logs in again.
	t.Run("Suspend", func(t *testing.T) {
		es := runPausing(t, func(name string) {
			switch name {
			case "suspend":
				out := runCommunity(t, bin, "suspend", "-data", data, "-reason", reason, "eve@localhost")
				if !strings.Contains(out, "eve@localhost is suspended") {
					t.Errorf("community suspend printed %q", out)
				}
			case "unsuspend":
				recent := runCommunity(t, bin, "users", "-data", data, "-recent")
				if !regexp.MustCompile(`(?m)^eve@localhost created .*, suspended \d{4}-\d\d-\d\d \(` + regexp.QuoteMeta(reason) + `\)$`).MatchString(recent) {
					t.Errorf("community users -recent does not show eve suspended with the reason:\n%s", recent)
				}
				runCommunity(t, bin, "unsuspend", "-data", data, "eve@localhost")
			default:
				t.Fatalf("unexpected pause %q", name)
			}
		}, append(slices.Clone(common), "suspend", "--jid", "eve@localhost", "--password", evePW)...)

		var end struct {
			StreamErrors []streamError `json:"stream_errors"`
		}
		es.one(t, "session_end", "user").decode(t, &end)
		if len(end.StreamErrors) != 1 || !slices.Equal(end.StreamErrors[0].Conditions, []string{"policy-violation"}) {
			t.Errorf("eve's session ended with the stream errors %+v, want one <policy-violation/>", end.StreamErrors)
		}
		if r := es.one(t, "auth_result", "refused"); r.Outcome != "failed_all_auth" {
			t.Fatalf("eve's login while suspended: %q, want it refused", r.Outcome)
		}
		fs := failedAuths(t, es, "refused")
		if len(fs) != 1 || !slices.Equal(fs[0].Conditions, []string{"account-disabled"}) || !strings.Contains(fs[0].Text, reason) {
			t.Errorf("eve's login while suspended failed with %+v, want one <account-disabled/> whose text gives the reason %q", fs, reason)
		}
		if r := es.one(t, "auth_result", "again"); r.Outcome != "session" || r.Failures != 0 {
			t.Errorf("eve's login after unsuspend: %q with %d failures, want a session", r.Outcome, r.Failures)
		}
		waitLog(t, p, "account suspended")
	})

	// slixmpp 1.8.3 as it logs in by default: it tries SCRAM-SHA-256-PLUS
	// and SCRAM-SHA-1-PLUS with tls-unique, which TLS 1.3 lacks; the
	// server refuses them before any password is involved, and the client
	// goes on with SCRAM-SHA-256. Those refusals are no guesses: three
	// such logins (six refusals) do not reach auth_limit (3).
	t.Run("UnboundLogins", func(t *testing.T) {
		es := runPausing(t, noPause(t), append(slices.Clone(common), "unbound",
			"--jid", "bob@localhost", "--password", bobPW, "--logins", "3")...)
		type login struct {
			N          int      `json:"n"`
			Outcome    string   `json:"outcome"`
			Conditions []string `json:"conditions"`
			Mechs      []string `json:"mechs"`
		}
		var ls []login
		for _, e := range es.of("attempt", "") {
			var l login
			e.decode(t, &l)
			ls = append(ls, l)
		}
		if len(ls) != 3 {
			t.Fatalf("%d logins, want 3: %+v", len(ls), ls)
		}
		for _, l := range ls {
			if l.Outcome != "session" {
				t.Errorf("login %d: %+v, want a session", l.N, l)
			}
			for i, m := range l.Mechs {
				if !strings.HasSuffix(m, "-PLUS") || l.Conditions[i] != "not-authorized" {
					t.Errorf("login %d: %s refused with %s, want only -PLUS refused (not-authorized)", l.N, m, l.Conditions[i])
				}
			}
		}
	})

	// Password guessing (auth_limit 3/1h): three wrong passwords from
	// 127.0.0.1 get <not-authorized/>, the second and third held back (1s,
	// 2s); then the address is locked: the right password gets
	// <temporary-auth-failure/> saying when to try again. Runs last: the
	// lock holds for every login from 127.0.0.1.
	t.Run("AuthLimit", func(t *testing.T) {
		es := runPausing(t, noPause(t), append(slices.Clone(common), "guess",
			"--jid", "bob@localhost", "--password", bobPW, "--wrong", "3")...)
		type attempt struct {
			N          int      `json:"n"`
			Password   string   `json:"password"`
			Outcome    string   `json:"outcome"`
			Failures   int      `json:"failures"`
			Conditions []string `json:"conditions"`
			Text       string   `json:"text"`
			Seconds    float64  `json:"seconds"`
		}
		var as []attempt
		for _, e := range es.of("attempt", "") {
			var a attempt
			e.decode(t, &a)
			as = append(as, a)
		}
		if len(as) != 5 {
			t.Fatalf("%d attempts, want 5: %+v", len(as), as)
		}
		if a := as[0]; a.Outcome != "session" {
			t.Errorf("the first login, right password: %+v, want a session", a)
		}
		for i, a := range as[1:4] {
			if a.Outcome != "failed_all_auth" || a.Failures != 1 || !slices.Equal(a.Conditions, []string{"not-authorized"}) {
				t.Errorf("wrong password %d: %+v, want one <not-authorized/>", i+1, a)
			}
			// The hold-back of the nth failure of the address (n >= 2)
			// is 2^(n-2) s: a lower bound the server guarantees.
			if least := float64(int(1) << max(i-1, 0)); i >= 1 && a.Seconds < least {
				t.Errorf("wrong password %d answered after %.3fs, want at least %.0fs (held back)", i+1, a.Seconds, least)
			}
		}
		a := as[4]
		if a.Outcome != "failed_all_auth" || !slices.Equal(a.Conditions, []string{"temporary-auth-failure"}) ||
			!strings.Contains(a.Text, "try again in") {
			t.Errorf("right password after 3 failures: %+v, want <temporary-auth-failure/> saying \"try again in\"", a)
		}
	})
}

// The federation part uses addresses of its own, not those of
// federation_test.go, so that it may run beside those tests.
var abuseAddr = map[string]string{
	fedTreff:         "127.0.19.2",
	fedTreffMUC:      "127.0.19.2",
	fedTreffPubsub:   "127.0.19.2",
	fedProsody:       "127.0.19.3",
	fedProsodyPubsub: "127.0.19.3",
}

// needAbuseFederation checks what TestAbuseFederation needs: slixmpp,
// Prosody with libunbound, root, and its addresses free.
func needAbuseFederation(t *testing.T) {
	t.Helper()
	needProsody(t, "abuse federation test", abuseAddr[fedTreff], abuseAddr[fedProsody])
}

// startAbuseProsody starts Prosody for prosody.test on its abuseAddr
// (as federation.startProsody does) with the pubsub component
// pubsub.prosody.test, administered by keeper, and the given users.
func startAbuseProsody(t *testing.T, f *federation, users ...string) {
	t.Helper()
	dir := filepath.Join(f.dir, fedProsody)
	cfg := filepath.Join(dir, "prosody.cfg.lua")
	ip := abuseAddr[fedProsody]
	fillTemplate(t, "prosody.cfg.lua", cfg, map[string]string{
		"@DIR@": dir, "@IP@": ip, "@DOMAIN@": fedProsody, "@CA@": f.caFile, "@EJABBERD@": fedEjabberd,
	})
	extra := fmt.Sprintf("\nComponent %q %q\n\tadmins = { %q }\n", fedProsodyPubsub, "pubsub", "keeper@"+fedProsody)
	cf, err := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = cf.WriteString(extra)
	if cerr := cf.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	var hosts strings.Builder
	for _, d := range slices.Sorted(maps.Keys(abuseAddr)) {
		fmt.Fprintf(&hosts, "%s %s\n", abuseAddr[d], d)
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
	f.prosodyLog = filepath.Join(dir, "prosody.log")
	startRef(t, "prosody", dir, []string{f.prosodyLog}, []string{ip + ":5222", ip + ":5269"},
		"-u", "prosody", "--", "sh", "-c", `ulimit -n 4096 2>/dev/null; exec prosody -F --config "$0"`, cfg)
}

// startAbuseTreff starts the example server for treff.test on its
// abuseAddr (as federation.startTreff does) with s2s routes to Prosody,
// the users, and the extra flags. It returns the binary, the data folder
// and the process.
func startAbuseTreff(t *testing.T, f *federation, bin string, flags []string, users ...string) (string, *communityProc) {
	t.Helper()
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
	ip := abuseAddr[fedTreff]
	certDir := filepath.Join(f.dir, fedTreff)
	p := &communityProc{logs: new(trefftest.LogBuffer), done: make(chan struct{}), addr: ip + ":5222", cert: f.caFile}
	args := []string{"-data", data, "-domain", fedTreff,
		"-cert", filepath.Join(certDir, "cert.pem"), "-key", filepath.Join(certDir, "key.pem"),
		"-c2s", p.addr, "-c2s-tls", "",
		"-s2s", ip + ":5269", "-s2s-tls", "", "-s2s-ca", f.caFile,
		"-s2s-resolve", fmt.Sprintf("%s=%s:5269,%s=%s:5269", fedProsody, abuseAddr[fedProsody], fedProsodyPubsub, abuseAddr[fedProsodyPubsub]),
		"-http", "", "-https", "", "-log-level", "debug"}
	p.start(t, bin, append(args, flags...)...)
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
	return data, p
}

// TestAbuseFederation: mallory, a user of Prosody (prosody.test), writes
// to alice on Treff (treff.test). Her messages arrive; after `community
// block prosody.test` they are refused with <service-unavailable/> and
// alice's to her with <not-allowed/>; after `community unblock` they
// arrive again; the same with the SHA-256 of mallory's JID blocked. Then the real-time block list: Treff follows the node
// spamlist of Prosody's pubsub component (-rtbl
// pubsub.prosody.test/spamlist: it subscribes treff.test and fetches the
// items over s2s); keeper, its owner, publishes an item whose id is
// prosody.test, and once Treff lists one entry for the feed mallory's
// messages are refused again; once keeper retracts it, they arrive.
func TestAbuseFederation(t *testing.T) {
	needAbuseFederation(t)
	f := newFederation(t)
	startAbuseProsody(t, f, "mallory", "keeper")
	bin := buildCommunity(t)
	const node = "spamlist"
	// The form of xmppbl.org's lists: the SHA-256 of the bare JID, in hex.
	sum := sha256.Sum256([]byte("mallory@" + fedProsody))
	malloryHash := hex.EncodeToString(sum[:])
	feed := fedProsodyPubsub + "/" + node
	var (
		data string
		p    *communityProc
	)
	community := func(args ...string) string {
		t.Helper()
		return runCommunity(t, bin, append(args, "-data", data, "-domain", fedTreff)...)
	}
	// waitFeed waits (at most 15s) until `community block` says the feed
	// holds n entries.
	waitFeed := func(n int) {
		t.Helper()
		want := fmt.Sprintf("# real-time block list %s: %d entries", feed, n)
		var out string
		for deadline := time.Now().Add(15 * time.Second); ; {
			out = community("block")
			if slices.Contains(strings.Split(strings.TrimSpace(out), "\n"), want) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("community block did not say %q within 15s; last:\n%s", want, out)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	es := runPausing(t, func(name string) {
		switch name {
		case "node":
			// The node exists: Treff starts and follows it.
			data, p = startAbuseTreff(t, f, bin, []string{"-rtbl", feed}, "alice")
			waitFeed(0)
		case "block":
			community("block", fedProsody)
			if got := strings.TrimSpace(community("block")); !slices.Contains(strings.Split(got, "\n"), fedProsody) {
				t.Errorf("community block lists %q, want %s among them", got, fedProsody)
			}
		case "unblock":
			community("unblock", fedProsody)
			if got := community("block"); slices.Contains(strings.Split(strings.TrimSpace(got), "\n"), fedProsody) {
				t.Errorf("community block still lists %s after unblock: %q", fedProsody, got)
			}
		case "block-hash":
			community("block", malloryHash)
		case "unblock-hash":
			community("unblock", malloryHash)
			if got := community("block"); strings.Contains(got, malloryHash) {
				t.Errorf("community block still lists %s after unblock: %q", malloryHash, got)
			}
		case "published":
			waitFeed(1)
		case "retracted":
			waitFeed(0)
		default:
			t.Fatalf("unexpected pause %q", name)
		}
	}, "federation", "--cert", f.clientCAs, "--wait", "15", "--password", fedPassword,
		"--body", uniqueBody("abuse"),
		"--treff-addr", abuseAddr[fedTreff]+":5222", "--prosody-addr", abuseAddr[fedProsody]+":5222",
		"--alice-jid", "alice@"+fedTreff, "--mallory-jid", "mallory@"+fedProsody, "--keeper-jid", "keeper@"+fedProsody,
		"--service", fedProsodyPubsub, "--node", node, "--spam-domain", fedProsody)

	type probe struct {
		Round        string       `json:"round"`
		Delivered    bool         `json:"delivered"`
		MalloryError *stanzaError `json:"mallory_error"`
		AliceError   *stanzaError `json:"alice_error"`
	}
	probes := map[string]probe{}
	for _, e := range es.of("probe", "alice") {
		var pr probe
		e.decode(t, &pr)
		probes[pr.Round] = pr
	}
	for _, c := range []struct {
		round   string
		blocked bool
	}{{"before", false}, {"blocked", true}, {"unblocked", false}, {"hashed", true}, {"listed", true}, {"delisted", false}} {
		pr, ok := probes[c.round]
		if !ok {
			t.Errorf("round %s: no probe", c.round)
			continue
		}
		if !c.blocked {
			if !pr.Delivered || pr.MalloryError != nil {
				t.Errorf("round %s: delivered %v, mallory got the error %+v; want her message delivered", c.round, pr.Delivered, pr.MalloryError)
			}
			continue
		}
		if pr.Delivered {
			t.Errorf("round %s: mallory's message reached alice", c.round)
		}
		if e := pr.MalloryError; e == nil || e.From != "alice@"+fedTreff || !slices.Equal(e.Conditions, []string{"service-unavailable"}) {
			t.Errorf("round %s: mallory got the error %+v, want <service-unavailable/> from alice@%s", c.round, e, fedTreff)
		}
		if e := pr.AliceError; e == nil || !slices.Equal(e.Conditions, []string{"not-allowed"}) || !strings.Contains(e.Text, fedProsody) {
			t.Errorf("round %s: alice's message to mallory came back with %+v, want <not-allowed/> naming %s", c.round, e, fedProsody)
		}
	}
	// Treff subscribed with its domain and loaded the list, as it logs.
	waitLog(t, p, "real-time block list loaded")
	p.stop(t)
}
