package storagetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/treff-im/treff/storage"
)

// pepTests run only for stores that implement storage.PEP.
var pepTests = []test{
	{name: "Nodes", fn: testPEPNodes},
	{name: "PublishReplaceEvict", fn: testPEPPublish},
	{name: "ItemsSelection", fn: testPEPItems},
	{name: "RetractPurge", fn: testPEPRetractPurge},
	{name: "DeleteOwner", fn: testPEPDeleteOwner},
	{name: "CancelledContext", fn: cancelled(pepCalls)},
	{name: "EmptyJID", fn: emptyJID(pepCalls)},
	{name: "Affiliations", fn: testPEPAffiliations},
	{name: "Subscriptions", fn: testPEPSubscriptions},
	{name: "SubscriptionsCancelledContext", fn: cancelled(pepSubCalls)},
	{name: "SubscriptionsEmptyJID", fn: emptyJID(pepSubCalls)},
}

const (
	pepDevices = "eu.siacs.conversations.axolotl.devicelist"
	pepAvatar  = "urn:xmpp:avatar:data"
)

func pepStore(t *testing.T, s storage.Store) storage.PEP {
	t.Helper()
	p, ok := s.(storage.PEP)
	if !ok {
		t.Skip("store does not implement storage.PEP")
	}
	return p
}

func pepItem(id string) storage.PEPItem {
	return storage.PEPItem{ID: id, Payload: []byte("<x xmlns='urn:example'>" + id + " ✓ &amp;</x>")}
}

// pepIDs returns the IDs of items, failing t if a payload is not the one
// pepItem made for its ID.
func pepIDs(t *testing.T, items []storage.PEPItem) []string {
	t.Helper()
	out := []string{}
	for _, it := range items {
		if string(it.Payload) != string(pepItem(it.ID).Payload) {
			t.Errorf("item %q has payload %q", it.ID, it.Payload)
		}
		out = append(out, it.ID)
	}
	return out
}

func wantPEPIDs(t *testing.T, p storage.PEP, ctx context.Context, owner, node string, ids []string, last int, want ...string) {
	t.Helper()
	items, err := p.PEPItems(ctx, owner, node, ids, last)
	must(t, err, "PEPItems")
	if got := pepIDs(t, items); !sameStrings(got, want) {
		t.Errorf("PEPItems(%q, %q, ids %q, last %d) = %q, want %q", owner, node, ids, last, got, want)
	}
}

