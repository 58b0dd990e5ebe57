package muc_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/disco"
	"github.com/treff-im/treff/muc"
	"github.com/treff-im/treff/storage/memstore"
	"github.com/treff-im/treff/trefftest"
)

const room = "lobby@conference.localhost"

func newServer(t *testing.T, m *muc.Module) *trefftest.Server {
	t.Helper()
	if m == nil {
		m = &muc.Module{}
	}
	ts := trefftest.NewServer(t, func(s *treff.Server) { s.Modules = []treff.Module{&disco.Module{}, m} })
	for _, u := range []string{"alice", "bob", "carol", "dave"} {
		ts.AddUser(t, u, "pw")
	}
	return ts
}

func join(c *trefftest.Client, nick, extra string) {
	c.Send("<presence to='" + room + "/" + nick + "'><x xmlns='http://jabber.org/protocol/muc'>" + extra + "</x></presence>")
}

const instant = "<iq type='set' id='cfg' to='" + room + "'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>"

// open makes alice create the room and accept the default configuration.
func open(t *testing.T, ts *trefftest.Server) *trefftest.Client {
	alice := ts.Login(t, "alice", "pw", "r")
	join(alice, "Alice", "")
	alice.Expect(`<presence from='` + room + `/Alice' to='alice@localhost/r'><occupant-id xmlns='urn:xmpp:occupant-id:0' id='[^']+'/><x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='owner' jid='alice@localhost/r' role='moderator'/><status code='110'/><status code='201'/></x></presence>`)
	alice.Expect(`<message type='groupchat' from='` + room + `' to='alice@localhost/r'><subject></subject></message>`)
	alice.Send(instant)
	alice.Expect(`<iq type='result' id='cfg'`)
	return alice
}

func TestJoinTalkLeave(t *testing.T) {
	ts := newServer(t, nil)
	alice := ts.Login(t, "alice", "pw", "r")
	join(alice, "Alice", "")
	alice.Expect(`<status code='110'/><status code='201'/>`)
	// Locked until configured.
	bob := ts.Login(t, "bob", "pw", "r")
	join(bob, "Bob", "")
	bob.Expect(`<presence [^>]*type='error'.*?<item-not-found`)
	alice.Send(instant)
	alice.Expect(`<iq type='result' id='cfg'`)

	join(bob, "Bob", "")
	// bob sees alice (no real JID: semi-anonymous), then himself, then the subject.
	bob.Expect(`<presence from='` + room + `/Alice' to='bob@localhost/r'><occupant-id xmlns='urn:xmpp:occupant-id:0' id='[^']+'/><x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='owner' role='moderator'/></x></presence>`)
	bob.Expect(`<presence from='` + room + `/Bob' to='bob@localhost/r'><occupant-id xmlns='urn:xmpp:occupant-id:0' id='[^']+'/><x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='none' jid='bob@localhost/r' role='participant'/><status code='110'/></x></presence>`)
	bob.Expect(`<subject></subject>`)
	// alice, a moderator, sees bob's real JID.
	alice.Expect(`<presence from='` + room + `/Bob' to='alice@localhost/r'><occupant-id xmlns='urn:xmpp:occupant-id:0' id='[^']+'/><x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='none' jid='bob@localhost/r' role='participant'/></x></presence>`)

	bob.Send("<message to='" + room + "' type='groupchat' id='m1'><body>hello all</body></message>")
	alice.Expect(`<message from='` + room + `/Bob' to='alice@localhost/r' type='groupchat' id='m1'><body>hello all</body><occupant-id xmlns='urn:xmpp:occupant-id:0' id='[^']+'/></message>`)
	bob.Expect(`<message from='` + room + `/Bob' to='bob@localhost/r' type='groupchat' id='m1'><body>hello all</body><occupant-id xmlns='urn:xmpp:occupant-id:0' id='[^']+'/></message>`)

	// A late joiner gets the history with a delay, then the subject.
	alice.Send("<message to='" + room + "' type='groupchat'><subject>Tea</subject></message>")
	alice.Expect(`<subject>Tea</subject>`)
	carol := ts.Login(t, "carol", "pw", "r")
	join(carol, "Bob", "")
	carol.Expect(`<presence [^>]*type='error'.*?<conflict`)
	join(carol, "Carol", "")
	carol.Expect(`from='` + room + `/Bob' to='carol@localhost/r'><body>hello all</body><occupant-id xmlns='urn:xmpp:occupant-id:0' id='[^']+'/><delay xmlns='urn:xmpp:delay' from='` + room + `' stamp='[0-9T:.Z-]+'/></message>`)
	carol.Expect(`<message type='groupchat' from='` + room + `/Alice' to='carol@localhost/r'><subject>Tea</subject></message>`)
	// Only moderators change the subject by default.
	carol.Send("<message to='" + room + "' type='groupchat' id='s'><subject>Coffee</subject></message>")
	carol.Expect(`<message [^>]*type='error'.*?<forbidden`)

	// Private messages go through the room with a muc#user marker.
	alice.Send("<message to='" + room + "/Bob' type='chat' id='pm'><body>psst</body></message>")
	bob.Expect(`<message from='` + room + `/Alice' to='bob@localhost/r' type='chat' id='pm'><body>psst</body><x xmlns='http://jabber.org/protocol/muc#user'/><occupant-id xmlns='urn:xmpp:occupant-id:0' id='[^']+'/></message>`)
	alice.Send("<message to='" + room + "/Nobody' type='chat' id='pm2'><body>?</body></message>")
	alice.Expect(`<message [^>]*type='error'.*?<item-not-found`)
	dave := ts.Login(t, "dave", "pw", "r")
	dave.Send("<message to='" + room + "' type='groupchat' id='x'><body>let me in</body></message>")
	dave.Expect(`<message [^>]*type='error'.*?<not-acceptable`)

	// Nickname change: 303, then the new presence.
	bob.Send("<presence to='" + room + "/Robert'/>")
	alice.Expect(`<presence from='` + room + `/Bob' to='alice@localhost/r' type='unavailable'><occupant-id xmlns='urn:xmpp:occupant-id:0' id='[^']+'/><x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='none' jid='bob@localhost/r' role='none' nick='Robert'/><status code='303'/></x></presence>`)
	alice.Expect(`<presence from='` + room + `/Robert' to='alice@localhost/r'>`)

	// Leaving, and a session that ends, both tell the others.
	bob.Send("<presence to='" + room + "/Robert' type='unavailable'><status>bye</status></presence>")
	bob.Expect(`<presence from='` + room + `/Robert' to='bob@localhost/r' type='unavailable'><status>bye</status><occupant-id xmlns='urn:xmpp:occupant-id:0' id='[^']+'/><x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='none' jid='bob@localhost/r' role='none'/><status code='110'/></x></presence>`)
	alice.Expect(`<presence from='` + room + `/Robert' to='alice@localhost/r' type='unavailable'><status>bye</status>`)
	carol.Conn().Close()
	alice.Expect(`<presence from='` + room + `/Carol' to='alice@localhost/r' type='unavailable'>`)
}

