package pep

import (
	"context"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/disco"
	"github.com/treff-im/treff/roster"
	"github.com/treff-im/treff/storage"
	"github.com/treff-im/treff/trefftest"
)

const (
	devices  = "eu.siacs.conversations.axolotl.devicelist"
	nick     = "http://jabber.org/protocol/nick"
	capsNode = "https://example.org/client"
	devList  = "<list xmlns='eu.siacs.conversations.axolotl'><device id='12345'/></list>"
)

// env is a test server with alice and bob as mutual contacts and carol,
// who is neither's contact.
type env struct {
	ts *trefftest.Server
	m  *Module
	// seen holds, per full JID, what online consumed after the client's
	// presence (where a last item may already be).
	seen map[string]string
}

func newEnv(t *testing.T, configure ...func(*Module)) *env {
	t.Helper()
	m := &Module{}
	for _, f := range configure {
		f(m)
	}
	ts := trefftest.NewServer(t, func(s *treff.Server) {
		s.Modules = []treff.Module{&roster.Module{}, &disco.Module{}, m}
	})
	if err := ts.Setup(); err != nil { // wait for the modules
		t.Fatal(err)
	}
	for _, u := range []string{"alice", "bob", "carol"} {
		ts.AddUser(t, u, "pw")
	}
	ctx := context.Background()
	for _, pair := range [][2]string{{"alice@localhost", "bob@localhost"}, {"bob@localhost", "alice@localhost"}} {
		if _, err := ts.Store.PutRosterItem(ctx, pair[0], storage.RosterItem{JID: pair[1], Subscription: storage.SubBoth}); err != nil {
			t.Fatal(err)
		}
	}
	return &env{ts: ts, m: m, seen: map[string]string{}}
}

// capsVer computes a XEP-0115 verification string for one client/pc
// identity and the given features.
func capsVer(features []string) string {
	fs := append([]string(nil), features...)
	sort.Strings(fs)
	s := "client/pc//<" + strings.Join(fs, "<") + "<"
	sum := sha1.Sum([]byte(s))
	return base64.StdEncoding.EncodeToString(sum[:])
}

var capsQuery = regexp.MustCompile(`<iq[^>]* id='(pep-caps-[^']+)'[^>]*>`)

// online logs a client in and sends initial presence with capabilities
// for the given +notify nodes (none: no caps at all), answers the
// server's capabilities query and waits until the module knows them.
func (e *env) online(t *testing.T, user, resource string, notify ...string) *trefftest.Client {
	t.Helper()
	c := e.ts.Login(t, user, "pw", resource)
	if len(notify) == 0 {
		c.Send("<presence/>")
		e.seen[c.JID] = e.sync(t, c)
		return c
	}
	feats := []string{"http://jabber.org/protocol/caps", "http://jabber.org/protocol/disco#info"}
	for _, n := range notify {
		feats = append(feats, n+"+notify")
	}
	ver := capsVer(feats)
	c.Send("<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='" + capsNode + "' ver='" + ver + "'/></presence>")
	if _, cached := e.m.caps.get("sha-1 " + ver); cached {
		e.seen[c.JID] = e.sync(t, c)
		return c
	}
	got := c.Expect(`<iq[^>]* id='pep-caps-[^']+'[^>]*>.*?</iq>`)
	m := capsQuery.FindStringSubmatch(got[strings.LastIndex(got, "<iq"):])
	if !strings.Contains(got, "node='"+capsNode+"#"+ver+"'") {
		t.Fatalf("capabilities query without the node: %s", got)
	}
	b := "<iq type='result' to='localhost' id='" + m[1] + "'><query xmlns='http://jabber.org/protocol/disco#info' node='" + capsNode + "#" + ver + "'><identity category='client' type='pc'/>"
	for _, f := range feats {
		b += "<feature var='" + f + "'/>"
	}
	c.Send(b + "</query></iq>")
	// The module stores what it learned in the goroutine that waited for
	// this answer (resolve), and sends nothing the client would see unless
	// a node it wants has items: there is no event to wait for, so poll
	// the cache, the explicit condition, with a bound.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if _, ok := e.m.caps.get("sha-1 " + ver); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the module did not learn the capabilities")
		}
	}
	e.seen[c.JID] = got
	return c
}

// expectEvent waits until c has received want (or had received it while
// coming online).
func (e *env) expectEvent(t *testing.T, c *trefftest.Client, want string) {
	t.Helper()
	if strings.Contains(e.seen[c.JID], want) {
		delete(e.seen, c.JID)
		return
	}
	c.Expect(regexp.QuoteMeta(want))
}

