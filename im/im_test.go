package im_test

import (
	"slices"
	"testing"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/im"
	"github.com/treff-im/treff/trefftest"
)

func TestModulesSetUpTogether(t *testing.T) {
	ts := trefftest.NewServer(t, func(s *treff.Server) { s.Modules = im.Modules() })
	feats := ts.Features(false)
	for _, f := range []string{"http://jabber.org/protocol/disco#info", "urn:xmpp:ping", "jabber:iq:version", "urn:xmpp:time", "jabber:iq:last", "msgoffline"} {
		if !slices.Contains(feats, f) {
			t.Errorf("feature %s missing from %v", f, feats)
		}
	}
	ts.AddUser(t, "alice", "pw")
	c := ts.Login(t, "alice", "pw", "r")
	c.Send("<iq type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>")
	c.Expect(`<iq type='result' id='r'[^>]*><query xmlns='jabber:iq:roster' ver='`)
}
