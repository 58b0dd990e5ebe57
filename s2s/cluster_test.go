package s2s_test

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// Two nodes serve a.test (a cluster sharing one store): node A opens the
// stream to b.test and sends a dialback key; b.test's verification
// reaches node B, because a.test resolves to B. B never saw A's stream,
// yet answers for it, because both nodes have the same Secret (what the
// example server shares through PostgreSQL).
func TestDialbackAcrossNodes(t *testing.T) {
	f := newFederation(t, viaDialback, "a.test", "b.test", "a.test")
	nodeA, b, nodeB := f.Nodes[0], f.Nodes[1], f.Nodes[2]
	secret := bytes.Repeat([]byte("s"), 32)
	nodeA.S2S.Secret, nodeB.S2S.Secret = secret, secret
	f.start() // b.test resolves a.test to the last a.test node: B
	if got := b.S2S.Resolve["a.test"]; got != nodeB.S2SAddr() {
		t.Fatalf("b.test resolves a.test to %s, want node B at %s", got, nodeB.S2SAddr())
	}
	nodeA.addUser(t, "alice")
	b.addUser(t, "bob")
	alice := nodeA.online(t, "alice", "r")
	bob := b.online(t, "bob", "r")
	alice.Send(chat("bob@b.test/r", "m1", "hello from node A"))
	want(t, bob, chatFrom("alice@a.test/r", "bob@b.test/r", "m1", "hello from node A"))
	nodeA.waitAuthenticated(t, "out", "b.test", "dialback")
	b.waitAuthenticated(t, "in", "a.test", "dialback")
	checked := waitKeyChecked(t, nodeB, "valid")
	if checked["domain"] != "b.test" || checked["local"] != "a.test" || checked["id"] == "" {
		t.Errorf("node B checked %v, want a key of a.test for b.test", checked)
	}
	if recs := nodeA.logRecords("s2s dialback key checked"); len(recs) > 0 {
		t.Errorf("node A checked keys itself: %v", recs)
	}
}

// The same with different secrets: node B cannot vouch for node A's key,
// so b.test refuses the stream and nothing reaches bob.
func TestDialbackAcrossNodesNeedsSharedSecret(t *testing.T) {
	f := newFederation(t, viaDialback, "a.test", "b.test", "a.test")
	nodeA, b, nodeB := f.Nodes[0], f.Nodes[1], f.Nodes[2]
	nodeA.S2S.Secret, nodeB.S2S.Secret = bytes.Repeat([]byte("a"), 32), bytes.Repeat([]byte("b"), 32)
	f.start()
	nodeA.addUser(t, "alice")
	b.addUser(t, "bob")
	alice := nodeA.online(t, "alice", "r")
	b.online(t, "bob", "r")
	alice.Send(chat("bob@b.test/r", "m1", "not vouched for"))
	waitKeyChecked(t, nodeB, "invalid")
	// The message comes back as an error, never to bob.
	got := next(alice)
	if !strings.Contains(got, "type='error'") || !strings.Contains(got, "id='m1'") {
		t.Errorf("alice got %s, want the error for m1", got)
	}
	if m := b.authenticated("in", "a.test"); len(m) > 0 {
		t.Errorf("b.test accepted a.test by %v with a key node B called invalid", m)
	}
}

// waitKeyChecked waits (bounded; the record is written by the stream's
// goroutine) for n's log record of a dialback key it checked with result
// typ, and returns it.
func waitKeyChecked(t *testing.T, n *node, typ string) map[string]any {
	t.Helper()
	var found map[string]any
	if !waitFor(10*time.Second, func() bool {
		for _, r := range n.logRecords("s2s dialback key checked") {
			if r["type"] == typ {
				found = r
				return true
			}
		}
		return false
	}) {
		t.Fatalf("%s: no dialback key checked as %s; logs:\n%s", n.Domain, typ, n.Logs.String())
	}
	return found
}
