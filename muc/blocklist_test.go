package muc_test

import (
	"testing"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff/muc"
)

type blockBob struct{}

func (blockBob) Blocked(j jid.JID) bool { return j.Bare().String() == "bob@localhost" }

// TestBlocklist keeps a blocked JID (an RTBL's, say) out of a public
// room, unless the room made it a member.
func TestBlocklist(t *testing.T) {
	ts := newServer(t, &muc.Module{Blocklist: blockBob{}})
	alice := open(t, ts)
	bob := ts.Login(t, "bob", "pw", "r")
	join(bob, "Bob", "")
	bob.Expect(`<presence [^>]*type='error'.*?<forbidden xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><text [^>]*>you are banned from this service&apos;s public rooms</text>`)
	carol := ts.Login(t, "carol", "pw", "r")
	join(carol, "Carol", "")
	carol.Expect(`<status code='110'/>`)
	alice.Send("<iq type='set' id='m' to='" + room + "'><query xmlns='http://jabber.org/protocol/muc#admin'><item affiliation='member' jid='bob@localhost'/></query></iq>")
	alice.Expect(`<iq type='result' id='m'`)
	join(bob, "Bob", "")
	bob.Expect(`<status code='110'/>`)
}
