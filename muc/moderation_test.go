package muc_test

import (
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/disco"
	"github.com/treff-im/treff/mam"
	"github.com/treff-im/treff/muc"
	"github.com/treff-im/treff/storage/memstore"
	"github.com/treff-im/treff/trefftest"
)

// sayID sends a groupchat message with the given id and body and returns
// the stanza-id the room gave it, as the recipient got it.
func sayID(t *testing.T, from, to *trefftest.Client, id, body string) string {
	t.Helper()
	from.Send("<message to='" + room + "' type='groupchat' id='" + id + "'><body>" + body + "</body></message>")
	got := to.Expect(`(?s)<message [^>]*id='` + id + `'.*?</message>`)
	sid := sidRE.FindStringSubmatch(got)
	if sid == nil {
		t.Fatalf("no stanza-id in %s", got)
	}
	from.Expect(`(?s)<message [^>]*id='` + id + `'.*?</message>`)
	return sid[1]
}

// rawResult returns the forwarded message of the archive result with the
// given archive ID in a query's answer.
func rawResult(t *testing.T, c *trefftest.Client, qid, sid string) string {
	t.Helper()
	c.Send("<iq type='set' id='" + qid + "' to='" + room + "'><query xmlns='urn:xmpp:mam:2' queryid='" + qid + "'/></iq>")
	got := c.Expect(`(?s)<iq [^>]*id='` + qid + `'.*?</iq>`)
	for _, m := range resultRE.FindAllString(got, -1) {
		if strings.Contains(m, "<result xmlns='urn:xmpp:mam:2' queryid='"+qid+"' id='"+sid+"'>") {
			return m
		}
	}
	t.Fatalf("no result %s in %s", sid, got)
	return ""
}

