package cluster

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/auth"
	"github.com/treff-im/treff/im"
	"github.com/treff-im/treff/storage"
	"github.com/treff-im/treff/storage/memstore"
	"github.com/treff-im/treff/trefftest"
)

// testNode is one node of an in-process cluster: a Treff server with
// its own embedded NATS server, routed to the others'.
type testNode struct {
	*trefftest.Server
	node *Node
	ns   *server.Server
	nc   *nats.Conn
}

type testCluster struct {
	addrs []string // the first nodes' route listeners
	nodes []*testNode
	store storage.Store
	auth  *auth.Store
	// setup, if set, configures node i's server further (after
	// im.Modules()).
	setup func(i int, s *treff.Server)
	// modules, if set, adds modules to node i's server (after Join).
	modules func(i int, n *Node) []treff.Module
	// routeTLS, if set, is node i's Embedded.TLS.
	routeTLS func(i int) *tls.Config
}

// Short heartbeats so that a silent node is dropped within 2 s, with
// room for a test machine under load (-race, other packages' tests).
const (
	testHeartbeat = 200 * time.Millisecond
	testDeadAfter = 2 * time.Second
)

// newCluster starts k nodes sharing one memstore.
func newCluster(t *testing.T, k int) *testCluster { return newClusterTB(t, k) }

func newClusterTB(t testing.TB, k int) *testCluster { return newClusterWith(t, k, nil) }

// newClusterWith starts k nodes sharing one memstore, node i's server
// also configured by setup(i, s) if setup is not nil.
func newClusterWith(t testing.TB, k int, setup func(i int, s *treff.Server)) *testCluster {
	t.Helper()
	return startCluster(t, k, &testCluster{setup: setup})
}

// startCluster starts k nodes of c (its setup, modules and routeTLS
// set, if wanted) sharing one memstore.
func startCluster(t testing.TB, k int, c *testCluster) *testCluster {
	t.Helper()
	store := memstore.New()
	t.Cleanup(func() { store.Close() })
	c.store, c.auth = store, &auth.Store{Accounts: store}
	addrs := make([]string, k)
	for i := range addrs {
		addrs[i] = routeAddr(t)
	}
	c.addrs = addrs
	for i := range k {
		c.addNode(t, i)
	}
	// Every node hears every other.
	waitForTB(t, "the nodes to see each other", func() bool {
		for _, n := range c.nodes {
			if len(n.node.Nodes()) != k-1 {
				return false
			}
		}
		return true
	})
	return c
}

// addNode starts node i, routed to the nodes at c.addrs.
func (c *testCluster) addNode(t testing.TB, i int) *testNode {
	t.Helper()
	name := fmt.Sprintf("n%d", i)
	listen := ""
	if i < len(c.addrs) {
		listen = c.addrs[i]
	}
	e := Embedded{Name: name, Listen: listen, Peers: c.addrs}
	if c.routeTLS != nil {
		e.TLS = c.routeTLS(i)
	}
	ns, nc, err := e.Start()
	if err != nil {
		t.Fatal(err)
	}
	tn := &testNode{ns: ns, nc: nc, node: &Node{Name: name, Conn: nc, Heartbeat: testHeartbeat, DeadAfter: testDeadAfter}}
	// Registered before the server's own clean-up, so run after it.
	t.Cleanup(func() {
		tn.node.Leave()
		nc.Close()
		ns.Shutdown()
	})
	tn.Server = trefftest.NewServer(t, func(s *treff.Server) {
		s.Storage = c.store
		s.Authenticator = c.auth
		s.Modules = im.Modules()
		s.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
		if c.setup != nil {
			c.setup(i, s)
		}
		if err := tn.node.Join(s); err != nil {
			t.Fatal(err)
		}
		if c.modules != nil {
			s.Modules = append(s.Modules, c.modules(i, tn.node)...)
		}
	})
	c.nodes = append(c.nodes, tn)
	return tn
}

func (c *testCluster) addUser(t testing.TB, local string) {
	t.Helper()
	if err := c.auth.CreateUser(context.Background(), local+"@localhost", "pw-"+local); err != nil {
		t.Fatal(err)
	}
}

