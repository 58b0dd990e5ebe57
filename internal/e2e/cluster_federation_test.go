package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/treff-im/treff/internal/pgtest"
	"github.com/treff-im/treff/trefftest"
)

// A federated user talking to users on two nodes of a routed cluster
// (issue 22): two example-server nodes serve treff.test with -store
// postgres on one database and -cluster yes (embedded NATS servers routed
// to each other), and Prosody 0.12 serves prosody.test:
//
//	treff.test node A   127.0.27.1   alice, bob's second resource b2; where Prosody's hosts file points treff.test
//	treff.test node B   127.0.27.2   bob (resource b, priority 5)
//	prosody.test        127.0.27.3   carol and dan (slixmpp), libunbound with the test's hosts file
//
// One CA, trusted by both servers, signs both domains' certificates:
// streams in both directions authenticate with SASL EXTERNAL. Every stream
// Prosody opens to treff.test lands on node A, so what carol sends bob
// (his subscription request, messages to his bare JID, an IQ to his full
// JID) reaches node A, which has no session of bob's b, and goes through
// the cluster to node B: the cross-node path is exercised, not only the
// node that hosts the recipient. What bob sends leaves from node B's own
// stream to Prosody, alice's from node A's. The scenario (clients/
// federation.py, "cluster") checks subscriptions, presence (status
// changes, and Prosody's probes answered by node A for both nodes' sessions),
// chat both ways, XEP-0092 and XEP-0199 round trips, and RFC 6121
// bare-JID priority across the nodes. Then node B is killed (SIGKILL): node A sends, on the
// dead node's behalf, bob/b's unavailable presence to carol (a contact on
// the remote server) and to dan, who got directed presence from bob/b
// (RFC 6121 4.6) and whom only node B knew of until the cluster table
// carried it.

const (
	clFedNodeA   = "127.0.27.1"
	clFedNodeB   = "127.0.27.2"
	clFedProsody = "127.0.27.3"
)

