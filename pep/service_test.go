package pep

import (
	"context"
	"strings"
	"testing"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/disco"
	"github.com/treff-im/treff/roster"
	"github.com/treff-im/treff/trefftest"
)

const svcJID = "pubsub.localhost"

// newServiceEnv is a test server with a PEP module and a Service, and
// alice, bob and carol (no contacts).
func newServiceEnv(t *testing.T, configure ...func(*Service)) (*trefftest.Server, *Service) {
	t.Helper()
	s := &Service{}
	for _, f := range configure {
		f(s)
	}
	ts := trefftest.NewServer(t, func(srv *treff.Server) {
		srv.Modules = []treff.Module{&roster.Module{}, &disco.Module{}, &Module{}, s}
	})
	if err := ts.Setup(); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"alice", "bob", "carol"} {
		ts.AddUser(t, u, "pw")
	}
	return ts, s
}

// login logs a user in with initial presence.
func login(t *testing.T, ts *trefftest.Server, user string) *trefftest.Client {
	t.Helper()
	c := ts.Login(t, user, "pw", "r")
	c.Send("<presence/>")
	c.Sync()
	return c
}

func svcIQ(id, typ, ns, inner string) string {
	return "<iq type='" + typ + "' id='" + id + "' to='" + svcJID + "'><pubsub xmlns='" + ns + "'>" + inner + "</pubsub></iq>"
}

// expectIQ returns the reply with the id (and what came before it).
func expectIQ(t *testing.T, c *trefftest.Client, id string) string {
	t.Helper()
	return c.Expect(`<iq [^>]*\bid='` + id + `'[^>]*?(?:/>|>(?s:.*?)</iq>)`)
}

func expectResult(t *testing.T, c *trefftest.Client, id string) string {
	t.Helper()
	got := expectIQ(t, c, id)
	if !strings.Contains(got[strings.LastIndex(got, "<iq "):], "type='result'") {
		t.Errorf("reply %s: %s, want a result", id, got)
	}
	return got
}

func expectError(t *testing.T, c *trefftest.Client, id, condition string) string {
	t.Helper()
	got := expectIQ(t, c, id)
	if !strings.Contains(got, "type='error'") || !strings.Contains(got, "<"+condition+" ") {
		t.Errorf("reply %s: %s, want an error with %s", id, got, condition)
	}
	return got
}

const (
	nsPubsub = NS
	payload1 = "<entry xmlns='urn:example:rtbl'>spam.example</entry>"
)

