package e2e

import (
	"slices"
	"strings"
	"testing"

	"github.com/treff-im/treff"
)

const (
	alicePW = "alice s3cret pässword"
	bobPW   = "bob-pw"
)

// checkChat asserts the outcome of the "chat" scenario: both logged in
// with wantMech (if not empty) over the expected kind of TLS, and bob got
// alice's message once, from her exact full JID, with the body intact.
func checkChat(t *testing.T, s *server, es events, body, wantMech string, directTLS bool) {
	t.Helper()
	alice := es.one(t, "login", "alice")
	bob := es.one(t, "login", "bob")
	for _, l := range []event{alice, bob} {
		if wantMech != "" {
			if l.Mech != wantMech {
				t.Errorf("%s: slixmpp used %s, want %s", l.Client, l.Mech, wantMech)
			}
			if !slices.Equal(l.SentMechs, []string{wantMech}) {
				t.Errorf("%s: <auth mechanism=...> sent: %q, want only %s", l.Client, l.SentMechs, wantMech)
			}
		}
		if !strings.HasPrefix(l.TLS, "TLSv1.") {
			t.Errorf("%s: session not over TLS: %q", l.Client, l.TLS)
		}
		if l.StartTLS == directTLS {
			t.Errorf("%s: STARTTLS negotiated = %v with direct TLS = %v", l.Client, l.StartTLS, directTLS)
		}
		// The server's own record of the mechanism.
		user := strings.SplitN(l.JID, "/", 2)[0]
		if recs := s.logs.waitFor(1, "authenticated", "user", user); len(recs) != 1 || recs[0].Attrs["mechanism"] != l.Mech {
			t.Errorf("%s: server logged %+v, want one login with mechanism %s", l.Client, recs, l.Mech)
		}
	}
	if !strings.HasPrefix(alice.JID, "alice@localhost/") || !strings.HasPrefix(bob.JID, "bob@localhost/") {
		t.Fatalf("bound JIDs %q and %q", alice.JID, bob.JID)
	}
	msgs := es.of("message", "bob")
	if len(msgs) != 1 {
		t.Fatalf("bob got %d messages, want 1: %+v", len(msgs), msgs)
	}
	m := msgs[0]
	if m.From != alice.JID {
		t.Errorf("from = %q, want alice's full JID %q", m.From, alice.JID)
	}
	if m.Body != body {
		t.Errorf("body = %q, want %q", m.Body, body)
	}
	if m.Type != "chat" || m.To != "bob@localhost" {
		t.Errorf("type = %q, to = %q; want chat to bob@localhost", m.Type, m.To)
	}
	if n := len(es.of("message", "alice")); n != 0 {
		t.Errorf("alice got %d messages (errors?), want none: %+v", n, es.of("message", "alice"))
	}
}

// TestChatSTARTTLS logs alice and bob in over STARTTLS with each SASL
// mechanism forced in turn and has alice send bob's bare JID a message.
func TestChatSTARTTLS(t *testing.T) {
	t.Parallel()
	for _, mech := range []string{"SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"} {
		t.Run(mech, func(t *testing.T) {
			t.Parallel()
			s := newServer(t)
			s.AddUser(t, "alice", alicePW)
			s.AddUser(t, "bob", bobPW)
			body := uniqueBody(mech)
			es := s.slix(t, "chat", "--mech", mech,
				"--jid", "alice@localhost", "--password", alicePW,
				"--peer", "bob@localhost", "--peer-password", bobPW,
				"--body", body)
			checkChat(t, s, es, body, mech, false)
		})
	}
}

// TestChatDirectTLS is the same chat over direct TLS (XEP-0368), with the
// mechanism slixmpp picks by itself.
func TestChatDirectTLS(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	s.AddUser(t, "alice", alicePW)
	s.AddUser(t, "bob", bobPW)
	body := uniqueBody("direct")
	es := s.slix(t, "chat", "--addr", s.TLSAddr, "--direct-tls",
		"--jid", "alice@localhost", "--password", alicePW,
		"--peer", "bob@localhost", "--peer-password", bobPW,
		"--body", body)
	checkChat(t, s, es, body, "", true)
	if m := es.one(t, "login", "alice").Mech; m != "SCRAM-SHA-256" {
		t.Errorf("slixmpp chose %s; the server offers SCRAM-SHA-256 first and slixmpp prefers it", m)
	}
}

