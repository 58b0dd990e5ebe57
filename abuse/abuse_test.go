package abuse_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/abuse"
	"github.com/treff-im/treff/blocking"
	"github.com/treff-im/treff/im"
	"github.com/treff-im/treff/pep"
	"github.com/treff-im/treff/storage"
	"github.com/treff-im/treff/trefftest"
)

func route(t *testing.T, ts *trefftest.Server, raw string) {
	t.Helper()
	st, err := treff.NewStanza([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	ts.Server.Route(context.Background(), st)
}

func hashOf(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// TestServerBlocklist blocks a domain (with its subdomains), a JID and a
// hash: their stanzas do not reach local users, and local users cannot
// send to them; the list survives a restart of the module (storage).
func TestServerBlocklist(t *testing.T) {
	m := &abuse.Module{}
	ts := trefftest.NewServer(t, func(s *treff.Server) { s.Modules = append(im.Modules(), m) })
	ts.AddUser(t, "alice", "pw")
	alice := ts.Login(t, "alice", "pw", "r")
	ctx := context.Background()
	if err := m.Block(ctx, "spam.example", "troll@other.example", hashOf("evil@hashed.example")); err != nil {
		t.Fatal(err)
	}
	if err := m.Block(ctx, "bob@localhost"); err == nil || !strings.Contains(err.Error(), "served here") {
		t.Errorf("blocking a local account: %v", err)
	}
	if err := m.Block(ctx, "a/b/c@"); err == nil {
		t.Error("blocking a malformed entry worked")
	}
	for j, want := range map[string]bool{
		"x@spam.example": true, "muc.spam.example": true, "x@notspam.example": false, "troll@other.example/r": true,
		"friend@other.example": false, "evil@hashed.example": true, "good@hashed.example": false, "alice@localhost": false,
	} {
		if got := m.Blocked(jid.MustParse(j)); got != want {
			t.Errorf("Blocked(%s) = %v, want %v", j, got, want)
		}
	}
	// Inbound: nothing arrives from blocked senders; a friend's message
	// does.
	route(t, ts, "<message from='x@spam.example/r' to='alice@localhost/r' type='chat'><body>buy</body></message>")
	route(t, ts, "<message from='evil@hashed.example/r' to='alice@localhost/r' type='chat'><body>buy</body></message>")
	route(t, ts, "<message from='friend@other.example/r' to='alice@localhost/r' type='chat'><body>hi</body></message>")
	got := alice.Expect(`<body>hi</body></message>`)
	if strings.Contains(got, "buy") {
		t.Errorf("a blocked sender's message arrived: %s", got)
	}
	// Outbound: the sender learns why.
	alice.Send("<message to='y@spam.example' type='chat' id='m1'><body>hello?</body></message>")
	alice.Expect(`<message [^>]*type='error'[^>]*>.*<not-allowed xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><text [^>]*>this server does not exchange messages with spam.example \(blocked by its admins\)</text>`)

	list, _, err := m.List(ctx)
	if err != nil || strings.Join(list, " ") != hashOf("evil@hashed.example")+" spam.example troll@other.example" {
		t.Errorf("List = %q, %v", list, err)
	}
	if err := m.Unblock(ctx, "spam.example"); err != nil {
		t.Fatal(err)
	}
	if m.Blocked(jid.MustParse("x@spam.example")) {
		t.Error("still blocked after Unblock")
	}
	// A new module on the same store reads the list.
	m2 := &abuse.Module{}
	ts2 := trefftest.NewServer(t, func(s *treff.Server) { s.Storage = ts.Store; s.Modules = []treff.Module{m2} })
	if err := ts2.Server.Setup(); err != nil {
		t.Fatal(err)
	}
	if !m2.Blocked(jid.MustParse("troll@other.example")) || m2.Blocked(jid.MustParse("x@spam.example")) {
		t.Error("the list was not kept in storage")
	}
}

// TestRTBL follows a block list published on the server's own pubsub
// service: the items at subscription time count, a new item blocks at
// once, a retraction unblocks.
func TestRTBL(t *testing.T) {
	ps := &pep.Service{}
	updates := make(chan int, 16)
	feed := abuse.Feed{Service: jid.MustParse("pubsub.localhost"), Node: "rtbl"}
	m := &abuse.Module{RTBL: []abuse.Feed{feed}, OnFeedUpdate: func(f abuse.Feed, n int) {
		if f.String() != feed.String() {
			t.Errorf("update of %v", f)
		}
		updates <- n
	}}
	ts := trefftest.NewServer(t, func(s *treff.Server) { s.Modules = append(im.Modules(), ps, m) })
	if err := ts.Server.Setup(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	svc := jid.MustParse("pubsub.localhost")
	if _, err := ps.Publish(ctx, svc, "rtbl", "early.example", []byte("<x xmlns='urn:test'/>")); err != nil {
		t.Fatal(err)
	}
	wait := func(want int) {
		t.Helper()
		for {
			select {
			case n := <-updates:
				if n == want {
					return
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("the feed did not reach %d entries", want)
			}
		}
	}
	wait(1)
	if !m.Blocked(jid.MustParse("x@early.example")) {
		t.Fatal("an item present at subscription does not block")
	}
	if _, err := ps.Publish(ctx, svc, "rtbl", hashOf("late@spam.example"), []byte("<x xmlns='urn:test'/>")); err != nil {
		t.Fatal(err)
	}
	wait(2)
	if !m.Blocked(jid.MustParse("late@spam.example/phone")) || m.Blocked(jid.MustParse("other@spam.example")) {
		t.Error("a published hash does not block its JID alone")
	}
	_, feeds, _ := m.List(ctx)
	if feeds[feed.String()] != 2 {
		t.Errorf("List feeds = %v", feeds)
	}
}

// TestReports stores a report and tells the admins.
func TestReports(t *testing.T) {
	m := &abuse.Module{Admins: []string{"boss@localhost"}, MaxReports: 2, ForwardTo: jid.MustParse("desk@localhost")}
	ts := trefftest.NewServer(t, func(s *treff.Server) {
		s.Modules = im.Modules()
		for _, mod := range s.Modules {
			if b, ok := mod.(*blocking.Module); ok {
				b.OnReport = m.Report
			}
		}
		s.Modules = append(s.Modules, m)
	})
	ts.AddUser(t, "alice", "pw")
	ts.AddUser(t, "boss", "pw")
	ts.AddUser(t, "desk", "pw")
	boss := ts.Login(t, "boss", "pw", "r")
	boss.Send("<presence/>")
	desk := ts.Login(t, "desk", "pw", "r")
	desk.Send("<presence/>")
	alice := ts.Login(t, "alice", "pw", "r")
	for i, who := range []string{"a@spam.example", "b@spam.example", "c@spam.example"} {
		alice.Send("<iq type='set' id='b" + string(rune('0'+i)) + "'><block xmlns='urn:xmpp:blocking'><item jid='" + who + "'>" +
			"<report xmlns='urn:xmpp:reporting:1' reason='urn:xmpp:reporting:spam'><text>pills</text></report></item></block></iq>")
		alice.Expect(`<iq type='result' id='b` + string(rune('0'+i)) + `'`)
		boss.Expect(`<message type='normal' from='localhost' to='boss@localhost'><subject>Spam report</subject><body>[^<]* alice@localhost reported ` + who + ` \(spam\): pills`)
		got := desk.Expect(`<message type='normal' from='localhost' to='desk@localhost'>.*?</message>`)
		if !strings.Contains(got, "<report xmlns='urn:xmpp:reporting:1' reason='urn:xmpp:reporting:spam'><jid xmlns='urn:xmpp:jid:0'>"+who+"</jid><text>pills</text></report>") || strings.Contains(got, "alice") {
			t.Errorf("forwarded report %s: want the report without the reporter", got)
		}
	}
	list, err := ts.Store.(storage.Reports).ListReports(context.Background())
	if err != nil || len(list) != 2 || list[0].Reported != "b@spam.example" || list[1].Reported != "c@spam.example" || list[1].Text != "pills" {
		t.Errorf("reports kept = %+v, %v (the oldest beyond MaxReports goes)", list, err)
	}
}

// remote catches what the server sends to other domains.
type remote struct{ got chan *treff.Stanza }

func (r *remote) Name() string { return "remote" }
func (r *remote) Setup(ctx context.Context, reg *treff.Registry) error {
	reg.HandleRemote(treff.StanzaHandlerFunc(func(ctx context.Context, st *treff.Stanza) {
		select {
		case r.got <- st:
		default:
		}
	}))
	return nil
}

// TestServerBlocklistAnswersSender: a blocked remote sender's message and
// IQ get are answered with <service-unavailable/> in the local account's
// name, and that answer leaves the server although it goes to a blocked
// address (found by TestAbuseFederation: the outbound filter dropped it).
func TestServerBlocklistAnswersSender(t *testing.T) {
	m := &abuse.Module{}
	rem := &remote{got: make(chan *treff.Stanza, 4)}
	ts := trefftest.NewServer(t, func(s *treff.Server) { s.Modules = append(im.Modules(), m, rem) })
	ts.AddUser(t, "alice", "pw")
	ts.Login(t, "alice", "pw", "r")
	if err := m.Block(context.Background(), "spam.example"); err != nil {
		t.Fatal(err)
	}
	for _, raw := range []string{
		"<message from='x@spam.example/r' to='alice@localhost' type='chat' id='m1'><body>buy</body></message>",
		"<iq from='x@spam.example/r' to='alice@localhost' type='get' id='q1'><query xmlns='jabber:iq:version'/></iq>",
	} {
		route(t, ts, raw)
		select {
		case st := <-rem.got:
			s := st.String()
			if st.Type != "error" || st.To.String() != "x@spam.example/r" || st.From.String() != "alice@localhost" ||
				!strings.Contains(s, "<service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>") {
				t.Errorf("the answer to %s: %s, want <service-unavailable/> from alice@localhost to x@spam.example/r", raw, s)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no answer left the server for %s", raw)
		}
	}
	// Errors of its own to a blocked address (not the module's) stay in.
	route(t, ts, "<message from='alice@localhost/r' to='x@spam.example/r' type='error' id='e1'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>")
	select {
	case st := <-rem.got:
		t.Errorf("an error of alice's reached a blocked address: %s", st)
	default:
	}
}
