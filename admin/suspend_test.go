package admin_test

import (
	"strings"
	"testing"

	"github.com/treff-im/treff/admin"
	"github.com/treff-im/treff/trefftest"
)

// TestSuspend disables alice with XEP-0133's command: her session ends,
// her logins are refused with account-disabled and the reason, her data
// stays; re-enabled, she logs in again.
func TestSuspend(t *testing.T) {
	ts, _ := newServer(t, false)
	boss := ts.Login(t, "boss", "boss-secret", "r")
	alice := ts.Login(t, "alice", "alice-secret", "r")

	if got := run(t, alice, admin.NodeDisableUser, ""); !strings.Contains(got, "<forbidden") {
		t.Errorf("alice ran disable-user: %s", got)
	}
	got := run(t, boss, admin.NodeDisableUser, field("accountjids", "alice@localhost", "nobody@localhost")+field("reason", "spam &amp; bots"))
	if !strings.Contains(got, "Disabled: alice@localhost. No such account: nobody@localhost.") {
		t.Fatalf("disable-user: %s", got)
	}
	alice.Expect(`<policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text [^>]*>your account was suspended: spam &amp; bots</text>`)
	alice.ExpectClosed()

	c := ts.DialTLS(t)
	c.Send(trefftest.Header("localhost"))
	c.Expect(`</stream:features>`)
	c.Send(trefftest.PlainAuth("alice", "alice-secret"))
	c.Expect(`<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><account-disabled/><text xml:lang='en'>This account is suspended: spam &amp; bots</text></failure>`)
	// A wrong password still says not-authorized: suspension tells
	// nobody whether a guess was right... but neither does it help: the
	// right one is refused too.
	c.Send(trefftest.PlainAuth("alice", "wrong"))
	c.Expect(`<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>`)

	if got := run(t, boss, admin.NodeDisableUser, field("accountjids", "boss@localhost")); !strings.Contains(got, "<not-allowed") {
		t.Errorf("boss disabled himself: %s", got)
	}
	if got := run(t, boss, admin.NodeReenableUser, field("accountjids", "alice@localhost")); !strings.Contains(got, "Re-enabled: alice@localhost.") {
		t.Fatalf("reenable-user: %s", got)
	}
	ts.Login(t, "alice", "alice-secret", "back")
}
