package e2e

import (
	"crypto/sha1"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/treff-im/treff/muc"
)

// The tests in this file drive the example server binary's group chat
// moderation (XEP-0425), retraction (XEP-0424) and room avatars
// (XEP-0486) with slixmpp (clients/mucmod.py), and fetch its invitation
// landing page over HTTPS.

const modCarolPW = "carol moderation pw"

// startModCommunity starts the example server with archives on (rooms
// keep theirs) and the accounts alice, bob and carol.
func startModCommunity(t *testing.T) (string, string, *communityProc) {
	t.Helper()
	return startRegCommunity(t, []string{"-archive", "yes"},
		[2]string{"alice@localhost", alicePW}, [2]string{"bob@localhost", bobPW}, [2]string{"carol@localhost", modCarolPW})
}

// modArgs are the accounts of clients/mucmod.py for a room.
func modArgs(room string, more ...string) []string {
	return append([]string{"--jid", "alice@localhost", "--password", alicePW, "--peer", "bob@localhost", "--peer-password", bobPW,
		"--third", "carol@localhost", "--third-password", modCarolPW, "--room", room}, more...)
}

// retraction is a <retract/> or <retracted/> as mucmod.py describes it.
type retraction struct {
	ID          string `json:"id"`
	Stamp       string `json:"stamp"`
	ModeratedBy string `json:"moderated_by"`
	Reason      string `json:"reason"`
	From        string `json:"from"`
	StanzaIDs   []struct {
		By string `json:"by"`
		ID string `json:"id"`
	} `json:"stanza_ids"`
}

// modArchived is one archive result as mucmod.py describes it.
type modArchived struct {
	mamResult
	HasBody   bool        `json:"has_body"`
	Retracted *retraction `json:"retracted"`
	Retract   *retraction `json:"retract"`
}

func modArchive(t *testing.T, es events, client string) []modArchived {
	t.Helper()
	var a struct {
		Results []modArchived `json:"results"`
	}
	es.one(t, "archive", client).decode(t, &a)
	return a.Results
}

func sentID(t *testing.T, es events, client, body string) string {
	t.Helper()
	for _, e := range es.of("sent", client) {
		var s struct {
			Body     string `json:"body"`
			StanzaID string `json:"stanza_id"`
		}
		e.decode(t, &s)
		if s.Body == body {
			return s.StanzaID
		}
	}
	t.Fatalf("no stanza-id of %q seen by %s", body, client)
	return ""
}

