package e2e

import (
	"context"
	"encoding/xml"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/disco"
	"github.com/treff-im/treff/offline"
	"github.com/treff-im/treff/ping"
	"github.com/treff-im/treff/roster"
	"github.com/treff-im/treff/storage"
	"github.com/treff-im/treff/version"
	"github.com/treff-im/treff/xtime"
)

// imModules configures the IM modules in the order of the package im
// bundle: roster first, then offline storage.
func imModules(s *treff.Server) {
	s.Modules = []treff.Module{&roster.Module{}, &offline.Module{}, &disco.Module{},
		&ping.Module{}, &version.Module{}, &xtime.Module{}}
}

// newIMServer starts a server with the IM modules and the accounts alice
// and bob.
func newIMServer(t *testing.T, configure func(*treff.Server)) *server {
	t.Helper()
	s := newServer(t, configure)
	s.AddUser(t, "alice", alicePW)
	s.AddUser(t, "bob", bobPW)
	return s
}

// im runs a scenario of clients/im.py.
func (s *server) im(t *testing.T, scenario string, args ...string) events {
	t.Helper()
	return s.client(t, "im.py", scenario, args...)
}

// Events of clients/im.py (see its doc comment).
type (
	imRosterItem struct {
		JID          string   `json:"jid"`
		Name         string   `json:"name"`
		Subscription string   `json:"subscription"`
		Ask          string   `json:"ask"`
		Groups       []string `json:"groups"`
	}
	imPresence struct {
		From     string `json:"from"`
		To       string `json:"to"`
		Type     string `json:"type"`
		Status   string `json:"status"`
		Priority string `json:"priority"`
	}
	imRoster struct {
		Push  bool           `json:"push"`
		Ver   *string        `json:"ver"`
		Items []imRosterItem `json:"items"`
	}
	imState struct {
		JID              string         `json:"jid"`
		Roster           []imRosterItem `json:"roster"`
		RosterVer        *string        `json:"roster_ver"`
		PeerSubscription string         `json:"peer_subscription"`
		PeerPendingOut   bool           `json:"peer_pending_out"`
		Online           []string       `json:"online"`
	}
	imMarker struct {
		Name      string `json:"name"`
		RosterVer bool   `json:"rosterver"`
		SentVer   string `json:"sent_ver"`
	}
)

func presences(t *testing.T, es events, client string) []imPresence {
	var out []imPresence
	for _, e := range es.of("presence", client) {
		var p imPresence
		e.decode(t, &p)
		out = append(out, p)
	}
	return out
}

func imStateOf(t *testing.T, es events, client string) imState {
	t.Helper()
	var st imState
	es.one(t, "im_state", client).decode(t, &st)
	return st
}

// index returns the position in es of the first event of the given kind
// and client for which match holds, or -1.
func index(es events, kind, client string, match func(event) bool) int {
	for i, e := range es {
		if e.Event == kind && e.Client == client && match(e) {
			return i
		}
	}
	return -1
}

func markerIndex(t *testing.T, es events, client, name string) int {
	t.Helper()
	i := index(es, "marker", client, func(e event) bool {
		var m imMarker
		e.decode(t, &m)
		return m.Name == name
	})
	if i < 0 {
		t.Fatalf("client %s never reached %q", client, name)
	}
	return i
}

// checkRoster asserts that st's roster, as the server sent it, holds only
// peer with subscription sub and no pending request, and that slixmpp's
// roster agrees.
func checkRoster(t *testing.T, client string, st imState, peer, sub string) {
	t.Helper()
	want := []imRosterItem{{JID: peer, Subscription: sub, Groups: []string{}}}
	if len(st.Roster) != 1 || st.Roster[0].JID != peer || st.Roster[0].Subscription != sub || st.Roster[0].Ask != "" {
		t.Errorf("%s: roster %+v, want %+v", client, st.Roster, want)
	}
	if st.PeerSubscription != sub || st.PeerPendingOut {
		t.Errorf("%s: slixmpp's roster has %s with subscription %q (pending out %v), want %q",
			client, peer, st.PeerSubscription, st.PeerPendingOut, sub)
	}
}

