package muc_test

import (
	"encoding/xml"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/disco"
	"github.com/treff-im/treff/mam"
	"github.com/treff-im/treff/muc"
	"github.com/treff-im/treff/trefftest"
)

// newArchiveServer starts a server whose rooms keep archives (next to the
// users' own archives, as a community server would run them).
func newArchiveServer(t *testing.T) *trefftest.Server {
	t.Helper()
	ts := trefftest.NewServer(t, func(s *treff.Server) {
		s.Modules = []treff.Module{&disco.Module{}, &mam.Module{}, &muc.Module{Archive: &mam.Archiver{MaxPage: 50}}}
	})
	for _, u := range []string{"alice", "bob", "carol", "dave"} {
		ts.AddUser(t, u, "pw")
	}
	return ts
}

// enter makes the client join the room as nick and waits for the subject.
func enter(t *testing.T, c *trefftest.Client, nick string) {
	t.Helper()
	join(c, nick, "<history maxstanzas='0'/>")
	c.Expect(`<subject>[^<]*</subject></message>`)
}

// archived is one <result/> of a query, decoded.
type archived struct {
	From   string `xml:"from,attr"`
	Result struct {
		QueryID   string `xml:"queryid,attr"`
		ID        string `xml:"id,attr"`
		Forwarded struct {
			Message struct {
				From    string `xml:"from,attr"`
				To      string `xml:"to,attr"`
				Body    string `xml:"body"`
				Subject string `xml:"subject"`
			} `xml:"jabber:client message"`
		} `xml:"urn:xmpp:forward:0 forwarded"`
	} `xml:"urn:xmpp:mam:2 result"`
}

var (
	resultRE = regexp.MustCompile(`(?s)<message[^>]*><result xmlns='urn:xmpp:mam:2'.*?</result></message>`)
	finRE    = regexp.MustCompile(`<fin xmlns='urn:xmpp:mam:2'( complete='true')?>.*?<count>(\d+)</count>`)
	lastRE   = regexp.MustCompile(`<last>([^<]*)</last>`)
)

// queryRoom queries the room's archive with the given extra content of
// <query/> and returns the results, whether the page is complete, and
// the RSM <last/>.
func queryRoom(t *testing.T, c *trefftest.Client, id, inner string) ([]archived, bool, string) {
	t.Helper()
	c.Send("<iq type='set' id='" + id + "' to='" + room + "'><query xmlns='urn:xmpp:mam:2' queryid='" + id + "'>" + inner + "</query></iq>")
	got := c.Expect(`(?s)<iq [^>]*id='` + id + `'.*?</iq>`)
	var out []archived
	for _, m := range resultRE.FindAllString(got, -1) {
		var a archived
		if err := xml.Unmarshal([]byte(m), &a); err != nil {
			t.Fatalf("result %s: %v", m, err)
		}
		if a.From != room || a.Result.QueryID != id {
			t.Errorf("result from %q with queryid %q: %s", a.From, a.Result.QueryID, m)
		}
		out = append(out, a)
	}
	fin := finRE.FindStringSubmatch(got)
	if fin == nil {
		t.Fatalf("query %s: no fin in %s", id, got)
	}
	last := ""
	if l := lastRE.FindStringSubmatch(got); l != nil {
		last = l[1]
	}
	return out, fin[1] != "", last
}

var sidRE = regexp.MustCompile(`<stanza-id xmlns='urn:xmpp:sid:0' by='` + room + `' id='([^']+)'/>`)

