package roster_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/roster"
	"github.com/treff-im/treff/storage"
	"github.com/treff-im/treff/storage/memstore"
	"github.com/treff-im/treff/trefftest"
	"mellium.im/xmpp/jid"
)

func getRoster(c *trefftest.Client) string {
	c.Send("<iq type='get' id='roster'><query xmlns='jabber:iq:roster'/></iq>")
	return c.Expect(`<iq type='result' id='roster'.*?</iq>`)
}

func TestSubscribeBothWaysAndPresence(t *testing.T) {
	ts := newServer(t, nil)
	alice := ts.Login(t, "alice", "pw", "phone")
	bob := ts.Login(t, "bob", "pw", "pc")
	getRoster(alice)
	getRoster(bob)
	alice.Send("<presence/>")
	alice.Expect(`<presence from='alice@localhost/phone' to='alice@localhost/phone'/>`) // own presence reflected
	bob.Send("<presence><show>away</show></presence>")
	bob.Expect(`<presence from='bob@localhost/pc' to='bob@localhost/pc'><show>away</show></presence>`)

	// alice asks; her roster shows ask='subscribe'.
	alice.Send("<presence to='bob@localhost' type='subscribe'/>")
	alice.Expect(`<item jid='bob@localhost' subscription='none' ask='subscribe'/>`)
	bob.Expect(`<presence from='alice@localhost' to='bob@localhost/pc' type='subscribe'/>`)
	// bob approves: alice is subscribed to bob and gets his presence.
	bob.Send("<presence to='alice@localhost' type='subscribed'/>")
	bob.Expect(`<item jid='alice@localhost' subscription='from'/>`)
	alice.Expect(`<item jid='bob@localhost' subscription='to'/>`)
	alice.Expect(`<presence from='bob@localhost' to='alice@localhost/phone' type='subscribed'/>`)
	alice.Expect(`<presence from='bob@localhost/pc' to='alice@localhost'><show>away</show></presence>`)
	// bob asks back; alice approves: both.
	bob.Send("<presence to='alice@localhost' type='subscribe'/>")
	alice.Expect(`<presence from='bob@localhost' to='alice@localhost/phone' type='subscribe'/>`)
	alice.Send("<presence to='bob@localhost' type='subscribed'/>")
	alice.Expect(`<item jid='bob@localhost' subscription='both'/>`)
	bob.Expect(`<item jid='alice@localhost' subscription='both'/>`)
	bob.Expect(`<presence from='alice@localhost/phone' to='bob@localhost'/>`)

	// bob changes status: alice sees it; a second alice resource logs in
	// and learns bob's presence by probe.
	bob.Send("<presence><status>lunch</status></presence>")
	alice.Expect(`<presence from='bob@localhost/pc' to='alice@localhost'><status>lunch</status></presence>`)
	laptop := ts.Login(t, "alice", "pw", "laptop")
	laptop.Send("<presence><priority>1</priority></presence>")
	laptop.Expect(`<presence from='bob@localhost/pc' to='alice@localhost/laptop'><status>lunch</status></presence>`)
	alice.Expect(`<presence from='alice@localhost/laptop' to='alice@localhost/phone'><priority>1</priority></presence>`)

	// Directed presence to carol (no subscription) ends with alice's logout.
	carol := ts.Login(t, "carol", "pw", "x")
	carol.Send("<presence/>")
	carol.Expect(`to='carol@localhost/x'/>`)
	alice.Send("<presence to='carol@localhost'><show>chat</show></presence>")
	carol.Expect(`<presence from='alice@localhost/phone' to='carol@localhost'><show>chat</show></presence>`)

	// bob loses his connection: alice's resources see him go.
	bob.Conn().Close()
	alice.Expect(`<presence from='bob@localhost/pc' to='alice@localhost' type='unavailable'/>`)
	laptop.Expect(`<presence from='bob@localhost/pc' to='alice@localhost' type='unavailable'/>`)
	// alice logs out her phone: carol (directed) and laptop (own) see it.
	alice.Send("<presence type='unavailable'/>")
	carol.Expect(`<presence from='alice@localhost/phone' to='carol@localhost' type='unavailable'/>`)
	laptop.Expect(`<presence from='alice@localhost/phone' to='alice@localhost/laptop' type='unavailable'/>`)
}

