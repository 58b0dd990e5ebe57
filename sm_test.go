package treff_test

import (
	"regexp"
	"testing"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/trefftest"
)

const nsSM = "urn:xmpp:sm:3"

// enableResume enables stream management with resumption and returns the
// resumption id.
func enableResume(t *testing.T, c *trefftest.Client) string {
	t.Helper()
	c.Send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
	m := c.Expect(`<enabled xmlns='urn:xmpp:sm:3' id='[^']+' resume='true' max='\d+'/>`)
	return regexp.MustCompile(`id='([^']+)'`).FindStringSubmatch(m)[1]
}

func TestSMHandledCountWraps(t *testing.T) {
	ts := newTestServer(t, nil)
	alice := ts.Login(t, "alice", "alicepw", "phone")
	alice.Send("<enable xmlns='urn:xmpp:sm:3'/>")
	alice.Expect(`<enabled`)
	treff.SetHandled(ts.Session(jid.MustParse("alice@localhost/phone")), 1<<32-1)
	alice.Send("<presence/><presence/>")
	alice.Send("<r xmlns='urn:xmpp:sm:3'/>")
	alice.Expect(`<a xmlns='urn:xmpp:sm:3' h='1'/>`)
}
