package treff_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/treff-im/treff"
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
		return nil, &treff.StanzaError{Condition: "not-allowed", Text: "no <way>"}
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
	r.Expect(`<hello xmlns='urn:example:hello'/></stream:features>`)
	r.Send("<iq type='get' id='p1'><q xmlns='urn:example:pre'/></iq>")
	r.Expect(`<iq type='result' id='p1'><pre xmlns='urn:example:pre'/></iq>`)
	r.Send(plainAuth("alice", "alicepw"))
	r.Expect(`<success`)
	r.Send(header("localhost"))
	r.Expect(`<later xmlns='urn:example:later'/></stream:features>`)
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
	want := "bound:r,svc:s1,swallowed,account:m1,offline:m1,closed:r"
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