// TestRoomArchive: messages are archived from the occupants' room JIDs,
// the broadcast carries the archive ID as stanza-id by the room (a
// forged one is removed), and occupants read the archive.
func TestRoomArchive(t *testing.T) {
	ts := newArchiveServer(t)
	alice := open(t, ts)
	bob := ts.Login(t, "bob", "pw", "r")
	enter(t, bob, "Bob")
	alice.Expect(`from='` + room + `/Bob'`)

	alice.Send("<message to='" + room + "' type='groupchat' id='m1'><body>hello</body><stanza-id xmlns='urn:xmpp:sid:0' by='" + room + "' id='forged'/></message>")
	got := bob.Expect(`(?s)<message [^>]*id='m1'.*?</message>`)
	if strings.Contains(got, "forged") || strings.Contains(got, "alice@localhost") {
		t.Errorf("bob got %s", got)
	}
	sid := sidRE.FindStringSubmatch(got)
	if sid == nil {
		t.Fatalf("no stanza-id by the room in %s", got)
	}
	echo := alice.Expect(`(?s)<message [^>]*id='m1'.*?</message>`)
	if !strings.Contains(echo, "id='"+sid[1]+"'") {
		t.Errorf("alice's echo %s lacks the stanza-id %s", echo, sid[1])
	}
	// A chat state is passed on but neither archived nor stamped.
	bob.Send("<message to='" + room + "' type='groupchat' id='cs'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>")
	if got := alice.Expect(`(?s)<message [^>]*id='cs'.*?</message>`); strings.Contains(got, "stanza-id") {
		t.Errorf("chat state stamped: %s", got)
	}
	bob.Send("<message to='" + room + "' type='groupchat' id='m2'><body>hi alice</body></message>")
	alice.Expect(`id='m2'`)
	alice.Send("<message to='" + room + "' type='groupchat' id='s1'><subject>news</subject></message>")
	bob.Expect(`<subject>news</subject>`)

	res, complete, _ := queryRoom(t, bob, "q1", "")
	if !complete || len(res) != 3 {
		t.Fatalf("got %d results (complete %v), want 3", len(res), complete)
	}
	want := []struct{ from, body, subject string }{
		{room + "/Alice", "hello", ""}, {room + "/Bob", "hi alice", ""}, {room + "/Alice", "", "news"},
	}
	for i, w := range want {
		m := res[i].Result.Forwarded.Message
		if m.From != w.from || m.Body != w.body || m.Subject != w.subject || m.To != "" {
			t.Errorf("result %d: %+v, want %+v", i, m, w)
		}
	}
	if res[0].Result.ID != sid[1] {
		t.Errorf("archive id %q, stanza-id %q", res[0].Result.ID, sid[1])
	}
	// The history on join carries the stanza-id too.
	carol := ts.Login(t, "carol", "pw", "r")
	join(carol, "Carol", "")
	if h := carol.Expect(`(?s)<body>hello</body>.*?</message>`); !strings.Contains(h, sid[1]) {
		t.Errorf("history without the stanza-id: %s", h)
	}
	// The room advertises its archive; the query form is there.
	bob.Send("<iq type='get' id='d1' to='" + room + "'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
	info := bob.Expect(`(?s)id='d1'.*?</iq>`)
	for _, f := range []string{"urn:xmpp:mam:2", "urn:xmpp:sid:0"} {
		if !strings.Contains(info, "<feature var='"+f+"'/>") {
			t.Errorf("disco#info lacks %s: %s", f, info)
		}
	}
	bob.Send("<iq type='get' id='f1' to='" + room + "'><query xmlns='urn:xmpp:mam:2'/></iq>")
	bob.Expect(`<iq [^>]*id='f1'[^>]*type='result'|<iq [^>]*type='result'[^>]*id='f1'`)
	// The users' own archives keep no group chat messages.
	if got := queryOwn(t, bob); strings.Contains(got, "<result") {
		t.Errorf("bob's own archive: %s", got)
	}
}

func queryOwn(t *testing.T, c *trefftest.Client) string {
	t.Helper()
	c.Send("<iq type='set' id='own'><query xmlns='urn:xmpp:mam:2'/></iq>")
	return c.Expect(`(?s)<iq [^>]*id='own'.*?</iq>`)
}

// TestRoomArchivePaging: RSM pages through a room's archive, forward
// and backward.
func TestRoomArchivePaging(t *testing.T) {
	ts := newArchiveServer(t)
	alice := open(t, ts)
	for i := range 7 {
		alice.Send(fmt.Sprintf("<message to='%s' type='groupchat' id='p%d'><body>m%d</body></message>", room, i, i))
		alice.Expect(fmt.Sprintf(`id='p%d'`, i))
	}
	var bodies []string
	after := ""
	for page := 0; page < 5; page++ { // 7 messages in pages of 3: 3 pages
		set := "<set xmlns='http://jabber.org/protocol/rsm'><max>3</max>"
		if after != "" {
			set += "<after>" + after + "</after>"
		}
		res, complete, last := queryRoom(t, alice, fmt.Sprintf("pg%d", page), set+"</set>")
		for _, r := range res {
			bodies = append(bodies, r.Result.Forwarded.Message.Body)
		}
		if complete {
			break
		}
		after = last
	}
	if got := strings.Join(bodies, ","); got != "m0,m1,m2,m3,m4,m5,m6" {
		t.Errorf("forward pages: %s", got)
	}
	// The last page, as a client catching up asks for it.
	res, _, _ := queryRoom(t, alice, "back", "<set xmlns='http://jabber.org/protocol/rsm'><max>2</max><before/></set>")
	if len(res) != 2 || res[0].Result.Forwarded.Message.Body != "m5" || res[1].Result.Forwarded.Message.Body != "m6" {
		t.Errorf("last page: %+v", res)
	}
	// after-id, as Conversations catches up from the last stanza-id it saw.
	res, _, _ = queryRoom(t, alice, "aid", "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>urn:xmpp:mam:2</value></field><field var='after-id'><value>"+res[0].Result.ID+"</value></field></x>")
	if len(res) != 1 || res[0].Result.Forwarded.Message.Body != "m6" {
		t.Errorf("after-id: %+v", res)
	}
	// with: one occupant's messages.
	res, _, _ = queryRoom(t, alice, "with", "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>urn:xmpp:mam:2</value></field><field var='with'><value>"+room+"/Nobody</value></field></x>")
	if len(res) != 0 {
		t.Errorf("with another nick: %+v", res)
	}
}

// TestRoomArchiveAccess: in a members-only room, outsiders get
// <forbidden/>, members may read without being in the room; in an open
// room anyone but the banned may read.
func TestRoomArchiveAccess(t *testing.T) {
	ts := newArchiveServer(t)
	alice := open(t, ts)
	alice.Send("<message to='" + room + "' type='groupchat' id='x'><body>secret</body></message>")
	alice.Expect(`id='x'`)

	carol := ts.Login(t, "carol", "pw", "r")
	if res, _, _ := queryRoom(t, carol, "open", ""); len(res) != 1 {
		t.Errorf("open room: carol got %d results", len(res))
	}
	alice.Send("<iq type='set' id='ban' to='" + room + "'><query xmlns='http://jabber.org/protocol/muc#admin'><item affiliation='outcast' jid='carol@localhost'/></query></iq>")
	alice.Expect(`id='ban'`)
	carol.Send("<iq type='set' id='q2' to='" + room + "'><query xmlns='urn:xmpp:mam:2'/></iq>")
	carol.Expect(`(?s)<iq [^>]*id='q2'.*?<forbidden`)

	alice.Send("<iq type='set' id='mo' to='" + room + "'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'><field var='muc#roomconfig_membersonly'><value>1</value></field></x></query></iq>")
	alice.Expect(`id='mo'`)
	alice.Send("<iq type='set' id='mem' to='" + room + "'><query xmlns='http://jabber.org/protocol/muc#admin'><item affiliation='member' jid='bob@localhost'/></query></iq>")
	alice.Expect(`id='mem'`)
	dave := ts.Login(t, "dave", "pw", "r")
	dave.Send("<iq type='set' id='q3' to='" + room + "'><query xmlns='urn:xmpp:mam:2'/></iq>")
	if got := dave.Expect(`(?s)<iq [^>]*id='q3'.*?</iq>`); !strings.Contains(got, "<forbidden") || strings.Contains(got, "secret") {
		t.Errorf("outsider of a members-only room: %s", got)
	}
	bob := ts.Login(t, "bob", "pw", "r")
	if res, _, _ := queryRoom(t, bob, "member", ""); len(res) != 1 || res[0].Result.Forwarded.Message.Body != "secret" {
		t.Errorf("member: %+v", res)
	}
}

// TestRoomArchiveConfig: owners turn a room's archive off and on in the
// configuration form.
func TestRoomArchiveConfig(t *testing.T) {
	ts := newArchiveServer(t)
	alice := open(t, ts)
	alice.Send("<iq type='get' id='cf' to='" + room + "'><query xmlns='http://jabber.org/protocol/muc#owner'/></iq>")
	alice.Expect(`(?s)id='cf'.*?<field var='muc#roomconfig_enablearchiving' type='boolean'[^>]*><value>1</value>`)
	set := func(v string) {
		alice.Send("<iq type='set' id='cs" + v + "' to='" + room + "'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'><field var='muc#roomconfig_enablearchiving'><value>" + v + "</value></field></x></query></iq>")
		alice.Expect(`id='cs` + v + `'`)
	}
	set("0")
	alice.Send("<message to='" + room + "' type='groupchat' id='off'><body>unrecorded</body></message>")
	if got := alice.Expect(`(?s)<message [^>]*id='off'.*?</message>`); strings.Contains(got, "stanza-id") {
		t.Errorf("stamped while off: %s", got)
	}
	alice.Send("<iq type='get' id='d' to='" + room + "'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
	if got := alice.Expect(`(?s)id='d'.*?</iq>`); strings.Contains(got, "urn:xmpp:mam:2") {
		t.Errorf("disco#info while off: %s", got)
	}
	alice.Send("<iq type='get' id='cf2' to='" + room + "'><query xmlns='http://jabber.org/protocol/muc#owner'/></iq>")
	alice.Expect(`(?s)id='cf2'.*?var='muc#roomconfig_enablearchiving'[^>]*><value>0</value>`)
	set("1")
	alice.Send("<message to='" + room + "' type='groupchat' id='on'><body>recorded</body></message>")
	alice.Expect(`(?s)<message [^>]*id='on'.*?<stanza-id`)
	res, _, _ := queryRoom(t, alice, "q", "")
	if len(res) != 1 || res[0].Result.Forwarded.Message.Body != "recorded" {
		t.Errorf("got %+v", res)
	}
}

// TestRoomArchiveDestroyed: destroying a room deletes its archive; a new
// room of that name starts empty. So does a temporary room's end.
func TestRoomArchiveDestroyed(t *testing.T) {
	ts := newArchiveServer(t)
	alice := open(t, ts)
	alice.Send("<message to='" + room + "' type='groupchat' id='x'><body>old</body></message>")
	alice.Expect(`id='x'`)
	alice.Send("<iq type='set' id='des' to='" + room + "'><query xmlns='http://jabber.org/protocol/muc#owner'><destroy/></query></iq>")
	// The occupants hear of the end before the owner's answer.
	alice.Expect(`<destroy/>`)
	alice.Expect(`id='des'`)

	recreate(t, alice)
	if res, _, _ := queryRoom(t, alice, "new", ""); len(res) != 0 {
		t.Errorf("new room inherited %d messages", len(res))
	}
	alice.Send("<message to='" + room + "' type='groupchat' id='y'><body>temporary</body></message>")
	alice.Expect(`id='y'`)
	alice.Send("<presence to='" + room + "/Alice' type='unavailable'/>")
	alice.Expect(`type='unavailable'`)
	recreate(t, alice)
	if res, _, _ := queryRoom(t, alice, "again", ""); len(res) != 0 {
		t.Errorf("a temporary room's successor inherited %d messages", len(res))
	}
}

// recreate makes alice's client create the room anew as an instant room.
func recreate(t *testing.T, alice *trefftest.Client) {
	t.Helper()
	join(alice, "Alice", "")
	alice.Expect(`<status code='201'/>`)
	alice.Send(instant)
	alice.Expect(`<iq type='result' id='cfg'`)
}
