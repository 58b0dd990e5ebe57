package e2e

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The tests in this file drive the group chat features for communities
// (issue 18) of the example server binary with clients/muccommunity.py
// (slixmpp's xep_0045): several sessions of one account under one
// nickname, XEP-0421 occupant-ids, and a room with default settings that
// outlives a restart.

// mucOccupantID is an occupant_id event of muccommunity.py.
type mucOccupantID struct {
	Kind  string  `json:"kind"`
	From  string  `json:"from"`
	Type  string  `json:"type"`
	ID    *string `json:"id"`
	Body  *string `json:"body"`
	Delay bool    `json:"delay"`
}

func occupantIDs(t *testing.T, es events, client string) []mucOccupantID {
	t.Helper()
	var out []mucOccupantID
	for _, e := range es.of("occupant_id", client) {
		var o mucOccupantID
		e.decode(t, &o)
		out = append(out, o)
	}
	return out
}

// TestMUCSeveralSessions: two sessions of alice join a room as "alice"
// (the second is admitted, XEP-0045 7.2.9, and gets the room's state);
// both get bob's groupchat message and his private message to the
// nickname; bob sees one occupant: no presence when the second session
// joins or leaves, an unavailable one only when the last leaves. Every
// presence and message from the room carries an occupant-id (XEP-0421),
// alice's the same from both sessions and after a rejoin, bob's another.
func TestMUCSeveralSessions(t *testing.T) {
	const room = "commons@" + mucService
	_, _, p := startMUCCommunity(t)
	es := p.clients().client(t, "muccommunity.py", "sessions", "--jid", "alice@localhost", "--password", alicePW,
		"--peer", "bob@localhost", "--peer-password", bobPW, "--room", "commons", "--body", uniqueBody("sessions"))

	joined := checkJoined(t, es, "alice2", room, "alice", 110)
	if !slices.Contains(joined.Occupants, room+"/bob") {
		t.Errorf("alice's second session got the occupants %v, want bob among them", joined.Occupants)
	}
	// bob's view of alice: her presences until the marker.
	var aliceToBob []mucPresence
	phoneLeft := false
	for _, e := range es {
		if e.Client != "bob" {
			continue
		}
		if e.Event == "marker" && strings.Contains(string(e.raw), `"phone_left"`) {
			phoneLeft = true
			break
		}
		if e.Event == "muc_presence" {
			var pr mucPresence
			e.decode(t, &pr)
			if pr.From == room+"/alice" {
				aliceToBob = append(aliceToBob, pr)
			}
		}
	}
	if !phoneLeft {
		t.Fatal("no phone_left marker")
	}
	if len(aliceToBob) != 1 || aliceToBob[0].Type != "" {
		t.Errorf("bob saw alice's presences %+v until her second session left, want her one available presence", aliceToBob)
	}

	ids := map[string]map[string]bool{} // occupant JID -> occupant-ids seen
	for _, c := range []string{"alice", "alice2", "bob"} {
		for _, o := range occupantIDs(t, es, c) {
			if !strings.HasPrefix(o.From, room+"/") {
				continue // the room's own messages (the subject) are from nobody
			}
			if o.ID == nil || *o.ID == "" {
				t.Errorf("%s got a %s from %s without occupant-id", c, o.Kind, o.From)
				continue
			}
			if ids[o.From] == nil {
				ids[o.From] = map[string]bool{}
			}
			ids[o.From][*o.ID] = true
		}
	}
	aliceIDs, bobIDs := ids[room+"/alice"], ids[room+"/bob"]
	if len(aliceIDs) != 1 || len(bobIDs) != 1 {
		t.Fatalf("occupant-ids of alice %v and bob %v: want one each (both sessions, rejoin)", aliceIDs, bobIDs)
	}
	for id := range aliceIDs {
		if bobIDs[id] || strings.Contains(id, "alice") {
			t.Errorf("alice's occupant-id %q is bob's or shows her JID", id)
		}
	}
	// Both sessions got bob's messages.
	for _, c := range []string{"alice", "alice2"} {
		n := 0
		for _, m := range mucMessages(t, es, c) {
			if m.From == room+"/bob" && m.Delay == nil && m.Body != nil && (strings.HasPrefix(*m.Body, "to both ") || strings.HasPrefix(*m.Body, "private ")) {
				n++
			}
		}
		if n != 2 {
			t.Errorf("%s got %d of bob's groupchat and private messages, want 2", c, n)
		}
	}
}