func testPEPNodes(t *testing.T, ctx context.Context, s storage.Store) {
	p := pepStore(t, s)
	if _, err := p.PEPNodeConfig(ctx, alice, pepDevices); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("PEPNodeConfig before any: %v, want ErrNotFound", err)
	}
	if nodes, err := p.PEPNodes(ctx, alice); err != nil || len(nodes) != 0 {
		t.Errorf("PEPNodes before any = %q, %v; want none", nodes, err)
	}
	cfg := storage.PEPNodeConfig{
		AccessModel: storage.AccessWhitelist, PersistItems: true, MaxItems: storage.PEPMaxItemsMax,
		Whitelist: []string{bob, "carol@example.net"}, RosterGroups: []string{"Friends ✓"},
		NotifyRetract: true, NotifyDelete: true, Title: "Devices <all>",
	}
	must(t, p.CreatePEPNode(ctx, alice, pepDevices, cfg), "CreatePEPNode")
	must(t, p.CreatePEPNode(ctx, alice, pepAvatar, storage.PEPNodeConfig{AccessModel: storage.AccessOpen, MaxItems: 1}), "CreatePEPNode avatar")
	must(t, p.CreatePEPNode(ctx, alice, "", storage.PEPNodeConfig{}), "CreatePEPNode with an empty name")
	wantErr(t, p.CreatePEPNode(ctx, alice, pepDevices, storage.PEPNodeConfig{}), storage.ErrExists, "CreatePEPNode twice")
	got, err := p.PEPNodeConfig(ctx, alice, pepDevices)
	must(t, err, "PEPNodeConfig")
	if !reflect.DeepEqual(got, cfg) {
		t.Errorf("PEPNodeConfig = %+v, want %+v", got, cfg)
	}
	// The store keeps its own copy.
	got.Whitelist[0] = "mallory@example.org"
	if again, _ := p.PEPNodeConfig(ctx, alice, pepDevices); again.Whitelist[0] != bob {
		t.Error("changing a returned config changed the stored one")
	}
	if _, err := p.PEPNodeConfig(ctx, bob, pepDevices); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("bob's node read alice's: %v, want ErrNotFound", err)
	}
	nodes, err := p.PEPNodes(ctx, alice)
	must(t, err, "PEPNodes")
	if want := []string{"", pepDevices, pepAvatar}; !sameStrings(nodes, want) {
		t.Errorf("PEPNodes = %q, want %q", nodes, want)
	}

	must(t, p.PublishPEPItem(ctx, alice, pepDevices, pepItem("current"), 0), "PublishPEPItem")
	cfg2 := storage.PEPNodeConfig{AccessModel: storage.AccessOpen, MaxItems: 3}
	must(t, p.SetPEPNodeConfig(ctx, alice, pepDevices, cfg2), "SetPEPNodeConfig")
	if got, _ := p.PEPNodeConfig(ctx, alice, pepDevices); !reflect.DeepEqual(got, cfg2) {
		t.Errorf("after SetPEPNodeConfig: %+v, want %+v", got, cfg2)
	}
	wantPEPIDs(t, p, ctx, alice, pepDevices, nil, 0, "current")
	wantErr(t, p.SetPEPNodeConfig(ctx, bob, pepDevices, cfg2), storage.ErrNotFound, "SetPEPNodeConfig of a missing node")

	must(t, p.DeletePEPNode(ctx, alice, pepDevices), "DeletePEPNode")
	wantErr(t, p.DeletePEPNode(ctx, alice, pepDevices), storage.ErrNotFound, "DeletePEPNode twice")
	if _, err := p.PEPItems(ctx, alice, pepDevices, nil, 0); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("PEPItems of a deleted node: %v, want ErrNotFound", err)
	}
	// A node created again starts empty.
	must(t, p.CreatePEPNode(ctx, alice, pepDevices, cfg), "CreatePEPNode after delete")
	wantPEPIDs(t, p, ctx, alice, pepDevices, nil, 0)
	must(t, p.DeletePEPNode(ctx, alice, pepDevices), "DeletePEPNode")
	must(t, p.DeletePEPNode(ctx, alice, pepAvatar), "DeletePEPNode")
	must(t, p.DeletePEPNode(ctx, alice, ""), "DeletePEPNode")
	if nodes, err := p.PEPNodes(ctx, alice); err != nil || len(nodes) != 0 {
		t.Errorf("PEPNodes after deleting all = %q, %v; want none", nodes, err)
	}
}