// sync makes a round trip, so that what the client sent before has been
// handled.
func (e *env) sync(t *testing.T, c *trefftest.Client) string {
	t.Helper()
	c.Send("<iq type='get' id='sync'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
	return c.Expect(`<iq[^>]* id='sync'.*?</iq>`)
}

// marker sends c a message from the server's point of view and returns
// everything c received up to it: a way to check that nothing else came.
func (e *env) marker(t *testing.T, c *trefftest.Client) string {
	t.Helper()
	st, err := treff.NewStanza([]byte("<message from='localhost' to='" + c.JID + "'><body>marker</body></message>"))
	if err != nil {
		t.Fatal(err)
	}
	e.ts.Route(context.Background(), st)
	seen := e.seen[c.JID]
	delete(e.seen, c.JID)
	return seen + c.Expect(`<body>marker</body></message>`)
}

func publishIQ(id, node, itemID, payload, options string) string {
	s := "<iq type='set' id='" + id + "'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='" + node + "'><item"
	if itemID != "" {
		s += " id='" + itemID + "'"
	}
	s += ">" + payload + "</item></publish>"
	if options != "" {
		s += "<publish-options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>" + options + "</x></publish-options>"
	}
	return s + "</pubsub></iq>"
}

func field(name, value string) string {
	return "<field var='" + name + "'><value>" + value + "</value></field>"
}

func itemsIQ(id, to, node, extra string) string {
	return "<iq type='get' id='" + id + "' to='" + to + "'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='" + node + "'" + extra + "</pubsub></iq>"
}

func TestPublishOptionsPrecondition(t *testing.T) {
	e := newEnv(t)
	a := e.online(t, "alice", "phone")
	a.Send(publishIQ("p1", devices, "current", devList, field("pubsub#access_model", "open")))
	a.Expect(`<iq type='result' id='p1'[^>]*><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='` + devices + `'><item id='current'/></publish></pubsub></iq>`)
	// The same options again: fine.
	a.Send(publishIQ("p2", devices, "current", devList, field("pubsub#access_model", "open")))
	a.Expect(`<iq type='result' id='p2'`)
	// Different options: conflict, precondition-not-met, nothing stored.
	a.Send(publishIQ("p3", devices, "current", "<list xmlns='eu.siacs.conversations.axolotl'/>", field("pubsub#access_model", "presence")))
	got := a.Expect(`<iq type='error' id='p3'.*?</iq>`)
	if !strings.Contains(got, "<conflict xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><precondition-not-met xmlns='http://jabber.org/protocol/pubsub#errors'/>") ||
		!strings.Contains(got, "type='cancel'") {
		t.Errorf("publish with other options: %s", got)
	}
	a.Send(itemsIQ("g1", "alice@localhost", devices, "/>"))
	if got := a.Expect(`<iq type='result' id='g1'.*?</iq>`); !strings.Contains(got, "<item id='current'>"+devList+"</item>") {
		t.Errorf("items after a refused publish: %s", got)
	}
	// A new node takes its configuration from the options.
	a.Send(publishIQ("p4", "urn:xmpp:bookmarks:1", "room@conference.localhost", "<conference xmlns='urn:xmpp:bookmarks:1'/>",
		field("pubsub#access_model", "whitelist")+field("pubsub#persist_items", "true")+field("pubsub#max_items", "max")))
	a.Expect(`<iq type='result' id='p4'`)
	a.Send("<iq type='get' id='c1'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><configure node='urn:xmpp:bookmarks:1'/></pubsub></iq>")
	got = a.Expect(`<iq type='result' id='c1'.*?</iq>`)
	for _, want := range []string{
		"<field var='pubsub#access_model' type='list-single' label='Who may retrieve items'><option><value>open</value></option><option><value>presence</value></option><option><value>roster</value></option><option><value>whitelist</value></option><value>whitelist</value></field>",
		"<field var='pubsub#max_items' type='text-single' label='Max number of items to persist (&apos;max&apos; for the service&apos;s limit)'><value>max</value></field>",
		"<field var='pubsub#persist_items' type='boolean' label='Persist items to storage'><value>1</value></field>",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("configuration lacks %s:\n%s", want, got)
		}
	}
	// An unknown access model is refused.
	a.Send(publishIQ("p5", "other", "", "<x xmlns='urn:example'/>", field("pubsub#access_model", "authorize")))
	a.Expect(`<iq type='error' id='p5'[^>]*><error type='modify'><not-acceptable `)
	// Only the owner publishes.
	b := e.online(t, "bob", "laptop")
	b.Send(strings.Replace(publishIQ("p6", devices, "x", devList, ""), "<iq ", "<iq to='alice@localhost' ", 1))
	b.Expect(`<iq type='error' id='p6'[^>]*><error type='auth'><forbidden `)
	// A payload must be one namespaced element.
	a.Send(publishIQ("p7", devices, "current", "<a xmlns='urn:x'/><b xmlns='urn:x'/>", ""))
	a.Expect(`<iq type='error' id='p7'[^>]*><error type='modify'><bad-request xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><invalid-payload `)
}

