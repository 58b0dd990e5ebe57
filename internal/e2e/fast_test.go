package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/treff-im/treff/internal/pgtest"
)

// TestXMPPJSFAST: xmpp.js logs alice in with her password over SASL2 and
// gets a FAST token (XEP-0484), then a second client of the same device
// logs in with the token alone (its password is wrong) with
// HT-SHA-256-NONE, and a client of another device cannot use the token.
func TestXMPPJSFAST(t *testing.T) {
	needXMPPJS(t)
	p, data := startAlice(t)
	es := xmppjs(t, p, "fast.mjs", "--jid", "alice@localhost", "--password", alicePW)
	checkFAST(t, es)
	// The token is nowhere in the database file.
	if db, err := os.ReadFile(filepath.Join(data, "treff.db")); err == nil && strings.Contains(string(db), "secret-token:fast-") {
		t.Error("treff.db holds a FAST token")
	}
}

// TestXMPPJSFASTTwoNodes: the same across two nodes of one domain on one
// PostgreSQL database (-store postgres): the token node A hands out
// logs alice in at node B, because both derive tokens from the FAST
// secret they share through the database; a device that does not hold
// it is refused at node B too.
func TestXMPPJSFASTTwoNodes(t *testing.T) {
	needXMPPJS(t)
	pg := pgtest.Start(t)
	bin := pgFlags(t, buildCommunity(t), pg.Database(t))
	runCommunity(t, bin, "adduser", "-data", t.TempDir(), "-password", alicePW, "alice@localhost")
	dataA := t.TempDir()
	a := startCommunity(t, bin, dataA)
	// Node B presents node A's self-signed certificate (copied into its
	// data folder), which the client trusts.
	dataB := t.TempDir()
	for _, f := range []string{"cert.pem", "key.pem"} {
		b, err := os.ReadFile(filepath.Join(dataA, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dataB, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	b := startCommunity(t, bin, dataB)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("node A output:\n%s\nnode B output:\n%s", a.logs, b.logs)
		}
	})
	es := xmppjs(t, a, "fast.mjs", "--jid", "alice@localhost", "--password", alicePW, "--addr2", b.addr)
	checkFAST(t, es)
	// The password login was node A's, the token logins node B's.
	a.waitLog(t, 1, "alice@localhost/fast-first")
	b.waitLog(t, 1, "alice@localhost/fast-second")
	for _, who := range []string{"fast-second", "fast-third"} {
		if strings.Contains(a.logs.String(), "alice@localhost/"+who) {
			t.Errorf("node A saw %s, which should have gone to node B", who)
		}
	}
}

// checkFAST checks the events of fast.mjs: a password login that asks
// for a token, a token login with HT-SHA-256-NONE, a token refused to
// another device.
func checkFAST(t *testing.T, es events) {
	t.Helper()

	type login struct {
		JID          string `json:"jid"`
		Mech         string `json:"mech"`
		Fast         bool   `json:"fast"`
		RequestToken bool   `json:"request_token"`
	}
	var first, second login
	es.one(t, "login", "first").decode(t, &first)
	es.one(t, "login", "second").decode(t, &second)
	if !strings.HasPrefix(first.JID, "alice@localhost/") || first.Fast || !first.RequestToken || strings.HasPrefix(first.Mech, "HT-") {
		t.Errorf("password login %+v, want a password mechanism with <request-token/>", first)
	}
	if !strings.HasPrefix(second.JID, "alice@localhost/") || !second.Fast || second.Mech != "HT-SHA-256-NONE" {
		t.Errorf("token login %+v, want HT-SHA-256-NONE with <fast/>", second)
	}
	var tok struct {
		Mechanism string `json:"mechanism"`
		Length    int    `json:"length"`
	}
	es.one(t, "token", "first").decode(t, &tok)
	if tok.Mechanism != "HT-SHA-256-NONE" || tok.Length < 22 {
		t.Errorf("token %+v", tok)
	}
	var refused struct {
		Condition string `json:"condition"`
	}
	es.one(t, "refused", "third").decode(t, &refused)
	if refused.Condition != "not-authorized" {
		t.Errorf("another device: %+v, want not-authorized", refused)
	}
}
