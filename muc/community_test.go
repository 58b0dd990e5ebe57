package muc_test

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/disco"
	"github.com/treff-im/treff/muc"
	"github.com/treff-im/treff/roster"
	"github.com/treff-im/treff/storage"
	"github.com/treff-im/treff/storage/memstore"
	"github.com/treff-im/treff/trefftest"
)

// occ matches an occupant-id element and captures its id.
const occ = `<occupant-id xmlns='urn:xmpp:occupant-id:0' id='([^']+)'/>`

// occupantID returns the id of the last occupant-id in s (what Expect
// returns ends with the stanza it waited for).
func occupantID(t *testing.T, s string) string {
	t.Helper()
	m := regexp.MustCompile(occ).FindAllStringSubmatch(s, -1)
	if m == nil {
		t.Fatalf("no occupant-id in %q", s)
	}
	return m[len(m)-1][1]
}

// TestSeveralSessionsOneNick: a second session of alice's account joins
// under her nickname (XEP-0045 7.2.9) and gets the room's state, bob sees
// one occupant (no presence for the second session), groupchat and
// private messages reach both sessions, the first session leaving keeps
// the occupant, and the last one leaving is seen by bob. A kick removes
// every session of the occupant.
func TestSeveralSessionsOneNick(t *testing.T) {
	ts := newServer(t, nil)
	a1 := open(t, ts)
	bob := ts.Login(t, "bob", "pw", "r")
	join(bob, "Bob", "")
	bob.Expect(`<subject></subject></message>`)
	a1.Expect(`from='` + room + `/Bob'.*?</presence>`)

	a2 := ts.Login(t, "alice", "pw", "phone")
	join(a2, "Alice", "")
	// The full state: bob, herself (110), the subject.
	a2.Expect(`^<presence from='` + room + `/Bob' to='alice@localhost/phone'>`)
	self := a2.Expect(`<presence from='` + room + `/Alice' to='alice@localhost/phone'>` + occ + `<x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='owner' jid='alice@localhost/phone' role='moderator'/><status code='110'/></x></presence>`)
	a2.Expect(`<message type='groupchat' from='` + room + `' to='alice@localhost/phone'><subject></subject></message>`)

	// bob hears nothing of the second session: his next stanza is his
	// own message.
	bob.Send("<message to='" + room + "' type='groupchat' id='g1'><body>hi both</body></message>")
	bob.Expect(`^<message from='` + room + `/Bob' to='bob@localhost/r' type='groupchat' id='g1'>.*?</message>`)
	a1.Expect(`<message from='` + room + `/Bob' to='alice@localhost/r' type='groupchat' id='g1'><body>hi both</body>`)
	a2.Expect(`<message from='` + room + `/Bob' to='alice@localhost/phone' type='groupchat' id='g1'><body>hi both</body>`)

	// A private message to the nickname reaches both sessions.
	bob.Send("<message to='" + room + "/Alice' type='chat' id='pm'><body>psst</body></message>")
	a1.Expect(`<message from='` + room + `/Bob' to='alice@localhost/r' type='chat' id='pm'><body>psst</body><x xmlns='http://jabber.org/protocol/muc#user'/>` + occ + `</message>`)
	a2.Expect(`<message from='` + room + `/Bob' to='alice@localhost/phone' type='chat' id='pm'><body>psst</body><x xmlns='http://jabber.org/protocol/muc#user'/>` + occ + `</message>`)

	// Either session speaks as Alice, with the same occupant-id; both
	// get the reflection.
	a2.Send("<message to='" + room + "' type='groupchat' id='g2'><body>from the phone</body></message>")
	got := bob.Expect(`<message from='` + room + `/Alice' to='bob@localhost/r' type='groupchat' id='g2'><body>from the phone</body>` + occ + `</message>`)
	a1.Expect(`id='g2'`)
	a2.Expect(`id='g2'`)
	if occupantID(t, got) != occupantID(t, self) {
		t.Errorf("occupant-id of the message %s, of the presence %s", occupantID(t, got), occupantID(t, self))
	}

	// The first session leaves: it hears its exit; bob hears nothing.
	a1.Send("<presence to='" + room + "/Alice' type='unavailable'/>")
	a1.Expect(`<presence from='` + room + `/Alice' to='alice@localhost/r' type='unavailable'>` + occ + `<x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='owner' jid='alice@localhost/r' role='none'/><status code='110'/></x></presence>`)
	bob.Send("<message to='" + room + "' type='groupchat' id='g3'><body>still there?</body></message>")
	bob.Expect(`^<message from='` + room + `/Bob' to='bob@localhost/r' type='groupchat' id='g3'>.*?</message>`)
	a2.Expect(`id='g3'`)
	if p := a1.Pending(); strings.Contains(p, "g3") {
		t.Errorf("the session that left still gets the room's messages: %q", p)
	}

	// The last session leaves: now bob sees Alice go.
	a2.Send("<presence to='" + room + "/Alice' type='unavailable'/>")
	a2.Expect(`type='unavailable'`)
	bob.Expect(`^<presence from='` + room + `/Alice' to='bob@localhost/r' type='unavailable'>`)

	// A kick removes every session of the occupant.
	a1.Send("<presence to='" + room + "/Alice'><x xmlns='http://jabber.org/protocol/muc'/></presence>")
	a1.Expect(`<subject></subject>`)
	b2 := ts.Login(t, "bob", "pw", "laptop")
	join(b2, "Bob", "")
	b2.Expect(`<subject></subject>`)
	a1.Send("<iq type='set' id='k' to='" + room + "'><query xmlns='http://jabber.org/protocol/muc#admin'><item nick='Bob' role='none'/></query></iq>")
	a1.Expect(`<presence from='` + room + `/Bob' to='alice@localhost/r' type='unavailable'>.*?<status code='307'/>`)
	a1.Expect(`id='k'`)
	for _, c := range []*trefftest.Client{bob, b2} {
		c.Expect(`<presence from='` + room + `/Bob' to='bob@localhost/[a-z]+' type='unavailable'>` + occ + `<x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='none' jid='bob@localhost/[a-z]+' role='none'><actor nick='Alice'/></item><status code='110'/><status code='307'/>`)
	}
}