func TestAccessModels(t *testing.T) {
	e := newEnv(t)
	a := e.online(t, "alice", "phone")
	b := e.online(t, "bob", "laptop")
	c := e.online(t, "carol", "tablet")
	a.Send(publishIQ("p1", nick, "current", "<nick xmlns='http://jabber.org/protocol/nick'>Alice</nick>", ""))
	a.Expect(`<iq type='result' id='p1'`)
	a.Send(publishIQ("p2", devices, "current", devList, field("pubsub#access_model", "open")))
	a.Expect(`<iq type='result' id='p2'`)
	a.Send(publishIQ("p3", "secret", "current", "<s xmlns='urn:example'/>", field("pubsub#access_model", "whitelist")))
	a.Expect(`<iq type='result' id='p3'`)

	// presence (the default): bob is a contact, carol is not.
	b.Send(itemsIQ("g1", "alice@localhost", nick, "/>"))
	if got := b.Expect(`<iq type='result' id='g1'.*?</iq>`); !strings.Contains(got, "<nick xmlns='http://jabber.org/protocol/nick'>Alice</nick>") {
		t.Errorf("bob's items: %s", got)
	}
	c.Send(itemsIQ("g2", "alice@localhost", nick, "/>"))
	got := c.Expect(`<iq type='error' id='g2'.*?</iq>`)
	if !strings.Contains(got, "<error type='auth'><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><presence-subscription-required xmlns='http://jabber.org/protocol/pubsub#errors'/>") ||
		strings.Contains(got, "Alice") {
		t.Errorf("carol's items of a presence node: %s", got)
	}
	// open: carol too.
	c.Send(itemsIQ("g3", "alice@localhost", devices, "/>"))
	if got := c.Expect(`<iq type='result' id='g3'.*?</iq>`); !strings.Contains(got, devList) {
		t.Errorf("carol's items of an open node: %s", got)
	}
	// whitelist: the owner only, until bob is on the list.
	b.Send(itemsIQ("g4", "alice@localhost", "secret", "/>"))
	b.Expect(`<iq type='error' id='g4'[^>]*><error type='cancel'><not-allowed xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><closed-node xmlns='http://jabber.org/protocol/pubsub#errors'/>`)
	a.Send("<iq type='set' id='w1'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><affiliations node='secret'><affiliation jid='bob@localhost' affiliation='member'/></affiliations></pubsub></iq>")
	a.Expect(`<iq type='result' id='w1'`)
	b.Send(itemsIQ("g5", "alice@localhost", "secret", "/>"))
	b.Expect(`<iq type='result' id='g5'[^>]*><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='secret'><item id='current'><s xmlns='urn:example'/></item>`)
	a.Send(itemsIQ("g6", "alice@localhost", "secret", "/>"))
	a.Expect(`<iq type='result' id='g6'[^>]*><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='secret'><item id='current'>`)
	// A missing node.
	c.Send(itemsIQ("g7", "alice@localhost", "nope", "/>"))
	c.Expect(`<iq type='error' id='g7'[^>]*><error type='cancel'><item-not-found `)
	// Owner operations by others are forbidden.
	c.Send("<iq type='set' id='d1' to='alice@localhost'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><delete node='" + devices + "'/></pubsub></iq>")
	c.Expect(`<iq type='error' id='d1'[^>]*><error type='auth'><forbidden `)
}

func TestNotifyFilteredByCaps(t *testing.T) {
	e := newEnv(t)
	a := e.online(t, "alice", "phone")
	a2 := e.online(t, "alice", "laptop", devices)
	b := e.online(t, "bob", "laptop", devices, nick)
	b2 := e.online(t, "bob", "watch", nick) // no devicelist interest
	b3 := e.online(t, "bob", "old")         // no caps at all
	c := e.online(t, "carol", "tablet", devices)

	a.Send(publishIQ("p1", devices, "current", devList, field("pubsub#access_model", "open")))
	a.Expect(`<iq type='result' id='p1'`)
	event := "<message from='alice@localhost' to='%s' type='headline'><event xmlns='http://jabber.org/protocol/pubsub#event'><items node='" + devices + "'><item id='current'>" + devList + "</item></items></event></message>"
	for _, cl := range []*trefftest.Client{b, a2} {
		if got := e.marker(t, cl); !strings.Contains(got, strings.Replace(event, "%s", cl.JID, 1)) {
			t.Errorf("%s got no notification: %s", cl.JID, got)
		}
	}
	for _, cl := range []*trefftest.Client{a, b2, b3, c} {
		if got := e.marker(t, cl); strings.Contains(got, "pubsub#event") {
			t.Errorf("%s got a notification it did not ask for or may not see: %s", cl.JID, got)
		}
	}
	// bob's watch hears about the nickname, carol does not (not a contact).
	a.Send(publishIQ("p2", nick, "", "<nick xmlns='http://jabber.org/protocol/nick'>Alice</nick>", ""))
	a.Expect(`<iq type='result' id='p2'`)
	if got := e.marker(t, b2); !strings.Contains(got, "<items node='"+nick+"'><item id='") {
		t.Errorf("bob's watch: %s", got)
	}
	// A resource that goes offline is no longer notified; the others are.
	b.Send("<presence type='unavailable'/>")
	e.sync(t, b)
	a.Send(publishIQ("p3", nick, "", "<nick xmlns='http://jabber.org/protocol/nick'>Alice 2</nick>", ""))
	a.Expect(`<iq type='result' id='p3'`)
	if got := e.marker(t, b); strings.Contains(got, "pubsub#event") {
		t.Errorf("unavailable bob/laptop was notified: %s", got)
	}
	if got := e.marker(t, b2); !strings.Contains(got, "Alice 2") {
		t.Errorf("bob's watch missed the second nickname: %s", got)
	}
}