func TestRoomConfiguration(t *testing.T) {
	store := memstore.New()
	ts := newServer(t, &muc.Module{Store: store})
	alice := open(t, ts)
	alice.Send("<iq type='get' id='g' to='" + room + "'><query xmlns='http://jabber.org/protocol/muc#owner'/></iq>")
	form := alice.Expect(`<iq type='result' id='g'.*?</iq>`)
	for _, f := range []string{"muc#roomconfig_persistentroom", "muc#roomconfig_membersonly", "muc#roomconfig_whois", "muc#roomconfig_roomsecret"} {
		if !strings.Contains(form, f) {
			t.Errorf("config form lacks %s", f)
		}
	}
	bob := ts.Login(t, "bob", "pw", "r")
	bob.Send("<iq type='get' id='g' to='" + room + "'><query xmlns='http://jabber.org/protocol/muc#owner'/></iq>")
	bob.Expect(`<iq type='error' id='g'.*?<forbidden`)

	submit := func(fields string) {
		alice.Send("<iq type='set' id='s' to='" + room + "'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'>" + fields + "</x></query></iq>")
		alice.Expect(`<iq type='result' id='s'`)
	}
	field := func(name, v string) string { return "<field var='" + name + "'><value>" + v + "</value></field>" }
	submit(field("muc#roomconfig_membersonly", "1") + field("muc#roomconfig_persistentroom", "1") + field("muc#roomconfig_roomname", "The Lobby") + field("muc#roomconfig_whois", "anyone"))
	alice.Expect(`<x xmlns='http://jabber.org/protocol/muc#user'><status code='104'/><status code='172'/></x>`)
	join(bob, "Bob", "")
	bob.Expect(`<presence [^>]*type='error'.*?<registration-required`)

	submit(field("muc#roomconfig_membersonly", "0") + field("muc#roomconfig_passwordprotectedroom", "1") + field("muc#roomconfig_roomsecret", "sesame"))
	join(bob, "Bob", "")
	bob.Expect(`<presence [^>]*type='error'.*?<not-authorized`)
	join(bob, "Bob", "<password>sesame</password>")
	bob.Expect(`<status code='110'/><status code='100'/>`)

	// Room info and the public room list.
	bob.Send("<iq type='get' id='i' to='" + room + "'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
	bob.Expect(`<identity category='conference' type='text' name='The Lobby'/>.*<feature var='muc_passwordprotected'/><feature var='muc_persistent'/>.*muc#roominfo_occupants.*?<value>2</value>`)
	bob.Send("<iq type='get' id='l' to='conference.localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>")
	bob.Expect(`<item jid='` + room + `' name='The Lobby'/>`)

	// Persistent: it outlives its occupants and a server restart.
	alice.Conn().Close()
	bob.Conn().Close()
	if _, err := store.Room(t.Context(), room); err != nil {
		t.Fatalf("stored room: %v", err)
	}
	ts2 := newServer(t, &muc.Module{Store: store})
	carol := ts2.Login(t, "carol", "pw", "r")
	join(carol, "Carol", "<password>sesame</password>")
	carol.Expect(`<presence from='` + room + `/Carol' to='carol@localhost/r'><occupant-id xmlns='urn:xmpp:occupant-id:0' id='[^']+'/><x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='none' jid='carol@localhost/r' role='participant'/><status code='110'/><status code='100'/></x></presence>`)

	// Destroy: occupants leave with the alternative venue.
	alice2 := ts2.Login(t, "alice", "pw", "r")
	join(alice2, "Alice", "")
	alice2.Expect(`<status code='110'/>`)
	alice2.Send("<iq type='set' id='d' to='" + room + "'><query xmlns='http://jabber.org/protocol/muc#owner'><destroy jid='new@conference.localhost'><reason>moved</reason></destroy></query></iq>")
	carol.Expect(`<presence from='` + room + `/Carol' to='carol@localhost/r' type='unavailable'><occupant-id xmlns='urn:xmpp:occupant-id:0' id='[^']+'/><x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='none' jid='carol@localhost/r' role='none'/><destroy jid='new@conference.localhost'><reason>moved</reason></destroy></x></presence>`)
	if _, err := store.Room(t.Context(), room); err == nil {
		t.Error("destroyed room still stored")
	}
}

func TestCreationPolicyAndLimits(t *testing.T) {
	ts := newServer(t, &muc.Module{CreatorDomains: []string{"example.org"}, MaxNick: 5})
	alice := ts.Login(t, "alice", "pw", "r")
	join(alice, "Al", "")
	alice.Expect(`<presence [^>]*type='error'.*?<not-allowed.*?only users of this server may create rooms`)
	join(alice, "Alexandra", "")
	alice.Expect(`<presence [^>]*type='error'.*?<not-acceptable.*?at most 5 characters`)
	// Self-ping (XEP-0410) says whether one is still in.
	alice.Send("<iq type='get' id='p' to='" + room + "/Al'><ping xmlns='urn:xmpp:ping'/></iq>")
	alice.Expect(`<iq type='error' id='p'.*?<item-not-found`)
}

func TestSelfPing(t *testing.T) {
	ts := newServer(t, nil)
	alice := open(t, ts)
	alice.Send("<iq type='get' id='p' to='" + room + "/Alice'><ping xmlns='urn:xmpp:ping'/></iq>")
	alice.Expect(`<iq type='result' id='p'`)
	bob := ts.Login(t, "bob", "pw", "r")
	bob.Send("<iq type='get' id='p' to='" + room + "/Alice'><ping xmlns='urn:xmpp:ping'/></iq>")
	bob.Expect(`<iq type='error' id='p'.*?<not-acceptable`)
}

func TestRolesAffiliationsInvites(t *testing.T) {
	ts := newServer(t, nil)
	alice := open(t, ts)
	admin := func(id, items string) {
		alice.Send("<iq type='set' id='" + id + "' to='" + room + "'><query xmlns='http://jabber.org/protocol/muc#admin'>" + items + "</query></iq>")
	}
	bob := ts.Login(t, "bob", "pw", "r")
	join(bob, "Bob", "")
	bob.Expect(`<subject>`)
	carol := ts.Login(t, "carol", "pw", "r")
	join(carol, "Carol", "")
	carol.Expect(`<subject>`)

	// Kick: everyone sees 307 with the actor and reason.
	admin("k", "<item nick='Carol' role='none'><reason>spam</reason></item>")
	alice.Expect(`<iq type='result' id='k'`)
	carol.Expect(`<presence from='` + room + `/Carol' to='carol@localhost/r' type='unavailable'><occupant-id xmlns='urn:xmpp:occupant-id:0' id='[^']+'/><x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='none' jid='carol@localhost/r' role='none'><actor nick='Alice'/><reason>spam</reason></item><status code='110'/><status code='307'/></x></presence>`)
	bob.Expect(`<presence from='` + room + `/Carol' to='bob@localhost/r' type='unavailable'>.*?<status code='307'/>`)
	// A participant cannot kick.
	bob.Send("<iq type='set' id='k2' to='" + room + "'><query xmlns='http://jabber.org/protocol/muc#admin'><item nick='Alice' role='none'/></query></iq>")
	bob.Expect(`<iq type='error' id='k2'.*?<forbidden`)

	// Ban: carol cannot come back.
	admin("b", "<item affiliation='outcast' jid='carol@localhost'/>")
	alice.Expect(`<iq type='result' id='b'`)
	join(carol, "Carol", "")
	carol.Expect(`<presence [^>]*type='error'.*?<forbidden`)

	// Members-only: membership by affiliation and by invitation.
	alice.Send("<iq type='set' id='s' to='" + room + "'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'><field var='muc#roomconfig_membersonly'><value>1</value></field></x></query></iq>")
	alice.Expect(`<iq type='result' id='s'`)
	dave := ts.Login(t, "dave", "pw", "r")
	dave.Send("<presence/>") // available, to get the invitation
	join(dave, "Dave", "")
	dave.Expect(`<presence [^>]*type='error'.*?<registration-required`)
	alice.Send("<message to='" + room + "'><x xmlns='http://jabber.org/protocol/muc#user'><invite to='dave@localhost'><reason>come in</reason></invite></x></message>")
	dave.Expect(`<message from='` + room + `' to='dave@localhost'><x xmlns='http://jabber.org/protocol/muc#user'><invite from='alice@localhost'><reason>come in</reason></invite></x></message>`)
	join(dave, "Dave", "")
	dave.Expect(`<item affiliation='member' jid='dave@localhost/r' role='participant'/><status code='110'/>`)
	// The member list, for the owner.
	alice.Send("<iq type='get' id='ml' to='" + room + "'><query xmlns='http://jabber.org/protocol/muc#admin'><item affiliation='member'/></query></iq>")
	alice.Expect(`<iq type='result' id='ml'[^>]*><query xmlns='http://jabber.org/protocol/muc#admin'><item affiliation='member' jid='dave@localhost'/></query></iq>`)
	// Taking dave's membership away is 321.
	admin("r", "<item affiliation='none' jid='dave@localhost'/>")
	dave.Expect(`type='unavailable'>.*?<status code='110'/><status code='321'/>`)
	// The last owner stays.
	admin("o", "<item affiliation='member' jid='alice@localhost'/>")
	alice.Expect(`<iq type='error' id='o'.*?<conflict`)
}

func TestRoomsPerUser(t *testing.T) {
	ts := newServer(t, &muc.Module{MaxRoomsPerUser: 1})
	open(t, ts) // alice owns lobby
	alice := ts.Login(t, "alice", "pw", "two")
	alice.Send("<presence to='second@conference.localhost/Alice'><x xmlns='http://jabber.org/protocol/muc'/></presence>")
	alice.Expect(`<presence [^>]*type='error'.*?<resource-constraint.*?you own as many rooms as one may \(1\)`)
	bob := ts.Login(t, "bob", "pw", "r")
	bob.Send("<presence to='second@conference.localhost/Bob'><x xmlns='http://jabber.org/protocol/muc'/></presence>")
	bob.Expect(`<status code='201'/>`)
}

// In a moderated room a visitor asks for voice; a moderator grants it.
func TestVoiceRequest(t *testing.T) {
	ts := newServer(t, nil)
	alice := open(t, ts)
	alice.Send("<iq type='set' id='m' to='" + room + "'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'><field var='muc#roomconfig_moderatedroom'><value>1</value></field></x></query></iq>")
	alice.Expect(`<iq type='result' id='m'`)
	bob := ts.Login(t, "bob", "pw", "r")
	join(bob, "Bob", "")
	bob.Expect(`role='visitor'/><status code='110'/>`)
	bob.Send("<message to='" + room + "' type='groupchat' id='g'><body>hi</body></message>")
	bob.Expect(`<message [^>]*type='error'.*?<forbidden`)
	bob.Send("<message to='" + room + "'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#request</value></field><field var='muc#role'><value>participant</value></field></x></message>")
	alice.Expect(`<message from='` + room + `' to='alice@localhost/r'><x xmlns='jabber:x:data' type='form'><title>Voice request</title>.*?<field var='muc#roomnick' type='text-single' label='Nickname'><value>Bob</value></field>`)
	alice.Send("<message to='" + room + "'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#request</value></field><field var='muc#roomnick'><value>Bob</value></field><field var='muc#request_allow'><value>true</value></field></x></message>")
	bob.Expect(`<presence from='` + room + `/Bob' to='bob@localhost/r'><occupant-id xmlns='urn:xmpp:occupant-id:0' id='[^']+'/><x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='none' jid='bob@localhost/r' role='participant'/><status code='110'/>`)
	bob.Send("<message to='" + room + "' type='groupchat' id='g2'><body>hi now</body></message>")
	alice.Expect(`<body>hi now</body>`)
}

// IQs between occupants go through the room with their ids swapped.
func TestIQBetweenOccupants(t *testing.T) {
	ts := newServer(t, nil)
	alice := open(t, ts)
	bob := ts.Login(t, "bob", "pw", "r")
	join(bob, "Bob", "")
	bob.Expect(`<subject>`)
	alice.Send("<iq type='get' id='v1' to='" + room + "/Bob'><vCard xmlns='vcard-temp'/></iq>")
	got := bob.Expect(`<iq from='` + room + `/Alice' to='bob@localhost/r' type='get' id='(muc-[^']+)'><vCard xmlns='vcard-temp'/></iq>`)
	id := regexp.MustCompile(`id='(muc-[^']+)'`).FindStringSubmatch(got)[1]
	bob.Send("<iq type='result' id='" + id + "' to='" + room + "/Alice'><vCard xmlns='vcard-temp'><FN>Bob</FN></vCard></iq>")
	alice.Expect(`<iq from='` + room + `/Bob' to='alice@localhost/r' type='result' id='v1'><vCard xmlns='vcard-temp'><FN>Bob</FN></vCard></iq>`)
	// An answer nobody asked for goes nowhere; a request to nobody fails.
	bob.Send("<iq type='result' id='muc-forged' to='" + room + "/Alice'/>")
	alice.Send("<iq type='get' id='v2' to='" + room + "/Nobody'><vCard xmlns='vcard-temp'/></iq>")
	alice.Expect(`<iq type='error' id='v2'.*?<item-not-found`)
	if strings.Contains(alice.Pending(), "muc-forged") {
		t.Error("a forged answer reached alice")
	}
}

// A refused join carries the MUC element back (clients look for it).
func TestRefusedJoinEchoesMUCElement(t *testing.T) {
	ts := newServer(t, nil)
	open(t, ts)
	bob := ts.Login(t, "bob", "pw", "r")
	join(bob, "Alice", "")
	bob.Expect(`<presence type='error' to='bob@localhost/r' from='` + room + `/Alice'><x xmlns='http://jabber.org/protocol/muc'/><error type='cancel'><conflict xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>`)
}

// Switching a room to members-only sends non-members out with 322;
// Creators restricts who may create rooms.
func TestMembersOnlySwitchAndCreators(t *testing.T) {
	ts := newServer(t, &muc.Module{Creators: []string{"alice@localhost"}})
	alice := open(t, ts)
	bob := ts.Login(t, "bob", "pw", "r")
	join(bob, "Bob", "")
	bob.Expect(`<subject>`)
	alice.Send("<iq type='set' id='s' to='" + room + "'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'><field var='muc#roomconfig_membersonly'><value>1</value></field></x></query></iq>")
	bob.Expect(`<presence from='` + room + `/Bob' to='bob@localhost/r' type='unavailable'>.*?<status code='110'/><status code='322'/>`)
	bob.Send("<presence to='other@conference.localhost/Bob'><x xmlns='http://jabber.org/protocol/muc'/></presence>")
	bob.Expect(`<not-allowed xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><text[^>]*>only some users of this server may create rooms`)
}