// TestModeration: a moderator retracts an occupant's message by its
// stanza-id (XEP-0425): everyone gets the notice from the room, the
// archive and the history keep a tombstone, the notice is archived too;
// others get <forbidden/>, unknown ids <item-not-found/>.
func TestModeration(t *testing.T) {
	ts := newArchiveServer(t)
	alice := open(t, ts)
	bob := ts.Login(t, "bob", "pw", "r")
	enter(t, bob, "Bob")
	alice.Expect(`from='` + room + `/Bob'`)
	carol := ts.Login(t, "carol", "pw", "r")
	enter(t, carol, "Carol")
	alice.Expect(`from='` + room + `/Carol'`)
	bob.Expect(`from='` + room + `/Carol'`)

	alice.Send("<iq type='get' id='i' to='" + room + "'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
	info := alice.Expect(`(?s)<iq type='result' id='i'.*?</iq>`)
	for _, f := range []string{muc.NSModerate, muc.NSRetract, muc.NSTombstone, "vcard-temp"} {
		if !strings.Contains(info, "<feature var='"+f+"'/>") {
			t.Errorf("room disco#info lacks %s: %s", f, info)
		}
	}

	sid := sayID(t, bob, carol, "spam", "buy &lt;pills&gt;")
	alice.Expect(`id='spam'`)

	moderate := func(c *trefftest.Client, id, target string) {
		c.Send("<iq type='set' id='" + id + "' to='" + room + "'><moderate id='" + target + "' xmlns='urn:xmpp:message-moderate:1'><retract xmlns='urn:xmpp:message-retract:1'/><reason>no &amp; spam</reason></moderate></iq>")
	}
	moderate(carol, "m1", sid)
	carol.Expect(`<iq [^>]*type='error'[^>]*id='m1'|<iq [^>]*id='m1'[^>]*type='error'`)
	carol.Expect(`<forbidden xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>`)
	moderate(alice, "m2", "no-such-id")
	alice.Expect(`(?s)<iq [^>]*id='m2'.*?<item-not-found`)
	alice.Send("<iq type='set' id='m3' to='" + room + "'><moderate xmlns='urn:xmpp:message-moderate:1'><retract xmlns='urn:xmpp:message-retract:1'/></moderate></iq>")
	alice.Expect(`(?s)<iq [^>]*id='m3'.*?<bad-request`)

	moderate(alice, "m4", sid)
	notice := `(?s)<message from='` + room + `' to='%s' type='groupchat' id='[^']+'><retract xmlns='urn:xmpp:message-retract:1' id='` + sid +
		`'><moderated xmlns='urn:xmpp:message-moderate:1' by='` + room + `/Alice'/><reason>no &amp; spam</reason></retract><stanza-id xmlns='urn:xmpp:sid:0' by='` + room + `' id='([^']+)'/></message>`
	for _, c := range []struct {
		cl  *trefftest.Client
		jid string
	}{{bob, "bob@localhost/r"}, {carol, "carol@localhost/r"}, {alice, "alice@localhost/r"}} {
		c.cl.Expect(strings.Replace(notice, "%s", c.jid, 1))
	}
	alice.Expect(`<iq [^>]*id='m4'[^>]*/>`)

	tomb := rawResult(t, carol, "q1", sid)
	if strings.Contains(tomb, "pills") || strings.Contains(tomb, "<body") {
		t.Errorf("the tombstone keeps the content: %s", tomb)
	}
	for _, want := range []string{"from='" + room + "/Bob'", "<retracted xmlns='urn:xmpp:message-retract:1' stamp='",
		"<moderated xmlns='urn:xmpp:message-moderate:1' by='" + room + "/Alice'/><reason>no &amp; spam</reason></retracted>"} {
		if !strings.Contains(tomb, want) {
			t.Errorf("tombstone lacks %q: %s", want, tomb)
		}
	}
	// A newcomer's history has the tombstone, not the message.
	dave := ts.Login(t, "dave", "pw", "r")
	join(dave, "Dave", "")
	got := dave.Expect(`<subject>`)
	if strings.Contains(got, "pills") || !strings.Contains(got, "<retracted xmlns='urn:xmpp:message-retract:1'") {
		t.Errorf("history after moderation: %s", got)
	}
}

// TestAuthorRetraction: an occupant's retraction (XEP-0424) is archived
// and broadcast; the original becomes a tombstone only if the retraction
// is by its author.
func TestAuthorRetraction(t *testing.T) {
	ts := newArchiveServer(t)
	alice := open(t, ts)
	bob := ts.Login(t, "bob", "pw", "r")
	enter(t, bob, "Bob")
	alice.Expect(`from='` + room + `/Bob'`)

	bobs := sayID(t, bob, alice, "b1", "oops")
	alices := sayID(t, alice, bob, "a1", "keep me")
	retract := func(c *trefftest.Client, id, target string) {
		c.Send("<message to='" + room + "' type='groupchat' id='" + id + "'><retract id='" + target + "' xmlns='urn:xmpp:message-retract:1'/>" +
			"<fallback xmlns='urn:xmpp:fallback:0' for='urn:xmpp:message-retract:1'/><body>/me retracted a message</body><store xmlns='urn:xmpp:hints'/></message>")
	}
	// bob retracts alice's message: passed on, the archive keeps it.
	retract(bob, "r1", alices)
	alice.Expect(`(?s)<message [^>]*id='r1'.*?<retract id='` + alices + `'.*?</message>`)
	bob.Expect(`id='r1'`)
	if got := rawResult(t, alice, "q1", alices); !strings.Contains(got, "keep me") || strings.Contains(got, "retracted") {
		t.Errorf("another's retraction changed the archive: %s", got)
	}
	// bob retracts his own: tombstone, the retraction archived too.
	retract(bob, "r2", bobs)
	got := alice.Expect(`(?s)<message [^>]*id='r2'.*?</message>`)
	rsid := sidRE.FindStringSubmatch(got)
	if rsid == nil {
		t.Fatalf("the retraction was not archived: %s", got)
	}
	bob.Expect(`id='r2'`)
	tomb := rawResult(t, alice, "q2", bobs)
	if strings.Contains(tomb, "oops") || !strings.Contains(tomb, "<retracted xmlns='urn:xmpp:message-retract:1' stamp='") || !strings.Contains(tomb, "id='r2'/>") {
		t.Errorf("author retraction tombstone: %s", tomb)
	}
	if got := rawResult(t, alice, "q3", rsid[1]); !strings.Contains(got, "<retract id='"+bobs+"'") {
		t.Errorf("archived retraction: %s", got)
	}
}

// TestModerationWithoutArchive: without room archives there are no
// stanza-ids to refer to: the room neither advertises nor accepts
// moderation.
func TestModerationWithoutArchive(t *testing.T) {
	ts := newServer(t, nil)
	alice := open(t, ts)
	alice.Send("<iq type='get' id='i' to='" + room + "'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
	if info := alice.Expect(`(?s)<iq type='result' id='i'.*?</iq>`); strings.Contains(info, muc.NSModerate) || strings.Contains(info, muc.NSRetract) || strings.Contains(info, muc.NSTombstone) {
		t.Errorf("room without archive advertises moderation: %s", info)
	}
	alice.Send("<iq type='set' id='m' to='" + room + "'><moderate id='x' xmlns='urn:xmpp:message-moderate:1'><retract xmlns='urn:xmpp:message-retract:1'/></moderate></iq>")
	alice.Expect(`(?s)<iq [^>]*id='m'.*?<service-unavailable`)
}

// TestRoomAvatar: owners set the room's vCard (XEP-0486), occupants hear
// of it (104) and see the photo's hash in the room information, anyone
// reads it, others cannot set it, an empty vCard removes it, and it
// outlives a restart of a persistent room.
func TestRoomAvatar(t *testing.T) {
	store := memstore.New()
	newSrv := func() *trefftest.Server {
		ts := trefftest.NewServer(t, func(s *treff.Server) {
			s.Modules = []treff.Module{&disco.Module{}, &mam.Module{}, &muc.Module{Store: store, VCards: store, MaxVCardSize: 2048}}
		})
		for _, u := range []string{"alice", "bob", "carol"} {
			ts.AddUser(t, u, "pw")
		}
		return ts
	}
	ts := newSrv()
	alice := open(t, ts)
	alice.Send("<iq type='set' id='p' to='" + room + "'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'><field var='muc#roomconfig_persistentroom'><value>1</value></field></x></query></iq>")
	alice.Expect(`<iq type='result' id='p'`)
	bob := ts.Login(t, "bob", "pw", "r")
	enter(t, bob, "Bob")
	alice.Expect(`from='` + room + `/Bob'`)

	img := []byte("\x89PNG\r\n\x1a\n not really a picture")
	sum := sha1.Sum(img)
	hash := hex.EncodeToString(sum[:])
	card := "<vCard xmlns='vcard-temp'><FN>The Lobby</FN><PHOTO><TYPE>image/png</TYPE><BINVAL>" + base64.StdEncoding.EncodeToString(img) + "</BINVAL></PHOTO></vCard>"

	bob.Send("<iq type='set' id='v0' to='" + room + "'>" + card + "</iq>")
	bob.Expect(`(?s)<iq [^>]*id='v0'.*?<forbidden`)
	alice.Send("<iq type='set' id='v1' to='" + room + "'><vCard xmlns='vcard-temp'><DESC>" + strings.Repeat("x", 3000) + "</DESC></vCard></iq>")
	alice.Expect(`(?s)<iq [^>]*id='v1'.*?<not-acceptable`)

	alice.Send("<iq type='set' id='v2' to='" + room + "'>" + card + "</iq>")
	bob.Expect(`<message type='groupchat' from='` + room + `' to='bob@localhost/r' id='[^']+'><x xmlns='http://jabber.org/protocol/muc#user'><status code='104'/></x></message>`)
	alice.Expect(`<iq [^>]*id='v2'[^>]*/>`)

	info := func(c *trefftest.Client, id string) string {
		c.Send("<iq type='get' id='" + id + "' to='" + room + "'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
		return c.Expect(`(?s)<iq type='result' id='` + id + `'.*?</iq>`)
	}
	if got := info(bob, "i1"); !strings.Contains(got, "<field var='muc#roominfo_avatarhash' type='text-multi' label='Avatar hash'><value>"+hash+"</value></field>") {
		t.Errorf("room info without the avatar hash %s: %s", hash, got)
	}
	carol := ts.Login(t, "carol", "pw", "r")
	carol.Send("<iq type='get' id='g1' to='" + room + "'><vCard xmlns='vcard-temp'/></iq>")
	if got := carol.Expect(`(?s)<iq [^>]*id='g1'.*?</iq>`); !strings.Contains(got, card) {
		t.Errorf("room vCard: %s, want %s", got, card)
	}

	// A restart: the room and its vCard are in the store.
	alice.Conn().Close()
	bob.Conn().Close()
	carol.Conn().Close()
	ts2 := newSrv()
	carol = ts2.Login(t, "carol", "pw", "r")
	if got := info(carol, "i2"); !strings.Contains(got, "<value>"+hash+"</value>") {
		t.Errorf("room info after a restart: %s", got)
	}
	carol.Send("<iq type='get' id='g2' to='" + room + "'><vCard xmlns='vcard-temp'/></iq>")
	if got := carol.Expect(`(?s)<iq [^>]*id='g2'.*?</iq>`); !strings.Contains(got, card) {
		t.Errorf("room vCard after a restart: %s", got)
	}

	// Removal.
	alice = ts2.Login(t, "alice", "pw", "r")
	alice.Send("<iq type='set' id='v3' to='" + room + "'><vCard xmlns='vcard-temp'/></iq>")
	alice.Expect(`<iq [^>]*id='v3'[^>]*/>`)
	if got := info(carol, "i3"); strings.Contains(got, "avatarhash") {
		t.Errorf("room info after removal: %s", got)
	}
	carol.Send("<iq type='get' id='g3' to='" + room + "'><vCard xmlns='vcard-temp'/></iq>")
	carol.Expect(`<iq [^>]*id='g3'[^>]*><vCard xmlns='vcard-temp'/></iq>`)
}
