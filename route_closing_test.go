package treff_test

import (
	"context"
	"strings"
	"testing"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/offline"
	"github.com/treff-im/treff/trefftest"
)

// A message whose only recipient session starts closing between the
// router's lookup and the send is not lost: it follows the bare-JID rules
// without that session (offline storage here) instead of vanishing after
// its sender was told it was handled.
func TestMessageToClosingSession(t *testing.T) {
	closed := make(trefftest.ClosedSessions, 8)
	var ts *trefftest.Server
	ts = newTestServer(t, func(s *treff.Server) {
		s.Modules = []treff.Module{&offline.Module{}, closed, moduleFunc(func(r *treff.Registry) {
			// Runs after the router looked the recipient's sessions up.
			r.OnAccountStanza(func(ctx context.Context, st *treff.Stanza) bool {
				if st.ID == "close-first" {
					ts.Session(jid.MustParse("bob@localhost/desk")).Close("", "")
				}
				return false
			})
		})}
	})
	bob := ts.Login(t, "bob", "bobpw", "desk")
	bob.Send("<presence/>")
	bob.Sync()
	alice := ts.Login(t, "alice", "alicepw", "a")
	alice.Send("<message to='bob@localhost' id='close-first' type='chat'><body>hello</body></message>")
	alice.Sync()
	closed.Wait(t, "bob@localhost/desk")
	again := ts.Login(t, "bob", "bobpw", "desk2")
	again.Send("<presence/>")
	if got := again.Sync(); !strings.Contains(got, "id='close-first'") {
		t.Fatalf("the message to a closing session was lost; the next login got %q", got)
	}
}
