package ratelimit

import (
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Limit
		text string
	}{
		{"30/1h", Limit{30, time.Hour}, "30 per 1h"},
		{" 600 / 1m ", Limit{600, time.Minute}, "600 per 1m"},
		{"5/90s", Limit{5, 90 * time.Second}, "5 per 90s"},
		{"2/1500ms", Limit{2, 1500 * time.Millisecond}, "2 per 1.5s"},
		{"none", Limit{}, "no limit"},
	} {
		got, err := Parse(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("Parse(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			continue
		}
		if got.Text() != tc.text {
			t.Errorf("%v.Text() = %q; want %q", got, got.Text(), tc.text)
		}
		back, err := Parse(got.String())
		if err != nil || back != got {
			t.Errorf("Parse(%q) = %v, %v; want %v", got.String(), back, err, got)
		}
	}
	for _, bad := range []string{"", "30", "0/1h", "-1/1h", "x/1h", "3/0s", "3/-1h", "3/soon"} {
		if l, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) = %v; want an error", bad, l)
		}
	}
}

func TestBucket(t *testing.T) {
	l := Limit{N: 3, Period: 3 * time.Second}
	t0 := time.Unix(1000, 0)
	var b Bucket
	if !b.Full(l, t0) {
		t.Error("a new bucket is not full")
	}
	for i := range 3 {
		if !b.Allow(l, t0) {
			t.Fatalf("event %d of the burst refused", i+1)
		}
	}
	if b.Allow(l, t0) || b.Allow(l, t0.Add(999*time.Millisecond)) {
		t.Error("a fourth event passed within the first second")
	}
	// One token comes back per second.
	if !b.Allow(l, t0.Add(time.Second)) {
		t.Error("no token back after a second")
	}
	if b.Allow(l, t0.Add(time.Second)) {
		t.Error("two tokens back after a second")
	}
	if b.Full(l, t0.Add(3*time.Second)) {
		t.Error("full two seconds after the last use")
	}
	if !b.Full(l, t0.Add(4*time.Second)) {
		t.Error("not full three seconds after the last use")
	}
	// A clock going back never adds tokens.
	var c Bucket
	for range 3 {
		c.Allow(l, t0)
	}
	if c.Allow(l, t0.Add(-time.Hour)) {
		t.Error("an earlier time refilled the bucket")
	}
	var none Bucket
	for range 1000 {
		if !none.Allow(Limit{}, t0) {
			t.Fatal("the zero Limit refused an event")
		}
	}
}

func BenchmarkAllow(b *testing.B) {
	l := Limit{N: 600, Period: time.Minute}
	var bk Bucket
	now := time.Now()
	for i := 0; b.Loop(); i++ {
		bk.Allow(l, now.Add(time.Duration(i)*100*time.Millisecond))
	}
}
