package treff_test

import (
	"context"
	"strings"
	"testing"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/ping"
	"github.com/treff-im/treff/trefftest"
)

// swallowModule's OnAccountStanza hook consumes the IQs whose id starts
// with "swallow" (requests only, as a block list would) and reports their
// ids.
type swallowModule chan string

func (swallowModule) Name() string { return "swallow" }

func (m swallowModule) Setup(ctx context.Context, r *treff.Registry) error {
	r.OnAccountStanza(func(ctx context.Context, st *treff.Stanza) bool {
		if st.Kind != treff.KindIQ || st.Type != "get" || !strings.HasPrefix(st.ID, "swallow") {
			return false
		}
		m <- st.ID
		return true
	})
	return nil
}

// An OnAccountStanza hook that reports an IQ for an account as handled
// stops it: the server neither answers it for the account (bare JID) nor
// delivers it to the resource (full JID). IQs the hook lets pass are
// answered (the ping module answers for accounts) and delivered.
func TestAccountStanzaHookHandlesIQ(t *testing.T) {
	seen := make(swallowModule, 4)
	ts := trefftest.NewServer(t, func(s *treff.Server) {
		s.Modules = []treff.Module{&ping.Module{Interval: -1}, seen}
	})
	ts.AddUser(t, "alice", "alicepw")
	ts.AddUser(t, "bob", "bobpw")
	alice := ts.Login(t, "alice", "alicepw", "desk")
	bob := ts.Login(t, "bob", "bobpw", "phone")

	// Let through: the server answers for bob's account, bob gets the
	// one to his resource.
	alice.Send("<iq type='get' id='pass-1' to='bob@localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
	if got := alice.Expect(`<iq type='result' id='pass-1'[^>]*>`); !strings.Contains(got, "from='bob@localhost'") {
		t.Errorf("answer not from the account: %s", got)
	}
	alice.Send("<iq type='get' id='pass-2' to='bob@localhost/phone'><ping xmlns='urn:xmpp:ping'/></iq>")
	bob.Expect(`<iq [^>]*id='pass-2'[^>]*><ping xmlns='urn:xmpp:ping'/></iq>`)

	// Consumed by the hook: no answer, no delivery.
	alice.Send("<iq type='get' id='swallow-1' to='bob@localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
	alice.Send("<iq type='get' id='swallow-2' to='bob@localhost/phone'><ping xmlns='urn:xmpp:ping'/></iq>")
	// alice's session routed both before it answers her Sync; an answer
	// to either would have been queued before that one.
	if got := alice.Sync(); strings.Contains(got, "swallow") {
		t.Errorf("the server answered an IQ the hook handled: %s", got)
	}
	// What was routed to bob before alice's Sync answer is in his queue
	// before the answer to his own Sync.
	if got := bob.Sync(); strings.Contains(got, "swallow") {
		t.Errorf("an IQ the hook handled was delivered: %s", got)
	}
	for _, want := range []string{"swallow-1", "swallow-2"} {
		select {
		case got := <-seen:
			if got != want {
				t.Errorf("hook saw %s, want %s", got, want)
			}
		default:
			t.Errorf("hook did not see %s", want)
		}
	}
}
