package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/auth"
	"github.com/treff-im/treff/cluster"
	"github.com/treff-im/treff/im"
	"github.com/treff-im/treff/storage"
	"github.com/treff-im/treff/storage/memstore"
	"github.com/treff-im/treff/trefftest"

	natsserver "github.com/nats-io/nats-server/v2/server"
)

// clusterNode is one in-process node of a test cluster.
type clusterNode struct {
	*trefftest.Server
	node *cluster.Node
	ns   *natsserver.Server
}

// testCluster is k Treff servers in this process sharing one memstore,
// each with its own embedded NATS server routed to the others (what
// cluster = yes with cluster_listen and cluster_peers gives each node of
// the example server). The example server cannot share a store between
// processes yet (bbolt is one process's file), so the nodes run here.
type testCluster struct {
	nodes []*clusterNode
	store storage.Store
	auth  *auth.Store
	cert  string // the nodes' certificate (PEM file), for the clients
	logs  *logStore
}

func newTestCluster(t *testing.T, k int) *testCluster {
	t.Helper()
	needSlixmpp(t)
	store := memstore.New()
	t.Cleanup(func() { store.Close() })
	c := &testCluster{store: store, auth: &auth.Store{Accounts: store}, logs: &logStore{}}
	addrs := make([]string, k)
	for i := range addrs {
		addrs[i] = trefftest.FreeAddr(t)
	}
	// One certificate for every node, as behind one load balancer.
	cert, err := trefftest.Certificate("localhost")
	if err != nil {
		t.Fatal(err)
	}
	c.cert = filepath.Join(t.TempDir(), "cert.pem")
	if err := os.WriteFile(c.cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o644); err != nil {
		t.Fatal(err)
	}
	for i := range k {
		name := fmt.Sprintf("node%d", i)
		ns, nc, err := cluster.Embedded{Name: name, Listen: addrs[i], Peers: addrs}.Start()
		if err != nil {
			t.Fatal(err)
		}
		cn := &clusterNode{ns: ns, node: &cluster.Node{Name: name, Conn: nc, Heartbeat: 200 * time.Millisecond, DeadAfter: 2 * time.Second}}
		t.Cleanup(func() { // after the server's shutdown, registered below
			cn.node.Leave()
			nc.Close()
			ns.Shutdown()
		})
		cn.Server = trefftest.NewServer(t, func(s *treff.Server) {
			s.Storage = store
			s.Authenticator = c.auth
			s.Modules = im.Modules()
			s.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
			s.Logger = slog.New(&logHandler{store: c.logs}).With("node", name)
			if err := cn.node.Join(s); err != nil {
				t.Fatal(err)
			}
		})
		c.nodes = append(c.nodes, cn)
	}
	c.waitFor(t, "the nodes to see each other", func() bool {
		for _, n := range c.nodes {
			if len(n.node.Nodes()) != k-1 {
				return false
			}
		}
		return true
	})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server logs:\n%s", c.logs.dump())
		}
	})
	return c
}

