package s2s_test

import (
	"crypto/tls"
	"fmt"
	"net"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/treff-im/treff/muc"
	"github.com/treff-im/treff/trefftest"
)

// chat is a chat message as a client sends it.
func chat(to, id, body string) string {
	return "<message to='" + to + "' type='chat' id='" + id + "'><body>" + body + "</body></message>"
}

// chatFrom is the same message as its recipient gets it.
func chatFrom(from, to, id, body string) string {
	return "<message from='" + from + "' to='" + to + "' type='chat' id='" + id + "'><body>" + body + "</body></message>"
}

// stanzaError is the error a sender gets back (treff.AppendError's form).
func stanzaError(kind, id, to, from, typ, cond string) string {
	return "<" + kind + " type='error' id='" + id + "' to='" + to + "' from='" + from + "'><error type='" + typ + "'><" + cond + " xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></" + kind + ">"
}

// exchange has alice@a.test and bob@b.test write to each other, to full
// and bare JIDs, and checks what each receives.
func exchange(t *testing.T, f *federation) {
	t.Helper()
	a, b := f.node("a.test"), f.node("b.test")
	a.addUser(t, "alice")
	b.addUser(t, "bob")
	alice := a.online(t, "alice", "r")
	bob := b.online(t, "bob", "r")
	alice.Send(chat("bob@b.test/r", "m1", "hello bob"))
	want(t, bob, chatFrom("alice@a.test/r", "bob@b.test/r", "m1", "hello bob"))
	bob.Send(chat("alice@a.test", "m2", "hello alice"))
	want(t, alice, chatFrom("bob@b.test/r", "alice@a.test", "m2", "hello alice"))
	alice.Send(chat("bob@b.test", "m3", "again &amp; &lt;again&gt;"))
	want(t, bob, chatFrom("alice@a.test/r", "bob@b.test", "m3", "again &amp; &lt;again&gt;"))
}

// checkMethod checks that both servers logged both directions of their
// stream pair as authenticated by method.
func checkMethod(t *testing.T, f *federation, method string) {
	t.Helper()
	a, b := f.node("a.test"), f.node("b.test")
	a.waitAuthenticated(t, "out", "b.test", method)
	a.waitAuthenticated(t, "in", "b.test", method)
	b.waitAuthenticated(t, "out", "a.test", method)
	b.waitAuthenticated(t, "in", "a.test", method)
}

// Both servers trust the CA that signed their certificates: SASL EXTERNAL
// both ways.
func TestCertificatePath(t *testing.T) {
	f := newFederation(t, viaCA, "a.test", "b.test")
	f.start()
	exchange(t, f)
	checkMethod(t, f, "external")
}

// Self-signed certificates nobody trusts: dialback both ways.
func TestDialbackPath(t *testing.T) {
	f := newFederation(t, viaDialback, "a.test", "b.test")
	f.start()
	exchange(t, f)
	checkMethod(t, f, "dialback")
}

// Self-signed certificates accepted by configuration: SASL EXTERNAL.
func TestAcceptSelfSigned(t *testing.T) {
	f := newFederation(t, viaSelfSigned, "a.test", "b.test")
	f.start()
	exchange(t, f)
	checkMethod(t, f, "external")
}

