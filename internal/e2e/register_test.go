package e2e

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// The tests in this file drive in-band registration (XEP-0077, package
// register) in the example server binary (examples/community, started as
// in community_test.go) with the scenarios of clients/register.py:
// slixmpp's xep_0077 plugin where it works, raw IQs where it does not.
// Accounts are checked through logins and the binary's own users
// subcommand, the registration policy through its registration
// subcommand.

// Events of clients/register.py (see its doc comment).
type (
	regFeatures struct {
		Features []string `json:"features"`
		Forced   bool     `json:"forced"`
	}
	regForm struct {
		Instructions string   `json:"instructions"`
		Fields       []string `json:"fields"`
		Registered   bool     `json:"registered"`
		FormType     *string  `json:"form_type"`
		FormFields   []string `json:"form_fields"`
	}
	regReply struct {
		Username string       `json:"username"`
		Stage    string       `json:"stage"`
		Type     string       `json:"type"`
		Error    *stanzaError `json:"error"`
	}
	regIQReply struct {
		Label string       `json:"label"`
		Type  string       `json:"type"`
		Error *stanzaError `json:"error"`
	}
)

// reg runs a scenario of clients/register.py.
func (s *server) reg(t *testing.T, scenario string, args ...string) events {
	t.Helper()
	return s.client(t, "register.py", scenario, args...)
}

