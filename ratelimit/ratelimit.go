// Package ratelimit holds the small rate limits Treff's abuse defences
// share: a Limit (so many events per period), parsed from and written as
// COUNT/DURATION ("30/1h"), and a token Bucket that enforces one.
//
// A Bucket holds up to N tokens and gains N per Period, continuously:
// a quiet client may send a burst of N at once, a busy one settles at
// N per Period. Nothing here locks or allocates; callers keep buckets
// under their own lock (see package antispam, and the core's
// pre-authentication limit).
package ratelimit

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Limit allows N events per Period. N <= 0 (or a zero Period) means no
// limit.
type Limit struct {
	N      int
	Period time.Duration
}

// None reports whether l limits nothing.
func (l Limit) None() bool { return l.N <= 0 || l.Period <= 0 }

// String writes l as Parse reads it: COUNT/DURATION, e.g. "30/1h", or
// "none".
func (l Limit) String() string {
	if l.None() {
		return "none"
	}
	return strconv.Itoa(l.N) + "/" + shortDuration(l.Period)
}

// Text says l for people: "30 per 1h", "600 per 1m", "5 per 90s".
func (l Limit) Text() string {
	if l.None() {
		return "no limit"
	}
	return strconv.Itoa(l.N) + " per " + shortDuration(l.Period)
}

// shortDuration writes whole hours, minutes or seconds without the
// zero units time.Duration.String adds ("1h", not "1h0m0s").
func shortDuration(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	case d%time.Minute == 0:
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	case d%time.Second == 0:
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
	return d.String()
}

// Parse reads COUNT/DURATION ("30/1h", "600/1m"; the duration as
// time.ParseDuration takes it) or "none" (no limit). COUNT must be
// positive and DURATION more than zero.
func Parse(s string) (Limit, error) {
	s = strings.TrimSpace(s)
	if strings.EqualFold(s, "none") {
		return Limit{}, nil
	}
	n, d, ok := strings.Cut(s, "/")
	if !ok {
		return Limit{}, fmt.Errorf("ratelimit: %q is not COUNT/DURATION (like 30/1h) or none", s)
	}
	count, err := strconv.Atoi(strings.TrimSpace(n))
	if err != nil || count <= 0 {
		return Limit{}, fmt.Errorf("ratelimit: the count in %q is not a positive number", s)
	}
	period, err := time.ParseDuration(strings.TrimSpace(d))
	if err != nil || period <= 0 {
		return Limit{}, fmt.Errorf("ratelimit: the duration in %q is not a positive duration (like 1h or 30s)", s)
	}
	return Limit{N: count, Period: period}, nil
}

// Bucket is a token bucket for one Limit. Its zero value is full: the
// first N events pass. It is not safe for concurrent use.
type Bucket struct {
	used float64 // tokens spent and not yet regained
	last int64   // Unix nanoseconds of the last update; 0: never used
}

// Allow reports whether one more event is within l at now, and counts
// it if so. A refused event is not counted.
func (b *Bucket) Allow(l Limit, now time.Time) bool {
	if l.None() {
		return true
	}
	b.refill(l, now)
	if b.used+1 > float64(l.N) {
		return false
	}
	b.used++
	return true
}

// Full reports whether the bucket has regained every token at now: it
// then holds no state worth keeping (the zero Bucket is the same).
func (b *Bucket) Full(l Limit, now time.Time) bool {
	if l.None() || b.last == 0 {
		return true
	}
	b.refill(l, now)
	return b.used <= 0
}

func (b *Bucket) refill(l Limit, now time.Time) {
	t := now.UnixNano()
	if b.last != 0 && t > b.last {
		b.used -= float64(t-b.last) * float64(l.N) / float64(l.Period)
		if b.used < 0 {
			b.used = 0
		}
	}
	if t > b.last {
		b.last = t
	}
}
