package logevery

import (
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	var l Limiter
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, tc := range []struct {
		at         time.Duration
		ok         bool
		suppressed int
	}{
		{0, true, 0},
		{time.Second, false, 0},
		{59 * time.Second, false, 0},
		{time.Minute, true, 2},
		{time.Minute + time.Millisecond, false, 0},
		{3 * time.Minute, true, 1},
		{4 * time.Minute, true, 0},
	} {
		ok, n := l.Allow(t0.Add(tc.at))
		if ok != tc.ok || n != tc.suppressed {
			t.Errorf("%d: Allow(+%v) = %v, %d; want %v, %d", i, tc.at, ok, n, tc.ok, tc.suppressed)
		}
	}
	short := Limiter{Interval: time.Second}
	short.Allow(t0)
	if ok, _ := short.Allow(t0.Add(time.Second)); !ok {
		t.Error("a Limiter with a 1 s interval refused a line 1 s after the last")
	}
}