func TestLastItemOnPresence(t *testing.T) {
	e := newEnv(t)
	a := e.online(t, "alice", "phone")
	a.Send(publishIQ("p1", devices, "current", devList, field("pubsub#access_model", "open")))
	a.Expect(`<iq type='result' id='p1'`)
	a.Send(publishIQ("p2", "private", "current", "<s xmlns='urn:example'/>", field("pubsub#access_model", "whitelist")))
	a.Expect(`<iq type='result' id='p2'`)
	// bob comes online after the publication and gets the last item once
	// his capabilities are known; not the whitelisted node.
	b := e.online(t, "bob", "laptop", devices, "private")
	e.expectEvent(t, b, "<message from='alice@localhost' to='"+b.JID+"' type='headline'><event xmlns='http://jabber.org/protocol/pubsub#event'><items node='"+devices+"'><item id='current'>"+devList+"</item>")
	if got := e.marker(t, b); strings.Contains(got, "urn:example") {
		t.Errorf("bob got an item of a whitelist node: %s", got)
	}
	// A second resource with the same (now cached) capabilities gets it
	// at once.
	b2 := e.online(t, "bob", "tablet", devices)
	e.expectEvent(t, b2, devList)
	// The same presence again does not resend it.
	b2.Send("<presence><show>away</show><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='" + capsNode + "' ver='" + capsVer([]string{"http://jabber.org/protocol/caps", "http://jabber.org/protocol/disco#info", devices + "+notify"}) + "'/></presence>")
	synced := e.sync(t, b2)
	if got := synced + e.marker(t, b2); strings.Contains(got, "pubsub#event") {
		t.Errorf("a presence update resent the last item: %s", got)
	}
	// carol, not a contact, gets nothing even for an open node.
	c := e.online(t, "carol", "x", devices)
	if got := e.marker(t, c); strings.Contains(got, "pubsub#event") {
		t.Errorf("carol got an item: %s", got)
	}
	// The owner's own new resource gets it too.
	a2 := e.online(t, "alice", "laptop", devices)
	e.expectEvent(t, a2, devList)
}

func TestRetractDeletePurge(t *testing.T) {
	e := newEnv(t)
	a := e.online(t, "alice", "phone")
	b := e.online(t, "bob", "laptop", "urn:example:node")
	node := "urn:example:node"
	a.Send(publishIQ("p1", node, "one", "<x xmlns='urn:example'>1</x>", field("pubsub#max_items", "10")))
	a.Expect(`<iq type='result' id='p1'`)
	a.Send(publishIQ("p2", node, "two", "<x xmlns='urn:example'>2</x>", ""))
	a.Expect(`<iq type='result' id='p2'`)
	e.marker(t, b)

	a.Send("<iq type='set' id='r1'><pubsub xmlns='http://jabber.org/protocol/pubsub'><retract node='" + node + "' notify='true'><item id='one'/></retract></pubsub></iq>")
	a.Expect(`<iq type='result' id='r1'`)
	if got := e.marker(t, b); !strings.Contains(got, "<event xmlns='http://jabber.org/protocol/pubsub#event'><items node='"+node+"'><retract id='one'/></items></event>") {
		t.Errorf("retraction notification: %s", got)
	}
	a.Send("<iq type='set' id='r2'><pubsub xmlns='http://jabber.org/protocol/pubsub'><retract node='" + node + "'><item id='one'/></retract></pubsub></iq>")
	a.Expect(`<iq type='error' id='r2'[^>]*><error type='cancel'><item-not-found `)

	a.Send("<iq type='set' id='u1'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><purge node='" + node + "'/></pubsub></iq>")
	a.Expect(`<iq type='result' id='u1'`)
	if got := e.marker(t, b); !strings.Contains(got, "<event xmlns='http://jabber.org/protocol/pubsub#event'><purge node='"+node+"'/></event>") {
		t.Errorf("purge notification: %s", got)
	}
	a.Send(itemsIQ("g1", "alice@localhost", node, "/>"))
	a.Expect(`<iq type='result' id='g1'[^>]*><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='` + node + `'></items></pubsub></iq>`)

	a.Send("<iq type='set' id='d1'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><delete node='" + node + "'/></pubsub></iq>")
	a.Expect(`<iq type='result' id='d1'`)
	if got := e.marker(t, b); !strings.Contains(got, "<event xmlns='http://jabber.org/protocol/pubsub#event'><delete node='"+node+"'/></event>") {
		t.Errorf("delete notification: %s", got)
	}
	a.Send(itemsIQ("g2", "alice@localhost", node, "/>"))
	a.Expect(`<iq type='error' id='g2'[^>]*><error type='cancel'><item-not-found `)
	a.Send("<iq type='set' id='d2'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><delete node='" + node + "'/></pubsub></iq>")
	a.Expect(`<iq type='error' id='d2'[^>]*><error type='cancel'><item-not-found `)
}