func testPEPPublish(t *testing.T, ctx context.Context, s storage.Store) {
	p := pepStore(t, s)
	wantErr(t, p.PublishPEPItem(ctx, alice, pepDevices, pepItem("a"), 0), storage.ErrNotFound, "PublishPEPItem to a missing node")
	must(t, p.CreatePEPNode(ctx, alice, pepDevices, storage.PEPNodeConfig{MaxItems: 3}), "CreatePEPNode")
	for _, id := range []string{"a", "b", "c"} {
		must(t, p.PublishPEPItem(ctx, alice, pepDevices, pepItem(id), 3), "PublishPEPItem "+id)
	}
	wantPEPIDs(t, p, ctx, alice, pepDevices, nil, 0, "a", "b", "c")
	// Replacing makes the item the newest, without growing the node.
	must(t, p.PublishPEPItem(ctx, alice, pepDevices, pepItem("a"), 3), "PublishPEPItem a again")
	wantPEPIDs(t, p, ctx, alice, pepDevices, nil, 0, "b", "c", "a")
	// A fourth item evicts the oldest.
	must(t, p.PublishPEPItem(ctx, alice, pepDevices, pepItem("d"), 3), "PublishPEPItem d")
	wantPEPIDs(t, p, ctx, alice, pepDevices, nil, 0, "c", "a", "d")
	// A smaller limit evicts down to it.
	must(t, p.PublishPEPItem(ctx, alice, pepDevices, pepItem("e"), 1), "PublishPEPItem e with max 1")
	wantPEPIDs(t, p, ctx, alice, pepDevices, nil, 0, "e")
	// No limit.
	for i := range 20 {
		must(t, p.PublishPEPItem(ctx, alice, pepDevices, pepItem(fmt.Sprint(i)), 0), "PublishPEPItem")
	}
	items, err := p.PEPItems(ctx, alice, pepDevices, nil, 0)
	must(t, err, "PEPItems")
	if len(items) != 21 || items[0].ID != "e" || items[20].ID != "19" {
		t.Errorf("after 20 more without limit: %q", pepIDs(t, items))
	}
	// The store keeps its own copy of what it is given and returns.
	it := pepItem("x")
	must(t, p.PublishPEPItem(ctx, alice, pepDevices, it, 0), "PublishPEPItem x")
	it.Payload[1] = 'y'
	got, err := p.PEPItems(ctx, alice, pepDevices, []string{"x"}, 0)
	must(t, err, "PEPItems x")
	if len(got) != 1 || string(got[0].Payload) != string(pepItem("x").Payload) {
		t.Fatalf("PEPItems x = %+v", got)
	}
	got[0].Payload[1] = 'z'
	wantPEPIDs(t, p, ctx, alice, pepDevices, []string{"x"}, 0, "x")
	// Another owner's node of the same name is another node.
	wantErr(t, p.PublishPEPItem(ctx, bob, pepDevices, pepItem("a"), 0), storage.ErrNotFound, "PublishPEPItem to bob's missing node")
}

func testPEPItems(t *testing.T, ctx context.Context, s storage.Store) {
	p := pepStore(t, s)
	if _, err := p.PEPItems(ctx, alice, pepDevices, nil, 0); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("PEPItems of a missing node: %v, want ErrNotFound", err)
	}
	must(t, p.CreatePEPNode(ctx, alice, pepDevices, storage.PEPNodeConfig{}), "CreatePEPNode")
	wantPEPIDs(t, p, ctx, alice, pepDevices, nil, 0)
	wantPEPIDs(t, p, ctx, alice, pepDevices, nil, 2)
	wantPEPIDs(t, p, ctx, alice, pepDevices, []string{"a"}, 0)
	for _, id := range []string{"a", "b", "c", "d"} {
		must(t, p.PublishPEPItem(ctx, alice, pepDevices, pepItem(id), 0), "PublishPEPItem "+id)
	}
	wantPEPIDs(t, p, ctx, alice, pepDevices, nil, 1, "d")
	wantPEPIDs(t, p, ctx, alice, pepDevices, nil, 2, "c", "d")
	wantPEPIDs(t, p, ctx, alice, pepDevices, nil, 10, "a", "b", "c", "d")
	// By ID: publication order, missing IDs skipped, each item once.
	wantPEPIDs(t, p, ctx, alice, pepDevices, []string{"d", "nope", "b", "d"}, 0, "b", "d")
	wantPEPIDs(t, p, ctx, alice, pepDevices, []string{"nope"}, 0)
	// IDs win over last.
	wantPEPIDs(t, p, ctx, alice, pepDevices, []string{"a"}, 1, "a")
}

