package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/treff-im/treff/internal/pgtest"
	"github.com/treff-im/treff/trefftest"
)

// Federation from two nodes of one domain (issue 22): two example-server
// nodes serve treff.test with -store postgres on one database, each on
// its own loopback address, and Prosody 0.12 serves prosody.test:
//
//	treff.test node A   127.0.26.1   where alice logs in first; opens its own s2s stream to Prosody
//	treff.test node B   127.0.26.2   where Prosody's hosts file points treff.test
//	prosody.test        127.0.26.3   Prosody, libunbound with the test's hosts file
//
// Treff's certificate comes from a CA Prosody does not trust, and Prosody
// takes dialback from treff.test (s2s_insecure_domains): node A's stream
// to Prosody authenticates with Server Dialback (XEP-0220), and Prosody
// checks A's key at the address treff.test resolves to, node B, which
// never saw A's stream and answers for it only because both nodes read
// the same dialback secret (XEP-0185) from PostgreSQL. Prosody's own
// stream for its answer lands on node B too; without cluster routing B
// cannot reach alice's session on A, so the answer goes to offline
// storage in PostgreSQL, and alice gets it when she logs in on B.

// The addresses of the test (their own, so that the test does not meet
// the other federation tests' servers).
const (
	pgFedNodeA   = "127.0.26.1"
	pgFedNodeB   = "127.0.26.2"
	pgFedProsody = "127.0.26.3"
)

