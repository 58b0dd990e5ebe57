package xtime_test

import (
	"strings"
	"testing"
	"time"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/trefftest"
	"github.com/treff-im/treff/xtime"
)

// The server reports its clock in UTC with millisecond precision and the
// offset +00:00, whatever zone its clock is in.
func TestEntityTime(t *testing.T) {
	zone := time.FixedZone("UTC+5:30", 5*3600+1800)
	clock := trefftest.NewClock(time.Date(2024, 2, 29, 18, 4, 56, 789_123_000, zone))
	ts := trefftest.NewServer(t, func(s *treff.Server) { s.Modules = []treff.Module{&xtime.Module{Now: clock.Now}} })
	ts.AddUser(t, "alice", "pw")
	c := ts.Login(t, "alice", "pw", "r")
	for _, want := range []string{"2024-02-29T12:34:56.789Z", "2024-03-01T12:34:56.789Z"} {
		c.Send("<iq type='get' id='t' to='localhost'><time xmlns='urn:xmpp:time'/></iq>")
		got := c.Expect(`<iq type='result' id='t'.*?</iq>`)
		if !strings.Contains(got, "<time xmlns='urn:xmpp:time'><tzo>+00:00</tzo><utc>"+want+"</utc></time>") || !strings.Contains(got, "from='localhost'") {
			t.Errorf("answer %s, want time %s", got, want)
		}
		clock.Add(24 * time.Hour)
	}
	c.Send("<iq type='set' id='s' to='localhost'><time xmlns='urn:xmpp:time'/></iq>")
	c.Expect(`<iq type='error' id='s'[^>]*>.*<error type='modify'><bad-request `)
}

// Without Now the module reads the real clock.
func TestEntityTimeRealClock(t *testing.T) {
	ts := trefftest.NewServer(t, func(s *treff.Server) { s.Modules = []treff.Module{&xtime.Module{}} })
	ts.AddUser(t, "alice", "pw")
	c := ts.Login(t, "alice", "pw", "r")
	before := time.Now().Truncate(time.Millisecond)
	c.Send("<iq type='get' id='t' to='localhost'><time xmlns='urn:xmpp:time'/></iq>")
	got := c.Expect(`<utc>[^<]+</utc>`)
	after := time.Now()
	utc, err := time.Parse("2006-01-02T15:04:05.000Z", got[strings.Index(got, "<utc>")+5:len(got)-len("</utc>")])
	if err != nil || utc.Before(before) || utc.After(after) {
		t.Errorf("utc %v (%v) not between %v and %v", utc, err, before, after)
	}
}
