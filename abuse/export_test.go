package abuse

import "time"

func init() {
	// Tests do not wait seconds for a feed that is not there yet.
	retryMin = 20 * time.Millisecond
}
