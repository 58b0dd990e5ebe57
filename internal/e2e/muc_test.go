package e2e

import (
	"maps"
	"slices"
	"testing"
	"time"
)

// The tests in this file drive the group chat service (XEP-0045, package
// muc) of the example server binary (examples/community, started as in
// register_test.go), which serves it on conference.localhost by default,
// with the scenarios of clients/muc.py: slixmpp's xep_0045 plugin for
// joining, the owner form, the subject and destruction, xep_0030 for
// discovery. Rooms the owner makes persistent live in the binary's data
// folder and must outlive a restart.

const mucService = "conference.localhost"

// Events of clients/muc.py (see its doc comment).
type (
	mucItem struct {
		Affiliation string `json:"affiliation"`
		Role        string `json:"role"`
		JID         string `json:"jid"`
		Nick        string `json:"nick"`
		Actor       string `json:"actor"`  // <actor nick/>
		Reason      string `json:"reason"` // <reason/>
	}
	mucPresence struct {
		Label   string       `json:"label"` // join_error only
		From    string       `json:"from"`
		Type    string       `json:"type"`
		Error   *stanzaError `json:"error"`
		Codes   []int        `json:"codes"`
		Item    *mucItem     `json:"item"`
		Destroy *struct {
			JID    string `json:"jid"`
			Reason string `json:"reason"`
		} `json:"destroy"`
	}
	mucMessage struct {
		From    string  `json:"from"`
		Type    string  `json:"type"`
		Body    *string `json:"body"`
		Subject *string `json:"subject"`
		Delay   *struct {
			From  string `json:"from"`
			Stamp string `json:"stamp"`
		} `json:"delay"`
		MUCUser bool `json:"muc_user"`
		Invite  *struct {
			From   string `json:"from"`
			To     string `json:"to"`
			Reason string `json:"reason"`
		} `json:"invite"`
		Password *string      `json:"password"`
		Error    *stanzaError `json:"error"`
	}
	mucJoined struct {
		Room        string   `json:"room"`
		FromJID     string   `json:"from_jid"`
		Codes       []int    `json:"codes"`
		Occupants   []string `json:"occupants"`
		History     []string `json:"history"`
		Subject     string   `json:"subject"`
		SubjectFrom string   `json:"subject_from"`
	}
	mucForm struct {
		Type   string `json:"type"`
		Fields []struct {
			Var    string   `json:"var"`
			Type   string   `json:"type"`
			Values []string `json:"values"`
		} `json:"fields"`
	}
	mucIQReply struct {
		Type  string       `json:"type"`
		Error *stanzaError `json:"error"`
	}
	mucAdminReply struct {
		Label string       `json:"label"`
		Type  string       `json:"type"`
		Error *stanzaError `json:"error"`
		JIDs  []string     `json:"jids"`
	}
	mucDiscoInfo struct {
		Label      string       `json:"label"`
		Type       string       `json:"type"`
		Error      *stanzaError `json:"error"`
		Identities [][]*string  `json:"identities"` // category, type, lang, name
		Features   []string     `json:"features"`
		Form       *mucForm     `json:"form"`
	}
	mucDiscoItems struct {
		Type  string `json:"type"`
		Items []struct {
			JID  string `json:"jid"`
			Name string `json:"name"`
		} `json:"items"`
	}
)

// value returns the values of a form field.
func (f *mucForm) value(v string) ([]string, bool) {
	if f == nil {
		return nil, false
	}
	for _, fl := range f.Fields {
		if fl.Var == v {
			return fl.Values, true
		}
	}
	return nil, false
}

// muc runs a scenario of clients/muc.py.
func (s *server) muc(t *testing.T, scenario string, args ...string) events {
	t.Helper()
	return s.client(t, "muc.py", scenario, args...)
}

// mucAccounts are alice, bob and carol with their passwords, as the
// scenarios' options.
var mucAccounts = []string{"--jid", "alice@localhost", "--password", alicePW,
	"--peer", "bob@localhost", "--peer-password", bobPW,
	"--third", "carol@localhost", "--third-password", mucCarolPW}