// withFlags returns an executable that runs bin with its own arguments
// followed by flags: startCommunity starts the server with a fixed command
// line, and this adds the registration settings to it. It execs bin, so
// the process startCommunity signals is the server itself.
func withFlags(t *testing.T, bin string, flags ...string) string {
	t.Helper()
	quote := func(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
	script := "#!/bin/sh\nexec " + quote(bin) + ` "$@"`
	for _, f := range flags {
		script += " " + quote(f)
	}
	path := filepath.Join(t.TempDir(), "community-with-flags")
	if err := os.WriteFile(path, []byte(script+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// startRegCommunity builds the example server, creates the accounts
// (JID, password) with its adduser subcommand, and starts it with the
// extra server flags. It returns the binary, the data folder and the
// running server, whose output is logged if the test fails.
func startRegCommunity(t *testing.T, flags []string, accounts ...[2]string) (string, string, *communityProc) {
	t.Helper()
	needSlixmpp(t)
	bin := buildCommunity(t)
	data := t.TempDir()
	for _, a := range accounts {
		runCommunity(t, bin, "adduser", "-data", data, "-password", a[1], a[0])
	}
	p := startCommunity(t, withFlags(t, bin, flags...), data)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server output:\n%s", p.logs)
		}
	})
	return bin, data, p
}

// checkUsers asserts the accounts the running server lists.
func checkUsers(t *testing.T, bin, data string, want ...string) {
	t.Helper()
	if got := strings.Fields(runCommunity(t, bin, "users", "-data", data)); !slices.Equal(got, want) {
		t.Errorf("community users: %q, want %q", got, want)
	}
}

// checkPolicy runs 'community registration [policy]' and asserts the
// policy it reports.
func checkPolicy(t *testing.T, bin, data, want string, set ...string) {
	t.Helper()
	args := append([]string{"registration", "-data", data}, set...)
	if got := runCommunity(t, bin, args...); got != "registration: "+want+"\n" {
		t.Errorf("community %q printed %q, want %q", args, got, "registration: "+want+"\n")
	}
}

// waitLog waits up to 5s for the server to log a line containing s (it may
// log just after the client saw the outcome).
func waitLog(t *testing.T, p *communityProc, s string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(p.logs.String(), s); {
		if time.Now().After(deadline) {
			t.Errorf("the server did not log %q", s)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// authFeatures returns the stream features client got after STARTTLS (the
// ones that offer SASL), as the server sent them.
func authFeatures(t *testing.T, es events, client string) regFeatures {
	t.Helper()
	for _, e := range es.of("features", client) {
		var f regFeatures
		e.decode(t, &f)
		if slices.Contains(f.Features, "mechanisms") {
			return f
		}
	}
	t.Fatalf("%s got no stream features with mechanisms", client)
	return regFeatures{}
}

func regReplies(t *testing.T, es events, client string) []regReply {
	t.Helper()
	var out []regReply
	for _, e := range es.of("register_reply", client) {
		var r regReply
		e.decode(t, &r)
		out = append(out, r)
	}
	return out
}

// checkError asserts a stanza error: one defined condition, its type and
// its text.
func checkError(t *testing.T, what string, e *stanzaError, cond, typ, text string) {
	t.Helper()
	if e == nil {
		t.Errorf("%s: no error, want <%s/> (type %s) %q", what, cond, typ, text)
		return
	}
	if !slices.Equal(e.Conditions, []string{cond}) || e.Type != typ || e.Text != text {
		t.Errorf("%s: error %v type %q text %q, want <%s/> type %q text %q", what, e.Conditions, e.Type, e.Text, cond, typ, text)
	}
}

// checkRegistered asserts that client registered with the plugin's form
// and the account works: it got the form, its set was answered with a
// result, it logged in on the same connection (after the registration),
// and again<N> logged in on a new one with SCRAM-SHA-256.
func checkRegistered(t *testing.T, es events, client, again, account string) {
	t.Helper()
	if f := authFeatures(t, es, client); !slices.Contains(f.Features, "register") || f.Forced {
		t.Errorf("%s: features after STARTTLS %+v, want <register/> offered by the server", client, f)
	}
	var form regForm
	es.one(t, "register_form", client).decode(t, &form)
	if !slices.Contains(form.Fields, "username") || !slices.Contains(form.Fields, "password") || form.Registered {
		t.Errorf("%s: form fields %q (registered %v), want username and password, not registered", client, form.Fields, form.Registered)
	}
	if form.FormType == nil || *form.FormType != "form" || !slices.Contains(form.FormFields, "username") ||
		!slices.Contains(form.FormFields, "password") || !slices.Contains(form.FormFields, "FORM_TYPE") {
		t.Errorf("%s: data form %+v, want a form with FORM_TYPE, username and password", client, form)
	}
	if !strings.Contains(form.Instructions, "at least 8 characters") {
		t.Errorf("%s: instructions %q, want the minimum password length", client, form.Instructions)
	}
	rs := regReplies(t, es, client)
	if len(rs) != 1 || rs[0].Stage != "set" || rs[0].Type != "result" || rs[0].Error != nil {
		t.Fatalf("%s: registration replies %+v, want one result to the set", client, rs)
	}
	l := es.one(t, "login", client)
	if bare, _, _ := strings.Cut(l.JID, "/"); bare != account || !strings.HasPrefix(l.Mech, "SCRAM-") || l.Connects != 1 {
		t.Errorf("%s: logged in as %s with %s over %d connections, want %s with SCRAM on the registration's stream",
			client, l.JID, l.Mech, l.Connects, account)
	}
	l = es.one(t, "login", again)
	if bare, _, _ := strings.Cut(l.JID, "/"); bare != account || l.Mech != "SCRAM-SHA-256" || !slices.Equal(l.SentMechs, []string{"SCRAM-SHA-256"}) {
		t.Errorf("%s: logged in as %s with %s (sent %q), want %s with SCRAM-SHA-256", again, l.JID, l.Mech, l.SentMechs, account)
	}
}

// checkLoginRefused asserts that client's login failed once with
// <not-authorized/> and did not go on.
func checkLoginRefused(t *testing.T, es events, client string) {
	t.Helper()
	if got := es.of("login", client); len(got) != 0 {
		t.Errorf("%s logged in (%s), want the login refused", client, got[0].JID)
		return
	}
	r := es.one(t, "auth_result", client)
	fs := es.of("failed_auth", client)
	if r.Outcome != "failed_all_auth" || len(fs) != 1 || !slices.Equal(fs[0].Conditions, []string{"not-authorized"}) {
		t.Errorf("%s: outcome %q, SASL failures %+v; want one <not-authorized/>", client, r.Outcome, fs)
	}
}

// TestCommunityRegisterOpen: with -registration open, a new account is
// created in-band through slixmpp's plugin (the server offers <register/>
// after STARTTLS, sends the form with the legacy fields and a data form,
// and answers the set with a result); the client logs in with it on the
// same stream (SCRAM) and again on a new connection with SCRAM-SHA-256;
// the server logs the registration and 'community users' lists it.
// Registering the same name again is refused with <conflict/> "this
// username is taken" and changes nothing: the first password still logs
// in, the second does not.
func TestCommunityRegisterOpen(t *testing.T) {
	const newbiePW, otherPW = "newbie pässwörd", "another password"
	bin, data, p := startRegCommunity(t, []string{"-registration", "open"})
	s := p.clients()
	checkPolicy(t, bin, data, "open")

	es := s.reg(t, "register", "--jid", "newbie@localhost", "--password", newbiePW, "--login")
	checkRegistered(t, es, "r1", "again1", "newbie@localhost")
	waitLog(t, p, `msg="account registered" jid=newbie@localhost`)
	checkUsers(t, bin, data, "newbie@localhost")

	es = s.reg(t, "register", "--jid", "newbie@localhost", "--password", otherPW)
	rs := regReplies(t, es, "r1")
	if len(rs) != 1 || rs[0].Stage != "set" {
		t.Fatalf("registration replies %+v, want one to the set", rs)
	}
	checkError(t, "registering a taken name", rs[0].Error, "conflict", "cancel", "this username is taken")
	checkUsers(t, bin, data, "newbie@localhost")
	es = s.reg(t, "login", "--jid", "newbie@localhost", "--password", newbiePW, "--try-mech", "SCRAM-SHA-256")
	es.one(t, "login", "login-SCRAM-SHA-256")
	es = s.reg(t, "login", "--jid", "newbie@localhost", "--password", otherPW, "--try-mech", "SCRAM-SHA-256")
	checkLoginRefused(t, es, "login-SCRAM-SHA-256")

	p.stop(t)
}

// TestCommunityRegisterRefusals: with -registration open and
// -registration-per-address 2/1h, each on its own connection through
// slixmpp's plugin: reserved names (also in other letter cases) are
// refused with <conflict/> "this username is reserved", a password of 7
// characters (9 bytes) with <not-acceptable/> "the password must have at
// least 8 characters"; those refusals do not count against the limit, so
// the next two registrations succeed (one with a password of exactly 8
// characters, which then logs in), and the third is refused with
// <resource-constraint/> of type wait. Only the two accounts exist.
//
// A taken name is checked in TestCommunityRegisterOpen: it is not here
// because the server counts that refusal against the limit (see the
// test's report), which would change where the limit hits.
func TestCommunityRegisterRefusals(t *testing.T) {
	const firstPW = "pässwörd" // 8 characters, 10 bytes
	bin, data, p := startRegCommunity(t, []string{"-registration", "open", "-registration-per-address", "2/1h"})
	s := p.clients()

	es := s.reg(t, "register", "--jid", "admin@localhost", "--password", "admin password",
		"--attempt", "Root@localhost", "root password",
		"--attempt", "PostMaster@localhost", "postmaster password",
		"--attempt", "shorty@localhost", "pässwö7",
		"--attempt", "first@localhost", firstPW,
		"--attempt", "second@localhost", "second password",
		"--attempt", "third@localhost", "third password")
	reserved := func(r regReply) {
		checkError(t, "registering "+r.Username, r.Error, "conflict", "cancel", "this username is reserved")
	}
	ok := func(r regReply) {
		if r.Type != "result" || r.Error != nil {
			t.Errorf("registering %s: %s %+v, want a result", r.Username, r.Type, r.Error)
		}
	}
	for _, c := range []struct {
		client, username string
		check            func(regReply)
	}{
		{"r1", "admin", reserved},
		{"r2", "Root", reserved},
		{"r3", "PostMaster", reserved},
		{"r4", "shorty", func(r regReply) {
			checkError(t, "registering with a 7-character password", r.Error, "not-acceptable", "modify",
				"the password must have at least 8 characters")
		}},
		{"r5", "first", ok},
		{"r6", "second", ok},
		{"r7", "third", func(r regReply) {
			checkError(t, "the third registration from the address", r.Error, "resource-constraint", "wait",
				"too many registrations; try again later")
		}},
	} {
		// Each got the form from the plugin and sent one set.
		es.one(t, "register_form", c.client)
		rs := regReplies(t, es, c.client)
		if len(rs) != 1 || rs[0].Stage != "set" || rs[0].Username != c.username {
			t.Errorf("%s: registration replies %+v, want one to the set for %s", c.client, rs, c.username)
			continue
		}
		c.check(rs[0])
	}
	if got := es.of("login", ""); len(got) != 0 {
		t.Errorf("logins without --login: %+v", got)
	}
	checkUsers(t, bin, data, "first@localhost", "second@localhost")
	waitLog(t, p, `msg="account registered" jid=first@localhost`)
	waitLog(t, p, `msg="account registered" jid=second@localhost`)

	es = s.reg(t, "login", "--jid", "first@localhost", "--password", firstPW, "--try-mech", "SCRAM-SHA-256")
	es.one(t, "login", "login-SCRAM-SHA-256")

	p.stop(t)
}

// TestCommunityRegisterClosedThenOpened: without a registration flag the
// policy is closed: 'community registration' says so, the server offers
// no <register/>, and both a form request and a set sent anyway (raw IQs
// on the pre-auth stream) are refused with <not-allowed/> (type cancel)
// "Registration is closed for now.". 'community registration open'
// switches the running server: on a new connection it offers <register/>
// and slixmpp's plugin creates the account, which logs in. 'community
// registration closed' refuses registrations again.
func TestCommunityRegisterClosedThenOpened(t *testing.T) {
	const latePW = "late password"
	bin, data, p := startRegCommunity(t, nil)
	s := p.clients()
	checkClosed := func(es events, username string) {
		t.Helper()
		if f := authFeatures(t, es, "r1"); slices.Contains(f.Features, "register") || !f.Forced {
			t.Errorf("features after STARTTLS while closed: %+v, want no <register/> (added by the client)", f)
		}
		if got := es.of("register_form", "r1"); len(got) != 0 {
			t.Errorf("a registration form while closed: %+v", got)
		}
		rs := regReplies(t, es, "r1")
		if len(rs) != 2 || rs[0].Stage != "get" || rs[1].Stage != "set" {
			t.Fatalf("registration replies %+v, want one to the get and one to the set", rs)
		}
		for _, r := range rs {
			checkError(t, r.Stage+" for "+username+" while closed", r.Error, "not-allowed", "cancel", "Registration is closed for now.")
		}
		if got := es.of("login", ""); len(got) != 0 {
			t.Errorf("logins: %+v", got)
		}
	}

	checkPolicy(t, bin, data, "closed")
	checkClosed(s.reg(t, "register", "--jid", "late@localhost", "--password", latePW, "--force-feature"), "late")
	checkUsers(t, bin, data)

	checkPolicy(t, bin, data, "open", "open")
	waitLog(t, p, `msg="registration policy changed" policy=open`)
	es := s.reg(t, "register", "--jid", "late@localhost", "--password", latePW, "--login")
	checkRegistered(t, es, "r1", "again1", "late@localhost")
	checkUsers(t, bin, data, "late@localhost")

	checkPolicy(t, bin, data, "closed", "closed")
	checkPolicy(t, bin, data, "closed")
	checkClosed(s.reg(t, "register", "--jid", "later@localhost", "--password", latePW, "--force-feature"), "later")
	checkUsers(t, bin, data, "late@localhost")

	p.stop(t)
}

// TestCommunityRegisterPasswordChange: a logged-in user changes the
// password with slixmpp's plugin (while registration is closed: that is
// about new accounts only). A new password of 7 characters is refused with
// <not-acceptable/>; the next one is accepted, the session goes on, and
// afterwards the new password logs in with SCRAM-SHA-256, SCRAM-SHA-1 and
// PLAIN while the old one is refused with <not-authorized/> by each.
func TestCommunityRegisterPasswordChange(t *testing.T) {
	const oldPW, newPW = "changer old password", "chänger new password"
	bin, data, p := startRegCommunity(t, nil, [2]string{"changer@localhost", oldPW})
	s := p.clients()
	mechs := []string{"SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"}
	args := []string{"--jid", "changer@localhost", "--password", oldPW, "--short-password", "short77", "--new-password", newPW}
	for _, m := range mechs {
		args = append(args, "--try-mech", m)
	}
	es := s.reg(t, "change_password", args...)

	replies := map[string]regIQReply{}
	for _, e := range es.of("change_reply", "user") {
		var r regIQReply
		e.decode(t, &r)
		replies[r.Label] = r
	}
	checkError(t, "changing to a 7-character password", replies["short"].Error, "not-acceptable", "modify",
		"the password must have at least 8 characters")
	if r, ok := replies["new"]; !ok || r.Type != "result" || r.Error != nil {
		t.Errorf("password change: %+v, want a result", r)
	}
	if index(es, "marker", "user", func(e event) bool { return strings.Contains(string(e.raw), "session_alive") }) < 0 {
		t.Error("the session did not answer after the password change")
	}
	waitLog(t, p, `msg="password changed" jid=changer@localhost`)
	for _, m := range mechs {
		if l := es.one(t, "login", "new-"+m); l.Mech != m {
			t.Errorf("login with the new password used %s, want %s", l.Mech, m)
		}
		checkLoginRefused(t, es, "old-"+m)
	}
	checkUsers(t, bin, data, "changer@localhost")

	p.stop(t)
}

// TestCommunityRegisterRemove: leaving and friend, both online, subscribe
// to each other; then leaving removes the account with slixmpp's plugin.
// The IQ result arrives, then the stream ends with a <not-authorized/>
// stream error; friend sees leaving's session go unavailable and gets a
// roster push with subscription none for leaving; a new login with
// leaving's password is refused; the server logs the deletion and
// 'community users' lists only friend.
func TestCommunityRegisterRemove(t *testing.T) {
	const leavingPW, friendPW = "leaving password", "friend password"
	bin, data, p := startRegCommunity(t, nil,
		[2]string{"leaving@localhost", leavingPW}, [2]string{"friend@localhost", friendPW})
	s := p.clients()
	es := s.reg(t, "remove", "--jid", "leaving@localhost", "--password", leavingPW,
		"--peer", "friend@localhost", "--peer-password", friendPW)
	leavingJID := es.one(t, "login", "leaving").JID

	var reply regIQReply
	es.one(t, "remove_reply", "leaving").decode(t, &reply)
	if reply.Type != "result" || reply.Error != nil {
		t.Errorf("removal: %+v, want a result", reply)
	}
	se := es.one(t, "stream_error", "leaving")
	if !slices.Equal(se.Conditions, []string{"not-authorized"}) {
		t.Errorf("stream error %q (%s), want <not-authorized/>", se.Conditions, se.XML)
	}
	// The server writes the result before the stream error (the Go tests
	// of register check the bytes); slixmpp hands the result to the
	// waiting coroutine later than it handles the stream error, so only
	// the end of the stream is checked to come last.
	iReply := index(es, "remove_reply", "leaving", func(event) bool { return true })
	iErr := index(es, "stream_error", "leaving", func(event) bool { return true })
	iEnd := index(es, "disconnected", "leaving", func(event) bool { return true })
	if !(iReply < iEnd && iErr < iEnd) {
		t.Errorf("leaving's events in the order result %d, stream error %d, end %d; want the end last", iReply, iErr, iEnd)
	}

	iRemove := markerIndex(t, es, "leaving", "remove")
	sawUnavailable := false
	for i, e := range es {
		if i > iRemove && e.Event == "presence" && e.Client == "friend" {
			var pr imPresence
			e.decode(t, &pr)
			if pr.Type == "unavailable" && pr.From == leavingJID {
				sawUnavailable = true
			}
		}
	}
	if !sawUnavailable {
		t.Errorf("friend did not see %s go unavailable", leavingJID)
	}
	st := imStateOf(t, es, "friend")
	checkRoster(t, "friend", st, "leaving@localhost", "none")

	checkLoginRefused(t, es, "relogin")
	waitLog(t, p, `msg="account deleted" jid=leaving@localhost`)
	checkUsers(t, bin, data, "friend@localhost")

	p.stop(t)
}