// checkStored asserts the subscription state the server stored for user's
// contact.
func checkStored(t *testing.T, s *server, user, contact string, sub storage.Subscription) {
	t.Helper()
	it, err := s.Store.RosterItem(context.Background(), user, contact)
	if err != nil {
		t.Errorf("stored roster item %s of %s: %v", contact, user, err)
		return
	}
	if it.Subscription != sub || it.PendingIn || it.PendingOut || it.Approved {
		t.Errorf("stored roster item %s of %s: %+v, want subscription %s and nothing pending", contact, user, it, sub)
	}
}

// TestSubscribeOnline: alice and bob, both online (roster fetched,
// initial presence sent), subscribe to each other with slixmpp (alice
// asks, bob approves and asks back, alice approves; slixmpp's automatic
// answers are off, so every presence the peer sees comes from the
// server). Each must see the other come online from its full JID, both
// rosters must end at 'both', and later status changes must reach the
// contact (RFC 6121 3.1, 4.2, 4.4).
func TestSubscribeOnline(t *testing.T) {
	t.Parallel()
	s := newIMServer(t, imModules)
	body := uniqueBody("subscribe")
	es := s.im(t, "subscribe_online", "--jid", "alice@localhost", "--password", alicePW,
		"--peer", "bob@localhost", "--peer-password", bobPW, "--body", body)
	aliceJID := es.one(t, "login", "alice").JID
	bobJID := es.one(t, "login", "bob").JID

	for _, c := range []struct{ name, peer, peerFull, status string }{
		{"alice", "bob@localhost", bobJID, "bob " + body},
		{"bob", "alice@localhost", aliceJID, "alice " + body},
	} {
		st := imStateOf(t, es, c.name)
		checkRoster(t, c.name, st, c.peer, "both")
		if !slices.Contains(st.Online, c.peerFull) {
			t.Errorf("%s: got_online for %q, want %s among them", c.name, st.Online, c.peerFull)
		}
		ps := presences(t, es, c.name)
		// Subscription stanzas come from the contact's bare JID (RFC 6121
		// 3.1.2), each once.
		var subs []string
		sawStatus := false
		for _, p := range ps {
			switch p.Type {
			case "subscribe", "subscribed", "unsubscribe", "unsubscribed":
				if p.From != c.peer {
					t.Errorf("%s: %s from %q, want from the bare JID %s", c.name, p.Type, p.From, c.peer)
				}
				subs = append(subs, p.Type)
			case "":
				if p.From == c.peerFull && p.Status == c.status {
					sawStatus = true
				}
			}
		}
		// alice: bob's approval and request; bob: alice's request and approval.
		wantSubs := []string{"subscribe", "subscribed"}
		if c.name == "alice" {
			wantSubs = []string{"subscribed", "subscribe"}
		}
		if !slices.Equal(subs, wantSubs) {
			t.Errorf("%s got subscription stanzas %q, want %q", c.name, subs, wantSubs)
		}
		if !sawStatus {
			t.Errorf("%s did not see %s's status change", c.name, c.peerFull)
		}
	}
	checkStored(t, s, "alice@localhost", "bob@localhost", storage.SubBoth)
	checkStored(t, s, "bob@localhost", "alice@localhost", storage.SubBoth)
}