func (c *testCluster) login(t testing.TB, i int, local, res string) *trefftest.Client {
	t.Helper()
	cl := c.nodes[i].Dial(t, c.nodes[i].Addr)
	cl.Login(local+"@localhost", "pw-"+local, res)
	return cl
}

// routeAddr returns a free loopback address for a route listener, on a
// port below the kernel's ephemeral range: the NATS servers' random
// client ports and their outgoing connections take ports from that
// range, and one of them could take a route port picked there before
// its node started (a server then fails to start).
func routeAddr(t testing.TB) string {
	t.Helper()
	for range 100 {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", 20000+mrand.IntN(12000)))
		if err != nil {
			continue // taken
		}
		a := l.Addr().String()
		l.Close()
		return a
	}
	t.Fatal("no free route port")
	return ""
}

// waitFor polls cond (rows travel through NATS and announce themselves
// to no one in the test) for at most 10 s.
func waitFor(t testing.TB, what string, cond func() bool) { waitForTB(t, what, cond) }

func waitForTB(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for range 1000 {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// waitSeen waits until every node sees full bound, available with the
// given priority (or, with prio < -128, just bound).
func (c *testCluster) waitSeen(t *testing.T, full string, prio int) {
	t.Helper()
	j := jid.MustParse(full)
	waitFor(t, full+" on every node", func() bool {
		for _, n := range c.nodes {
			s := n.Session(j)
			if s == nil || prio >= -128 && (!s.Available() || s.Priority() != prio) {
				return false
			}
		}
		return true
	})
}

func (c *testCluster) waitGone(t *testing.T, full string, nodes ...int) {
	t.Helper()
	j := jid.MustParse(full)
	waitFor(t, full+" gone", func() bool {
		for _, i := range nodes {
			if c.nodes[i].Session(j) != nil {
				return false
			}
		}
		return true
	})
}

func TestChatAcrossNodes(t *testing.T) {
	c := newCluster(t, 2)
	c.addUser(t, "alice")
	c.addUser(t, "bob")
	alice := c.login(t, 0, "alice", "phone")
	bob := c.login(t, 1, "bob", "pc")
	alice.Send("<presence/>")
	bob.Send("<presence/>")
	c.waitSeen(t, "alice@localhost/phone", 0)
	c.waitSeen(t, "bob@localhost/pc", 0)

	if !c.nodes[1].Session(jid.MustParse("alice@localhost/phone")).Remote() {
		t.Error("alice's session on node 1 is not remote")
	}
	bob.Send("<message to='alice@localhost/phone' type='chat' id='m1'><body>to full</body></message>")
	got := alice.Expect(`<message[^>]*>.*?to full.*?</message>`)
	if !strings.Contains(got, "from='bob@localhost/pc'") {
		t.Errorf("alice got %q, want it from bob@localhost/pc", got)
	}
	bob.Send("<message to='alice@localhost' type='chat' id='m2'><body>to bare</body></message>")
	alice.Expect(`to bare`)
	alice.Send("<message to='bob@localhost' type='chat' id='m3'><body>reply</body></message>")
	bob.Expect(`reply`)
}

// TestBarePriorityAcrossNodes: a chat message to a bare JID reaches the
// available resource of highest priority, whichever node it is on
// (RFC 6121 8.5.2.1.1), and follows a priority change on another node.
func TestBarePriorityAcrossNodes(t *testing.T) {
	c := newCluster(t, 3)
	c.addUser(t, "alice")
	c.addUser(t, "bob")
	high := c.login(t, 0, "alice", "high")
	low := c.login(t, 1, "alice", "low")
	bob := c.login(t, 2, "bob", "pc")
	high.Send("<presence><priority>5</priority></presence>")
	low.Send("<presence><priority>1</priority></presence>")
	c.waitSeen(t, "alice@localhost/high", 5)
	c.waitSeen(t, "alice@localhost/low", 1)

	bob.Send("<message to='alice@localhost' type='chat' id='m1'><body>first</body></message>")
	high.Expect(`first`)
	bob.Sync()
	if got := low.Sync(); strings.Contains(got, "first") {
		t.Errorf("the lower-priority resource got the message: %q", got)
	}

	low.Send("<presence><priority>10</priority></presence>")
	c.waitSeen(t, "alice@localhost/low", 10)
	bob.Send("<message to='alice@localhost' type='chat' id='m2'><body>second</body></message>")
	low.Expect(`second`)
	bob.Sync()
	if got := high.Sync(); strings.Contains(got, "second") {
		t.Errorf("the now lower-priority resource got the message: %q", got)
	}
	// Negative priority on both: undeliverable, so offline storage.
	high.Send("<presence><priority>-1</priority></presence>")
	low.Send("<presence><priority>-1</priority></presence>")
	c.waitSeen(t, "alice@localhost/high", -1)
	c.waitSeen(t, "alice@localhost/low", -1)
	bob.Send("<message to='alice@localhost' type='chat' id='m3'><body>third</body></message>")
	bob.Sync()
	waitFor(t, "the message stored offline", func() bool {
		msgs, err := c.store.OfflineMessages(context.Background(), "alice@localhost")
		return err == nil && len(msgs) == 1
	})
}

// TestPresenceAcrossNodes: broadcast presence reaches contacts and the
// user's own resources on other nodes, and probes are answered with the
// presence of sessions on other nodes (RFC 6121 4.2-4.4).
func TestPresenceAcrossNodes(t *testing.T) {
	c := newCluster(t, 3)
	c.addUser(t, "alice")
	c.addUser(t, "bob")
	ctx := context.Background()
	c.store.PutRosterItem(ctx, "alice@localhost", storage.RosterItem{JID: "bob@localhost", Subscription: storage.SubBoth})
	c.store.PutRosterItem(ctx, "bob@localhost", storage.RosterItem{JID: "alice@localhost", Subscription: storage.SubBoth})

	alice := c.login(t, 0, "alice", "phone")
	alice.Send("<presence><show>dnd</show><status>on node 0</status></presence>")
	c.waitSeen(t, "alice@localhost/phone", 0)

	// bob's initial presence on node 1 probes alice: node 1 answers
	// with her presence as node 0 announced it.
	bob := c.login(t, 1, "bob", "pc")
	bob.Send("<presence/>")
	got := bob.Expect(`<presence[^>]*from='alice@localhost/phone'[^>]*>.*?</presence>`)
	if !strings.Contains(got, "on node 0") {
		t.Errorf("bob got %q, want alice's status", got)
	}
	// ... and alice hears of bob through his broadcast.
	alice.Expect(`<presence[^>]*from='bob@localhost/pc'`)

	// alice's second resource on node 2 learns of her first.
	tablet := c.login(t, 2, "alice", "tablet")
	tablet.Send("<presence/>")
	got = tablet.Expect(`<presence[^>]*from='alice@localhost/phone'[^>]*>.*?</presence>`)
	if !strings.Contains(got, "dnd") {
		t.Errorf("tablet got %q, want phone's dnd", got)
	}
	alice.Expect(`<presence[^>]*from='alice@localhost/tablet'`)
	bob.Expect(`<presence[^>]*from='alice@localhost/tablet'`)

	// Logging out on node 0 is seen on node 1.
	alice.Send("<presence type='unavailable'/>")
	bob.Expect(`<presence[^>]*from='alice@localhost/phone'[^>]*type='unavailable'`)
}

// TestConflictAcrossNodes: binding a resource that is bound on another
// node closes the older session with <conflict/> (RFC 6120 7.7.2.2).
func TestConflictAcrossNodes(t *testing.T) {
	c := newCluster(t, 3)
	c.addUser(t, "alice")
	c.addUser(t, "bob")
	first := c.login(t, 0, "alice", "dup")
	first.Send("<presence/>")
	c.waitSeen(t, "alice@localhost/dup", 0)
	second := c.login(t, 1, "alice", "dup")
	first.Expect(`<conflict`)
	first.ExpectClosed()
	second.Send("<presence><priority>3</priority></presence>")
	c.waitSeen(t, "alice@localhost/dup", 3)
	for _, n := range c.nodes {
		if s := n.Session(jid.MustParse("alice@localhost/dup")); n != c.nodes[1] && !s.Remote() {
			t.Errorf("node %s: the session is local", n.node.Name)
		}
	}
	bob := c.login(t, 2, "bob", "pc")
	bob.Send("<message to='alice@localhost/dup' type='chat'><body>to the new one</body></message>")
	second.Expect(`to the new one`)
}

// TestCarbonsAcrossNodes: a message delivered to one resource is copied
// to the account's other resources with carbons enabled, on any node
// (XEP-0280).
func TestCarbonsAcrossNodes(t *testing.T) {
	c := newCluster(t, 3)
	c.addUser(t, "alice")
	c.addUser(t, "bob")
	a := c.login(t, 0, "alice", "a")
	b := c.login(t, 1, "alice", "b")
	for _, cl := range []*trefftest.Client{a, b} {
		cl.Send("<iq type='set' id='cc'><enable xmlns='urn:xmpp:carbons:2'/></iq>")
		cl.Expect(`<iq[^>]*id='cc'[^>]*type='result'|<iq[^>]*type='result'[^>]*id='cc'`)
		cl.Send("<presence/>")
	}
	c.waitSeen(t, "alice@localhost/a", 0)
	c.waitSeen(t, "alice@localhost/b", 0)
	waitFor(t, "carbons announced", func() bool {
		return c.nodes[0].Session(jid.MustParse("alice@localhost/b")).Shared("urn:xmpp:carbons:2") == "on" &&
			c.nodes[1].Session(jid.MustParse("alice@localhost/a")).Shared("urn:xmpp:carbons:2") == "on"
	})
	bob := c.login(t, 2, "bob", "pc")
	bob.Send("<message to='alice@localhost/b' type='chat'><body>for b</body></message>")
	b.Expect(`for b`)
	got := a.Expect(`<received xmlns='urn:xmpp:carbons:2'>.*?</received>`)
	if !strings.Contains(got, "for b") {
		t.Errorf("a's carbon: %q", got)
	}
	// a sends: b gets a <sent/> copy across nodes.
	a.Send("<message to='bob@localhost/pc' type='chat'><body>from a</body></message>")
	bob.Expect(`from a`)
	got = b.Expect(`<sent xmlns='urn:xmpp:carbons:2'>.*?</sent>`)
	if !strings.Contains(got, "from a") {
		t.Errorf("b's carbon: %q", got)
	}
}

// TestNodeLeaves: a node that stops takes its sessions out of every
// table; messages to its users then go to offline storage.
func TestNodeLeaves(t *testing.T) {
	c := newCluster(t, 3)
	c.addUser(t, "alice")
	c.addUser(t, "bob")
	alice := c.login(t, 1, "alice", "phone")
	alice.Send("<presence/>")
	c.waitSeen(t, "alice@localhost/phone", 0)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.nodes[1].Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	c.nodes[1].node.Leave()
	c.waitGone(t, "alice@localhost/phone", 0, 2)
	bob := c.login(t, 0, "bob", "pc")
	bob.Send("<message to='alice@localhost' type='chat'><body>while away</body></message>")
	bob.Sync()
	waitFor(t, "the message stored offline", func() bool {
		msgs, err := c.store.OfflineMessages(context.Background(), "alice@localhost")
		return err == nil && len(msgs) == 1
	})
	// She comes back on another node and gets it.
	again := c.login(t, 2, "alice", "phone")
	again.Send("<presence/>")
	again.Expect(`while away`)
}

// TestNodeSilent: a node whose NATS connection dies without a goodbye is
// dropped by the others after DeadAfter; its users' contacts there get
// their unavailable presence, and messages to them go offline.
func TestNodeSilent(t *testing.T) {
	c := newCluster(t, 3)
	c.addUser(t, "alice")
	c.addUser(t, "bob")
	ctx := context.Background()
	c.store.PutRosterItem(ctx, "alice@localhost", storage.RosterItem{JID: "bob@localhost", Subscription: storage.SubBoth})
	c.store.PutRosterItem(ctx, "bob@localhost", storage.RosterItem{JID: "alice@localhost", Subscription: storage.SubBoth})
	bob := c.login(t, 0, "bob", "pc")
	bob.Send("<presence/>")
	c.waitSeen(t, "bob@localhost/pc", 0)
	alice := c.login(t, 2, "alice", "phone")
	alice.Send("<presence/>")
	bob.Expect(`<presence[^>]*from='alice@localhost/phone'`)
	c.waitSeen(t, "alice@localhost/phone", 0)
	start := time.Now()
	c.nodes[2].ns.Shutdown() // node 2's NATS goes away; node 2 does not know
	c.waitGone(t, "alice@localhost/phone", 0, 1)
	if d := time.Since(start); d > testDeadAfter+3*time.Second {
		t.Errorf("dropped after %v, want about DeadAfter (%v)", d, testDeadAfter)
	}
	bob.Expect(`<presence[^>]*from='alice@localhost/phone'[^>]*type='unavailable'`)
	bob.Send("<message to='alice@localhost/phone' type='chat'><body>lost node</body></message>")
	bob.Sync()
	waitFor(t, "the message stored offline", func() bool {
		msgs, err := c.store.OfflineMessages(context.Background(), "alice@localhost")
		return err == nil && len(msgs) == 1
	})
	// Node 2 dropped the others too: bob is not in its table any more.
	c.waitGone(t, "bob@localhost/pc", 2)
}

// remoteRecorder stands in for the server-to-server module: it keeps
// every stanza routed to another domain.
type remoteRecorder struct {
	mu  sync.Mutex
	got []string
}

func (r *remoteRecorder) Name() string { return "remote-recorder" }

func (r *remoteRecorder) Setup(ctx context.Context, reg *treff.Registry) error {
	reg.HandleRemote(treff.StanzaHandlerFunc(func(ctx context.Context, st *treff.Stanza) {
		r.mu.Lock()
		r.got = append(r.got, string(st.Raw()))
		r.mu.Unlock()
	}))
	return nil
}

// unavailableTo returns the unavailable presences from from that r got,
// by their 'to'.
func (r *remoteRecorder) unavailableFrom(from string) map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]int{}
	for _, raw := range r.got {
		st, err := treff.NewStanza([]byte(raw))
		if err == nil && st.Kind == treff.KindPresence && st.Type == "unavailable" && st.From.String() == from {
			out[st.To.String()]++
		}
	}
	return out
}