// TestMUCModerationSlixmpp: in the example server with archives, alice
// (the room's owner, so a moderator) retracts bob's message by the
// stanza-id carol saw (XEP-0425 0.3.0): carol, no moderator, gets
// forbidden, an unknown id item-not-found; the room advertises
// urn:xmpp:message-moderate:1; bob and carol get the notice from the
// room's bare JID (<retract id/> with <moderated by='room/alice'/> and
// the reason, stamped with a stanza-id by the room), and a later archive
// query (slixmpp's xep_0313) shows the message as a tombstone (no body,
// <retracted/> with <moderated by/> and the reason) and the notice.
func TestMUCModerationSlixmpp(t *testing.T) {
	_, _, p := startModCommunity(t)
	const roomLocal, body, reason = "moderated", "buy cheap pills now", "spam & scam"
	room := roomLocal + "@" + mucService
	es := p.clients().client(t, "mucmod.py", "moderate", modArgs(roomLocal, "--body", body, "--reason", reason)...)

	var info struct {
		Features []string `json:"features"`
	}
	es.one(t, "disco_info", "carol").decode(t, &info)
	for _, f := range []string{muc.NSModerate, muc.NSRetract, muc.NSTombstone, "vcard-temp"} {
		if !slices.Contains(info.Features, f) {
			t.Errorf("the room's features %v lack %s", info.Features, f)
		}
	}
	sid := sentID(t, es, "carol", body)
	for _, want := range []struct{ client, label, typ, cond string }{
		{"carol", "carol", "error", "forbidden"},
		{"alice", "unknown", "error", "item-not-found"},
		{"alice", "alice", "result", ""},
	} {
		var r struct {
			Label     string `json:"label"`
			Type      string `json:"type"`
			Condition string `json:"condition"`
		}
		found := false
		for _, e := range es.of("moderate_reply", want.client) {
			e.decode(t, &r)
			if r.Label == want.label {
				found = true
				if r.Type != want.typ || r.Condition != want.cond {
					t.Errorf("moderation %s: %s %s, want %s %s", want.label, r.Type, r.Condition, want.typ, want.cond)
				}
			}
		}
		if !found {
			t.Errorf("no answer to moderation %s", want.label)
		}
	}
	for _, c := range []string{"bob", "carol"} {
		var n retraction
		es.one(t, "notice", c).decode(t, &n)
		if n.From != room || n.ID != sid || n.ModeratedBy != room+"/alice" || n.Reason != reason ||
			len(n.StanzaIDs) != 1 || n.StanzaIDs[0].By != room {
			t.Errorf("%s's notice: %+v, want one from %s retracting %s by %s/alice (%q) with a stanza-id by the room", c, n, room, sid, room, reason)
		}
	}
	var tomb, notice *modArchived
	results := modArchive(t, es, "carol")
	for i := range results {
		switch r := &results[i]; {
		case r.ID == sid:
			tomb = r
		case r.Retract != nil && r.Retract.ID == sid:
			notice = r
		}
		if strings.Contains(results[i].Body, "pills") {
			t.Errorf("the archive still has the message: %+v", results[i])
		}
	}
	switch {
	case tomb == nil:
		t.Errorf("the archive lacks %s: %+v", sid, results)
	case tomb.HasBody || tomb.From != room+"/bob" || tomb.Retracted == nil ||
		tomb.Retracted.ModeratedBy != room+"/alice" || tomb.Retracted.Reason != reason || tomb.Retracted.Stamp == "":
		t.Errorf("tombstone %+v (retracted %+v), want no body, from %s/bob, retracted by %s/alice (%q) with a stamp", tomb, tomb.Retracted, room, room, reason)
	}
	if notice == nil || notice.From != room || notice.Retract.ModeratedBy != room+"/alice" {
		t.Errorf("the archive lacks the moderation notice: %+v", results)
	}
	p.stop(t)
}

// TestMUCRetractionSlixmpp: bob retracts alice's message and then his
// own (XEP-0424, the room's stanza-ids): alice gets both retractions;
// the archive keeps alice's message and turns bob's into a tombstone
// (<retracted/>, no body), and keeps both retractions.
func TestMUCRetractionSlixmpp(t *testing.T) {
	_, _, p := startModCommunity(t)
	const roomLocal, body = "retractions", "a message"
	es := p.clients().client(t, "mucmod.py", "retract", modArgs(roomLocal, "--body", body)...)
	bobs := sentID(t, es, "alice", body+" 1")
	alices := sentID(t, es, "bob", body+" 2")
	if got := len(es.of("retraction", "alice")); got != 2 {
		t.Errorf("alice got %d retractions, want 2", got)
	}
	retracted := map[string]bool{}
	for _, r := range modArchive(t, es, "alice") {
		switch {
		case r.ID == bobs:
			if r.HasBody || r.Retracted == nil || r.Retracted.Stamp == "" || r.Retracted.ModeratedBy != "" {
				t.Errorf("bob's retracted message in the archive: %+v (retracted %+v), want a tombstone", r, r.Retracted)
			}
		case r.ID == alices:
			if r.Body != body+" 2" || r.Retracted != nil {
				t.Errorf("alice's message in the archive: %+v, want it kept (bob is not its author)", r)
			}
		case r.Retract != nil:
			retracted[r.Retract.ID] = true
		}
	}
	if !retracted[bobs] || !retracted[alices] {
		t.Errorf("archived retractions of %v, want both %s and %s", retracted, bobs, alices)
	}
	p.stop(t)
}