// TestWrongPassword checks that a wrong password is refused with
// <not-authorized/> and that the client may try again on the same stream.
// slixmpp retries with the next mechanism it has not tried; the test
// puts the right password in after the fourth failure. slixmpp 1.8 tries
// the -PLUS mechanisms first and can only bind with tls-unique, which the
// server does not offer: those two attempts fail too (before any
// password is checked), so the stream allows five here.
func TestWrongPassword(t *testing.T) {
	t.Parallel()
	t.Run("retry-on-same-stream", func(t *testing.T) {
		t.Parallel()
		s := newServer(t, func(s *treff.Server) { s.MaxAuthFailures = 5 })
		s.AddUser(t, "alice", alicePW)
		es := s.slix(t, "badauth", "--jid", "alice@localhost", "--password", "wrong password",
			"--right-password", alicePW, "--fail-times", "4")
		fails := es.of("failed_auth", "client")
		var mechs []string
		for _, f := range fails {
			mechs = append(mechs, f.Mech)
			if !slices.Equal(f.Conditions, []string{"not-authorized"}) {
				t.Errorf("%s: <failure/> holds %q, want [not-authorized]: %s", f.Mech, f.Conditions, f.XML)
			}
		}
		if !slices.Equal(mechs, []string{"SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1"}) {
			t.Errorf("failed attempts: %q, want the two -PLUS, then SCRAM-SHA-256 and SCRAM-SHA-1", mechs)
		}
		res := es.one(t, "auth_result", "client")
		if res.Outcome != "session" {
			t.Fatalf("no session after the retries: %+v", res)
		}
		login := es.one(t, "login", "client")
		if login.Mech != "PLAIN" || !slices.Equal(login.SentMechs, []string{"SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"}) {
			t.Errorf("logged in with %s after sending %q", login.Mech, login.SentMechs)
		}
		if login.Connects != 1 || login.Disconnects != 0 {
			t.Errorf("retries were not on one stream: %d connections, %d disconnects", login.Connects, login.Disconnects)
		}
		if n := len(s.logs.waitFor(4, "authentication failed", "cond", "not-authorized")); n != 4 {
			t.Errorf("server logged %d failed attempts, want 4", n)
		}
		if recs := s.logs.waitFor(1, "authenticated", "user", "alice@localhost"); len(recs) != 1 || recs[0].Attrs["mechanism"] != "PLAIN" {
			t.Errorf("server logged %+v, want one PLAIN login", recs)
		}
	})
	t.Run("unknown-account", func(t *testing.T) {
		t.Parallel()
		// An account that does not exist fails the same way (no user
		// enumeration), with every mechanism, and never logs in.
		s := newServer(t)
		s.AddUser(t, "alice", alicePW)
		es := s.slix(t, "badauth", "--jid", "nobody@localhost", "--password", "whatever", "--fail-times", "99")
		fails := es.of("failed_auth", "client")
		if len(fails) != 3 {
			t.Errorf("%d failures, want 3 (one per mechanism): %+v", len(fails), fails)
		}
		for _, f := range fails {
			if !slices.Equal(f.Conditions, []string{"not-authorized"}) {
				t.Errorf("%s: <failure/> holds %q, want [not-authorized]: %s", f.Mech, f.Conditions, f.XML)
			}
		}
		if res := es.one(t, "auth_result", "client"); res.Outcome == "session" {
			t.Errorf("an unknown account logged in: %+v", res)
		}
		if n := len(es.of("login", "client")); n != 0 {
			t.Errorf("login events for an unknown account: %d", n)
		}
	})
}

