package cluster

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/auth"
	"github.com/treff-im/treff/im"
	"github.com/treff-im/treff/muc"
	"github.com/treff-im/treff/storage"
	"github.com/treff-im/treff/storage/memstore"
	"github.com/treff-im/treff/trefftest"
)

// newRoomCluster starts k nodes sharing one memstore, each with a
// muc.Module placed by Rooms.
func newRoomCluster(t *testing.T, k int) (*testCluster, []*Rooms) {
	t.Helper()
	store := memstore.New()
	t.Cleanup(func() { store.Close() })
	c := &testCluster{store: store, auth: &auth.Store{Accounts: store}}
	for range k {
		c.addrs = append(c.addrs, routeAddr(t))
	}
	var rooms []*Rooms
	for i := range k {
		name := fmt.Sprintf("n%d", i)
		ns, nc, err := Embedded{Name: name, Listen: c.addrs[i], Peers: c.addrs}.Start()
		if err != nil {
			t.Fatal(err)
		}
		tn := &testNode{ns: ns, nc: nc, node: &Node{Name: name, Conn: nc, Heartbeat: testHeartbeat, DeadAfter: testDeadAfter}}
		r := &Rooms{Node: tn.node, MUC: &muc.Module{SaveHistory: 20 * time.Millisecond}}
		t.Cleanup(func() {
			r.Stop()
			tn.node.Leave()
			nc.Close()
			ns.Shutdown()
		})
		tn.Server = trefftest.NewServer(t, func(s *treff.Server) {
			s.Storage = c.store
			s.Authenticator = c.auth
			s.Modules = append(im.Modules(), r.MUC)
			s.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
			if err := tn.node.Join(s); err != nil {
				t.Fatal(err)
			}
			if err := r.Start(); err != nil {
				t.Fatal(err)
			}
		})
		c.nodes = append(c.nodes, tn)
		rooms = append(rooms, r)
	}
	waitFor(t, "the nodes to see each other", func() bool {
		for _, n := range c.nodes {
			if len(n.node.Nodes()) != k-1 {
				return false
			}
		}
		return true
	})
	return c, rooms
}

const testRoom = "tea@conference.localhost"

func joinRoom(c *trefftest.Client, nick string) {
	c.Send("<presence to='" + testRoom + "/" + nick + "'><x xmlns='http://jabber.org/protocol/muc'/></presence>")
}

// selfPresence waits for the occupant's own presence in the room (110).
func selfPresence(t *testing.T, c *trefftest.Client, nick string) string {
	t.Helper()
	return c.Expect(`<presence from='` + testRoom + `/` + nick + `' to='[^']+'>.*?<status code='110'/>.*?</presence>`)
}

func roomOwner(t *testing.T, c *testCluster) string {
	t.Helper()
	b, err := c.store.(storage.Secrets).Secret(context.Background(), leasePrefix+testRoom)
	if err != nil {
		t.Fatal(err)
	}
	return parseOwner(b).node
}

