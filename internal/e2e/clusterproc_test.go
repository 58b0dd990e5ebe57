package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/treff-im/treff/internal/pgtest"
	"github.com/treff-im/treff/storage"
	"github.com/treff-im/treff/storage/pgstore"
	"github.com/treff-im/treff/trefftest"
)

// procCluster is three example-server processes run as one cluster
// (-store postgres on one throwaway PostgreSQL database, -cluster yes with
// each node's embedded NATS server routed to the others', one
// -cluster-secret-file, one certificate), optionally behind HAProxy: the
// set-up TestClusterCommunity, TestClusterRooms, TestClusterKillDuringStream
// and TestClusterRollingRestart share. docs/deploy.md ("A three-node
// cluster with HAProxy") describes the same deployment.
type procCluster struct {
	bin      string // the example server
	dir      string // certificate, secret, the nodes' data folders
	dsn      string // the shared database
	certFile string
	keyFile  string
	nodes    []*communityNode
	hap      *haproxy // nil without HAProxy
	lb       string   // HAProxy's round-robin frontend, its backend checking /health
	fronts   []string // one HAProxy frontend per node, in the order of nodes
}

// procClusterSpec says how to start a procCluster.
type procClusterSpec struct {
	// ip: node i listens on 127.0.0.(ip+i), HAProxy on 127.0.0.(ip+nodes);
	// every port is picked free, so tests may share addresses.
	ip int
	// prefix names the nodes prefix0, prefix1, prefix2.
	prefix string
	// accounts (JID, password) made with the adduser command before the
	// nodes start.
	accounts [][2]string
	// flags for every node, after the cluster's own.
	flags []string
	// noHAProxy: clients connect to the nodes' own addresses (which then
	// take no PROXY protocol header).
	noHAProxy bool
	// nodes is how many nodes to start; 0 means 3.
	nodes int
}

// communityNode is one example-server process of a cluster.
type communityNode struct {
	*communityProc // the current process; replaced by a restart
	name           string
	https          string   // the https listener (/health); empty without HAProxy
	args           []string // the process's flags, the same at every start
	starts         int
}

