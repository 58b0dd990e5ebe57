package e2e

import (
	"slices"
	"strings"
	"testing"
)

// The tests in this file drive one account with several sessions against
// the example server binary (examples/community, started as in
// register_test.go) with the scenarios of clients/sessions.py: message
// carbons (XEP-0280, package carbons) through slixmpp's xep_0280, stream
// management with resumption (XEP-0198) through xep_0198, and client
// state indication (XEP-0352) through xep_0352.

// Events of clients/sessions.py (see its doc comment).
type (
	sessMessage struct {
		From      string       `json:"from"`
		To        string       `json:"to"`
		Type      string       `json:"type"`
		Body      string       `json:"body"`
		Error     *stanzaError `json:"error"`
		Carbon    bool         `json:"carbon"`
		Private   bool         `json:"private"`
		NoCopy    bool         `json:"no_copy"`
		ChatState string       `json:"chat_state"`
		Delay     bool         `json:"delay"`
	}
	sessCarbon struct {
		Dir       string `json:"dir"`
		From      string `json:"from"`
		To        string `json:"to"`
		Type      string `json:"type"`
		InnerNSOK bool   `json:"inner_ns_ok"`
		InnerFrom string `json:"inner_from"`
		InnerTo   string `json:"inner_to"`
		InnerType string `json:"inner_type"`
		Body      string `json:"body"`
	}
	sessSummary struct {
		JID           string   `json:"jid"`
		Connects      int      `json:"connects"`
		Disconnects   int      `json:"disconnects"`
		SessionStarts int      `json:"session_starts"`
		SM            []string `json:"sm"`
	}
	sessPresence struct {
		From   string `json:"from"`
		Type   string `json:"type"`
		Status string `json:"status"`
	}
)

// runSessions starts the example server with the extra flags and accounts
// alice and bob, and runs a scenario of clients/sessions.py.
func runSessions(t *testing.T, flags []string, scenario string, args ...string) events {
	t.Helper()
	_, _, p := startRegCommunity(t, flags, [2]string{"alice@localhost", alicePW}, [2]string{"bob@localhost", bobPW})
	args = append([]string{"--jid", "alice@localhost", "--password", alicePW, "--peer", "bob@localhost", "--peer-password", bobPW}, args...)
	return p.clients().client(t, "sessions.py", scenario, args...)
}

func sessMessages(t *testing.T, es events, client string) []sessMessage {
	t.Helper()
	var out []sessMessage
	for _, e := range es.of("message", client) {
		var m sessMessage
		e.decode(t, &m)
		out = append(out, m)
	}
	return out
}

func sessCarbons(t *testing.T, es events, client string) []sessCarbon {
	t.Helper()
	var out []sessCarbon
	for _, e := range es.of("carbon", client) {
		var c sessCarbon
		e.decode(t, &c)
		out = append(out, c)
	}
	return out
}

// sessWithBody returns the messages with the given body that are not carbon
// wrappers (the originals as delivered).
func sessWithBody(ms []sessMessage, body string) []sessMessage {
	var out []sessMessage
	for _, m := range ms {
		if !m.Carbon && m.Body == body {
			out = append(out, m)
		}
	}
	return out
}

func sessNoErrors(t *testing.T, es events, clients ...string) {
	t.Helper()
	for _, c := range clients {
		for _, m := range sessMessages(t, es, c) {
			if m.Type == "error" || m.Error != nil {
				t.Errorf("%s got an error message: %+v", c, m)
			}
		}
	}
}

func sessSummaryOf(t *testing.T, es events, client string) sessSummary {
	t.Helper()
	var s sessSummary
	es.one(t, "summary", client).decode(t, &s)
	return s
}