// TestMessageToUnknownAccount: a message to a local account that does not
// exist comes back as an error from that address (RFC 6121 8.5.1).
func TestMessageToUnknownAccount(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	s.AddUser(t, "alice", alicePW)
	body := uniqueBody("nobody")
	es := s.slix(t, "send", "--jid", "alice@localhost", "--password", alicePW,
		"--to", "nobody@localhost", "--body", body, "--expect-reply")
	alice := es.one(t, "login", "alice")
	msgs := es.of("message", "alice")
	if len(msgs) != 1 {
		t.Fatalf("alice got %d messages, want one error: %+v", len(msgs), msgs)
	}
	m := msgs[0]
	if m.Type != "error" || m.From != "nobody@localhost" || m.To != alice.JID {
		t.Errorf("got type=%q from=%q to=%q; want an error from nobody@localhost to %s", m.Type, m.From, m.To, alice.JID)
	}
	if m.Error == nil || !slices.Equal(m.Error.Conditions, []string{"service-unavailable"}) || m.Error.Type != "cancel" {
		t.Errorf("error = %+v, want <service-unavailable/> of type cancel", m.Error)
	}
}

// TestIQUnknownNamespace: an IQ get in a namespace nobody handles is
// answered with <service-unavailable/> from the addressee (RFC 6120
// 8.3.3.19, RFC 6121 8.5.2.1.3): the server, the sender's own account, or
// another local account.
func TestIQUnknownNamespace(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	s.AddUser(t, "alice", alicePW)
	s.AddUser(t, "bob", bobPW)
	es := s.slix(t, "iq", "--jid", "alice@localhost", "--password", alicePW,
		"--iq-to", "localhost", "--iq-to", "alice@localhost", "--iq-to", "bob@localhost", "--iq-to", "")
	alice := es.one(t, "login", "alice")
	iqs := es.of("iq", "alice")
	if len(iqs) != 4 {
		t.Fatalf("%d IQ responses, want 4", len(iqs))
	}
	for _, r := range iqs {
		to := *r.SentTo
		if r.Type != "error" || r.Error == nil || !slices.Equal(r.Error.Conditions, []string{"service-unavailable"}) || r.Error.Type != "cancel" {
			t.Errorf("to %q: got type=%q error=%+v; want <service-unavailable/> of type cancel", to, r.Type, r.Error)
		}
		if r.To != alice.JID {
			t.Errorf("to %q: response addressed to %q, want %q", to, r.To, alice.JID)
		}
		wantFrom := []string{to}
		if to == "" {
			// Handled on behalf of the account (RFC 6120 10.3.3): no from, or the server or account.
			wantFrom = []string{"", "localhost", "alice@localhost"}
		}
		if !slices.Contains(wantFrom, r.From) {
			t.Errorf("to %q: response from %q, want one of %q", to, r.From, wantFrom)
		}
	}
}

// routeCase is a run of the "route" scenario: sessions of alice, then bob
// sends one chat message to alice's bare JID and one to each full JID.
type routeCase struct {
	name     string
	sessions []string        // RESOURCE=PRESENCES, see route() in clients/slix.py
	bare     map[string]bool // who gets the bare-JID message
	bounced  bool            // bob gets <service-unavailable/> from alice@localhost
}

func (tc routeCase) run(t *testing.T) { tc.runOn(t, newServer(t)) }

// runOn runs the case on s, which has no accounts yet.
func (tc routeCase) runOn(t *testing.T, s *server) {
	s.AddUser(t, "alice", alicePW)
	s.AddUser(t, "bob", bobPW)
	body := uniqueBody(tc.name)
	args := []string{"--jid", "alice@localhost", "--password", alicePW,
		"--peer", "bob@localhost", "--peer-password", bobPW, "--body", body}
	for _, ses := range tc.sessions {
		args = append(args, "--session", ses)
	}
	es := s.slix(t, "route", args...)
	for _, ses := range tc.sessions {
		res, _, _ := strings.Cut(ses, "=")
		r := es.one(t, "received", res)
		if r.JID != "alice@localhost/"+res {
			t.Errorf("session %s bound %q", res, r.JID)
		}
		want := []string{"full " + res + " " + body}
		if tc.bare[res] {
			want = append([]string{"bare " + body}, want...)
		}
		if !slices.Equal(r.Bodies, want) {
			t.Errorf("%s (presences %s) got %q, want %q", res, ses, r.Bodies, want)
		}
	}
	snd := es.one(t, "received", "sender")
	if len(snd.Bodies) != 0 {
		t.Errorf("sender got messages %q, want none", snd.Bodies)
	}
	switch {
	case tc.bounced:
		if len(snd.Errors) != 1 || snd.Errors[0].From != "alice@localhost" ||
			!slices.Equal(snd.Errors[0].Conditions, []string{"service-unavailable"}) {
			t.Errorf("sender got errors %+v, want one <service-unavailable/> from alice@localhost", snd.Errors)
		}
	case len(snd.Errors) != 0:
		t.Errorf("sender got errors %+v, want none", snd.Errors)
	}
}

