package cluster

import (
	"bytes"
	"context"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/adhoc"
	"github.com/treff-im/treff/admin"
	"github.com/treff-im/treff/authlimit"
	"github.com/treff-im/treff/register"
	"github.com/treff-im/treff/trefftest"
)

// The modules' interfaces, met by Node without either importing the
// other.
var (
	_ register.Sharer  = (*Node)(nil)
	_ authlimit.Sharer = (*Node)(nil)
)

// TestShare: an event one node publishes on a topic reaches the other
// nodes' receivers of that topic, in order, and not its own; HashKey
// is the same on every node (the key comes from the shared store) and
// does not contain what it hashes.
func TestShare(t *testing.T) {
	c := newCluster(t, 3)
	type ev struct {
		node int
		data string
	}
	got := make(chan ev, 1024)
	var pubs []func([]byte)
	for i, n := range c.nodes {
		pub, err := n.node.Share("test", func(b []byte) { got <- ev{i, string(b)} }, nil)
		if err != nil {
			t.Fatal(err)
		}
		pubs = append(pubs, pub)
	}
	if _, err := c.nodes[0].node.Share("test", func([]byte) {}, nil); err == nil {
		t.Error("a topic shared twice was accepted")
	}
	if _, err := c.nodes[0].node.Share("a.b", func([]byte) {}, nil); err == nil {
		t.Error("a topic with a dot was accepted")
	}
	// The subscriptions reach the other NATS servers through their
	// routes a moment later: until both others have a "ready", ask again.
	ready := map[int]bool{}
	for try := 0; len(ready) < 2; try++ {
		if try == 200 {
			t.Fatal("the other nodes did not get the topic's events")
		}
		pubs[0]([]byte("ready"))
		select {
		case e := <-got:
			ready[e.node] = true
		case <-time.After(50 * time.Millisecond):
		}
	}
	pubs[0]([]byte("one"))
	pubs[0]([]byte("two"))
	seen := map[int][]string{}
	for n := 0; n < 4; {
		select {
		case e := <-got:
			if e.data != "ready" { // late ones of a try that timed out
				seen[e.node] = append(seen[e.node], e.data)
				n++
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("events seen: %v, want one and two on nodes 1 and 2", seen)
		}
	}
	for i := 1; i < 3; i++ {
		if len(seen[i]) != 2 || seen[i][0] != "one" || seen[i][1] != "two" {
			t.Errorf("node %d got %q, want [one two]", i, seen[i])
		}
	}
	if len(seen[0]) != 0 {
		t.Errorf("the publishing node got its own events: %q", seen[0])
	}

	h := c.nodes[0].node.HashKey("127.0.0.1")
	for _, n := range c.nodes[1:] {
		if n.node.HashKey("127.0.0.1") != h {
			t.Error("HashKey differs between nodes")
		}
	}
	if h == c.nodes[0].node.HashKey("127.0.0.2") || bytes.Contains([]byte(h), []byte("127")) || len(h) != 22 {
		t.Errorf("HashKey(127.0.0.1) = %q", h)
	}
}

// TestLimitsAcrossNodes: with register.Module and authlimit.Module
// sharing their counts through the nodes (Shared), registrations from
// one address on node 0 use up the per-address limit on node 1 too, and
// failed logins on node 0 lock the address on node 1. Each time a chat
// message from node 0 to a user on node 1, published after the counts,
// makes sure node 1 has applied them (one ordered inbox). A node that
// starts afterwards gets the counts from the others (their state) and
// refuses both too.
func TestLimitsAcrossNodes(t *testing.T) {
	var mu sync.Mutex
	guards := map[int]*authlimit.Module{}
	c := startCluster(t, 2, &testCluster{modules: func(i int, n *Node) []treff.Module {
		g := &authlimit.Module{PerAddress: authlimit.Rate{N: 2, Period: time.Hour}, Delay: -1, Shared: n}
		mu.Lock()
		guards[i] = g
		mu.Unlock()
		return []treff.Module{
			&register.Module{Policy: register.Open, PerAddress: register.Limit{N: 2, Period: time.Hour}, Shared: n},
			g,
		}
	}})
	c.addUser(t, "alice")
	c.addUser(t, "bob")
	alice := c.login(t, 1, "alice", "pc")
	bob := c.login(t, 0, "bob", "phone")
	c.waitSeen(t, "alice@localhost/pc", -200)
	synced := func(body string) {
		t.Helper()
		bob.Send("<message to='alice@localhost/pc' type='chat'><body>" + body + "</body></message>")
		alice.Expect(body)
	}
	preAuth := func(i int) *trefftest.Client {
		cl := c.nodes[i].Dial(t, c.nodes[i].Addr)
		cl.StartTLS()
		cl.Send(trefftest.Header("localhost"))
		cl.Expect(`</stream:features>`)
		return cl
	}
	reg := func(user string) string {
		return "<iq type='set' id='r'><query xmlns='jabber:iq:register'><username>" + user +
			"</username><password>long enough</password></query></iq>"
	}

	r0 := preAuth(0)
	for _, u := range []string{"u1", "u2"} {
		r0.Send(reg(u))
		r0.Expect(`<iq type='result' id='r'`)
	}
	synced("after two registrations")
	r1 := preAuth(1)
	r1.Send(reg("u3"))
	r1.Expect(`<error type='wait'><resource-constraint xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><text[^>]*>too many registrations; try again later</text>`)

	f0 := preAuth(0)
	for range 2 {
		f0.Send(trefftest.PlainAuth("u1", "wrong"))
		f0.Expect(`<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>`)
	}
	synced("after two failures")
	f1 := preAuth(1)
	f1.Send(trefftest.PlainAuth("u1", "long enough"))
	f1.Expect(`<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><temporary-auth-failure/><text xml:lang='en'>Too many failed logins from your address; try again in 30 minutes.</text></failure>`)

	// Node 2 starts now: it asks the others for their counts. Node 0
	// answers the register module's request before the authlimit
	// module's (set up in that order), and both answers come through
	// node 2's ordered inbox: once the failures are there, so are the
	// registrations.
	c.addNode(t, 2)
	mu.Lock()
	g2 := guards[2]
	mu.Unlock()
	local := treff.LoginAttempt{Addr: netip.MustParseAddr("127.0.0.1"), Mechanism: "PLAIN"}
	waitFor(t, "node 2 to get the failures", func() bool { return g2.Start(context.Background(), local) != nil })
	r2 := preAuth(2)
	r2.Send(reg("u4"))
	r2.Expect(`<error type='wait'><resource-constraint xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>`)
	r2.Send(trefftest.PlainAuth("u1", "long enough"))
	r2.Expect(`<temporary-auth-failure/>`)
}

// TestAdminAcrossNodes: Server.AllSessions on a node lists the other
// nodes' sessions too (OnlineSessions this node's only), so the admin
// commands (XEP-0133) see the whole cluster: an admin on node 0 counts
// and lists alice, who is on node 1, and his announcement reaches her
// there.
func TestAdminAcrossNodes(t *testing.T) {
	c := startCluster(t, 2, &testCluster{modules: func(i int, n *Node) []treff.Module {
		ah := &adhoc.Module{}
		return []treff.Module{ah, &admin.Module{AdHoc: ah, Admins: []string{"boss@localhost"}}}
	}})
	c.addUser(t, "alice")
	c.addUser(t, "boss")
	alice := c.login(t, 1, "alice", "pc")
	alice.Send("<presence/>")
	boss := c.login(t, 0, "boss", "desk")
	c.waitSeen(t, "alice@localhost/pc", 0)
	c.waitSeen(t, "boss@localhost/desk", -200)

	srv := c.nodes[0].Server.Server
	if got := len(srv.OnlineSessions()); got != 1 {
		t.Errorf("node 0's OnlineSessions: %d, want 1 (boss)", got)
	}
	all := map[string]bool{}
	for _, s := range srv.AllSessions() {
		all[s.JID().String()] = s.Remote()
	}
	if len(all) != 2 || all["boss@localhost/desk"] || !all["alice@localhost/pc"] {
		t.Errorf("node 0's AllSessions (JID: remote): %v, want boss here and alice remote", all)
	}

	cmd := func(node string) string {
		boss.Send("<iq type='set' id='c' to='localhost'><command xmlns='http://jabber.org/protocol/commands' node='" + node + "' action='execute'/></iq>")
		return boss.Expect(`<iq type='(result|error)' id='c'.*?</iq>`)
	}
	if got := cmd(admin.NodeOnlineList); !strings.Contains(got, "<value>alice@localhost</value><value>boss@localhost</value></field>") {
		t.Errorf("online users list on node 0: %s", got)
	}
	if got := cmd(admin.NodeOnlineNum); !strings.Contains(got, "<value>2</value>") {
		t.Errorf("online users number on node 0: %s", got)
	}
	if n := admin.Announce(srv, "localhost", "Maintenance", "down at ten"); n != 2 {
		t.Errorf("Announce reached %d sessions, want 2", n)
	}
	got := alice.Expect(`<message type='headline' from='localhost'[^>]*>.*?</message>`)
	if !strings.Contains(got, "<subject>Maintenance</subject><body>down at ten</body>") {
		t.Errorf("alice on node 1 got %s", got)
	}
}
