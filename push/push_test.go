package push_test

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/csi"
	"github.com/treff-im/treff/disco"
	"github.com/treff-im/treff/offline"
	"github.com/treff-im/treff/push"
	"github.com/treff-im/treff/stanza"
	"github.com/treff-im/treff/storage"
	"github.com/treff-im/treff/trefftest"
)

const appServer = "push.localhost"

// appServerModule stands for an app server on a service domain of the
// test server: it hands every stanza it gets to the test.
type appServerModule chan *treff.Stanza

func (appServerModule) Name() string { return "test-app-server" }

func (a appServerModule) Setup(ctx context.Context, r *treff.Registry) error {
	r.HandleDomain(appServer, treff.StanzaHandlerFunc(func(ctx context.Context, st *treff.Stanza) {
		a <- st
	}))
	return nil
}

// answered is one outcome reported through Module.Answered.
type answered struct {
	r   storage.PushRegistration
	err error
}

type env struct {
	ts      *trefftest.Server
	m       *push.Module
	app     appServerModule
	answers chan answered
	clock   *trefftest.Clock
}

func newEnv(t *testing.T, configure func(*push.Module)) *env {
	t.Helper()
	e := &env{
		app:     make(appServerModule, 16),
		answers: make(chan answered, 16),
		clock:   trefftest.NewClock(time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)),
	}
	e.m = &push.Module{Now: e.clock.Now, Interval: time.Minute}
	e.m.Answered = func(user jid.JID, r storage.PushRegistration, err error) { e.answers <- answered{r, err} }
	if configure != nil {
		configure(e.m)
	}
	e.ts = trefftest.NewServer(t, func(s *treff.Server) {
		s.Modules = []treff.Module{e.m, &disco.Module{}, &csi.Module{}, &offline.Module{}, e.app}
	})
	e.ts.AddUser(t, "alice", "pw")
	e.ts.AddUser(t, "bob", "pw")
	return e
}

func (e *env) store() storage.PushRegistrations { return e.ts.Store.(storage.PushRegistrations) }

func (e *env) registrations(t *testing.T) []storage.PushRegistration {
	t.Helper()
	regs, err := e.store().PushRegistrations(context.Background(), "alice@localhost")
	if err != nil {
		t.Fatal(err)
	}
	return regs
}

// publish waits for the next stanza the app server gets and checks that
// it is a notification from alice's bare JID to node.
func (e *env) publish(t *testing.T, node string) *treff.Stanza {
	t.Helper()
	select {
	case st := <-e.app:
		checkPublish(t, st, node)
		return st
	case <-time.After(10 * time.Second):
		t.Fatalf("no notification for node %s", node)
	}
	return nil
}

func checkPublish(t *testing.T, st *treff.Stanza, node string) {
	t.Helper()
	raw := string(st.Raw())
	if st.Kind != treff.KindIQ || st.Type != "set" || st.From.String() != "alice@localhost" ||
		!strings.Contains(raw, "<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='"+node+"'><item><notification xmlns='urn:xmpp:push:0'>") ||
		!strings.Contains(raw, "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>urn:xmpp:push:summary</value></field>") {
		t.Fatalf("not a notification for node %s from alice: %s", node, raw)
	}
}

// answer makes the app server answer a notification: a result if cond is
// empty, else an error of type typ.
func (e *env) answer(t *testing.T, st *treff.Stanza, typ stanza.ErrorType, cond stanza.Condition) {
	t.Helper()
	var raw []byte
	if cond == "" {
		raw = treff.AppendResult(nil, st, nil)
	} else {
		raw = treff.AppendError(nil, st, stanza.Error{Type: typ, Condition: cond})
	}
	resp, err := treff.NewStanza(raw)
	if err != nil {
		t.Fatal(err)
	}
	e.ts.Route(context.Background(), resp)
}

