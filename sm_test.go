package treff_test

import (
	"regexp"
	"testing"
	"time"

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

// waitFor polls cond for up to 5 seconds. Use it only for a state change
// that no hook or reply announces (hibernation of a resumable session);
// trefftest.ClosedSessions announces the end of a session.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for i := 0; i < 500; i++ {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond) // no event to wait for: see above
	}
	t.Fatalf("timed out waiting for %s", what)
}

// waitLost waits until the server noticed that a resumable session lost
// its connection: it hibernates, or (with a short ResumeTimeout) it has
// already expired.
func waitLost(t *testing.T, ts *trefftest.Server, full string) {
	t.Helper()
	waitFor(t, "the lost connection of "+full, func() bool {
		s := ts.Session(jid.MustParse(full))
		return s == nil || s.Hibernating()
	})
}