const mucCarolPW = "carol's pässword"

// startMUCCommunity builds and starts the example server with the
// accounts of mucAccounts.
func startMUCCommunity(t *testing.T) (string, string, *communityProc) {
	t.Helper()
	return startRegCommunity(t, nil, [2]string{"alice@localhost", alicePW}, [2]string{"bob@localhost", bobPW},
		[2]string{"carol@localhost", mucCarolPW})
}

func mucArgs(args ...string) []string { return append(slices.Clone(mucAccounts), args...) }

func mucPresences(t *testing.T, es events, client string) []mucPresence {
	t.Helper()
	var out []mucPresence
	for _, e := range es.of("muc_presence", client) {
		var p mucPresence
		e.decode(t, &p)
		out = append(out, p)
	}
	return out
}

func mucMessages(t *testing.T, es events, client string) []mucMessage {
	t.Helper()
	var out []mucMessage
	for _, e := range es.of("muc_message", client) {
		var m mucMessage
		e.decode(t, &m)
		out = append(out, m)
	}
	return out
}

// joinedRooms returns the joins of client that the plugin reported, by
// room.
func joinedRooms(t *testing.T, es events, client string) map[string]mucJoined {
	t.Helper()
	out := map[string]mucJoined{}
	for _, e := range es.of("joined", client) {
		var j mucJoined
		e.decode(t, &j)
		out[j.Room] = j
	}
	return out
}

// checkJoined asserts that client joined room as nick and its
// self-presence had exactly the status codes want.
func checkJoined(t *testing.T, es events, client, room, nick string, want ...int) mucJoined {
	t.Helper()
	j, ok := joinedRooms(t, es, client)[room]
	if !ok {
		t.Errorf("%s did not join %s", client, room)
		return j
	}
	if j.FromJID != room+"/"+nick || !slices.Equal(j.Codes, want) {
		t.Errorf("%s joined %s as %s with codes %v, want %s/%s with %v", client, room, j.FromJID, j.Codes, room, nick, want)
	}
	return j
}

func checkReply(t *testing.T, es events, kind, client, what string) {
	t.Helper()
	var r mucIQReply
	es.one(t, kind, client).decode(t, &r)
	if r.Type != "result" || r.Error != nil {
		t.Errorf("%s: %s %+v, want a result", what, r.Type, r.Error)
	}
}

// adminReplies returns the muc#admin answers client got, by label.
func adminReplies(t *testing.T, es events, client string) map[string]mucAdminReply {
	t.Helper()
	out := map[string]mucAdminReply{}
	for _, e := range es.of("admin_reply", client) {
		var r mucAdminReply
		e.decode(t, &r)
		out[r.Label] = r
	}
	return out
}

// checkAdmin asserts that client's muc#admin request label was answered
// with a result and returns the answer.
func checkAdmin(t *testing.T, es events, client, label string) mucAdminReply {
	t.Helper()
	r, ok := adminReplies(t, es, client)[label]
	if !ok {
		t.Errorf("%s: no answer to the muc#admin %s", client, label)
	} else if r.Type != "result" || r.Error != nil {
		t.Errorf("%s: muc#admin %s answered %s %+v, want a result", client, label, r.Type, r.Error)
	}
	return r
}

// joinErrors returns the refused joins, by label.
func joinErrors(t *testing.T, es events) map[string]mucPresence {
	t.Helper()
	out := map[string]mucPresence{}
	for _, e := range es.of("join_error", "") {
		var p mucPresence
		e.decode(t, &p)
		out[p.Label] = p
	}
	return out
}