// TestRoomAcrossNodes: occupants on three nodes of one room see each
// other's presence and messages, each once; the room lives on the node
// through which it was created, and the others forward to it. Then the
// owner node goes silent (its NATS server shut down): the occupants on
// the other nodes get an unavailable presence with status 332, rejoin,
// and a surviving node has taken the room over from the store with its
// configuration (members-only, persistent), affiliations (the owner, the
// members) and history (stored by SaveHistory).
func TestRoomAcrossNodes(t *testing.T) {
	c, _ := newRoomCluster(t, 3)
	for _, u := range []string{"alice", "bob", "carol", "dave"} {
		c.addUser(t, u)
	}
	alice := c.login(t, 0, "alice", "a")
	bob := c.login(t, 1, "bob", "b")
	carol := c.login(t, 2, "carol", "c")
	for _, u := range []string{"alice@localhost/a", "bob@localhost/b", "carol@localhost/c"} {
		c.waitSeen(t, u, -200)
	}

	joinRoom(alice, "Alice")
	alice.Expect(`<status code='201'/>`)
	alice.Send("<iq type='set' id='cfg' to='" + testRoom + "'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'>" +
		"<field var='muc#roomconfig_persistentroom'><value>1</value></field><field var='muc#roomconfig_membersonly'><value>1</value></field></x></query></iq>")
	alice.Expect(`<iq type='result' id='cfg'`)
	alice.Send("<iq type='set' id='aff' to='" + testRoom + "'><query xmlns='http://jabber.org/protocol/muc#admin'>" +
		"<item affiliation='member' jid='bob@localhost'/><item affiliation='member' jid='carol@localhost'/></query></iq>")
	alice.Expect(`<iq type='result' id='aff'`)
	if got := roomOwner(t, c); got != "n0" {
		t.Fatalf("the room's owner is %q, want n0 (where it was created)", got)
	}

	joinRoom(bob, "Bob")
	selfPresence(t, bob, "Bob")
	alice.Expect(`<presence from='` + testRoom + `/Bob'`)
	joinRoom(carol, "Carol")
	got := selfPresence(t, carol, "Carol")
	for _, nick := range []string{"Alice", "Bob"} {
		if !strings.Contains(got, "from='"+testRoom+"/"+nick+"'") {
			t.Errorf("carol (node 2) did not get %s's presence before her own: %q", nick, got)
		}
	}
	alice.Expect(`<presence from='` + testRoom + `/Carol'`)
	bob.Expect(`<presence from='` + testRoom + `/Carol'`)

	// A message from each node reaches everyone once.
	// (One after the other: messages from different senders may cross.)
	for i, sender := range []*trefftest.Client{alice, bob, carol} {
		sender.Send(fmt.Sprintf("<message to='%s' type='groupchat' id='g%d'><body>hello %d</body></message>", testRoom, i, i))
		for _, cl := range []*trefftest.Client{alice, bob, carol} {
			cl.Expect(fmt.Sprintf(`<message [^>]*type='groupchat' id='g%d'><body>hello %d</body>`, i, i))
		}
	}
	for _, cl := range []*trefftest.Client{alice, bob, carol} {
		if rest := cl.Pending() + cl.Sync(); strings.Contains(rest, "<body>hello") {
			t.Errorf("%s got a message twice: %q", cl.JID, rest)
		}
	}

	// The room stores its recent history (SaveHistory).
	waitFor(t, "the history stored", func() bool {
		r, err := c.store.(storage.Rooms).Room(context.Background(), testRoom)
		return err == nil && len(r.History) == 3
	})

	// The owner node goes silent.
	c.nodes[0].ns.Shutdown()
	for _, cl := range []*trefftest.Client{bob, carol} {
		cl.Timeout = testDeadAfter + 5e9
		cl.Expect(`<presence from='` + testRoom + `/[^']+' to='` + regexp.QuoteMeta(cl.JID) + `' type='unavailable'><x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='none' role='none'/><status code='110'/><status code='332'/></x></presence>`)
	}
	joinRoom(bob, "Bob")
	got = selfPresence(t, bob, "Bob")
	if !strings.Contains(got, "affiliation='member'") {
		t.Errorf("bob is not a member after the take-over: %q", got)
	}
	for i := range 3 {
		bob.Expect(fmt.Sprintf(`<body>hello %d</body>(?:<[^>]*/>)*<delay xmlns='urn:xmpp:delay'`, i))
	}
	if owner := roomOwner(t, c); owner != "n1" {
		t.Errorf("the room's owner is %q after the take-over, want n1 (bob's node)", owner)
	}
	joinRoom(carol, "Carol")
	selfPresence(t, carol, "Carol")
	bob.Expect(`<presence from='` + testRoom + `/Carol'`)

	// Members-only survived: dave is kept out; alice, back on node 2, is
	// still the owner.
	dave := c.login(t, 2, "dave", "d")
	joinRoom(dave, "Dave")
	dave.Expect(`<presence [^>]*type='error'.*?<registration-required`)
	alice2 := c.login(t, 2, "alice", "a2")
	joinRoom(alice2, "Alice")
	if got := selfPresence(t, alice2, "Alice"); !strings.Contains(got, "affiliation='owner'") {
		t.Errorf("alice is not the owner after the take-over: %q", got)
	}
	carol.Send("<message to='" + testRoom + "' type='groupchat' id='after'><body>after</body></message>")
	for _, cl := range []*trefftest.Client{bob, carol, alice2} {
		cl.Expect(`id='after'><body>after</body>`)
	}
}

// TestRoomOccupantNodeLost: an occupant on another node whose session
// ends leaves the room (its node sends the unavailable presence, which
// goes to the room's node); when a node with occupants of a room dies,
// the room's node takes them out, and the others see them leave.
func TestRoomOccupantNodeLost(t *testing.T) {
	c, _ := newRoomCluster(t, 2)
	c.addUser(t, "alice")
	c.addUser(t, "bob")
	c.addUser(t, "carol")
	alice := c.login(t, 0, "alice", "a")
	bob := c.login(t, 1, "bob", "b")
	carol := c.login(t, 1, "carol", "c")
	c.waitSeen(t, "bob@localhost/b", -200)
	c.waitSeen(t, "carol@localhost/c", -200)
	joinRoom(alice, "Alice")
	alice.Expect(`<status code='201'/>`)
	alice.Send("<iq type='set' id='cfg' to='" + testRoom + "'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>")
	alice.Expect(`<iq type='result' id='cfg'`)
	joinRoom(bob, "Bob")
	selfPresence(t, bob, "Bob")
	alice.Expect(`<presence from='` + testRoom + `/Bob'`)
	joinRoom(carol, "Carol")
	selfPresence(t, carol, "Carol")
	alice.Expect(`<presence from='` + testRoom + `/Carol'`)
	carol.Send("</stream:stream>")
	alice.Expect(`<presence from='` + testRoom + `/Carol' to='alice@localhost/a' type='unavailable'>`)
	c.nodes[1].ns.Shutdown()
	alice.Timeout = testDeadAfter + 5e9
	alice.Expect(`<presence from='` + testRoom + `/Bob' to='alice@localhost/a' type='unavailable'>`)
}