// TestCarbons: alice's phone and laptop enable carbons. bob's chat
// message to alice/phone reaches the phone and, as a <received/> carbon
// from alice's bare JID wrapping the original (in jabber:client), the
// laptop; the laptop's message to bob reaches bob and, as a <sent/>
// carbon, the phone; neither resource gets a copy of what it got or sent
// itself. Messages with <private/> are not copied either way and arrive
// without <private/>. A message to alice's bare JID reaches both
// resources (equal priority) once each, with no carbon.
func TestCarbons(t *testing.T) {
	body := uniqueBody("carbons")
	es := runSessions(t, nil, "carbons", "--body", body)

	var feats struct {
		Features []string `json:"features"`
	}
	es.one(t, "server_features", "phone").decode(t, &feats)
	for _, f := range []string{"urn:xmpp:carbons:2", "urn:xmpp:carbons:rules:0"} {
		if !slices.Contains(feats.Features, f) {
			t.Errorf("server features %q without %s", feats.Features, f)
		}
	}
	for _, c := range []string{"phone", "laptop"} {
		if e := es.one(t, "carbons_enabled", c); e.Type != "result" {
			t.Errorf("%s: <enable/> answered with %s %+v", c, e.Type, e.Error)
		}
	}

	phoneMsgs, laptopMsgs, bobMsgs := sessMessages(t, es, "phone"), sessMessages(t, es, "laptop"), sessMessages(t, es, "bob")
	phoneCarbons, laptopCarbons := sessCarbons(t, es, "phone"), sessCarbons(t, es, "laptop")

	// bob → alice/phone
	if got := sessWithBody(phoneMsgs, "to phone "+body); len(got) != 1 || !strings.HasPrefix(got[0].From, "bob@localhost/") {
		t.Errorf("phone got bob's message %d times (%+v), want once", len(got), got)
	}
	want := sessCarbon{Dir: "received", From: "alice@localhost", To: "alice@localhost/laptop", Type: "chat", InnerNSOK: true,
		InnerTo: "alice@localhost/phone", InnerType: "chat", Body: "to phone " + body}
	checkSessCarbons(t, "laptop", laptopCarbons, "to phone "+body, want)
	checkSessCarbons(t, "phone", phoneCarbons, "to phone "+body)

	// alice/laptop → bob
	if got := sessWithBody(bobMsgs, "from laptop "+body); len(got) != 1 || got[0].From != "alice@localhost/laptop" {
		t.Errorf("bob got the laptop's message %+v, want once from alice@localhost/laptop", got)
	}
	want = sessCarbon{Dir: "sent", From: "alice@localhost", To: "alice@localhost/phone", Type: "chat", InnerNSOK: true,
		InnerFrom: "alice@localhost/laptop", InnerTo: "bob@localhost", InnerType: "chat", Body: "from laptop " + body}
	checkSessCarbons(t, "phone", phoneCarbons, "from laptop "+body, want)
	checkSessCarbons(t, "laptop", laptopCarbons, "from laptop "+body)

	// <private/>: delivered once without it (the <no-copy/> hint stays),
	// never copied.
	for _, c := range []struct{ client, body string }{
		{"phone", "private to phone " + body}, {"bob", "private from laptop " + body},
	} {
		got := sessWithBody(sessMessages(t, es, c.client), c.body)
		if len(got) != 1 || got[0].Private || !got[0].NoCopy {
			t.Errorf("%s got %q as %+v, want once, without <private/>, with <no-copy/>", c.client, c.body, got)
		}
		checkSessCarbons(t, "phone", phoneCarbons, c.body)
		checkSessCarbons(t, "laptop", laptopCarbons, c.body)
	}

	// The bare JID: both get it once, no carbons.
	for _, c := range []struct {
		name string
		ms   []sessMessage
		cs   []sessCarbon
	}{{"phone", phoneMsgs, phoneCarbons}, {"laptop", laptopMsgs, laptopCarbons}} {
		if got := sessWithBody(c.ms, "to both "+body); len(got) != 1 || got[0].To != "alice@localhost" {
			t.Errorf("%s got the message to alice@localhost %+v, want once", c.name, got)
		}
		checkSessCarbons(t, c.name, c.cs, "to both "+body)
	}

	// Carbons only of the two messages above, no more.
	if len(phoneCarbons) != 1 || len(laptopCarbons) != 1 {
		t.Errorf("carbons: phone %+v, laptop %+v, want one each", phoneCarbons, laptopCarbons)
	}
	sessNoErrors(t, es, "phone", "laptop", "bob")
}

