package treff_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/stanza"
	"github.com/treff-im/treff/trefftest"
)

// hookModule exercises the Registry from outside the package, as a plugin
// author would.
type hookModule struct {
	mu     sync.Mutex
	events []string
	srv    *treff.Server
}

func (m *hookModule) Name() string { return "hooks" }

func (m *hookModule) log(s string) {
	m.mu.Lock()
	m.events = append(m.events, s)
	m.mu.Unlock()
}

func (m *hookModule) seen() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return strings.Join(m.events, ",")
}

func (m *hookModule) Setup(ctx context.Context, r *treff.Registry) error {
	m.srv = r.Server()
	r.AddStreamFeature(treff.StreamFeature{Phase: treff.BeforeAuth, XML: "<hello xmlns='urn:example:hello'/>"})
	r.AddStreamFeature(treff.StreamFeature{Phase: treff.AfterAuth, XML: "<later xmlns='urn:example:later'/>"})
	r.HandlePreAuthIQ("urn:example:pre", treff.IQHandlerFunc(func(ctx context.Context, iq *treff.Stanza) ([]byte, error) {
		return []byte("<pre xmlns='urn:example:pre'/>"), nil
	}))
	r.HandleIQ("urn:example:fail", treff.IQHandlerFunc(func(ctx context.Context, iq *treff.Stanza) ([]byte, error) {
		return nil, stanza.NotAllowed.WithText("no <way>")
	}))
	r.HandleAccountIQ("urn:example:acct", treff.IQHandlerFunc(func(ctx context.Context, iq *treff.Stanza) ([]byte, error) {
		return []byte("<acct xmlns='urn:example:acct' to='" + iq.To.String() + "'/>"), nil
	}))
	r.HandleDomain("svc.localhost", treff.StanzaHandlerFunc(func(ctx context.Context, st *treff.Stanza) {
		m.log("svc:" + st.ID)
		reply, err := treff.NewStanza(treff.AppendResult(nil, st, nil))
		if err == nil {
			m.srv.Route(ctx, reply)
		}
	}))
	r.OnSessionBound(func(ctx context.Context, s *treff.Session) { m.log("bound:" + s.JID().Resourcepart()) })
	r.OnSessionClosed(func(ctx context.Context, s *treff.Session) { m.log("closed:" + s.JID().Resourcepart()) })
	r.OnClientStanza(func(ctx context.Context, st *treff.Stanza) bool {
		if st.ID == "swallow" {
			m.log("swallowed")
			return true
		}
		return false
	})
	r.OnAccountStanza(func(ctx context.Context, st *treff.Stanza) bool {
		m.log("account:" + st.ID)
		return false
	})
	r.OnUndeliverable(func(ctx context.Context, st *treff.Stanza) bool {
		m.log("offline:" + st.ID)
		return true
	})
	return nil
}

func TestModuleAPI(t *testing.T) {
	m := &hookModule{}
	ts := newTestServer(t, func(s *treff.Server) { s.Modules = []treff.Module{m} })
	r := dialRaw(t, ts, ts.Addr)
	r.StartTLS()
	r.Send(header("localhost"))
	r.Expect(`<hello xmlns='urn:example:hello'/><authentication xmlns='urn:xmpp:sasl:2'>.*</stream:features>`) // SASL2: trefftest adds it
	r.Send("<iq type='get' id='p1'><q xmlns='urn:example:pre'/></iq>")
	r.Expect(`<iq type='result' id='p1'><pre xmlns='urn:example:pre'/></iq>`)
	r.Send(plainAuth("alice", "alicepw"))
	r.Expect(`<success`)
	r.Send(header("localhost"))
	r.Expect(`<later xmlns='urn:example:later'/><sm xmlns='urn:xmpp:sm:3'/></stream:features>`) // sm: trefftest adds stream management
	r.Send("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>r</resource></bind></iq>")
	r.Expect(`</iq>`)

	r.Send("<iq type='get' id='f1' to='localhost'><q xmlns='urn:example:fail'/></iq>")
	r.Expect(`<iq type='error' id='f1' to='alice@localhost/r' from='localhost'><error type='cancel'><not-allowed xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>no &lt;way&gt;</text></error></iq>`)
	r.Send("<iq type='get' id='a1'><q xmlns='urn:example:acct'/></iq>")
	r.Expect(`<iq type='result' id='a1' to='alice@localhost/r'><acct xmlns='urn:example:acct' to=''/></iq>`)
	r.Send("<iq type='get' id='a2' to='bob@localhost'><q xmlns='urn:example:acct'/></iq>")
	r.Expect(`<iq type='result' id='a2' to='alice@localhost/r' from='bob@localhost'><acct xmlns='urn:example:acct' to='bob@localhost'/></iq>`)
	r.Send("<iq type='get' id='s1' to='svc.localhost'><q xmlns='urn:example:svc'/></iq>")
	r.Expect(`<iq type='result' id='s1' to='alice@localhost/r' from='svc.localhost'/>`)
	r.Send("<message to='bob@localhost' id='swallow'><body>x</body></message>")
	r.Send("<message to='bob@localhost' id='m1'><body>x</body></message>")
	r.Send("<iq type='get' id='sync' to='localhost'><q xmlns='urn:example:fail'/></iq>")
	r.Expect(`id='sync'`)
	r.Send("</stream:stream>")
	r.Expect(`</stream:stream>`)
	r.ExpectClosed()
	ts.Close()
	// Account hooks see the IQs to alice's account and the responses to her
	// session too (a2 twice: the request to bob, the result to alice).
	want := "bound:r,account:f1,account:a1,account:a2,account:a2,svc:s1,account:s1,swallowed,account:m1,offline:m1,account:sync,closed:r"
	if got := m.seen(); got != want {
		t.Errorf("events\n got %s\nwant %s", got, want)
	}
}

func TestConflictingRegistrationPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("no panic")
		}
	}()
	dup := treff.IQHandlerFunc(func(context.Context, *treff.Stanza) ([]byte, error) { return nil, nil })
	srv := &treff.Server{Hosts: []treff.Host{{Domain: "localhost"}}, Modules: []treff.Module{
		setupFunc(func(r *treff.Registry) { r.HandleIQ("urn:x", dup) }),
		setupFunc(func(r *treff.Registry) { r.HandleIQ("urn:x", dup) }),
	}}
	srv.Features(false)
}

type setupFunc func(r *treff.Registry)

func (setupFunc) Name() string { return "f" }
func (f setupFunc) Setup(ctx context.Context, r *treff.Registry) error {
	f(r)
	return nil
}

// stampModule uses the hooks of a block list, an archive and carbons:
// OnAccountOutbound drops what alice sends to mallory, OnAccountStanza
// stamps messages to bob, OnDelivered records who got what.
type stampModule struct {
	mu        sync.Mutex
	delivered []string
}

func (m *stampModule) Name() string { return "stamp" }

func (m *stampModule) Setup(ctx context.Context, r *treff.Registry) error {
	r.OnAccountOutbound(func(ctx context.Context, st *treff.Stanza) bool {
		return st.To.Localpart() == "mallory"
	})
	r.OnAccountStanza(func(ctx context.Context, st *treff.Stanza) bool {
		if st.Kind == treff.KindIQ && st.From.Localpart() == "mallory" {
			return true
		}
		if st.Kind == treff.KindMessage {
			if err := st.AddChild([]byte("<stamp xmlns='urn:example:stamp'/>")); err != nil {
				panic(err)
			}
		}
		return false
	})
	r.OnDelivered(func(ctx context.Context, st *treff.Stanza, to []*treff.Session) {
		m.mu.Lock()
		defer m.mu.Unlock()
		for _, s := range to {
			m.delivered = append(m.delivered, st.ID+">"+s.JID().Resourcepart())
		}
	})
	return nil
}

func TestOutboundStampAndDeliveredHooks(t *testing.T) {
	m := &stampModule{}
	ts := trefftest.NewServer(t, func(s *treff.Server) { s.Modules = []treff.Module{m} })
	for _, u := range []string{"alice", "bob", "mallory"} {
		ts.AddUser(t, u, u+"pw")
	}
	bob := ts.Login(t, "bob", "bobpw", "phone")
	alice := ts.Login(t, "alice", "alicepw", "desk")
	mallory := ts.Login(t, "mallory", "mallorypw", "x")
	alice.Send("<message to='mallory@localhost/x' id='m0'><body>no</body></message>")
	alice.Send("<message to='bob@localhost/phone' id='m1'><body>hi</body></message>")
	bob.Expect(`<message from='alice@localhost/desk' to='bob@localhost/phone' id='m1'><body>hi</body><stamp xmlns='urn:example:stamp'/></message>`)
	mallory.Send("<iq type='get' id='q1' to='bob@localhost/phone'><ping xmlns='urn:xmpp:ping'/></iq>")
	mallory.Send("<message to='bob@localhost/phone' id='m2'/>")
	// q1 was routed before m2, so it would arrive before it: look in what
	// Expect consumed on the way to m2, not in what is left after it.
	if got := bob.Expect(`<message from='mallory@localhost/x' to='bob@localhost/phone' id='m2'><stamp xmlns='urn:example:stamp'/></message>`); strings.Contains(got, "q1") {
		t.Errorf("filtered IQ delivered: %s", got)
	}
	mallory.Send("<iq type='get' id='sync' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
	if got := mallory.Expect(`id='sync'`); strings.Contains(got, "m0") {
		t.Errorf("dropped message delivered: %s", got)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if got, want := strings.Join(m.delivered, ","), "m1>phone,m2>phone"; got != want {
		t.Errorf("delivered %s, want %s", got, want)
	}
}

// The legacy session request (RFC 3921) is answered also after binding,
// where Strophe.js sends it.
func TestSessionRequestAfterBind(t *testing.T) {
	ts := newTestServer(t, nil)
	c := ts.Login(t, "alice", "alicepw", "r")
	c.Send("<iq type='set' id='s1'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>")
	c.Expect(`<iq type='result' id='s1' to='alice@localhost/r'/>`)
}
