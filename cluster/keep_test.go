package cluster

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/treff-im/treff"
)

// TestKeepInFlightAcrossNodes: with Server.KeepInFlight a message for a
// session on another node is acknowledged to its sender only once that
// node has kept it; when the node dies before the client acknowledged
// it, the account's next login on a surviving node gets it from offline
// storage. A message to the dead node's session before the others
// noticed is taken to offline storage at once (no one answers for it).
func TestKeepInFlightAcrossNodes(t *testing.T) {
	c := newClusterWith(t, 2, func(_ int, s *treff.Server) { s.KeepInFlight = true })
	c.addUser(t, "alice")
	c.addUser(t, "bob")
	ctx := context.Background()
	offline := func() int {
		t.Helper()
		n, err := c.store.CountOffline(ctx, "alice@localhost")
		if err != nil {
			t.Fatal(err)
		}
		return n
	}

	phone := c.login(t, 1, "alice", "phone")
	phone.Send("<presence/>")
	phone.Expect(`<presence[^>]*from='alice@localhost/phone'`)
	// Enabled after its own presence came back: the first stanza it
	// counts is m1.
	phone.Send("<enable xmlns='urn:xmpp:sm:3'/>")
	phone.Expect(`<enabled xmlns='urn:xmpp:sm:3'/>`)
	c.waitSeen(t, "alice@localhost/phone", 0)
	bob := c.login(t, 0, "bob", "pc")
	bob.Send("<enable xmlns='urn:xmpp:sm:3'/>")
	bob.Expect(`<enabled xmlns='urn:xmpp:sm:3'/>`)

	bob.Send("<message to='alice@localhost/phone' id='m1' type='chat'><body>acknowledged</body></message>")
	bob.Send("<r xmlns='urn:xmpp:sm:3'/>")
	bob.Expect(`<a xmlns='urn:xmpp:sm:3' h='1'/>`)
	// bob's acknowledgement came after node 1 kept it.
	if n := offline(); n != 1 {
		t.Fatalf("%d kept messages once bob saw his acknowledged, want 1", n)
	}
	phone.Expect(`id='m1'`)
	phone.Send("<a xmlns='urn:xmpp:sm:3' h='1'/>")
	phone.Sync()
	// Deleted a moment later, with others (offline.Module's release).
	waitFor(t, "the acknowledged message deleted", func() bool { return offline() == 0 })

	bob.Send("<message to='alice@localhost/phone' id='m2' type='chat'><body>in flight</body></message>")
	phone.Expect(`id='m2'`)
	// Node 1 dies with the phone's session (its NATS first, so that no
	// release reaches anyone), before the phone acknowledged m2.
	c.nodes[1].ns.Shutdown()
	bob.Send("<message to='alice@localhost/phone' id='m3' type='chat'><body>after the death</body></message>")
	bob.Send("<r xmlns='urn:xmpp:sm:3'/>")
	bob.Expect(`<a xmlns='urn:xmpp:sm:3' h='3'/>`)
	c.waitGone(t, "alice@localhost/phone", 0)

	again := c.login(t, 0, "alice", "laptop")
	again.Send("<presence/>")
	again.Expect(`id='m2'[^>]*><body>in flight</body><delay `)
	again.Expect(`id='m3'[^>]*><body>after the death</body><delay `)
}

// TestKeepInFlightUnansweredNewSession: a message forwarded to a node
// that does not answer (here its inbox is held; in production it was
// killed after NATS had handed the message over) is taken elsewhere after
// DeadAfter, by the bare-JID rules applied to the table as it is then:
// the session the account bound on the sender's node meanwhile (and
// whose initial presence read offline storage before) gets it, rather
// than offline storage, which would hold it back until the next login.
// (TestClusterKillDuringStream in internal/e2e found it.)
func TestKeepInFlightUnansweredNewSession(t *testing.T) {
	c := newClusterWith(t, 2, func(_ int, s *treff.Server) { s.KeepInFlight = true })
	c.addUser(t, "alice")
	c.addUser(t, "bob")
	phone := c.login(t, 1, "alice", "phone")
	phone.Send("<presence/>")
	phone.Expect(`<presence[^>]*from='alice@localhost/phone'`)
	phone.Send("<enable xmlns='urn:xmpp:sm:3'/>")
	phone.Expect(`<enabled xmlns='urn:xmpp:sm:3'/>`)
	c.waitSeen(t, "alice@localhost/phone", 0)
	bob := c.login(t, 0, "bob", "pc")

	held := c.nodes[1]
	held.node.pause.Lock()
	unpaused := false
	defer func() {
		if !unpaused {
			held.node.pause.Unlock()
		}
	}()
	start := time.Now()
	bob.Send("<message to='alice@localhost' id='m1' type='chat'><body>unanswered</body></message>")
	// While node 0 waits for node 1's answer, alice comes online there.
	laptop := c.login(t, 0, "alice", "laptop")
	laptop.Send("<presence/>")
	laptop.Sync()
	bob.Timeout = 2 * testDeadAfter
	bob.Sync() // after m1's routing: node 0 gave up waiting
	if d := time.Since(start); d < testDeadAfter {
		t.Fatalf("bob's message was routed after %v, before DeadAfter: node 1 answered", d)
	}
	held.node.pause.Unlock()
	unpaused = true
	got := laptop.Expect(`<message [^>]*id='m1'[^>]*>.*?</message>`)
	if strings.Contains(got, "urn:xmpp:delay") {
		t.Errorf("the laptop got m1 from offline storage: %q", got)
	}
}