// TestNodeSilentDirected: when a node dies, the surviving node with the
// smallest name sends its sessions' unavailable presence to other
// servers on their behalf: to their contacts there (subscription both)
// and to the JIDs they sent directed presence to (RFC 6121 4.6), which
// their node published with their rows; a local user who got directed
// presence (no subscription) hears of it from his own node. The other
// survivor sends nothing to other servers.
func TestNodeSilentDirected(t *testing.T) {
	recs := make([]*remoteRecorder, 3)
	c := newClusterWith(t, 3, func(i int, s *treff.Server) {
		recs[i] = &remoteRecorder{}
		s.Modules = append(s.Modules, recs[i])
	})
	c.addUser(t, "alice")
	c.addUser(t, "dave")
	ctx := context.Background()
	c.store.PutRosterItem(ctx, "alice@localhost", storage.RosterItem{JID: "erin@remote.test", Subscription: storage.SubBoth})
	dave := c.login(t, 1, "dave", "pc")
	dave.Send("<presence/>")
	c.waitSeen(t, "dave@localhost/pc", 0)
	alice := c.login(t, 2, "alice", "phone")
	alice.Send("<presence/>")
	alice.Send("<presence to='dave@localhost/pc'><status>directed</status></presence>")
	alice.Send("<presence to='carol@remote.test/x'/>")
	alice.Send("<presence to='frank@remote.test/y'/>")
	alice.Send("<presence to='frank@remote.test/y' type='unavailable'/>")
	dave.Expect(`<presence[^>]*from='alice@localhost/phone'[^>]*>.*directed`)
	alice.Sync()
	want := "carol@remote.test/x\ndave@localhost/pc"
	waitFor(t, "alice's directed presence published", func() bool {
		s := c.nodes[0].Session(jid.MustParse("alice@localhost/phone"))
		return s != nil && s.Shared(treff.SharedDirected) == want
	})
	c.nodes[2].ns.Shutdown()
	c.waitGone(t, "alice@localhost/phone", 0, 1)
	dave.Expect(`<presence[^>]*from='alice@localhost/phone'[^>]*type='unavailable'`)
	waitFor(t, "node 0's announcement to the other server", func() bool {
		got := recs[0].unavailableFrom("alice@localhost/phone")
		return got["erin@remote.test"] == 1 && got["carol@remote.test/x"] == 1
	})
	if got := recs[0].unavailableFrom("alice@localhost/phone"); len(got) != 2 {
		t.Errorf("node 0 sent unavailable presence to %v, want erin and carol only", got)
	}
	// Node 1 told dave (above) after it had passed over the remote
	// targets, which it leaves to node 0.
	if got := recs[1].unavailableFrom("alice@localhost/phone"); len(got) != 0 {
		t.Errorf("node 1 sent unavailable presence to %v, want none (node 0 announces)", got)
	}
}

