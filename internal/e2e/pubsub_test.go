package e2e

import (
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// The tests in this file drive the publish-subscribe service on
// pubsub.DOMAIN (pep.Service) and explicit subscriptions to PEP nodes of
// the example server binary with the scenarios of clients/pubsub.py:
// slixmpp's xep_0060 plugin, with its xep_0059 result set iterator.

// Events of clients/pubsub.py (see its doc comment).
type (
	pubsubReply struct {
		Label string       `json:"label"`
		Type  string       `json:"type"`
		Error *stanzaError `json:"error"`
		XML   string       `json:"xml"`
	}
	pubsubDisco struct {
		Items      []string `json:"items"`
		Identities []string `json:"identities"`
		Features   []string `json:"features"`
	}
	pubsubCount struct {
		Label string `json:"label"`
		Count int    `json:"count"`
	}
)

// pubsubReplyOf returns the reply with the label.
func pubsubReplyOf(t *testing.T, es events, client, label string) pubsubReply {
	t.Helper()
	for _, e := range es.of("reply", client) {
		var r pubsubReply
		e.decode(t, &r)
		if r.Label == label {
			return r
		}
	}
	t.Fatalf("no reply %q of %s", label, client)
	return pubsubReply{}
}

func wantResult(t *testing.T, es events, client, label string) pubsubReply {
	t.Helper()
	r := pubsubReplyOf(t, es, client, label)
	if r.Type != "result" {
		t.Errorf("%s's %s: %+v, want a result", client, label, r)
	}
	return r
}

func wantPubsubError(t *testing.T, es events, client, label string, conditions ...string) {
	t.Helper()
	r := pubsubReplyOf(t, es, client, label)
	if r.Type != "error" || r.Error == nil {
		t.Errorf("%s's %s: %+v, want an error", client, label, r)
		return
	}
	for _, c := range conditions {
		if !slices.Contains(r.Error.Conditions, c) {
			t.Errorf("%s's %s: conditions %q, want %s", client, label, r.Error.Conditions, c)
		}
	}
}

// TestPubSubService: alice finds pubsub.localhost in the host's
// disco#items (a pubsub/service identity with subscribe and rsm
// features), creates a block list node (open, publish model publishers)
// and publishes five items; bob, subscribed, gets each as a headline from
// the service; carol may not publish (forbidden). bob's max_items='2'
// gets the two newest items, slixmpp's RSM iterator pages all five by
// two, his subscriptions list the node, and after unsubscribing he gets
// no notification of a sixth item.
func TestPubSubService(t *testing.T) {
	_, _, p := startMUCCommunity(t)
	es := p.clients().client(t, "pubsub.py", "service", mucArgs()...)

	var d pubsubDisco
	es.one(t, "disco", "alice").decode(t, &d)
	if !slices.Contains(d.Items, "pubsub.localhost") {
		t.Errorf("the host's disco#items: %q, want pubsub.localhost", d.Items)
	}
	if !slices.Contains(d.Identities, "pubsub/service") {
		t.Errorf("the service's identities: %q", d.Identities)
	}
	for _, f := range []string{"http://jabber.org/protocol/pubsub#subscribe", "http://jabber.org/protocol/pubsub#rsm",
		"http://jabber.org/protocol/pubsub#create-and-configure", "http://jabber.org/protocol/pubsub#publisher-affiliation"} {
		if !slices.Contains(d.Features, f) {
			t.Errorf("the service's features lack %s: %q", f, d.Features)
		}
	}

	wantResult(t, es, "alice", "create")
	if r := wantResult(t, es, "bob", "subscribe"); !strings.Contains(r.XML, "subscription=\"subscribed\"") {
		t.Errorf("bob's subscription: %s", r.XML)
	}
	for _, l := range []string{"publish1", "publish2", "publish3", "publish4", "publish5"} {
		wantResult(t, es, "alice", l)
	}
	var got []string
	for _, e := range pepEvents(t, es, "bob") {
		if e.From != "pubsub.localhost" || e.Node != "muc_bans_sha256" || e.Type != "headline" {
			t.Errorf("bob's event: %+v", e)
			continue
		}
		for _, it := range e.Items {
			if !strings.Contains(it.Payload, "urn:xmpp:reporting:1") {
				t.Errorf("item %s without its payload: %q", it.ID, it.Payload)
			}
			got = append(got, it.ID)
		}
	}
	if want := []string{"hash1", "hash2", "hash3", "hash4", "hash5"}; !reflect.DeepEqual(got, want) {
		t.Errorf("bob's notifications: %q, want %q", got, want)
	}
	wantPubsubError(t, es, "carol", "carol_publish", "forbidden")

	if r := wantResult(t, es, "bob", "max_items"); !strings.Contains(r.XML, `id="hash4"`) || !strings.Contains(r.XML, `id="hash5"`) ||
		strings.Contains(r.XML, `id="hash3"`) {
		t.Errorf("max_items='2': %s", r.XML)
	}
	var pages struct {
		Pages [][]string `json:"pages"`
	}
	es.one(t, "rsm_pages", "bob").decode(t, &pages)
	if want := [][]string{{"hash1", "hash2"}, {"hash3", "hash4"}, {"hash5"}}; !reflect.DeepEqual(pages.Pages, want) {
		t.Errorf("RSM pages: %q, want %q", pages.Pages, want)
	}
	if r := wantResult(t, es, "bob", "subscriptions"); !strings.Contains(r.XML, `node="muc_bans_sha256"`) ||
		!strings.Contains(r.XML, `jid="bob@localhost"`) {
		t.Errorf("bob's subscriptions: %s", r.XML)
	}
	wantResult(t, es, "bob", "unsubscribe")
	wantResult(t, es, "alice", "publish6")
	var c pubsubCount
	es.one(t, "counted", "bob").decode(t, &c)
	if c.Count != 5 {
		t.Errorf("bob got %d notifications, want 5 (none after unsubscribing)", c.Count)
	}
}

// TestPubSubPEPSubscribe: alice's account advertises explicit
// subscriptions; carol, neither a contact nor interested through
// entity capabilities, subscribes to alice's open PEP node with
// slixmpp's xep_0060 and gets alice's next item from her bare JID; the
// presence node refuses her (not-authorized +
// presence-subscription-required) and sends her nothing; her
// subscriptions at alice list the open node.
func TestPubSubPEPSubscribe(t *testing.T) {
	_, _, p := startMUCCommunity(t)
	es := p.clients().client(t, "pubsub.py", "pep", mucArgs()...)

	wantResult(t, es, "alice", "publish_feed")
	wantResult(t, es, "alice", "publish_private")
	var d pubsubDisco
	es.one(t, "disco", "alice").decode(t, &d)
	for _, f := range []string{"subscribe", "retrieve-subscriptions", "auto-subscribe", "multi-items", "outcast-affiliation", "persistent-items"} {
		if !slices.Contains(d.Features, "http://jabber.org/protocol/pubsub#"+f) {
			t.Errorf("alice's account lacks pubsub#%s: %q", f, d.Features)
		}
	}
	wantResult(t, es, "carol", "subscribe_feed")
	wantPubsubError(t, es, "carol", "subscribe_private", "not-authorized", "presence-subscription-required")
	wantResult(t, es, "alice", "publish_feed2")
	found := false
	for _, e := range pepEvents(t, es, "carol") {
		if e.From == "alice@localhost" && e.Node == "urn:example:feed" {
			for _, it := range e.Items {
				found = found || it.ID == "2"
			}
		}
	}
	if !found {
		t.Errorf("carol got no notification of alice's feed: %+v", pepEvents(t, es, "carol"))
	}
	if r := wantResult(t, es, "carol", "subscriptions"); !strings.Contains(r.XML, `node="urn:example:feed"`) ||
		strings.Contains(r.XML, "urn:example:private") {
		t.Errorf("carol's subscriptions at alice: %s", r.XML)
	}
	var c pubsubCount
	es.one(t, "counted", "carol").decode(t, &c)
	if c.Count != 0 {
		t.Errorf("carol got %d notifications of the presence node", c.Count)
	}
}

// TestPubSubFederation: Prosody 0.12 (set up as in the federation test)
// as a remote subscriber: alice on Treff creates a block list node on
// pubsub.treff.test; watcher, a slixmpp client on prosody.test,
// subscribes over server-to-server streams, gets alice's item as a
// notification from the service through Prosody, and retrieves it.
func TestPubSubFederation(t *testing.T) {
	needFederation(t)
	f := newFederation(t)
	f.startProsody(t, "watcher")
	f.startTreff(t, "alice")
	script, err := filepath.Abs(filepath.Join("clients", "pubsub.py"))
	if err != nil {
		t.Fatal(err)
	}
	es := runClient(t, "pubsub.py federation", pythonEnv(), python, script,
		"--cert", f.clientCAs, "--timeout", fmt.Sprint(fedScriptTimeout.Seconds()), "--wait", fmt.Sprint(fedWait.Seconds()),
		"--jid", "alice@"+fedTreff, "--password", fedPassword, "--addr", fedAddr[fedTreff]+":5222",
		"--peer", "watcher@"+fedProsody, "--peer-password", fedPassword, "--peer-addr", fedAddr[fedProsody]+":5222",
		"--service", fedTreffPubsub, "federation")

	wantResult(t, es, "alice", "create")
	if r := wantResult(t, es, "watcher", "subscribe"); !strings.Contains(r.XML, `jid="watcher@`+fedProsody+`"`) {
		t.Errorf("watcher's subscription: %s", r.XML)
	}
	wantResult(t, es, "alice", "publish")
	got := false
	for _, e := range pepEvents(t, es, "watcher") {
		if e.From == fedTreffPubsub && e.Node == "muc_bans_sha256" && len(e.Items) == 1 && e.Items[0].ID == "hash1" &&
			strings.Contains(e.Items[0].Payload, "urn:xmpp:reporting:1") {
			got = true
		}
	}
	if !got {
		t.Errorf("watcher's notifications: %+v", pepEvents(t, es, "watcher"))
	}
	if r := wantResult(t, es, "watcher", "items"); !strings.Contains(r.XML, `id="hash1"`) {
		t.Errorf("watcher's items: %s", r.XML)
	}
}
