package accept

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"syscall"
	"testing"
	"time"
)

// script is a listener that returns its results in order, then
// net.ErrClosed.
type script struct {
	results []error // nil: a connection
	i       int
}

func (s *script) Accept() (net.Conn, error) {
	if s.i == len(s.results) {
		return nil, net.ErrClosed
	}
	err := s.results[s.i]
	s.i++
	if err != nil {
		return nil, err
	}
	a, b := net.Pipe()
	b.Close()
	return a, nil
}
func (s *script) Close() error   { return nil }
func (s *script) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

func opErr(errno syscall.Errno) error {
	return &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", errno)}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func recordPauses(t *testing.T) *[]time.Duration {
	var got []time.Duration
	old := pause
	pause = func(ctx context.Context, d time.Duration) bool {
		got = append(got, d)
		return ctx.Err() == nil
	}
	t.Cleanup(func() { pause = old })
	return &got
}

func TestTemporary(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{opErr(syscall.EMFILE), true},
		{opErr(syscall.ENFILE), true},
		{opErr(syscall.ECONNABORTED), true},
		{opErr(syscall.ENOBUFS), true},
		{fmt.Errorf("wrapped: %w", opErr(syscall.EMFILE)), true},
		{timeoutErr{}, true},
		{net.ErrClosed, false},
		{&net.OpError{Op: "accept", Net: "tcp", Err: net.ErrClosed}, false},
		{opErr(syscall.EBADF), false},
		{errors.New("other"), false},
		{nil, false},
	} {
		if got := Temporary(tc.err); got != tc.want {
			t.Errorf("Temporary(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// TestLoopBacksOff checks that EMFILE and its kin do not end the loop,
// that the pause doubles from 5 ms to at most 1 s, and that an accepted
// connection resets it.
func TestLoopBacksOff(t *testing.T) {
	pauses := recordPauses(t)
	emfile := opErr(syscall.EMFILE)
	var results []error
	for range 10 {
		results = append(results, emfile)
	}
	results = append(results, nil, opErr(syscall.ENFILE), timeoutErr{}, nil)
	l := &script{results: results}
	accepted := 0
	err := Loop(context.Background(), l, quiet(), func(nc net.Conn) error {
		nc.Close()
		accepted++
		return nil
	})
	if !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Loop = %v, want net.ErrClosed (the end of the script)", err)
	}
	if accepted != 2 {
		t.Errorf("accepted %d connections, want 2", accepted)
	}
	ms := time.Millisecond
	want := []time.Duration{5 * ms, 10 * ms, 20 * ms, 40 * ms, 80 * ms, 160 * ms, 320 * ms, 640 * ms, time.Second, time.Second, 5 * ms, 10 * ms}
	if !slices.Equal(*pauses, want) {
		t.Errorf("pauses = %v, want %v", *pauses, want)
	}
}

func TestLoopStops(t *testing.T) {
	t.Run("handle error", func(t *testing.T) {
		stop := errors.New("stop")
		l := &script{results: []error{nil, nil}}
		err := Loop(context.Background(), l, quiet(), func(nc net.Conn) error { nc.Close(); return stop })
		if err != stop || l.i != 1 {
			t.Errorf("Loop = %v after %d accepts, want %v after 1", err, l.i, stop)
		}
	})
	t.Run("context during a pause", func(t *testing.T) {
		recordPauses(t)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		l := &script{results: []error{opErr(syscall.EMFILE), nil}}
		err := Loop(ctx, l, quiet(), func(nc net.Conn) error { nc.Close(); return nil })
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Loop = %v, want context.Canceled", err)
		}
	})
	t.Run("real pause ends with the context", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if pause(ctx, time.Hour) {
			t.Error("pause waited out an hour on a cancelled context")
		}
	})
}
