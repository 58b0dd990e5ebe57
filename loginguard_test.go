package treff_test

import (
	"context"
	"encoding/base64"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/im"
	"github.com/treff-im/treff/saslmech"
	"github.com/treff-im/treff/trefftest"
)

// guard is a LoginGuard that refuses bob and records what it is told.
type guard struct {
	mu     sync.Mutex
	start  []treff.LoginAttempt
	allow  []treff.LoginAttempt
	failed []treff.LoginAttempt
}

func (g *guard) Name() string { return "test-guard" }

func (g *guard) Setup(ctx context.Context, r *treff.Registry) error {
	r.GuardLogins(g)
	return nil
}

func (g *guard) Start(ctx context.Context, a treff.LoginAttempt) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.start = append(g.start, a)
	if a.Mechanism == "SCRAM-SHA-1" {
		return &saslmech.Error{Condition: "temporary-auth-failure", Text: "try again later"}
	}
	return nil
}

func (g *guard) Allow(ctx context.Context, a treff.LoginAttempt) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.allow = append(g.allow, a)
	if a.User.Localpart() == "bob" {
		return &saslmech.Error{Condition: "account-disabled", Text: "suspended: spam & <bots>"}
	}
	return nil
}

func (g *guard) Failed(ctx context.Context, a treff.LoginAttempt) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.failed = append(g.failed, a)
	return time.Millisecond
}

// TestLoginGuard checks that a LoginGuard sees every attempt, with the
// client's address, the account tried and the mechanism, refuses a login
// whose password was right with its own condition and text, over RFC 6120
// SASL and SASL2 alike, and that a refusal is not reported as a failure.
func TestLoginGuard(t *testing.T) {
	g := &guard{}
	ts := trefftest.NewServer(t, func(s *treff.Server) {
		s.Modules = append(im.Modules(), g)
	})
	ts.AddUser(t, "alice", "alicepw")
	ts.AddUser(t, "bob", "bobpw")
	loopback := netip.MustParseAddr("127.0.0.1")

	// A wrong password: Failed, with the account tried.
	c := ts.DialTLS(t)
	c.Send(trefftest.Header("localhost"))
	c.Expect(`</stream:features>`)
	c.Send(trefftest.PlainAuth("alice", "wrong"))
	c.Expect(`<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>`)
	// The right one: Allow.
	c.Send(trefftest.PlainAuth("alice", "alicepw"))
	c.Expect(`<success[^>]*/>`)

	// bob's right password, refused with the guard's condition and
	// (escaped) text, on RFC 6120 SASL ...
	b := ts.DialTLS(t)
	b.Send(trefftest.Header("localhost"))
	b.Expect(`</stream:features>`)
	b.Send(trefftest.PlainAuth("bob", "bobpw"))
	b.Expect(`<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><account-disabled/><text xml:lang='en'>suspended: spam &amp; &lt;bots&gt;</text></failure>`)
	// ... and on SASL2.
	b2 := ts.DialTLS(t)
	b2.Send(trefftest.Header("localhost"))
	b2.Expect(`</stream:features>`)
	b2.Send("<authenticate xmlns='urn:xmpp:sasl:2' mechanism='PLAIN'><initial-response>AGJvYgBib2Jwdw==</initial-response></authenticate>")
	b2.Expect(`<failure xmlns='urn:xmpp:sasl:2'><account-disabled xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/><text>suspended: spam &amp; &lt;bots&gt;</text></failure>`)

	// An attempt Start refuses (here: any with SCRAM-SHA-1) gets the
	// guard's answer without the mechanism running, and is a failure.
	s := ts.DialTLS(t)
	s.Send(trefftest.Header("localhost"))
	s.Expect(`</stream:features>`)
	s.Send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-1'>" + base64.StdEncoding.EncodeToString([]byte("n,,n=alice,r=abcdefgh")) + "</auth>")
	s.Expect(`<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><temporary-auth-failure/><text xml:lang='en'>try again later</text></failure>`)
	s.Send("<authenticate xmlns='urn:xmpp:sasl:2' mechanism='SCRAM-SHA-1'><initial-response>" + base64.StdEncoding.EncodeToString([]byte("n,,n=alice,r=abcdefgh")) + "</initial-response></authenticate>")
	s.Expect(`<failure xmlns='urn:xmpp:sasl:2'><temporary-auth-failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/><text>try again later</text></failure>`)

	// A -PLUS attempt refused for its binding alone (a client that knows
	// only tls-unique) guesses nothing: no failure for the guards.
	p := ts.DialTLS(t)
	p.Send(trefftest.Header("localhost"))
	p.Expect(`</stream:features>`)
	p.Send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256-PLUS'>" + base64.StdEncoding.EncodeToString([]byte("p=tls-unique,,n=alice,r=abcdefgh")) + "</auth>")
	p.Expect(`<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>`)

	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.start) != 7 {
		t.Errorf("Start called %d times, want 7: %+v", len(g.start), g.start)
	}
	if len(g.failed) != 3 {
		t.Fatalf("Failed called %d times, want 3 (a refused login is no failure, a refused start is): %+v", len(g.failed), g.failed)
	}
	for _, f := range g.failed[1:] {
		if f.Mechanism != "SCRAM-SHA-1" || f.Condition != "temporary-auth-failure" || f.User.String() != "" {
			t.Errorf("Failed after a refused start got %+v", f)
		}
	}
	if f := g.failed[0]; f.Addr != loopback || f.User.String() != "alice@localhost" || f.Mechanism != "PLAIN" || f.Condition != "not-authorized" {
		t.Errorf("Failed got %+v", f)
	}
	if len(g.allow) != 3 {
		t.Fatalf("Allow called %d times, want 3: %+v", len(g.allow), g.allow)
	}
	for i, want := range []string{"alice@localhost", "bob@localhost", "bob@localhost"} {
		if a := g.allow[i]; a.User.String() != want || a.Addr != loopback || a.Mechanism != "PLAIN" {
			t.Errorf("Allow[%d] got %+v, want user %s", i, a, want)
		}
	}
}