// TestSecondSessionOfAnotherUser: the same nickname from another account
// is still a conflict.
func TestSecondSessionOfAnotherUser(t *testing.T) {
	ts := newServer(t, nil)
	open(t, ts)
	bob := ts.Login(t, "bob", "pw", "r")
	join(bob, "Alice", "")
	bob.Expect(`<presence [^>]*type='error'[^>]*><x xmlns='http://jabber.org/protocol/muc'/><error type='cancel'><conflict`)
}

// TestOccupantID: every presence and groupchat message carries an
// occupant-id (XEP-0421), the same for a user across rejoins and
// different between users; one a client put in is replaced; the room
// advertises the feature.
func TestOccupantID(t *testing.T) {
	ts := newServer(t, nil)
	alice := open(t, ts)
	bob := ts.Login(t, "bob", "pw", "r")
	join(bob, "Bob", "<history maxstanzas='0'/>")
	first := occupantID(t, bob.Expect(`<presence from='`+room+`/Bob' to='bob@localhost/r'>`+occ))
	bob.Expect(`<subject></subject>`)
	aliceID := occupantID(t, alice.Expect(`<presence from='`+room+`/Bob' to='alice@localhost/r'>`+occ))

	// A forged occupant-id goes, in messages and presence.
	bob.Send("<message to='" + room + "' type='groupchat' id='f'><body>me</body><occupant-id xmlns='urn:xmpp:occupant-id:0' id='forged'/></message>")
	m := alice.Expect(`<message [^>]*id='f'>.*?</message>`)
	if strings.Contains(m, "forged") || occupantID(t, m) != aliceID {
		t.Errorf("message with a forged occupant-id delivered as %q", m)
	}
	bob.Send("<presence to='" + room + "/Bob'><show>away</show><occupant-id xmlns='urn:xmpp:occupant-id:0' id='forged'/></presence>")
	p := alice.Expect(`<presence from='` + room + `/Bob' to='alice@localhost/r'><show>away</show>.*?</presence>`)
	if strings.Contains(p, "forged") || occupantID(t, p) != aliceID {
		t.Errorf("presence with a forged occupant-id delivered as %q", p)
	}

	// Rejoining, and from another session: the same id.
	bob.Send("<presence to='" + room + "/Bob' type='unavailable'/>")
	bob.Expect(`type='unavailable'`)
	b2 := ts.Login(t, "bob", "pw", "other")
	join(b2, "Robert", "")
	if again := occupantID(t, b2.Expect(`<presence from='`+room+`/Robert' to='bob@localhost/other'>`+occ)); again != first {
		t.Errorf("occupant-id after a rejoin %s, before %s", again, first)
	}
	alice.Send("<message to='" + room + "' type='groupchat' id='a'><body>alice here</body></message>")
	if own := occupantID(t, b2.Expect(`<message [^>]*id='a'>.*?</message>`)); own == first {
		t.Error("alice and bob have the same occupant-id")
	}
	alice.Send("<iq type='get' id='di' to='" + room + "'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
	alice.Expect(`<iq [^>]*id='di'.*?<feature var='urn:xmpp:occupant-id:0'/>`)
}

// TestHistoryKeepsWhatClientsShow: chat states and messages marked
// <no-store/> or <no-permanent-store/> are not replayed to newcomers; a
// message with a <store/> hint and no body is.
func TestHistoryKeepsWhatClientsShow(t *testing.T) {
	ts := newServer(t, nil)
	alice := open(t, ts)
	for i, inner := range []string{
		"<body>kept</body>",
		"<composing xmlns='http://jabber.org/protocol/chatstates'/>",
		"<body>private thought</body><no-store xmlns='urn:xmpp:hints'/>",
		"<body>fleeting</body><no-permanent-store xmlns='urn:xmpp:hints'/>",
		"<active xmlns='http://jabber.org/protocol/chatstates'/><store xmlns='urn:xmpp:hints'/>",
	} {
		id := "h" + string(rune('0'+i))
		alice.Send("<message to='" + room + "' type='groupchat' id='" + id + "'>" + inner + "</message>")
		alice.Expect(`id='` + id + `'`)
	}
	bob := ts.Login(t, "bob", "pw", "r")
	join(bob, "Bob", "")
	bob.Expect(`<status code='110'/>`)
	got := bob.Expect(`<subject></subject></message>`)
	hist := regexp.MustCompile(`<message type='groupchat' from='`+room+`/Alice' to='bob@localhost/r'>(.*?)<delay`).FindAllStringSubmatch(got, -1)
	if len(hist) != 2 || !strings.HasPrefix(hist[0][1], "<body>kept</body>") || !strings.HasPrefix(hist[1][1], "<active") {
		t.Errorf("history replayed %q, want the message with a body and the one with <store/>", hist)
	}
}

// TestRoomKeptOverStop: a temporary room with occupants when the server
// shuts down is there after the restart with its owner, subject and
// history; the next to join enters it (no 201). A kept room that nobody
// entered before its time ends at the next start.
func TestRoomKeptOverStop(t *testing.T) {
	store := memstore.New()
	// With the roster module, which sends unavailable presence to the
	// rooms of the sessions that end as the server stops.
	ts := trefftest.NewServer(t, func(s *treff.Server) {
		s.Modules = []treff.Module{&disco.Module{}, &roster.Module{}, &muc.Module{Store: store}}
	})
	for _, u := range []string{"alice", "bob"} {
		ts.AddUser(t, u, "pw")
	}
	alice := open(t, ts)
	alice.Send("<message to='" + room + "' type='groupchat'><subject>Tea time</subject></message>")
	alice.Expect(`<subject>Tea time</subject>`)
	alice.Send("<message to='" + room + "' type='groupchat' id='m'><body>before the stop</body></message>")
	alice.Expect(`id='m'`)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ts.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	stored, err := store.Room(ctx, room)
	if err != nil {
		t.Fatalf("the room was not stored at the stop: %v", err)
	}
	if stored.Persistent || stored.KeepUntil.Before(time.Now().Add(23*time.Hour)) || len(stored.History) != 1 || stored.Subject != "Tea time" {
		t.Errorf("stored %+v, want temporary, kept a day, with the subject and one message", stored)
	}

	ts2 := newServer(t, &muc.Module{Store: store})
	bob := ts2.Login(t, "bob", "pw", "r")
	join(bob, "Bob", "")
	self := bob.Expect(`<presence from='` + room + `/Bob' to='bob@localhost/r'>.*?</presence>`)
	if strings.Contains(self, "201") {
		t.Errorf("the room was made anew: %q", self)
	}
	bob.Expect(`<message type='groupchat' from='` + room + `/Alice' to='bob@localhost/r'><body>before the stop</body>` + occ + `<delay `)
	bob.Expect(`<message type='groupchat' from='` + room + `/Alice' to='bob@localhost/r'><subject>Tea time</subject></message>`)
	alice2 := ts2.Login(t, "alice", "pw", "r")
	join(alice2, "Alice", "<history maxstanzas='0'/>")
	alice2.Expect(`<presence from='` + room + `/Alice' to='alice@localhost/r'>` + occ + `<x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='owner' jid='alice@localhost/r' role='moderator'/><status code='110'/></x>`)

	// Both leave: a temporary room ends with its last occupant, and its
	// stored state goes.
	alice2.Send("<presence to='" + room + "/Alice' type='unavailable'/>")
	alice2.Expect(`type='unavailable'`)
	bob.Send("<presence to='" + room + "/Bob' type='unavailable'/>")
	bob.Expect(`<presence from='` + room + `/Bob' to='bob@localhost/r' type='unavailable'>`)
	bob.Send("<iq type='get' id='gone' to='" + room + "'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
	bob.Expect(`<iq [^>]*id='gone'[^>]*type='error'|<iq [^>]*type='error'[^>]*id='gone'`)
	if _, err := store.Room(ctx, room); err == nil {
		t.Error("the ended room is still stored")
	}

	// A room kept past its time ends at the start.
	if err := store.PutRoom(ctx, storage.Room{JID: "old@conference.localhost", Affiliations: map[string]storage.Affiliation{"alice@localhost": storage.AffOwner},
		KeepUntil: time.Now().Add(-time.Minute)}); err != nil {
		t.Fatal(err)
	}
	ts3 := newServer(t, &muc.Module{Store: store})
	if _, err := store.Room(ctx, "old@conference.localhost"); err == nil {
		t.Error("a kept room past its time is still stored after the start")
	}
	carol := ts3.Login(t, "carol", "pw", "r")
	carol.Send("<presence to='old@conference.localhost/Carol'><x xmlns='http://jabber.org/protocol/muc'/></presence>")
	carol.Expect(`<status code='110'/><status code='201'/>`)
}

// TestRoomDiscoAndForms: the room's disco#items lists its occupants to
// occupants and, in a public open room, to others; the roominfo form and
// the configuration form have the types of XEP-0045's registry
// (maxusers a list-single with options); a non-member asking for the
// member list of a members-only room gets <forbidden/>.
func TestRoomDiscoAndForms(t *testing.T) {
	ts := newServer(t, nil)
	alice := open(t, ts)
	dave := ts.Login(t, "dave", "pw", "r")
	dave.Send("<iq type='get' id='it' to='" + room + "'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>")
	dave.Expect(`<iq [^>]*id='it'[^>]*><query xmlns='http://jabber.org/protocol/disco#items'><item jid='` + room + `/Alice' name='Alice'/></query></iq>`)
	alice.Send("<iq type='get' id='in' to='" + room + "'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
	info := alice.Expect(`<iq [^>]*id='in'.*?</iq>`)
	for _, want := range []string{
		`<field var='muc#roominfo_occupants' type='text-single'[^>]*><value>1</value></field>`,
		`<field var='muc#roominfo_description' type='text-single'`,
		`<field var='muc#roominfo_subject' type='text-single'`,
		`<field var='muc#roominfo_lang' type='text-single'`,
		`<field var='muc#roominfo_subjectmod' type='boolean'`,
	} {
		if !regexp.MustCompile(want).MatchString(info) {
			t.Errorf("roominfo lacks %s: %s", want, info)
		}
	}
	alice.Send("<iq type='get' id='cf' to='" + room + "'><query xmlns='http://jabber.org/protocol/muc#owner'/></iq>")
	form := alice.Expect(`<iq [^>]*id='cf'.*?</iq>`)
	if !regexp.MustCompile(`<field var='muc#roomconfig_maxusers' type='list-single'[^>]*>(<option[^>]*><value>[0-9]+</value></option>)+<option[^>]*><value>none</value></option><value>none</value></field>`).MatchString(form) {
		t.Errorf("maxusers field: %s", form)
	}
	alice.Send("<iq type='set' id='cs' to='" + room + "'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'>" +
		"<field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>" +
		"<field var='muc#roomconfig_maxusers'><value>20</value></field><field var='muc#roomconfig_lang'><value>de</value></field>" +
		"<field var='muc#roomconfig_membersonly'><value>1</value></field><field var='muc#roomconfig_publicroom'><value>0</value></field></x></query></iq>")
	alice.Expect(`<iq [^>]*id='cs'[^>]*type='result'|<iq [^>]*type='result'[^>]*id='cs'`)
	alice.Send("<iq type='get' id='in2' to='" + room + "'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
	alice.Expect(`id='in2'.*?<field var='muc#roominfo_lang' type='text-single'[^>]*><value>de</value>`)
	alice.Send("<iq type='get' id='cf2' to='" + room + "'><query xmlns='http://jabber.org/protocol/muc#owner'/></iq>")
	alice.Expect(`id='cf2'.*?<field var='muc#roomconfig_maxusers' type='list-single'[^>]*>(<option><value>[a-z0-9]+</value></option>)+<value>20</value>`)

	// Hidden and members-only now: dave sees no occupants, and may not
	// read the member list.
	dave.Send("<iq type='get' id='it2' to='" + room + "'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>")
	dave.Expect(`<iq [^>]*id='it2'[^>]*><query xmlns='http://jabber.org/protocol/disco#items'/></iq>|<iq [^>]*id='it2'[^>]*><query xmlns='http://jabber.org/protocol/disco#items'></query></iq>`)
	dave.Send("<iq type='get' id='ml' to='" + room + "'><query xmlns='http://jabber.org/protocol/muc#admin'><item affiliation='member'/></query></iq>")
	dave.Expect(`<iq [^>]*id='ml'.*?<error type='auth'><forbidden xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>`)
}

// TestArchiveKeepsOccupantID: the room's archive returns messages with
// their occupant-id, the one the occupants got; chat states and
// <no-store/> messages are not archived.
func TestArchiveKeepsOccupantID(t *testing.T) {
	ts := newArchiveServer(t)
	alice := open(t, ts)
	alice.Send("<message to='" + room + "' type='groupchat' id='cs'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>")
	alice.Expect(`id='cs'`)
	alice.Send("<message to='" + room + "' type='groupchat' id='ns'><body>off the record</body><no-store xmlns='urn:xmpp:hints'/></message>")
	alice.Expect(`id='ns'`)
	alice.Send("<message to='" + room + "' type='groupchat' id='k'><body>on the record</body></message>")
	live := occupantID(t, alice.Expect(`<message [^>]*id='k'>.*?</message>`))
	alice.Send("<iq type='set' id='q' to='" + room + "'><query xmlns='urn:xmpp:mam:2' queryid='q'/></iq>")
	got := alice.Expect(`(?s)<iq [^>]*id='q'.*?</iq>`)
	res := regexp.MustCompile(`<result xmlns='urn:xmpp:mam:2'.*?</result>`).FindAllString(got, -1)
	if len(res) != 1 || !strings.Contains(res[0], "on the record") || occupantID(t, res[0]) != live {
		t.Errorf("archive returned %q, want only 'on the record' with occupant-id %s", res, live)
	}
}

// TestRoomNotKeptWhenTurnedOff: with a negative KeepTemporary, a
// temporary room is not stored at the stop; a persistent one is, with its
// history.
func TestRoomNotKeptWhenTurnedOff(t *testing.T) {
	store := memstore.New()
	ts := newServer(t, &muc.Module{Store: store, KeepTemporary: -1})
	alice := open(t, ts)
	alice.Send("<message to='" + room + "' type='groupchat' id='m'><body>gone with the stop</body></message>")
	alice.Expect(`id='m'`)
	alice.Send("<presence to='other@conference.localhost/Alice'><x xmlns='http://jabber.org/protocol/muc'/></presence>")
	alice.Expect(`<subject></subject>`)
	alice.Send("<iq type='set' id='p' to='other@conference.localhost'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'>" +
		"<field var='muc#roomconfig_persistentroom'><value>1</value></field></x></query></iq>")
	alice.Expect(`id='p'`)
	alice.Send("<message to='other@conference.localhost' type='groupchat' id='k'><body>kept</body></message>")
	alice.Expect(`id='k'`)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ts.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if r, err := store.Room(ctx, room); err == nil {
		t.Errorf("a temporary room was stored: %+v", r)
	}
	r, err := store.Room(ctx, "other@conference.localhost")
	if err != nil || len(r.History) != 1 || !strings.Contains(r.History[0].Content, "kept") || !r.KeepUntil.IsZero() {
		t.Errorf("the persistent room stored as %+v (%v), want it with its one message", r, err)
	}
}