func TestMaxItemsAndRetrieval(t *testing.T) {
	e := newEnv(t, func(m *Module) { m.MaxItems = 3 })
	a := e.online(t, "alice", "phone")
	node := "urn:example:list"
	a.Send(publishIQ("p0", node, "a", "<x xmlns='urn:example'>a</x>", field("pubsub#max_items", "2")))
	a.Expect(`<iq type='result' id='p0'`)
	for _, id := range []string{"b", "c"} {
		a.Send(publishIQ("p-"+id, node, id, "<x xmlns='urn:example'>"+id+"</x>", ""))
		a.Expect(`<iq type='result' id='p-` + id + `'`)
	}
	a.Send(itemsIQ("g1", "alice@localhost", node, "/>"))
	if got := a.Expect(`<iq type='result' id='g1'.*?</iq>`); !strings.Contains(got, "<items node='"+node+"'><item id='b'><x xmlns='urn:example'>b</x></item><item id='c'><x xmlns='urn:example'>c</x></item></items>") {
		t.Errorf("after 3 items on a node of 2: %s", got)
	}
	a.Send(itemsIQ("g2", "alice@localhost", node, " max_items='1'/>"))
	if got := a.Expect(`<iq type='result' id='g2'.*?</iq>`); !strings.Contains(got, "<items node='"+node+"'><item id='c'><x xmlns='urn:example'>c</x></item></items>") {
		t.Errorf("max_items=1: %s", got)
	}
	a.Send(itemsIQ("g3", "alice@localhost", node, "><item id='b'/></items>"))
	if got := a.Expect(`<iq type='result' id='g3'.*?</iq>`); !strings.Contains(got, "<items node='"+node+"'><item id='b'><x xmlns='urn:example'>b</x></item></items>") {
		t.Errorf("by id: %s", got)
	}
	// "max" is the module's limit of 3; configuring a higher number keeps 3.
	a.Send("<iq type='set' id='c1'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><configure node='" + node + "'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#node_config</value></field>" + field("pubsub#max_items", "1000") + "</x></configure></pubsub></iq>")
	a.Expect(`<iq type='result' id='c1'`)
	for _, id := range []string{"d", "e", "f"} {
		a.Send(publishIQ("p-"+id, node, id, "<x xmlns='urn:example'>"+id+"</x>", ""))
		a.Expect(`<iq type='result' id='p-` + id + `'`)
	}
	items, err := e.m.Store.PEPItems(context.Background(), "alice@localhost", node, nil, 0)
	if err != nil || len(items) != 3 || items[0].ID != "d" {
		t.Errorf("stored items with max_items 1000 and a limit of 3: %v, %v", items, err)
	}
	// Lowering max_items trims at once.
	a.Send("<iq type='set' id='c2'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><configure node='" + node + "'><x xmlns='jabber:x:data' type='submit'>" + field("pubsub#max_items", "1") + "</x></configure></pubsub></iq>")
	a.Expect(`<iq type='result' id='c2'`)
	if items, _ := e.m.Store.PEPItems(context.Background(), "alice@localhost", node, nil, 0); len(items) != 1 || items[0].ID != "f" {
		t.Errorf("after lowering max_items to 1: %v", items)
	}
}