// TestMUCRoomSurvivesRestart: a room alice creates with the default
// settings (temporary), with a subject and messages, and occupants when
// the server stops on SIGTERM, is there after the restart: bob enters it
// (no 201: not created anew) and gets its last messages (not the chat
// state sent with <no-store/>) and subject; alice is still its owner.
func TestMUCRoomSurvivesRestart(t *testing.T) {
	const room = "survivors@" + mucService
	body, subject := uniqueBody("kept"), "Still here ✓"
	bin, data, p := startMUCCommunity(t)
	script, err := filepath.Abs(filepath.Join("clients", "muccommunity.py"))
	if err != nil {
		t.Fatal(err)
	}
	accounts := []string{"--jid", "alice@localhost", "--password", alicePW, "--peer", "bob@localhost", "--peer-password", bobPW}
	argv := append([]string{script, "--cert", p.cert, "--addr", p.addr, "--timeout", fmt.Sprint(scriptTimeout.Seconds()), "keep_before"},
		accounts...)
	before := startClient(t, "client keep_before", pythonEnv(), python, append(argv, "--room", "survivors", "--subject", subject, "--body", body)...)
	before.waitEvent(t, "ready", clientTimeout)
	p.stop(t)
	before.finish(t, clientTimeout)

	p = startCommunity(t, bin, data)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("restarted server output:\n%s", p.logs)
		}
	})
	es := p.clients().client(t, "muccommunity.py", "keep_after", append(accounts, "--room", "survivors")...)
	if d := discoInfo(t, es, "bob"); d.Type != "result" || !slices.Contains(d.Features, "muc_temporary") {
		t.Errorf("the room's disco#info after the restart: %+v", d)
	}
	j := checkJoined(t, es, "bob", room, "bob", 110)
	if j.Subject != subject {
		t.Errorf("subject after the restart %q, want %q", j.Subject, subject)
	}
	want := []string{"alice 1 " + body, "bob 1 " + body, "last " + body}
	if len(j.History) < len(want) || !slices.Equal(j.History[len(j.History)-len(want):], want) {
		t.Errorf("history after the restart %q, want it to end with %q", j.History, want)
	}
	for _, m := range mucMessages(t, es, "bob") {
		if m.Delay != nil && m.Body == nil {
			t.Errorf("history replayed a message without body (the chat state): %+v", m)
		}
	}
	checkJoined(t, es, "alice", room, "alice", 110)
	for _, pr := range mucPresences(t, es, "alice") {
		if pr.From == room+"/alice" && pr.Type == "" && (pr.Item == nil || pr.Item.Affiliation != "owner") {
			t.Errorf("alice after the restart: %+v, want owner", pr.Item)
		}
	}
	p.stop(t)
}

// TestMUCArchiveOccupantID: with archives on (-archive yes), the room's
// archive, read by slixmpp's xep_0313, returns the messages with the
// occupant-id the occupants got live, and not the chat state sent with
// <no-store/>.
func TestMUCArchiveOccupantID(t *testing.T) {
	const room = "recorded@" + mucService
	_, _, p := startRegCommunity(t, []string{"-archive", "yes"}, [2]string{"alice@localhost", alicePW}, [2]string{"bob@localhost", bobPW})
	body := uniqueBody("archived")
	es := p.clients().client(t, "muccommunity.py", "archived", "--jid", "alice@localhost", "--password", alicePW,
		"--peer", "bob@localhost", "--peer-password", bobPW, "--room", "recorded", "--body", body)
	var live string
	for _, o := range occupantIDs(t, es, "alice") {
		if o.Kind == "message" && o.Body != nil && *o.Body == "first "+body && o.ID != nil {
			live = *o.ID
		}
	}
	if live == "" {
		t.Fatal("alice's first message came back without occupant-id")
	}
	var got []string
	for _, e := range es.of("archived", "bob") {
		var a struct {
			From       string  `json:"from"`
			Body       *string `json:"body"`
			OccupantID *string `json:"occupant_id"`
			ChatState  bool    `json:"chat_state"`
		}
		e.decode(t, &a)
		b, id := "<none>", "<none>"
		if a.Body != nil {
			b = *a.Body
		}
		if a.OccupantID != nil {
			id = *a.OccupantID
		}
		got = append(got, fmt.Sprintf("%s %q %s chatstate=%v", a.From, b, id, a.ChatState))
	}
	want := []string{
		fmt.Sprintf("%s/alice %q %s chatstate=false", room, "first "+body, live),
		fmt.Sprintf("%s/alice %q %s chatstate=false", room, "second "+body, live),
	}
	if !slices.Equal(got, want) {
		t.Errorf("the room's archive:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
