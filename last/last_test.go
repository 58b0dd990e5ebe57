package last_test

import (
	"context"
	"regexp"
	"testing"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/last"
	"github.com/treff-im/treff/storage"
	"github.com/treff-im/treff/trefftest"
)

func TestLastActivity(t *testing.T) {
	closed := make(trefftest.ClosedSessions, 8)
	ts := trefftest.NewServer(t, func(s *treff.Server) { s.Modules = []treff.Module{&last.Module{}, closed} })
	for _, u := range []string{"alice", "bob", "carol"} {
		ts.AddUser(t, u, "pw")
	}
	ts.Store.PutRosterItem(context.Background(), "bob@localhost", storage.RosterItem{JID: "alice@localhost", Subscription: storage.SubFrom})
	alice := ts.Login(t, "alice", "pw", "r")
	carol := ts.Login(t, "carol", "pw", "r")

	alice.Send("<iq type='get' id='up' to='localhost'><query xmlns='jabber:iq:last'/></iq>")
	alice.Expect(`<iq type='result' id='up' to='alice@localhost/r' from='localhost'><query xmlns='jabber:iq:last' seconds='\d+'/></iq>`)
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
	alice.Send("<iq type='get' id='off' to='bob@localhost'><query xmlns='jabber:iq:last'/></iq>")
	if got := alice.Expect(`id='off'.*?</iq>`); !regexp.MustCompile(`<query xmlns='jabber:iq:last' seconds='\d'>gone &lt;fishing&gt;</query>`).MatchString(got) {
		t.Errorf("offline answer: %s", got)
	}
	carol.Send("<iq type='get' id='no' to='bob@localhost'><query xmlns='jabber:iq:last'/></iq>")
	carol.Expect(`<iq type='error' id='no'[^>]*><error type='auth'><forbidden `)
}