// Without dialback and without trusted certificates no stream can be
// authenticated: the sender gets an error, the recipient nothing.
func TestNoDialbackUntrusted(t *testing.T) {
	f := newFederation(t, viaDialback, "a.test", "b.test")
	for _, n := range f.Nodes {
		n.S2S.NoDialback = true
		n.S2S.ConnectTimeout = 3 * time.Second
	}
	f.start()
	a, b := f.node("a.test"), f.node("b.test")
	a.addUser(t, "alice")
	b.addUser(t, "bob")
	alice := a.online(t, "alice", "r")
	bob := b.online(t, "bob", "r")
	alice.Send(chat("bob@b.test/r", "m1", "let me in"))
	got := next(alice)
	t.Logf("error: %s", got)
	notFound := stanzaError("message", "m1", "alice@a.test/r", "bob@b.test/r", "cancel", "remote-server-not-found")
	timeout := stanzaError("message", "m1", "alice@a.test/r", "bob@b.test/r", "wait", "remote-server-timeout")
	if c := canon(t, got); c != canon(t, notFound) && c != canon(t, timeout) {
		t.Errorf("got %s, want remote-server-not-found or remote-server-timeout", got)
	}
	// Once a.test's stream into b.test has ended, b.test has handled all
	// it will get on it.
	if !waitFor(5*time.Second, func() bool { return b.s2sL.open.Load() == 0 }) {
		t.Errorf("a.test's stream into b.test still open after 5s")
	}
	quiet(t, bob, "b.test", 0)
	if m := b.authenticated("in", "a.test"); len(m) > 0 {
		t.Errorf("b.test authenticated a.test by %v", m)
	}
}

// An unreachable domain: a closed port is remote-server-not-found at
// once, an address that accepts but never answers remote-server-timeout
// after ConnectTimeout; every queued stanza gets its error; errors get
// none.
func TestUnreachable(t *testing.T) {
	f := newFederation(t, viaCA, "a.test")
	closed := listen(t)
	closedAddr := closed.Addr().String()
	closed.Close()
	hole := silentPeer(t)
	a := f.node("a.test")
	a.S2S.Resolve = map[string]string{"down.test": closedAddr, "slow.test": hole.Addr().String()}
	a.S2S.ConnectTimeout = time.Second
	f.start()
	a.addUser(t, "alice")
	alice := a.online(t, "alice", "r")

	// Closed port: three queued stanzas, three errors.
	alice.Send(chat("x@down.test", "d1", "secret-body") + chat("y@down.test/r", "d2", "secret-body") +
		"<iq type='get' id='d3' to='down.test'><ping xmlns='urn:xmpp:ping'/></iq>")
	// The three may fail on one connection attempt or on two (the first
	// can fail before the others are queued): any order.
	wantSet(t, alice,
		stanzaError("message", "d1", "alice@a.test/r", "x@down.test", "cancel", "remote-server-not-found"),
		stanzaError("message", "d2", "alice@a.test/r", "y@down.test/r", "cancel", "remote-server-not-found"),
		stanzaError("iq", "d3", "alice@a.test/r", "down.test", "cancel", "remote-server-not-found"))
	// (remote-server-not-found, not -timeout: the refusal was seen, the
	// connect timeout did not expire)

	// Silent peer: remote-server-timeout after about ConnectTimeout.
	start := time.Now()
	alice.Send(chat("x@slow.test", "s1", "secret-body") + chat("y@slow.test", "s2", "secret-body") +
		"<iq type='get' id='s3' to='slow.test'><ping xmlns='urn:xmpp:ping'/></iq>")
	wantSet(t, alice,
		stanzaError("message", "s1", "alice@a.test/r", "x@slow.test", "wait", "remote-server-timeout"),
		stanzaError("message", "s2", "alice@a.test/r", "y@slow.test", "wait", "remote-server-timeout"),
		stanzaError("iq", "s3", "alice@a.test/r", "slow.test", "wait", "remote-server-timeout"))
	// Not before ConnectTimeout (a timer cannot fire early); a slow
	// machine may take longer.
	if d := time.Since(start); d < time.Second {
		t.Errorf("remote-server-timeout after %v, before ConnectTimeout (1s)", d)
	}

	// Errors to unreachable domains are dropped, not answered.
	alice.Send("<message type='error' id='e1' to='x@slow.test'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>")
	alice.Send("<message type='error' id='e2' to='x@down.test'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>")
	alice.Send("<iq type='error' id='e3' to='down.test'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>")
	// An answer, if there were one, would come after a connection attempt
	// to slow.test had failed, ConnectTimeout (1s) later; nothing signals
	// that an error was dropped, so wait past that. A slow machine only
	// makes the check weaker, never fail.
	quiet(t, alice, "a.test", 1500*time.Millisecond)

	// Logged: who, whom, why; never the content.
	recs := a.logRecords("stanza not delivered")
	found := map[string]bool{}
	for _, r := range recs {
		found[fmt.Sprint(r["from"], " ", r["to"], " ", r["kind"], " ", r["why"])] = true
	}
	for _, w := range []string{
		"alice@a.test/r x@down.test message remote-server-not-found",
		"alice@a.test/r down.test iq remote-server-not-found",
		"alice@a.test/r x@slow.test message remote-server-timeout",
	} {
		if !found[w] {
			t.Errorf("no log of an undelivered stanza %q; logged: %v", w, found)
		}
	}
	if strings.Contains(a.Logs.String(), "secret-body") {
		t.Error("message content in the logs")
	}
	// Nor any IP address: failures are described in words.
	if strings.Contains(a.Logs.String(), "127.0.0.1") {
		t.Errorf("an IP address in the logs:\n%s", a.Logs)
	}
}

