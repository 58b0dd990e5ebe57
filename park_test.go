package treff_test

import (
	"strings"
	"testing"
	"time"

	"github.com/treff-im/treff"
)

// A session that stays quiet parks its reader; whatever the client sends
// next, whole stanzas, stanzas split across TLS records and pauses, many
// records in one segment, or whitespace, is read as before.
func TestParkedSessions(t *testing.T) {
	ts := newTestServer(t, func(s *treff.Server) { treff.SetParkAfter(s, 100*time.Millisecond) })
	alice := ts.Login(t, "alice", "alicepw", "a")
	bob := ts.Login(t, "bob", "bobpw", "b")
	alice.Send("<presence/>")
	bob.Send("<presence/>")
	syncServer(alice)
	syncServer(bob)
	parked := func(want int64) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for treff.Parks(ts.Server) < want {
			if time.Now().After(deadline) {
				t.Fatalf("parked %d times, want at least %d", treff.Parks(ts.Server), want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	parked(2)

	// A whole stanza wakes the parked session.
	before := treff.Parks(ts.Server)
	bob.Send("<message to='alice@localhost/a' id='m1'><body>one</body></message>")
	alice.Expect(`id='m1'.*?<body>one</body>`)
	parked(before + 1)

	// A stanza split across two TLS records with a pause longer than the
	// park time in between: the session does not park in mid-stanza.
	bob.Send("<message to='alice@localhost/a' id='m2'><bo")
	time.Sleep(300 * time.Millisecond)
	bob.Send("dy>two</body></message>")
	alice.Expect(`id='m2'.*?<body>two</body>`)

	// Many records in a row, each delivered once.
	for i := 0; i < 50; i++ {
		bob.Send("<message to='alice@localhost/a'><body>n</body></message>")
	}
	bob.Send("<message to='alice@localhost/a' id='last'><body>last</body></message>")
	if got := alice.Expect(`(?s).*id='last'`); strings.Count(got, "<body>n</body>") != 50 {
		t.Errorf("got %d of 50 messages", strings.Count(got, "<body>n</body>"))
	}
	// Whitespace keepalives between parks, then a stanza.
	time.Sleep(300 * time.Millisecond)
	bob.Send(" ")
	time.Sleep(300 * time.Millisecond)
	bob.Send("\n")
	bob.Send("<iq type='get' id='p' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
	bob.Expect(`id='p'`)
}

// A parked session still ends at the idle timeout and at shutdown.
func TestParkedSessionTimeouts(t *testing.T) {
	ts := newTestServer(t, func(s *treff.Server) {
		treff.SetParkAfter(s, 400*time.Millisecond)
		s.IdleTimeout = 500 * time.Millisecond
	})
	alice := ts.Login(t, "alice", "alicepw", "a")
	start := time.Now()
	alice.Expect(`<connection-timeout`)
	// Parked after 400ms of quiet, it times out 500ms after the last data,
	// not 500ms after parking.
	if d := time.Since(start); d < 400*time.Millisecond || d > 800*time.Millisecond {
		t.Errorf("idle timeout after %v, want about 500ms", d)
	}
	if treff.Parks(ts.Server) == 0 {
		t.Error("the session never parked")
	}
}
