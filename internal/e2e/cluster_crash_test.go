package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/treff-im/treff/storage/pgstore"
)

// The cluster under a stream of messages (issue 22's last cluster tests):
// three example-server processes on one PostgreSQL database behind
// HAProxy (procCluster), and the load client of smclient_test.go, which
// counts exactly what the server acknowledged and what arrived.

// smAccounts are the six users: senders s0-s2, receivers r0-r2.
func smAccounts() [][2]string {
	var out [][2]string
	for _, n := range []string{"s0", "s1", "s2", "r0", "r1", "r2"} {
		out = append(out, [2]string{n + "@localhost", "pw-" + n})
	}
	return out
}

// smStart makes the senders and receivers subscribed to each other, starts
// the receivers (receiver i at recvAddr(i)), waits until they are online,
// starts the senders (sender i at sendAddr(i), each sending message k to
// receiver k mod 3), waits until each has seen every receiver's presence
// (so its node knows them), and lets them send.
func smStart(t *testing.T, c *procCluster, env *smEnv, total int, recvAddr, sendAddr func(int) string) (senders, receivers []*smUser) {
	t.Helper()
	var pairs, to []string
	for i := range 3 {
		to = append(to, fmt.Sprintf("r%d@localhost", i))
		for j := range 3 {
			pairs = append(pairs, fmt.Sprintf("s%d@localhost", i), fmt.Sprintf("r%d@localhost", j))
		}
	}
	c.friends(t, pairs...)
	for i := range 3 {
		name := fmt.Sprintf("r%d", i)
		receivers = append(receivers, newSMUser(env, name, "pw-"+name, recvAddr(i), false, nil, 0))
	}
	for i := range 3 {
		name := fmt.Sprintf("s%d", i)
		senders = append(senders, newSMUser(env, name, "pw-"+name, sendAddr(i), true, to, total))
	}
	t.Cleanup(func() {
		env.close()
		if t.Failed() {
			env.dump(t)
		}
	})
	for _, u := range receivers {
		go u.run()
	}
	if !env.waitUntil(func() bool { return allUp(receivers) }) {
		t.Fatal("the receivers did not get online")
	}
	for _, u := range senders {
		go u.run()
	}
	for _, u := range senders {
		select {
		case <-u.ready:
		case <-u.done:
			t.Fatalf("%s ended: %v", u.name, u.err)
		case <-time.After(time.Until(env.end)):
			t.Fatalf("%s did not see every receiver's presence", u.name)
		}
	}
	close(env.start)
	return senders, receivers
}

func allUp(us []*smUser) bool {
	for _, u := range us {
		if !u.isUp() {
			return false
		}
	}
	return true
}