// TestPushesAcrossNodes: roster pushes (RFC 6121 2.1.6) and block list
// pushes (XEP-0191) reach the account's resources on other nodes that
// asked for the roster and the block list.
func TestPushesAcrossNodes(t *testing.T) {
	c := newCluster(t, 2)
	c.addUser(t, "alice")
	a := c.login(t, 0, "alice", "a")
	b := c.login(t, 1, "alice", "b")
	b.Send("<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>")
	b.Expect(`id='r1'`)
	b.Send("<iq type='get' id='b1'><blocklist xmlns='urn:xmpp:blocking'/></iq>")
	b.Expect(`id='b1'`)
	bj := jid.MustParse("alice@localhost/b")
	waitFor(t, "b's interest announced", func() bool {
		s := c.nodes[0].Session(bj)
		return s != nil && s.Shared("jabber:iq:roster") != "" && s.Shared("urn:xmpp:blocking") != ""
	})
	a.Send("<iq type='set' id='r2'><query xmlns='jabber:iq:roster'><item jid='carol@localhost' name='Carol'/></query></iq>")
	b.Expect(`<iq[^>]*type='set'[^>]*>.*?<item[^>]*jid='carol@localhost'`)
	a.Send("<iq type='set' id='b2'><block xmlns='urn:xmpp:blocking'><item jid='spam@example.net'/></block></iq>")
	b.Expect(`<block xmlns='urn:xmpp:blocking'><item jid='spam@example.net'`)
}

