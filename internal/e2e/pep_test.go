package e2e

import (
	"slices"
	"strings"
	"testing"
)

// The test in this file drives the personal eventing service (XEP-0163,
// package pep) of the example server binary with the scenario of
// clients/pep.py: slixmpp's xep_0060, xep_0115, xep_0163 and xep_0084
// plugins, as an OMEMO (XEP-0384) client uses PEP.

// Events of clients/pep.py (see its doc comment).
type (
	pepItem struct {
		ID      string `json:"id"`
		Payload string `json:"payload"`
	}
	pepEvent struct {
		From     string    `json:"from"`
		To       string    `json:"to"`
		Type     string    `json:"type"`
		Node     string    `json:"node"`
		Items    []pepItem `json:"items"`
		Retracts []string  `json:"retracts"`
	}
	pepReply struct {
		Label string       `json:"label"`
		Node  string       `json:"node"`
		Type  string       `json:"type"`
		Error *stanzaError `json:"error"`
		Items []pepItem    `json:"items"`
	}
)

const pepDeviceList = "eu.siacs.conversations.axolotl.devicelist"

func pepEvents(t *testing.T, es events, client string) []pepEvent {
	t.Helper()
	var out []pepEvent
	for _, e := range es.of("pep_event", client) {
		var p pepEvent
		e.decode(t, &p)
		out = append(out, p)
	}
	return out
}

// pepReplyOf returns the publish_reply or items_reply with the label.
func pepReplyOf(t *testing.T, es events, kind, client, label string) pepReply {
	t.Helper()
	for _, e := range es.of(kind, client) {
		var r pepReply
		e.decode(t, &r)
		if r.Label == label {
			return r
		}
	}
	t.Fatalf("no %s %q of %s", kind, label, client)
	return pepReply{}
}

// hasDevice reports whether items hold alice's device list.
func hasDevice(items []pepItem) bool {
	for _, it := range items {
		if it.ID == "current" && strings.Contains(it.Payload, "eu.siacs.conversations.axolotl") && strings.Contains(it.Payload, `id="12345"`) {
			return true
		}
	}
	return false
}

// TestPEPOMEMO: alice and bob become mutual contacts; bob's client
// declares devicelist+notify in its caps. alice publishes her OMEMO
// device list (access model open, through publish-options) and a bundle:
// bob gets the device list as a headline from alice's bare JID; carol,
// neither interested nor a contact, gets no event but can fetch the open
// device list and bundle, and is refused alice's nickname (presence
// model: not-authorized + presence-subscription-required), which bob
// gets. Publishing the device list with another access model fails the
// precondition. bob's next login gets the device list as the last item on
// presence; alice's avatar metadata reaches him and he retrieves the
// data; her bookmarks (whitelist) are refused to him.
func TestPEPOMEMO(t *testing.T) {
	_, _, p := startMUCCommunity(t)
	s := p.clients()
	es := s.client(t, "pep.py", "omemo", mucArgs()...)

	for _, label := range []string{"devicelist", "bundle", "nick", "bookmark"} {
		if r := pepReplyOf(t, es, "publish_reply", "alice", label); r.Type != "result" {
			t.Errorf("alice's %s publication: %+v", label, r)
		}
	}
	if r := pepReplyOf(t, es, "publish_reply", "alice", "devicelist_presence"); r.Type != "error" || r.Error == nil ||
		!slices.Contains(r.Error.Conditions, "conflict") || !slices.Contains(r.Error.Conditions, "precondition-not-met") {
		t.Errorf("publication with another access model: %+v, want conflict + precondition-not-met", r)
	}

	got := false
	for _, e := range pepEvents(t, es, "bob") {
		if e.Node == pepDeviceList && e.From == "alice@localhost" && e.Type == "headline" && strings.HasPrefix(e.To, "bob@localhost/") && hasDevice(e.Items) {
			got = true
		}
	}
	if !got {
		t.Errorf("bob got no device list notification: %+v", pepEvents(t, es, "bob"))
	}
	if evs := pepEvents(t, es, "carol"); len(evs) != 0 {
		t.Errorf("carol got events: %+v", evs)
	}
	var count struct {
		Count int `json:"count"`
	}
	es.one(t, "received_events", "carol").decode(t, &count)
	if count.Count != 0 {
		t.Errorf("carol counted %d events", count.Count)
	}
	if r := pepReplyOf(t, es, "items_reply", "carol", "carol_devicelist"); r.Type != "result" || !hasDevice(r.Items) {
		t.Errorf("carol's fetch of the open device list: %+v", r)
	}
	if r := pepReplyOf(t, es, "items_reply", "carol", "carol_bundle"); r.Type != "result" || len(r.Items) != 1 || !strings.Contains(r.Items[0].Payload, "identityKey") {
		t.Errorf("carol's fetch of the open bundle: %+v", r)
	}
	if r := pepReplyOf(t, es, "items_reply", "carol", "carol_nick"); r.Type != "error" || r.Error == nil || r.Error.Type != "auth" ||
		!slices.Contains(r.Error.Conditions, "not-authorized") || !slices.Contains(r.Error.Conditions, "presence-subscription-required") {
		t.Errorf("carol's fetch of the nickname (presence model): %+v", r)
	}
	if r := pepReplyOf(t, es, "items_reply", "bob", "bob_nick"); r.Type != "result" || len(r.Items) != 1 || !strings.Contains(r.Items[0].Payload, "Alice") {
		t.Errorf("bob's fetch of the nickname: %+v", r)
	}

	got = false
	for _, e := range pepEvents(t, es, "bob2") {
		if e.Node == pepDeviceList && e.From == "alice@localhost" && hasDevice(e.Items) {
			got = true
		}
	}
	if !got {
		t.Errorf("bob's second login got no last item: %+v", pepEvents(t, es, "bob2"))
	}
	var av struct {
		ID       string `json:"id"`
		SHA1     string `json:"sha1"`
		WantSHA1 string `json:"want_sha1"`
		Bytes    int    `json:"bytes"`
	}
	es.one(t, "avatar", "bob2").decode(t, &av)
	if av.SHA1 != av.WantSHA1 || av.ID != av.WantSHA1 || av.Bytes != 8+1024 {
		t.Errorf("avatar retrieved: %+v", av)
	}
	if r := pepReplyOf(t, es, "items_reply", "alice", "alice_bookmarks"); r.Type != "result" || len(r.Items) != 1 || r.Items[0].ID != "lounge@conference.localhost" {
		t.Errorf("alice's bookmarks: %+v", r)
	}
	if r := pepReplyOf(t, es, "items_reply", "bob2", "bob_bookmarks"); r.Type != "error" || r.Error == nil ||
		!slices.Contains(r.Error.Conditions, "not-allowed") || !slices.Contains(r.Error.Conditions, "closed-node") {
		t.Errorf("bob's fetch of alice's bookmarks: %+v", r)
	}
}