// TestSubscribeWhileOffline: alice asks to subscribe to bob while he is
// offline. bob logs in, gets his roster (which must not show alice yet:
// the server keeps a pending request out of the roster) and makes round
// trips: the request must come only after his initial presence (RFC 6121
// 3.1.3), once, from alice's bare JID. bob approves; alice's roster shows
// 'to', she sees bob online, and bob (subscription 'from') gets no
// presence of hers.
func TestSubscribeWhileOffline(t *testing.T) {
	t.Parallel()
	s := newIMServer(t, imModules)
	es := s.im(t, "subscribe_offline", "--jid", "alice@localhost", "--password", alicePW,
		"--peer", "bob@localhost", "--peer-password", bobPW)
	bobJID := es.one(t, "login", "bob").JID

	presenceAt := markerIndex(t, es, "bob", "presence_sent")
	var subscribes []int
	for i, e := range es {
		if e.Event != "presence" || e.Client != "bob" {
			continue
		}
		var p imPresence
		e.decode(t, &p)
		switch {
		case p.Type == "subscribe":
			subscribes = append(subscribes, i)
			if p.From != "alice@localhost" || p.To != bobJID {
				t.Errorf("request from %q to %q, want from alice@localhost to %s", p.From, p.To, bobJID)
			}
		case strings.HasPrefix(p.From, "alice@localhost"):
			t.Errorf("bob got alice's presence %+v without a subscription to her", p)
		}
	}
	if len(subscribes) != 1 {
		t.Fatalf("bob got %d subscription requests, want 1", len(subscribes))
	}
	if subscribes[0] < presenceAt {
		t.Errorf("the request came before bob's initial presence (event %d, presence at %d)", subscribes[0], presenceAt)
	}

	// bob's first roster, before he answered.
	first := index(es, "roster", "bob", func(event) bool { return true })
	if first < 0 || first > presenceAt {
		t.Fatalf("bob got no roster before his initial presence")
	}
	var r imRoster
	es[first].decode(t, &r)
	if r.Push || len(r.Items) != 0 {
		t.Errorf("bob's roster before he answered: %+v, want a result without items", r)
	}

	alice := imStateOf(t, es, "alice")
	checkRoster(t, "alice", alice, "bob@localhost", "to")
	if !slices.Contains(alice.Online, bobJID) {
		t.Errorf("alice: got_online for %q, want %s among them", alice.Online, bobJID)
	}
	checkRoster(t, "bob", imStateOf(t, es, "bob"), "alice@localhost", "from")
	checkStored(t, s, "alice@localhost", "bob@localhost", storage.SubTo)
	checkStored(t, s, "bob@localhost", "alice@localhost", storage.SubFrom)
}

// TestBareJIDRoutingWithIM runs bare-JID routing cases (see
// TestBareJIDRouting) on a server with the IM modules: offline storage
// present must not change delivery to available resources, and a message
// no resource may receive (only negative priority) is stored offline
// rather than bounced (RFC 6121 8.5.2.1.1, XEP-0160).
func TestBareJIDRoutingWithIM(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	t.Run("higher-priority-only", func(t *testing.T) {
		t.Parallel()
		s := newServer(t, imModules)
		routeCase{"phone-laptop", []string{"phone=5", "laptop=1"}, map[string]bool{"phone": true}, false}.runOn(t, s)
		if n, err := s.Store.CountOffline(ctx, "alice@localhost"); err != nil || n != 0 {
			t.Errorf("offline messages for alice: %d (%v), want 0", n, err)
		}
	})
	t.Run("only-negative-stored", func(t *testing.T) {
		t.Parallel()
		s := newServer(t, imModules)
		tc := routeCase{"negative-stored", []string{"negative=-1"}, map[string]bool{}, false}
		tc.runOn(t, s) // no error to the sender, nothing to the session
		msgs, err := s.Store.OfflineMessages(ctx, "alice@localhost")
		if err != nil || len(msgs) != 1 {
			t.Fatalf("offline messages for alice: %d (%v), want the bare-JID message", len(msgs), err)
		}
		var m struct {
			From string `xml:"from,attr"`
			To   string `xml:"to,attr"`
			Body string `xml:"body"`
		}
		if err := xml.Unmarshal(msgs[0].Stanza, &m); err != nil {
			t.Fatalf("stored stanza %q: %v", msgs[0].Stanza, err)
		}
		if m.To != "alice@localhost" || !strings.HasPrefix(m.From, "bob@localhost/") || !strings.HasPrefix(m.Body, "bare negative-stored ") {
			t.Errorf("stored %+v, want bob's bare-JID message to alice@localhost", m)
		}
	})
}