// TestDeliverFallback: a stanza forwarded to a session that has gone
// meanwhile goes to the account's other local session, or to offline
// storage; anything but a chat or normal message is dropped.
func TestDeliverFallback(t *testing.T) {
	c := newCluster(t, 1)
	c.addUser(t, "alice")
	n := c.nodes[0]
	other := c.login(t, 0, "alice", "other")
	other.Send("<presence/>")
	other.Sync()
	ctx := context.Background()
	gone := jid.MustParse("alice@localhost/gone")
	msg := []byte("<message from='bob@localhost/pc' to='alice@localhost/gone' type='chat'><body>late</body></message>")
	if err := n.Deliver(ctx, gone, msg); err != nil {
		t.Fatal(err)
	}
	other.Expect(`late`)
	if err := n.Deliver(ctx, gone, []byte("<iq from='bob@localhost/pc' to='alice@localhost/gone' type='get' id='q'><ping xmlns='urn:xmpp:ping'/></iq>")); err != treff.ErrNoSession {
		t.Errorf("an IQ for a gone session: %v, want ErrNoSession", err)
	}
	other.Send("<presence type='unavailable'/>")
	other.Sync()
	if err := n.Deliver(ctx, gone, msg); err != nil {
		t.Fatal(err)
	}
	msgs, err := c.store.OfflineMessages(ctx, "alice@localhost")
	if err != nil || len(msgs) != 1 {
		t.Fatalf("offline: %d messages, %v; want 1", len(msgs), err)
	}
}