func TestSubscriptionRequestWaitsForLogin(t *testing.T) {
	ts := newServer(t, nil)
	alice := ts.Login(t, "alice", "pw", "r")
	getRoster(alice)
	alice.Send("<presence to='bob@localhost' type='subscribe'/>")
	alice.Expect(`ask='subscribe'`)
	// The push comes before the request reaches bob's side; alice's next
	// stanza is handled after the whole subscribe.
	getRoster(alice)
	// bob is offline; the request waits, but is not in his roster yet.
	it, err := ts.Store.RosterItem(context.Background(), "bob@localhost", "alice@localhost")
	if err != nil || !it.PendingIn {
		t.Fatalf("pending request not stored: %+v %v", it, err)
	}
	bob := ts.Login(t, "bob", "pw", "r")
	if r := getRoster(bob); strings.Contains(r, "alice") {
		t.Errorf("pending request shown as roster item: %s", r)
	}
	bob.Send("<presence/>")
	bob.Expect(`<presence from='alice@localhost' to='bob@localhost/r' type='subscribe'/>`)
	// bob denies: alice learns it and the pending request is gone.
	bob.Send("<presence to='alice@localhost' type='unsubscribed'/>")
	alice.Expect(`<item jid='bob@localhost' subscription='none'/>`)
	if _, err := ts.Store.RosterItem(context.Background(), "bob@localhost", "alice@localhost"); err == nil {
		t.Error("denied request still stored")
	}
}

func TestPreApproval(t *testing.T) {
	ts := newServer(t, nil)
	bob := ts.Login(t, "bob", "pw", "r")
	getRoster(bob)
	bob.Send("<presence/>")
	bob.Send("<presence to='alice@localhost' type='subscribed'/>") // pre-approve alice
	alice := ts.Login(t, "alice", "pw", "r")
	getRoster(alice)
	alice.Send("<presence/>")
	alice.Send("<presence to='bob@localhost' type='subscribe'/>")
	alice.Expect(`<item jid='bob@localhost' subscription='to'/>`)
	alice.Expect(`<presence from='bob@localhost' to='alice@localhost/r' type='subscribed'/>`)
	bob.Expect(`<item jid='alice@localhost' subscription='from'/>`)
}

// BenchmarkPresenceBroadcast measures a presence change of a user with 200
// contacts who share presence with 200 online sessions.
func BenchmarkPresenceBroadcast(b *testing.B) {
	ts := trefftest.NewServer(b, func(s *treff.Server) { s.Modules = []treff.Module{&roster.Module{}} })
	ctx := context.Background()
	ts.AddUser(b, "alice", "pw")
	for i := 0; i < 200; i++ {
		c := fmt.Sprintf("c%d@localhost", i)
		ts.Store.CreateAccount(ctx, storage.Account{JID: c})
		ts.Store.PutRosterItem(ctx, "alice@localhost", storage.RosterItem{JID: c, Subscription: storage.SubBoth})
	}
	alice := ts.Login(b, "alice", "pw", "r")
	alice.Send("<presence/>")
	alice.Expect(`to='alice@localhost/r'/>`)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		alice.Send(fmt.Sprintf("<presence><status>%d</status></presence>", i))
		alice.Expect(fmt.Sprintf("<status>%d</status></presence>", i))
	}
}

// A subscription request to an account that does not exist is answered
// with unsubscribed (RFC 6121 3.1.3), which clears the pending request.
func TestSubscribeToNobody(t *testing.T) {
	ts := newServer(t, nil)
	alice := ts.Login(t, "alice", "pw", "r")
	getRoster(alice)
	alice.Send("<presence/>")
	alice.Send("<presence to='nobody@localhost' type='subscribe'/>")
	alice.Expect(`<item jid='nobody@localhost' subscription='none' ask='subscribe'/>`)
	alice.Expect(`<item jid='nobody@localhost' subscription='none'/>`)
	alice.Expect(`<presence from='nobody@localhost' to='alice@localhost/r' type='unsubscribed'/>`)
}

// slowRosters widens the window between reading and writing an item.
type slowRosters struct{ storage.Rosters }

func (s slowRosters) RosterItem(ctx context.Context, user, contact string) (storage.RosterItem, error) {
	it, err := s.Rosters.RosterItem(ctx, user, contact)
	time.Sleep(20 * time.Millisecond)
	return it, err
}