// checkJoinError asserts that the join labelled label was refused from
// from with the error cond (of type typ) and text.
func checkJoinError(t *testing.T, es events, label, from, cond, typ, text string) {
	t.Helper()
	p, ok := joinErrors(t, es)[label]
	if !ok {
		t.Errorf("%s: no answer", label)
		return
	}
	if p.From != from || p.Type != "error" {
		t.Errorf("%s: presence of type %q from %s, want an error from %s", label, p.Type, p.From, from)
	}
	checkError(t, label, p.Error, cond, typ, text)
}

// removals returns the unavailable presences from room/nick that client
// got.
func removals(t *testing.T, es events, client, occupant string) []mucPresence {
	t.Helper()
	var out []mucPresence
	for _, pr := range mucPresences(t, es, client) {
		if pr.From == occupant && pr.Type == "unavailable" {
			out = append(out, pr)
		}
	}
	return out
}

// checkRemoved asserts that the n-th (from 0) unavailable presence from
// occupant to client has exactly the codes want, role none and the actor
// and reason given.
func checkRemoved(t *testing.T, es events, client, occupant string, n int, actor, reason string, want ...int) {
	t.Helper()
	gone := removals(t, es, client, occupant)
	if len(gone) <= n {
		t.Errorf("%s got %d unavailable presences from %s (%+v), want at least %d", client, len(gone), occupant, gone, n+1)
		return
	}
	pr := gone[n]
	if !slices.Equal(pr.Codes, want) || pr.Item == nil || pr.Item.Role != "none" ||
		pr.Item.Actor != actor || pr.Item.Reason != reason {
		t.Errorf("%s: unavailable presence %d from %s: codes %v item %+v; want codes %v, role none, actor %q, reason %q",
			client, n+1, occupant, pr.Codes, pr.Item, want, actor, reason)
	}
}

func discoInfo(t *testing.T, es events, client string) mucDiscoInfo {
	t.Helper()
	var d mucDiscoInfo
	es.one(t, "disco_info", client).decode(t, &d)
	return d
}

func discoItems(t *testing.T, es events, client string) map[string]string {
	t.Helper()
	var d mucDiscoItems
	es.one(t, "disco_items", client).decode(t, &d)
	if d.Type != "result" {
		t.Errorf("disco#items of %s: %s, want a result", mucService, d.Type)
	}
	out := map[string]string{}
	for _, it := range d.Items {
		out[it.JID] = it.Name
	}
	return out
}

// checkRoomInfo asserts a room's disco#info: a conference identity with
// the name, the features in want, and muc#roomconfig_roomname in the
// roominfo form.
func checkRoomInfo(t *testing.T, d mucDiscoInfo, name string, want ...string) {
	t.Helper()
	if d.Type != "result" {
		t.Fatalf("disco#info (%s): %s %+v, want a result", d.Label, d.Type, d.Error)
	}
	if len(d.Identities) != 1 || len(d.Identities[0]) != 4 || d.Identities[0][0] == nil || *d.Identities[0][0] != "conference" ||
		d.Identities[0][3] == nil || *d.Identities[0][3] != name {
		t.Errorf("disco#info (%s): identities %v, want one conference identity named %q", d.Label, d.Identities, name)
	}
	for _, f := range want {
		if !slices.Contains(d.Features, f) {
			t.Errorf("disco#info (%s): features %q, want %s among them", d.Label, d.Features, f)
		}
	}
	if v, _ := d.Form.value("muc#roomconfig_roomname"); !slices.Equal(v, []string{name}) {
		t.Errorf("disco#info (%s): roominfo name %q, want %q", d.Label, v, name)
	}
	if v, _ := d.Form.value("FORM_TYPE"); !slices.Equal(v, []string{"http://jabber.org/protocol/muc#roominfo"}) {
		t.Errorf("disco#info (%s): FORM_TYPE %q, want muc#roominfo", d.Label, v)
	}
}