// smFinish waits until the senders have every message acknowledged and
// the receivers have everything acknowledged (or env.end), then checks
// the counts. For a message that did not arrive it says whether it is in
// the receiver's offline storage (stored when no session of the receiver
// would fetch it) or nowhere.
func smFinish(t *testing.T, c *procCluster, env *smEnv, senders []*smUser) {
	t.Helper()
	for _, u := range senders {
		select {
		case <-u.settled:
		case <-u.done: // by env.end at the latest
			t.Errorf("%s: %v", u.name, u.err)
		}
	}
	if !env.waitFor(20*time.Second, env.complete) {
		t.Error("the receivers did not get every acknowledged message within 20s")
	}
	missing := smReport(t, env)
	for _, u := range env.users {
		u.mu.Lock()
		if len(u.errors) > 0 {
			t.Errorf("%s got message errors: %q", u.name, u.errors)
		}
		t.Logf("%s: %d streams, resumption answered %v, %d acknowledged, %d distinct received (%d with a delay stamp)",
			u.name, u.sessions, u.resumes, u.acked, len(u.got), u.delayed)
		u.mu.Unlock()
	}
	if len(missing) == 0 {
		return
	}
	ctx := context.Background()
	st, err := pgstore.Open(ctx, c.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for to, bodies := range missing {
		stored, err := st.OfflineMessages(ctx, to)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range bodies {
			where := "not in offline storage"
			for _, m := range stored {
				if strings.Contains(string(m.Stanza), ">"+b+"<") {
					where = "in offline storage since " + m.Received.UTC().Format("15:04:05.000")
				}
			}
			t.Logf("missing %s for %s: %s", b, to, where)
		}
	}
}

// TestClusterKillDuringStream: three nodes (127.0.0.22-24) behind HAProxy
// (127.0.0.25). Receivers r0, r1, r2 and senders s0, s1, s2 with
// resumable stream management, each i on node i (through HAProxy's
// frontend for that node); each sender sends 300 numbered chat messages,
// message k to receiver k mod 3's bare JID, asking for an acknowledgement
// every ten. Node 2 is killed (SIGKILL) at a random moment of that (the
// seed is logged): its clients s2 and r2 reconnect through HAProxy's
// round-robin frontend, ask to resume (<failed/>: their node is gone),
// bind the same resource anew, and s2 sends again what node 2 had not
// acknowledged. Every message a sender had acknowledged arrives at its
// receiver at least once (duplicates are logged), and what r2 had received
// on node 2 without acknowledging it comes again, from offline storage.
func TestClusterKillDuringStream(t *testing.T) {
	c := startProcCluster(t, procClusterSpec{ip: 22, prefix: "knode", accounts: smAccounts(),
		flags: []string{"-limit-messages", "none", "-offline-limit", "5000"}})
	const total = 300
	seed := rand.Uint64()
	killAt := total/2 + rand.New(rand.NewPCG(seed, 2)).IntN(3*total/2)
	t.Logf("seed %d: knode2 is killed once the senders have %d of their %d messages acknowledged", seed, killAt, 3*total)
	env := newSMEnv(t, c.certFile, c.lb, 140*time.Second)
	env.killAt = killAt
	at := func(i int) string { return c.fronts[i] }
	senders, receivers := smStart(t, c, env, total, at, at)

	select {
	case <-env.kill:
	case <-time.After(time.Until(env.end)):
		t.Fatalf("the senders did not reach %d acknowledged messages", killAt)
	}
	dead := c.nodes[2]
	if err := dead.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-dead.done
	t.Logf("knode2 killed with %d messages acknowledged (s2: %d)", env.acked(), senders[2].ackedCount())

	smFinish(t, c, env, senders)
	for _, s := range senders {
		if s.ackedCount() != total {
			t.Errorf("%s had %d of its %d messages acknowledged", s.name, s.ackedCount(), total)
		}
	}
	for _, u := range []*smUser{senders[2], receivers[2]} {
		u.mu.Lock()
		if u.sessions != 2 || !slices.Equal(u.resumes, []string{"failed"}) {
			t.Errorf("%s: %d streams, resumption answered %q; want 2 streams and one <failed/>", u.name, u.sessions, u.resumes)
		}
		u.mu.Unlock()
	}
	for _, u := range append(senders[:2:2], receivers[:2]...) {
		if n := u.sessionCount(); n != 1 {
			t.Errorf("%s on a surviving node has had %d streams, want 1", u.name, n)
		}
	}
	// What r2 had received on node 2 after its last acknowledgement was
	// kept for it in the shared store: it comes again.
	r2 := receivers[2]
	r2.mu.Lock()
	if len(r2.unacked) > 0 {
		var again []string
		for _, b := range r2.unacked[0] {
			if r2.got[b] < 2 {
				again = append(again, b)
			}
		}
		if len(again) > 0 {
			t.Errorf("r2 received %q on knode2 without acknowledging them; they did not come again", again)
		}
		t.Logf("r2 had %d messages unacknowledged when knode2 died", len(r2.unacked[0]))
	}
	r2.mu.Unlock()
	env.close()
	for _, n := range c.nodes[:2] {
		n.stop(t)
	}
}

// TestClusterRollingRestart: a rolling restart of three nodes (127.0.0.32-34,
// HAProxy on 127.0.0.35) under load. Three senders and three receivers,
// all through HAProxy's round-robin frontend with resumable stream
// management, send numbered chat messages (50 per second per sender,
// each to receiver k mod 3). Each node in turn is drained ('community
// drain': its clients get <see-other-host/> naming the frontend and come
// back through it to the other nodes, HAProxy's /health check marks it
// down), stopped (SIGTERM), started again on the same addresses and data
// folder, and waited for (it hears the others, HAProxy's check finds
// /health up); the next node follows once every client is connected
// again. At the end every message the server acknowledged has arrived
// (counted), and every client is connected.
func TestClusterRollingRestart(t *testing.T) {
	c := startProcCluster(t, procClusterSpec{ip: 32, prefix: "rrnode", accounts: smAccounts(),
		flags: []string{"-limit-messages", "none", "-offline-limit", "5000", "-drain-ack-wait", "5s"}})
	env := newSMEnv(t, c.certFile, c.lb, 150*time.Second)
	env.every = 10 * time.Millisecond
	lb := func(int) string { return c.lb }
	senders, _ := smStart(t, c, env, 0, lb, lb)

	// Between two drains, the senders have about a second's worth of
	// messages acknowledged (300 a second in all).
	flowing := func(what string) {
		t.Helper()
		before := env.acked()
		if !env.waitUntil(func() bool { return env.acked() >= before+300 }) {
			t.Fatalf("no messages acknowledged %s", what)
		}
	}
	for _, n := range c.nodes {
		flowing("before draining " + n.name)
		out := runCommunity(t, c.bin, "drain", "-data", filepath.Join(c.dir, n.name))
		if !strings.HasSuffix(out, "client streams closed; /health says draining\n") {
			t.Errorf("community drain printed %q", out)
		}
		t.Logf("%s: %s", n.name, strings.TrimSpace(out))
		c.hap.waitServer(t, "all/"+n.name, "DOWN")
		n.stop(t)
		c.restart(t, n)
		if !env.waitUntil(func() bool { return allUp(env.users) }) {
			t.Fatalf("the clients are not all connected again after %s's restart", n.name)
		}
	}
	flowing("after the rolling restart")
	close(env.stop)
	smFinish(t, c, env, senders)
	if !allUp(env.users) {
		t.Error("not every client is connected at the end")
	}
	for _, u := range env.users {
		if n := u.sessionCount(); n < 2 {
			t.Errorf("%s had %d streams; every client was on a node that drained", u.name, n)
		}
	}
	env.close()
	for _, n := range c.nodes {
		n.stop(t)
	}
}