// Fifty messages sent before the stream is up arrive in order over one
// stream per direction, which later messages reuse.
func TestQueueOrderAndStreamReuse(t *testing.T) {
	for _, m := range []mode{viaCA, viaDialback} {
		t.Run(m.String(), func(t *testing.T) {
			f := newFederation(t, m, "a.test", "b.test")
			f.start()
			a, b := f.node("a.test"), f.node("b.test")
			a.addUser(t, "alice")
			b.addUser(t, "bob")
			alice := a.login(t, "alice", "r")
			bob := b.login(t, "bob", "r")
			burst := func(from, to *trefftest.Client, toJID, fromJID, prefix string) {
				t.Helper()
				var sb strings.Builder
				for i := range 50 {
					sb.WriteString(chat(toJID, fmt.Sprintf("%s%d", prefix, i), fmt.Sprintf("n%d", i)))
				}
				from.Send(sb.String())
				for i := range 50 {
					wantNext(t, to, chatFrom(fromJID, toJID, fmt.Sprintf("%s%d", prefix, i), fmt.Sprintf("n%d", i)))
				}
			}
			burst(alice, bob, "bob@b.test/r", "alice@a.test/r", "ab")
			burst(bob, alice, "alice@a.test/r", "bob@b.test/r", "ba")
			// Both ways delivered: each server has its outgoing stream
			// up and the other's incoming one authenticated.
			for _, n := range []*node{a, b} {
				if st := n.S2S.Stats(); st.OutReady != 1 || st.OutConnecting != 0 || st.InAuthenticated != 1 || st.QueueDrops != 0 {
					t.Errorf("%s: Stats() = %+v, want one stream each way, up", n.Domain, st)
				}
			}
			inB, inA := b.s2sL.accepted.Load(), a.s2sL.accepted.Load()
			t.Logf("connections accepted: a.test %d, b.test %d", inA, inB)
			max := int32(1)
			if m == viaDialback {
				max = 2 // the stream and a dialback verification
			}
			if inB < 1 || inB > max || inA < 1 || inA > max {
				t.Errorf("accepted connections: a.test %d, b.test %d; want 1..%d each", inA, inB, max)
			}
			// Once up, the streams are reused.
			burst(alice, bob, "bob@b.test/r", "alice@a.test/r", "ab2-")
			burst(bob, alice, "alice@a.test/r", "bob@b.test/r", "ba2-")
			if b.s2sL.accepted.Load() != inB || a.s2sL.accepted.Load() != inA {
				t.Errorf("new connections for the second burst: a.test %d→%d, b.test %d→%d",
					inA, a.s2sL.accepted.Load(), inB, b.s2sL.accepted.Load())
			}
		})
	}
}

