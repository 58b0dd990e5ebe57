package treff_test

import (
	"strings"
	"testing"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/ping"
	"github.com/treff-im/treff/trefftest"
)

// Stats counts sessions by transport, stanzas by kind and delivery
// outcomes as clients log in, chat, write to nobody and leave.
func TestStats(t *testing.T) {
	closed := make(trefftest.ClosedSessions, 16)
	ts := trefftest.NewServer(t, func(s *treff.Server) { s.Modules = append(s.Modules, &ping.Module{}, closed) })
	ts.AddUser(t, "alice", "alicepw")
	ts.AddUser(t, "bob", "bobpw")

	if got := ts.Stats(); got != (treff.Stats{}) {
		t.Fatalf("a fresh server's stats = %+v, want zero", got)
	}
	alice := ts.Login(t, "alice", "alicepw", "laptop")
	bob := ts.DialTLS(t)
	bob.Login("bob", "bobpw", "phone")

	st := ts.Stats()
	if st.Sessions.TCP != 1 || st.Sessions.TLS != 1 || st.SessionsBound.TCP != 1 || st.SessionsBound.TLS != 1 {
		t.Errorf("after two logins: Sessions = %+v, SessionsBound = %+v", st.Sessions, st.SessionsBound)
	}

	// A client's Sync is answered once the server handled what the
	// client sent before; the answer's own delivery may be counted just
	// after the client read it, hence the ranges below.
	bob.Send("<presence/>")
	bob.Sync()
	alice.Sync()
	before := ts.Stats()
	alice.Send("<message to='bob@localhost' type='chat' id='m1'><body>hi</body></message>")
	bob.Expect(`<message [^>]*id='m1'`)
	alice.Sync()
	st = ts.Stats()
	if d := st.StanzasIn.Message - before.StanzasIn.Message; d != 1 {
		t.Errorf("one message sent: StanzasIn.Message grew by %d", d)
	}
	if d := st.StanzasOut.Message - before.StanzasOut.Message; d != 1 {
		t.Errorf("one message delivered: StanzasOut.Message grew by %d", d)
	}
	if d := st.Delivered - before.Delivered; d < 1 || d > 3 || st.Bounced != before.Bounced || st.Offline != 0 {
		t.Errorf("one message delivered: Delivered %d→%d, Bounced %d→%d, Offline %d", before.Delivered, st.Delivered, before.Bounced, st.Bounced, st.Offline)
	}
	if st.StanzasIn.Presence != 1 || st.StanzasIn.IQ < 3 || st.StanzasOut.IQ < 3 {
		t.Errorf("StanzasIn %+v, StanzasOut %+v; want 1 presence and 3 IQs in, 3 IQs out", st.StanzasIn, st.StanzasOut)
	}

	// No such account: the message bounces, and the error is delivered
	// to alice.
	before = st
	alice.Send("<message to='nobody@localhost' type='chat' id='m2'><body>hi</body></message>")
	if got := alice.Expect(`<message [^>]*id='m2'[^>]*>`); !strings.Contains(got, "type='error'") {
		t.Fatalf("message to nobody: %s", got)
	}
	alice.Sync()
	st = ts.Stats()
	if st.Bounced-before.Bounced != 1 || st.StanzasOut.Message-before.StanzasOut.Message != 1 || st.StanzasIn.Message-before.StanzasIn.Message != 1 {
		t.Errorf("one message bounced: Bounced %d→%d, StanzasOut %+v→%+v", before.Bounced, st.Bounced, before.StanzasOut, st.StanzasOut)
	}

	bob.Send("</stream:stream>")
	closed.Wait(t, bob.JID)
	st = ts.Stats()
	if st.Sessions.TLS != 0 || st.Sessions.TCP != 1 || st.SessionsBound.TLS != 1 {
		t.Errorf("after bob left: Sessions = %+v, SessionsBound = %+v", st.Sessions, st.SessionsBound)
	}
}