// TestDeleteAccountAcrossNodes: deleting an account on one node closes
// its sessions on the others (Server.CloseUser asks their nodes), and
// DeleteAccount returns once they are gone.
func TestDeleteAccountAcrossNodes(t *testing.T) {
	c := newCluster(t, 2)
	c.addUser(t, "alice")
	alice := c.login(t, 1, "alice", "phone")
	alice.Send("<presence/>")
	c.waitSeen(t, "alice@localhost/phone", 0)
	if err := c.nodes[0].DeleteAccount(context.Background(), jid.MustParse("alice@localhost"), "account deleted"); err != nil {
		t.Fatal(err)
	}
	alice.Expect(`<not-authorized`)
	alice.ExpectClosed()
	c.waitGone(t, "alice@localhost/phone", 0, 1)
}

// TestPresenceCrossed: two contacts send initial presence on different
// nodes while neither node has heard of the other's session becoming
// available (both inboxes paused): each broadcast and each probe misses
// the other. Once the row updates arrive, the nodes repair it: both get
// each other's presence.
func TestPresenceCrossed(t *testing.T) {
	c := newCluster(t, 2)
	c.addUser(t, "alice")
	c.addUser(t, "bob")
	ctx := context.Background()
	c.store.PutRosterItem(ctx, "alice@localhost", storage.RosterItem{JID: "bob@localhost", Subscription: storage.SubBoth})
	c.store.PutRosterItem(ctx, "bob@localhost", storage.RosterItem{JID: "alice@localhost", Subscription: storage.SubBoth})
	alice := c.login(t, 0, "alice", "phone")
	bob := c.login(t, 1, "bob", "pc")
	c.waitSeen(t, "alice@localhost/phone", -1000)
	c.waitSeen(t, "bob@localhost/pc", -1000)
	for _, n := range c.nodes {
		n.node.pause.Lock()
	}
	alice.Send("<presence><status>alice here</status></presence>")
	bob.Send("<presence><status>bob here</status></presence>")
	if got := alice.Sync(); strings.Contains(got, "bob here") {
		t.Fatalf("presence crossed before the rows did: %q", got)
	}
	if got := bob.Sync(); strings.Contains(got, "alice here") {
		t.Fatalf("presence crossed before the rows did: %q", got)
	}
	for _, n := range c.nodes {
		n.node.pause.Unlock()
	}
	alice.Expect(`<presence[^>]*from='bob@localhost/pc'[^>]*>.*?bob here`)
	bob.Expect(`<presence[^>]*from='alice@localhost/phone'[^>]*>.*?alice here`)
}