// TestMUC runs the group chat scenarios against one server.
func TestMUC(t *testing.T) {
	_, _, p := startMUCCommunity(t)
	s := p.clients()

	// alice creates a room (110 and 201: she is told it is new), fetches
	// the owner form (muc#roomconfig) and submits name, persistent and
	// public; bob joins and gets alice's presence (owner, moderator, no
	// real JID: semi-anonymous) before his own (110); both send a
	// groupchat message, each gets both once (the sender's reflected);
	// alice's private message to room/bob reaches bob from room/alice with
	// a muc#user <x/>; alice's self-ping (XEP-0410) is answered; the
	// service's items list the room with its name.
	t.Run("Chat", func(t *testing.T) {
		const room, name = "lounge@" + mucService, "The Lounge"
		body := uniqueBody("muc-chat")
		es := s.muc(t, "chat", mucArgs("--room", "lounge", "--room-name", name, "--body", body)...)
		checkJoined(t, es, "alice", room, "alice", 110, 201)

		var form struct {
			Form mucForm `json:"form"`
		}
		es.one(t, "config_form", "alice").decode(t, &form)
		if form.Form.Type != "form" {
			t.Errorf("owner form of type %q, want form", form.Form.Type)
		}
		if v, _ := form.Form.value("FORM_TYPE"); !slices.Equal(v, []string{"http://jabber.org/protocol/muc#roomconfig"}) {
			t.Errorf("owner form FORM_TYPE %q, want muc#roomconfig", v)
		}
		for _, f := range []string{"muc#roomconfig_roomname", "muc#roomconfig_persistentroom", "muc#roomconfig_publicroom",
			"muc#roomconfig_membersonly", "muc#roomconfig_passwordprotectedroom", "muc#roomconfig_roomsecret"} {
			if _, ok := form.Form.value(f); !ok {
				t.Errorf("owner form without %s", f)
			}
		}
		checkReply(t, es, "config_reply", "alice", "submitting the configuration")

		checkJoined(t, es, "bob", room, "bob", 110)
		bobSees := mucPresences(t, es, "bob")
		if len(bobSees) < 2 || bobSees[0].From != room+"/alice" || bobSees[0].Type != "" || bobSees[1].From != room+"/bob" {
			t.Errorf("bob's room presences %+v, want alice's, then his own", bobSees)
		} else if it := bobSees[0].Item; it == nil || it.Affiliation != "owner" || it.Role != "moderator" || it.JID != "" {
			t.Errorf("alice's presence to bob has item %+v, want owner, moderator, no real JID", it)
		}
		sawBob := false
		for _, pr := range mucPresences(t, es, "alice") {
			if pr.From == room+"/bob" && pr.Type == "" {
				sawBob = true
				// alice is a moderator: she sees bob's real JID.
				if pr.Item == nil || pr.Item.Role != "participant" || pr.Item.JID != es.one(t, "login", "bob").JID {
					t.Errorf("bob's presence to alice has item %+v, want participant with his real JID", pr.Item)
				}
			}
		}
		if !sawBob {
			t.Error("alice did not see bob enter")
		}

		for _, c := range []string{"alice", "bob"} {
			got := map[string]int{}
			for _, m := range mucMessages(t, es, c) {
				if m.Type == "groupchat" && m.Body != nil {
					got[m.From+" "+*m.Body]++
				}
			}
			for _, who := range []string{"alice", "bob"} {
				if k := room + "/" + who + " " + who + " " + body; got[k] != 1 {
					t.Errorf("%s got %s's groupchat message %d times, want once (all: %v)", c, who, got[k], got)
				}
			}
		}

		var private []mucMessage
		for _, m := range mucMessages(t, es, "bob") {
			if m.Type != "groupchat" {
				private = append(private, m)
			}
		}
		if len(private) != 1 || private[0].From != room+"/alice" || private[0].Type != "chat" ||
			private[0].Body == nil || *private[0].Body != "private "+body || !private[0].MUCUser {
			t.Errorf("bob's private messages %+v, want one chat from %s/alice with a muc#user <x/>", private, room)
		}
		for _, m := range mucMessages(t, es, "alice") {
			if m.Type != "groupchat" {
				t.Errorf("alice got %+v, want no private message or error", m)
			}
		}

		checkReply(t, es, "ping_reply", "alice", "self-ping")
		if items := discoItems(t, es, "bob"); items[room] != name {
			t.Errorf("rooms of %s: %v, want %s named %q", mucService, items, room, name)
		}
	})

	// alice creates an instant room; alice, bob and alice again send a
	// message each; alice sets the subject; carol then joins and gets the
	// three messages in order, from their senders' occupant JIDs, each with
	// a <delay/> from the room stamped when it was sent, then the subject
	// from alice, last.
	t.Run("History", func(t *testing.T) {
		const room, subject = "history@" + mucService, "Plans for the weekend"
		body := uniqueBody("muc-history")
		t0 := time.Now().Truncate(time.Millisecond)
		es := s.muc(t, "history", mucArgs("--room", "history", "--body", body, "--subject", subject)...)
		t1 := time.Now()
		checkJoined(t, es, "alice", room, "alice", 110, 201)
		checkReply(t, es, "config_reply", "alice", "the instant room's configuration")
		want := []string{body + " 1", body + " 2", body + " 3"}
		j := checkJoined(t, es, "carol", room, "carol", 110)
		if !slices.Equal(j.History, want) || j.Subject != subject || j.SubjectFrom != room+"/alice" {
			t.Errorf("slixmpp's join: history %q, subject %q from %s; want %q and %q from %s/alice",
				j.History, j.Subject, j.SubjectFrom, want, subject, room)
		}

		ms := mucMessages(t, es, "carol")
		if len(ms) != 4 {
			t.Fatalf("carol got %d messages from the room (%+v), want the 3 of the history and the subject", len(ms), ms)
		}
		prev := t0
		for i, m := range ms[:3] {
			from := room + "/alice"
			if i == 1 {
				from = room + "/bob"
			}
			if m.Type != "groupchat" || m.From != from || m.Body == nil || *m.Body != want[i] || m.Subject != nil {
				t.Errorf("history message %d: %+v, want %q from %s", i+1, m, want[i], from)
			}
			if m.Delay == nil || m.Delay.From != room {
				t.Errorf("history message %d: delay %+v, want one from %s", i+1, m.Delay, room)
				continue
			}
			stamp, err := time.Parse(time.RFC3339Nano, m.Delay.Stamp)
			if err != nil || stamp.Before(prev) || stamp.After(t1) {
				t.Errorf("history message %d: stamp %q (%v), want a time between %s and %s", i+1, m.Delay.Stamp, err,
					prev.UTC().Format(time.RFC3339Nano), t1.UTC().Format(time.RFC3339Nano))
			} else {
				prev = stamp
			}
		}
		if m := ms[3]; m.Type != "groupchat" || m.From != room+"/alice" || m.Subject == nil || *m.Subject != subject || m.Body != nil {
			t.Errorf("last message to carol: %+v, want the subject %q from %s/alice without a body", m, subject, room)
		}
		// Only carol's join brought history: alice and bob got the messages
		// live.
		for _, c := range []string{"alice", "bob"} {
			for _, m := range mucMessages(t, es, c) {
				if m.Delay != nil {
					t.Errorf("%s got a delayed message %+v", c, m)
				}
			}
		}
	})

	// A members-only room refuses bob with <registration-required/>
	// (auth); a password room refuses him without the password and with a
	// wrong one with <not-authorized/> (auth) and lets him in with the
	// right one; a nickname in use gives carol <conflict/> (cancel), and
	// she gets in under her own. Nobody in the rooms hears of the refused
	// attempts.
	t.Run("Refusals", func(t *testing.T) {
		const members, secret, open = "members@" + mucService, "secret@" + mucService, "open@" + mucService
		es := s.muc(t, "refusals", mucArgs("--room", "members", "--room-2", "secret", "--room-3", "open",
			"--room-password", "open sesame")...)
		for _, r := range []string{members, secret, open} {
			checkJoined(t, es, "alice", r, "alice", 110, 201)
		}
		if n := len(es.of("config_reply", "alice")); n != 3 {
			t.Fatalf("alice configured %d rooms, want 3", n)
		}
		for _, e := range es.of("config_reply", "alice") {
			var r mucIQReply
			e.decode(t, &r)
			if r.Type != "result" {
				t.Errorf("a configuration was refused: %+v", r.Error)
			}
		}
		errs := map[string]mucPresence{}
		for _, e := range es.of("join_error", "") {
			var p mucPresence
			e.decode(t, &p)
			errs[p.Label] = p
		}
		for _, c := range []struct{ label, from, cond, typ, text string }{
			{"members_only", members + "/bob", "registration-required", "auth", "this room is for members only"},
			{"no_password", secret + "/bob", "not-authorized", "auth", "this room needs a password"},
			{"wrong_password", secret + "/bob", "not-authorized", "auth", "this room needs a password"},
			{"taken_nick", open + "/alice", "conflict", "cancel", "this nickname is in use in this room"},
		} {
			p, ok := errs[c.label]
			if !ok {
				t.Errorf("%s: no answer", c.label)
				continue
			}
			if p.From != c.from || p.Type != "error" {
				t.Errorf("%s: presence of type %q from %s, want an error from %s", c.label, p.Type, p.From, c.from)
			}
			checkError(t, c.label, p.Error, c.cond, c.typ, c.text)
		}
		checkJoined(t, es, "bob", secret, "bob", 110)
		checkJoined(t, es, "carol", open, "carol", 110)
		// (The clients' closing may add unavailable presences at the end.)
		for _, pr := range mucPresences(t, es, "alice") {
			if pr.From == members+"/bob" || pr.Type == "error" || pr.From == open+"/alice" && pr.Type != "" {
				t.Errorf("alice got %+v, want nothing of the refused joins", pr)
			}
		}
	})

	// alice makes a room members-only: bob (available) is refused with
	// <registration-required/>; alice's mediated invitation (the plugin's
	// invite) reaches him from the room, with <invite from='alice@localhost'>
	// and the reason, and makes him a member: he gets in (110, member,
	// participant), and alice's member list shows him.
	t.Run("Invite", func(t *testing.T) {
		const room, reason = "club@" + mucService, "Come & join us <now>"
		es := s.muc(t, "invite", mucArgs("--room", "club", "--reason", reason)...)
		checkJoined(t, es, "alice", room, "alice", 110, 201)
		checkReply(t, es, "config_reply", "alice", "the members-only configuration")
		checkJoinError(t, es, "members_only", room+"/bob", "registration-required", "auth", "this room is for members only")

		var invites []mucMessage
		for _, m := range mucMessages(t, es, "bob") {
			if m.Invite != nil {
				invites = append(invites, m)
			}
		}
		if len(invites) != 1 {
			t.Fatalf("bob got %d invitations (%+v), want 1", len(invites), invites)
		}
		if m := invites[0]; m.From != room || m.Type == "groupchat" || m.Type == "error" || m.Invite.From != "alice@localhost" ||
			m.Invite.Reason != reason || m.Password != nil {
			t.Errorf("bob's invitation: %+v (invite %+v), want a message from %s with <invite from='alice@localhost'>, the reason %q and no password",
				m, *m.Invite, room, reason)
		}

		checkJoined(t, es, "bob", room, "bob", 110)
		for _, pr := range mucPresences(t, es, "bob") {
			if pr.From == room+"/bob" && pr.Type == "" && (pr.Item == nil || pr.Item.Affiliation != "member" || pr.Item.Role != "participant") {
				t.Errorf("bob's self-presence has item %+v, want member and participant", pr.Item)
			}
		}
		if r := checkAdmin(t, es, "alice", "list_member"); !slices.Equal(r.JIDs, []string{"bob@localhost"}) {
			t.Errorf("members of %s: %q, want bob@localhost", room, r.JIDs)
		}
		for _, m := range mucMessages(t, es, "alice") {
			if m.Type == "error" {
				t.Errorf("alice got an error: %+v", m)
			}
		}
	})

	// carol joins an open room; alice kicks her (set_role none with a
	// reason): carol leaves with 110 and 307, alice as the actor and the
	// reason, and alice sees her go with 307; carol gets back in; alice
	// bans her (set_affiliation outcast with a reason): she leaves with
	// 110 and 301, and the outcast list shows her; her next join is
	// refused with <forbidden/> (auth).
	t.Run("KickBan", func(t *testing.T) {
		const room, kick, ban = "arena@" + mucService, "cool down", "that's enough & goodbye"
		es := s.muc(t, "kick_ban", mucArgs("--room", "arena", "--reason", kick, "--reason-2", ban)...)
		checkJoined(t, es, "alice", room, "alice", 110, 201)
		if n := len(es.of("joined", "carol")); n != 2 {
			t.Errorf("carol joined %d times, want twice (before the kick and after)", n)
		}
		checkJoined(t, es, "carol", room, "carol", 110)
		checkAdmin(t, es, "alice", "kick")
		checkAdmin(t, es, "alice", "ban")
		if r := checkAdmin(t, es, "alice", "list_outcast"); !slices.Equal(r.JIDs, []string{"carol@localhost"}) {
			t.Errorf("outcasts of %s: %q, want carol@localhost", room, r.JIDs)
		}

		checkRemoved(t, es, "carol", room+"/carol", 0, "alice", kick, 110, 307)
		checkRemoved(t, es, "carol", room+"/carol", 1, "", ban, 110, 301)
		checkRemoved(t, es, "alice", room+"/carol", 0, "alice", kick, 307)
		checkRemoved(t, es, "alice", room+"/carol", 1, "", ban, 301)
		for _, c := range []string{"alice", "carol"} {
			if gone := removals(t, es, c, room+"/carol"); len(gone) != 2 {
				t.Errorf("%s got %d unavailable presences from %s/carol (%+v), want 2", c, len(gone), room, gone)
			}
		}
		if gone := removals(t, es, "carol", room+"/carol"); len(gone) == 2 {
			if it := gone[1].Item; it == nil || it.Affiliation != "outcast" || it.JID != es.one(t, "login", "carol").JID {
				t.Errorf("carol's ban presence has item %+v, want outcast with her real JID", it)
			}
		}
		checkJoinError(t, es, "banned", room+"/carol", "forbidden", "auth", "you are banned from this room")
	})

	// bob is in an open room when alice makes it members-only (the owner
	// form): he leaves with 110 and 322, alice sees him go with 322, and
	// his next join is refused with <registration-required/>.
	t.Run("MembersOnlySwitch", func(t *testing.T) {
		const room = "closing@" + mucService
		es := s.muc(t, "members_only", mucArgs("--room", "closing")...)
		checkJoined(t, es, "alice", room, "alice", 110, 201)
		checkJoined(t, es, "bob", room, "bob", 110)
		replies := es.of("config_reply", "alice")
		if len(replies) != 2 {
			t.Fatalf("alice configured the room %d times, want twice", len(replies))
		}
		for _, e := range replies {
			var r mucIQReply
			e.decode(t, &r)
			if r.Type != "result" {
				t.Errorf("a configuration was refused: %+v", r.Error)
			}
		}
		checkRemoved(t, es, "bob", room+"/bob", 0, "", "", 110, 322)
		checkRemoved(t, es, "alice", room+"/bob", 0, "", "", 322)
		for _, c := range []string{"alice", "bob"} {
			if gone := removals(t, es, c, room+"/bob"); len(gone) != 1 {
				t.Errorf("%s got %d unavailable presences from %s/bob (%+v), want 1", c, len(gone), room, gone)
			}
		}
		for _, pr := range mucPresences(t, es, "alice") {
			if pr.From == room+"/alice" && pr.Type == "unavailable" {
				t.Errorf("alice, the owner, was removed too: %+v", pr)
			}
		}
		checkJoinError(t, es, "members_only", room+"/bob", "registration-required", "auth", "this room is for members only")
	})

	// alice destroys a room bob is in, naming an alternative venue and a
	// reason: the owner IQ is answered with a result; bob and alice leave
	// with an unavailable presence (role none) carrying <destroy/> with
	// the venue and the reason; the room is gone (disco#info:
	// item-not-found) and no longer listed.
	t.Run("Destroy", func(t *testing.T) {
		const room, venue, reason = "doomed@" + mucService, "lounge@" + mucService, "moving to the lounge"
		es := s.muc(t, "destroy", mucArgs("--room", "doomed", "--venue", venue, "--reason", reason)...)
		checkJoined(t, es, "alice", room, "alice", 110, 201)
		checkJoined(t, es, "bob", room, "bob", 110)
		checkReply(t, es, "destroy_reply", "alice", "destroying the room")
		for _, c := range []string{"alice", "bob"} {
			var gone []mucPresence
			for _, pr := range mucPresences(t, es, c) {
				if pr.Type == "unavailable" {
					gone = append(gone, pr)
				}
			}
			if len(gone) != 1 || gone[0].From != room+"/"+c || gone[0].Destroy == nil ||
				gone[0].Destroy.JID != venue || gone[0].Destroy.Reason != reason ||
				gone[0].Item == nil || gone[0].Item.Role != "none" {
				t.Errorf("%s's unavailable presences %+v, want its own with <destroy jid=%q/> and the reason %q, role none",
					c, gone, venue, reason)
			}
		}
		d := discoInfo(t, es, "bob")
		if d.Type != "error" {
			t.Errorf("disco#info of the destroyed room: %s, want an error", d.Type)
		} else {
			checkError(t, "disco#info of the destroyed room", d.Error, "item-not-found", "cancel", "no such room")
		}
		if items := discoItems(t, es, "bob"); slices.Contains(slices.Collect(maps.Keys(items)), room) {
			t.Errorf("rooms of %s after the destruction: %v, want %s gone", mucService, items, room)
		}
	})

	p.stop(t)
}

