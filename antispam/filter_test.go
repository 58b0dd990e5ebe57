package antispam_test

import (
	"context"
	"strings"
	"testing"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/adhoc"
	"github.com/treff-im/treff/antispam"
	"github.com/treff-im/treff/private"
	"github.com/treff-im/treff/roster"
	"github.com/treff-im/treff/storage"
	"github.com/treff-im/treff/trefftest"
)

// newFiltered starts a server with the filter and the accounts alice,
// bob (alice's contact), mallory and eve (strangers).
func newFiltered(t *testing.T, f *antispam.Filter) *trefftest.Server {
	t.Helper()
	ts := trefftest.NewServer(t, func(s *treff.Server) {
		s.Modules = []treff.Module{&roster.Module{}, f, &private.Module{}}
		if f.AdHoc != nil {
			s.Modules = append(s.Modules, f.AdHoc)
		}
	})
	for _, u := range []string{"alice", "bob", "mallory", "eve"} {
		ts.AddUser(t, u, "pw")
	}
	befriend(t, ts, "alice@localhost", "bob@localhost")
	return ts
}

func online(t *testing.T, ts *trefftest.Server, user string) *trefftest.Client {
	c := ts.Login(t, user, "pw", "r")
	c.Send("<presence/>")
	c.Sync()
	return c
}

func TestFilterModes(t *testing.T) {
	ah := &adhoc.Module{}
	f := &antispam.Filter{Default: antispam.Drop, AdHoc: ah, MaxQuarantine: 2}
	ts := newFiltered(t, f)
	alice := online(t, ts, "alice")
	bob := online(t, ts, "bob")
	mallory := online(t, ts, "mallory")
	ctx := context.Background()
	aliceJID := jid.MustParse("alice@localhost")

	// By default strangers' messages and requests go nowhere; the
	// sender learns nothing.
	mallory.Send("<message to='alice@localhost' id='m1' type='chat'><body>spam</body></message>")
	mallory.Send("<presence to='alice@localhost' id='p1' type='subscribe'/>")
	// Contacts, group chat, and the server pass.
	bob.Send("<message to='alice@localhost' id='b1' type='chat'><body>hi</body></message>")
	alice.Expect(`<message[^>]*id='b1'`)
	mallory.Send("<message to='alice@localhost/r' id='g1' type='groupchat'><body>room</body></message>")
	alice.Expect(`<message[^>]*id='g1'`)
	mallory.Send("<message to='alice@localhost' id='pm1' type='chat'><body>pm</body><x xmlns='http://jabber.org/protocol/muc#user'/></message>")
	alice.Expect(`<message[^>]*id='pm1'`)
	if out := alice.Sync(); strings.Contains(out, "spam") || strings.Contains(out, "subscribe") {
		t.Errorf("a stranger's stanza arrived: %s", out)
	}
	if out := mallory.Sync(); strings.Contains(out, "<message type='error'") || strings.Contains(out, "<presence type='error'") {
		t.Errorf("the stranger learned of the filter: %s", out)
	}

	// Someone alice wrote to is no stranger any more.
	alice.Send("<message to='mallory@localhost' id='a1' type='chat'><body>who are you?</body></message>")
	mallory.Expect(`id='a1'`)
	alice.Sync()
	mallory.Send("<message to='alice@localhost' id='m2' type='chat'><body>an answer</body></message>")
	alice.Expect(`<message[^>]*id='m2'`)

	// Alice switches to quarantine through the ad-hoc command.
	alice.Send("<iq type='set' id='c1' to='localhost'><command xmlns='http://jabber.org/protocol/commands' node='" + antispam.NodeFilter + "' action='execute'/></iq>")
	out := alice.Expect(`</iq>`)
	if !strings.Contains(out, "<value>drop</value>") || !strings.Contains(out, "<option><value>quarantine</value></option>") {
		t.Fatalf("command form: %s", out)
	}
	sid := between(out, "sessionid='", "'")
	alice.Send("<iq type='set' id='c2' to='localhost'><command xmlns='http://jabber.org/protocol/commands' node='" + antispam.NodeFilter + "' sessionid='" + sid + "'><x xmlns='jabber:x:data' type='submit'><field var='mode'><value>quarantine</value></field></x></command></iq>")
	alice.Expect(`id='c2'.*status='completed'.*kept for you to review`)
	if m, err := f.Mode(ctx, aliceJID); err != nil || m != antispam.Quarantine {
		t.Fatalf("Mode = %q, %v", m, err)
	}

	eve := online(t, ts, "eve")
	for _, id := range []string{"e1", "e2", "e3"} {
		eve.Send("<message to='alice@localhost' id='" + id + "' type='chat'><body>offer " + id + "</body></message>")
	}
	eve.Send("<presence to='alice@localhost' id='ep' type='subscribe'/>")
	eve.Sync()
	if out := alice.Sync(); strings.Contains(out, "offer") {
		t.Errorf("a quarantined message arrived: %s", out)
	}
	// The newest two are kept.
	q, err := f.Quarantined(ctx, aliceJID)
	if err != nil || len(q) != 2 || !strings.Contains(string(q[0].Stanza), "id='e3'") || !strings.Contains(string(q[1].Stanza), "type='subscribe'") {
		t.Fatalf("Quarantined = %+v, %v", q, err)
	}
	if d := antispam.Describe(q[0]); !strings.HasPrefix(d, "message from eve@localhost/r, ") || !strings.HasSuffix(d, ": offer e3") {
		t.Errorf("Describe = %q", d)
	}

	// Alice reviews them: delivers the message, discards the request.
	alice.Send("<iq type='set' id='q1' to='localhost'><command xmlns='http://jabber.org/protocol/commands' node='" + antispam.NodeQuarantine + "' action='execute'/></iq>")
	out = alice.Expect(`</iq>`)
	if !strings.Contains(out, "contact request from eve@localhost,") || !strings.Contains(out, "offer e3") {
		t.Fatalf("review form: %s", out)
	}
	sid = between(out, "sessionid='", "'")
	id := between(out, "<option><value>", "<")
	alice.Send("<iq type='set' id='q2' to='localhost'><command xmlns='http://jabber.org/protocol/commands' node='" + antispam.NodeQuarantine + "' sessionid='" + sid + "'><x xmlns='jabber:x:data' type='submit'><field var='deliver'><value>" + id + "</value></field><field var='discard'><value>1</value></field></x></command></iq>")
	out = alice.Expect(`id='q2'.*?</iq>`)
	if !strings.Contains(out, "<message") || !strings.Contains(out, "offer e3") || !strings.Contains(out, "urn:xmpp:delay") || !strings.Contains(out, "Delivered: 1. Discarded: 1. Kept: 0.") {
		t.Errorf("releasing: %s", out)
	}
	if q, err := f.Quarantined(ctx, aliceJID); err != nil || len(q) != 0 {
		t.Errorf("after review: %+v, %v", q, err)
	}

	// Back to the default, then off for alice.
	if err := f.SetMode(ctx, aliceJID, antispam.Off); err != nil {
		t.Fatal(err)
	}
	eve.Send("<message to='alice@localhost' id='e4' type='chat'><body>now?</body></message>")
	alice.Expect(`<message[^>]*id='e4'`)
}

