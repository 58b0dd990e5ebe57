package e2e

import (
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/treff-im/treff/internal/pgtest"
	"github.com/treff-im/treff/trefftest"
)

// TestACMEPebbleTwoNodes: two example-server nodes of acme.test on one
// PostgreSQL database (-store postgres) with -acme against Pebble. Node A
// starts first and obtains the certificate (tls-alpn-01 on its https
// listener, the one Pebble validates at); node B, started after, loads
// it from the store and presents it (slixmpp checks the serial) without
// ordering one. A renewal on node A (SIGHUP with the test knob
// TREFF_ACME_RENEW_ON_HUP) reaches node B when it re-reads the store
// (SIGHUP; otherwise within a minute), without a restart and without an
// order of its own.
func TestACMEPebbleTwoNodes(t *testing.T) {
	needPebble(t)
	needSlixmpp(t)
	const (
		domain = "acme.test"
		pw     = "acme-pass-2"
	)
	pg := pgtest.Start(t)
	bin := pgFlags(t, buildCommunity(t), pg.Database(t))
	dir := t.TempDir()
	caFile := filepath.Join(dir, "pebble-https-ca.pem")
	makeCerts(t, caFile, "pebble https CA", dir, "localhost")
	zone := map[string]dnsRecord{}
	lo := netip.MustParseAddr("127.0.0.1")
	for _, n := range []string{domain, "conference." + domain, "pubsub." + domain, "upload." + domain} {
		zone[n] = dnsRecord{a: lo}
	}
	dns := startTestDNS(t, zone)
	// Pebble validates at node A's https listener; node B's is elsewhere,
	// so an order of node B's own would fail.
	httpsA, httpsB, unusedHTTP := trefftest.FreeAddr(t), trefftest.FreeAddr(t), trefftest.FreeAddr(t)
	_, portA, _ := net.SplitHostPort(httpsA)
	_, httpPort, _ := net.SplitHostPort(unusedHTTP)
	peb := startPebble(t, dir, caFile, dns, httpPort, portA)
	env := []string{"SSL_CERT_FILE=" + caFile, "TREFF_ACME_RENEW_ON_HUP=1"}
	runCommunity(t, bin, "adduser", "-data", t.TempDir(), "-domain", domain, "-password", pw, "alice@"+domain)
	node := func(https string) *communityProc {
		return startCertServer(t, bin, t.TempDir(), env, "-domain", domain, "-http", "", "-https", https,
			"-acme", "yes", "-acme-directory", peb.directory)
	}
	login := func(p *communityProc) certEvent {
		t.Helper()
		es := runCerts(t, noPause(t), "login", "--addr", p.tls, "--jid", "alice@"+domain, "--password", pw, "--ca", peb.roots)
		checkPong(t, es, "only")
		return certOf(t, es, "only")
	}

	a := node(httpsA)
	first := loggedSerial(t, a, "certificate obtained", 1)
	b := node(httpsB)
	if got := loggedSerial(t, b, "certificate loaded from the store", 1); got != first {
		t.Errorf("node B loaded serial %s from the store, want node A's %s", got, first)
	}
	if c := login(b); c.Serial != first || !strings.HasPrefix(c.Issuer, "Pebble Intermediate CA") {
		t.Errorf("node B presented serial %s from %q, want node A's %s from Pebble", c.Serial, c.Issuer, first)
	}

	// Node A renews; node B picks the renewal up from the store.
	if err := a.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	renewed := loggedSerial(t, a, "certificate renewed", 1)
	if err := b.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if got := loggedSerial(t, b, "certificate loaded from the store", 2); got != renewed || renewed == first {
		t.Errorf("node B loaded serial %s after the renewal, want node A's renewed %s (first %s)", got, renewed, first)
	}
	if c := login(b); c.Serial != renewed {
		t.Errorf("after the renewal node B presented serial %s, want %s", c.Serial, renewed)
	}
	if c := login(a); c.Serial != renewed {
		t.Errorf("after the renewal node A presented serial %s, want %s", c.Serial, renewed)
	}
	for _, msg := range []string{"certificate obtained", "certificate renewed", "answering a challenge"} {
		if strings.Contains(b.logs.String(), msg) {
			t.Errorf("node B ordered a certificate of its own (%q):\n%s", msg, b.logs)
		}
	}
	a.stop(t)
	b.stop(t)
}