// An idle outgoing stream is closed; the next stanza opens a new one.
func TestIdleClose(t *testing.T) {
	f := newFederation(t, viaCA, "a.test", "b.test")
	f.node("a.test").S2S.IdleTimeout = 300 * time.Millisecond
	f.start()
	a, b := f.node("a.test"), f.node("b.test")
	a.addUser(t, "alice")
	b.addUser(t, "bob")
	alice := a.login(t, "alice", "r")
	bob := b.login(t, "bob", "r")
	// start is taken before the stanza is sent, so the stream's last
	// activity is after it and the close cannot come before
	// start+IdleTimeout, however slow the machine is.
	start := time.Now()
	alice.Send(chat("bob@b.test/r", "m1", "one"))
	wantNext(t, bob, chatFrom("alice@a.test/r", "bob@b.test/r", "m1", "one"))
	if n := b.s2sL.accepted.Load(); n != 1 {
		t.Fatalf("b.test accepted %d connections, want 1", n)
	}
	if !waitFor(20*time.Second, func() bool { return b.s2sL.open.Load() == 0 }) {
		t.Fatalf("a.test's idle stream still open after 20s (IdleTimeout 300ms)")
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("stream closed %v after the last stanza, before IdleTimeout", d)
	}
	alice.Send(chat("bob@b.test/r", "m2", "two"))
	wantNext(t, bob, chatFrom("alice@a.test/r", "bob@b.test/r", "m2", "two"))
	if n := b.s2sL.accepted.Load(); n != 2 {
		t.Errorf("b.test accepted %d connections, want 2 (a new stream after the idle close)", n)
	}
}

func getRoster(c *trefftest.Client) {
	c.Send("<iq type='get' id='roster'><query xmlns='jabber:iq:roster'/></iq>")
	c.Expect(`<iq type='result' id='roster'.*?</iq>`)
}

func rosterPush(c *trefftest.Client, item string) {
	c.Expect(`<iq [^>]*type='set'[^>]*><query xmlns='jabber:iq:roster'[^>]*>` + item + `</query></iq>`)
}

// Subscriptions and presence between users of two servers (RFC 6121).
func TestPresenceAcrossServers(t *testing.T) {
	f := newFederation(t, viaCA, "a.test", "b.test")
	f.start()
	a, b := f.node("a.test"), f.node("b.test")
	a.addUser(t, "alice")
	b.addUser(t, "bob")
	alice := a.online(t, "alice", "r")
	bob := b.online(t, "bob", "r")
	getRoster(alice) // roster pushes go to interested resources
	getRoster(bob)

	// alice asks, bob approves.
	alice.Send("<presence to='bob@b.test' type='subscribe'/>")
	rosterPush(alice, `<item jid='bob@b.test' subscription='none' ask='subscribe'/>`)
	want(t, bob, "<presence from='alice@a.test' to='bob@b.test/r' type='subscribe'/>")
	bob.Send("<presence to='alice@a.test' type='subscribed'/>")
	rosterPush(bob, `<item jid='alice@a.test' subscription='from'/>`)
	rosterPush(alice, `<item jid='bob@b.test' subscription='to'/>`)
	want(t, alice, "<presence from='bob@b.test' to='alice@a.test/r' type='subscribed'/>")
	want(t, alice, "<presence from='bob@b.test/r' to='alice@a.test'/>")

	// bob asks back, alice approves: both.
	bob.Send("<presence to='alice@a.test' type='subscribe'/>")
	want(t, alice, "<presence from='bob@b.test' to='alice@a.test/r' type='subscribe'/>")
	alice.Send("<presence to='bob@b.test' type='subscribed'/>")
	rosterPush(alice, `<item jid='bob@b.test' subscription='both'/>`)
	rosterPush(bob, `<item jid='alice@a.test' subscription='both'/>`)
	want(t, bob, "<presence from='alice@a.test/r' to='bob@b.test'/>")

	// Status changes cross.
	bob.Send("<presence><status>lunch</status></presence>")
	want(t, alice, "<presence from='bob@b.test/r' to='alice@a.test'><status>lunch</status></presence>")
	alice.Send("<presence><show>away</show></presence>")
	want(t, bob, "<presence from='alice@a.test/r' to='bob@b.test'><show>away</show></presence>")

	// alice logs out: bob sees her go.
	alice.Send("<presence type='unavailable'/>")
	want(t, bob, "<presence from='alice@a.test/r' to='bob@b.test' type='unavailable'/>")
	alice.Conn().Close()

	// bob changes status while alice is away; on her return her server's
	// probe brings bob's current presence.
	bob.Send("<presence><show>dnd</show></presence>")
	bob.Sync() // b.test has taken the new presence before alice's probe
	alice2 := a.login(t, "alice", "r2")
	alice2.Send("<presence/>")
	want(t, alice2, "<presence from='bob@b.test/r' to='alice@a.test/r2'><show>dnd</show></presence>")
	want(t, bob, "<presence from='alice@a.test/r2' to='bob@b.test'/>")

	// bob's connection drops: alice sees him unavailable.
	bob.Conn().Close()
	want(t, alice2, "<presence from='bob@b.test/r' to='alice@a.test' type='unavailable'/>")
}