// waitFor polls cond for at most 10 s: which rows a node has is seen by
// no client, so the test looks.
func (c *testCluster) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 1000 {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

func (c *testCluster) addUser(t *testing.T, user, pw string) {
	t.Helper()
	if err := c.auth.CreateUser(context.Background(), user, pw); err != nil {
		t.Fatal(err)
	}
}

// friends makes a and b subscribed to each other's presence.
func (c *testCluster) friends(t *testing.T, a, b string) {
	t.Helper()
	ctx := context.Background()
	for _, p := range [][2]string{{a, b}, {b, a}} {
		if _, err := c.store.PutRosterItem(ctx, p[0], storage.RosterItem{JID: p[1], Subscription: storage.SubBoth}); err != nil {
			t.Fatal(err)
		}
	}
}

// run runs clients/cluster.py's scenario against the nodes.
func (c *testCluster) run(t *testing.T, scenario string, args ...string) events {
	t.Helper()
	script, err := filepath.Abs(filepath.Join("clients", "cluster.py"))
	if err != nil {
		t.Fatal(err)
	}
	var addrs []string
	for _, n := range c.nodes {
		addrs = append(addrs, n.Addr)
	}
	argv := []string{script, "--cert", c.cert, "--timeout", fmt.Sprint(scriptTimeout.Seconds()),
		"--addr", addrs[0], "--addrs", strings.Join(addrs, ",")}
	if testing.Verbose() && os.Getenv("E2E_DEBUG") != "" {
		argv = append(argv, "--debug")
	}
	argv = append(argv, scenario)
	argv = append(argv, args...)
	return runClient(t, "cluster.py "+scenario, pythonEnv(), python, argv...)
}

type clusterReceived struct {
	Client       string   `json:"client"`
	JID          string   `json:"jid"`
	Node         int      `json:"node"`
	Bodies       []string `json:"bodies"`
	PresenceFrom []string `json:"presence_from"`
	ErrorFrom    []string `json:"error_from"`
}

// TestClusterRoute: slixmpp users on three nodes of one cluster. bob on
// node 2 sends a chat message to alice's bare JID while her resources on
// nodes 0 and 1 have priorities 5 and 1: only the priority-5 one gets it
// (RFC 6121 8.5.2.1.1, across nodes), and each gets its full-JID message.
// Presence crosses nodes both ways: bob sees each of alice's resources,
// they see bob (his node answers their probes with his presence) and
// each other.
func TestClusterRoute(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	c.addUser(t, "alice@localhost", alicePW)
	c.addUser(t, "bob@localhost", bobPW)
	c.friends(t, "alice@localhost", "bob@localhost")
	body := uniqueBody("cluster-route")
	es := c.run(t, "route", "--jid", "alice@localhost", "--password", alicePW,
		"--peer", "bob@localhost", "--peer-password", bobPW, "--body", body,
		"--session", "high=5@0", "--session", "low=1@1", "--sender-node", "2")
	for _, tc := range []struct {
		res    string
		node   int
		bodies []string
	}{
		{"high", 0, []string{"bare " + body, "full high " + body}},
		{"low", 1, []string{"full low " + body}},
	} {
		var r clusterReceived
		es.one(t, "received", tc.res).decode(t, &r)
		if r.Node != tc.node || r.JID != "alice@localhost/"+tc.res {
			t.Errorf("%s: node %d, bound %q", tc.res, r.Node, r.JID)
		}
		if !slices.Equal(r.Bodies, tc.bodies) {
			t.Errorf("%s got %q, want %q", tc.res, r.Bodies, tc.bodies)
		}
		other := "alice@localhost/high"
		if tc.res == "high" {
			other = "alice@localhost/low"
		}
		if !slices.Contains(r.PresenceFrom, "bob@localhost/sender") && !slices.ContainsFunc(r.PresenceFrom, func(s string) bool { return strings.HasPrefix(s, "bob@localhost/") }) {
			t.Errorf("%s did not get bob's presence: %q", tc.res, r.PresenceFrom)
		}
		if !slices.Contains(r.PresenceFrom, other) {
			t.Errorf("%s did not get %s's presence: %q", tc.res, other, r.PresenceFrom)
		}
	}
	var snd clusterReceived
	es.one(t, "received", "sender").decode(t, &snd)
	if len(snd.Bodies) != 0 || len(snd.ErrorFrom) != 0 {
		t.Errorf("sender got messages %q, errors from %q; want none", snd.Bodies, snd.ErrorFrom)
	}
	for _, want := range []string{"alice@localhost/high", "alice@localhost/low"} {
		if !slices.Contains(snd.PresenceFrom, want) {
			t.Errorf("bob did not get %s's presence: %q", want, snd.PresenceFrom)
		}
	}
}

// TestClusterConflict: binding a resource on node 1 that is bound on
// node 0 closes the session on node 0 with <conflict/> (RFC 6120
// 7.7.2.2, the newer session wins across nodes); a message from node 2
// to the full JID reaches the new session.
func TestClusterConflict(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	c.addUser(t, "alice@localhost", alicePW)
	c.addUser(t, "bob@localhost", bobPW)
	c.friends(t, "alice@localhost", "bob@localhost")
	body := uniqueBody("cluster-conflict")
	es := c.run(t, "conflict", "--jid", "alice@localhost/dup", "--password", alicePW,
		"--peer", "bob@localhost", "--peer-password", bobPW, "--body", body)
	r := es.one(t, "conflict_result", "")
	if r.FirstJID != "alice@localhost/dup" || r.SecondJID != "alice@localhost/dup" {
		t.Errorf("bound %q then %q", r.FirstJID, r.SecondJID)
	}
	if len(r.FirstStreamErrors) != 1 || !slices.Equal(r.FirstStreamErrors[0].Conditions, []string{"conflict"}) {
		t.Errorf("first session's stream errors: %+v, want one <conflict/>", r.FirstStreamErrors)
	}
	if r.FirstMessages != 0 {
		t.Errorf("the replaced session got %d messages", r.FirstMessages)
	}
	if n := len(es.of("stream_error", "second")); n != 0 {
		t.Errorf("the new session got %d stream errors", n)
	}
}

// TestClusterNodeLost: a node whose NATS connection dies without a
// goodbye is dropped by the others within DeadAfter (2 s here); a
// message to its user then goes to offline storage, and she gets it when
// she logs in on another node; her client on the cut-off node does not.
func TestClusterNodeLost(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	c.addUser(t, "alice@localhost", alicePW)
	c.addUser(t, "bob@localhost", bobPW)
	c.friends(t, "alice@localhost", "bob@localhost")
	body := uniqueBody("cluster-node-lost")
	gate := filepath.Join(t.TempDir(), "gate")
	done := make(chan events, 1)
	go func() {
		done <- c.run(t, "node_lost", "--jid", "alice@localhost", "--password", alicePW,
			"--peer", "bob@localhost", "--peer-password", bobPW, "--body", body, "--gate", gate)
	}()
	c.waitFor(t, "the script to be ready", func() bool {
		_, err := os.Stat(gate + ".ready")
		return err == nil
	})
	old := jid.MustParse("alice@localhost/old")
	if s := c.nodes[0].Session(old); s == nil || !s.Remote() {
		t.Fatalf("node 0 does not see alice on node 2: %v", s)
	}
	start := time.Now()
	c.nodes[2].ns.Shutdown() // no goodbye: node 2 just goes silent
	c.waitFor(t, "nodes 0 and 1 to drop node 2's sessions", func() bool {
		return c.nodes[0].Session(old) == nil && c.nodes[1].Session(old) == nil
	})
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("dropped after %v, want about DeadAfter (2s)", d)
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var es events
	select {
	case es = <-done:
	case <-time.After(clientTimeout + 5*time.Second):
		t.Fatal("the script did not end")
	}
	var r struct {
		OldMessages  []string `json:"old_messages"`
		SenderErrors []string `json:"sender_errors"`
	}
	es.one(t, "node_lost_result", "").decode(t, &r)
	if slices.Contains(r.OldMessages, body) {
		t.Error("the client on the cut-off node got the message")
	}
	if len(r.SenderErrors) != 0 {
		t.Errorf("bob got errors from %q", r.SenderErrors)
	}
}

// TestClusterRefusedWithBolt: the example server refuses cluster = yes
// with its bbolt store (one process's file: the nodes would not share
// accounts, rosters or offline messages), with a clear message and the
// usage exit code, before it creates anything.
func TestClusterRefusedWithBolt(t *testing.T) {
	t.Parallel()
	bin := buildCommunity(t)
	data := filepath.Join(t.TempDir(), "data")
	_, stderr, code := runCommunityStatus(t, bin, "-data", data, "-cluster", "yes", "-cluster-listen", "127.0.0.1:6222", "-cluster-peers", "127.0.0.2:6222", "-node-name", "node-1")
	if code != 2 || !strings.Contains(stderr, "cluster = yes needs a store that all nodes share") {
		t.Errorf("exit %d, stderr %q; want 2 and the shared-store message", code, stderr)
	}
	if _, err := os.Stat(data); err == nil {
		t.Error("the data folder was created")
	}
}

// waitLogLine waits (at most 20 s) until the process has logged a line with
// all of the given parts.
func waitLogLine(t *testing.T, p *communityProc, parts ...string) {
	t.Helper()
	for range 400 {
		for _, line := range strings.Split(p.logs.String(), "\n") {
			ok := true
			for _, part := range parts {
				ok = ok && strings.Contains(line, part)
			}
			if ok {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no log line with %q within 20s\nserver output:\n%s", parts, p.logs)
}

// TestClusterCommunity: three example-server processes on 127.0.0.2-4,
// behind HAProxy (PROXY protocol v2; a round-robin frontend and one per
// node)
// as one cluster (-cluster yes, each with its embedded NATS server routed
// to the others' -cluster-listen addresses, with -cluster-secret-file),
// sharing one PostgreSQL
// database (-store postgres; internal/pgtest's throwaway server or
// TREFF_PGSQL_DSN) and one certificate, with slixmpp users on different
// nodes: bare-JID priority routing, full-JID delivery and presence
// across nodes; a resource conflict across nodes; then node 2 is killed
// (SIGKILL): nodes 0 and 1 drop its sessions, a message to its user goes
// to offline storage in PostgreSQL and reaches her on node 1.
func TestClusterCommunity(t *testing.T) {
	needSlixmpp(t)
	c := startProcCluster(t, procClusterSpec{ip: 2, prefix: "node",
		accounts: [][2]string{{"alice@localhost", alicePW}, {"bob@localhost", bobPW}}})
	c.friends(t, "alice@localhost", "bob@localhost")
	nodes := c.nodes
	runAt := func(addrs []string, scenario string, args ...string) events {
		t.Helper()
		script, err := filepath.Abs(filepath.Join("clients", "cluster.py"))
		if err != nil {
			t.Fatal(err)
		}
		argv := append([]string{script, "--cert", c.certFile, "--timeout", fmt.Sprint(scriptTimeout.Seconds()),
			"--addr", addrs[0], "--addrs", strings.Join(addrs, ","), scenario}, args...)
		return runClient(t, "cluster.py "+scenario, pythonEnv(), python, argv...)
	}
	run := func(scenario string, args ...string) events {
		t.Helper()
		return runAt(c.fronts, scenario, args...)
	}
	logins := func() []int {
		var out []int
		for _, n := range nodes {
			out = append(out, strings.Count(n.logs.String(), `msg=authenticated`))
		}
		return out
	}

	// Routing and presence across the three processes.
	body := uniqueBody("cluster-community")
	es := run("route", "--jid", "alice@localhost", "--password", alicePW,
		"--peer", "bob@localhost", "--peer-password", bobPW, "--body", body,
		"--session", "high=5@0", "--session", "low=1@1", "--sender-node", "2")
	// The bare-JID message goes to the higher priority, each full-JID
	// one to its resource.
	checkRouted := func(where, body string, es events) {
		t.Helper()
		for _, tc := range []struct {
			res    string
			bodies []string
		}{
			{"high", []string{"bare " + body, "full high " + body}},
			{"low", []string{"full low " + body}},
		} {
			var r clusterReceived
			es.one(t, "received", tc.res).decode(t, &r)
			if !slices.Equal(r.Bodies, tc.bodies) {
				t.Errorf("%s%s got %q, want %q", where, tc.res, r.Bodies, tc.bodies)
			}
		}
	}
	checkRouted("", body, es)

	// The same through the round-robin frontend: the three clients land
	// on the nodes in turn, wherever that is.
	before := logins()
	body = uniqueBody("cluster-community-lb")
	lb := c.lb
	es = runAt([]string{lb, lb, lb}, "route", "--jid", "alice@localhost", "--password", alicePW,
		"--peer", "bob@localhost", "--peer-password", bobPW, "--body", body,
		"--session", "high=5@1", "--session", "low=1@2", "--sender-node", "0")
	checkRouted("through the balancer, ", body, es)
	used := 0
	for i, n := range logins() {
		if n > before[i] {
			used++
		}
	}
	if used < 2 {
		t.Errorf("the balanced clients all logged in on one node (logins before %v, after %v)", before, logins())
	}

	// A resource bound on node 0, then on node 1.
	es = run("conflict", "--jid", "alice@localhost/dup", "--password", alicePW,
		"--peer", "bob@localhost", "--peer-password", bobPW, "--body", uniqueBody("cluster-community-conflict"))
	r := es.one(t, "conflict_result", "")
	if len(r.FirstStreamErrors) != 1 || !slices.Equal(r.FirstStreamErrors[0].Conditions, []string{"conflict"}) {
		t.Errorf("first session's stream errors: %+v, want one <conflict/>", r.FirstStreamErrors)
	}

	// Node 2 dies with alice on it.
	body = uniqueBody("cluster-community-killed")
	gate := filepath.Join(c.dir, "gate")
	done := make(chan events, 1)
	go func() {
		done <- run("node_lost", "--jid", "alice@localhost", "--password", alicePW,
			"--peer", "bob@localhost", "--peer-password", bobPW, "--body", body, "--gate", gate, "--killed")
	}()
	for range 400 {
		if _, err := os.Stat(gate + ".ready"); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := nodes[2].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-nodes[2].done
	for _, n := range nodes[:2] {
		waitLogLine(t, n.communityProc, "cluster: node silent, dropping its sessions", "node=node2")
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	select {
	case es = <-done:
	case <-time.After(clientTimeout + 5*time.Second):
		t.Fatal("the script did not end")
	}
	var lost struct {
		OldMessages  []string `json:"old_messages"`
		SenderErrors []string `json:"sender_errors"`
	}
	es.one(t, "node_lost_result", "").decode(t, &lost)
	if len(lost.SenderErrors) != 0 {
		t.Errorf("bob got errors from %q", lost.SenderErrors)
	}
	for _, n := range nodes[:2] {
		n.stop(t)
	}
}

// addrPicker returns a function that picks a free address on an IP,
// never the same twice: every address of a multi-process test is picked
// before any process binds it, and the kernel may hand out a port it
// handed out a moment ago (a node whose route and client ports collide
// does not start).
func addrPicker(t *testing.T) func(ip string) string {
	picked := map[string]bool{}
	return func(ip string) string {
		t.Helper()
		for range 20 {
			if a := freeAddrOn(t, ip); !picked[a] {
				picked[a] = true
				return a
			}
		}
		t.Fatalf("no distinct free port on %s", ip)
		return ""
	}
}

// writeCertFiles writes a self-signed certificate for localhost and its
// key to dir (cert.pem, key.pem) for the nodes of a multi-process test,
// which all present the same one.
func writeCertFiles(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	cert, err := trefftest.Certificate("localhost")
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}
