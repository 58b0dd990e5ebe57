package treff_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/treff-im/treff"
)

// memKeeper is a plugin author's Keeper: it keeps messages in a map, or
// fails, or panics.
type memKeeper struct {
	mu     sync.Mutex
	next   uint64
	kept   map[uint64]string
	fail   error
	panics bool
}

func (*memKeeper) Name() string { return "memkeeper" }

func (k *memKeeper) Setup(ctx context.Context, r *treff.Registry) error {
	r.KeepUnacked(k)
	return nil
}

func (k *memKeeper) Keep(ctx context.Context, s *treff.Session, st *treff.Stanza) (uint64, bool, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.panics {
		var m map[string]int
		m["boom"]++
	}
	if k.fail != nil {
		return 0, false, k.fail
	}
	k.next++
	k.kept[k.next] = st.ID
	return k.next, true, nil
}

func (k *memKeeper) Release(ctx context.Context, s *treff.Session, ids []uint64) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, id := range ids {
		delete(k.kept, id)
	}
	return nil
}

func (k *memKeeper) Leave(ctx context.Context, s *treff.Session, ids []uint64) {}

func (k *memKeeper) ids() map[string]bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make(map[string]bool)
	for _, id := range k.kept {
		out[id] = true
	}
	return out
}

// A Keeper from outside the root package sees what a hibernating session
// is sent (not carbons, chat states are its choice, groupchat never);
// when it fails or panics, the sender gets <internal-server-error/> and
// the server goes on.
func TestKeeper(t *testing.T) {
	k := &memKeeper{kept: make(map[uint64]string)}
	ts := newTestServer(t, func(s *treff.Server) { s.Modules = []treff.Module{k} })
	phone := ts.Login(t, "alice", "alicepw", "phone")
	enableResume(t, phone)
	phone.Send("<presence/>")
	bob := ts.Login(t, "bob", "bobpw", "desk")
	phone.Conn().Close()
	ts.WaitHibernating(t, "alice@localhost/phone")
	bob.Send("<message to='alice@localhost/phone' id='m1' type='chat'><body>one</body></message>")
	bob.Send("<message to='alice@localhost/phone' id='g1' type='groupchat'><body>room</body></message>")
	bob.Sync()
	if got := k.ids(); !got["m1"] || got["g1"] || len(got) != 1 {
		t.Fatalf("kept %v, want m1 only", got)
	}

	k.mu.Lock()
	k.fail = errors.New("disk full")
	k.mu.Unlock()
	bob.Send("<message to='alice@localhost/phone' id='m2' type='chat'><body>two</body></message>")
	bob.Expect(`<message type='error' id='m2'[^>]*><error type='cancel'><internal-server-error xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>`)

	k.mu.Lock()
	k.fail, k.panics = nil, true
	k.mu.Unlock()
	bob.Send("<message to='alice@localhost/phone' id='m3' type='chat'><body>three</body></message>")
	bob.Expect(`<message type='error' id='m3'[^>]*><error type='cancel'><internal-server-error xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>`)
	bob.Sync()
}

// With Server.KeepInFlight the Keeper also sees what a connected session
// with stream management is sent, and forgets it once the client
// acknowledges it; a session without stream management is not kept for
// (nothing tells the server it arrived), and neither are presence or
// IQs.
func TestKeepInFlight(t *testing.T) {
	k := &memKeeper{kept: make(map[uint64]string)}
	ts := newTestServer(t, func(s *treff.Server) {
		s.Modules = []treff.Module{k}
		s.KeepInFlight = true
	})
	phone := ts.Login(t, "alice", "alicepw", "phone")
	phone.Send("<enable xmlns='urn:xmpp:sm:3'/>")
	phone.Expect(`<enabled xmlns='urn:xmpp:sm:3'/>`)
	desk := ts.Login(t, "alice", "alicepw", "desk") // no stream management
	bob := ts.Login(t, "bob", "bobpw", "desk")

	bob.Send("<message to='alice@localhost/phone' id='m1' type='chat'><body>one</body></message>")
	phone.Expect(`<message [^>]*id='m1'`)
	bob.Send("<message to='alice@localhost/desk' id='d1' type='chat'><body>desk</body></message>")
	desk.Expect(`<message [^>]*id='d1'`)
	bob.Sync()
	if got := k.ids(); !got["m1"] || len(got) != 1 {
		t.Fatalf("kept %v while the phone had not acknowledged, want m1 only", got)
	}

	phone.Send("<a xmlns='urn:xmpp:sm:3' h='1'/>")
	phone.Sync()
	if got := k.ids(); len(got) != 0 {
		t.Fatalf("kept %v after the phone acknowledged, want none", got)
	}

	// Kept before it is queued: once the phone has it, so has the Keeper.
	bob.Send("<message to='alice@localhost/phone' id='m2' type='chat'><body>two</body></message>")
	phone.Expect(`<message [^>]*id='m2'`)
	if got := k.ids(); !got["m2"] {
		t.Fatalf("kept %v, want m2", got)
	}
}