// startProcCluster starts the cluster and waits until every node hears
// every other and, with HAProxy, until HAProxy's checks mark them up.
func startProcCluster(t *testing.T, spec procClusterSpec) *procCluster {
	t.Helper()
	var hapBin string
	if !spec.noHAProxy {
		hapBin = needHAProxy(t)
	}
	pg := pgtest.Start(t)
	c := &procCluster{dsn: pg.Database(t), bin: buildCommunity(t), dir: t.TempDir()}
	c.certFile, c.keyFile = writeCertFiles(t, c.dir)
	secretFile := filepath.Join(c.dir, "cluster-secret")
	if err := os.WriteFile(secretFile, []byte("e2e cluster secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The accounts, and the schema, before the nodes start.
	admin := pgFlags(t, c.bin, c.dsn)
	for _, a := range spec.accounts {
		runCommunity(t, admin, "adduser", "-data", filepath.Join(c.dir, "admin"), "-password", a[1], a[0])
	}

	pick := addrPicker(t) // every address distinct, picked before any process binds it
	k := spec.nodes
	if k == 0 {
		k = 3
	}
	lbIP := fmt.Sprintf("127.0.0.%d", spec.ip+k)
	if !spec.noHAProxy {
		c.lb = pick(lbIP)
		for range k {
			c.fronts = append(c.fronts, pick(lbIP))
		}
	}
	routes := make([]string, k)
	for i := range routes {
		routes[i] = pick(fmt.Sprintf("127.0.0.%d", spec.ip+i))
	}
	for i := range k {
		host := fmt.Sprintf("127.0.0.%d", spec.ip+i)
		p := &communityProc{addr: pick(host), tls: pick(host), cert: c.certFile}
		n := &communityNode{communityProc: p, name: fmt.Sprintf("%s%d", spec.prefix, i)}
		if !spec.noHAProxy {
			n.https = pick(host)
		}
		n.args = []string{"-data", filepath.Join(c.dir, n.name), "-c2s", p.addr, "-c2s-tls", p.tls,
			"-s2s", "", "-http", "", "-https", n.https, "-log-level", "debug", "-new-account-age", "0",
			"-cert", c.certFile, "-key", c.keyFile, "-store", "postgres", "-pg-dsn", c.dsn,
			"-cluster", "yes", "-cluster-listen", routes[i], "-cluster-peers", strings.Join(routes, ","), "-node-name", n.name,
			"-cluster-secret-file", secretFile, "-cluster-heartbeat", "250ms", "-cluster-dead-after", "2s"}
		if !spec.noHAProxy {
			// Every client listener (https too: HAProxy's checks) takes
			// HAProxy's header; a drained node sends its clients back to
			// the round-robin frontend.
			n.args = append(n.args, "-proxy-protocol", "yes", "-drain-see-other-host", c.lb)
		}
		n.args = append(n.args, spec.flags...)
		c.nodes = append(c.nodes, n)
	}
	for _, n := range c.nodes {
		c.run(t, n)
	}
	for _, n := range c.nodes {
		for _, o := range c.nodes {
			if o != n {
				waitLogLine(t, n.communityProc, "cluster: node up", "node="+o.name)
			}
		}
	}
	if spec.noHAProxy {
		for _, n := range c.nodes {
			if !accepts(n.addr) {
				t.Fatalf("%s does not accept on %s", n.name, n.addr)
			}
		}
		return c
	}
	c.hap = startHAProxy(t, hapBin, c.haproxyConfig(), map[string]string{})
	for _, n := range c.nodes {
		c.hap.waitServer(t, "all/"+n.name, "UP")
	}
	return c
}

// haproxyConfig is HAProxy's configuration for the cluster (a template
// for startHAProxy): TCP mode, PROXY protocol v2 to the nodes; frontend
// lb balances round-robin over the nodes HAProxy's checks of /health
// (on the https listener, with a PROXY header: check-send-proxy) find up, and sends a
// connection whose node does not answer to another (redispatch); frontend
// fI goes to node I only, so that a test can put a client on a node.
func (c *procCluster) haproxyConfig() string {
	var b strings.Builder
	fmt.Fprintf(&b, `global
    stats socket {{.Sock}} mode 600 level admin
defaults
    mode tcp
    timeout connect 5s
    timeout client 10m
    timeout server 10m
    option redispatch
    retries 3
frontend lb
    bind %s
    default_backend all
backend all
    balance roundrobin
    option httpchk GET /health
    http-check expect status 200
    default-server send-proxy-v2 check-send-proxy inter 200 fall 1 rise 1
`, c.lb)
	for _, n := range c.nodes {
		_, port, _ := net.SplitHostPort(n.https)
		fmt.Fprintf(&b, "    server %s %s check port %s check-ssl verify none\n", n.name, n.addr, port)
	}
	for i, n := range c.nodes {
		fmt.Fprintf(&b, "frontend f%d\n    bind %s\n    default_backend b%d\nbackend b%d\n    server %s %s send-proxy-v2\n",
			i, c.fronts[i], i, i, n.name, n.addr)
	}
	return b.String()
}

// run starts node n's process with its flags (again, after it exited: the
// same data folder and addresses); its output is logged if the test fails.
func (c *procCluster) run(t *testing.T, n *communityNode) {
	t.Helper()
	p := &communityProc{logs: new(trefftest.LogBuffer), done: make(chan struct{}),
		addr: n.addr, tls: n.tls, cert: n.cert}
	n.starts++
	start := n.starts
	p.start(t, c.bin, n.args...)
	n.communityProc = p
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s output (start %d):\n%s", n.name, start, p.logs)
		}
	})
}

// restart starts node n again after its process exited, and waits until
// it and the other running nodes hear each other and, with HAProxy, its
// check finds /health up.
func (c *procCluster) restart(t *testing.T, n *communityNode) {
	t.Helper()
	select {
	case <-n.done:
	default:
		t.Fatalf("%s is still running", n.name)
	}
	var others []*communityNode
	var before []int
	for _, o := range c.nodes {
		if o == n || exited(o.communityProc) {
			continue
		}
		others = append(others, o)
		before = append(before, logLines(o.communityProc, "cluster: node up", "node="+n.name))
	}
	c.run(t, n)
	for i, o := range others {
		waitLogLine(t, n.communityProc, "cluster: node up", "node="+o.name)
		o.waitLog(t, before[i]+1, "cluster: node up", "node="+n.name)
	}
	if c.hap != nil {
		c.hap.waitServer(t, "all/"+n.name, "UP")
	}
}

// exited reports whether p has exited.
func exited(p *communityProc) bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// logLines counts p's output lines that hold every piece.
func logLines(p *communityProc, pieces ...string) int {
	c := 0
	for _, line := range strings.Split(p.logs.String(), "\n") {
		ok := true
		for _, s := range pieces {
			ok = ok && strings.Contains(line, s)
		}
		if ok {
			c++
		}
	}
	return c
}

// friends makes each pair of accounts subscribed to each other's
// presence, in the shared store.
func (c *procCluster) friends(t *testing.T, pairs ...string) {
	t.Helper()
	ctx := context.Background()
	st, err := pgstore.Open(ctx, c.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for i := 0; i+1 < len(pairs); i += 2 {
		for _, p := range [][2]string{{pairs[i], pairs[i+1]}, {pairs[i+1], pairs[i]}} {
			if _, err := st.PutRosterItem(ctx, p[0], storage.RosterItem{JID: p[1], Subscription: storage.SubBoth}); err != nil {
				t.Fatal(err)
			}
		}
	}
}
