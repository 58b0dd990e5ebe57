package treff_test

import (
	"encoding/base64"
	"testing"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/im"
	"github.com/treff-im/treff/trefftest"
)

// TestLoginGuardBindingRefused: a client that asks a -PLUS mechanism for
// a channel binding the stream does not offer (tls-unique on TLS 1.3, as
// slixmpp 1.8 and nbxmpp 4 do before falling back to plain SCRAM on every
// login) is refused before any credential is looked at; the login guards
// are not told of a failure (authlimit would count it as a guess and hold
// it back), over RFC 6120 SASL and SASL2 alike. Found by
// internal/e2e TestAbuseLocal/UnboundLogins.
func TestLoginGuardBindingRefused(t *testing.T) {
	g := &guard{}
	ts := trefftest.NewServer(t, func(s *treff.Server) {
		s.Modules = append(im.Modules(), g)
	})
	ts.AddUser(t, "alice", "alicepw")
	first := base64.StdEncoding.EncodeToString([]byte("p=tls-unique,,n=alice,r=abcdefghijkl"))

	c := ts.DialTLS(t)
	c.Send(trefftest.Header("localhost"))
	c.Expect(`<mechanism>SCRAM-SHA-256-PLUS</mechanism>.*</stream:features>`)
	c.Send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256-PLUS'>" + first + "</auth>")
	c.Expect(`<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>`)
	c.Send("<authenticate xmlns='urn:xmpp:sasl:2' mechanism='SCRAM-SHA-256-PLUS'><initial-response>" + first + "</initial-response></authenticate>")
	c.Expect(`<failure xmlns='urn:xmpp:sasl:2'><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>`)
	// A wrong password still is a failure.
	c.Send(trefftest.PlainAuth("alice", "wrong"))
	c.Expect(`<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>`)

	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.start) != 3 {
		t.Errorf("Start called %d times, want 3: %+v", len(g.start), g.start)
	}
	if len(g.failed) != 1 || g.failed[0].Mechanism != "PLAIN" {
		t.Errorf("Failed told of %+v, want only the wrong password (PLAIN): a refused channel binding tried no credential", g.failed)
	}
}