// TestJoinLater: a node that joins a running cluster gets the other
// nodes' sessions from their snapshots, and routes to them.
func TestJoinLater(t *testing.T) {
	c := newCluster(t, 2)
	c.addUser(t, "alice")
	c.addUser(t, "bob")
	alice := c.login(t, 0, "alice", "phone")
	alice.Send("<presence><priority>3</priority></presence>")
	c.waitSeen(t, "alice@localhost/phone", 3)
	late := c.addNode(t, 2)
	waitFor(t, "the late node to hear the others", func() bool { return len(late.node.Nodes()) == 2 })
	c.waitSeen(t, "alice@localhost/phone", 3)
	bob := c.login(t, 2, "bob", "pc")
	bob.Send("<message to='alice@localhost' type='chat'><body>from the new node</body></message>")
	alice.Expect(`from the new node`)
}

// TestResumeOnOtherNode: a client with stream management loses its
// connection to node 0 and comes back through node 1 (where its session
// cannot be resumed: it lives in node 0's memory). It binds the same
// resource anew; node 0 ends the waiting session (the conflict rule),
// and the message the client had not acknowledged reaches it on node 1.
func TestResumeOnOtherNode(t *testing.T) {
	c := newCluster(t, 2)
	c.addUser(t, "alice")
	c.addUser(t, "bob")
	alice := c.login(t, 0, "alice", "phone")
	alice.Send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
	m := alice.Expect(`<enabled xmlns='urn:xmpp:sm:3' id='[^']+'`)
	id := m[strings.Index(m, "id='")+4 : len(m)-1]
	alice.Send("<presence/>")
	c.waitSeen(t, "alice@localhost/phone", 0)
	bob := c.login(t, 1, "bob", "pc")
	bob.Send("<message to='alice@localhost/phone' type='chat'><body>not acknowledged</body></message>")
	alice.Expect(`not acknowledged`)
	alice.Conn().Close() // no <a/>: the message is not acknowledged
	c.nodes[0].WaitHibernating(t, "alice@localhost/phone")

	again := c.nodes[1].Dial(t, c.nodes[1].Addr)
	again.Authenticate("alice@localhost", "pw-alice")
	again.Send("<resume xmlns='urn:xmpp:sm:3' previd='" + id + "' h='0'/>")
	again.Expect(`<failed xmlns='urn:xmpp:sm:3'`)
	again.Send("<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>phone</resource></bind></iq>")
	again.Expect(`<jid>alice@localhost/phone</jid>`)
	again.Send("<presence/>")
	again.Expect(`not acknowledged`)
	waitFor(t, "node 0 to route to the new session", func() bool {
		s := c.nodes[0].Session(jid.MustParse("alice@localhost/phone"))
		return s != nil && s.Remote()
	})
}

