package mam

import (
	"context"
	"encoding/xml"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/carbons"
	"github.com/treff-im/treff/offline"
	"github.com/treff-im/treff/storage"
	"github.com/treff-im/treff/trefftest"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// setup starts a server with the module (configured by cfg, if given) and
// a clock starting at t0, and creates alice, bob and carol.
func setup(t *testing.T, cfg func(m *Module)) (*trefftest.Server, *Module, *trefftest.Clock) {
	t.Helper()
	c := trefftest.NewClock(t0)
	m := &Module{now: c.Now}
	if cfg != nil {
		cfg(m)
	}
	ts := trefftest.NewServer(t, func(s *treff.Server) {
		s.Modules = []treff.Module{m, &offline.Module{}}
	})
	for _, u := range []string{"alice", "bob", "carol"} {
		ts.AddUser(t, u, "pw")
	}
	return ts, m, c
}

// Decoded answers of the server.
type (
	resultMsg struct {
		To     string `xml:"to,attr"`
		From   string `xml:"from,attr"`
		Result *struct {
			QueryID   string `xml:"queryid,attr"`
			ID        string `xml:"id,attr"`
			Forwarded struct {
				Delay struct {
					Stamp string `xml:"stamp,attr"`
				} `xml:"urn:xmpp:delay delay"`
				Message struct {
					XMLName xml.Name
					From    string `xml:"from,attr"`
					To      string `xml:"to,attr"`
					Body    string `xml:"body"`
				} `xml:"jabber:client message"`
			} `xml:"urn:xmpp:forward:0 forwarded"`
		} `xml:"urn:xmpp:mam:2 result"`
	}
	fin struct {
		Complete string `xml:"complete,attr"`
		First    struct {
			Index string `xml:"index,attr"`
			ID    string `xml:",chardata"`
		} `xml:"set>first"`
		Last  string `xml:"set>last"`
		Count int    `xml:"set>count"`
	}
	iqReply struct {
		Type  string `xml:"type,attr"`
		Fin   *fin   `xml:"urn:xmpp:mam:2 fin"`
		Error *struct {
			Cond []struct {
				XMLName xml.Name
			} `xml:",any"`
		} `xml:"error"`
		Inner string `xml:",innerxml"`
	}
	// got is the outcome of one query.
	got struct {
		results []resultMsg
		reply   iqReply
	}
)

func (g got) bodies() []string {
	var out []string
	for _, r := range g.results {
		out = append(out, r.Result.Forwarded.Message.Body)
	}
	return out
}

func (g got) ids() []string {
	var out []string
	for _, r := range g.results {
		out = append(out, r.Result.ID)
	}
	return out
}

func (g got) cond() string {
	if g.reply.Error == nil || len(g.reply.Error.Cond) == 0 {
		return ""
	}
	return g.reply.Error.Cond[0].XMLName.Local
}

var qn int

// iq sends an IQ with the given payload (no 'to': the user's own account)
// and returns the messages before its answer and the answer.
func iq(t *testing.T, c *trefftest.Client, typ, payload string) got {
	t.Helper()
	qn++
	id := fmt.Sprintf("q%d", qn)
	c.Send("<iq type='" + typ + "' id='" + id + "'>" + payload + "</iq>")
	out := c.Expect(`(?s)<iq[^>]*id='` + id + `'[^>]*(/>|>.*?</iq>)`)
	var g got
	d := xml.NewDecoder(strings.NewReader("<r xmlns='jabber:client'>" + out + "</r>"))
	for {
		tok, err := d.Token()
		if err != nil {
			break
		}
		se, ok := tok.(xml.StartElement)
		if !ok || se.Name.Local == "r" {
			continue
		}
		switch se.Name.Local {
		case "message":
			var m resultMsg
			if err := d.DecodeElement(&m, &se); err != nil {
				t.Fatal(err)
			}
			if m.Result != nil {
				g.results = append(g.results, m)
			}
		case "iq":
			if err := d.DecodeElement(&g.reply, &se); err != nil {
				t.Fatal(err)
			}
		default:
			d.Skip()
		}
	}
	return g
}

// query runs a MAM query with the given form fields (var, value pairs)
// and RSM set (raw XML).
func query(t *testing.T, c *trefftest.Client, rsm string, fields ...string) got {
	t.Helper()
	form := ""
	if len(fields) > 0 {
		form = "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>" + NS + "</value></field>"
		for i := 0; i+1 < len(fields); i += 2 {
			form += "<field var='" + fields[i] + "'><value>" + fields[i+1] + "</value></field>"
		}
		form += "</x>"
	}
	if rsm != "" {
		rsm = "<set xmlns='http://jabber.org/protocol/rsm'>" + rsm + "</set>"
	}
	g := iq(t, c, "set", "<query xmlns='"+NS+"' queryid='qid"+fmt.Sprint(qn+1)+"'>"+form+rsm+"</query>")
	for _, r := range g.results {
		if r.Result.QueryID != "qid"+fmt.Sprint(qn) {
			t.Errorf("result with queryid %q, want qid%d", r.Result.QueryID, qn)
		}
		if r.To != c.JID || r.From != jid.MustParse(c.JID).Bare().String() {
			t.Errorf("result to %q from %q, want to %s from its bare JID", r.To, r.From, c.JID)
		}
	}
	return g
}

func wantBodies(t *testing.T, what string, g got, want ...string) {
	t.Helper()
	if g.reply.Type != "result" {
		t.Fatalf("%s: %s answer: %s", what, g.reply.Type, g.reply.Inner)
	}
	if strings.Join(g.bodies(), ",") != strings.Join(want, ",") {
		t.Errorf("%s: got %q, want %q", what, g.bodies(), want)
	}
}

func wantFin(t *testing.T, what string, g got, complete bool, index, count int) {
	t.Helper()
	f := g.reply.Fin
	if f == nil {
		t.Fatalf("%s: no <fin/> in %s", what, g.reply.Inner)
	}
	if (f.Complete == "true") != complete || f.Count != count {
		t.Errorf("%s: complete=%q count=%d, want %v %d", what, f.Complete, f.Count, complete, count)
	}
	ids := g.ids()
	if len(ids) > 0 && (f.First.ID != ids[0] || f.Last != ids[len(ids)-1] || f.First.Index != fmt.Sprint(index)) {
		t.Errorf("%s: first %q (index %s), last %q; want %q (index %d), %q", what, f.First.ID, f.First.Index, f.Last, ids[0], index, ids[len(ids)-1])
	}
}

// flush waits until the server has handled everything c sent so far (a
// session handles its stanzas in order).
func flush(t *testing.T, c *trefftest.Client) {
	t.Helper()
	iq(t, c, "get", "<metadata xmlns='"+NS+"'/>")
}

func body(n int) string { return fmt.Sprintf("m%02d", n) }

var stanzaIDRe = regexp.MustCompile(`<stanza-id xmlns='urn:xmpp:sid:0' by='([^']*)' id='([^']*)'/>`)

// TestPaging: alice sends bob 25 messages, one a second; both archives
// hold them, bob's copies carry their stanza-ids, and alice pages through
// hers forwards and backwards.
func TestPaging(t *testing.T) {
	ts, _, clk := setup(t, nil)
	a := ts.Login(t, "alice", "pw", "a")
	b := ts.Login(t, "bob", "pw", "b")
	b.Send("<presence/>")
	flush(t, b)
	var bobIDs []string
	for i := range 25 {
		clk.Add(time.Second)
		a.Send("<message to='bob@localhost' type='chat' id='x" + fmt.Sprint(i) + "'><body>" + body(i) + "</body></message>")
		got := b.Expect(`(?s)<message[^>]*id='x` + fmt.Sprint(i) + `'.*?</message>`)
		// Bob's archive ID alone: alice's stays on her own copies
		// (XEP-0313 3.3).
		var m []string
		all := stanzaIDRe.FindAllStringSubmatch(got, -1)
		for _, sm := range all {
			if sm[1] == "bob@localhost" {
				m = sm
			}
		}
		if m == nil || len(all) != 1 {
			t.Fatalf("bob got %s, want one stanza-id, by bob@localhost", got)
		}
		bobIDs = append(bobIDs, m[2])
	}
	var all []string
	for i := range 25 {
		all = append(all, body(i))
	}

	g := query(t, a, "<max>10</max>")
	wantBodies(t, "page 1", g, all[:10]...)
	wantFin(t, "page 1", g, false, 0, 25)
	g = query(t, a, "<max>10</max><after>"+g.reply.Fin.Last+"</after>")
	wantBodies(t, "page 2", g, all[10:20]...)
	wantFin(t, "page 2", g, false, 10, 25)
	g = query(t, a, "<max>10</max><after>"+g.reply.Fin.Last+"</after>")
	wantBodies(t, "page 3", g, all[20:]...)
	wantFin(t, "page 3", g, true, 20, 25)
	stamp := g.results[4].Result.Forwarded.Delay.Stamp
	if want := t0.Add(25 * time.Second).Format(stampForm); stamp != want {
		t.Errorf("delay stamp %s, want %s", stamp, want)
	}
	if m := g.results[4].Result.Forwarded.Message; m.From != "alice@localhost/a" || m.To != "bob@localhost" {
		t.Errorf("forwarded message from %q to %q", m.From, m.To)
	}

	g = query(t, a, "<max>10</max><before/>")
	wantBodies(t, "last page", g, all[15:]...)
	wantFin(t, "last page", g, false, 15, 25)
	g = query(t, a, "<max>10</max><before>"+g.reply.Fin.First.ID+"</before>")
	wantBodies(t, "page before", g, all[5:15]...)
	wantFin(t, "page before", g, false, 5, 25)
	g = query(t, a, "<max>10</max><before>"+g.reply.Fin.First.ID+"</before>")
	wantBodies(t, "first page backwards", g, all[:5]...)
	wantFin(t, "first page backwards", g, true, 0, 25)

	// Bob's archive holds the same messages under the IDs he was told.
	g = query(t, b, "")
	wantBodies(t, "bob's archive", g, all...)
	if strings.Join(g.ids(), ",") != strings.Join(bobIDs, ",") {
		t.Errorf("bob's archive IDs %q, want the stanza-ids he got %q", g.ids(), bobIDs)
	}
	// max 0 counts.
	g = query(t, a, "<max>0</max>")
	wantBodies(t, "max 0", g)
	wantFin(t, "max 0", g, false, 0, 25)
	// MaxPage caps a larger max, and applies without one.
	g = query(t, a, "<max>1000</max>")
	wantBodies(t, "max 1000", g, all...)
	wantFin(t, "max 1000", g, true, 0, 25)
	// Flipped page: the same messages, newest first.
	g = iq(t, a, "set", "<query xmlns='"+NS+"'><set xmlns='http://jabber.org/protocol/rsm'><max>3</max></set><flip-page/></query>")
	wantBodies(t, "flipped", g, all[2], all[1], all[0])
	// An unknown ID.
	if g = query(t, a, "<max>10</max><after>nope</after>"); g.cond() != "item-not-found" {
		t.Errorf("after an unknown ID: %s", g.reply.Inner)
	}
	if g = query(t, a, "<max>10</max><before>"+bobIDs[0]+"</before>"); g.cond() != "item-not-found" {
		t.Errorf("before an ID of bob's archive in alice's: %s", g.reply.Inner)
	}
	if g = query(t, a, "<index>3</index>"); g.cond() != "feature-not-implemented" {
		t.Errorf("index: %s", g.reply.Inner)
	}
}

// TestFilters checks with, start, end and the extended fields.
func TestFilters(t *testing.T) {
	ts, _, clk := setup(t, func(m *Module) { m.MaxPage = 50 })
	a := ts.Login(t, "alice", "pw", "a")
	b := ts.Login(t, "bob", "pw", "b")
	c := ts.Login(t, "carol", "pw", "c")
	a.Send("<presence/>")
	flush(t, a)
	b.Send("<presence/>")
	flush(t, b)
	c.Send("<presence/>")
	flush(t, c)
	// m00..m09: alice to bob and carol in turn; m10, m11 from bob and carol.
	for i := range 10 {
		clk.Add(time.Minute)
		to := "bob@localhost"
		if i%2 == 1 {
			to = "carol@localhost/c"
		}
		a.Send("<message to='" + to + "' type='chat'><body>" + body(i) + "</body></message>")
		flush(t, a)
	}
	clk.Add(time.Minute)
	b.Send("<message to='alice@localhost' type='chat'><body>m10</body></message>")
	flush(t, b)
	clk.Add(time.Minute)
	c.Send("<message to='alice@localhost' type='chat'><body>m11</body></message>")
	flush(t, c)

	g := query(t, a, "")
	wantBodies(t, "all", g, "m00", "m01", "m02", "m03", "m04", "m05", "m06", "m07", "m08", "m09", "m10", "m11")
	ids := g.ids()
	wantBodies(t, "with bob", query(t, a, "", "with", "bob@localhost"), "m00", "m02", "m04", "m06", "m08", "m10")
	wantBodies(t, "with carol", query(t, a, "", "with", "carol@localhost"), "m01", "m03", "m05", "m07", "m09", "m11")
	wantBodies(t, "with carol/c", query(t, a, "", "with", "carol@localhost/c"), "m01", "m03", "m05", "m07", "m09", "m11")
	wantBodies(t, "with carol/x", query(t, a, "", "with", "carol@localhost/x"))
	wantBodies(t, "with bob/b", query(t, a, "", "with", "bob@localhost/b"), "m10")

	start := t0.Add(3 * time.Minute).Format(time.RFC3339)
	end := t0.Add(5 * time.Minute).Format(time.RFC3339)
	wantBodies(t, "start..end", query(t, a, "", "start", start, "end", end), "m02", "m03", "m04")
	g = query(t, a, "<max>2</max>", "start", start, "with", "bob@localhost")
	wantBodies(t, "start, with bob, max 2", g, "m02", "m04")
	wantFin(t, "start, with bob, max 2", g, false, 0, 5)
	g = query(t, a, "<max>2</max><after>"+g.reply.Fin.Last+"</after>", "start", start, "with", "bob@localhost")
	wantBodies(t, "next page", g, "m06", "m08")
	wantFin(t, "next page", g, false, 2, 5)

	g = query(t, a, "", "after-id", ids[7], "before-id", ids[10])
	wantBodies(t, "after-id, before-id", g, "m08", "m09")
	wantFin(t, "after-id, before-id", g, true, 0, 2)
	g = iq(t, a, "set", "<query xmlns='"+NS+"'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>"+NS+
		"</value></field><field var='ids'><value>"+ids[4]+"</value><value>"+ids[1]+"</value></field></x></query>")
	wantBodies(t, "ids", g, "m01", "m04")
	for _, f := range [][]string{{"after-id", "nope"}, {"before-id", "nope"}, {"ids", "nope"}} {
		if g := query(t, a, "", f...); g.cond() != "item-not-found" {
			t.Errorf("%s with an unknown ID: %s", f[0], g.reply.Inner)
		}
	}
	for _, f := range [][]string{{"start", "yesterday"}, {"FORM_TYPE", "urn:other"}} {
		if g := query(t, a, "", f...); g.cond() != "bad-request" {
			t.Errorf("%q: %s", f, g.reply.Inner)
		}
	}
	if g := query(t, a, "", "free-text", "hi"); g.cond() != "feature-not-implemented" {
		t.Errorf("an unknown field: %s", g.reply.Inner)
	}
	if g := query(t, a, "", "with", "@@"); g.cond() != "jid-malformed" {
		t.Errorf("a bad with: %s", g.reply.Inner)
	}

	// The form, the metadata and disco.
	g = iq(t, a, "get", "<query xmlns='"+NS+"'/>")
	for _, f := range []string{"with", "start", "end", "before-id", "after-id", "ids"} {
		if !strings.Contains(g.reply.Inner, "var='"+f+"'") {
			t.Errorf("the form lacks %s: %s", f, g.reply.Inner)
		}
	}
	g = iq(t, a, "get", "<metadata xmlns='"+NS+"'/>")
	if want := fmt.Sprintf("<metadata xmlns='%s'><start id='%s' timestamp='%s'/><end id='%s' timestamp='%s'/></metadata>", NS,
		ids[0], t0.Add(time.Minute).Format(stampForm), ids[11], t0.Add(12*time.Minute).Format(stampForm)); g.reply.Inner != want {
		t.Errorf("metadata: %s\nwant %s", g.reply.Inner, want)
	}
	for _, f := range []string{NS, NSExtended, NSSID} {
		if !contains(ts.Features(true), f) {
			t.Errorf("account feature %s not registered", f)
		}
	}

	// Only the owner may ask.
	b.Send("<iq type='set' id='peek' to='alice@localhost'><query xmlns='" + NS + "'/></iq>")
	b.Expect(`<iq type='error' id='peek'[^>]*><error type='auth'><forbidden`)
	b.Send("<iq type='get' id='peek2' to='alice@localhost'><prefs xmlns='" + NS + "'/></iq>")
	b.Expect(`<iq type='error' id='peek2'[^>]*><error type='auth'><forbidden`)
	// Its bare JID as 'to' is fine.
	a.Send("<iq type='get' id='own' to='alice@localhost'><metadata xmlns='" + NS + "'/></iq>")
	a.Expect(`<iq type='result' id='own'[^>]*><metadata`)
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// TestWhatIsArchived: only chat and normal messages with content, and
// incoming ones get a stanza-id in their place of any by the recipient.
func TestWhatIsArchived(t *testing.T) {
	ts, _, _ := setup(t, nil)
	a := ts.Login(t, "alice", "pw", "a")
	b := ts.Login(t, "bob", "pw", "b")
	b.Send("<presence/>")
	flush(t, b)
	for _, m := range []string{
		"<message to='bob@localhost' type='chat' id='1'><body>chat</body></message>",
		"<message to='bob@localhost' id='2'><body>normal</body></message>",
		"<message to='bob@localhost' type='headline' id='3'><body>headline</body></message>",
		"<message to='bob@localhost' type='groupchat' id='4'><body>groupchat</body></message>",
		"<message to='bob@localhost' type='chat' id='5'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>",
		"<message to='bob@localhost' type='chat' id='6'><body>secret</body><no-permanent-store xmlns='urn:xmpp:hints'/></message>",
		"<message to='bob@localhost' type='chat' id='7'><body>secret 2</body><no-store xmlns='urn:xmpp:hints'/></message>",
		"<message to='bob@localhost' type='chat' id='8'><encrypted xmlns='eu.siacs.conversations.axolotl'><header sid='1'/><payload>eA==</payload></encrypted></message>",
		"<message to='bob@localhost' type='chat' id='9'><received xmlns='urn:xmpp:receipts' id='1'/><store xmlns='urn:xmpp:hints'/></message>",
		"<message to='bob@localhost' type='chat' id='10'><x xmlns='urn:example'><body>nested</body></x></message>",
		"<message to='bob@localhost' type='chat' id='11'><body>spoof</body><stanza-id xmlns='urn:xmpp:sid:0' by='bob@localhost' id='fake'/><stanza-id xmlns='urn:xmpp:sid:0' by='conference.localhost' id='keep'/></message>",
		"<message to='bob@localhost' type='headline' id='12'><body>h</body><stanza-id xmlns='urn:xmpp:sid:0' by='BOB@localhost' id='fake2'/></message>",
	} {
		a.Send(m)
	}
	got := b.Expect(`(?s)id='12'.*?</message>`)
	if strings.Contains(got, "fake") {
		t.Errorf("a spoofed stanza-id reached bob: %s", got)
	}
	if !strings.Contains(got, "id='keep'") {
		t.Errorf("another entity's stanza-id was removed: %s", got)
	}
	// Exactly the archived ones carry a stanza-id by bob.
	for _, part := range strings.Split(got, "</message>") {
		id := regexp.MustCompile(`id='(\d+)'`).FindStringSubmatch(part)
		if id == nil {
			continue
		}
		stamped := strings.Contains(part, "by='bob@localhost'")
		want := map[string]bool{"1": true, "2": true, "8": true, "9": true, "11": true}[id[1]]
		if stamped != want {
			t.Errorf("message %s: stanza-id %v, want %v: %s", id[1], stamped, want, part)
		}
	}
	for _, c := range []*trefftest.Client{a, b} {
		wantBodies(t, c.JID+"'s archive", query(t, c, ""), "chat", "normal", "", "", "spoof")
	}
}

// TestOfflineCopyIsStamped: a message stored offline carries its
// stanza-id.
func TestOfflineCopyIsStamped(t *testing.T) {
	ts, _, _ := setup(t, nil)
	a := ts.Login(t, "alice", "pw", "a")
	a.Send("<message to='bob@localhost' type='chat' id='o1'><body>later</body></message>")
	flush(t, a)
	msgs, err := ts.Store.OfflineMessages(context.Background(), "bob@localhost")
	if err != nil || len(msgs) != 1 {
		t.Fatalf("offline: %v, %v", msgs, err)
	}
	if !stanzaIDRe.Match(msgs[0].Stanza) {
		t.Errorf("offline copy without stanza-id: %s", msgs[0].Stanza)
	}
	b := ts.Login(t, "bob", "pw", "b")
	b.Send("<presence/>")
	got := b.Expect(`(?s)id='o1'.*?</message>`)
	g := query(t, b, "")
	if len(g.results) != 1 || !strings.Contains(got, "id='"+g.results[0].Result.ID+"'") {
		t.Errorf("bob got %s; his archive has %q", got, g.ids())
	}
}

// TestPrefs: never, always and roster.
func TestPrefs(t *testing.T) {
	ts, _, _ := setup(t, func(m *Module) { m.Default = storage.ArchiveRoster })
	a := ts.Login(t, "alice", "pw", "a")
	b := ts.Login(t, "bob", "pw", "b")
	b.Send("<presence/>")
	flush(t, b)
	g := iq(t, a, "get", "<prefs xmlns='"+NS+"'/>")
	if g.reply.Inner != "<prefs xmlns='"+NS+"' default='roster'><always></always><never></never></prefs>" {
		t.Errorf("default prefs: %s", g.reply.Inner)
	}
	send := func(to, text string) {
		a.Send("<message to='" + to + "' type='chat'><body>" + text + "</body></message>")
	}
	// Default roster: bob is not a contact yet, carol is.
	if _, err := ts.Store.PutRosterItem(context.Background(), "alice@localhost", storage.RosterItem{JID: "carol@localhost", Subscription: storage.SubBoth}); err != nil {
		t.Fatal(err)
	}
	send("bob@localhost", "to bob, no contact")
	send("carol@localhost", "to carol, a contact")
	send("alice@localhost", "to myself")
	flush(t, a)
	// Never, but always bob.
	g = iq(t, a, "set", "<prefs xmlns='"+NS+"' default='never'><always><jid>Bob@localhost</jid></always><never><jid>dave@example.org</jid></never></prefs>")
	if g.reply.Inner != "<prefs xmlns='"+NS+"' default='never'><always><jid>bob@localhost</jid></always><never><jid>dave@example.org</jid></never></prefs>" {
		t.Errorf("set prefs answer: %s", g.reply.Inner)
	}
	send("bob@localhost", "to bob, always")
	send("carol@localhost", "to carol, never")
	g = iq(t, a, "get", "<prefs xmlns='"+NS+"'/>")
	if !strings.Contains(g.reply.Inner, "default='never'><always><jid>bob@localhost</jid>") {
		t.Errorf("prefs: %s", g.reply.Inner)
	}
	wantBodies(t, "alice's archive", query(t, a, ""), "to carol, a contact", "to myself", "to bob, always")
	// Bob's archive follows his own prefs (the server's default, roster;
	// alice is not his contact).
	wantBodies(t, "bob's archive", query(t, b, ""))
	if g := iq(t, a, "set", "<prefs xmlns='"+NS+"' default='sometimes'/>"); g.cond() != "bad-request" {
		t.Errorf("a bad default: %s", g.reply.Inner)
	}
	// A spoofed stanza-id is removed also from a message not archived.
	a.Send("<message to='bob@localhost' type='chat' id='sp'><body>x</body><stanza-id xmlns='urn:xmpp:sid:0' by='bob@localhost' id='fake'/></message>")
	if got := b.Expect(`(?s)id='sp'.*?</message>`); strings.Contains(got, "fake") || strings.Contains(got, "by='bob@localhost'") {
		t.Errorf("bob got %s", got)
	}

}

// TestRetention: the retention job deletes what is older than Retention.
func TestRetention(t *testing.T) {
	ts, m, clk := setup(t, func(m *Module) { m.Retention = 24 * time.Hour })
	a := ts.Login(t, "alice", "pw", "a")
	a.Send("<message to='bob@localhost' type='chat'><body>old</body></message>")
	flush(t, a)
	clk.Add(20 * time.Hour)
	a.Send("<message to='bob@localhost' type='chat'><body>new</body></message>")
	wantBodies(t, "before", query(t, a, ""), "old", "new")
	if n := m.expire(context.Background(), clk.Now()); n != 0 {
		t.Errorf("expire after 20h deleted %d", n)
	}
	clk.Add(5 * time.Hour)
	if n := m.expire(context.Background(), clk.Now()); n != 2 { // alice's and bob's copies
		t.Errorf("expire after 25h deleted %d, want 2", n)
	}
	wantBodies(t, "after", query(t, a, ""), "new")
	// The job stops with the server (Stop is called by Shutdown; here too).
	if err := m.Stop(context.Background()); err != nil {
		t.Error(err)
	}
	if err := m.Stop(context.Background()); err != nil {
		t.Error(err)
	}
}

// TestAccountDeleted: deleting an account deletes its archive.
func TestAccountDeleted(t *testing.T) {
	ts, _, _ := setup(t, nil)
	a := ts.Login(t, "alice", "pw", "a")
	a.Send("<message to='bob@localhost' type='chat'><body>bye</body></message>")
	iq(t, a, "set", "<prefs xmlns='"+NS+"' default='always'/>")
	ctx := context.Background()
	if n, _ := ts.Store.(storage.Archive).CountArchive(ctx, "alice@localhost"); n != 1 {
		t.Fatalf("alice's archive has %d messages", n)
	}
	if err := ts.DeleteAccount(ctx, jid.MustParse("alice@localhost"), "bye"); err != nil {
		t.Fatal(err)
	}
	arch := ts.Store.(storage.Archive)
	if n, _ := arch.CountArchive(ctx, "alice@localhost"); n != 0 {
		t.Errorf("alice's archive has %d messages after deletion", n)
	}
	if p, _ := arch.ArchivePrefs(ctx, "alice@localhost"); p.Default != "" {
		t.Errorf("alice's prefs after deletion: %+v", p)
	}
	if n, _ := arch.CountArchive(ctx, "bob@localhost"); n != 1 {
		t.Errorf("bob's archive has %d messages, want 1", n)
	}
}

// TestPageBytes: a page of large messages ends early.
func TestPageBytes(t *testing.T) {
	ts, _, _ := setup(t, nil)
	a := ts.Login(t, "alice", "pw", "a")
	big := strings.Repeat("x", 100<<10)
	for i := range 4 {
		a.Send("<message to='bob@localhost' type='chat'><body>" + body(i) + big + "</body></message>")
	}
	a.Timeout = 10 * time.Second
	g := query(t, a, "<max>10</max>")
	if len(g.results) != 2 {
		t.Fatalf("got %d results, want 2", len(g.results))
	}
	wantFin(t, "forward", g, false, 0, 4)
	g = query(t, a, "<max>10</max><before/>")
	if len(g.results) != 2 || !strings.HasPrefix(g.bodies()[1], "m03") {
		t.Fatalf("backward: %d results", len(g.results))
	}
	wantFin(t, "backward", g, false, 2, 4)
}

// TestSetupNeedsArchive: a store without storage.Archive is refused.
func TestSetupNeedsArchive(t *testing.T) {
	srv := &treff.Server{Hosts: []treff.Host{{Domain: "localhost"}}, Modules: []treff.Module{&Module{}}}
	if err := srv.Setup(); err == nil || !strings.Contains(err.Error(), "storage.Archive") {
		t.Errorf("Setup without storage: %v", err)
	}
	srv = &treff.Server{Hosts: []treff.Host{{Domain: "localhost"}}, Modules: []treff.Module{&Module{Store: nopArchive{}, Default: "sometimes"}}}
	if err := srv.Setup(); err == nil {
		t.Error("Setup with a bad Default succeeded")
	}
}

type nopArchive struct{ storage.Archive }

// TestSentCarbonCarriesArchiveID: a message alice sends is stamped with
// its ID in her archive (a stanza-id she made up herself is removed), so
// her other device finds the ID in the sent carbon (XEP-0313 5.1.2).
func TestSentCarbonCarriesArchiveID(t *testing.T) {
	m := &Module{}
	ts := trefftest.NewServer(t, func(s *treff.Server) {
		s.Modules = []treff.Module{m, &carbons.Module{}}
	})
	for _, u := range []string{"alice", "bob"} {
		ts.AddUser(t, u, "pw")
	}
	phone := ts.Login(t, "alice", "pw", "phone")
	laptop := ts.Login(t, "alice", "pw", "laptop")
	for _, c := range []*trefftest.Client{phone, laptop} {
		c.Send("<presence/><iq type='set' id='c'><enable xmlns='urn:xmpp:carbons:2'/></iq>")
		c.Expect(`id='c'`)
	}
	phone.Send("<message to='bob@localhost' type='chat' id='s1'><body>hi</body><stanza-id xmlns='urn:xmpp:sid:0' by='alice@localhost' id='fake'/></message>")
	copy := laptop.Expect(`(?s)<sent xmlns='urn:xmpp:carbons:2'>.*?</sent></message>`)
	sm := stanzaIDRe.FindAllStringSubmatch(copy, -1)
	if len(sm) != 1 || sm[0][1] != "alice@localhost" || sm[0][2] == "fake" {
		t.Fatalf("sent carbon %s: want one stanza-id by alice@localhost, not the client's", copy)
	}
	if ids := query(t, laptop, "").ids(); len(ids) != 1 || ids[0] != sm[0][2] {
		t.Errorf("archive ids %v, carbon's %s", ids, sm[0][2])
	}
}

// TestOneStanzaID checks that a delivered message carries the recipient's
// stanza-id alone: the sender's stays on the sender's copies, and
// stanza-ids a client claims by this server, its accounts or services are
// removed on the way in (XEP-0359 section 5); foreign ones pass.
func TestOneStanzaID(t *testing.T) {
	ts := trefftest.NewServer(t, func(s *treff.Server) { s.Modules = []treff.Module{&Module{}} })
	for _, u := range []string{"alice", "bob"} {
		ts.AddUser(t, u, "pw")
	}
	a := ts.Login(t, "alice", "pw", "a")
	b := ts.Login(t, "bob", "pw", "b")
	b.Send("<presence/>")
	flush(t, b)
	a.Send("<message to='bob@localhost' type='chat' id='m1'><body>hi</body>" +
		"<stanza-id xmlns='urn:xmpp:sid:0' by='localhost' id='f1'/>" +
		"<stanza-id xmlns='urn:xmpp:sid:0' by='carol@localhost' id='f2'/>" +
		"<stanza-id xmlns='urn:xmpp:sid:0' by='bob@localhost' id='f3'/>" +
		"<stanza-id xmlns='urn:xmpp:sid:0' by='x@elsewhere.example' id='kept'/></message>")
	got := b.Expect(`(?s)<message[^>]*id='m1'.*?</message>`)
	sm := stanzaIDRe.FindAllStringSubmatch(got, -1)
	if len(sm) != 2 || sm[0][1] != "x@elsewhere.example" || sm[0][2] != "kept" || sm[1][1] != "bob@localhost" || strings.Contains(got, "'f") {
		t.Errorf("bob got %s: want the foreign stanza-id and bob's own", got)
	}
}
