package treff_test

import (
	"context"
	"testing"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/trefftest"
)

// stateModule keeps per-session state in a SessionState, as a plugin
// author would.
type stateModule struct {
	count  *treff.SessionState[int]
	closed chan *treff.Session
	seen   chan int
}

func (*stateModule) Name() string { return "state" }

func (m *stateModule) Setup(ctx context.Context, r *treff.Registry) error {
	r.OnSessionBound(func(ctx context.Context, s *treff.Session) { m.count.Set(s, 100) })
	r.OnClientStanza(func(ctx context.Context, st *treff.Stanza) bool {
		if st.ID == "count" {
			s := r.Server().Session(st.From)
			m.seen <- m.count.Update(s, func(old int, ok bool) int { return old + 1 })
			return true
		}
		return false
	})
	r.OnSessionClosed(func(ctx context.Context, s *treff.Session) {
		v, ok := m.count.Get(s)
		if !ok {
			v = -1
		}
		m.seen <- v
		m.closed <- s
	})
	return nil
}

func TestSessionState(t *testing.T) {
	m := &stateModule{count: treff.NewSessionState[int](), closed: make(chan *treff.Session, 2), seen: make(chan int, 8)}
	ts := newTestServer(t, func(s *treff.Server) { s.Modules = []treff.Module{m} })
	a := ts.Login(t, "alice", "alicepw", "a")
	b := ts.Login(t, "alice", "alicepw", "b")
	// Sessions are dispatched concurrently: wait for each count before
	// sending the next so the order of the values is defined.
	var got []int
	for _, c := range []*trefftest.Client{a, a, b} {
		c.Send("<message id='count'/>")
		got = append(got, <-m.seen)
	}
	if got[0] != 101 || got[1] != 102 || got[2] != 101 {
		t.Errorf("counts = %v, want [101 102 101] (one value per session)", got)
	}
	a.Send("</stream:stream>")
	a.ExpectClosed()
	if v := <-m.seen; v != 102 {
		t.Errorf("OnSessionClosed read %d, want 102", v)
	}
	<-m.closed
}
