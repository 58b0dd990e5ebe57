package antispam_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/antispam"
	"github.com/treff-im/treff/ratelimit"
	"github.com/treff-im/treff/roster"
	"github.com/treff-im/treff/storage"
	"github.com/treff-im/treff/trefftest"
)

// clock is a settable time for the limits.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// makeOld sets the creation time of user's account long ago.
func makeOld(t *testing.T, ts *trefftest.Server, user string) {
	t.Helper()
	ctx := context.Background()
	a, err := ts.Store.Account(ctx, user)
	if err != nil {
		t.Fatal(err)
	}
	a.Created = time.Now().Add(-30 * 24 * time.Hour)
	if err := ts.Store.UpdateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
}

func befriend(t *testing.T, ts *trefftest.Server, a, b string) {
	t.Helper()
	ctx := context.Background()
	for _, p := range [][2]string{{a, b}, {b, a}} {
		if _, err := ts.Store.PutRosterItem(ctx, p[0], storage.RosterItem{JID: p[1], Subscription: storage.SubBoth}); err != nil {
			t.Fatal(err)
		}
	}
}

const policyWait = `<error type='wait'><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'[^>]*>`

// rest matches the end of a bounce after its text's start.
const rest = `[^<]*</text></error></(?:message|presence|iq)>`

// newLimited starts a server with the limits and the accounts newbie
// (new), oldie (old), friend (newbie's contact) and stranger1..3.
func newLimited(t *testing.T, l *antispam.Limits) (*trefftest.Server, *clock) {
	t.Helper()
	clk := &clock{t: time.Now()}
	l.Now = clk.now
	ts := trefftest.NewServer(t, func(s *treff.Server) { s.Modules = []treff.Module{&roster.Module{}, l} })
	for _, u := range []string{"newbie", "oldie", "friend", "stranger1", "stranger2", "stranger3"} {
		ts.AddUser(t, u, "pw")
	}
	makeOld(t, ts, "oldie@localhost")
	befriend(t, ts, "newbie@localhost", "friend@localhost")
	return ts, clk
}

func TestStrangersLimit(t *testing.T) {
	ts, clk := newLimited(t, &antispam.Limits{Strangers: ratelimit.Limit{N: 3, Period: time.Hour}})
	newbie := ts.Login(t, "newbie", "pw", "r")
	s1 := ts.Login(t, "stranger1", "pw", "r")
	s1.Send("<presence/>")
	s1.Sync()
	friend := ts.Login(t, "friend", "pw", "r")
	friend.Send("<presence/>")
	friend.Sync()
	for i := range 3 {
		newbie.Send("<message to='stranger1@localhost' id='m" + string(rune('0'+i)) + "' type='chat'><body>buy</body></message>")
	}
	for i := range 3 {
		s1.Expect(`<message[^>]*id='m` + string(rune('0'+i)) + `'`)
	}
	// The fourth, to anyone not a contact, message or subscription
	// request, bounces.
	newbie.Send("<message to='stranger2@localhost' id='m3' type='chat'><body>buy</body></message>")
	got := newbie.Expect(`<message type='error' id='m3' to='newbie@localhost/r' from='stranger2@localhost'>` + policyWait + `New accounts may send 3 per 1h messages and contact requests to people who are not their contacts` + rest)
	if !strings.Contains(got, "policy-violation") {
		t.Fatal(got)
	}
	newbie.Send("<presence to='stranger3@localhost' id='s1' type='subscribe'/>")
	newbie.Expect(`<presence type='error' id='s1' to='newbie@localhost/r' from='stranger3@localhost'>` + policyWait + rest)
	// Contacts are no strangers.
	newbie.Send("<message to='friend@localhost' id='f1' type='chat'><body>hi</body></message>")
	friend.Expect(`<message[^>]*id='f1'`)
	if out := newbie.Sync(); strings.Contains(out, "policy-violation") {
		t.Errorf("a message to a contact bounced: %s", out)
	}
	// One token back after 20 minutes (3 per hour).
	clk.add(20 * time.Minute)
	newbie.Send("<message to='stranger1@localhost' id='m4' type='chat'><body>again</body></message>")
	s1.Expect(`<message[^>]*id='m4'`)
	newbie.Send("<message to='stranger1@localhost' id='m5' type='chat'><body>again</body></message>")
	newbie.Expect(`<message type='error' id='m5'[^>]*>` + policyWait + rest)
	// The stranger got none of the refused ones.
	if out := s1.Sync(); strings.Contains(out, "id='m5'") {
		t.Errorf("a refused message arrived: %s", out)
	}
	// A new session does not start afresh.
	newbie2 := ts.Login(t, "newbie", "pw", "r2")
	newbie2.Send("<message to='stranger1@localhost' id='m6' type='chat'><body>again</body></message>")
	newbie2.Expect(`<message type='error' id='m6'[^>]*>` + policyWait + rest)
	// An account past NewAccountAge is not limited so.
	oldie := ts.Login(t, "oldie", "pw", "r")
	for i := range 10 {
		oldie.Send("<message to='stranger1@localhost' id='o" + string(rune('0'+i)) + "' type='chat'><body>hello</body></message>")
	}
	for i := range 10 {
		s1.Expect(`<message[^>]*id='o` + string(rune('0'+i)) + `'`)
	}
	if out := oldie.Sync(); strings.Contains(out, "policy-violation") {
		t.Errorf("an old account's message bounced: %s", out)
	}
}