func testPEPRetractPurge(t *testing.T, ctx context.Context, s storage.Store) {
	p := pepStore(t, s)
	wantErr(t, p.RetractPEPItem(ctx, alice, pepDevices, "a"), storage.ErrNotFound, "RetractPEPItem on a missing node")
	wantErr(t, p.PurgePEPNode(ctx, alice, pepDevices), storage.ErrNotFound, "PurgePEPNode of a missing node")
	must(t, p.CreatePEPNode(ctx, alice, pepDevices, storage.PEPNodeConfig{}), "CreatePEPNode")
	for _, id := range []string{"a", "b", "c"} {
		must(t, p.PublishPEPItem(ctx, alice, pepDevices, pepItem(id), 3), "PublishPEPItem "+id)
	}
	must(t, p.RetractPEPItem(ctx, alice, pepDevices, "b"), "RetractPEPItem b")
	wantErr(t, p.RetractPEPItem(ctx, alice, pepDevices, "b"), storage.ErrNotFound, "RetractPEPItem b twice")
	wantPEPIDs(t, p, ctx, alice, pepDevices, nil, 0, "a", "c")
	// The count of items stays right: two more fit under a limit of 3
	// with one eviction.
	must(t, p.PublishPEPItem(ctx, alice, pepDevices, pepItem("d"), 3), "PublishPEPItem d")
	wantPEPIDs(t, p, ctx, alice, pepDevices, nil, 0, "a", "c", "d")
	must(t, p.PublishPEPItem(ctx, alice, pepDevices, pepItem("e"), 3), "PublishPEPItem e")
	wantPEPIDs(t, p, ctx, alice, pepDevices, nil, 0, "c", "d", "e")

	must(t, p.PurgePEPNode(ctx, alice, pepDevices), "PurgePEPNode")
	wantPEPIDs(t, p, ctx, alice, pepDevices, nil, 0)
	if _, err := p.PEPNodeConfig(ctx, alice, pepDevices); err != nil {
		t.Errorf("PEPNodeConfig after purge: %v", err)
	}
	for _, id := range []string{"f", "g", "h", "i"} {
		must(t, p.PublishPEPItem(ctx, alice, pepDevices, pepItem(id), 3), "PublishPEPItem "+id)
	}
	wantPEPIDs(t, p, ctx, alice, pepDevices, nil, 0, "g", "h", "i")
	wantPEPIDs(t, p, ctx, alice, pepDevices, []string{"c"}, 0)
}

func testPEPDeleteOwner(t *testing.T, ctx context.Context, s storage.Store) {
	p := pepStore(t, s)
	must(t, p.DeletePEPOwner(ctx, alice), "DeletePEPOwner without nodes")
	for _, owner := range []string{alice, bob} {
		for _, node := range []string{pepDevices, pepAvatar} {
			must(t, p.CreatePEPNode(ctx, owner, node, storage.PEPNodeConfig{}), "CreatePEPNode")
			must(t, p.PublishPEPItem(ctx, owner, node, pepItem("a"), 0), "PublishPEPItem")
		}
	}
	must(t, p.DeletePEPOwner(ctx, alice), "DeletePEPOwner")
	if nodes, err := p.PEPNodes(ctx, alice); err != nil || len(nodes) != 0 {
		t.Errorf("PEPNodes after DeletePEPOwner = %q, %v; want none", nodes, err)
	}
	if _, err := p.PEPItems(ctx, alice, pepDevices, nil, 0); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("PEPItems after DeletePEPOwner: %v, want ErrNotFound", err)
	}
	if nodes, _ := p.PEPNodes(ctx, bob); len(nodes) != 2 {
		t.Errorf("bob's nodes after deleting alice's: %q", nodes)
	}
	wantPEPIDs(t, p, ctx, bob, pepAvatar, nil, 0, "a")
	// The owner can start again.
	must(t, p.CreatePEPNode(ctx, alice, pepDevices, storage.PEPNodeConfig{}), "CreatePEPNode after DeletePEPOwner")
	wantPEPIDs(t, p, ctx, alice, pepDevices, nil, 0)
}

