package e2e

import (
	"slices"
	"strings"
	"testing"
)

// The test in this file drives the blocking command (XEP-0191, package
// blocking) of the example server binary (examples/community, started as
// in register_test.go) with the scenario of clients/blocking.py, through
// slixmpp's xep_0191 plugin.

const malloryPW = "mallory's pässword"

// Events of clients/blocking.py (see its doc comment).
type (
	blockList struct {
		JIDs []string `json:"jids"`
	}
	blockPush struct {
		Kind string   `json:"kind"`
		JIDs []string `json:"jids"`
	}
	blockReceived struct {
		Bodies []string `json:"bodies"`
		Errors []struct {
			From       string   `json:"from"`
			ID         string   `json:"id"`
			Type       string   `json:"type"`
			Conditions []string `json:"conditions"`
			App        []string `json:"app"`
		} `json:"errors"`
	}
	iqReply struct {
		Label string       `json:"label"`
		Type  string       `json:"type"`
		Error *stanzaError `json:"error"`
	}
)

func received(t *testing.T, es events, client string) blockReceived {
	t.Helper()
	var r blockReceived
	es.one(t, "received", client).decode(t, &r)
	return r
}

func iqReplies(t *testing.T, es events, client string) map[string]iqReply {
	t.Helper()
	out := map[string]iqReply{}
	for _, e := range es.of("iq_reply", client) {
		var r iqReply
		e.decode(t, &r)
		out[r.Label] = r
	}
	return out
}

// TestBlocking: bob, on two devices that both fetched the (empty) block
// list, blocks mallory. Both devices get the block push. mallory's chat
// messages to bob's bare and full JID never reach bob (alice's control
// message, sent after mallory's were routed, does: the stream works);
// mallory gets <service-unavailable/> for them and for her IQ, as if bob
// were offline. bob's own message to mallory comes back as
// <not-acceptable/> with <blocked xmlns='urn:xmpp:blocking:errors'/> and
// does not reach her. Once bob's other device unblocks her (both get the
// unblock push), her message arrives and the list is empty.
func TestBlocking(t *testing.T) {
	_, _, p := startRegCommunity(t, nil, [2]string{"alice@localhost", alicePW}, [2]string{"bob@localhost", bobPW},
		[2]string{"mallory@localhost", malloryPW})
	body := uniqueBody("blocking")
	es := p.clients().client(t, "blocking.py", "blocking", "--jid", "alice@localhost", "--password", alicePW,
		"--peer", "bob@localhost", "--peer-password", bobPW, "--third", "mallory@localhost", "--third-password", malloryPW,
		"--body", body)

	for _, c := range []string{"bob1", "bob2"} {
		for _, e := range es.of("blocklist", c) {
			var l blockList
			e.decode(t, &l)
			if len(l.JIDs) != 0 {
				t.Errorf("%s: first block list %v, want empty", c, l.JIDs)
			}
		}
		var pushes []blockPush
		for _, e := range es.of("push", c) {
			var p blockPush
			e.decode(t, &p)
			pushes = append(pushes, p)
		}
		want := []blockPush{{"block", []string{"mallory@localhost"}}, {"unblock", []string{"mallory@localhost"}}}
		if len(pushes) != 2 || pushes[0].Kind != want[0].Kind || !slices.Equal(pushes[0].JIDs, want[0].JIDs) ||
			pushes[1].Kind != want[1].Kind || !slices.Equal(pushes[1].JIDs, want[1].JIDs) {
			t.Errorf("%s got pushes %+v, want %+v", c, pushes, want)
		}
	}
	for _, c := range []string{"bob1", "bob2"} {
		r := received(t, es, c)
		for _, b := range r.Bodies {
			if strings.Contains(b, "blocked to") {
				t.Errorf("%s got mallory's message %q", c, b)
			}
		}
		if c == "bob1" && !slices.Contains(r.Bodies, "control "+body) {
			t.Errorf("bob1 did not get alice's control message: %v", r.Bodies)
		}
	}
	mal := received(t, es, "mallory")
	if len(mal.Errors) != 2 {
		t.Errorf("mallory got %d errors, want 2 (one per message): %+v", len(mal.Errors), mal.Errors)
	}
	for _, e := range mal.Errors {
		if !slices.Equal(e.Conditions, []string{"service-unavailable"}) || e.Type != "cancel" {
			t.Errorf("mallory's message error %+v, want cancel/service-unavailable", e)
		}
	}
	if r := iqReplies(t, es, "mallory")["disco_bob"]; r.Type != "error" || r.Error == nil || !slices.Equal(r.Error.Conditions, []string{"service-unavailable"}) {
		t.Errorf("mallory's IQ to bob: %+v, want service-unavailable", r)
	}

	bob := received(t, es, "bob1_after_send")
	if len(bob.Errors) != 1 {
		t.Fatalf("bob got %d errors for his message to mallory, want 1: %+v", len(bob.Errors), bob.Errors)
	}
	if e := bob.Errors[0]; e.From != "mallory@localhost" || e.Type != "cancel" || !slices.Equal(e.Conditions, []string{"not-acceptable"}) ||
		!slices.Equal(e.App, []string{"{urn:xmpp:blocking:errors}blocked"}) {
		t.Errorf("bob's error %+v, want cancel/not-acceptable with {urn:xmpp:blocking:errors}blocked from mallory@localhost", e)
	}
	for _, b := range received(t, es, "mallory_after_send").Bodies {
		if strings.Contains(b, "to blocked") {
			t.Errorf("mallory got bob's message %q", b)
		}
	}
	for label, r := range iqReplies(t, es, "bob1") {
		if r.Type != "result" {
			t.Errorf("bob1's %s: %+v", label, r)
		}
	}
	var after blockList
	es.one(t, "blocklist", "bob1_after").decode(t, &after)
	if len(after.JIDs) != 0 {
		t.Errorf("block list after unblock: %v", after.JIDs)
	}
	p.stop(t)
}