func TestNewAccountAge(t *testing.T) {
	ts, clk := newLimited(t, &antispam.Limits{NewAccountAge: time.Hour, Strangers: ratelimit.Limit{N: 1, Period: time.Hour}})
	newbie := ts.Login(t, "newbie", "pw", "r")
	newbie.Send("<presence to='stranger1@localhost' id='s1' type='subscribe'/>")
	newbie.Send("<presence to='stranger2@localhost' id='s2' type='subscribe'/>")
	newbie.Expect(`<presence type='error' id='s2'[^>]*>` + policyWait + rest)
	// An hour later the account is not new any more.
	clk.add(61 * time.Minute)
	newbie.Send("<presence to='stranger3@localhost' id='s3' type='subscribe'/>")
	newbie.Send("<presence to='stranger2@localhost' id='s4' type='subscribe'/>")
	if out := newbie.Sync(); strings.Contains(out, "policy-violation") {
		t.Errorf("an account past its new age was limited: %s", out)
	}
}

func TestMessagesLimit(t *testing.T) {
	ts, _ := newLimited(t, &antispam.Limits{Messages: ratelimit.Limit{N: 5, Period: time.Minute}})
	oldie := ts.Login(t, "oldie", "pw", "r")
	s1 := ts.Login(t, "stranger1", "pw", "r")
	s1.Send("<presence/>")
	s1.Sync()
	for i := range 6 {
		oldie.Send("<message to='stranger1@localhost' id='o" + string(rune('0'+i)) + "'><body>hello</body></message>")
	}
	oldie.Expect(`<message type='error' id='o5'[^>]*>` + policyWait + `You are sending too many messages \(the limit is 5 per 1m\)` + rest)
	for i := range 5 {
		s1.Expect(`<message[^>]*id='o` + string(rune('0'+i)) + `'`)
	}
	if out := s1.Sync(); strings.Contains(out, "id='o5'") {
		t.Errorf("the sixth message arrived: %s", out)
	}
	// Errors are never limited (nor bounced).
	oldie.Send("<message to='stranger1@localhost/r' id='e1' type='error'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>")
	s1.Expect(`<message[^>]*id='e1'`)
}