func TestTransientNode(t *testing.T) {
	e := newEnv(t)
	a := e.online(t, "alice", "phone")
	node := "http://jabber.org/protocol/tune"
	a.Send(publishIQ("p1", node, "t1", "<tune xmlns='http://jabber.org/protocol/tune'><title>A</title></tune>", field("pubsub#persist_items", "false")))
	a.Expect(`<iq type='result' id='p1'`)
	a.Send(publishIQ("p2", node, "t2", "<tune xmlns='http://jabber.org/protocol/tune'><title>B</title></tune>", field("pubsub#persist_items", "0")))
	a.Expect(`<iq type='result' id='p2'`)
	if items, err := e.m.Store.PEPItems(context.Background(), "alice@localhost", node, nil, 0); err != nil || len(items) != 0 {
		t.Errorf("a non-persistent node stored %v, %v", items, err)
	}
	a.Send(itemsIQ("g1", "alice@localhost", node, "/>"))
	if got := a.Expect(`<iq type='result' id='g1'.*?</iq>`); !strings.Contains(got, "<item id='t2'><tune xmlns='http://jabber.org/protocol/tune'><title>B</title></tune></item></items>") || strings.Contains(got, "t1") {
		t.Errorf("items of a non-persistent node: %s", got)
	}
	b := e.online(t, "bob", "laptop", node)
	e.expectEvent(t, b, "<item id='t2'><tune xmlns='http://jabber.org/protocol/tune'><title>B</title></tune></item>")
}

func TestLegacyBookmarks(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	alice := jid.MustParse("alice@localhost")
	// No bookmarks yet: an empty storage element.
	got, err := e.m.LegacyBookmarks(ctx, alice)
	if err != nil || string(got) != "<storage xmlns='storage:bookmarks'></storage>" {
		t.Fatalf("LegacyBookmarks without any = %s, %v", got, err)
	}
	a := e.online(t, "alice", "phone", NSBookmarks)
	legacy := `<storage xmlns='storage:bookmarks'>
		<conference name='The Lounge &amp; Bar' autojoin='true' jid='lounge@conference.localhost'><nick>Al</nick><password>s3cret</password></conference>
		<conference jid='quiet@conference.localhost'/>
		<url name='site' url='https://example.org/'/>
	</storage>`
	if err := e.m.SetLegacyBookmarks(ctx, alice, []byte(legacy)); err != nil {
		t.Fatal(err)
	}
	notes := e.marker(t, a)
	for _, want := range []string{
		"<items node='urn:xmpp:bookmarks:1'><item id='lounge@conference.localhost'><conference xmlns='urn:xmpp:bookmarks:1' name='The Lounge &amp; Bar' autojoin='true'><nick>Al</nick><password>s3cret</password></conference></item></items>",
		"<items node='urn:xmpp:bookmarks:1'><item id='quiet@conference.localhost'><conference xmlns='urn:xmpp:bookmarks:1'></conference></item></items>",
	} {
		if !strings.Contains(notes, want) {
			t.Errorf("notifications lack %s:\n%s", want, notes)
		}
	}
	cfg, err := e.m.Store.PEPNodeConfig(ctx, "alice@localhost", NSBookmarks)
	if err != nil || cfg.AccessModel != storage.AccessWhitelist || cfg.MaxItems != storage.PEPMaxItemsMax || !cfg.PersistItems {
		t.Errorf("bookmarks node config = %+v, %v", cfg, err)
	}
	got, err = e.m.LegacyBookmarks(ctx, alice)
	want := "<storage xmlns='storage:bookmarks'><conference jid='lounge@conference.localhost' name='The Lounge &amp; Bar' autojoin='true'><nick>Al</nick><password>s3cret</password></conference><conference jid='quiet@conference.localhost' autojoin='false'></conference></storage>"
	if err != nil || string(got) != want {
		t.Errorf("LegacyBookmarks = %s, %v\nwant %s", got, err, want)
	}
	// A XEP-0402 client adds a bookmark with extensions, published the way
	// the XEP says.
	a.Send(publishIQ("p1", NSBookmarks, "new@conference.localhost",
		"<conference xmlns='urn:xmpp:bookmarks:1' name='New' autojoin='1'><nick>A</nick><extensions><state xmlns='urn:example'/></extensions></conference>",
		field("pubsub#persist_items", "true")+field("pubsub#max_items", "max")+field("pubsub#send_last_published_item", "never")+field("pubsub#access_model", "whitelist")))
	a.Expect(`<iq type='result' id='p1'`)
	e.marker(t, a)
	// A legacy client removes quiet, renames new; lounge is unchanged.
	legacy = `<storage xmlns='storage:bookmarks'>
		<conference name='The Lounge &amp; Bar' autojoin='1' jid='lounge@conference.localhost'><nick>Al</nick><password>s3cret</password></conference>
		<conference name='Newer' autojoin='true' jid='new@conference.localhost'><nick>A</nick></conference>
	</storage>`
	if err := e.m.SetLegacyBookmarks(ctx, alice, []byte(legacy)); err != nil {
		t.Fatal(err)
	}
	notes = e.marker(t, a)
	if !strings.Contains(notes, "<items node='urn:xmpp:bookmarks:1'><retract id='quiet@conference.localhost'/></items>") {
		t.Errorf("no retraction of quiet: %s", notes)
	}
	if !strings.Contains(notes, "<item id='new@conference.localhost'><conference xmlns='urn:xmpp:bookmarks:1' name='Newer' autojoin='true'><nick>A</nick><extensions><state xmlns='urn:example'/></extensions></conference></item>") {
		t.Errorf("renamed bookmark (with its extensions): %s", notes)
	}
	if strings.Contains(notes, "lounge@") {
		t.Errorf("an unchanged bookmark was republished: %s", notes)
	}
	if err := e.m.SetLegacyBookmarks(ctx, alice, []byte("<storage xmlns='storage:rosternotes'/>")); err == nil {
		t.Error("SetLegacyBookmarks took another namespace")
	}
	if _, err := e.m.LegacyBookmarks(ctx, jid.MustParse("alice@elsewhere.example")); err == nil {
		t.Error("LegacyBookmarks of a remote JID worked")
	}
}

