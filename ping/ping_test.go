package ping_test

import (
	"context"
	"fmt"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
	"weak"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/ping"
	"github.com/treff-im/treff/trefftest"
)

// The server pings a silent client; an answer keeps the session, silence
// closes it with connection-timeout.
func TestServerPings(t *testing.T) {
	ts := trefftest.NewServer(t, func(s *treff.Server) {
		s.Modules = []treff.Module{&ping.Module{Interval: 200 * time.Millisecond, Timeout: 300 * time.Millisecond}}
	})
	ts.AddUser(t, "alice", "pw")
	ts.AddUser(t, "bob", "pw")

	alive := ts.Login(t, "alice", "pw", "alive")
	re := regexp.MustCompile(`<iq type='get' id='(ping-[0-9a-f]+)' from='localhost' to='alice@localhost/alive'><ping xmlns='urn:xmpp:ping'/></iq>`)
	for i := 0; i < 3; i++ {
		id := re.FindStringSubmatch(alive.Expect(re.String()))[1]
		if strings.Contains(alive.Pending(), "connection-timeout") {
			t.Fatal("answering client was disconnected")
		}
		alive.Send("<iq type='result' id='" + id + "' to='localhost'/>")
	}

	dead := ts.Login(t, "bob", "pw", "dead")
	dead.Expect(`<ping xmlns='urn:xmpp:ping'/>`)
	dead.Expect(`<connection-timeout xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>`)
}

// The server answers pings to itself and, for an account, to the bare JID
// of any local user (XEP-0199 4.2 and 4.3); a ping is a get.
func TestAnswersPings(t *testing.T) {
	ts := trefftest.NewServer(t, func(s *treff.Server) {
		s.Modules = []treff.Module{&ping.Module{Interval: -1}}
	})
	ts.AddUser(t, "alice", "pw")
	ts.AddUser(t, "bob", "pw")
	c := ts.Login(t, "alice", "pw", "r")
	for _, tc := range []struct{ to, want string }{
		{"localhost", `<iq type='result' id='p' [^>]*/>`},
		{"bob@localhost", `<iq type='result' id='p' [^>]*/>`},
		{"alice@localhost", `<iq type='result' id='p' [^>]*/>`},
	} {
		c.Send("<iq type='get' id='p' to='" + tc.to + "'><ping xmlns='urn:xmpp:ping'/></iq>")
		got := c.Expect(tc.want)
		if !strings.Contains(got, "from='"+tc.to+"'") || !strings.Contains(got, "to='alice@localhost/r'") {
			t.Errorf("ping to %s answered with %s", tc.to, got)
		}
	}
	c.Send("<iq type='set' id='s' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
	c.Expect(`<iq type='error' id='s'[^>]*>.*<error type='modify'><bad-request xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>`)
	// A ping to an account that does not exist is not answered for it.
	c.Send("<iq type='get' id='n' to='nobody@localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
	c.Expect(`<iq type='error' id='n'[^>]*>.*<service-unavailable `)
}

// Module.Ping: any answer, a result or an error, proves the client is
// alive; silence until the context ends is an error.
func TestPingReplies(t *testing.T) {
	m := &ping.Module{Interval: -1, Timeout: time.Minute}
	ts := trefftest.NewServer(t, func(s *treff.Server) { s.Modules = []treff.Module{m} })
	ts.AddUser(t, "alice", "pw")
	c := ts.Login(t, "alice", "pw", "r")
	s := ts.Session(jid.MustParse(c.JID))
	if s == nil {
		t.Fatal("no session")
	}
	re := regexp.MustCompile(`<iq type='get' id='(ping-[0-9a-f]{16})' from='localhost' to='alice@localhost/r'><ping xmlns='urn:xmpp:ping'/></iq>`)
	ping := func(ctx context.Context) chan error {
		done := make(chan error, 1)
		go func() { done <- m.Ping(ctx, s) }()
		return done
	}
	for _, answer := range []string{
		"<iq type='result' id='%s' to='localhost'/>",
		"<iq type='error' id='%s' to='localhost'><ping xmlns='urn:xmpp:ping'/><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
	} {
		done := ping(context.Background())
		id := re.FindStringSubmatch(c.Expect(re.String()))[1]
		c.Send(fmt.Sprintf(answer, id))
		if err := <-done; err != nil {
			t.Errorf("answer %q: Ping = %v", answer, err)
		}
	}
	// Silence: the caller's context ends before any answer.
	ctx, cancel := context.WithCancel(context.Background())
	done := ping(ctx)
	c.Expect(re.String())
	cancel()
	if err := <-done; err == nil {
		t.Error("Ping succeeded without an answer")
	}
	// The session is not closed by Ping itself.
	c.Sync()
}

// TestEndedSessionReleased checks that a session that ended is not kept
// by its ping timer: before, every login kept its session, connection and
// buffers (about 13 KiB) for up to an interval (5 minutes by default)
// after it logged out, so a client logging in and out in a loop grew the
// server without bound.
func TestEndedSessionReleased(t *testing.T) {
	var mu sync.Mutex
	var sessions []weak.Pointer[treff.Session]
	var ended []<-chan struct{}
	ts := trefftest.NewServer(t, func(s *treff.Server) {
		s.Modules = []treff.Module{&ping.Module{Interval: time.Hour}, hookModule{func(ctx context.Context, s *treff.Session) {
			mu.Lock()
			sessions = append(sessions, weak.Make(s))
			ended = append(ended, s.Context().Done())
			mu.Unlock()
		}}}
	})
	ts.AddUser(t, "alice", "pw")
	const n = 5
	for i := 0; i < n; i++ {
		c := ts.Login(t, "alice", "pw", fmt.Sprintf("r%d", i))
		c.Send("</stream:stream>")
		c.ExpectClosed()
	}
	mu.Lock()
	defer mu.Unlock()
	if len(sessions) != n {
		t.Fatalf("%d sessions bound, want %d", len(sessions), n)
	}
	for _, done := range ended {
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("a session's context was not cancelled 5 s after it ended")
		}
	}
	// Ended sessions wait for nothing: once their goroutines have
	// returned (just after the context ends: the session-closed hooks
	// run last), a collection frees them. Before the fix each stayed
	// reachable for the ping interval, an hour here.
	deadline := time.Now().Add(10 * time.Second)
	for {
		runtime.GC()
		live := 0
		for _, w := range sessions {
			if w.Value() != nil {
				live++
			}
		}
		if live == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d ended sessions still reachable 10 s after they ended", live, n)
		}
		runtime.Gosched()
	}
}

type hookModule struct {
	bound func(context.Context, *treff.Session)
}

func (hookModule) Name() string { return "test-hook" }

func (h hookModule) Setup(ctx context.Context, r *treff.Registry) error {
	r.OnSessionBound(h.bound)
	return nil
}
