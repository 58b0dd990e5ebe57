package e2e

import (
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"testing"
	"time"
)

// TestPushFederation (issue 17): XEP-0357 push notifications from the
// example server to a real app server on another domain. Prosody's
// pubsub component (pubsub.prosody.test, from Debian, set up as in the
// federation test) stands for the app server; a slixmpp client on
// Prosody subscribes to the push node and sees what is published there.
// alice on Treff enables push with the XEP-0357 IQ (slixmpp 1.8.3 has no
// XEP-0357 plugin). Then:
//
//   - offline: alice logs out, bob writes to her: the notification,
//     published from alice's bare JID over server-to-server streams,
//     reaches the subscriber, with the summary form (one message, bob as
//     the sender, no body: push_body is off by default);
//   - hibernating: alice logs in with resumable stream management and
//     loses her connection; once the server says her session hibernates,
//     bob writes again and the subscriber sees a second notification.
//     That the first was answered by Prosody (a result) lets the second
//     through at once, whatever the rate limit.
func TestPushFederation(t *testing.T) {
	needFederation(t)
	f := newFederation(t)
	// The subscriber administers the service, so that it may create the
	// node (open to any publisher); items name their publisher.
	f.prosodyExtra = fmt.Sprintf("Component %q %q\n\tadmins = { %q }\n\texpose_publisher = true",
		fedProsodyPubsub, "pubsub", "watcher@"+fedProsody)
	f.startProsody(t, "watcher")
	p := f.startTreff(t, "alice", "bob")

	script, err := filepath.Abs(filepath.Join("clients", "push.py"))
	if err != nil {
		t.Fatal(err)
	}
	const node = "treff-e2e-push-node"
	run := func(scenario, body string) events {
		t.Helper()
		return runClient(t, "push.py "+scenario, pythonEnv(), python, script,
			"--cert", f.clientCAs, "--timeout", fmt.Sprint(fedScriptTimeout.Seconds()),
			"--wait", fmt.Sprint(fedWait.Seconds()), "--body", body,
			"--password", fedPassword,
			"--alice-jid", "alice@"+fedTreff, "--bob-jid", "bob@"+fedTreff, "--watcher-jid", "watcher@"+fedProsody,
			"--treff-addr", fedAddr[fedTreff]+":5222", "--prosody-addr", fedAddr[fedProsody]+":5222",
			"--service", fedProsodyPubsub, "--node", node, scenario)
	}
	type notification struct {
		Node      string            `json:"node"`
		Fields    map[string]string `json:"fields"`
		Publisher string            `json:"publisher"`
	}
	checkNotification := func(es events, what string) {
		t.Helper()
		var n notification
		es.one(t, "notification", "watcher").decode(t, &n)
		want := map[string]string{
			"FORM_TYPE":           "urn:xmpp:push:summary",
			"message-count":       "1",
			"last-message-sender": "bob@" + fedTreff,
		}
		if n.Publisher != "alice@"+fedTreff {
			t.Errorf("%s: published by %q, want alice's bare JID", what, n.Publisher)
		}
		if n.Node != node {
			t.Errorf("%s: notification on node %q, want %q", what, n.Node, node)
		}
		for k, v := range want {
			if n.Fields[k] != v {
				t.Errorf("%s: field %s = %q, want %q (fields %v)", what, k, n.Fields[k], v, n.Fields)
			}
		}
		if _, ok := n.Fields["last-message-body"]; ok {
			t.Errorf("%s: the body was sent with push_body off: %v", what, n.Fields)
		}
	}
	checkEnabled := func(es events) {
		t.Helper()
		var feats struct {
			Features []string `json:"features"`
		}
		es.one(t, "account_features", "alice").decode(t, &feats)
		if !slices.Contains(feats.Features, "urn:xmpp:push:0") {
			t.Errorf("alice's account disco#info without urn:xmpp:push:0: %v", feats.Features)
		}
		if e := es.one(t, "push_enabled", "alice"); e.Type != "result" {
			t.Fatalf("enabling push: %s %+v", e.Type, e.Error)
		}
	}

	t.Run("Offline", func(t *testing.T) {
		es := run("offline", "while you were away")
		checkEnabled(es)
		checkNotification(es, "offline")
	})

	t.Run("Hibernating", func(t *testing.T) {
		checkEnabled(run("arm", ""))
		// The server notices the lost connection on its own; it logs the
		// hibernation (at debug level), the only sign of it.
		hib := regexp.MustCompile(`session hibernating.*alice@` + regexp.QuoteMeta(fedTreff))
		for deadline := time.Now().Add(10 * time.Second); !hib.MatchString(p.logs.String()); {
			if time.Now().After(deadline) {
				t.Fatalf("alice's session did not hibernate within 10s")
			}
			time.Sleep(50 * time.Millisecond)
		}
		checkNotification(run("wake", "while your phone sleeps"), "hibernating")
	})
}