// TestRoomNotCreatedByLookups: stanzas to rooms that do not exist (not
// joins) make no ownership records.
func TestRoomNotCreatedByLookups(t *testing.T) {
	c, _ := newRoomCluster(t, 2)
	c.addUser(t, "bob")
	bob := c.login(t, 1, "bob", "b")
	bob.Send("<iq type='get' id='i' to='" + testRoom + "'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
	bob.Expect(`<iq [^>]*type='error'[^>]*id='i'|<iq [^>]*id='i'[^>]*type='error'`)
	if _, err := c.store.(storage.Secrets).Secret(context.Background(), leasePrefix+testRoom); err == nil {
		t.Error("a disco query made an ownership record")
	}
}

// TestRoomReleased: a node that finds, when a node (re)appears, that
// another node took over a room it holds (they did not hear each other
// for a while) drops its copy: the occupants get status 332 and rejoin
// at the new owner, which loads the room from the store.
func TestRoomReleased(t *testing.T) {
	c, rooms := newRoomCluster(t, 2)
	c.addUser(t, "alice")
	alice := c.login(t, 0, "alice", "a")
	joinRoom(alice, "Alice")
	alice.Expect(`<status code='201'/>`)
	alice.Send("<iq type='set' id='cfg' to='" + testRoom + "'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'>" +
		"<field var='muc#roomconfig_persistentroom'><value>1</value></field><field var='muc#roomconfig_roomname'><value>Tea room</value></field></x></query></iq>")
	alice.Expect(`<iq type='result' id='cfg'`)
	// Node 1 took the room over while the two did not hear each other.
	ctx := context.Background()
	secrets := c.store.(storage.Secrets)
	cur, err := secrets.Secret(ctx, leasePrefix+testRoom)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := secrets.SwapSecret(ctx, leasePrefix+testRoom, cur, rooms[1].mine().value()); !ok || err != nil {
		t.Fatalf("swap: %v %v", ok, err)
	}
	r := rooms[0]
	r.mu.Lock()
	r.peers = map[string]string{} // as if node 1 came back
	r.mu.Unlock()
	r.check(ctx)
	alice.Expect(`<presence from='` + testRoom + `/Alice' to='alice@localhost/a' type='unavailable'>.*?<status code='110'/><status code='332'/></x></presence>`)
	if r.MUC.Owns(jid.MustParse(testRoom)) {
		t.Error("node 0 still holds the room")
	}
	joinRoom(alice, "Alice")
	selfPresence(t, alice, "Alice")
	if !rooms[1].MUC.Owns(jid.MustParse(testRoom)) {
		t.Error("node 1 does not hold the room after the rejoin")
	}
	alice.Send("<iq type='get' id='info' to='" + testRoom + "'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
	if got := alice.Expect(`<iq [^>]*id='info'.*?</iq>`); !strings.Contains(got, "Tea room") {
		t.Errorf("the room's name did not survive: %q", got)
	}
}

// TestRoomQueueFull: a room stanza forwarded to a node whose queue of
// forwarded room stanzas is full (Rooms.Queue) is refused with
// <resource-constraint/> (wait), and the sender, on another node, gets
// the error.
func TestRoomQueueFull(t *testing.T) {
	c, rooms := newRoomCluster(t, 2)
	c.addUser(t, "alice")
	alice := c.login(t, 1, "alice", "a")
	c.waitSeen(t, "alice@localhost/a", -200)
	n := c.nodes[0].node
	// A full queue that nobody reads, in place of node 0's.
	full := &Rooms{queue: make(chan *nats.Msg, 1)}
	full.queue <- &nats.Msg{}
	n.rooms.Store(full)
	defer n.rooms.Store(rooms[0])
	n.onRoom(&nats.Msg{Subject: n.roomSubject(n.Name), Data: []byte("0\n<message from='alice@localhost/a' to='" + testRoom + "' type='groupchat' id='busy'><body>hi</body></message>")})
	got := alice.Expect(`<message [^>]*id='busy'.*?</message>`)
	if !strings.Contains(got, "type='error'") || !strings.Contains(got, "<resource-constraint") || !strings.Contains(got, "type='wait'") {
		t.Errorf("alice got %q, want a resource-constraint error of type wait", got)
	}
}