// TestOfflineMessage: a chat message to bob while he is offline is stored
// (XEP-0160); at his next login it arrives only after his initial presence,
// once, unchanged, with a XEP-0203 <delay/> from the server stamped with
// the time it was stored; then it is gone from storage. Run with the
// modules in the order of the im bundle (roster before offline) and with
// offline first.
func TestOfflineMessage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		configure func(*treff.Server)
	}{
		{"roster-first", imModules},
		{"offline-first", func(s *treff.Server) {
			imModules(s)
			s.Modules[0], s.Modules[1] = s.Modules[1], s.Modules[0]
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			testOfflineMessage(t, newIMServer(t, tc.configure))
		})
	}
}

func testOfflineMessage(t *testing.T, s *server) {
	ctx := context.Background()
	body := uniqueBody("offline")
	t0 := time.Now().Truncate(time.Millisecond)
	es := s.slix(t, "send", "--jid", "alice@localhost", "--password", alicePW, "--to", "bob@localhost", "--body", body)
	t1 := time.Now()
	aliceJID := es.one(t, "login", "alice").JID
	if got := es.of("message", "alice"); len(got) != 0 {
		t.Errorf("alice got %+v, want nothing (no error for a stored message)", got)
	}
	if n, err := s.Store.CountOffline(ctx, "bob@localhost"); err != nil || n != 1 {
		t.Fatalf("CountOffline(bob) = %d, %v after alice's message; want 1", n, err)
	}

	es = s.im(t, "offline_login", "--jid", "bob@localhost", "--password", bobPW, "--wait", "3")
	var wait struct {
		Before int `json:"before_presence"`
		After  int `json:"after_presence"`
	}
	es.one(t, "offline_wait", "bob").decode(t, &wait)
	if wait.Before != 0 {
		t.Errorf("bob got %d messages before his initial presence, want 0", wait.Before)
	}
	msgs := es.of("message", "bob")
	if wait.After != 1 || len(msgs) != 1 {
		n, _ := s.Store.CountOffline(ctx, "bob@localhost")
		t.Fatalf("bob got %d messages after his initial presence (%d in all), want the stored one; %d still stored", wait.After, len(msgs), n)
	}
	m := msgs[0]
	if m.From != aliceJID || m.To != "bob@localhost" || m.Type != "chat" || m.Body != body {
		t.Errorf("got from=%q to=%q type=%q body=%q; want alice's chat message from %s to bob@localhost with body %q",
			m.From, m.To, m.Type, m.Body, aliceJID, body)
	}
	if i, p := index(es, "message", "bob", func(event) bool { return true }), markerIndex(t, es, "bob", "presence_sent"); i < p {
		t.Errorf("the message came before bob's initial presence")
	}
	var d struct {
		Body     string `json:"body"`
		Stamp    string `json:"stamp"`
		RawStamp string `json:"raw_stamp"`
		From     string `json:"delay_from"`
	}
	es.one(t, "delay", "bob").decode(t, &d)
	if d.From != "localhost" {
		t.Errorf("delay from %q, want the server, localhost", d.From)
	}
	raw, err := time.Parse(time.RFC3339Nano, d.RawStamp)
	if err != nil {
		t.Fatalf("delay stamp %q: %v", d.RawStamp, err)
	}
	if !strings.HasSuffix(d.RawStamp, "Z") || raw.Before(t0) || raw.After(t1) {
		t.Errorf("delay stamp %s, want a UTC time between %s and %s (when alice sent it)", d.RawStamp,
			t0.UTC().Format(time.RFC3339Nano), t1.UTC().Format(time.RFC3339Nano))
	}
	if parsed, err := time.Parse(time.RFC3339Nano, d.Stamp); err != nil || !parsed.Equal(raw) {
		t.Errorf("slixmpp read the stamp as %q (%v), want %s", d.Stamp, err, raw)
	}

	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err := s.Store.CountOffline(ctx, "bob@localhost")
		if err == nil && n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("CountOffline(bob) = %d, %v 5s after delivery; want 0", n, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRosterVersioning (XEP-0237): the server offers
// urn:xmpp:features:rosterver, so slixmpp sends the version it holds. A
// get with the current version is answered by an empty result (no
// <query/>); after a change, a get with the old version returns the whole
// roster with the new version, which the roster push announced too; a get
// without a version returns the whole roster.
func TestRosterVersioning(t *testing.T) {
	t.Parallel()
	s := newIMServer(t, imModules)
	es := s.im(t, "rosterver", "--jid", "alice@localhost", "--password", alicePW, "--to", "carol@localhost")
	var m imMarker
	es[markerIndex(t, es, "alice", "get_roster")].decode(t, &m)
	if !m.RosterVer {
		t.Fatalf("slixmpp did not see the rosterver stream feature")
	}
	type reply struct {
		Label    string         `json:"label"`
		SentVer  *string        `json:"sent_ver"`
		Type     string         `json:"type"`
		HasQuery bool           `json:"has_query"`
		Ver      *string        `json:"ver"`
		Items    []imRosterItem `json:"items"`
		XML      string         `json:"xml"`
	}
	replies := map[string]reply{}
	for _, e := range es.of("roster_reply", "alice") {
		var r reply
		e.decode(t, &r)
		replies[r.Label] = r
		if r.Type != "result" {
			t.Errorf("%s: reply %s", r.Label, r.XML)
		}
	}
	str := func(p *string) string {
		if p == nil {
			return "<none>"
		}
		return *p
	}
	first := replies["first"]
	if !first.HasQuery || first.Ver == nil || *first.Ver == "" || len(first.Items) != 0 {
		t.Fatalf("first roster: %s, want an empty roster with a version", first.XML)
	}
	v0 := *first.Ver
	empty := func(label, sent string) {
		t.Helper()
		r := replies[label]
		if str(r.SentVer) != sent {
			t.Errorf("%s: sent ver %s, want %s", label, str(r.SentVer), sent)
		}
		if r.HasQuery {
			t.Errorf("%s: reply to a get with the current version %s: %s, want an empty result", label, sent, r.XML)
		}
	}
	empty("unchanged", v0)

	var push imRoster
	for _, e := range es.of("roster", "alice") {
		var r imRoster
		e.decode(t, &r)
		if r.Push {
			push = r
		}
	}
	carol := imRosterItem{JID: "carol@localhost", Name: "Carol", Subscription: "none", Groups: []string{"Friends"}}
	if len(push.Items) != 1 || fmt.Sprint(push.Items[0]) != fmt.Sprint(carol) || push.Ver == nil || *push.Ver == v0 || *push.Ver == "" {
		t.Fatalf("roster push %+v (ver %s), want %+v with a new version", push.Items, str(push.Ver), carol)
	}
	v1 := *push.Ver
	for _, label := range []string{"raw_stale", "raw_without_ver"} {
		r := replies[label]
		if !r.HasQuery || str(r.Ver) != v1 || len(r.Items) != 1 || fmt.Sprint(r.Items[0]) != fmt.Sprint(carol) {
			t.Errorf("%s (sent ver %s): %s, want the roster with %+v and ver %s", label, str(r.SentVer), r.XML, carol, v1)
		}
	}
	empty("raw_current", v1)
	empty("after_push", v1)
}

// TestServerQueries: slixmpp's plugins against the server: disco#info
// (XEP-0030) names the server and lists the features of the loaded
// modules, each once; the entity caps in the stream features (XEP-0115)
// verify against the disco#info of their node; software version
// (XEP-0092) is Treff; ping (XEP-0199) to the server and to the own
// account gets a result (slixmpp's ping() would also take an error from
// the own server as success, so the replies are checked as such); entity
// time (XEP-0202) is the current time in UTC.
func TestServerQueries(t *testing.T) {
	t.Parallel()
	s := newIMServer(t, imModules)
	t0 := time.Now().Add(-time.Second)
	es := s.im(t, "disco", "--jid", "alice@localhost", "--password", alicePW)
	t1 := time.Now().Add(time.Second)

	var info struct {
		From       string   `json:"from_jid"`
		Type       string   `json:"type"`
		Features   []string `json:"features"`
		Identities [][]any  `json:"identities"`
	}
	es.one(t, "disco_info", "alice").decode(t, &info)
	if info.Type != "result" || info.From != "localhost" {
		t.Errorf("disco#info reply: type %q from %q", info.Type, info.From)
	}
	for _, f := range []string{"urn:xmpp:ping", "jabber:iq:version", "urn:xmpp:time", "msgoffline",
		"http://jabber.org/protocol/disco#info", "http://jabber.org/protocol/disco#items"} {
		if !slices.Contains(info.Features, f) {
			t.Errorf("feature %s missing from %q", f, info.Features)
		}
	}
	sorted := slices.Clone(info.Features)
	slices.Sort(sorted)
	if len(slices.Compact(sorted)) != len(info.Features) {
		t.Errorf("features listed more than once: %q", info.Features)
	}
	if !slices.ContainsFunc(info.Identities, func(id []any) bool {
		return fmt.Sprint(id) == fmt.Sprint([]any{"server", "im", nil, "Treff"})
	}) {
		t.Errorf("identities %v, want server/im named Treff", info.Identities)
	}

	var caps struct {
		Node, Ver, Hash, Computed string
		ReplyNode                 string `json:"reply_node"`
	}
	es.one(t, "caps", "alice").decode(t, &caps)
	if caps.Hash != "sha-1" || caps.Node != disco.CapsNode || caps.Ver == "" || caps.Computed != caps.Ver {
		t.Errorf("caps %+v: slixmpp computes ver %q from the node's disco#info", caps, caps.Computed)
	}
	if caps.ReplyNode != caps.Node+"#"+caps.Ver {
		t.Errorf("disco#info of the caps node answered for node %q", caps.ReplyNode)
	}

	var v struct {
		From                    string `json:"from_jid"`
		Type, Name, Version, OS string
	}
	es.one(t, "version", "alice").decode(t, &v)
	if v.Type != "result" || v.From != "localhost" || v.Name != "Treff" || v.Version == "" || v.OS != "" {
		t.Errorf("software version %+v, want Treff with a version and no OS from localhost", v)
	}

	pings := es.of("ping", "alice")
	if len(pings) != 2 {
		t.Fatalf("%d ping replies, want 2", len(pings))
	}
	for _, e := range pings {
		var p struct {
			SentTo string `json:"sent_to"`
			From   string `json:"from_jid"`
			Type   string `json:"type"`
		}
		e.decode(t, &p)
		if p.Type != "result" || p.From != p.SentTo {
			t.Errorf("ping to %s: %s from %q, want a result from it", p.SentTo, p.Type, p.From)
		}
	}

	var tm struct {
		From                 string `json:"from_jid"`
		Type, Time, UTC, TZO string
	}
	es.one(t, "time", "alice").decode(t, &tm)
	utc, err := time.Parse(time.RFC3339Nano, tm.UTC)
	if tm.Type != "result" || tm.From != "localhost" || tm.TZO != "+00:00" || err != nil ||
		!strings.HasSuffix(tm.UTC, "Z") || utc.Before(t0) || utc.After(t1) {
		t.Errorf("entity time %+v (%v), want now in UTC with offset +00:00 from localhost", tm, err)
	}
	if parsed, err := time.Parse(time.RFC3339Nano, tm.Time); err != nil || !parsed.Equal(utc) {
		t.Errorf("slixmpp read the time as %q (%v), want %s", tm.Time, err, utc)
	}
}