// TestMUCAvatarSlixmpp: alice, the owner, sets the room's vCard with a
// photo through slixmpp's xep_0054 (bob, no owner, gets forbidden); bob
// in the room gets the status 104 message; carol, outside the room, sees
// the photo's SHA-1 in muc#roominfo_avatarhash and gets the vCard with
// that photo — also after the server restarted.
func TestMUCAvatarSlixmpp(t *testing.T) {
	bin, data, p := startModCommunity(t)
	const roomLocal, body = "pictured", "a tiny room picture"
	sum := sha1.Sum(append([]byte("\x89PNG\r\n\x1a\n"), body...))
	hash := hex.EncodeToString(sum[:])
	check := func(t *testing.T, es events) {
		t.Helper()
		var info struct {
			Form *struct {
				Fields []struct {
					Var    string   `json:"var"`
					Type   string   `json:"type"`
					Values []string `json:"values"`
				} `json:"fields"`
			} `json:"form"`
			Features []string `json:"features"`
		}
		es.one(t, "disco_info", "carol").decode(t, &info)
		found := false
		if info.Form != nil {
			for _, f := range info.Form.Fields {
				if f.Var == "muc#roominfo_avatarhash" {
					found = f.Type == "text-multi" && slices.Equal(f.Values, []string{hash})
				}
			}
		}
		if !found || !slices.Contains(info.Features, "vcard-temp") {
			t.Errorf("room info %+v, want vcard-temp and the avatar hash %s", info, hash)
		}
		var v struct {
			Type string `json:"type"`
			SHA1 string `json:"sha1"`
		}
		es.one(t, "vcard", "carol").decode(t, &v)
		if v.Type != "image/png" || v.SHA1 != hash {
			t.Errorf("room vCard photo %+v, want image/png with SHA-1 %s", v, hash)
		}
	}
	es := p.clients().client(t, "mucmod.py", "avatar", modArgs(roomLocal, "--body", body)...)
	for _, want := range []struct{ client, typ, cond string }{{"bob", "error", "forbidden"}, {"alice", "result", ""}} {
		var r struct {
			Type      string `json:"type"`
			Condition string `json:"condition"`
		}
		es.one(t, "vcard_set", want.client).decode(t, &r)
		if r.Type != want.typ || r.Condition != want.cond {
			t.Errorf("%s's vCard set: %+v, want %s %s", want.client, r, want.typ, want.cond)
		}
	}
	es.one(t, "config_notice", "bob")
	check(t, es)

	p.stop(t)
	p = startCommunity(t, withFlags(t, bin, "-archive", "yes"), data)
	es = p.clients().client(t, "mucmod.py", "avatar_get", modArgs(roomLocal)...)
	check(t, es)
	p.stop(t)
}

// TestCommunityInvitePage: with invitations and https on, 'community
// invite' prints the xmpp: link and, under it, the https landing page,
// which serves (over HTTPS) the invitation: the xmpp: link to open and
// the apps to install; an unknown token gets 404.
func TestCommunityInvitePage(t *testing.T) {
	needSlixmpp(t)
	bin := buildCommunity(t)
	data := t.TempDir()
	w := startWebCommunity(t, bin, data, "-registration", "invite")
	lines := strings.Fields(runCommunity(t, bin, "invite", "-data", data))
	if len(lines) != 2 || !inviteLinkRe.MatchString(lines[0]) {
		t.Fatalf("community invite printed %q, want the xmpp: link and the landing page", lines)
	}
	link := lines[0]
	token := strings.TrimPrefix(link, "xmpp:localhost?register;preauth=")
	page, err := url.Parse(lines[1])
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(w.https)
	if page.Scheme != "https" || page.Host != "localhost:"+port || page.Path != "/invite/"+token {
		t.Errorf("landing page %s, want https://localhost:%s/invite/%s", page, port, token)
	}
	c := httpsClient(t, w.cert)
	body, h := get(t, c, "https://"+w.https+page.Path)
	for _, want := range []string{`href="` + link + `"`, ">" + link + "<", "Conversations", "Monal", "Siskin IM", "Dino", "Gajim", "Converse"} {
		if !strings.Contains(body, want) {
			t.Errorf("landing page without %q:\n%s", want, body)
		}
	}
	if csp := h.Get("Content-Security-Policy"); !strings.HasPrefix(csp, "default-src 'none'") {
		t.Errorf("landing page CSP %q", csp)
	}
	resp, err := c.Get("https://" + w.https + "/invite/AAAAAAAAAAAAAAAAAAAAAAAA")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound || strings.Contains(string(b), "xmpp:") {
		t.Errorf("unknown invitation: %s\n%s", resp.Status, b)
	}
	w.stop(t)
}