func TestLastItemAndPublishItem(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	alice := jid.MustParse("alice@localhost")
	if _, _, err := e.m.LastItem(ctx, alice, "urn:xmpp:avatar:metadata"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("LastItem of a missing node: %v, want ErrNotFound", err)
	}
	b := e.online(t, "bob", "laptop", "urn:xmpp:avatar:metadata")
	meta := "<metadata xmlns='urn:xmpp:avatar:metadata'><info bytes='3' id='abc' type='image/png'/></metadata>"
	if err := e.m.PublishItem(ctx, alice, "urn:xmpp:avatar:metadata", "abc", []byte(meta), storage.AccessOpen); err != nil {
		t.Fatal(err)
	}
	if got := e.marker(t, b); !strings.Contains(got, "<item id='abc'>"+meta+"</item>") {
		t.Errorf("bob was not notified of PublishItem: %s", got)
	}
	id, payload, err := e.m.LastItem(ctx, alice, "urn:xmpp:avatar:metadata")
	if err != nil || id != "abc" || string(payload) != meta {
		t.Errorf("LastItem = %q, %q, %v", id, payload, err)
	}
	if cfg, _ := e.m.Store.PEPNodeConfig(ctx, "alice@localhost", "urn:xmpp:avatar:metadata"); cfg.AccessModel != storage.AccessOpen {
		t.Errorf("PublishItem created the node with access %q", cfg.AccessModel)
	}
	if err := e.m.PublishItem(ctx, alice, "n", "x", []byte("not xml"), ""); err == nil {
		t.Error("PublishItem took a payload that is not an element")
	}
}

func TestAccountDeleted(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a := e.online(t, "alice", "phone")
	a.Send(publishIQ("p1", devices, "current", devList, ""))
	a.Expect(`<iq type='result' id='p1'`)
	if err := e.ts.DeleteAccount(ctx, jid.MustParse("alice@localhost"), "bye"); err != nil {
		t.Fatal(err)
	}
	if nodes, err := e.m.Store.PEPNodes(ctx, "alice@localhost"); err != nil || len(nodes) != 0 {
		t.Errorf("nodes after account deletion: %q, %v", nodes, err)
	}
}