// IQs across servers: to the remote server, to a remote client and back,
// and to an account that does not exist.
func TestIQAcrossServers(t *testing.T) {
	f := newFederation(t, viaCA, "a.test", "b.test")
	f.start()
	a, b := f.node("a.test"), f.node("b.test")
	a.addUser(t, "alice")
	b.addUser(t, "bob")
	alice := a.login(t, "alice", "r")
	bob := b.login(t, "bob", "r")

	alice.Send("<iq type='get' id='p1' to='b.test'><ping xmlns='urn:xmpp:ping'/></iq>")
	wantNext(t, alice, "<iq type='result' id='p1' from='b.test' to='alice@a.test/r'/>")

	alice.Send("<iq type='get' id='d1' to='bob@b.test/r'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
	wantNext(t, bob, "<iq type='get' id='d1' from='alice@a.test/r' to='bob@b.test/r'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
	bob.Send("<iq type='result' id='d1' to='alice@a.test/r'><query xmlns='http://jabber.org/protocol/disco#info'><identity category='client' type='pc'/></query></iq>")
	wantNext(t, alice, "<iq type='result' id='d1' from='bob@b.test/r' to='alice@a.test/r'><query xmlns='http://jabber.org/protocol/disco#info'><identity category='client' type='pc'/></query></iq>")

	// bob pings alice's client the other way.
	bob.Send("<iq type='get' id='p2' to='alice@a.test/r'><ping xmlns='urn:xmpp:ping'/></iq>")
	wantNext(t, alice, "<iq type='get' id='p2' from='bob@b.test/r' to='alice@a.test/r'><ping xmlns='urn:xmpp:ping'/></iq>")
	alice.Send("<iq type='result' id='p2' to='bob@b.test/r'/>")
	wantNext(t, bob, "<iq type='result' id='p2' from='alice@a.test/r' to='bob@b.test/r'/>")

	// No such account on b.test.
	alice.Send("<iq type='get' id='n1' to='nobody@b.test'><ping xmlns='urn:xmpp:ping'/></iq>")
	wantNext(t, alice, stanzaError("iq", "n1", "alice@a.test/r", "nobody@b.test", "cancel", "service-unavailable"))
	alice.Send(chat("nobody@b.test", "n2", "anyone?"))
	wantNext(t, alice, stanzaError("message", "n2", "alice@a.test/r", "nobody@b.test", "cancel", "service-unavailable"))
	// An error to a missing account is dropped there, not answered.
	alice.Send("<message type='error' id='n3' to='nobody@b.test'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>")
	alice.Send("<iq type='error' id='n4' to='nobody@b.test/x'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>")
	// A ping to b.test takes the same streams after them: an answer to
	// n3 or n4 would come before its result.
	quiet(t, alice, "b.test", 0)
	quiet(t, bob, "b.test", 0)
}

// More stanzas than QueueLimit waiting for a stream: the surplus is
// answered with resource-constraint at once, the rest when the stream
// fails.
func TestQueueLimit(t *testing.T) {
	f := newFederation(t, viaCA, "a.test")
	hole := silentPeer(t)
	a := f.node("a.test")
	a.S2S.Resolve = map[string]string{"slow.test": hole.Addr().String()}
	a.S2S.ConnectTimeout = time.Second
	a.S2S.QueueLimit = 3
	f.start()
	a.addUser(t, "alice")
	alice := a.login(t, "alice", "r")
	var sb strings.Builder
	for i := range 5 {
		sb.WriteString(chat("x@slow.test", fmt.Sprint("q", i), "queued"))
	}
	alice.Send(sb.String())
	wantNext(t, alice, stanzaError("message", "q3", "alice@a.test/r", "x@slow.test", "wait", "resource-constraint"))
	wantNext(t, alice, stanzaError("message", "q4", "alice@a.test/r", "x@slow.test", "wait", "resource-constraint"))
	if st := a.S2S.Stats(); st.QueueDrops != 2 || st.OutReady != 0 {
		t.Errorf("Stats() = %+v, want 2 queue drops and no stream up", st)
	}
	for i := range 3 {
		wantNext(t, alice, stanzaError("message", fmt.Sprint("q", i), "alice@a.test/r", "x@slow.test", "wait", "remote-server-timeout"))
	}
}

// Group chat across servers: a user of b.test invited into a members-only
// room of conference.a.test joins and talks; users of b.test cannot
// create rooms there.
//
// With a certificate that names conference.a.test too, b.test accepts
// the service's stream by SASL EXTERNAL; with one for a.test only, by
// dialback (b.test asks conference.a.test's authoritative server).
// occupantIDRE matches an XEP-0421 occupant-id the group chat service
// puts in the stanzas it sends for an occupant.
var occupantIDRE = regexp.MustCompile(`<occupant-id xmlns='urn:xmpp:occupant-id:0' id='[^']+'/>`)

// wantMUC is want for a stanza from a room occupant: it must carry one
// occupant-id, and is compared without it.
func wantMUC(t testing.TB, c *trefftest.Client, expected string) {
	t.Helper()
	w := canon(t, expected)
	for i := 0; i < 1000; i++ {
		got := next(c)
		if canon(t, occupantIDRE.ReplaceAllString(got, "")) == w {
			if n := len(occupantIDRE.FindAllString(got, -1)); n != 1 {
				t.Errorf("%s carries %d occupant-ids, want 1", got, n)
			}
			return
		}
		t.Logf("skipped while waiting for %s: %s", expected, got)
	}
	t.Fatalf("never got %s", expected)
}

func TestGroupChatAcrossServers(t *testing.T) {
	t.Run("service in certificate", func(t *testing.T) { testGroupChat(t, true) })
	t.Run("service not in certificate", func(t *testing.T) { testGroupChat(t, false) })
}

func testGroupChat(t *testing.T, serviceInCert bool) {
	f := newFederation(t, viaCA, "a.test", "b.test")
	a, b := f.node("a.test"), f.node("b.test")
	a.Srv.Modules = append(a.Srv.Modules, &muc.Module{})
	method := "external"
	if !serviceInCert {
		a.Srv.Hosts[0].Certificates = []tls.Certificate{f.CA.issue(t, "a.test")}
		method = "dialback"
	}
	f.start()
	a.addUser(t, "alice")
	b.addUser(t, "bob")
	b.addUser(t, "carol")
	const room = "lobby@conference.a.test"
	alice := a.online(t, "alice", "r")
	bob := b.online(t, "bob", "r")

	alice.Send("<presence to='" + room + "/Alice'><x xmlns='http://jabber.org/protocol/muc'/></presence>")
	wantMUC(t, alice, "<presence from='"+room+"/Alice' to='alice@a.test/r'><x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='owner' jid='alice@a.test/r' role='moderator'/><status code='110'/><status code='201'/></x></presence>")
	alice.Send("<iq type='set' id='cfg' to='" + room + "'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'><field var='muc#roomconfig_membersonly'><value>1</value></field></x></query></iq>")
	want(t, alice, "<iq type='result' id='cfg' from='"+room+"' to='alice@a.test/r'/>")

	// Not a member yet.
	bob.Send("<presence to='" + room + "/Bob'><x xmlns='http://jabber.org/protocol/muc'/></presence>")
	got := bob.Expect(`<presence [^>]*type='error'.*?</presence>`)
	if !strings.Contains(got, "<registration-required") || !strings.Contains(got, "from='"+room+"/Bob'") {
		t.Errorf("join before the invitation: %s", got)
	}

	alice.Send("<message to='" + room + "'><x xmlns='http://jabber.org/protocol/muc#user'><invite to='bob@b.test'><reason>come in</reason></invite></x></message>")
	want(t, bob, "<message from='"+room+"' to='bob@b.test'><x xmlns='http://jabber.org/protocol/muc#user'><invite from='alice@a.test'><reason>come in</reason></invite></x></message>")
	bob.Send("<presence to='" + room + "/Bob'><x xmlns='http://jabber.org/protocol/muc'/></presence>")
	wantMUC(t, bob, "<presence from='"+room+"/Alice' to='bob@b.test/r'><x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='owner' role='moderator'/></x></presence>")
	wantMUC(t, bob, "<presence from='"+room+"/Bob' to='bob@b.test/r'><x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='member' jid='bob@b.test/r' role='participant'/><status code='110'/></x></presence>")
	want(t, bob, "<message type='groupchat' from='"+room+"' to='bob@b.test/r'><subject></subject></message>")
	wantMUC(t, alice, "<presence from='"+room+"/Bob' to='alice@a.test/r'><x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='member' jid='bob@b.test/r' role='participant'/></x></presence>")

	bob.Send("<message to='" + room + "' type='groupchat' id='g1'><body>hello from b</body></message>")
	wantMUC(t, alice, "<message from='"+room+"/Bob' to='alice@a.test/r' type='groupchat' id='g1'><body>hello from b</body></message>")
	wantMUC(t, bob, "<message from='"+room+"/Bob' to='bob@b.test/r' type='groupchat' id='g1'><body>hello from b</body></message>")
	alice.Send("<message to='" + room + "' type='groupchat' id='g2'><body>welcome</body></message>")
	wantMUC(t, bob, "<message from='"+room+"/Alice' to='bob@b.test/r' type='groupchat' id='g2'><body>welcome</body></message>")
	wantMUC(t, alice, "<message from='"+room+"/Alice' to='alice@a.test/r' type='groupchat' id='g2'><body>welcome</body></message>")

	// Private message from bob to alice through the room.
	bob.Send("<message to='" + room + "/Alice' type='chat' id='pm'><body>psst</body></message>")
	wantMUC(t, alice, "<message from='"+room+"/Bob' to='alice@a.test/r' type='chat' id='pm'><body>psst</body><x xmlns='http://jabber.org/protocol/muc#user'/></message>")

	// bob leaves; alice sees it.
	bob.Send("<presence to='" + room + "/Bob' type='unavailable'/>")
	wantMUC(t, bob, "<presence from='"+room+"/Bob' to='bob@b.test/r' type='unavailable'><x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='member' jid='bob@b.test/r' role='none'/><status code='110'/></x></presence>")
	wantMUC(t, alice, "<presence from='"+room+"/Bob' to='alice@a.test/r' type='unavailable'><x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='member' jid='bob@b.test/r' role='none'/></x></presence>")

	b.waitAuthenticated(t, "in", "conference.a.test", method)
	a.waitAuthenticated(t, "in", "b.test", "external")

	// A user of b.test cannot create a room on conference.a.test.
	carol := b.online(t, "carol", "r")
	carol.Send("<presence to='new@conference.a.test/Carol'><x xmlns='http://jabber.org/protocol/muc'/></presence>")
	got = carol.Expect(`<presence [^>]*type='error'.*?</presence>`)
	if !strings.Contains(got, "<not-allowed xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>") ||
		!strings.Contains(got, "only users of this server may create rooms") ||
		!strings.Contains(got, "from='new@conference.a.test/Carol'") {
		t.Errorf("room creation by a remote user: %s", got)
	}
}

// Shutdown closes the s2s streams and listeners; nothing is left running.
func TestShutdown(t *testing.T) {
	before, _ := goroutines()
	f := newFederation(t, viaDialback, "a.test", "b.test")
	f.start()
	a, b := f.node("a.test"), f.node("b.test")
	a.addUser(t, "alice")
	b.addUser(t, "bob")
	alice := a.login(t, "alice", "r")
	bob := b.login(t, "bob", "r")
	alice.Send(chat("bob@b.test/r", "m1", "one"))
	wantNext(t, bob, chatFrom("alice@a.test/r", "bob@b.test/r", "m1", "one"))
	bob.Send(chat("alice@a.test/r", "m2", "two"))
	wantNext(t, alice, chatFrom("bob@b.test/r", "alice@a.test/r", "m2", "two"))
	if b.s2sL.open.Load() == 0 || a.s2sL.open.Load() == 0 {
		t.Fatalf("no open s2s streams before shutdown (a.test %d, b.test %d)", a.s2sL.open.Load(), b.s2sL.open.Load())
	}

	// The clients stay connected: each server's Shutdown waits for them
	// to close their streams (c2s), about 2s, before stopping modules.
	start := time.Now()
	if err := a.shutdown(); err != nil {
		t.Fatalf("a.test: %v", err)
	}
	t.Logf("a.test shut down in %v", time.Since(start))
	// a.test's streams are gone on both ends.
	if !waitFor(5*time.Second, func() bool { return a.s2sL.open.Load() == 0 && b.s2sL.open.Load() == 0 }) {
		t.Errorf("after a.test's shutdown, streams still open: into a.test %d, into b.test %d", a.s2sL.open.Load(), b.s2sL.open.Load())
	}
	if _, err := net.DialTimeout("tcp", a.S2SAddr(), time.Second); err == nil {
		t.Error("a.test's s2s listener still accepts")
	}
	if err := b.shutdown(); err != nil {
		t.Fatalf("b.test: %v", err)
	}
	if d := time.Since(start); d > 8*time.Second {
		t.Errorf("shutdown took %v", d)
	}
	alice.Conn().Close()
	bob.Conn().Close()
	if !waitFor(5*time.Second, func() bool { n, _ := goroutines(); return n <= before }) {
		n, dump := goroutines()
		t.Errorf("%d goroutines after shutdown, %d before:\n%s", n, before, dump)
	}
}

// goroutines counts the running goroutines but the one poller the
// server package starts once per process (park_linux.go), and returns
// their stacks.
func goroutines() (int, string) {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var kept []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if !strings.Contains(g, "treff.pollLoop") {
			kept = append(kept, g)
		}
	}
	return len(kept), strings.Join(kept, "\n\n")
}

// silentPeer is a listener that accepts connections and never says a
// word (a server that hangs), closed when the test ends.
func silentPeer(t *testing.T) net.Listener {
	hole := listen(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := hole.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c) // accept, never answer
		}
	}()
	t.Cleanup(func() { hole.Close(); <-done })
	return hole
}