// checkSessCarbons asserts the carbons client got of the message with body:
// exactly want.
func checkSessCarbons(t *testing.T, client string, cs []sessCarbon, body string, want ...sessCarbon) {
	t.Helper()
	var got []sessCarbon
	for _, c := range cs {
		if c.Body == body {
			got = append(got, c)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%s got %d carbons of %q (%+v), want %d", client, len(got), body, got, len(want))
		return
	}
	for i := range want {
		w, g := want[i], got[i]
		if w.InnerFrom == "" {
			w.InnerFrom = g.InnerFrom // bob's resource is slixmpp's choice
			if !strings.HasPrefix(g.InnerFrom, "bob@localhost/") {
				t.Errorf("%s: carbon of %q forwards a message from %q, want bob's", client, body, g.InnerFrom)
			}
		}
		if g != w {
			t.Errorf("%s: carbon\n %+v\nwant\n %+v", client, g, w)
		}
	}
}

// TestStreamManagementResume: alice/phone enables stream management
// with resumption, and carbons; its connection drops without a stream
// end; bob's message to alice/phone, sent while it is away, arrives
// exactly once after the phone reconnects and resumes (<resumed/>, no
// new session), and so does the sent carbon of what alice/laptop wrote
// meanwhile; the resumed session still gets carbons.
func TestStreamManagementResume(t *testing.T) {
	body := uniqueBody("sm-resume")
	es := runSessions(t, nil, "sm_resume", "--body", body)
	checkSessSMEnabled(t, es)
	s := sessSummaryOf(t, es, "phone")
	if !slices.Equal(s.SM, []string{"enabled", "resumed"}) || s.SessionStarts != 1 || s.Connects != 2 || s.Disconnects != 1 {
		t.Errorf("phone: stream management %q, %d session starts, %d connects, %d disconnects; want enabled then resumed, 1, 2, 1",
			s.SM, s.SessionStarts, s.Connects, s.Disconnects)
	}
	var r struct {
		PrevID string `json:"previd"`
	}
	es.one(t, "sm_resumed", "phone").decode(t, &r)
	var en struct {
		ID string `json:"id"`
	}
	es.one(t, "sm_enabled", "phone").decode(t, &en)
	if r.PrevID != en.ID {
		t.Errorf("<resumed previd=%q/>, want the id of <enabled/> %q", r.PrevID, en.ID)
	}
	got := sessWithBody(sessMessages(t, es, "phone"), "while away "+body)
	if len(got) != 1 {
		t.Errorf("phone got the message sent while it was away %d times, want once: %+v", len(got), got)
	}
	// Carbons stay enabled across the resumption: queued while away, and
	// after.
	phoneCarbons := sessCarbons(t, es, "phone")
	for _, b := range []string{"laptop while away " + body, "laptop after resume " + body} {
		checkSessCarbons(t, "phone", phoneCarbons, b, sessCarbon{Dir: "sent", From: "alice@localhost", To: "alice@localhost/phone",
			Type: "chat", InnerNSOK: true, InnerFrom: "alice@localhost/laptop", InnerTo: "bob@localhost", InnerType: "chat", Body: b})
	}
	if len(phoneCarbons) != 2 {
		t.Errorf("phone got carbons %+v, want two", phoneCarbons)
	}
	sessNoErrors(t, es, "phone", "laptop", "bob")
}

// TestStreamManagementExpiry: with a resumption window of 3s, the phone
// stays away 5s: its resumption is refused (<failed/>), slixmpp binds a
// new session, and bob's message sent while it was away, stored offline
// when the old session ended, arrives once, with a <delay/>, after the
// new session's initial presence. bob gets no error.
func TestStreamManagementExpiry(t *testing.T) {
	body := uniqueBody("sm-expire")
	es := runSessions(t, []string{"-resume-timeout", "3s"}, "sm_expire", "--body", body, "--away", "5", "--wait", "8")
	checkSessSMEnabled(t, es)
	s := sessSummaryOf(t, es, "phone")
	if !slices.Equal(s.SM, []string{"enabled", "failed", "enabled"}) || s.SessionStarts != 2 || s.Connects != 2 {
		t.Errorf("phone: stream management %q, %d session starts, %d connects; want enabled, failed, enabled (the new session), 2, 2",
			s.SM, s.SessionStarts, s.Connects)
	}
	got := sessWithBody(sessMessages(t, es, "phone"), "while away "+body)
	if len(got) != 1 || !got[0].Delay {
		t.Errorf("phone got the message sent while it was away as %+v, want once with a <delay/>", got)
	}
	sessNoErrors(t, es, "phone", "bob")
}

func checkSessSMEnabled(t *testing.T, es events) {
	t.Helper()
	var en struct {
		ID     string `json:"id"`
		Resume string `json:"resume"`
	}
	es.of("sm_enabled", "phone")[0].decode(t, &en)
	if en.ID == "" || en.Resume != "true" && en.Resume != "1" {
		t.Errorf("<enabled id=%q resume=%q/>, want an id and resumption", en.ID, en.Resume)
	}
}

// TestCSI: while alice/phone is inactive (XEP-0352), bob's two status
// changes are held (nothing arrives for a second); his chat state is held
// too; his chat message flushes them, in order, keeping only his latest
// presence ("two", not "one"), then arrives itself. A later status change
// is held until the phone says <active/>.
func TestCSI(t *testing.T) {
	body := uniqueBody("csi")
	es := runSessions(t, nil, "csi", "--body", body)
	var offered struct {
		Offered bool `json:"offered"`
	}
	es.one(t, "csi", "phone").decode(t, &offered)
	if !offered.Offered {
		t.Fatal("the server did not offer <csi/>")
	}

	// What the phone got from bob, in order, by the scenario's markers.
	var seen []string
	phase := ""
	for _, e := range es {
		switch {
		case e.Event == "marker":
			var m struct {
				Name string `json:"name"`
			}
			e.decode(t, &m)
			switch m.Name {
			case "inactive", "chat", "three", "active":
				phase = m.Name
				seen = append(seen, "|"+m.Name)
			}
		case phase == "" || e.Client != "phone":
		case e.Event == "presence":
			var p sessPresence
			e.decode(t, &p)
			if strings.HasPrefix(p.From, "bob@localhost/") {
				seen = append(seen, "presence "+p.Type+p.Status)
			}
		case e.Event == "message":
			var m sessMessage
			e.decode(t, &m)
			switch {
			case m.Body != "":
				seen = append(seen, "message "+m.Body)
			case m.ChatState != "":
				seen = append(seen, "state "+m.ChatState)
			}
		}
	}
	want := []string{"|inactive", "|chat", "presence two", "state composing", "message flush " + body, "|three", "|active", "presence three"}
	if !slices.Equal(seen, want) {
		t.Errorf("the phone got, by phase:\n %q\nwant\n %q", seen, want)
	}
	sessNoErrors(t, es, "phone", "bob")
}
