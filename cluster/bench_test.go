package cluster

import (
	"context"
	"io"
	"syscall"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
)

// BenchmarkDeliver routes one chat message from bob to alice's full JID
// on node 0 (treff.Server.Route, as after bob's client sent it) and
// waits until every message has reached alice's client: same-node with
// alice on node 0, cross-node with alice on node 1 (published on NATS,
// handed over by node 1's embedded NATS server). cpu-ns/op is the
// process's CPU time (both nodes, both NATS servers, alice's reader)
// per message.
func BenchmarkDeliver(b *testing.B) {
	for _, bc := range []struct {
		name string
		node int
	}{{"same-node", 0}, {"cross-node", 1}} {
		b.Run(bc.name, func(b *testing.B) {
			c := newClusterTB(b, 2)
			c.addUser(b, "alice")
			alice := c.login(b, bc.node, "alice", "phone")
			c.waitSeenB(b, "alice@localhost/phone")
			raw := []byte("<message from='bob@localhost/pc' to='alice@localhost/phone' type='chat' id='bench'><body>hello, this is a benchmark message</body></message>")
			want := int64(b.N) * int64(len(raw))
			got := make(chan int64, 1)
			conn := alice.Conn()
			go func() {
				n, _ := io.CopyN(io.Discard, conn, want)
				got <- n
			}()
			ctx := context.Background()
			cpu0 := cpuTime()
			b.ResetTimer()
			for range b.N {
				st, err := treff.NewStanza(raw)
				if err != nil {
					b.Fatal(err)
				}
				c.nodes[0].Route(ctx, st)
			}
			select {
			case n := <-got:
				if n != want {
					b.Fatalf("alice read %d bytes, want %d", n, want)
				}
			case <-time.After(60 * time.Second):
				b.Fatal("messages did not arrive")
			}
			b.StopTimer()
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

func cpuTime() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

func (c *testCluster) waitSeenB(tb testing.TB, full string) {
	j := jid.MustParse(full)
	waitForTB(tb, full, func() bool {
		for _, n := range c.nodes {
			if n.Session(j) == nil {
				return false
			}
		}
		return true
	})
}