// TestServicePublishSubscribe: alice creates a node on the service, bob
// subscribes and gets alice's publication from the service; bob may not
// publish until alice makes him a publisher; an outcast may neither
// retrieve nor subscribe and loses its subscription; a deletion reaches
// the subscribers.
func TestServicePublishSubscribe(t *testing.T) {
	ts, _ := newServiceEnv(t)
	a := login(t, ts, "alice")
	b := login(t, ts, "bob")
	c := login(t, ts, "carol")

	a.Send(svcIQ("c1", "set", nsPubsub, "<create node='rtbl'/>"))
	expectResult(t, a, "c1")
	a.Send(svcIQ("c2", "set", nsPubsub, "<create node='rtbl'/>"))
	expectError(t, a, "c2", "conflict")

	b.Send(svcIQ("s1", "set", nsPubsub, "<subscribe node='rtbl' jid='bob@localhost'/>"))
	if got := expectResult(t, b, "s1"); !strings.Contains(got, "<subscription node='rtbl' jid='bob@localhost' subscription='subscribed'/>") {
		t.Errorf("subscribe reply: %s", got)
	}
	// Someone else's JID is refused.
	b.Send(svcIQ("s2", "set", nsPubsub, "<subscribe node='rtbl' jid='carol@localhost'/>"))
	if got := expectError(t, b, "s2", "bad-request"); !strings.Contains(got, "<invalid-jid ") {
		t.Errorf("subscription for another JID: %s", got)
	}
	c.Send(svcIQ("s3", "set", nsPubsub, "<subscribe node='rtbl' jid='"+c.JID+"'/>"))
	expectResult(t, c, "s3")

	a.Send(svcIQ("p1", "set", nsPubsub, "<publish node='rtbl'><item id='spam.example'>"+payload1+"</item></publish>"))
	expectResult(t, a, "p1")
	for _, cl := range []*trefftest.Client{b, c} {
		got := cl.Expect(`<message[^>]*>.*?</message>`)
		if !strings.Contains(got, "from='"+svcJID+"'") || !strings.Contains(got, "type='headline'") ||
			!strings.Contains(got, "<items node='rtbl'><item id='spam.example'>"+payload1+"</item></items>") {
			t.Errorf("%s's notification: %s", cl.JID, got)
		}
	}

	// The default publish model: owners and publishers only.
	b.Send(svcIQ("p2", "set", nsPubsub, "<publish node='rtbl'><item id='x'>"+payload1+"</item></publish>"))
	expectError(t, b, "p2", "forbidden")
	a.Send(svcIQ("a1", "set", NSOwner, "<affiliations node='rtbl'><affiliation jid='bob@localhost' affiliation='publisher'/><affiliation jid='carol@localhost' affiliation='outcast'/></affiliations>"))
	expectResult(t, a, "a1")
	b.Send(svcIQ("p3", "set", nsPubsub, "<publish node='rtbl'><item id='ham.example'>"+payload1+"</item></publish>"))
	// The notification goes out before the reply.
	if got := expectResult(t, b, "p3"); !strings.Contains(got, "<item id='ham.example'>") {
		t.Errorf("bob's notification of his publication: %s", got)
	}
	// carol, an outcast now, lost her subscription and may not retrieve.
	if got := c.Sync(); strings.Contains(got, "ham.example") {
		t.Errorf("the outcast got a notification: %s", got)
	}
	c.Send(svcIQ("g1", "get", nsPubsub, "<items node='rtbl'/>"))
	expectError(t, c, "g1", "forbidden")
	c.Send(svcIQ("s4", "set", nsPubsub, "<subscribe node='rtbl' jid='carol@localhost'/>"))
	expectError(t, c, "s4", "forbidden")

	a.Send(svcIQ("a2", "get", NSOwner, "<affiliations node='rtbl'/>"))
	got := expectResult(t, a, "a2")
	for _, want := range []string{
		"<affiliation jid='alice@localhost' affiliation='owner'/>",
		"<affiliation jid='bob@localhost' affiliation='publisher'/>",
		"<affiliation jid='carol@localhost' affiliation='outcast'/>",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("affiliations lack %s: %s", want, got)
		}
	}
	// Only owners manage the node.
	b.Send(svcIQ("d1", "set", NSOwner, "<delete node='rtbl'/>"))
	expectError(t, b, "d1", "forbidden")
	a.Send(svcIQ("d2", "set", NSOwner, "<delete node='rtbl'/>"))
	expectResult(t, a, "d2")
	if got := b.Expect(`<message[^>]*>.*?</message>`); !strings.Contains(got, "<delete node='rtbl'/>") {
		t.Errorf("bob's deletion notification: %s", got)
	}
	b.Send(svcIQ("g2", "get", nsPubsub, "<items node='rtbl'/>"))
	expectError(t, b, "g2", "item-not-found")
}