func TestJoinsCreationsUploads(t *testing.T) {
	var mu sync.Mutex
	existing := map[string]bool{"old@conference.localhost": true}
	l := &antispam.Limits{
		Joins:     ratelimit.Limit{N: 3, Period: time.Minute},
		Creations: ratelimit.Limit{N: 1, Period: time.Hour},
		Uploads:   ratelimit.Limit{N: 1, Period: time.Hour},
		RoomExists: func(ctx context.Context, room jid.JID) (bool, error) {
			mu.Lock()
			defer mu.Unlock()
			return existing[room.String()], nil
		},
	}
	ts, _ := newLimited(t, l)
	newbie := ts.Login(t, "newbie", "pw", "r")
	join := func(room, id string) {
		newbie.Send("<presence to='" + room + "@conference.localhost/nick' id='" + id + "'><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='n' ver='v'/><x xmlns='http://jabber.org/protocol/muc'/></presence>")
	}
	join("new1", "j1") // a creation
	join("new2", "j2") // a second creation: over
	newbie.Expect(`<presence type='error' id='j2'[^>]*>` + policyWait + `New accounts may create 1 per 1h group chats` + rest)
	join("old", "j3")
	join("old", "j4")
	join("old", "j5") // the fourth join: over (the refused creation did not count)
	newbie.Expect(`<presence type='error' id='j5'[^>]*>` + policyWait + `You are entering too many group chats \(the limit is 3 per 1m\)` + rest)
	if out := newbie.Sync(); strings.Contains(out, "policy-violation") {
		t.Errorf("more bounced: %s", out)
	}
	// A presence without the MUC element (a nickname change) is no join.
	newbie.Send("<presence to='old@conference.localhost/other' id='n1'/>")
	if out := newbie.Sync(); strings.Contains(out, "policy-violation") {
		t.Errorf("a nickname change bounced: %s", out)
	}
	req := "<request xmlns='urn:xmpp:http:upload:0' filename='a.png' size='100'/>"
	newbie.Send("<iq type='get' id='u1' to='upload.localhost'>" + req + "</iq>")
	newbie.Send("<iq type='get' id='u2' to='upload.localhost'>" + req + "</iq>")
	newbie.Expect(`<iq type='error' id='u2'[^>]*>` + policyWait + `New accounts may upload 1 per 1h files` + rest)
	// Old accounts ask for slots freely.
	oldie := ts.Login(t, "oldie", "pw", "r")
	for _, id := range []string{"v1", "v2", "v3"} {
		oldie.Send("<iq type='get' id='" + id + "' to='upload.localhost'>" + req + "</iq>")
	}
	if out := oldie.Sync(); strings.Contains(out, "policy-violation") {
		t.Errorf("an old account's upload request bounced: %s", out)
	}
}

func TestLimitsOff(t *testing.T) {
	off := ratelimit.Limit{N: -1}
	ts, _ := newLimited(t, &antispam.Limits{Strangers: off, Messages: off})
	newbie := ts.Login(t, "newbie", "pw", "r")
	for i := range 100 {
		newbie.Send("<message to='stranger" + string(rune('1'+i%3)) + "@localhost' type='chat'><body>x</body></message>")
	}
	if out := newbie.Sync(); strings.Contains(out, "policy-violation") {
		t.Errorf("limits that are off bounced: %s", out)
	}
}