// TestMUCModerationXMPPJS: the same with xmpp.js (js/mucmod.mjs), a
// client independent of slixmpp: the room advertises moderation; bob, no
// moderator, gets forbidden; alice's moderation of bob's message reaches
// bob as a notice from the room; bob's retraction of his own second
// message reaches alice; alice's archive query shows both messages as
// tombstones (the first with <moderated by='room/alice'/> and the
// reason), the notice and the retraction.
func TestMUCModerationXMPPJS(t *testing.T) {
	needXMPPJS(t)
	_, _, p := startModCommunity(t)
	const roomLocal, body, reason = "jsmod", "xmpp.js says", "off topic"
	room := roomLocal + "@" + mucService
	es := xmppjs(t, p, "mucmod.mjs", "--jid", "alice@localhost", "--password", alicePW,
		"--peer", "bob@localhost", "--peer-password", bobPW, "--room", roomLocal, "--service", mucService,
		"--body", body, "--reason", reason)

	var feats struct {
		Features []string `json:"features"`
	}
	es.one(t, "features", "alice").decode(t, &feats)
	for _, f := range []string{muc.NSModerate, muc.NSRetract, muc.NSTombstone} {
		if !slices.Contains(feats.Features, f) {
			t.Errorf("the room's features %v lack %s", feats.Features, f)
		}
	}
	first, second := sentID(t, es, "alice", body+" 1"), sentID(t, es, "alice", body+" 2")
	replies := map[string]string{}
	for _, e := range es.of("moderate_reply", "") {
		var r struct {
			Label, Type, Condition string
		}
		e.decode(t, &r)
		replies[r.Label] = r.Type + " " + r.Condition
	}
	if replies["bob"] != "error forbidden" || replies["alice"] != "result " {
		t.Errorf("moderation replies %q, want bob's forbidden and alice's a result", replies)
	}
	var n retraction
	es.one(t, "notice", "bob").decode(t, &n)
	if n.From != room || n.ID != first || n.ModeratedBy != room+"/alice" || n.Reason != reason {
		t.Errorf("bob's notice %+v", n)
	}
	es.one(t, "retraction", "alice")
	var a struct {
		Results []struct {
			ID        string      `json:"id"`
			From      string      `json:"from"`
			HasBody   bool        `json:"has_body"`
			Body      string      `json:"body"`
			Retracted *retraction `json:"retracted"`
			RetractID string      `json:"retract_id"`
		} `json:"results"`
	}
	es.one(t, "archive", "alice").decode(t, &a)
	seen := map[string]bool{}
	for _, r := range a.Results {
		switch {
		case r.ID == first:
			seen["moderated"] = !r.HasBody && r.Retracted != nil && r.Retracted.ModeratedBy == room+"/alice" && r.Retracted.Reason == reason
		case r.ID == second:
			seen["retracted"] = !r.HasBody && r.Retracted != nil && r.Retracted.ModeratedBy == "" && r.Retracted.Stamp != ""
		case r.RetractID == first && r.From == room:
			seen["notice"] = true
		case r.RetractID == second && r.From == room+"/bob":
			seen["retraction"] = true
		}
		if strings.HasPrefix(r.Body, body) {
			t.Errorf("the archive still has %+v", r)
		}
	}
	for _, k := range []string{"moderated", "retracted", "notice", "retraction"} {
		if !seen[k] {
			t.Errorf("archive: no %s entry as expected in %+v", k, a.Results)
		}
	}
	p.stop(t)
}
