package disco_test

import (
	"context"
	"crypto/sha1"
	"encoding/base64"
	"regexp"
	"strings"
	"testing"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/disco"
	"github.com/treff-im/treff/discoinfo"
	"github.com/treff-im/treff/ping"
	"github.com/treff-im/treff/storage"
	"github.com/treff-im/treff/trefftest"
	"github.com/treff-im/treff/version"
	"github.com/treff-im/treff/xtime"
)

type items struct{}

func (items) Name() string { return "items" }
func (items) Setup(ctx context.Context, r *treff.Registry) error {
	r.AddItem(discoinfo.Item{JID: "conference.localhost", Name: "Chatrooms"})
	r.AddIdentity(discoinfo.Identity{Category: "pubsub", Type: "pep"})
	return nil
}

func TestDisco(t *testing.T) {
	d := &disco.Module{}
	ts := trefftest.NewServer(t, func(s *treff.Server) {
		s.Modules = []treff.Module{d, &ping.Module{}, &version.Module{}, &xtime.Module{}, items{}}
	})
	ts.AddUser(t, "alice", "pw")
	ts.AddUser(t, "bob", "pw")
	ts.AddUser(t, "carol", "pw")
	// bob shares his presence with alice.
	ts.Store.PutRosterItem(context.Background(), "bob@localhost", storage.RosterItem{JID: "alice@localhost", Subscription: storage.SubFrom})

	c0 := ts.Dial(t, ts.Addr)
	c0.StartTLS()
	c0.Send(trefftest.Header("localhost"))
	f := c0.Expect(`</stream:features>`)
	m := regexp.MustCompile(`<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='[^']+' ver='([^']+)'/>`).FindStringSubmatch(f)
	if m == nil {
		t.Fatalf("no caps in %s", f)
	}
	c := ts.Login(t, "alice", "pw", "r")

	c.Send("<iq type='get' id='i1' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
	info := c.Expect(`</iq>`)
	for _, want := range []string{
		"<identity category='server' type='im' name='Treff'/>",
		"<identity category='pubsub' type='pep'/>",
		"<feature var='http://jabber.org/protocol/disco#info'/>",
		"<feature var='urn:xmpp:ping'/>",
		"<feature var='jabber:iq:version'/>",
		"<feature var='urn:xmpp:time'/>",
	} {
		if !strings.Contains(info, want) {
			t.Errorf("disco#info lacks %s:\n%s", want, info)
		}
	}
	// The caps hash is the XEP-0115 hash of what disco#info says.
	var s strings.Builder
	for _, id := range regexp.MustCompile(`<identity category='([^']*)' type='([^']*)'(?: name='([^']*)')?/>`).FindAllStringSubmatch(info, -1) {
		s.WriteString(id[1] + "/" + id[2] + "//" + id[3] + "<")
	}
	for _, f := range regexp.MustCompile(`<feature var='([^']*)'/>`).FindAllStringSubmatch(info, -1) {
		s.WriteString(f[1] + "<")
	}
	sum := sha1.Sum([]byte(s.String()))
	if got := base64.StdEncoding.EncodeToString(sum[:]); got != m[1] || d.Ver() != got {
		t.Errorf("caps ver %s, disco#info hashes to %s", m[1], got)
	}
	c.Send("<iq type='get' id='i2' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info' node='" + disco.CapsNode + "#" + m[1] + "'/></iq>")
	c.Expect(`<iq type='result' id='i2'[^>]*><query xmlns='http://jabber.org/protocol/disco#info' node='[^']+'><identity`)
	c.Send("<iq type='get' id='i3' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info' node='nope'/></iq>")
	c.Expect(`<iq type='error' id='i3'[^>]*><error type='cancel'><item-not-found `)
	c.Send("<iq type='get' id='it' to='localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>")
	c.Expect(`<iq type='result' id='it'[^>]*><query xmlns='http://jabber.org/protocol/disco#items'><item jid='conference.localhost' name='Chatrooms'/></query></iq>`)

	// Accounts: self and subscribed contacts see the account; others get
	// service-unavailable, just like for an account that does not exist.
	c.Send("<iq type='get' id='a1' to='alice@localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
	c.Expect(`<iq type='result' id='a1'[^>]*><query xmlns='http://jabber.org/protocol/disco#info'><identity category='account' type='registered'/>`)
	c.Send("<iq type='get' id='a2' to='bob@localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
	c.Expect(`<iq type='result' id='a2'[^>]*><query xmlns='http://jabber.org/protocol/disco#info'><identity category='account' type='registered'/>`)
	c.Send("<iq type='get' id='a3' to='carol@localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
	c.Expect(`<iq type='error' id='a3'[^>]*><error type='cancel'><service-unavailable `)
	c.Send("<iq type='get' id='a4' to='nobody@localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
	c.Expect(`<iq type='error' id='a4'[^>]*><error type='cancel'><service-unavailable `)

	// ping, version, time
	c.Send("<iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
	c.Expect(`<iq type='result' id='p1' to='alice@localhost/r' from='localhost'/>`)
	c.Send("<iq type='get' id='v1' to='localhost'><query xmlns='jabber:iq:version'/></iq>")
	c.Expect(`<iq type='result' id='v1'[^>]*><query xmlns='jabber:iq:version'><name>Treff</name><version>[^<]+</version></query></iq>`)
	c.Send("<iq type='get' id='t1' to='localhost'><time xmlns='urn:xmpp:time'/></iq>")
	c.Expect(`<iq type='result' id='t1'[^>]*><time xmlns='urn:xmpp:time'><tzo>\+00:00</tzo><utc>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z</utc></time></iq>`)
}

func TestHiddenVersion(t *testing.T) {
	ts := trefftest.NewServer(t, func(s *treff.Server) {
		s.Modules = []treff.Module{&version.Module{Hide: true}}
	})
	ts.AddUser(t, "alice", "pw")
	c := ts.Login(t, "alice", "pw", "r")
	c.Send("<iq type='get' id='v1' to='localhost'><query xmlns='jabber:iq:version'/></iq>")
	c.Expect(`<iq type='error' id='v1'[^>]*><error type='cancel'><service-unavailable `)
}

// Contact addresses (XEP-0157) are a serverinfo form in disco#info, and
// the caps hash covers it as XEP-0115 5.1 says (FORM_TYPE, then fields
// sorted by var with their values sorted).
func TestContactAddresses(t *testing.T) {
	d := &disco.Module{Contacts: map[string][]string{
		"support": {"https://example.org/help"},
		"abuse":   {"xmpp:abuse@localhost", "mailto:abuse@example.org"},
	}}
	ts := trefftest.NewServer(t, func(s *treff.Server) { s.Modules = []treff.Module{d} })
	ts.AddUser(t, "alice", "pw")
	c := ts.Login(t, "alice", "pw", "r")
	c.Send("<iq type='get' id='i1' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
	info := c.Expect(`</iq>`)
	want := "<x xmlns='jabber:x:data' type='result'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/network/serverinfo</value></field>" +
		"<field var='abuse-addresses' type='list-multi'><value>xmpp:abuse@localhost</value><value>mailto:abuse@example.org</value></field>" +
		"<field var='support-addresses' type='list-multi'><value>https://example.org/help</value></field></x></query>"
	if !strings.Contains(info, want) {
		t.Fatalf("disco#info lacks the contact form %s:\n%s", want, info)
	}
	var s strings.Builder
	for _, id := range regexp.MustCompile(`<identity category='([^']*)' type='([^']*)'(?: name='([^']*)')?/>`).FindAllStringSubmatch(info, -1) {
		s.WriteString(id[1] + "/" + id[2] + "//" + id[3] + "<")
	}
	for _, f := range regexp.MustCompile(`<feature var='([^']*)'/>`).FindAllStringSubmatch(info, -1) {
		s.WriteString(f[1] + "<")
	}
	s.WriteString("http://jabber.org/network/serverinfo<abuse-addresses<mailto:abuse@example.org<xmpp:abuse@localhost<support-addresses<https://example.org/help<")
	sum := sha1.Sum([]byte(s.String()))
	if got := base64.StdEncoding.EncodeToString(sum[:]); d.Ver() != got {
		t.Errorf("caps ver %s, want %s", d.Ver(), got)
	}
}

func TestContactAddressesChecked(t *testing.T) {
	for _, contacts := range []map[string][]string{
		{"complaints": {"mailto:a@example.org"}},
		{"abuse": {"abuse@example.org"}},
		{"abuse": {"ftp://example.org"}},
		{"abuse": {"https://"}},
		{"abuse": {"xmpp:"}},
	} {
		srv := &treff.Server{Hosts: []treff.Host{{Domain: "localhost"}}, Modules: []treff.Module{&disco.Module{Contacts: contacts}}}
		if err := srv.Setup(); err == nil {
			t.Errorf("Setup accepted contacts %v", contacts)
		}
	}
}
