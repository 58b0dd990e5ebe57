package main

import (
	"time"
)

// Fixed-rate scheduling. A client sending at -rate R sends once every
// 1/R; n clients started at once would all send in the same instant,
// which is a burst of n messages every period, not a rate. Each client's
// schedule is therefore shifted by its share of the period (phase), and a
// client that falls behind its schedule drops the sends it missed instead
// of sending them in a burst (pacer): the offered load stays what was
// asked for, and the report's "sent" says what was actually offered.

// phase is the offset of client i of n in a schedule of one event per
// period: the n clients' events are spread evenly over one period.
func phase(i, n int, period time.Duration) time.Duration {
	if n <= 0 || i <= 0 {
		return 0
	}
	return time.Duration(int64(period) * int64(i%n) / int64(n))
}

// pacer is one client's schedule: one event every period from its first
// one on.
type pacer struct {
	next   time.Time
	period time.Duration
}

// newPacer starts the schedule of client i of n at start plus its phase.
func newPacer(start time.Time, i, n int, period time.Duration) *pacer {
	return &pacer{next: start.Add(phase(i, n, period)), period: period}
}

// advance takes the next event at time now: it returns how long to wait
// for it and how many events were skipped because they are more than one
// period in the past (the client fell behind). The event returned is
// consumed.
func (p *pacer) advance(now time.Time) (wait time.Duration, skipped int) {
	if late := now.Sub(p.next); late > p.period {
		n := int(late / p.period)
		p.next = p.next.Add(time.Duration(n) * p.period)
		skipped = n
	}
	wait = p.next.Sub(now)
	if wait < 0 {
		wait = 0
	}
	p.next = p.next.Add(p.period)
	return wait, skipped
}

// wait sleeps until the next event; it reports false, without sleeping,
// if that event is at or after the deadline.
func (p *pacer) wait(deadline time.Time) bool {
	now := time.Now()
	w, _ := p.advance(now)
	if !now.Add(w).Before(deadline) {
		return false
	}
	if w > 0 {
		time.Sleep(w)
	}
	return true
}

// periodOf is the time between two events at rate per second (0: none).
func periodOf(rate float64) time.Duration {
	if rate <= 0 {
		return 0
	}
	return time.Duration(float64(time.Second) / rate)
}