func TestDiscoFeatures(t *testing.T) {
	e := newEnv(t)
	a := e.online(t, "alice", "phone")
	a.Send("<iq type='get' id='i1' to='alice@localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
	got := a.Expect(`<iq type='result' id='i1'.*?</iq>`)
	for _, f := range []string{"#publish", "#auto-create", "#publish-options", "#access-presence", "#access-open", "#access-whitelist",
		"#persistent-items", "#retract-items", "#delete-nodes", "#purge-nodes", "#config-node", "#last-published", "#retrieve-items"} {
		if !strings.Contains(got, "<feature var='http://jabber.org/protocol/pubsub"+f+"'/>") {
			t.Errorf("account disco#info lacks %s", f)
		}
	}
	if !strings.Contains(got, "<feature var='urn:xmpp:bookmarks:1#compat'/>") {
		t.Error("account disco#info lacks urn:xmpp:bookmarks:1#compat")
	}
	if !strings.Contains(got, "<identity category='pubsub' type='pep'/>") {
		t.Error("account disco#info lacks the pubsub/pep identity")
	}
}

func TestCapsCacheBounded(t *testing.T) {
	c := newCapsCache(2)
	c.put("a", []string{"x"})
	c.put("b", nil)
	c.get("a") // a is now the most recently used
	c.put("c", []string{"y"})
	if c.len() != 2 {
		t.Fatalf("cache of 2 holds %d", c.len())
	}
	if _, ok := c.get("b"); ok {
		t.Error("the least recently used entry was kept")
	}
	if nodes, ok := c.get("a"); !ok || len(nodes) != 1 || nodes[0] != "x" {
		t.Errorf("a = %v, %v", nodes, ok)
	}

	// Through the module: a cache of one entry, two clients with different
	// capabilities; the first is evicted and looked up again next time.
	e := newEnv(t, func(m *Module) { m.CapsCacheSize = 1 })
	e.online(t, "bob", "one", devices)
	e.online(t, "bob", "two", nick)
	if n := e.m.caps.len(); n != 1 {
		t.Errorf("module cache holds %d entries, limit 1", n)
	}
	if _, ok := e.m.caps.get("sha-1 " + capsVer([]string{"http://jabber.org/protocol/caps", "http://jabber.org/protocol/disco#info", devices + "+notify"})); ok {
		t.Error("the first capabilities were not evicted")
	}
}

func TestVerifyCaps(t *testing.T) {
	// XEP-0115 section 5.2, the simple example.
	simple := &discoInfo{}
	simple.Identities = append(simple.Identities, struct {
		Category string `xml:"category,attr"`
		Type     string `xml:"type,attr"`
		Lang     string `xml:"http://www.w3.org/XML/1998/namespace lang,attr"`
		Name     string `xml:"name,attr"`
	}{"client", "pc", "", "Exodus 0.9.1"})
	for _, f := range []string{"http://jabber.org/protocol/disco#info", "http://jabber.org/protocol/disco#items", "http://jabber.org/protocol/muc", "http://jabber.org/protocol/caps"} {
		simple.Features = append(simple.Features, struct {
			Var string `xml:"var,attr"`
		}{f})
	}
	if !verifyCaps(capsOf{Hash: "sha-1", Ver: "QgayPKawpkPSDYmwT/WM94uAlu0="}, simple) {
		t.Error("the simple example of XEP-0115 5.2 does not verify")
	}
	if verifyCaps(capsOf{Hash: "sha-1", Ver: "QgayPKawpkPSDYmwT/WM94uAlu1="}, simple) {
		t.Error("a wrong verification string verifies")
	}
	if verifyCaps(capsOf{Hash: "md5", Ver: "QgayPKawpkPSDYmwT/WM94uAlu0="}, simple) {
		t.Error("an unknown hash verifies")
	}
	// XEP-0115 section 5.3, the complex example, decoded from XML.
	raw := `<query xmlns='http://jabber.org/protocol/disco#info'>
  <identity xml:lang='en' category='client' name='Psi 0.11' type='pc'/>
  <identity xml:lang='el' category='client' name='Ψ 0.11' type='pc'/>
  <feature var='http://jabber.org/protocol/caps'/>
  <feature var='http://jabber.org/protocol/disco#info'/>
  <feature var='http://jabber.org/protocol/disco#items'/>
  <feature var='http://jabber.org/protocol/muc'/>
  <x xmlns='jabber:x:data' type='result'>
    <field var='FORM_TYPE' type='hidden'><value>urn:xmpp:dataforms:softwareinfo</value></field>
    <field var='ip_version'><value>ipv4</value><value>ipv6</value></field>
    <field var='os'><value>Mac</value></field>
    <field var='os_version'><value>10.5.1</value></field>
    <field var='software'><value>Psi</value></field>
    <field var='software_version'><value>0.11</value></field>
  </x>
</query>`
	st, err := treff.NewStanza([]byte("<iq type='result' id='x'>" + raw + "</iq>"))
	if err != nil {
		t.Fatal(err)
	}
	var complex discoInfo
	if err := st.DecodePayload(&complex); err != nil {
		t.Fatal(err)
	}
	if !verifyCaps(capsOf{Hash: "sha-1", Ver: "q07IKJEyjvHSyhy//CH0CxmKi8w="}, &complex) {
		t.Error("the complex example of XEP-0115 5.3 does not verify")
	}
	// Duplicate features are refused (XEP-0115 5.4).
	complex.Features = append(complex.Features, complex.Features[0])
	if verifyCaps(capsOf{Hash: "sha-1", Ver: "q07IKJEyjvHSyhy//CH0CxmKi8w="}, &complex) {
		t.Error("duplicate features verify")
	}
}

func TestSingleElement(t *testing.T) {
	for in, ok := range map[string]bool{
		" <a xmlns='urn:x'><b/></a>\n":    true,
		"<p:a xmlns:p='urn:x'/>":          true,
		"<a/>":                            false,
		"":                                false,
		"text":                            false,
		"<a xmlns='urn:x'/>tail":          false,
		"<a xmlns='urn:x'/><b xmlns=''/>": false,
		"<a xmlns='urn:x'>":               false,
	} {
		if _, err := singleElement(in); (err == nil) != ok {
			t.Errorf("singleElement(%q) error %v, want ok=%v", in, err, ok)
		}
	}
}