// TestServiceAccessAndCreation: a whitelist node refuses others'
// subscriptions until they are members; a service refuses the presence
// model; instant nodes get a name; Creators restricts creation and
// MaxNodesPerUser bounds it.
func TestServiceAccessAndCreation(t *testing.T) {
	ts, _ := newServiceEnv(t, func(s *Service) {
		s.Creators = []string{"alice@localhost", "bob@localhost"}
		s.MaxNodesPerUser = 2
	})
	a := login(t, ts, "alice")
	b := login(t, ts, "bob")
	c := login(t, ts, "carol")
	conf := func(fields string) string {
		return "<configure><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>" + NSConfig + "</value></field>" + fields + "</x></configure>"
	}
	a.Send(svcIQ("c1", "set", nsPubsub, "<create node='private'/>"+conf(field("pubsub#access_model", "whitelist"))))
	expectResult(t, a, "c1")
	b.Send(svcIQ("s1", "set", nsPubsub, "<subscribe node='private' jid='bob@localhost'/>"))
	if got := expectError(t, b, "s1", "not-allowed"); !strings.Contains(got, "<closed-node ") {
		t.Errorf("subscription to a whitelist node: %s", got)
	}
	a.Send(svcIQ("a1", "set", NSOwner, "<affiliations node='private'><affiliation jid='bob@localhost' affiliation='member'/></affiliations>"))
	expectResult(t, a, "a1")
	b.Send(svcIQ("s2", "set", nsPubsub, "<subscribe node='private' jid='bob@localhost'/>"))
	expectResult(t, b, "s2")
	// The service has no rosters.
	a.Send(svcIQ("c2", "set", nsPubsub, "<create node='p'/>"+conf(field("pubsub#access_model", "presence"))))
	expectError(t, a, "c2", "not-acceptable")
	// An instant node.
	a.Send(svcIQ("c3", "set", nsPubsub, "<create/>"))
	if got := expectResult(t, a, "c3"); !strings.Contains(got, "<create node='") {
		t.Errorf("instant node reply: %s", got)
	}
	// alice owns two nodes: the limit.
	a.Send(svcIQ("c4", "set", nsPubsub, "<create node='third'/>"))
	expectError(t, a, "c4", "policy-violation")
	// carol is not among the creators, also not through auto-create.
	c.Send(svcIQ("c5", "set", nsPubsub, "<create node='mine'/>"))
	expectError(t, c, "c5", "forbidden")
	c.Send(svcIQ("p1", "set", nsPubsub, "<publish node='mine'><item>"+payload1+"</item></publish>"))
	expectError(t, c, "p1", "item-not-found")
	// bob may create, through auto-create on publish.
	b.Send(svcIQ("p2", "set", nsPubsub, "<publish node='bobs'><item>"+payload1+"</item></publish>"))
	expectResult(t, b, "p2")
	b.Send(svcIQ("a2", "get", nsPubsub, "<affiliations/>"))
	if got := expectResult(t, b, "a2"); !strings.Contains(got, "<affiliation node='bobs' affiliation='owner'/>") ||
		!strings.Contains(got, "<affiliation node='private' affiliation='member'/>") {
		t.Errorf("bob's affiliations: %s", got)
	}
	b.Send(svcIQ("l1", "get", nsPubsub, "<subscriptions/>"))
	if got := expectResult(t, b, "l1"); !strings.Contains(got, "<subscription node='private' jid='bob@localhost' subscription='subscribed'/>") {
		t.Errorf("bob's subscriptions: %s", got)
	}

	// disco#items of the service hides the whitelist node from carol.
	c.Send("<iq type='get' id='i1' to='" + svcJID + "'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>")
	got := expectResult(t, c, "i1")
	if strings.Contains(got, "node='private'") || !strings.Contains(got, "<item jid='"+svcJID+"' node='bobs'/>") {
		t.Errorf("carol's disco#items: %s", got)
	}
	b.Send("<iq type='get' id='i2' to='" + svcJID + "'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>")
	if got := expectResult(t, b, "i2"); !strings.Contains(got, "node='private'") {
		t.Errorf("bob's disco#items: %s", got)
	}
	b.Send("<iq type='get' id='i3' to='" + svcJID + "'><query xmlns='http://jabber.org/protocol/disco#items' node='bobs'/></iq>")
	if got := expectResult(t, b, "i3"); !strings.Contains(got, "<item jid='"+svcJID+"' name='") {
		t.Errorf("disco#items of a node: %s", got)
	}
	b.Send("<iq type='get' id='i4' to='" + svcJID + "'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
	got = expectResult(t, b, "i4")
	for _, want := range []string{"<identity category='pubsub' type='service'", "pubsub#subscribe'", "pubsub#rsm'", "pubsub#outcast-affiliation'"} {
		if !strings.Contains(got, want) {
			t.Errorf("service disco#info lacks %s: %s", want, got)
		}
	}
	b.Send("<iq type='get' id='i5' to='" + svcJID + "'><query xmlns='http://jabber.org/protocol/disco#info' node='bobs'/></iq>")
	if got := expectResult(t, b, "i5"); !strings.Contains(got, "<identity category='pubsub' type='leaf'/>") || !strings.Contains(got, nsMetaData) {
		t.Errorf("node disco#info: %s", got)
	}
	b.Send("<iq type='get' id='i6' to='" + svcJID + "'><query xmlns='http://jabber.org/protocol/disco#info' node='nope'/></iq>")
	expectError(t, b, "i6", "item-not-found")
	// The host lists the service.
	b.Send("<iq type='get' id='i7' to='localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>")
	if got := expectResult(t, b, "i7"); !strings.Contains(got, "jid='"+svcJID+"'") {
		t.Errorf("host disco#items: %s", got)
	}
	// A message to the service is an error.
	b.Send("<message to='" + svcJID + "' id='m1'><body>hi</body></message>")
	b.Expect(`<message[^>]*type='error'[^>]*>.*?<service-unavailable `)
}

// TestServiceRSM: max_items picks the newest items, XEP-0059 pages them
// with <max/>, <after/> and <before/>, and an unknown UID is
// item-not-found.
func TestServiceRSM(t *testing.T) {
	ts, s := newServiceEnv(t)
	a := login(t, ts, "alice")
	a.Send(svcIQ("c1", "set", nsPubsub, "<create node='feed'/>"))
	expectResult(t, a, "c1")
	for _, id := range []string{"i1", "i2", "i3", "i4", "i5"} {
		if _, err := s.Publish(context.Background(), jid.MustParse(svcJID), "feed", id, []byte("<x xmlns='urn:example'>"+id+"</x>")); err != nil {
			t.Fatal(err)
		}
	}
	ids := func(got string) string {
		var out []string
		for _, part := range strings.Split(got, "<item id='")[1:] {
			out = append(out, part[:strings.IndexByte(part, '\'')])
		}
		return strings.Join(out, ",")
	}
	rsm := func(inner string) string { return "<set xmlns='" + NSRSM + "'>" + inner + "</set>" }
	for _, tc := range []struct{ req, ids, set string }{
		{"<items node='feed'/>", "i1,i2,i3,i4,i5", ""},
		{"<items node='feed' max_items='2'/>", "i4,i5", ""},
		{"<items node='feed'/>" + rsm("<max>2</max>"), "i1,i2", "<first index='0'>i1</first><last>i2</last><count>5</count>"},
		{"<items node='feed'/>" + rsm("<max>2</max><after>i2</after>"), "i3,i4", "<first index='2'>i3</first><last>i4</last><count>5</count>"},
		{"<items node='feed'/>" + rsm("<max>2</max><before/>"), "i4,i5", "<first index='3'>i4</first><last>i5</last><count>5</count>"},
		{"<items node='feed'/>" + rsm("<max>2</max><before>i2</before>"), "i1", "<first index='0'>i1</first><last>i1</last><count>5</count>"},
		{"<items node='feed'/>" + rsm("<max>0</max>"), "", "<count>5</count>"},
		{"<items node='feed' max_items='3'/>" + rsm("<max>2</max>"), "i3,i4", "<count>3</count>"},
	} {
		a.Send(svcIQ("g", "get", nsPubsub, tc.req))
		got := expectResult(t, a, "g")
		if ids(got) != tc.ids || !strings.Contains(got, tc.set) {
			t.Errorf("%s: items %s (want %s) in %s, want set %s", tc.req, ids(got), tc.ids, got, tc.set)
		}
	}
	a.Send(svcIQ("g2", "get", nsPubsub, "<items node='feed'/>"+rsm("<after>nope</after>")))
	expectError(t, a, "g2", "item-not-found")
	a.Send(svcIQ("g3", "get", nsPubsub, "<items node='feed'/>"+rsm("<max>x</max>")))
	expectError(t, a, "g3", "bad-request")
}

// TestPEPExplicitSubscription: a contact subscribes to a presence node,
// a stranger only to an open one; notifications reach the subscriber's
// bare JID without entity capabilities; retrieve-subscriptions lists the
// subscription; unsubscribing twice is not-subscribed; an outcast loses
// access.
func TestPEPExplicitSubscription(t *testing.T) {
	e := newEnv(t)
	a := e.online(t, "alice", "phone")
	b := e.online(t, "bob", "laptop")
	c := e.online(t, "carol", "tablet")
	a.Send(publishIQ("p1", nick, "1", "<nick xmlns='http://jabber.org/protocol/nick'>Alice</nick>", ""))
	a.Expect(`<iq type='result' id='p1'`)
	a.Send(publishIQ("p2", "open", "1", "<o xmlns='urn:example'/>", field("pubsub#access_model", "open")))
	a.Expect(`<iq type='result' id='p2'`)
	sub := func(id, node, j string) string {
		return "<iq type='set' id='" + id + "' to='alice@localhost'><pubsub xmlns='" + NS + "'><subscribe node='" + node + "' jid='" + j + "'/></pubsub></iq>"
	}
	c.Send(sub("s1", nick, "carol@localhost"))
	if got := expectError(t, c, "s1", "not-authorized"); !strings.Contains(got, "presence-subscription-required") {
		t.Errorf("stranger's subscription to a presence node: %s", got)
	}
	c.Send(sub("s2", "open", "carol@localhost"))
	expectResult(t, c, "s2")
	b.Send(sub("s3", nick, "bob@localhost"))
	expectResult(t, b, "s3")

	a.Send(publishIQ("p3", nick, "2", "<nick xmlns='http://jabber.org/protocol/nick'>Alicia</nick>", ""))
	a.Expect(`<iq type='result' id='p3'`)
	if got := b.Expect(`<message[^>]*>.*?</message>`); !strings.Contains(got, "from='alice@localhost'") || !strings.Contains(got, "Alicia") {
		t.Errorf("bob's notification: %s", got)
	}
	b.Send("<iq type='get' id='l1' to='alice@localhost'><pubsub xmlns='" + NS + "'><subscriptions/></pubsub></iq>")
	if got := expectResult(t, b, "l1"); !strings.Contains(got, "<subscription node='"+nick+"' jid='bob@localhost' subscription='subscribed'/>") {
		t.Errorf("bob's subscriptions: %s", got)
	}
	a.Send("<iq type='get' id='l2'><pubsub xmlns='" + NSOwner + "'><subscriptions node='open'/></pubsub></iq>")
	if got := expectResult(t, a, "l2"); !strings.Contains(got, "<subscription jid='carol@localhost' subscription='subscribed'/>") {
		t.Errorf("the open node's subscribers: %s", got)
	}
	unsub := strings.NewReplacer("subscribe ", "unsubscribe ")
	b.Send(unsub.Replace(sub("u1", nick, "bob@localhost")))
	expectResult(t, b, "u1")
	b.Send(unsub.Replace(sub("u2", nick, "bob@localhost")))
	if got := expectError(t, b, "u2", "unexpected-request"); !strings.Contains(got, "<not-subscribed ") {
		t.Errorf("unsubscribing twice: %s", got)
	}

	a.Send("<iq type='set' id='a1'><pubsub xmlns='" + NSOwner + "'><affiliations node='open'><affiliation jid='carol@localhost' affiliation='outcast'/></affiliations></pubsub></iq>")
	expectResult(t, a, "a1")
	c.Send(itemsIQ("g1", "alice@localhost", "open", "/>"))
	expectError(t, c, "g1", "forbidden")
	a.Send("<iq type='get' id='l3'><pubsub xmlns='" + NSOwner + "'><subscriptions node='open'/></pubsub></iq>")
	if got := expectResult(t, a, "l3"); strings.Contains(got, "carol") {
		t.Errorf("the outcast is still subscribed: %s", got)
	}
}

// TestServiceAccountDeleted: a deleted account's nodes that it alone
// owned are deleted (with a notification), it leaves the owners of the
// others and its subscriptions end.
func TestServiceAccountDeleted(t *testing.T) {
	ts, s := newServiceEnv(t)
	ctx := context.Background()
	a := login(t, ts, "alice")
	b := login(t, ts, "bob")
	for _, n := range []string{"alone", "shared"} {
		a.Send(svcIQ("c-"+n, "set", nsPubsub, "<create node='"+n+"'/>"))
		expectResult(t, a, "c-"+n)
	}
	a.Send(svcIQ("a1", "set", NSOwner, "<affiliations node='shared'><affiliation jid='bob@localhost' affiliation='owner'/></affiliations>"))
	expectResult(t, a, "a1")
	b.Send(svcIQ("c-bobs", "set", nsPubsub, "<create node='bobs'/>"))
	expectResult(t, b, "c-bobs")
	a.Send(svcIQ("s1", "set", nsPubsub, "<subscribe node='bobs' jid='"+a.JID+"'/>"))
	expectResult(t, a, "s1")
	b.Send(svcIQ("s2", "set", nsPubsub, "<subscribe node='alone' jid='bob@localhost'/>"))
	expectResult(t, b, "s2")

	if err := ts.DeleteAccount(ctx, jid.MustParse("alice@localhost"), "bye"); err != nil {
		t.Fatal(err)
	}
	if got := b.Expect(`<message[^>]*>.*?</message>`); !strings.Contains(got, "<delete node='alone'/>") {
		t.Errorf("bob's notification of the deletion: %s", got)
	}
	store := s.engine.Store
	if nodes, err := store.PEPNodes(ctx, svcJID); err != nil || strings.Join(nodes, ",") != "bobs,shared" {
		t.Errorf("nodes after the deletion: %q, %v", nodes, err)
	}
	if cfg, err := store.PEPNodeConfig(ctx, svcJID, "shared"); err != nil || strings.Join(cfg.Owners, ",") != "bob@localhost" {
		t.Errorf("owners of the shared node: %q, %v", cfg.Owners, err)
	}
	if subs, err := s.engine.Subscriptions.PEPSubscribers(ctx, svcJID, "bobs"); err != nil || len(subs) != 0 {
		t.Errorf("subscribers of bob's node: %q, %v", subs, err)
	}
}

// TestServiceSubscriberLimit: MaxSubscribers bounds a node's
// subscriptions, for subscribers and for the owner's changes alike; an
// existing subscriber may subscribe again.
func TestServiceSubscriberLimit(t *testing.T) {
	ts, _ := newServiceEnv(t, func(s *Service) { s.MaxSubscribers = 1 })
	a := login(t, ts, "alice")
	b := login(t, ts, "bob")
	c := login(t, ts, "carol")
	a.Send(svcIQ("c1", "set", nsPubsub, "<create node='n'/>"))
	expectResult(t, a, "c1")
	b.Send(svcIQ("s1", "set", nsPubsub, "<subscribe node='n' jid='bob@localhost'/>"))
	expectResult(t, b, "s1")
	b.Send(svcIQ("s2", "set", nsPubsub, "<subscribe node='n' jid='bob@localhost'/>"))
	expectResult(t, b, "s2")
	c.Send(svcIQ("s3", "set", nsPubsub, "<subscribe node='n' jid='carol@localhost'/>"))
	expectError(t, c, "s3", "policy-violation")
	a.Send(svcIQ("m1", "set", NSOwner, "<subscriptions node='n'><subscription jid='carol@localhost' subscription='subscribed'/></subscriptions>"))
	expectError(t, a, "m1", "policy-violation")
	a.Send(svcIQ("m2", "set", NSOwner, "<subscriptions node='n'><subscription jid='bob@localhost' subscription='none'/></subscriptions>"))
	expectResult(t, a, "m2")
	a.Send(svcIQ("m3", "set", NSOwner, "<subscriptions node='n'><subscription jid='carol@localhost' subscription='subscribed'/></subscriptions>"))
	expectResult(t, a, "m3")
	a.Send(svcIQ("m4", "get", NSOwner, "<subscriptions node='n'/>"))
	if got := expectResult(t, a, "m4"); !strings.Contains(got, "<subscription jid='carol@localhost' subscription='subscribed'/>") || strings.Contains(got, "bob@") {
		t.Errorf("the node's subscriptions: %s", got)
	}
}

// TestServicePublishModels: with 'subscribers' a subscriber publishes
// and a stranger does not; with 'open' anyone but an outcast does.
func TestServicePublishModels(t *testing.T) {
	ts, _ := newServiceEnv(t)
	a := login(t, ts, "alice")
	b := login(t, ts, "bob")
	c := login(t, ts, "carol")
	conf := func(model string) string {
		return "<configure><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>" + NSConfig + "</value></field>" +
			field("pubsub#publish_model", model) + "</x></configure>"
	}
	pub := func(node, id string) string {
		return svcIQ(id, "set", nsPubsub, "<publish node='"+node+"'><item id='"+id+"'>"+payload1+"</item></publish>")
	}
	a.Send(svcIQ("c1", "set", nsPubsub, "<create node='subs'/>"+conf("subscribers")))
	expectResult(t, a, "c1")
	a.Send(svcIQ("c2", "set", nsPubsub, "<create node='open'/>"+conf("open")))
	expectResult(t, a, "c2")
	a.Send(svcIQ("c3", "set", nsPubsub, "<create node='bad'/>"+conf("everyone")))
	expectError(t, a, "c3", "not-acceptable")

	c.Send(pub("subs", "p1"))
	expectError(t, c, "p1", "forbidden")
	c.Send(svcIQ("s1", "set", nsPubsub, "<subscribe node='subs' jid='"+c.JID+"'/>"))
	expectResult(t, c, "s1")
	c.Send(pub("subs", "p2"))
	expectResult(t, c, "p2")

	b.Send(pub("open", "p3"))
	expectResult(t, b, "p3")
	a.Send(svcIQ("a1", "set", NSOwner, "<affiliations node='open'><affiliation jid='bob@localhost' affiliation='outcast'/></affiliations>"))
	expectResult(t, a, "a1")
	b.Send(pub("open", "p4"))
	expectError(t, b, "p4", "forbidden")
	// The configuration form shows the model.
	a.Send(svcIQ("g1", "get", NSOwner, "<configure node='open'/>"))
	if got := expectResult(t, a, "g1"); !strings.Contains(got, "<field var='pubsub#publish_model' type='list-single'") || !strings.Contains(got, "<option><value>subscribers</value></option><option><value>open</value></option><value>open</value></field>") {
		t.Errorf("configuration form: %s", got)
	}
	// A non-owner may not read it.
	c.Send(svcIQ("g2", "get", NSOwner, "<configure node='open'/>"))
	expectError(t, c, "g2", "forbidden")
}
