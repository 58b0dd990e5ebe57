package treff_test

import (
	"context"
	"testing"
	"time"

	"github.com/treff-im/treff"
)

// closingWatcher records, for each session that ends, whether the server
// was stopping then.
type closingWatcher struct {
	srv    *treff.Server
	closed chan bool
}

func (w *closingWatcher) Name() string { return "closing-watcher" }

func (w *closingWatcher) Setup(ctx context.Context, r *treff.Registry) error {
	w.srv = r.Server()
	r.OnSessionClosed(func(ctx context.Context, s *treff.Session) { w.closed <- w.srv.Closing() })
	return nil
}

// TestClosing: Server.Closing is false while the server serves (a session
// that ends then sees false) and true for the sessions that end because
// the server shuts down.
func TestClosing(t *testing.T) {
	w := &closingWatcher{closed: make(chan bool, 2)}
	ts := newTestServer(t, func(s *treff.Server) { s.Modules = []treff.Module{w} })
	alice := ts.Login(t, "alice", "alicepw", "a")
	ts.Login(t, "bob", "bobpw", "b")
	if ts.Closing() {
		t.Fatal("Closing before any stop")
	}
	alice.Send("</stream:stream>")
	if <-w.closed {
		t.Error("a session that ended while the server served saw Closing")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ts.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if !<-w.closed {
		t.Error("a session that ended with the shutdown did not see Closing")
	}
	if !ts.Closing() {
		t.Error("not Closing after Shutdown")
	}
}