// TestClusterFederationProsody: see the top of this file.
func TestClusterFederationProsody(t *testing.T) {
	needProsody(t, "cluster federation test", clFedNodeA, clFedNodeB, clFedProsody)
	pg := pgtest.Start(t)
	dsn := pg.Database(t)

	dir, err := os.MkdirTemp("", "treff-clfed-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	f := &federation{dir: dir, caFile: filepath.Join(dir, "ca.pem"), clientCAs: filepath.Join(dir, "ca.pem")}
	makeCerts(t, f.caFile, "Treff cluster federation test CA", dir, fedTreff, fedProsody)
	f.prosodyAddrs = map[string]string{
		fedProsody:     clFedProsody,
		fedTreff:       clFedNodeA,
		fedTreffMUC:    clFedNodeA,
		fedTreffPubsub: clFedNodeA,
	}

	bin := pgFlags(t, buildCommunity(t), dsn)
	var batch strings.Builder
	for _, u := range []string{"alice", "bob"} {
		fmt.Fprintf(&batch, "%s@%s %s\n", u, fedTreff, fedPassword)
	}
	adduser := exec.Command(bin, "adduser", "-batch", "-data", t.TempDir(), "-domain", fedTreff)
	adduser.Env = communityEnv()
	adduser.Stdin = strings.NewReader(batch.String())
	if out, err := adduser.CombinedOutput(); err != nil {
		t.Fatalf("community adduser -batch: %v\n%s", err, out)
	}

	pick := addrPicker(t)
	routes := []string{pick(clFedNodeA), pick(clFedNodeB)}
	nodeA := startClusterFedNode(t, bin, "nodeA", clFedNodeA, routes[0], routes, f)
	nodeB := startClusterFedNode(t, bin, "nodeB", clFedNodeB, routes[1], routes, f)
	waitLogLine(t, nodeA, "cluster: node up", "node=nodeB")
	waitLogLine(t, nodeB, "cluster: node up", "node=nodeA")
	f.startProsody(t, "carol", "dan")

	body := uniqueBody("cluster federation")
	gate := filepath.Join(dir, "gate")
	// The scenario runs while the test kills node B; a failure of the
	// client (runClient fails the test) ends the goroutine too.
	var es events
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		es = f.fedClient(t, "cluster", "--body", body, "--password", fedPassword, "--gate", gate,
			"--alice", "alice@"+fedTreff, "--bob", "bob@"+fedTreff,
			"--carol", "carol@"+fedProsody, "--dan", "dan@"+fedProsody,
			"--node-a", clFedNodeA+":5222", "--node-b", clFedNodeB+":5222", "--remote", clFedProsody+":5222")
	}()
	ready := false
	for range 1200 { // the scenario's first part, at most 60 s
		if _, err := os.Stat(gate + ".ready"); err == nil {
			ready = true
			break
		}
		select {
		case <-finished:
			t.Fatal("the scenario ended before node B was killed")
		case <-time.After(50 * time.Millisecond):
		}
	}
	if !ready {
		t.Fatal("the scenario did not reach the kill of node B")
	}
	// Before the kill: Prosody's streams landed on node A only, and each
	// node opened its own stream to Prosody for its users' stanzas.
	auths := func(p *communityProc, dir string) (methods []string) {
		for _, a := range treffS2SAuths(p.logs.String()) {
			if a.domain == fedProsody && a.direction == dir {
				methods = append(methods, a.method)
			}
		}
		return methods
	}
	if len(auths(nodeA, "in")) == 0 {
		t.Errorf("node A logged no incoming stream from %s", fedProsody)
	}
	if m := auths(nodeB, "in"); len(m) > 0 {
		t.Errorf("node B logged incoming streams from %s (%v): Prosody should reach treff.test at node A only", fedProsody, m)
	}
	for _, n := range []struct {
		name string
		p    *communityProc
	}{{"A", nodeA}, {"B", nodeB}} {
		if len(auths(n.p, "out")) == 0 {
			t.Errorf("node %s logged no outgoing stream to %s: its users' stanzas should leave from it", n.name, fedProsody)
		}
	}
	if err := nodeB.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-nodeB.done
	waitLogLine(t, nodeA, "cluster: node silent, dropping its sessions", "node=nodeB")
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	select {
	case <-finished:
	case <-time.After(clientTimeout + 5*time.Second):
		t.Fatal("the scenario did not end")
	}
	if t.Failed() {
		return
	}

	bobB, bobA := "bob@"+fedTreff+"/b", "bob@"+fedTreff+"/b2"
	bodies := func(client string) map[string]int {
		out := map[string]int{}
		for _, m := range es.of("message", client) {
			if m.Body != "" {
				out[m.Body]++
			}
		}
		return out
	}
	// Each message reached exactly the resources it should, once.
	for _, c := range []struct {
		client, body string
		want         int
	}{
		{"alice", "carol to alice: " + body, 1},
		{"bob", "carol to bob: " + body, 1},
		{"carol", "alice to carol: " + body, 1},
		{"carol", "bob to carol: " + body, 1},
		{"bob", "priority 5 on node B: " + body, 1},
		{"bob2", "priority 5 on node B: " + body, 0},
		{"bob2", "priority 10 on node A: " + body, 1},
		{"bob", "priority 10 on node A: " + body, 0},
		{"bob2", "after node B: " + body, 1},
	} {
		if got := bodies(c.client)[c.body]; got != c.want {
			t.Errorf("%s got %q %d times, want %d", c.client, c.body, got, c.want)
		}
	}
	for _, m := range es.of("message", "carol") {
		if m.Body == "bob to carol: "+body && m.From != bobB {
			t.Errorf("bob's message reached carol from %q, want %s", m.From, bobB)
		}
	}
	// The IQs to full JIDs were answered by the clients.
	var v struct {
		Type string `json:"type"`
		From string `json:"from_jid"`
		Name string `json:"name"`
	}
	es.one(t, "version", "carol").decode(t, &v)
	if v.Type != "result" || v.From != bobB || v.Name != "bob on node B" {
		t.Errorf("carol's version request to %s: %+v, want bob's client's answer", bobB, v)
	}
	var ping struct {
		Type string `json:"type"`
	}
	es.one(t, "ping", "carol").decode(t, &ping)
	if ping.Type != "result" {
		t.Errorf("carol's ping of alice: %q, want result", ping.Type)
	}
	// carol's second resource got bob's and alice's presence from the
	// answers to Prosody's probes, which node A gave for both nodes.
	for _, peer := range []struct{ jid, status string }{{"alice@" + fedTreff + "/a", "alice " + body}, {bobB, "bob " + body}, {bobA, ""}} {
		n := 0
		for _, e := range es.of("presence", "carol2") {
			var p struct {
				Status string `json:"status"`
			}
			e.decode(t, &p)
			if e.From == peer.jid && e.Type == "" && p.Status == peer.status {
				n++
			}
		}
		if n == 0 {
			t.Errorf("carol2 got no available presence from %s with status %q", peer.jid, peer.status)
		}
	}
	// After node B died: bob/b's unavailable presence reached carol and
	// dan (and b2), once each, bob/b2 stayed available for them; alice,
	// not bob's contact, got none.
	for _, c := range []string{"carol", "carol2", "dan", "bob2", "alice"} {
		n := 0
		for _, p := range es.of("presence", c) {
			if p.From == bobB && p.Type == "unavailable" {
				n++
			}
			if p.From == bobA && p.Type == "unavailable" {
				t.Errorf("%s got unavailable presence from %s, which stayed online", c, bobA)
			}
		}
		want := 1
		if c == "alice" {
			want = 0
		}
		if n != want {
			t.Errorf("%s got %d unavailable presences from %s, want %d", c, n, bobB, want)
		}
	}
	if !t.Failed() {
		t.Logf("Prosody's streams landed on node A; carol reached bob on node B through the cluster; node B's death announced to carol and dan by node A")
	}
}

