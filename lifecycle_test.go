package treff_test

import (
	"context"
	"errors"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"

	"github.com/treff-im/treff"
)

// flakyListener fails its first accepts with EMFILE, as a process out of
// file descriptors does.
type flakyListener struct {
	net.Listener
	mu    sync.Mutex
	fails int
}

func (l *flakyListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	if l.fails > 0 {
		l.fails--
		l.mu.Unlock()
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	l.mu.Unlock()
	return l.Listener.Accept()
}

// TestServeSurvivesEMFILE checks that a temporary accept error does not
// end Serve: it backs off and accepts again.
func TestServeSurvivesEMFILE(t *testing.T) {
	ts := newTestServer(t, nil)
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &flakyListener{Listener: inner, fails: 4}
	done := make(chan error, 1)
	go func() { done <- ts.Serve(l) }()
	c := ts.Dial(t, inner.Addr().String())
	c.Login("alice", "alicepw", "r")
	c.Send("</stream:stream>")
	c.ExpectClosed()
	select {
	case err := <-done:
		t.Fatalf("Serve returned %v after EMFILE", err)
	default:
	}
	ts.Shutdown(context.Background())
	if err := <-done; err != treff.ErrServerClosed {
		t.Errorf("Serve = %v after Shutdown, want ErrServerClosed", err)
	}
}

// blocker is a module whose IQ handler waits: for its context to end
// (urn:example:wait-ctx) or for the test to release it, ignoring its
// context (urn:example:wait-release).
type blocker struct {
	entered  chan string
	ctxErr   chan error
	release  chan struct{}
	released sync.Once
}

func (*blocker) Name() string { return "blocker" }

func (b *blocker) Setup(ctx context.Context, r *treff.Registry) error {
	r.HandleIQ("urn:example:wait-ctx", treff.IQHandlerFunc(func(ctx context.Context, iq *treff.Stanza) ([]byte, error) {
		b.entered <- "ctx"
		<-ctx.Done()
		b.ctxErr <- ctx.Err()
		return nil, ctx.Err()
	}))
	r.HandleIQ("urn:example:wait-release", treff.IQHandlerFunc(func(ctx context.Context, iq *treff.Stanza) ([]byte, error) {
		b.entered <- "release"
		<-b.release
		return nil, nil
	}))
	return nil
}

// TestShutdownHonoursContext checks net/http's semantics: Shutdown
// returns ctx's error as soon as ctx ends, even while a handler that
// ignores contexts still runs; the handlers that honour their context
// see it cancelled; Close then waits for the rest.
func TestShutdownHonoursContext(t *testing.T) {
	b := &blocker{entered: make(chan string, 2), ctxErr: make(chan error, 1), release: make(chan struct{})}
	ts := newTestServer(t, func(s *treff.Server) { s.Modules = []treff.Module{b} })
	defer b.released.Do(func() { close(b.release) })
	alice := ts.Login(t, "alice", "alicepw", "a")
	bob := ts.Login(t, "bob", "bobpw", "b")
	alice.Send("<iq type='get' id='w1' to='localhost'><q xmlns='urn:example:wait-ctx'/></iq>")
	bob.Send("<iq type='get' id='w2' to='localhost'><q xmlns='urn:example:wait-release'/></iq>")
	<-b.entered
	<-b.entered

	ctx, cancel := context.WithCancel(context.Background())
	shut := make(chan error, 1)
	go func() { shut <- ts.Shutdown(ctx) }()
	// Shutdown waits for the handlers, one of which never returns on
	// its own.
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v while handlers ran and its context was live", err)
	case err := <-b.ctxErr:
		t.Fatalf("the handler's context ended (%v) before Shutdown's did", err)
	default:
	}
	cancel()
	if err := <-shut; !errors.Is(err, context.Canceled) {
		t.Errorf("Shutdown = %v, want context.Canceled", err)
	}
	// The server's context ended with Shutdown's: the handler that
	// listens to it returned.
	if err := <-b.ctxErr; !errors.Is(err, context.Canceled) {
		t.Errorf("handler's context error = %v, want context.Canceled", err)
	}
	if err := ts.Context().Err(); !errors.Is(err, context.Canceled) {
		t.Errorf("server's Context().Err() = %v after Shutdown gave up", err)
	}
	b.released.Do(func() { close(b.release) })
	if err := ts.Close(); err != nil {
		t.Errorf("Close = %v", err)
	}
}

// TestContextDuringSetup checks that a module may take the server's
// context in Setup (it deadlocked on the start-up it is part of), and
// that a server whose start-up failed has it cancelled.
func TestContextDuringSetup(t *testing.T) {
	var got context.Context
	srv := &treff.Server{Hosts: []treff.Host{{Domain: "localhost"}}, Modules: []treff.Module{moduleFunc(func(r *treff.Registry) {
		got = r.Server().Context()
	})}}
	if err := srv.Setup(); err != nil {
		t.Fatal(err)
	}
	if got == nil || got.Err() != nil || got != srv.Context() {
		t.Errorf("Context in Setup = %v, want the live base context", got)
	}
	srv.Close()
	if got.Err() == nil {
		t.Error("Close did not cancel the base context")
	}
	bad := &treff.Server{Hosts: []treff.Host{{Domain: "localhost"}}, WriteTimeout: -1}
	if bad.Setup() == nil || bad.Context().Err() == nil {
		t.Error("a server whose Setup failed has a live context")
	}
}