func (e *env) waitAnswered(t *testing.T) answered {
	t.Helper()
	select {
	case a := <-e.answers:
		return a
	case <-time.After(10 * time.Second):
		t.Fatal("no notification was answered")
	}
	return answered{}
}

func field(t *testing.T, st *treff.Stanza, name string) (string, bool) {
	t.Helper()
	m := regexp.MustCompile(`<field var='` + name + `'><value>([^<]*)</value></field>`).FindStringSubmatch(string(st.Raw()))
	if m == nil {
		return "", false
	}
	return m[1], true
}

func wantField(t *testing.T, st *treff.Stanza, name, want string) {
	t.Helper()
	if got, ok := field(t, st, name); !ok || got != want {
		t.Errorf("field %s = %q (present %v), want %q in %s", name, got, ok, want, st.Raw())
	}
}

const secretForm = "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value></field><field var='secret'><value>eruio234vzxc2kla-91</value></field></x>"

// enable enables push on c's session for node, with the secret form.
func enable(t *testing.T, c *trefftest.Client, node, form string) {
	t.Helper()
	c.Send("<iq type='set' id='en-" + node + "'><enable xmlns='urn:xmpp:push:0' jid='" + appServer + "' node='" + node + "'>" + form + "</enable></iq>")
	c.Expect(`<iq [^>]*id='en-` + node + `'[^>]*type='result'|<iq [^>]*type='result'[^>]*id='en-` + node + `'`)
}