// TestManyAcrossNodes: six users on three nodes each send 20 chat
// messages to every other user's bare JID at once; every message arrives,
// in order per sender (one node publishes, one node hands over).
func TestManyAcrossNodes(t *testing.T) {
	const users, each = 6, 20
	c := newCluster(t, 3)
	var cls []*trefftest.Client
	for i := range users {
		name := fmt.Sprintf("u%d", i)
		c.addUser(t, name)
		cl := c.login(t, i%3, name, "r")
		cl.Send("<presence/>")
		cls = append(cls, cl)
	}
	for i := range users {
		c.waitSeen(t, fmt.Sprintf("u%d@localhost/r", i), 0)
	}
	done := make(chan struct{})
	for i, cl := range cls {
		go func() {
			defer func() { done <- struct{}{} }()
			var b strings.Builder
			for k := range each {
				for j := range users {
					if j != i {
						fmt.Fprintf(&b, "<message to='u%d@localhost' type='chat'><body>m%d from u%d</body></message>", j, k, i)
					}
				}
			}
			cl.Write([]byte(b.String()))
		}()
	}
	for range cls {
		<-done
	}
	for i, cl := range cls {
		var got strings.Builder
		for range (users - 1) * each {
			got.WriteString(cl.Expect(`<body>m\d+ from u\d+</body>`))
		}
		got.WriteString(cl.Sync())
		all := got.String()
		for j := range users {
			if j == i {
				continue
			}
			last := -1
			for k := range each {
				idx := strings.Index(all, fmt.Sprintf(">m%d from u%d<", k, j))
				if idx < 0 {
					t.Fatalf("u%d did not get m%d from u%d", i, k, j)
				}
				if idx < last {
					t.Errorf("u%d got m%d from u%d out of order", i, k, j)
				}
				last = idx
			}
		}
	}
}

// TestEmbeddedSecret: embedded NATS servers with a route secret form a
// cluster only with servers that share it.
func TestEmbeddedSecret(t *testing.T) {
	a, b, x := routeAddr(t), routeAddr(t), routeAddr(t)
	start := func(name, listen, secret string, peers ...string) (*server.Server, *nats.Conn) {
		ns, nc, err := Embedded{Name: name, Listen: listen, Peers: peers, Secret: secret}.Start()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close(); ns.Shutdown() })
		return ns, nc
	}
	nx, cx := start("x", x, "wrong", a, b, x)
	na, ca := start("a", a, "s3cret", a, b, x)
	_, cb := start("b", b, "s3cret", a, b, x)
	got := make(chan string, 1)
	sub, err := cb.Subscribe("t", func(m *nats.Msg) {
		select {
		case got <- string(m.Data):
		default:
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	cb.Flush()
	// a publishes until b has it: the route is up.
	waitFor(t, "b to get a's message", func() bool {
		ca.Publish("t", []byte("from a"))
		ca.Flush()
		select {
		case <-got:
			return true
		case <-time.After(20 * time.Millisecond):
			return false
		}
	})
	// a and b dialled x, and x them, with different secrets: no route
	// between them came up (a has its pooled routes to b only). A
	// negative check: it holds at this moment; a route that came up
	// later would show in TestChatAcrossNodes-style traffic, not here.
	if n := nx.NumRoutes(); n != 0 {
		t.Errorf("x has %d routes, want 0", n)
	}
	if n := na.NumRoutes(); n == 0 {
		t.Error("a has no routes")
	}
	cx.Close()
}
