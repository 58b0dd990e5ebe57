package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/im"
	treffmuc "github.com/treff-im/treff/muc"
	"github.com/treff-im/treff/trefftest"
)

func TestPhase(t *testing.T) {
	p := 400 * time.Millisecond
	var got []time.Duration
	for i := 0; i < 4; i++ {
		got = append(got, phase(i, 4, p))
	}
	if want := []time.Duration{0, 100 * time.Millisecond, 200 * time.Millisecond, 300 * time.Millisecond}; !slices.Equal(got, want) {
		t.Errorf("phases %v, want %v", got, want)
	}
	if phase(5, 4, p) != 100*time.Millisecond || phase(3, 0, p) != 0 {
		t.Error("phase out of range")
	}
}

// A pacer keeps its schedule, waits for events in the future, and skips
// the events more than one period behind instead of bunching them.
func TestPacer(t *testing.T) {
	t0 := time.Unix(1000, 0)
	period := 100 * time.Millisecond
	p := newPacer(t0, 1, 4, period) // first event at t0 + 25 ms
	if w, s := p.advance(t0); w != 25*time.Millisecond || s != 0 {
		t.Errorf("first: wait %v skipped %d", w, s)
	}
	// On time for the second (t0+125ms), asked 5 ms late: no wait.
	if w, s := p.advance(t0.Add(130 * time.Millisecond)); w != 0 || s != 0 {
		t.Errorf("late by 5ms: wait %v skipped %d", w, s)
	}
	// The third is due at t0+225ms; asked at t0+560ms, 335 ms late: the
	// events at 225, 325 and 425 are skipped, the one at 525 is taken at
	// once and the next is at 625.
	if w, s := p.advance(t0.Add(560 * time.Millisecond)); w != 0 || s != 3 {
		t.Errorf("335ms late: wait %v skipped %d, want 0 and 3", w, s)
	}
	if w, _ := p.advance(t0.Add(600 * time.Millisecond)); w != 25*time.Millisecond {
		t.Errorf("after the skip: wait %v, want 25ms", w)
	}
	if periodOf(0) != 0 || periodOf(4) != 250*time.Millisecond {
		t.Error("periodOf")
	}
	// wait stops at the deadline without sleeping past it.
	q := newPacer(time.Now(), 0, 1, time.Hour)
	if !q.wait(time.Now().Add(time.Minute)) || q.wait(time.Now().Add(time.Minute)) {
		t.Error("wait: the first event is due now, the second after the deadline")
	}
}

func TestRooms(t *testing.T) {
	c := config{users: 7, roomSize: 3, room: "bench@conference.localhost"}
	if c.roomCount() != 3 {
		t.Fatalf("rooms %d, want 3", c.roomCount())
	}
	var got []string
	for i := 0; i < c.users; i++ {
		got = append(got, c.roomJID(c.roomOf(i)))
	}
	want := []string{"bench0@conference.localhost", "bench0@conference.localhost", "bench0@conference.localhost",
		"bench1@conference.localhost", "bench1@conference.localhost", "bench1@conference.localhost", "bench2@conference.localhost"}
	if !slices.Equal(got, want) {
		t.Errorf("rooms %v, want %v", got, want)
	}
	c.roomSize = 0
	if c.roomCount() != 1 || c.roomJID(c.roomOf(6)) != c.room {
		t.Error("without -room-size all share -room")
	}
}

// Only a refusal of type wait is retried.
func TestJoinErrorWait(t *testing.T) {
	busy := &joinError{room: "r", raw: `<presence type='error'><error type='wait'><resource-constraint xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></presence>`}
	full := &joinError{room: "r", raw: `<presence type="error"><error type="cancel"><service-unavailable xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></presence>`}
	if !busy.wait() || full.wait() {
		t.Errorf("wait: busy %v, full %v", busy.wait(), full.wait())
	}
}

// settle returns at once for a process that does nothing (the test's
// own process is idle while it sleeps in settle) and within its limit
// for a busy one.
func TestSettle(t *testing.T) {
	if d := settle([]int{os.Getpid()}, 5*time.Second); d > 2*time.Second {
		t.Errorf("idle process: settled after %s", d)
	}
	stop := make(chan struct{})
	defer close(stop)
	for i := 0; i < 2; i++ {
		go func() { // keep this process busy
			for {
				select {
				case <-stop:
					return
				default:
				}
			}
		}()
	}
	if d := settle([]int{os.Getpid()}, 600*time.Millisecond); d < 600*time.Millisecond || d > 3*time.Second {
		t.Errorf("busy process: settle took %s, want its limit of 600ms", d)
	}
}