// A deleted account's buckets go with it: made again, the account starts
// afresh (and new).
func TestDeletedAccountForgotten(t *testing.T) {
	ts, _ := newLimited(t, &antispam.Limits{Strangers: ratelimit.Limit{N: 1, Period: time.Hour}})
	newbie := ts.Login(t, "newbie", "pw", "r")
	newbie.Send("<presence to='stranger1@localhost' id='s1' type='subscribe'/>")
	newbie.Send("<presence to='stranger2@localhost' id='s2' type='subscribe'/>")
	newbie.Expect(`<presence type='error' id='s2'[^>]*>` + policyWait + rest)
	if err := ts.DeleteAccount(context.Background(), jid.MustParse("newbie@localhost"), "gone"); err != nil {
		t.Fatal(err)
	}
	newbie.ExpectClosed()
	ts.AddUser(t, "newbie", "pw")
	again := ts.Login(t, "newbie", "pw", "r")
	again.Send("<presence to='stranger2@localhost' id='s3' type='subscribe'/>")
	if out := again.Sync(); strings.Contains(out, "policy-violation") {
		t.Errorf("the new account inherited the old one's limit: %s", out)
	}
	again.Send("<presence to='stranger3@localhost' id='s4' type='subscribe'/>")
	again.Expect(`<presence type='error' id='s4'[^>]*>` + policyWait + rest)
}

// A new account answers freely whoever wrote to it first.
func TestAnswerWhoWroteFirst(t *testing.T) {
	ts, _ := newLimited(t, &antispam.Limits{Strangers: ratelimit.Limit{N: 1, Period: time.Hour}})
	newbie := ts.Login(t, "newbie", "pw", "r")
	newbie.Send("<presence/>")
	newbie.Sync()
	s1 := ts.Login(t, "stranger1", "pw", "r")
	s1.Send("<presence/>")
	s1.Sync()
	s1.Send("<message to='newbie@localhost' id='q' type='chat'><body>hello?</body></message>")
	newbie.Expect(`<message[^>]*id='q'`)
	for _, id := range []string{"a1", "a2", "a3"} {
		newbie.Send("<message to='stranger1@localhost' id='" + id + "' type='chat'><body>hi</body></message>")
		s1.Expect(`<message[^>]*id='` + id + `'`)
	}
	if out := newbie.Sync(); strings.Contains(out, "policy-violation") {
		t.Errorf("answers to who wrote first bounced: %s", out)
	}
	// Others are still strangers: one passes, the next bounces.
	newbie.Send("<message to='stranger2@localhost' id='b1' type='chat'><body>hi</body></message>")
	newbie.Send("<message to='stranger2@localhost' id='b2' type='chat'><body>hi</body></message>")
	newbie.Expect(`<message type='error' id='b2'[^>]*>` + policyWait + rest)
}

// TestApproved: an account an admin approved is not new, whatever its
// age: stored before its first login, or told while it is logged in.
func TestApproved(t *testing.T) {
	l := &antispam.Limits{NewAccountAge: time.Hour, Strangers: ratelimit.Limit{N: 1, Period: time.Hour}}
	ts, _ := newLimited(t, l)
	ctx := context.Background()
	acc, err := ts.Store.Account(ctx, "stranger3@localhost")
	if err != nil {
		t.Fatal(err)
	}
	acc.Approved = time.Now()
	if err := ts.Store.UpdateAccount(ctx, acc); err != nil {
		t.Fatal(err)
	}
	approved := ts.Login(t, "stranger3", "pw", "r")
	for i := range 3 {
		approved.Send("<presence to='stranger" + string(rune('1'+i%2)) + "@localhost' id='a" + string(rune('0'+i)) + "' type='subscribe'/>")
	}
	if out := approved.Sync(); strings.Contains(out, "policy-violation") {
		t.Errorf("an approved account was limited: %s", out)
	}
	newbie := ts.Login(t, "newbie", "pw", "r")
	newbie.Send("<presence to='stranger1@localhost' id='n1' type='subscribe'/>")
	newbie.Send("<presence to='stranger2@localhost' id='n2' type='subscribe'/>")
	newbie.Expect(`<presence type='error' id='n2'[^>]*>` + policyWait + rest)
	l.Approved(jid.MustParse("newbie@localhost"))
	newbie.Send("<presence to='stranger3@localhost' id='n3' type='subscribe'/>")
	if out := newbie.Sync(); strings.Contains(out, "policy-violation") {
		t.Errorf("an account approved while logged in was limited: %s", out)
	}
}
