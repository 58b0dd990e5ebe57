package cluster

import (
	"sync"
	"testing"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/offline"
)

// TestOfflineStoredWhileComingOnline: a node that has not yet heard of
// an account's session on another node stores a message for it offline,
// after that session's initial presence read the store. With the offline
// module sharing through the node (offline.Module.Shared), the storing
// node tells the others, and the session reads the store again: it gets
// the message now, not at its next login. Node 0's inbox is held so that
// it cannot learn of alice's session on node 1 (in production: a client
// back on another node within milliseconds of a drain, faster than the
// row update; TestClusterRollingRestart in internal/e2e found it).
func TestOfflineStoredWhileComingOnline(t *testing.T) {
	var mu sync.Mutex
	offs := map[int]*offline.Module{}
	c := startCluster(t, 2, &testCluster{
		setup: func(i int, s *treff.Server) {
			for _, m := range s.Modules {
				if o, ok := m.(*offline.Module); ok {
					mu.Lock()
					offs[i] = o
					mu.Unlock()
				}
			}
		},
		modules: func(i int, n *Node) []treff.Module {
			mu.Lock()
			offs[i].Shared = n // before Setup, after Join
			mu.Unlock()
			return nil
		},
	})
	c.addUser(t, "alice")
	c.addUser(t, "bob")
	bob := c.login(t, 0, "bob", "pc")

	held := c.nodes[0]
	held.node.pause.Lock()
	unpaused := false
	defer func() {
		if !unpaused {
			held.node.pause.Unlock()
		}
	}()
	alice := c.login(t, 1, "alice", "phone")
	alice.Send("<presence/>")
	alice.Sync() // the initial presence read the store: nothing there yet
	bob.Send("<message to='alice@localhost' id='m1' type='chat'><body>while coming online</body></message>")
	bob.Sync() // node 0 knows no session of alice's: stored offline
	// Her session gets it from the store (the delay stamp says so), while
	// node 0 still knows nothing of her.
	alice.Expect(`id='m1'[^>]*><body>while coming online</body><delay `)
	held.node.pause.Unlock()
	unpaused = true
}