func TestParsePIDs(t *testing.T) {
	if got, err := parsePIDs("12, 34,0,"); err != nil || !slices.Equal(got, []int{12, 34}) {
		t.Errorf("%v %v", got, err)
	}
	if _, err := parsePIDs("12,x"); err == nil {
		t.Error("x accepted")
	}
}

// The accounting of the fixed-rate runs against a real server: at a
// fixed rate nothing is left in flight, so every message sent is
// delivered (chat) or delivered once to each occupant of its room (muc:
// one message in, N copies out); presence with -online keeps a share of
// the users online.
func TestFixedRateAccounting(t *testing.T) {
	ts := trefftest.NewServer(t, func(s *treff.Server) { s.Modules = append(im.Modules(), &treffmuc.Module{}) })
	for i := 0; i < 12; i++ {
		ts.AddUser(t, fmt.Sprintf("fix%d", i), "loadtest-password")
	}
	cfg := func(scenario string, users int, rate float64) config {
		c := testConfig(ts.Addr, scenario, "PLAIN", users)
		c.prefix, c.rate, c.duration = "fix", rate, time.Second
		return c
	}
	t.Run("chat", func(t *testing.T) {
		c := cfg("chat", 6, 20)
		r, err := run(context.Background(), c)
		if err != nil {
			t.Fatal(err)
		}
		// 6 clients at 20/s for 1 s: 120 offered; a client whose event
		// falls on the deadline does not send, one that falls behind skips.
		if r.errors != 0 || r.sent < 100 || r.sent > 126 || r.ops != r.sent || r.offered() != 120 {
			t.Errorf("errors=%d (%s) sent=%d ops=%d offered=%v", r.errors, r.firstErr, r.sent, r.ops, r.offered())
		}
	})
	t.Run("muc", func(t *testing.T) {
		c := cfg("muc", 9, 10)
		c.room, c.roomSize, c.senders = "fan@conference.localhost", 3, 1
		r, err := run(context.Background(), c)
		if err != nil {
			t.Fatal(err)
		}
		// Three rooms of three, one sender each at 10/s: 30 offered,
		// each copy delivered to the three occupants.
		if r.errors != 0 || r.rooms != 3 || r.sent < 24 || r.sent > 33 || r.ops != 3*r.sent || r.offered() != 30 || len(r.latencies) != int(r.ops) {
			t.Errorf("errors=%d (%s) rooms=%d sent=%d ops=%d offered=%v", r.errors, r.firstErr, r.rooms, r.sent, r.ops, r.offered())
		}
	})
	t.Run("muc-one-in-flight", func(t *testing.T) {
		c := cfg("muc", 4, 0)
		c.room, c.roomSize, c.duration = "fan2@conference.localhost", 2, 500*time.Millisecond
		r, err := run(context.Background(), c)
		if err != nil {
			t.Fatal(err)
		}
		// Everyone sends, one in flight: rooms of two, two copies each.
		if r.errors != 0 || r.rooms != 2 || r.sent == 0 || r.ops != 2*r.sent {
			t.Errorf("errors=%d (%s) rooms=%d sent=%d ops=%d", r.errors, r.firstErr, r.rooms, r.sent, r.ops)
		}
	})
	t.Run("presence-online", func(t *testing.T) {
		c := cfg("presence", 10, 1)
		c.contacts, c.online, c.duration = 4, 0.5, 1500*time.Millisecond
		r, err := run(context.Background(), c)
		if err != nil {
			t.Fatal(err)
		}
		// One cycle a second, online for half of it, cycles spread: each
		// user starts its first cycle within the first second and can
		// start a second one before the deadline only if its first began
		// in the first half second. A contact's broadcast is counted only
		// when the contact is online, so ops stay below logins*contacts.
		if r.errors != 0 || r.logins < int64(c.users) || r.logins > int64(2*c.users) || r.ops > r.logins*int64(c.contacts) || len(r.latencies) != int(r.ops) {
			t.Errorf("errors=%d (%s) logins=%d ops=%d", r.errors, r.firstErr, r.logins, r.ops)
		}
	})
	t.Run("login-rate", func(t *testing.T) {
		c := cfg("login", 4, 5)
		r, err := run(context.Background(), c)
		if err != nil {
			t.Fatal(err)
		}
		// 4 clients at 5 logins/s for 1 s: at most 20 started.
		if r.errors != 0 || r.sent > 20 || r.ops != r.sent || r.ops < 8 {
			t.Errorf("errors=%d (%s) started=%d logins=%d", r.errors, r.firstErr, r.sent, r.ops)
		}
	})
}