// TestMUCPersistence: a room alice configures as persistent with a name
// (escaping-prone: quote, ampersand, non-ASCII), then leaves, is still
// there after the server stops on SIGTERM and starts again on the same
// data folder: its disco#info shows the name and muc_persistent, the
// service lists it, and alice gets back in as its owner without the room
// being created anew (no 201).
func TestMUCPersistence(t *testing.T) {
	const room, name = "keep@" + mucService, "Käffchen & Co's <room>"
	bin, data, p := startMUCCommunity(t)

	es := p.clients().muc(t, "persist_create", mucArgs("--room", "keep", "--room-name", name)...)
	checkJoined(t, es, "alice", room, "alice", 110, 201)
	checkReply(t, es, "config_reply", "alice", "the configuration")
	checkRoomInfo(t, discoInfo(t, es, "bob"), name, "muc_persistent", "muc_public")
	p.stop(t)

	p = startCommunity(t, bin, data)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("restarted server output:\n%s", p.logs)
		}
	})
	es = p.clients().muc(t, "persist_check", mucArgs("--room", "keep")...)
	checkRoomInfo(t, discoInfo(t, es, "bob"), name, "muc_persistent", "muc_public")
	if items := discoItems(t, es, "bob"); items[room] != name {
		t.Errorf("rooms of %s after the restart: %v, want %s named %q", mucService, items, room, name)
	}
	checkJoined(t, es, "alice", room, "alice", 110)
	for _, pr := range mucPresences(t, es, "alice") {
		if pr.From == room+"/alice" && pr.Type == "" && (pr.Item == nil || pr.Item.Affiliation != "owner" || pr.Item.Role != "moderator") {
			t.Errorf("alice's self-presence after the restart has item %+v, want owner and moderator", pr.Item)
		}
	}
	p.stop(t)
}