// TestFederationTwoNodesPostgres: see the top of this file.
func TestFederationTwoNodesPostgres(t *testing.T) {
	needProsody(t, "two-node federation test", pgFedNodeA, pgFedNodeB, pgFedProsody)
	pg := pgtest.Start(t)
	dsn := pg.Database(t)

	// The CA Prosody trusts signs prosody.test's certificate (which the
	// Treff nodes check); another signs treff.test's, which only the
	// clients trust.
	dir, err := os.MkdirTemp("", "treff-pgfed-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	f := &federation{dir: dir, caFile: filepath.Join(dir, "ca.pem"), ca2File: filepath.Join(dir, "ca2.pem"), clientCAs: filepath.Join(dir, "client-cas.pem")}
	makeCerts(t, f.caFile, "Treff two-node test CA (Prosody's)", dir, fedProsody)
	makeCerts(t, f.ca2File, "Treff two-node test CA (Treff's, trusted by no server)", dir, fedTreff)
	var bundle []byte
	for _, ca := range []string{f.caFile, f.ca2File} {
		b, err := os.ReadFile(ca)
		if err != nil {
			t.Fatal(err)
		}
		bundle = append(bundle, b...)
	}
	if err := os.WriteFile(f.clientCAs, bundle, 0o644); err != nil {
		t.Fatal(err)
	}
	f.prosodyAddrs = map[string]string{
		fedProsody:     pgFedProsody,
		fedTreff:       pgFedNodeB,
		fedTreffMUC:    pgFedNodeB,
		fedTreffPubsub: pgFedNodeB,
	}
	f.prosodyInsecure = fedTreff

	bin := pgFlags(t, buildCommunity(t), dsn)
	runCommunity(t, bin, "adduser", "-data", t.TempDir(), "-domain", fedTreff, "-password", fedPassword, "alice@"+fedTreff)
	dataA, dataB := t.TempDir(), t.TempDir()
	nodeA := startTreffNode(t, bin, "node A", pgFedNodeA, dataA, f)
	nodeB := startTreffNode(t, bin, "node B", pgFedNodeB, dataB, f)
	f.startProsody(t, "pat")

	body := uniqueBody("two nodes")
	es := f.fedClient(t, "nodes", "--body", body,
		"--a-jid", "alice@"+fedTreff, "--a-password", fedPassword, "--a-addr", pgFedNodeA+":5222",
		"--b-jid", "pat@"+fedProsody, "--b-password", fedPassword, "--b-addr", pgFedProsody+":5222",
		"--c-addr", pgFedNodeB+":5222")
	aFull := es.one(t, "login", "a").JID
	bFull := es.one(t, "login", "b").JID

	// alice's message, sent on node A, reached pat.
	got := false
	for _, m := range es.of("message", "b") {
		if m.Body == "from a: "+body && m.From == aFull && m.Type == "chat" {
			got = true
		}
	}
	if !got {
		t.Errorf("pat did not get alice's message from %s: %+v", aFull, es.of("message", "b"))
	}
	// Node A opened the stream and authenticated it with dialback; node
	// B, not A, answered Prosody's check of A's key, as valid.
	hasAuth := func(p *communityProc, dir, method string) bool {
		for _, a := range treffS2SAuths(p.logs.String()) {
			if a.domain == fedProsody && a.direction == dir && (method == "" || a.method == method) {
				return true
			}
		}
		return false
	}
	if !hasAuth(nodeA, "out", "dialback") {
		t.Errorf("node A logged no outgoing stream to %s authenticated with dialback: %+v", fedProsody, treffS2SAuths(nodeA.logs.String()))
	}
	checked := func(p *communityProc) (out []map[string]string) {
		for _, line := range strings.Split(p.logs.String(), "\n") {
			if kv := logfmt(line); kv["msg"] == "s2s dialback key checked" {
				out = append(out, kv)
			}
		}
		return out
	}
	valid := false
	for _, kv := range checked(nodeB) {
		if kv["domain"] == fedProsody && kv["local"] == fedTreff && kv["type"] == "valid" && kv["id"] != "" {
			valid = true
		} else {
			t.Errorf("node B checked a key other than node A's: %v", kv)
		}
	}
	if !valid {
		t.Errorf("node B answered no dialback check of %s as valid", fedProsody)
	}
	if kv := checked(nodeA); len(kv) > 0 {
		t.Errorf("node A answered dialback checks itself (Prosody should reach treff.test at node B): %v", kv)
	}
	// Prosody's answer came in at node B, on Prosody's own stream.
	if !hasAuth(nodeB, "in", "") {
		t.Errorf("node B logged no incoming stream from %s", fedProsody)
	}
	// pat's ping of alice's full JID reached node B, which has no
	// session of alice's: an error, from node B, not a result.
	var ping struct {
		SentTo string       `json:"sent_to"`
		Type   string       `json:"type"`
		Error  *stanzaError `json:"error"`
	}
	es.one(t, "ping", "b").decode(t, &ping)
	if ping.SentTo != aFull || ping.Type != "error" {
		t.Errorf("pat's ping of %s: type %q (error %+v), want an error (no cross-node routing)", ping.SentTo, ping.Type, ping.Error)
	}
	// pat's message waited in PostgreSQL and reached alice on node B,
	// with a delay stamp (offline storage).
	got = false
	for _, m := range es.of("message", "a2") {
		if m.Body == "from b: "+body && strings.HasPrefix(m.From, "pat@"+fedProsody) {
			got = true
		}
	}
	if !got {
		t.Errorf("alice on node B did not get pat's message from %s: %+v", bFull, es.of("message", "a2"))
	}
	if len(es.of("delay", "a2")) == 0 {
		t.Errorf("pat's message reached alice on node B without a delay stamp: not from offline storage")
	}
	// The secrets are in the store, not in the nodes' data folders.
	for _, d := range []string{dataA, dataB} {
		for _, file := range []string{"s2s-secret", "fast-secret"} {
			if _, err := os.Stat(filepath.Join(d, file)); err == nil {
				t.Errorf("%s in a data folder: with -store postgres it belongs in the store", file)
			}
		}
	}
	if !t.Failed() {
		t.Logf("dialback key of node A checked at node B; Prosody's answer stored offline by node B and delivered to alice on node B")
	}
}

// startTreffNode starts one node of treff.test with -store postgres (bin
// carries the flags) on ip's standard ports, with s2s to Prosody.
func startTreffNode(t *testing.T, bin, name, ip, data string, f *federation) *communityProc {
	t.Helper()
	certDir := filepath.Join(f.dir, fedTreff)
	p := &communityProc{logs: new(trefftest.LogBuffer), done: make(chan struct{}), addr: ip + ":5222", cert: f.ca2File}
	p.start(t, bin, "-data", data, "-domain", fedTreff,
		"-cert", filepath.Join(certDir, "cert.pem"), "-key", filepath.Join(certDir, "key.pem"),
		"-c2s", p.addr, "-c2s-tls", "",
		"-s2s", ip+":5269", "-s2s-tls", "", "-s2s-ca", f.caFile,
		"-s2s-resolve", fmt.Sprintf("%s=%s:5269", fedProsody, pgFedProsody),
		"-http", "", "-https", "", "-new-account-age", "0",
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
