package treff_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/treff-im/treff"
)

// TestHookPhases checks that hooks run by phase (filter, stamp, handle,
// observe) whatever the order of the modules, in module order within a
// phase, and that a stamp is seen by the later phases and the recipient.
func TestHookPhases(t *testing.T) {
	var mu sync.Mutex
	var order []string
	// note records the hooks that saw a message (Sync's pings pass too).
	note := func(st *treff.Stanza, s string) {
		if st.Kind != treff.KindMessage {
			return
		}
		mu.Lock()
		order = append(order, s)
		mu.Unlock()
	}
	observed := make(chan string, 1)
	ts := newTestServer(t, func(s *treff.Server) {
		s.Modules = []treff.Module{
			moduleFunc(func(r *treff.Registry) {
				r.InPhase(treff.PhaseObserve).OnAccountStanza(func(ctx context.Context, st *treff.Stanza) bool {
					note(st, "observe")
					if st.Kind == treff.KindMessage {
						observed <- st.String()
					}
					return false
				})
			}),
			moduleFunc(func(r *treff.Registry) {
				r.OnAccountStanza(func(ctx context.Context, st *treff.Stanza) bool { note(st, "handle-1"); return false })
			}),
			moduleFunc(func(r *treff.Registry) {
				r.InPhase(treff.PhaseStamp).OnAccountStanza(func(ctx context.Context, st *treff.Stanza) bool {
					note(st, "stamp")
					if st.Kind == treff.KindMessage {
						if err := st.AddChild([]byte("<stamped xmlns='urn:example:stamp'/>")); err != nil {
							t.Error(err)
						}
					}
					return false
				})
			}),
			moduleFunc(func(r *treff.Registry) {
				r.InPhase(treff.PhaseFilter).OnAccountStanza(func(ctx context.Context, st *treff.Stanza) bool {
					note(st, "filter")
					return st.ID == "drop"
				})
			}),
			moduleFunc(func(r *treff.Registry) {
				r.InPhase(treff.PhaseHandle).OnAccountStanza(func(ctx context.Context, st *treff.Stanza) bool { note(st, "handle-2"); return false })
			}),
		}
	})
	bob := ts.Login(t, "bob", "bobpw", "r")
	alice := ts.Login(t, "alice", "alicepw", "r")
	alice.Send("<message to='bob@localhost/r' id='drop' type='chat'><body>no</body></message>")
	alice.Sync()
	mu.Lock()
	if got := strings.Join(order, ","); got != "filter" {
		t.Errorf("a filtered stanza went through %s, want filter only", got)
	}
	order = nil
	mu.Unlock()
	alice.Send("<message to='bob@localhost/r' id='m1' type='chat'><body>yes</body></message>")
	got := bob.Expect(`id='m1'.*?</message>`)
	if !strings.Contains(got, "urn:example:stamp") {
		t.Errorf("recipient got %s, without the stamp", got)
	}
	if o := <-observed; !strings.Contains(o, "urn:example:stamp") {
		t.Errorf("observer saw %s, without the stamp", o)
	}
	mu.Lock()
	defer mu.Unlock()
	if got := strings.Join(order, ","); got != "filter,stamp,handle-1,handle-2,observe" {
		t.Errorf("hooks ran in the order %s", got)
	}
}
