package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestXMPPJSFAST: xmpp.js logs alice in with her password over SASL2 and
// gets a FAST token (XEP-0484), then a second client of the same device
// logs in with the token alone (its password is wrong) with
// HT-SHA-256-NONE, and a client of another device cannot use the token.
func TestXMPPJSFAST(t *testing.T) {
	needXMPPJS(t)
	p, data := startAlice(t)
	es := xmppjs(t, p, "fast.mjs", "--jid", "alice@localhost", "--password", alicePW)

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
	// The token is nowhere in the database file.
	if db, err := os.ReadFile(filepath.Join(data, "treff.db")); err == nil && strings.Contains(string(db), "secret-token:fast-") {
		t.Error("treff.db holds a FAST token")
	}
}