// TestBareJIDRouting checks RFC 6121 8.5.2.1.1 with several sessions of
// one account: a chat message to the bare JID goes to the available
// resources of highest non-negative priority (all of them if they tie),
// never to one with negative priority or without available presence; and
// every resource gets the messages sent to its full JID (8.5.3.1).
func TestBareJIDRouting(t *testing.T) {
	t.Parallel()
	for _, tc := range []routeCase{
		{"higher-priority-only", []string{"high=5", "low=1"}, map[string]bool{"high": true}, false},
		{"equal-priority-both", []string{"one=1", "two=1"}, map[string]bool{"one": true, "two": true}, false},
		{"negative-never", []string{"zero=0", "negative=-1"}, map[string]bool{"zero": true}, false},
		// No resource qualifies and there is no offline storage: an error.
		{"only-negative", []string{"negative=-5"}, map[string]bool{}, true},
		{"no-presence-never", []string{"present=0", "silent=none"}, map[string]bool{"present": true}, false},
		// The last presence counts.
		{"priority-lowered", []string{"was-high=5,-1", "low=1"}, map[string]bool{"low": true}, false},
		{"went-unavailable", []string{"gone=5,unavailable", "low=1"}, map[string]bool{"low": true}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t)
		})
	}
}

// TestPriorityIgnoresForeignElements: the priority of a presence is its
// <priority/> child in jabber:client (RFC 6121 4.7.2.3), not an element
// of that name inside an extension. Here the negative-priority session's
// presence carries <info xmlns='urn:treff:e2e:decoy'><priority>100</priority></info>
// before its real <priority>-1</priority>; it must still get no bare-JID
// messages, and the priority-0 session must get them.
func TestPriorityIgnoresForeignElements(t *testing.T) {
	t.Parallel()
	routeCase{"decoy", []string{"zero=0", "negative=-1+decoy"}, map[string]bool{"zero": true}, false}.run(t)
}

// TestResourceConflict: a second login with the same resource replaces
// the first, whose stream ends with a <conflict/> stream error
// (RFC 6120 7.7.2.2, the server's documented policy).
func TestResourceConflict(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	s.AddUser(t, "alice", alicePW)
	body := uniqueBody("conflict")
	es := s.slix(t, "conflict", "--jid", "alice@localhost/dup", "--password", alicePW, "--body", body)
	r := es.one(t, "conflict_result", "")
	if r.FirstJID != "alice@localhost/dup" || r.SecondJID != "alice@localhost/dup" {
		t.Errorf("bound %q then %q, want alice@localhost/dup twice", r.FirstJID, r.SecondJID)
	}
	if len(r.FirstStreamErrors) != 1 || !slices.Equal(r.FirstStreamErrors[0].Conditions, []string{"conflict"}) {
		t.Errorf("first session's stream errors: %+v, want one <conflict/>", r.FirstStreamErrors)
	}
	if r.FirstDisconnects != 1 || r.FirstConnects != 1 {
		t.Errorf("first session: %d connections, %d disconnects; want 1 and 1", r.FirstConnects, r.FirstDisconnects)
	}
	if r.FirstMessages != 0 {
		t.Errorf("the replaced session got %d messages", r.FirstMessages)
	}
	if n := len(es.of("stream_error", "second")); n != 0 {
		t.Errorf("the new session got %d stream errors", n)
	}
}
