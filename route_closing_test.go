package treff_test

import (
	"context"
	"strings"
	"testing"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/offline"
	"github.com/treff-im/treff/router"
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

// deadRemote is a session of another cluster node that died: it is
// still in the table (the others have not dropped its row yet), and
// forwarding to it fails.
type deadRemote struct{ j jid.JID }

func (d deadRemote) JID() jid.JID               { return d.j }
func (deadRemote) Available() bool              { return true }
func (deadRemote) Priority() int                { return 5 }
func (deadRemote) Presence() *treff.Stanza      { return nil }
func (deadRemote) Shared(string) string         { return "" }
func (deadRemote) Send([]byte) error            { return treff.ErrSessionClosed }
func (deadRemote) Close(condition, text string) {}

// A message a session had not acknowledged when it ended goes by the
// bare-JID rules to the account's other sessions; when the only one is
// on a node that died (forwarding fails), it goes to offline storage
// instead of being dropped.
func TestRerouteToDeadNode(t *testing.T) {
	closed := make(trefftest.ClosedSessions, 8)
	table := new(router.Local)
	ts := newTestServer(t, func(s *treff.Server) {
		s.Table = table
		s.Modules = []treff.Module{&offline.Module{}, closed}
	})
	table.Add(ts.RemoteSession(deadRemote{jid.MustParse("bob@localhost/elsewhere")}))
	bob := ts.Login(t, "bob", "bobpw", "desk")
	bob.Send("<enable xmlns='urn:xmpp:sm:3'/>")
	bob.Expect(`<enabled xmlns='urn:xmpp:sm:3'/>`)
	alice := ts.Login(t, "alice", "alicepw", "a")
	alice.Send("<message to='bob@localhost/desk' id='unacked' type='chat'><body>hello</body></message>")
	bob.Expect(`id='unacked'`)
	bob.Conn().Close() // not resumable: the session ends, the message is rerouted
	closed.Wait(t, "bob@localhost/desk")
	msgs, err := ts.Storage.OfflineMessages(context.Background(), "bob@localhost")
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 || !strings.Contains(string(msgs[0].Stanza), "id='unacked'") {
		t.Fatalf("offline storage holds %d messages, want the unacknowledged one", len(msgs))
	}
}