// startClusterFedNode starts one node of treff.test as a cluster node on
// PostgreSQL (bin carries the store flags), on ip's standard ports, with
// s2s to Prosody and its embedded NATS on route.
func startClusterFedNode(t *testing.T, bin, name, ip, route string, routes []string, f *federation) *communityProc {
	t.Helper()
	certDir := filepath.Join(f.dir, fedTreff)
	p := &communityProc{logs: new(trefftest.LogBuffer), done: make(chan struct{}), addr: ip + ":5222", cert: f.caFile}
	p.start(t, bin, "-data", t.TempDir(), "-domain", fedTreff,
		"-cert", filepath.Join(certDir, "cert.pem"), "-key", filepath.Join(certDir, "key.pem"),
		"-c2s", p.addr, "-c2s-tls", "",
		"-s2s", ip+":5269", "-s2s-tls", "", "-s2s-ca", f.caFile,
		"-s2s-resolve", fmt.Sprintf("%s=%s:5269", fedProsody, clFedProsody),
		"-http", "", "-https", "", "-new-account-age", "0",
		"-cluster", "yes", "-cluster-listen", route, "-cluster-peers", strings.Join(routes, ","), "-node-name", name,
		"-cluster-heartbeat", "250ms", "-cluster-dead-after", "2s",
		"-log-level", "debug")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s output:\n%s", name, p.logs)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), fedStartTimeout)
	defer cancel()
	for _, a := range []string{p.addr, ip + ":5269"} {
		for !accepts(a) {
			select {
			case <-p.done:
				t.Fatalf("%s exited before it accepted connections on %s: %v\noutput:\n%s", name, a, p.err, p.logs)
			case <-ctx.Done():
				t.Fatalf("%s did not accept connections on %s within %v\noutput:\n%s", name, a, fedStartTimeout, p.logs)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return p
}
