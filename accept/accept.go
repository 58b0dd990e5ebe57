// Package accept runs a listener's accept loop the way net/http's
// Server.Serve does: a temporary failure (a timeout, no file descriptor
// left, a connection reset before it was accepted) does not end the
// loop; it pauses, 5 ms at first and twice as long each time up to one
// second, and accepts again.
//
// The server's client listeners and the server-to-server module use it;
// a plugin that listens (an external component port, say) should too.
package accept

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"syscall"
	"time"
)

// Backoff bounds: the first pause after a temporary error, and the
// longest.
const (
	MinDelay = 5 * time.Millisecond
	MaxDelay = time.Second
)

// Temporary reports whether an error from Accept is worth retrying: a
// timeout, a shortage of file descriptors, buffers or memory (EMFILE,
// ENFILE, ENOBUFS, ENOMEM), a connection that ended before it was
// accepted (ECONNABORTED, ECONNRESET, EPROTO), an interrupted call, or
// any error whose Temporary method says so.
func Temporary(err error) bool {
	if err == nil {
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	for _, e := range temporaryErrnos {
		if errors.Is(err, e) {
			return true
		}
	}
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

var temporaryErrnos = []error{
	syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM,
	syscall.ECONNABORTED, syscall.ECONNRESET, syscall.EPROTO,
	syscall.EINTR, syscall.EAGAIN,
}

// pause waits d or until ctx ends, and reports whether it waited d. Tests
// replace it.
var pause = func(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Loop accepts connections on l and passes each to handle, in the calling
// goroutine (handle starts the connection's own goroutine and returns).
// A temporary error (see Temporary) is logged on log (nil means
// slog.Default()) and retried after a pause that starts at MinDelay and
// doubles up to MaxDelay, and starts again at MinDelay after a
// connection is accepted.
//
// Loop returns the first error that is not temporary, the error handle
// returns (handle returns an error to stop accepting), or ctx's error
// if ctx ends during a pause. It does not close l.
func Loop(ctx context.Context, l net.Listener, log *slog.Logger, handle func(net.Conn) error) error {
	if log == nil {
		log = slog.Default()
	}
	var delay time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			if !Temporary(err) {
				return err
			}
			delay = min(max(2*delay, MinDelay), MaxDelay)
			// The error names the listener's own address, never a peer's.
			log.Warn("accept failed; retrying", "err", err, "delay", delay)
			if !pause(ctx, delay) {
				return ctx.Err()
			}
			continue
		}
		delay = 0
		if err := handle(nc); err != nil {
			return err
		}
	}
}