// testPEPAffiliations: the fields a pubsub service adds to a node's
// configuration (publish model, owners, publishers, outcasts) survive a
// round trip, and a service JID is an owner key like a bare JID.
func testPEPAffiliations(t *testing.T, ctx context.Context, s storage.Store) {
	p := pepStore(t, s)
	const service = "pubsub.example.org"
	cfg := storage.PEPNodeConfig{
		AccessModel: storage.AccessOpen, PersistItems: true, MaxItems: 10,
		PublishModel: storage.PublishOpen,
		Owners:       []string{alice}, Publishers: []string{bob, "dave@example.net"},
		Outcasts: []string{carol}, Whitelist: []string{"erin@example.net"},
	}
	must(t, p.CreatePEPNode(ctx, service, "rtbl", cfg), "CreatePEPNode on a service")
	got, err := p.PEPNodeConfig(ctx, service, "rtbl")
	must(t, err, "PEPNodeConfig")
	if !reflect.DeepEqual(got, cfg) {
		t.Errorf("PEPNodeConfig = %+v, want %+v", got, cfg)
	}
	got.Publishers[0] = "mallory@example.org"
	if again, _ := p.PEPNodeConfig(ctx, service, "rtbl"); again.Publishers[0] != bob {
		t.Error("changing a returned config changed the stored one")
	}
	cfg.Owners = append(cfg.Owners, bob)
	cfg.Outcasts = nil
	cfg.PublishModel = storage.PublishPublishers
	must(t, p.SetPEPNodeConfig(ctx, service, "rtbl", cfg), "SetPEPNodeConfig")
	if got, _ := p.PEPNodeConfig(ctx, service, "rtbl"); !reflect.DeepEqual(got, cfg) {
		t.Errorf("after SetPEPNodeConfig: %+v, want %+v", got, cfg)
	}
}

func pepSubStore(t *testing.T, s storage.Store) (storage.PEP, storage.PEPSubscriptions) {
	t.Helper()
	p := pepStore(t, s)
	return p, as[storage.PEPSubscriptions](t, s)
}

func wantStrings(t *testing.T, what string, got []string, err error, want ...string) {
	t.Helper()
	if err != nil {
		t.Errorf("%s: %v", what, err)
		return
	}
	if len(got) != len(want) {
		t.Errorf("%s = %q, want %q", what, got, want)
		return
	}
	for i := range got {
		if got[i] != want[i] {
			t.Errorf("%s = %q, want %q", what, got, want)
			return
		}
	}
}

