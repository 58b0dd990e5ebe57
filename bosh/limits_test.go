package bosh_test

import (
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/bosh"
	"github.com/treff-im/treff/trefftest"
)

// TestSessionsPerAddress: a client address may hold MaxSessionsPerAddress
// sessions at once; one more is refused with the policy-violation
// terminal condition (HTTP 200, or 403 for a legacy client without
// 'ver'), other addresses and loopback are not affected, and a session
// that ends frees its place at once. No address reaches the logs.
func TestSessionsPerAddress(t *testing.T) {
	var logs trefftest.LogBuffer
	s := newSetup(t, &bosh.Handler{MaxSessionsPerAddress: 2}, func(srv *treff.Server) {
		srv.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	newClient := func(from string) *client {
		c := s.client(t)
		c.from = from
		return c
	}
	const refused = `^<body xmlns='http://jabber.org/protocol/httpbind' type='terminate' condition='policy-violation'/>$`
	const created = `^<body [^>]* sid='[^']+' .*<stream:features`

	a1, a2 := newClient("192.0.2.1:40001"), newClient("192.0.2.1:40002")
	match(t, "first session", a1.create(""), created)
	match(t, "second session", a2.create(""), created)
	// The port does not matter, nor how the address is written.
	for _, from := range []string{"192.0.2.1:40003", "[::ffff:192.0.2.1]:40004"} {
		c := newClient(from)
		match(t, "third session from "+from, c.create(""), refused)
		if c.sid != "" {
			t.Errorf("a refused session got a sid: %s", c.sid)
		}
	}
	// A legacy client (no 'ver') gets HTTP 403 (XEP-0124 17.1).
	status, resp := newClient("192.0.2.1:40005").post("<body xmlns='http://jabber.org/protocol/httpbind' rid='1' to='localhost' wait='60' hold='1'/>")
	if status != http.StatusForbidden {
		t.Errorf("legacy client: HTTP %d %q, want 403", status, resp)
	}
	match(t, "legacy client", resp, refused)

	// Other addresses, IPv6 too, and loopback are not affected.
	match(t, "another address", newClient("198.51.100.7:1").create(""), created)
	match(t, "IPv6", newClient("[2001:db8::1]:1").create(""), created)
	match(t, "IPv6 again", newClient("[2001:db8::1]:2").create(""), created)
	match(t, "IPv6 third", newClient("[2001:db8::1]:3").create(""), refused)
	for i := 0; i < 3; i++ {
		match(t, "loopback", s.client(t).create(""), created)
	}

	// A terminated session frees its place before its client reads the
	// answer: the client may start again at once.
	match(t, "terminate", a1.send(" type='terminate'", ""), `type='terminate'`)
	match(t, "after a terminate", newClient("192.0.2.1:40006").create(""), created)
	match(t, "full again", newClient("192.0.2.1:40007").create(""), refused)

	out := logs.String()
	if !strings.Contains(out, "too many sessions") {
		t.Errorf("the refusals were not logged:\n%s", out)
	}
	for _, a := range []string{"192.0.2.1", "2001:db8", "198.51.100.7", "127.0.0.1"} {
		if strings.Contains(out, a) {
			t.Errorf("the logs contain the address %s:\n%s", a, out)
		}
	}
}

// TestSessionsPerAddressOff: a negative MaxSessionsPerAddress does not
// cap.
func TestSessionsPerAddressOff(t *testing.T) {
	s := newSetup(t, &bosh.Handler{MaxSessionsPerAddress: -1})
	for i := 0; i < bosh.DefaultMaxSessionsPerAddress+1; i++ {
		c := s.client(t)
		c.from = "192.0.2.1:1"
		match(t, "session", c.create(""), `^<body [^>]* sid='[^']+' .*<stream:features`)
	}
}
