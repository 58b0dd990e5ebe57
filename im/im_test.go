package im_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/bind2"
	"github.com/treff-im/treff/im"
	"github.com/treff-im/treff/sasl2"
	"github.com/treff-im/treff/sm"
	"github.com/treff-im/treff/storage"
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

// Every module sees broadcast presence, whatever the order: offline
// delivery and last activity both depend on it.
func TestModulesShareBroadcastPresence(t *testing.T) {
	closed := make(trefftest.ClosedSessions, 8)
	ts := trefftest.NewServer(t, func(s *treff.Server) { s.Modules = append(im.Modules(), closed) })
	ts.AddUser(t, "alice", "pw")
	ts.AddUser(t, "bob", "pw")
	ts.Store.PutRosterItem(context.Background(), "bob@localhost", storage.RosterItem{JID: "alice@localhost", Subscription: storage.SubFrom})
	a := ts.Login(t, "alice", "pw", "r")
	a.Send("<message to='bob@localhost' id='o1'><body>while you were out</body></message>")
	a.Send("<iq type='get' id='s1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
	a.Expect(`id='s1'`)
	b := ts.Login(t, "bob", "pw", "r")
	b.Send("<presence/>")
	b.Expect(`id='o1'><body>while you were out</body><delay xmlns='urn:xmpp:delay'`)
	b.Send("<presence type='unavailable'><status>bye</status></presence></stream:stream>")
	b.ExpectClosed()
	// The last activity module records the logout in its session-closed
	// hook, which runs before closed's.
	closed.Wait(t, b.JID)
	a.Send("<iq type='get' id='l' to='bob@localhost'><query xmlns='jabber:iq:last'/></iq>")
	if got := a.Expect(`id='l'.*?</iq>`); !strings.Contains(got, ">bye</query>") {
		t.Fatalf("last activity without the status: %s", got)
	}
}

// Devices adds SASL2 with the configured stream management's resumption
// and Bind 2 with carbons, CSI and that stream management inline.
func TestDevicesSASL2(t *testing.T) {
	st := &sm.Module{ResumeTimeout: time.Minute}
	var got *sasl2.Module
	mods := im.Devices(st)
	for _, m := range mods {
		if s, ok := m.(*sasl2.Module); ok {
			got = s
		}
		if s, ok := m.(*sm.Module); ok && s != st {
			t.Error("a second sm.Module")
		}
	}
	if got == nil || len(got.Inline) != 2 || got.Inline[0] != sasl2.Inline(st) {
		t.Fatalf("SASL2 %+v, want sm's resumption and Bind 2 inline", got)
	}
	b, ok := got.Inline[1].(*bind2.Module)
	if !ok || len(b.Features) != 3 || b.Features[2] != bind2.Feature(st) {
		t.Fatalf("Bind 2 %+v, want carbons, csi and the configured sm", got.Inline[1])
	}
	for _, f := range b.Features[:2] {
		if !slices.ContainsFunc(mods, func(m treff.Module) bool { return m == f.(treff.Module) }) {
			t.Errorf("Bind 2 feature %T is not the module in the list", f)
		}
	}
	// A configured SASL2 is kept as it is.
	own := &sasl2.Module{}
	if n := len(slices.DeleteFunc(im.Devices(own), func(m treff.Module) bool { _, ok := m.(*sasl2.Module); return !ok })); n != 1 {
		t.Errorf("%d SASL2 modules with one configured", n)
	}
}