// testPEPSubscriptions: subscriptions per node and subscriber, listed
// sorted, removed with their node or owner, kept by a purge.
func testPEPSubscriptions(t *testing.T, ctx context.Context, s storage.Store) {
	p, ps := pepSubStore(t, s)
	const service = "pubsub.example.org"
	wantErr(t, ps.SubscribePEPNode(ctx, alice, pepDevices, bob), storage.ErrNotFound, "SubscribePEPNode to a missing node")
	if _, err := ps.PEPSubscribers(ctx, alice, pepDevices); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("PEPSubscribers of a missing node: %v, want ErrNotFound", err)
	}
	subs, err := ps.PEPSubscriptionsOf(ctx, alice, bob)
	wantStrings(t, "PEPSubscriptionsOf without nodes", subs, err)
	for _, node := range []string{pepDevices, pepAvatar} {
		must(t, p.CreatePEPNode(ctx, alice, node, storage.PEPNodeConfig{}), "CreatePEPNode")
	}
	must(t, p.CreatePEPNode(ctx, service, pepDevices, storage.PEPNodeConfig{}), "CreatePEPNode on a service")
	must(t, ps.SubscribePEPNode(ctx, alice, pepDevices, bob), "SubscribePEPNode bob")
	must(t, ps.SubscribePEPNode(ctx, alice, pepDevices, bob), "SubscribePEPNode bob again")
	must(t, ps.SubscribePEPNode(ctx, alice, pepDevices, carol+"/phone"), "SubscribePEPNode carol's resource")
	must(t, ps.SubscribePEPNode(ctx, alice, pepAvatar, bob), "SubscribePEPNode bob avatar")
	must(t, ps.SubscribePEPNode(ctx, service, pepDevices, "example.net"), "SubscribePEPNode a server")
	subs, err = ps.PEPSubscribers(ctx, alice, pepDevices)
	wantStrings(t, "PEPSubscribers", subs, err, bob, carol+"/phone")
	subs, err = ps.PEPSubscriptionsOf(ctx, alice, bob)
	wantStrings(t, "PEPSubscriptionsOf bob", subs, err, pepDevices, pepAvatar)
	subs, err = ps.PEPSubscriptionsOf(ctx, alice, carol)
	wantStrings(t, "PEPSubscriptionsOf carol's bare JID", subs, err)
	subs, err = ps.PEPSubscribers(ctx, service, pepDevices)
	wantStrings(t, "PEPSubscribers of the service's node", subs, err, "example.net")

	wantErr(t, ps.UnsubscribePEPNode(ctx, alice, pepDevices, carol), storage.ErrNotFound, "UnsubscribePEPNode of a non-subscriber")
	wantErr(t, ps.UnsubscribePEPNode(ctx, bob, pepDevices, alice), storage.ErrNotFound, "UnsubscribePEPNode from a missing node")
	must(t, ps.UnsubscribePEPNode(ctx, alice, pepDevices, carol+"/phone"), "UnsubscribePEPNode")
	subs, err = ps.PEPSubscribers(ctx, alice, pepDevices)
	wantStrings(t, "PEPSubscribers after unsubscribe", subs, err, bob)

	// A purge keeps subscriptions, a deletion removes them, and a node
	// created again starts without any.
	must(t, p.PublishPEPItem(ctx, alice, pepDevices, pepItem("a"), 0), "PublishPEPItem")
	must(t, p.PurgePEPNode(ctx, alice, pepDevices), "PurgePEPNode")
	subs, err = ps.PEPSubscribers(ctx, alice, pepDevices)
	wantStrings(t, "PEPSubscribers after purge", subs, err, bob)
	must(t, p.DeletePEPNode(ctx, alice, pepDevices), "DeletePEPNode")
	must(t, p.CreatePEPNode(ctx, alice, pepDevices, storage.PEPNodeConfig{}), "CreatePEPNode again")
	subs, err = ps.PEPSubscribers(ctx, alice, pepDevices)
	wantStrings(t, "PEPSubscribers of a node created again", subs, err)
	subs, err = ps.PEPSubscriptionsOf(ctx, alice, bob)
	wantStrings(t, "PEPSubscriptionsOf after the deletion", subs, err, pepAvatar)

	must(t, p.DeletePEPOwner(ctx, alice), "DeletePEPOwner")
	subs, err = ps.PEPSubscriptionsOf(ctx, alice, bob)
	wantStrings(t, "PEPSubscriptionsOf after DeletePEPOwner", subs, err)
	subs, err = ps.PEPSubscribers(ctx, service, pepDevices)
	wantStrings(t, "the service's subscribers after deleting alice's nodes", subs, err, "example.net")
}

func pepSubCalls(t *testing.T, ctx context.Context, s storage.Store) []call {
	p, ps := pepSubStore(t, s)
	const node = "urn:example:node"
	must(t, p.CreatePEPNode(ctx, alice, node, storage.PEPNodeConfig{}), "CreatePEPNode")
	must(t, ps.SubscribePEPNode(ctx, alice, node, bob), "SubscribePEPNode")
	return []call{
		{"SubscribePEPNode(jid)", carol, func(ctx context.Context, j string) error { return ps.SubscribePEPNode(ctx, alice, node, j) }},
		{"UnsubscribePEPNode", "", func(ctx context.Context, j string) error { return ps.UnsubscribePEPNode(ctx, alice, node, bob) }},
		{"PEPSubscribers", "", func(ctx context.Context, j string) error { _, err := ps.PEPSubscribers(ctx, alice, node); return err }},
		{"PEPSubscriptionsOf(owner)", alice, func(ctx context.Context, j string) error { _, err := ps.PEPSubscriptionsOf(ctx, j, bob); return err }},
		{"PEPSubscriptionsOf(jid)", bob, func(ctx context.Context, j string) error { _, err := ps.PEPSubscriptionsOf(ctx, alice, j); return err }},
	}
}
