package last_test

import (
	"context"
	"regexp"
	"testing"
	"time"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/last"
	"github.com/treff-im/treff/storage"
	"github.com/treff-im/treff/trefftest"
)

func TestLastActivity(t *testing.T) {
	closed := make(trefftest.ClosedSessions, 8)
	clock := trefftest.NewClock(time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC))
	m := &last.Module{}
	m.SetNow(clock.Now)
	ts := trefftest.NewServer(t, func(s *treff.Server) { s.Modules = []treff.Module{m, closed} })
	for _, u := range []string{"alice", "bob", "carol"} {
		ts.AddUser(t, u, "pw")
	}
	ts.Store.PutRosterItem(context.Background(), "bob@localhost", storage.RosterItem{JID: "alice@localhost", Subscription: storage.SubFrom})
	alice := ts.Login(t, "alice", "pw", "r")
	carol := ts.Login(t, "carol", "pw", "r")

	clock.Add(90 * time.Second)
	alice.Send("<iq type='get' id='up' to='localhost'><query xmlns='jabber:iq:last'/></iq>")
	alice.Expect(`<iq type='result' id='up' to='alice@localhost/r' from='localhost'><query xmlns='jabber:iq:last' seconds='90'/></iq>`)
	alice.Send("<iq type='get' id='never' to='bob@localhost'><query xmlns='jabber:iq:last'/></iq>")
	alice.Expect(`<iq type='error' id='never'[^>]*><error type='cancel'><item-not-found `)

	bob := ts.Login(t, "bob", "pw", "r")
	bob.Send("<presence/>")
	bob.Send("<iq type='get' id='s' to='localhost'><query xmlns='jabber:iq:last'/></iq>")
	bob.Expect(`id='s'`)
	alice.Send("<iq type='get' id='on' to='bob@localhost'><query xmlns='jabber:iq:last'/></iq>")
	alice.Expect(`<iq type='result' id='on' to='alice@localhost/r' from='bob@localhost'><query xmlns='jabber:iq:last' seconds='0'/></iq>`)

	bob.Send("<presence type='unavailable'><status>gone &lt;fishing&gt;</status></presence></stream:stream>")
	bob.ExpectClosed()
	// The module records the logout in its session-closed hook, which
	// runs before closed's.
	closed.Wait(t, bob.JID)
	clock.Add(42 * time.Second)
	alice.Send("<iq type='get' id='off' to='bob@localhost'><query xmlns='jabber:iq:last'/></iq>")
	if got := alice.Expect(`id='off'.*?</iq>`); !regexp.MustCompile(`<query xmlns='jabber:iq:last' seconds='42'>gone &lt;fishing&gt;</query>`).MatchString(got) {
		t.Errorf("offline answer: %s", got)
	}
	carol.Send("<iq type='get' id='no' to='bob@localhost'><query xmlns='jabber:iq:last'/></iq>")
	carol.Expect(`<iq type='error' id='no'[^>]*><error type='auth'><forbidden `)
}

// recorder passes logouts on to a store and reports each status recorded.
type recorder struct {
	store storage.LastActivity
	set   chan string
}

// next waits up to 5 seconds for the next status recorded.
func (r *recorder) next(t *testing.T) string {
	t.Helper()
	select {
	case s := <-r.set:
		return s
	case <-time.After(5 * time.Second):
		t.Fatal("no logout recorded")
		return ""
	}
}

func (r *recorder) SetLastActivity(ctx context.Context, user string, t time.Time, status string) error {
	r.set <- status
	return r.store.SetLastActivity(ctx, user, t, status)
}

func (r *recorder) LastActivity(ctx context.Context, user string) (time.Time, string, error) {
	return r.store.LastActivity(ctx, user)
}

func (r *recorder) DeleteLastActivity(ctx context.Context, user string) error {
	return r.store.DeleteLastActivity(ctx, user)
}

// The status of a session's unavailable presence lasts as long as the
// session: a stream resumed (XEP-0198) after it sent one records that
// status at logout, and a new session on the same resource starts
// without one.
func TestStatusLastsTheSession(t *testing.T) {
	rec := &recorder{set: make(chan string, 1)}
	ts := trefftest.NewServer(t, func(s *treff.Server) {
		rec.store = s.Storage.(storage.LastActivity)
		s.Modules = []treff.Module{&last.Module{Store: rec}}
	})
	ts.AddUser(t, "bob", "pw")
	bob := ts.Login(t, "bob", "pw", "r")
	bob.Send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
	id := regexp.MustCompile(`id='([^']+)'`).FindStringSubmatch(bob.Expect(`<enabled xmlns='urn:xmpp:sm:3' [^>]*/>`))[1]
	bob.Send("<presence/><presence type='unavailable'><status>away</status></presence>")
	bob.Send("<iq type='get' id='f' to='localhost'><query xmlns='urn:test:fence'/></iq>")
	bob.Expect(`id='f'`) // the presence was handled

	resumed := ts.Dial(t, ts.Addr)
	resumed.Authenticate("bob", "pw")
	resumed.Send("<resume xmlns='urn:xmpp:sm:3' previd='" + id + "' h='0'/>")
	resumed.Expect(`<resumed xmlns='urn:xmpp:sm:3' [^>]*/>`)
	resumed.Send("</stream:stream>")
	if got := rec.next(t); got != "away" {
		t.Errorf("status recorded after resumption = %q, want away", got)
	}

	bob = ts.Login(t, "bob", "pw", "r")
	bob.Send("</stream:stream>")
	if got := rec.next(t); got != "" {
		t.Errorf("status recorded for a new session = %q, want none", got)
	}
}