// Both users approve each other's request at the same moment: the user's
// own 'subscribed' and the contact's arrive in different goroutines and
// change the same item; neither change may be lost.
func TestSimultaneousApprovals(t *testing.T) {
	mem := memstore.New()
	m := &roster.Module{Store: slowRosters{mem}}
	ctx := context.Background()
	for _, u := range [][2]string{{"alice@localhost", "bob@localhost"}, {"bob@localhost", "alice@localhost"}} {
		if _, err := mem.PutRosterItem(ctx, u[0], storage.RosterItem{JID: u[1], Subscription: storage.SubNone, PendingOut: true, PendingIn: true}); err != nil {
			t.Fatal(err)
		}
	}
	ts := newServer(t, m)
	alice := ts.Login(t, "alice", "pw", "r")
	bob := ts.Login(t, "bob", "pw", "r")
	// bob's approval reaches alice's item while alice's own is being
	// written (each read takes 20ms).
	bob.Send("<presence to='alice@localhost' type='subscribed'/>")
	time.Sleep(10 * time.Millisecond)
	alice.Send("<presence to='bob@localhost' type='subscribed'/>")
	getRoster(alice)
	getRoster(bob)
	for _, u := range [][2]string{{"alice@localhost", "bob@localhost"}, {"bob@localhost", "alice@localhost"}} {
		it, err := mem.RosterItem(ctx, u[0], u[1])
		if err != nil || it.Subscription != storage.SubBoth || it.PendingOut || it.PendingIn {
			t.Errorf("%s's item for %s: %+v %v, want both", u[0], u[1], it, err)
		}
	}
}

// Deleting an account cancels its contacts' subscriptions both ways and
// removes its roster.
func TestAccountDeleted(t *testing.T) {
	ts := newServer(t, nil)
	alice := ts.Login(t, "alice", "pw", "r")
	bob := ts.Login(t, "bob", "pw", "r")
	getRoster(alice)
	getRoster(bob)
	alice.Send("<presence/>")
	bob.Send("<presence/>")
	alice.Send("<presence to='bob@localhost' type='subscribe'/>")
	bob.Expect(`type='subscribe'`)
	bob.Send("<presence to='alice@localhost' type='subscribed'/>")
	bob.Send("<presence to='alice@localhost' type='subscribe'/>")
	alice.Expect(`type='subscribe'`)
	alice.Send("<presence to='bob@localhost' type='subscribed'/>")
	bob.Expect(`<item jid='alice@localhost' subscription='both'/>`)
	alice.Expect(`<item jid='bob@localhost' subscription='both'/>`)

	if err := ts.DeleteAccount(context.Background(), jid.MustParse("alice@localhost"), "account deleted"); err != nil {
		t.Fatal(err)
	}
	alice.Expect(`<not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text[^>]*>account deleted</text>`)
	bob.Expect(`<presence from='alice@localhost/r' to='bob@localhost' type='unavailable'/>`)
	bob.Expect(`<item jid='alice@localhost' subscription='none'/>`)
	if items, _, err := ts.Store.Roster(context.Background(), "alice@localhost"); err != nil || len(items) != 0 {
		t.Errorf("roster of the deleted account: %v %v", items, err)
	}
	if err := ts.DeleteAccount(context.Background(), jid.MustParse("alice@localhost"), ""); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("deleting again: %v", err)
	}
}

// A probe from a user the contact does not share presence with is answered
// with "unsubscribed", which resynchronises the prober's roster (RFC 6121
// 4.3.2, A.3.4).
func TestProbeFromNonSubscriberResyncs(t *testing.T) {
	ts := newServer(t, nil)
	ctx := context.Background()
	// alice believes she is subscribed to bob; bob's roster says none.
	if _, err := ts.Store.PutRosterItem(ctx, "alice@localhost", storage.RosterItem{JID: "bob@localhost", Subscription: storage.SubTo}); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.Store.PutRosterItem(ctx, "bob@localhost", storage.RosterItem{JID: "alice@localhost", Subscription: storage.SubNone}); err != nil {
		t.Fatal(err)
	}
	bob := ts.Login(t, "bob", "pw", "r")
	bob.Send("<presence/>")
	getRoster(bob)
	alice := ts.Login(t, "alice", "pw", "r")
	getRoster(alice)
	alice.Send("<presence/>") // probes bob
	alice.Expect(`<item jid='bob@localhost' subscription='none'/>`)
	alice.Expect(`<presence from='bob@localhost' to='alice@localhost/r' type='unsubscribed'/>`)
	if strings.Contains(alice.Pending(), "<presence from='bob@localhost/r'") {
		t.Errorf("alice learnt bob's presence: %s", alice.Pending())
	}
	it, err := ts.Store.RosterItem(ctx, "alice@localhost", "bob@localhost")
	if err != nil || it.Subscription != storage.SubNone {
		t.Errorf("alice's item for bob: %+v %v", it, err)
	}
}