func TestEnableDisable(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.ts.Login(t, "alice", "pw", "phone")

	alice.Send("<iq type='get' id='d' to='alice@localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
	if got := alice.Expect(`</iq>`); !strings.Contains(got, "<feature var='urn:xmpp:push:0'/>") {
		t.Errorf("account disco#info without the push feature: %s", got)
	}

	for _, bad := range []struct{ name, iq, cond string }{
		{"no node", "<iq type='set' id='b1'><enable xmlns='urn:xmpp:push:0' jid='" + appServer + "'/></iq>", "bad-request"},
		{"no jid", "<iq type='set' id='b2'><enable xmlns='urn:xmpp:push:0' node='n'/></iq>", "bad-request"},
		{"form of another type", "<iq type='set' id='b3'><enable xmlns='urn:xmpp:push:0' jid='" + appServer + "' node='n'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>urn:example</value></field></x></enable></iq>", "bad-request"},
		{"form with a prefix declared outside it", "<iq type='set' id='b5'><enable xmlns='urn:xmpp:push:0' xmlns:d='jabber:x:data' jid='" + appServer + "' node='n'><d:x type='submit'><d:field var='FORM_TYPE'><d:value>http://jabber.org/protocol/pubsub#publish-options</d:value></d:field></d:x></enable></iq>", "bad-request"},
		{"someone else's account", "<iq type='set' id='b4' to='bob@localhost'><enable xmlns='urn:xmpp:push:0' jid='" + appServer + "' node='n'/></iq>", "forbidden"},
	} {
		alice.Send(bad.iq)
		if got := alice.Expect(`</iq>`); !strings.Contains(got, "type='error'") || !strings.Contains(got, "<"+bad.cond+" ") ||
			(bad.name == "form with a prefix declared outside it" && !strings.Contains(got, "namespace prefix")) {
			t.Errorf("%s: got %s, want a %s error", bad.name, got, bad.cond)
		}
	}
	if regs := e.registrations(t); len(regs) != 0 {
		t.Fatalf("registrations after refused requests: %q", regs)
	}

	enable(t, alice, "phone-node", secretForm)
	enable(t, alice, "tablet-node", "")
	regs := e.registrations(t)
	if len(regs) != 2 || regs[0].Node != "phone-node" || string(regs[0].Form) != secretForm || regs[1].Node != "tablet-node" || regs[1].Form != nil {
		t.Fatalf("registrations = %q, want phone-node with the form and tablet-node without", regs)
	}

	alice.Send("<iq type='set' id='dis1'><disable xmlns='urn:xmpp:push:0' jid='" + appServer + "' node='phone-node'/></iq>")
	alice.Expect(`id='dis1'[^>]*type='result'|type='result'[^>]*id='dis1'`)
	if regs := e.registrations(t); len(regs) != 1 || regs[0].Node != "tablet-node" {
		t.Fatalf("after disabling phone-node: %q", regs)
	}
	enable(t, alice, "phone-node", "")
	alice.Send("<iq type='set' id='dis2'><disable xmlns='urn:xmpp:push:0' jid='" + appServer + "'/></iq>")
	alice.Expect(`id='dis2'[^>]*type='result'|type='result'[^>]*id='dis2'`)
	if regs := e.registrations(t); len(regs) != 0 {
		t.Fatalf("after disabling the app server: %q", regs)
	}

	// At most MaxRegistrations.
	for i := range push.DefaultMaxRegistrations {
		enable(t, alice, "n"+string(rune('a'+i)), "")
	}
	alice.Send("<iq type='set' id='many'><enable xmlns='urn:xmpp:push:0' jid='" + appServer + "' node='one-too-many'/></iq>")
	if got := alice.Expect(`</iq>`); !strings.Contains(got, "<resource-constraint ") {
		t.Errorf("one registration too many: %s", got)
	}
	enable(t, alice, "na", secretForm) // enabling a known one again is fine

	if err := e.ts.DeleteAccount(context.Background(), jid.MustParse("alice@localhost"), "bye"); err != nil {
		t.Fatal(err)
	}
	if regs := e.registrations(t); len(regs) != 0 {
		t.Fatalf("registrations after the account was deleted: %q", regs)
	}
}

// With no session, every registration is notified once, with its form;
// the body is not sent unless the operator allows it; a chat state wakes
// no one.
func TestOfflineNotification(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	for _, r := range []storage.PushRegistration{{Service: appServer, Node: "a", Form: []byte(secretForm)}, {Service: appServer, Node: "b"}} {
		if err := e.store().PutPushRegistration(ctx, "alice@localhost", r); err != nil {
			t.Fatal(err)
		}
	}
	bob := e.ts.Login(t, "bob", "pw", "desk")
	bob.Send("<message to='alice@localhost' type='chat' id='cs'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>")
	bob.Send("<message to='alice@localhost' type='chat' id='m1'><body>secret words</body></message>")
	got := map[string]*treff.Stanza{}
	for range 2 {
		st := <-e.app
		node := regexp.MustCompile(`<publish node='([^']*)'`).FindStringSubmatch(string(st.Raw()))
		if node == nil {
			t.Fatalf("not a publish: %s", st.Raw())
		}
		checkPublish(t, st, node[1])
		got[node[1]] = st
	}
	a, b := got["a"], got["b"]
	if a == nil || b == nil {
		t.Fatalf("notifications for nodes %v, want a and b", got)
	}
	for _, st := range []*treff.Stanza{a, b} {
		wantField(t, st, "message-count", "1")
		wantField(t, st, "last-message-sender", "bob@localhost")
		if _, ok := field(t, st, "last-message-body"); ok || strings.Contains(string(st.Raw()), "secret words") {
			t.Errorf("the body was sent without WithBody: %s", st.Raw())
		}
	}
	if !strings.Contains(string(a.Raw()), "</publish><publish-options>"+secretForm+"</publish-options></pubsub>") {
		t.Errorf("the client's form is not the publish-options: %s", a.Raw())
	}
	if strings.Contains(string(b.Raw()), "publish-options") {
		t.Errorf("publish-options without a form: %s", b.Raw())
	}
	// The message is stored offline all the same (bob's Sync: his stanza
	// was handled to the end, the notification comes before the store).
	bob.Sync()
	if n, err := e.ts.Store.CountOffline(ctx, "alice@localhost"); err != nil || n != 1 {
		t.Errorf("offline messages: %d, %v; want 1", n, err)
	}
}

// A session that enabled push and hibernates is notified; while it was
// connected and active it was not.
func TestHibernatingNotification(t *testing.T) {
	e := newEnv(t, func(m *push.Module) { m.WithBody = true })
	phone := e.ts.Login(t, "alice", "pw", "phone")
	phone.Send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
	phone.Expect(`<enabled xmlns='urn:xmpp:sm:3'`)
	enable(t, phone, "phone-node", "")
	phone.Send("<presence/>")
	phone.Sync()
	bob := e.ts.Login(t, "bob", "pw", "desk")
	bob.Send("<message to='alice@localhost' type='chat' id='m1'><body>while active</body></message>")
	phone.Expect(`id='m1'`)
	// bob's stanza handled to the end (its delivered hooks, which decide
	// on a push, saw the phone active) before the phone goes away.
	bob.Sync()

	phone.Conn().Close()
	e.ts.WaitHibernating(t, "alice@localhost/phone")
	bob.Send("<message to='alice@localhost' type='chat' id='m2'><body>while asleep</body></message>")
	// Had m1 been notified, m2 would be held back by the rate limit (m1's
	// notification is not answered): this is m2's.
	st := e.publish(t, "phone-node")
	wantField(t, st, "last-message-body", "while asleep")
	wantField(t, st, "message-count", "1")
}

// A session that enabled push and told the server it is inactive is
// notified of what would wake it; one notification per registration
// however many of its sessions got the message.
func TestInactiveNotification(t *testing.T) {
	e := newEnv(t, func(m *push.Module) { m.WithBody = true })
	var devices []*trefftest.Client
	for _, res := range []string{"phone", "phone2"} {
		c := e.ts.Login(t, "alice", "pw", res)
		enable(t, c, "shared-node", "")
		c.Send("<presence/>")
		c.Sync()
		devices = append(devices, c)
	}
	bob := e.ts.Login(t, "bob", "pw", "desk")
	bob.Send("<message to='alice@localhost' type='chat' id='m1'><body>while active</body></message>")
	for _, c := range devices {
		c.Expect(`id='m1'`)
	}
	bob.Sync() // m1's delivered hooks ran while both were active
	for _, c := range devices {
		c.Send("<inactive xmlns='urn:xmpp:csi:0'/>")
		c.Sync()
	}
	// A chat state is held back and wakes no one.
	bob.Send("<message to='alice@localhost' type='chat' id='cs'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>")
	bob.Send("<message to='alice@localhost' type='chat' id='m2'><body>screen off</body></message>")
	for _, c := range devices {
		c.Expect(`id='m2'`)
	}
	st := e.publish(t, "shared-node")
	wantField(t, st, "last-message-body", "screen off")
	wantField(t, st, "message-count", "1")

	// Had the second session's delivery been notified too, the rate
	// limit would have counted it: the next notification stands for one
	// message, m3.
	e.clock.Add(time.Minute)
	bob.Send("<message to='alice@localhost' type='chat' id='m3'><body>later</body></message>")
	st = e.publish(t, "shared-node")
	wantField(t, st, "last-message-body", "later")
	wantField(t, st, "message-count", "1")
}

// While a notification is unanswered, messages within Interval are held
// back and counted in the next one; after a result the next message is
// notified at once.
func TestRateLimit(t *testing.T) {
	e := newEnv(t, nil)
	if err := e.store().PutPushRegistration(context.Background(), "alice@localhost", storage.PushRegistration{Service: appServer, Node: "n"}); err != nil {
		t.Fatal(err)
	}
	bob := e.ts.Login(t, "bob", "pw", "desk")
	send := func(id string) {
		bob.Send("<message to='alice@localhost' type='chat' id='" + id + "'><body>" + id + "</body></message>")
		bob.Sync() // handled, so the module read the clock
	}
	send("m1")
	first := e.publish(t, "n")
	wantField(t, first, "message-count", "1")
	send("m2")
	e.clock.Add(time.Minute - time.Nanosecond)
	send("m3")
	e.clock.Add(time.Nanosecond)
	send("m4")
	st := e.publish(t, "n")
	wantField(t, st, "message-count", "3") // m2, m3 held back

	e.answer(t, first, "", "") // an answer to an older one changes nothing
	if a := e.waitAnswered(t); a.err != nil {
		t.Fatalf("answer: %v", a.err)
	}
	send("m5")
	e.answer(t, st, "", "")
	if a := e.waitAnswered(t); a.err != nil {
		t.Fatalf("answer: %v", a.err)
	}
	send("m6")
	st = e.publish(t, "n")
	wantField(t, st, "message-count", "2") // m5 was held back, m6 answered at once
	e.answer(t, st, "", "")
	e.waitAnswered(t)
	send("m7")
	st = e.publish(t, "n")
	wantField(t, st, "message-count", "1")
}

// Error answers from the app server disable the registration once
// MaxErrors came in a row; a result resets the count, an error of type
// wait does not count.
func TestErrorsDisable(t *testing.T) {
	e := newEnv(t, func(m *push.Module) { m.MaxErrors = 2 })
	if err := e.store().PutPushRegistration(context.Background(), "alice@localhost", storage.PushRegistration{Service: appServer, Node: "n"}); err != nil {
		t.Fatal(err)
	}
	bob := e.ts.Login(t, "bob", "pw", "desk")
	for i, step := range []struct {
		typ        stanza.ErrorType
		cond       stanza.Condition
		registered bool
	}{
		{stanza.Cancel, stanza.ItemNotFound, true},
		{"", "", true}, // a result: the count starts again
		{stanza.Cancel, stanza.ItemNotFound, true},
		{stanza.Wait, stanza.ResourceConstraint, true}, // not counted
		{stanza.Auth, stanza.Forbidden, false},         // the second in a row
	} {
		bob.Send(fmt.Sprintf("<message to='alice@localhost' type='chat' id='m%d'><body>%d</body></message>", i, i))
		e.answer(t, e.publish(t, "n"), step.typ, step.cond)
		a := e.waitAnswered(t)
		if (step.cond == "") != (a.err == nil) || (step.cond != "" && !errors.Is(a.err, step.cond)) {
			t.Fatalf("step %d: outcome %v, want %s", i, a.err, step.cond)
		}
		if regs := e.registrations(t); (len(regs) == 1) != step.registered {
			t.Fatalf("step %d (%s): registrations %q, want registered %v", i, step.cond, regs, step.registered)
		}
		e.clock.Add(time.Minute) // past the rate limit after an error
	}
}

// By default (MaxErrors 16), an error of type cancel does not disable the
// registration at once. Push cannot be enabled with the account's own JID
// as the app server.
func TestDefaultErrorsAndOwnJID(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.ts.Login(t, "alice", "pw", "phone")
	alice.Send("<iq type='set' id='own'><enable xmlns='urn:xmpp:push:0' jid='alice@localhost' node='n'/></iq>")
	if got := alice.Expect(`</iq>`); !strings.Contains(got, "<bad-request ") {
		t.Errorf("enabling push to one's own JID: %s", got)
	}
	enable(t, alice, "n", "")
	alice.Send("</stream:stream>")
	alice.ExpectClosed()
	bob := e.ts.Login(t, "bob", "pw", "desk")
	bob.Send("<message to='alice@localhost' type='chat' id='m1'><body>hi</body></message>")
	e.answer(t, e.publish(t, "n"), stanza.Cancel, stanza.ItemNotFound)
	e.waitAnswered(t)
	if regs := e.registrations(t); len(regs) != 1 {
		t.Fatalf("registrations after one error: %q", regs)
	}
}
