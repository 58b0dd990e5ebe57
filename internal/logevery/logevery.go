// Package logevery limits a recurring log line (a failing disk, a full
// queue) to one per interval, counting the ones it held back, so that an
// error hit by every message costs one line a minute, not one a message.
package logevery

import (
	"sync"
	"time"
)

// DefaultInterval is the interval of a Limiter whose Interval is zero.
const DefaultInterval = time.Minute

// Limiter decides when a recurring line may be logged. The zero value is
// ready to use; a Limiter must not be copied after first use.
type Limiter struct {
	// Interval is the least time between two lines. Zero means
	// DefaultInterval.
	Interval time.Duration

	mu         sync.Mutex
	logged     bool      // a line was allowed
	last       time.Time // when
	suppressed int       // lines refused since
}

// Allow reports whether a line may be logged at now: the first time, and
// then once Interval has passed since the last line allowed. When it
// allows one, it also returns how many it refused since the last.
func (l *Limiter) Allow(now time.Time) (ok bool, suppressed int) {
	iv := l.Interval
	if iv <= 0 {
		iv = DefaultInterval
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.logged && now.Sub(l.last) < iv {
		l.suppressed++
		return false, 0
	}
	l.logged, l.last = true, now
	n := l.suppressed
	l.suppressed = 0
	return true, n
}