func TestFilterBlocklist(t *testing.T) {
	// Filtering is off, but the blocklist drops its strangers.
	f := &antispam.Filter{Blocklist: antispam.NewDomains("spam.example", "localhost")}
	ts := newFiltered(t, f)
	alice := online(t, ts, "alice")
	bob := online(t, ts, "bob")
	mallory := online(t, ts, "mallory")
	mallory.Send("<message to='alice@localhost' id='m1' type='chat'><body>spam</body></message>")
	bob.Send("<message to='alice@localhost' id='b1' type='chat'><body>hi</body></message>")
	alice.Expect(`<message[^>]*id='b1'`)
	if out := alice.Sync(); strings.Contains(out, "spam") {
		t.Errorf("a blocklisted stranger's message arrived: %s", out)
	}
	d := antispam.NewDomains("spam.example")
	for j, want := range map[string]bool{"a@spam.example": true, "a@x.spam.example/r": true, "spam.example": true, "a@notspam.example": false, "a@example": false} {
		if got := d.Blocked(jid.MustParse(j)); got != want {
			t.Errorf("Blocked(%s) = %v", j, got)
		}
	}
	if _, err := antispam.ParseMode("sometimes"); err == nil {
		t.Error("ParseMode accepted sometimes")
	}
	ts.Store.PutRosterItem(context.Background(), "alice@localhost", storage.RosterItem{JID: "mallory@localhost", Subscription: storage.SubNone})
	mallory.Send("<message to='alice@localhost' id='m2' type='chat'><body>now a contact</body></message>")
	alice.Expect(`<message[^>]*id='m2'`)
}

func between(s, a, b string) string {
	_, s, _ = strings.Cut(s, a)
	s, _, _ = strings.Cut(s, b)
	return s
}

// Default is read as ParseMode reads it: "off" filters nothing, a mode
// it does not know stops the server from starting.
func TestFilterDefault(t *testing.T) {
	ts := newFiltered(t, &antispam.Filter{Default: "Off"})
	alice := online(t, ts, "alice")
	mallory := online(t, ts, "mallory")
	mallory.Send("<message to='alice@localhost' id='m1' type='chat'><body>hi</body></message>")
	alice.Expect(`<message[^>]*id='m1'`)

	srv := &treff.Server{Hosts: []treff.Host{{Domain: "localhost"}}, Storage: ts.Store,
		Modules: []treff.Module{&antispam.Filter{Default: "sometimes"}}}
	if err := srv.Setup(); err == nil || !strings.Contains(err.Error(), "sometimes") {
		t.Errorf("Setup with an unknown mode: %v", err)
	}
}

// A subscription request released from the quarantine reaches the user
// as one from the stranger, kept by the roster for her answer.
func TestReleaseSubscription(t *testing.T) {
	f := &antispam.Filter{Default: antispam.Quarantine}
	ts := newFiltered(t, f)
	alice := online(t, ts, "alice")
	eve := online(t, ts, "eve")
	eve.Send("<presence to='alice@localhost' type='subscribe'/>")
	eve.Sync()
	if out := alice.Sync(); strings.Contains(out, "subscribe") {
		t.Fatalf("the request arrived: %s", out)
	}
	ctx := context.Background()
	aliceJID := jid.MustParse("alice@localhost")
	q, err := f.Quarantined(ctx, aliceJID)
	if err != nil || len(q) != 1 {
		t.Fatalf("Quarantined = %+v, %v", q, err)
	}
	if n, err := f.Release(ctx, aliceJID, q[0].ID); n != 1 || err != nil {
		t.Fatalf("Release = %d, %v", n, err)
	}
	alice.Expect(`<presence[^>]*from='eve@localhost'[^>]*type='subscribe'|<presence[^>]*type='subscribe'[^>]*from='eve@localhost'`)
	if it, err := ts.Store.RosterItem(ctx, "alice@localhost", "eve@localhost"); err != nil || !it.PendingIn {
		t.Errorf("alice's roster item for eve: %+v, %v; want a pending request", it, err)
	}
	if q, _ := f.Quarantined(ctx, aliceJID); len(q) != 0 {
		t.Errorf("still kept: %+v", q)
	}
}
