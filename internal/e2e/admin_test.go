package e2e

import (
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// The tests in this file drive the service administration commands
// (XEP-0133 over XEP-0050, package admin), the registration policy
// command, XEP-0401 invitations and invite-only registration in the
// example server binary (started as in register_test.go, with -admins and
// the registration flags) with the scenarios of clients/admin.py:
// slixmpp's xep_0050 and xep_0133 plugins run the commands, the
// <preauth/> request that presents an invitation token is a raw IQ. What
// the commands changed is checked through logins, in-band registration
// (clients/register.py) and the binary's own users, registration and
// invite subcommands.

const (
	nsAdmin          = "http://jabber.org/protocol/admin"
	nodeAddUser      = nsAdmin + "#add-user"
	nodeDeleteUser   = nsAdmin + "#delete-user"
	nodeChangePass   = nsAdmin + "#change-user-password"
	nodeUsersNum     = nsAdmin + "#get-registered-users-num"
	nodeUsersList    = nsAdmin + "#get-registered-users-list"
	nodeOnlineNum    = nsAdmin + "#get-online-users-num"
	nodeOnlineList   = nsAdmin + "#get-online-users-list"
	nodeAnnounce     = nsAdmin + "#announce"
	nodeDisableUser  = nsAdmin + "#disable-user"
	nodeReenableUser = nsAdmin + "#reenable-user"
	nodeRegistration = "urn:treff:admin#registration"
	nodeInvite       = "urn:xmpp:invite#invite"
	// nodeFastDevices lists a user's FAST devices (package fast); every
	// local user may run it.
	nodeFastDevices = "urn:treff:fast#devices"
)

// adminNodes are all the commands an admin may run.
var adminNodes = []string{nodeAddUser, nodeDeleteUser, nodeChangePass, nodeUsersNum, nodeUsersList,
	nodeOnlineNum, nodeOnlineList, nodeAnnounce, nodeDisableUser, nodeReenableUser, nodeRegistration, nodeInvite}

// userNodes are the commands of the example server for every user: the
// FAST devices and the stranger filter's two (package antispam).
var userNodes = []string{nodeFastDevices, "urn:treff:antispam#filter", "urn:treff:antispam#quarantine"}

// inviteLinkRe matches an invitation link of the domain localhost; the
// token is 15 random bytes in base32.
var inviteLinkRe = regexp.MustCompile(`^xmpp:localhost\?register;preauth=([A-Z2-7]{24})$`)

// Events of clients/admin.py (see its doc comment).
type (
	adminItem struct {
		JID  string `json:"jid"`
		Node string `json:"node"`
		Name string `json:"name"`
	}
	adminCommands struct {
		Type  string       `json:"type"`
		Error *stanzaError `json:"error"`
		Items []adminItem  `json:"items"`
	}
	adminField struct {
		Var      string   `json:"var"`
		Type     string   `json:"type"`
		Label    string   `json:"label"`
		Required bool     `json:"required"`
		Values   []string `json:"values"`
		Options  []string `json:"options"`
	}
	adminForm struct {
		Type         string       `json:"type"`
		Title        string       `json:"title"`
		Instructions string       `json:"instructions"`
		Fields       []adminField `json:"fields"`
	}
	adminNote struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	adminReply struct {
		Label      string       `json:"label"`
		SentNode   string       `json:"sent_node"`
		Stage      string       `json:"stage"`
		Type       string       `json:"type"`
		From       string       `json:"from"`
		Error      *stanzaError `json:"error"`
		HasCommand bool         `json:"has_command"`
		Node       string       `json:"node"`
		SessionID  string       `json:"sessionid"`
		Status     string       `json:"status"`
		Actions    []string     `json:"actions"`
		Notes      []adminNote  `json:"notes"`
		Form       *adminForm   `json:"form"`
	}
	adminHeadline struct {
		From    string  `json:"from"`
		To      string  `json:"to"`
		Subject *string `json:"subject"`
		Body    string  `json:"body"`
	}
)

// admin runs a scenario of clients/admin.py.
func (s *server) admin(t *testing.T, scenario string, args ...string) events {
	t.Helper()
	return s.client(t, "admin.py", scenario, args...)
}

// field returns the form's field named v, or nil.
func (f *adminForm) field(v string) *adminField {
	if f == nil {
		return nil
	}
	for i := range f.Fields {
		if f.Fields[i].Var == v {
			return &f.Fields[i]
		}
	}
	return nil
}

// cmdReply returns the reply of client's command run label at stage
// (execute, complete or cancel), which must be the only one.
func cmdReply(t *testing.T, es events, client, label, stage string) adminReply {
	t.Helper()
	var out []adminReply
	for _, e := range es.of("command_reply", client) {
		var r adminReply
		e.decode(t, &r)
		if r.Label == label && r.Stage == stage {
			out = append(out, r)
		}
	}
	if len(out) != 1 {
		t.Fatalf("%s: want one reply to %s of %q, got %+v", client, stage, label, out)
	}
	return out[0]
}

// checkCompleted asserts a reply that completes the command: a result from
// the domain with status completed for the node sent, the session of the
// execution (if given), and the note, if not empty, as its only note.
func checkCompleted(t *testing.T, r adminReply, sessionID, note string) {
	t.Helper()
	what := r.Stage + " of " + r.Label
	if r.Type != "result" || r.Error != nil || r.From != "localhost" || r.Status != "completed" || r.Node != r.SentNode {
		t.Errorf("%s: %s from %q (error %+v), status %q, node %q; want a result from localhost with status completed for %s",
			what, r.Type, r.From, r.Error, r.Status, r.Node, r.SentNode)
	}
	if r.SessionID == "" || (sessionID != "" && r.SessionID != sessionID) {
		t.Errorf("%s: session %q, want %q", what, r.SessionID, sessionID)
	}
	var want []adminNote
	if note != "" {
		want = []adminNote{{"info", note}}
	}
	if !slices.Equal(r.Notes, want) {
		t.Errorf("%s: notes %+v, want %+v", what, r.Notes, want)
	}
}

// checkFormReply asserts the reply to the execution of a command that
// has a form: status executing with the single action complete, and a
// form of type form with FORM_TYPE formType and the given fields (var,
// type and whether required, in this order, after FORM_TYPE). It
// returns the form.
func checkFormReply(t *testing.T, r adminReply, formType string, fields ...adminField) *adminForm {
	t.Helper()
	what := "execution of " + r.Label
	if r.Type != "result" || r.Error != nil || r.Status != "executing" || r.Node != r.SentNode || r.SessionID == "" ||
		!slices.Equal(r.Actions, []string{"complete"}) {
		t.Fatalf("%s: %+v, want status executing with the action complete", what, r)
	}
	if r.Form == nil || r.Form.Type != "form" || r.Form.Title == "" {
		t.Fatalf("%s: form %+v, want a form with a title", what, r.Form)
	}
	checkFormType(t, what, r.Form, formType)
	var got []adminField
	for _, f := range r.Form.Fields[1:] {
		if f.Label == "" {
			t.Errorf("%s: field %s has no label", what, f.Var)
		}
		got = append(got, adminField{Var: f.Var, Type: f.Type, Required: f.Required})
	}
	if !slices.EqualFunc(got, fields, func(a, b adminField) bool {
		return a.Var == b.Var && a.Type == b.Type && a.Required == b.Required
	}) {
		t.Errorf("%s: fields (var, type, required) %+v, want %+v", what, got, fields)
	}
	return r.Form
}

// checkFormType asserts the form's first field: the hidden FORM_TYPE.
func checkFormType(t *testing.T, what string, f *adminForm, formType string) {
	t.Helper()
	if len(f.Fields) == 0 || f.Fields[0].Var != "FORM_TYPE" || f.Fields[0].Type != "hidden" ||
		!slices.Equal(f.Fields[0].Values, []string{formType}) {
		t.Errorf("%s: form fields %+v, want FORM_TYPE %s first", what, f.Fields, formType)
	}
}

// resultValues asserts a command completed at once (no form to fill in)
// with a result form of type formType, and returns the values of its
// field v.
func resultValues(t *testing.T, r adminReply, formType, v string) []string {
	t.Helper()
	checkCompleted(t, r, "", "")
	if r.Form == nil || r.Form.Type != "result" {
		t.Fatalf("%s: form %+v, want a result form", r.Label, r.Form)
	}
	checkFormType(t, r.Label, r.Form, formType)
	f := r.Form.field(v)
	if f == nil {
		t.Fatalf("%s: no field %s in %+v", r.Label, v, r.Form.Fields)
	}
	return f.Values
}

// checkUserList asserts a get-registered-users-list result: a jid-multi
// with exactly the accounts (in any order).
func checkUserList(t *testing.T, r adminReply, want ...string) {
	t.Helper()
	got := slices.Clone(resultValues(t, r, nsAdmin, "registereduserjids"))
	if f := r.Form.field("registereduserjids"); f.Type != "jid-multi" {
		t.Errorf("%s: registereduserjids of type %q, want jid-multi", r.Label, f.Type)
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("%s: registered users %q, want %q", r.Label, got, want)
	}
}

// checkRegRefused asserts that client got the registration form and its
// set was refused with <not-allowed/> (type cancel) and text; it did not
// log in.
func checkRegRefused(t *testing.T, es events, client, text string) {
	t.Helper()
	if f := authFeatures(t, es, client); !slices.Contains(f.Features, "register") || f.Forced {
		t.Errorf("%s: features after STARTTLS %+v, want <register/> offered by the server", client, f)
	}
	es.one(t, "register_form", client)
	rs := regReplies(t, es, client)
	if len(rs) != 1 || rs[0].Stage != "set" {
		t.Fatalf("%s: registration replies %+v, want one to the set", client, rs)
	}
	checkError(t, client+": registration", rs[0].Error, "not-allowed", "cancel", text)
	if got := es.of("login", ""); len(got) != 0 {
		t.Errorf("logins after a refused registration: %+v", got)
	}
}

// preauthReply returns the reply to client's <preauth/> request.
func preauthReply(t *testing.T, es events, client string) regIQReply {
	t.Helper()
	var r regIQReply
	es.one(t, "preauth_reply", client).decode(t, &r)
	return r
}

// TestCommunityAdminCommands: boss, listed in -admins, gets all nine
// commands in the command list (disco#items of the commands node, each
// on the JID localhost with a name); the ones with a form answer the
// execution with it (status executing, action complete, FORM_TYPE and the
// fields of XEP-0133 with their types; the registration policy form
// shows the policy in force and its three options) and cancelling it
// ends the session with status canceled; the others complete at once
// with their result (2 registered users, their list, 1 online user, an
// invitation link that 'community invite -list' then shows). alice, not
// an admin, gets an empty command list and <forbidden/> (type auth) for
// each of the eleven. Nothing changed: the same accounts, registration
// still closed.
func TestCommunityAdminCommands(t *testing.T) {
	const bossPW, alicePW2 = "boss password", "alice password"
	bin, data, p := startRegCommunity(t, []string{"-admins", "boss@localhost"},
		[2]string{"boss@localhost", bossPW}, [2]string{"alice@localhost", alicePW2})
	s := p.clients()
	run := func(jid, pw string) events {
		args := []string{"--jid", jid, "--password", pw}
		for _, n := range adminNodes {
			args = append(args, "--execute", n)
		}
		return s.admin(t, "commands", args...)
	}

	es := run("boss@localhost", bossPW)
	var list adminCommands
	es.one(t, "commands", "user").decode(t, &list)
	var nodes []string
	for _, it := range list.Items {
		nodes = append(nodes, it.Node)
		if it.JID != "localhost" || it.Name == "" {
			t.Errorf("command item %+v, want the JID localhost and a name", it)
		}
	}
	slices.Sort(nodes)
	want := slices.Sorted(slices.Values(append(slices.Clone(userNodes), adminNodes...)))
	if list.Type != "result" || !slices.Equal(nodes, want) {
		t.Errorf("admin's command list: %s %q, want %q", list.Type, nodes, want)
	}

	forms := map[string][]adminField{
		nodeAddUser: {{Var: "accountjid", Type: "jid-single", Required: true},
			{Var: "password", Type: "text-private", Required: true}, {Var: "password-verify", Type: "text-private"}},
		nodeDeleteUser: {{Var: "accountjids", Type: "jid-multi", Required: true}},
		nodeChangePass: {{Var: "accountjid", Type: "jid-single", Required: true},
			{Var: "password", Type: "text-private", Required: true}},
		nodeAnnounce:     {{Var: "subject", Type: "text-single"}, {Var: "announcement", Type: "text-multi", Required: true}},
		nodeRegistration: {{Var: "policy", Type: "list-single", Required: true}},
		nodeDisableUser:  {{Var: "accountjids", Type: "jid-multi", Required: true}, {Var: "reason", Type: "text-single"}},
		nodeReenableUser: {{Var: "accountjids", Type: "jid-multi", Required: true}},
	}
	for node, fields := range forms {
		r := cmdReply(t, es, "user", node, "execute")
		f := checkFormReply(t, r, nsAdmin, fields...)
		if node == nodeRegistration {
			if pf := f.field("policy"); !slices.Equal(pf.Options, []string{"open", "closed", "invite"}) ||
				!slices.Equal(pf.Values, []string{"closed"}) {
				t.Errorf("policy field %+v, want the options open, closed, invite and the value closed", pf)
			}
		}
		c := cmdReply(t, es, "user", node, "cancel")
		if c.Type != "result" || c.Status != "canceled" || c.SessionID != r.SessionID || c.Form != nil {
			t.Errorf("cancelling %s: %+v, want status canceled for session %s", node, c, r.SessionID)
		}
	}
	if got := resultValues(t, cmdReply(t, es, "user", nodeUsersNum, "execute"), nsAdmin, "registeredusersnum"); !slices.Equal(got, []string{"2"}) {
		t.Errorf("registered users: %q, want 2", got)
	}
	checkUserList(t, cmdReply(t, es, "user", nodeUsersList, "execute"), "alice@localhost", "boss@localhost")
	if got := resultValues(t, cmdReply(t, es, "user", nodeOnlineNum, "execute"), nsAdmin, "onlineusersnum"); !slices.Equal(got, []string{"1"}) {
		t.Errorf("online users: %q, want 1 (boss)", got)
	}
	if got := resultValues(t, cmdReply(t, es, "user", nodeOnlineList, "execute"), nsAdmin, "onlineuserjids"); !slices.Equal(got, []string{"boss@localhost"}) {
		t.Errorf("online users list: %q, want boss@localhost", got)
	}
	links := resultValues(t, cmdReply(t, es, "user", nodeInvite, "execute"), "urn:xmpp:invite", "uri")
	if len(links) != 1 || !inviteLinkRe.MatchString(links[0]) {
		t.Errorf("invitation link %q, want one like xmpp:localhost?register;preauth=TOKEN", links)
	} else if got := runCommunity(t, bin, "invite", "-data", data, "-list"); !strings.HasPrefix(got, links[0]+" (expires ") {
		t.Errorf("community invite -list printed %q, want the link %s", got, links[0])
	}

	es = run("alice@localhost", alicePW2)
	list = adminCommands{}
	es.one(t, "commands", "user").decode(t, &list)
	var aliceNodes []string
	for _, it := range list.Items {
		aliceNodes = append(aliceNodes, it.Node)
	}
	slices.Sort(aliceNodes)
	if list.Type != "result" || !slices.Equal(aliceNodes, slices.Sorted(slices.Values(userNodes))) {
		t.Errorf("alice's command list: %s %+v, want only %q", list.Type, list.Items, userNodes)
	}
	for _, node := range adminNodes {
		r := cmdReply(t, es, "user", node, "execute")
		checkError(t, "alice executing "+node, r.Error, "forbidden", "auth", "")
		if r.Type != "error" || r.HasCommand {
			t.Errorf("alice executing %s: %+v, want an error without <command/>", node, r)
		}
	}
	if got := es.of("command_reply", "user"); len(got) != len(adminNodes) {
		t.Errorf("alice got %d command replies, want one per command (no second stage)", len(got))
	}

	checkUsers(t, bin, data, "alice@localhost", "boss@localhost")
	checkPolicy(t, bin, data, "closed")
	p.stop(t)
}

// TestCommunityAdminUsers: boss manages an account while friend is
// online, all through commands of slixmpp's xep_0133 plugin.
// add-user creates newuser (note "The account newuser@localhost was
// created."), which then logs in and stays online; adding it again is
// refused with <conflict/> and adding another account with a
// password-verify that differs with <not-acceptable/> (no account). After
// change-user-password the new password logs in and the old one is
// refused. The registered users are exactly 3 (boss, friend, newuser),
// the online users 3. An announcement with a subject and a text of two
// lines (with characters XML escapes) reaches each of the three online
// sessions once, as a headline from localhost with that subject and body.
// delete-user ends newuser's stream with <not-authorized/>, its login is
// then refused, the list holds boss and friend only, and so does
// 'community users'. The server logs each change with the admin's JID.
func TestCommunityAdminUsers(t *testing.T) {
	const bossPW, friendPW = "boss password", "friend password"
	const firstPW, newPW = "first pässwörd", "second pässwörd"
	bin, data, p := startRegCommunity(t, []string{"-admins", "boss@localhost"},
		[2]string{"boss@localhost", bossPW}, [2]string{"friend@localhost", friendPW})
	s := p.clients()
	subject := "Maintenance <tonight> & 'tomorrow'"
	body := uniqueBody("announce") + "\nsecond line"
	es := s.admin(t, "manage", "--jid", "boss@localhost", "--password", bossPW,
		"--peer", "friend@localhost", "--peer-password", friendPW,
		"--account", "newuser@localhost", "--account-password", firstPW, "--new-password", newPW,
		"--mismatch-account", "other@localhost", "--subject", subject, "--body", body)

	// add-user: a form, then completed.
	r := cmdReply(t, es, "admin", "add", "execute")
	checkFormReply(t, r, nsAdmin, adminField{Var: "accountjid", Type: "jid-single", Required: true},
		adminField{Var: "password", Type: "text-private", Required: true}, adminField{Var: "password-verify", Type: "text-private"})
	checkCompleted(t, cmdReply(t, es, "admin", "add", "complete"), r.SessionID, "The account newuser@localhost was created.")
	addedJID := es.one(t, "login", "added").JID
	if bare, _, _ := strings.Cut(addedJID, "/"); bare != "newuser@localhost" {
		t.Errorf("the added account logged in as %s", addedJID)
	}
	waitLog(t, p, `msg="account created by an admin" jid=newuser@localhost admin=boss@localhost`)
	checkError(t, "adding an existing account", cmdReply(t, es, "admin", "add_again", "complete").Error,
		"conflict", "cancel", "the account exists already")
	checkError(t, "adding with differing passwords", cmdReply(t, es, "admin", "add_mismatch", "complete").Error,
		"not-acceptable", "modify", "the passwords differ")

	// change-user-password.
	r = cmdReply(t, es, "admin", "change", "execute")
	checkCompleted(t, cmdReply(t, es, "admin", "change", "complete"), r.SessionID, "The password of newuser@localhost was changed.")
	if l := es.one(t, "login", "new"); !strings.HasPrefix(l.JID, "newuser@localhost/") {
		t.Errorf("login with the new password as %s", l.JID)
	}
	checkLoginRefused(t, es, "old")
	waitLog(t, p, `msg="password changed by an admin" jid=newuser@localhost admin=boss@localhost`)

	// Counts and list.
	if got := resultValues(t, cmdReply(t, es, "admin", "users_num", "execute"), nsAdmin, "registeredusersnum"); !slices.Equal(got, []string{"3"}) {
		t.Errorf("registered users: %q, want 3", got)
	}
	checkUserList(t, cmdReply(t, es, "admin", "users_list", "execute"), "boss@localhost", "friend@localhost", "newuser@localhost")
	if got := resultValues(t, cmdReply(t, es, "admin", "online_num", "execute"), nsAdmin, "onlineusersnum"); !slices.Equal(got, []string{"3"}) {
		t.Errorf("online users: %q, want 3 (boss, friend, newuser)", got)
	}

	// The announcement.
	r = cmdReply(t, es, "admin", "announce", "execute")
	checkCompleted(t, cmdReply(t, es, "admin", "announce", "complete"), r.SessionID, "The announcement was sent to 3 sessions.")
	iAnnounce := markerIndex(t, es, "admin", "announce")
	for _, c := range []string{"friend", "added", "admin"} {
		full := es.one(t, "login", c).JID
		hs := es.of("headline", c)
		if len(hs) != 1 {
			t.Errorf("%s got %d headlines, want the announcement once: %+v", c, len(hs), hs)
			continue
		}
		var h adminHeadline
		hs[0].decode(t, &h)
		if h.From != "localhost" || h.To != full || h.Subject == nil || *h.Subject != subject || h.Body != body {
			t.Errorf("%s got a headline from %q to %q, subject %v, body %q; want from localhost to %s, subject %q, body %q",
				c, h.From, h.To, h.Subject, h.Body, full, subject, body)
		}
		if i := index(es, "headline", c, func(event) bool { return true }); i < iAnnounce {
			t.Errorf("%s got the headline before the announcement was sent", c)
		}
	}
	waitLog(t, p, `msg="announcement sent" admin=boss@localhost sessions=3`)

	// delete-user.
	r = cmdReply(t, es, "admin", "delete", "execute")
	checkCompleted(t, cmdReply(t, es, "admin", "delete", "complete"), r.SessionID, "Deleted: newuser@localhost.")
	se := es.one(t, "stream_error", "added")
	if !slices.Equal(se.Conditions, []string{"not-authorized"}) {
		t.Errorf("the deleted account's stream error %q (%s), want <not-authorized/>", se.Conditions, se.XML)
	}
	if index(es, "disconnected", "added", func(event) bool { return true }) < markerIndex(t, es, "admin", "delete") {
		t.Error("the deleted account's stream did not end after the deletion")
	}
	checkLoginRefused(t, es, "deleted")
	checkUserList(t, cmdReply(t, es, "admin", "users_list_after", "execute"), "boss@localhost", "friend@localhost")
	waitLog(t, p, `msg="account deleted" jid=newuser@localhost`)
	checkUsers(t, bin, data, "boss@localhost", "friend@localhost")

	p.stop(t)
}

// TestCommunityAdminRegistration: with registration closed at start, boss
// sets the policy with the command urn:treff:admin#registration. A value
// outside the options is refused with <not-acceptable/>; "open" is
// accepted (note "Registration is now open."), 'community registration'
// reports it, and without a restart a new client registers in-band with
// slixmpp's plugin and logs in. Then "closed" (the form now shows open):
// the server offers no <register/> and refuses the form request and the
// registration with <not-allowed/> "Registration is closed for now.".
func TestCommunityAdminRegistration(t *testing.T) {
	const bossPW, newbiePW = "boss password", "newbie password"
	bin, data, p := startRegCommunity(t, []string{"-admins", "boss@localhost"}, [2]string{"boss@localhost", bossPW})
	s := p.clients()
	checkPolicy(t, bin, data, "closed")
	policyForm := func(es events, label, current string) adminReply {
		t.Helper()
		r := cmdReply(t, es, "admin", label, "execute")
		f := checkFormReply(t, r, nsAdmin, adminField{Var: "policy", Type: "list-single", Required: true})
		if pf := f.field("policy"); !slices.Equal(pf.Values, []string{current}) {
			t.Errorf("policy form before %s: value %q, want %s", label, pf.Values, current)
		}
		return r
	}

	es := s.admin(t, "set_policy", "--jid", "boss@localhost", "--password", bossPW, "--policy", "sometimes", "--policy", "open")
	policyForm(es, "sometimes", "closed")
	checkError(t, "setting the policy sometimes", cmdReply(t, es, "admin", "sometimes", "complete").Error,
		"not-acceptable", "modify", "the policy is open, closed or invite")
	r := policyForm(es, "open", "closed")
	checkCompleted(t, cmdReply(t, es, "admin", "open", "complete"), r.SessionID, "Registration is now open.")
	checkPolicy(t, bin, data, "open")
	waitLog(t, p, `msg="registration policy changed" policy=open`)

	es = s.reg(t, "register", "--jid", "newbie@localhost", "--password", newbiePW, "--login")
	checkRegistered(t, es, "r1", "again1", "newbie@localhost")
	checkUsers(t, bin, data, "boss@localhost", "newbie@localhost")

	es = s.admin(t, "set_policy", "--jid", "boss@localhost", "--password", bossPW, "--policy", "closed")
	r = policyForm(es, "closed", "open")
	checkCompleted(t, cmdReply(t, es, "admin", "closed", "complete"), r.SessionID, "Registration is now closed.")
	checkPolicy(t, bin, data, "closed")

	es = s.reg(t, "register", "--jid", "late@localhost", "--password", newbiePW, "--force-feature")
	if f := authFeatures(t, es, "r1"); slices.Contains(f.Features, "register") || !f.Forced {
		t.Errorf("features after STARTTLS while closed: %+v, want no <register/> (added by the client)", f)
	}
	rs := regReplies(t, es, "r1")
	if len(rs) != 2 || rs[0].Stage != "get" || rs[1].Stage != "set" {
		t.Fatalf("registration replies %+v, want one to the get and one to the set", rs)
	}
	for _, r := range rs {
		checkError(t, r.Stage+" while closed", r.Error, "not-allowed", "cancel", "Registration is closed for now.")
	}
	checkUsers(t, bin, data, "boss@localhost", "newbie@localhost")

	p.stop(t)
}

// TestCommunityInviteOnly: with -registration invite, 'community invite'
// prints a link xmpp:localhost?register;preauth=TOKEN, which 'community
// invite -list' shows. A new client presents its token with <preauth/>
// on the pre-auth stream (a result), registers with slixmpp's plugin
// (the server offers <register/>), logs in on that stream and again on a
// new connection; the server logs the registration as invited, and the
// link is no longer listed. The same token again: <preauth/> gets
// <item-not-found/> and the registration <not-allowed/> "Registration
// needs an invitation.". So does a token that expired ('community invite
// -valid 1s', two seconds earlier), and a registration without any
// token. Only the invited account exists.
func TestCommunityInviteOnly(t *testing.T) {
	const guestPW = "guest password"
	bin, data, p := startRegCommunity(t, []string{"-registration", "invite"})
	s := p.clients()
	checkPolicy(t, bin, data, "invite")
	const notValid = "This invitation is not valid: it may have expired or been used."
	const needsInvite = "Registration needs an invitation."

	link := strings.TrimSpace(runCommunity(t, bin, "invite", "-data", data))
	if !inviteLinkRe.MatchString(link) {
		t.Fatalf("community invite printed %q, want xmpp:localhost?register;preauth=TOKEN", link)
	}
	if got := runCommunity(t, bin, "invite", "-data", data, "-list"); !strings.HasPrefix(got, link+" (expires ") {
		t.Errorf("community invite -list printed %q, want the link %s", got, link)
	}

	es := s.admin(t, "register_invite", "--jid", "guest@localhost", "--password", guestPW, "--invite", link, "--login")
	if r := preauthReply(t, es, "r1"); r.Type != "result" || r.Error != nil {
		t.Errorf("preauth with a fresh token: %+v, want a result", r)
	}
	checkRegistered(t, es, "r1", "again1", "guest@localhost")
	waitLog(t, p, `msg="account registered" jid=guest@localhost invited=true`)
	if got := runCommunity(t, bin, "invite", "-data", data, "-list"); got != "" {
		t.Errorf("community invite -list printed %q after the link was used, want nothing", got)
	}

	refused := func(what, jid, link string) {
		t.Helper()
		es := s.admin(t, "register_invite", "--jid", jid, "--password", guestPW, "--invite", link, "--login")
		checkError(t, what+": preauth", preauthReply(t, es, "r1").Error, "item-not-found", "cancel", notValid)
		checkRegRefused(t, es, "r1", needsInvite)
	}
	refused("the used token", "second@localhost", link)

	expired := strings.TrimSpace(runCommunity(t, bin, "invite", "-data", data, "-valid", "1s"))
	if !inviteLinkRe.MatchString(expired) || expired == link {
		t.Fatalf("community invite -valid 1s printed %q, want a new link", expired)
	}
	time.Sleep(2 * time.Second)
	refused("an expired token", "late@localhost", expired)

	es = s.reg(t, "register", "--jid", "uninvited@localhost", "--password", guestPW, "--login")
	if got := es.of("preauth_reply", ""); len(got) != 0 {
		t.Errorf("preauth sent without a token: %+v", got)
	}
	checkRegRefused(t, es, "r1", needsInvite)

	checkUsers(t, bin, data, "guest@localhost")
	p.stop(t)
}

// TestCommunityInviteByUser: with -invites-by-users yes and
// -invite-validity 2d, inviter (no admin) sees exactly one command,
// urn:xmpp:invite#invite; running it completes at once with a result form
// (FORM_TYPE urn:xmpp:invite) holding the link and its expiry two days
// ahead, and the server logs who created it. A new client registers with
// that link (<preauth/>, then slixmpp's plugin) and logs in.
func TestCommunityInviteByUser(t *testing.T) {
	const inviterPW, guestPW = "inviter password", "guest password"
	bin, data, p := startRegCommunity(t,
		[]string{"-registration", "invite", "-invites-by-users", "yes", "-invite-validity", "2d"},
		[2]string{"inviter@localhost", inviterPW})
	s := p.clients()

	t0 := time.Now().Truncate(time.Second)
	es := s.admin(t, "commands", "--jid", "inviter@localhost", "--password", inviterPW, "--execute", nodeInvite)
	t1 := time.Now()
	var list adminCommands
	es.one(t, "commands", "user").decode(t, &list)
	var inviterNodes []string
	for _, it := range list.Items {
		if it.JID == "localhost" {
			inviterNodes = append(inviterNodes, it.Node)
		}
	}
	slices.Sort(inviterNodes)
	if want := slices.Sorted(slices.Values(append(slices.Clone(userNodes), nodeInvite))); list.Type != "result" || !slices.Equal(inviterNodes, want) || len(list.Items) != len(want) {
		t.Errorf("inviter's command list: %s %+v, want only %q on localhost", list.Type, list.Items, want)
	}
	r := cmdReply(t, es, "user", nodeInvite, "execute")
	links := resultValues(t, r, "urn:xmpp:invite", "uri")
	if len(links) != 1 || !inviteLinkRe.MatchString(links[0]) {
		t.Fatalf("invitation link %q, want one like xmpp:localhost?register;preauth=TOKEN", links)
	}
	expire := r.Form.field("expire")
	if expire == nil || len(expire.Values) != 1 {
		t.Fatalf("no expiry in %+v", r.Form.Fields)
	}
	const d = 48 * time.Hour
	exp, err := time.Parse(time.RFC3339, expire.Values[0])
	if err != nil || exp.Before(t0.Add(d)) || exp.After(t1.Add(d)) {
		t.Errorf("expiry %q (%v), want two days after the command ran: between %s and %s", expire.Values[0], err,
			t0.Add(d).UTC().Format(time.RFC3339), t1.Add(d).UTC().Format(time.RFC3339))
	}
	waitLog(t, p, `msg="invitation created" by=inviter@localhost`)

	es = s.admin(t, "register_invite", "--jid", "guest@localhost", "--password", guestPW, "--invite", links[0], "--login")
	if r := preauthReply(t, es, "r1"); r.Type != "result" || r.Error != nil {
		t.Errorf("preauth with the user's link: %+v, want a result", r)
	}
	checkRegistered(t, es, "r1", "again1", "guest@localhost")
	waitLog(t, p, `msg="account registered" jid=guest@localhost invited=true`)
	checkUsers(t, bin, data, "guest@localhost", "inviter@localhost")

	p.stop(t)
}
