package treff_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/offline"
	"github.com/treff-im/treff/sm"
	"github.com/treff-im/treff/trefftest"
)

// TestNonzaHandler checks a plugin's stream-level elements after bind:
// handled by namespace, answered on the stream, a panic closing that
// stream only, other namespaces refused as before.
func TestNonzaHandler(t *testing.T) {
	ts := newTestServer(t, func(s *treff.Server) {
		s.Modules = []treff.Module{moduleFunc(func(r *treff.Registry) {
			r.HandleNonza("urn:example:nz", treff.NonzaHandlerFunc(func(ctx context.Context, s *treff.Session, n *treff.Nonza) {
				if n.Name.Local == "boom" {
					var m map[string]bool
					m["x"] = true
				}
				v, _ := n.Attr("v")
				s.Send([]byte("<pong xmlns='urn:example:nz' v='" + v + "' inner='" + n.Inner() + "'/>"))
			}))
		})}
	})
	c := ts.Login(t, "alice", "alicepw", "r")
	c.Send("<ping xmlns='urn:example:nz' v='7'>x</ping>")
	c.Expect(`<pong xmlns='urn:example:nz' v='7' inner='x'/>`)
	c.Send("<p:ping xmlns:p='urn:example:nz' v='8'/>")
	c.Expect(`<pong xmlns='urn:example:nz' v='8' inner=''/>`)
	c.Sync()
	c.Send("<boom xmlns='urn:example:nz'/>")
	c.Expect(`<internal-server-error xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>`)

	d := ts.Login(t, "bob", "bobpw", "r")
	d.Send("<ping xmlns='urn:example:other'/>")
	d.Expect(`<unsupported-stanza-type xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>`)

	for _, ns := range []string{"jabber:client", ""} {
		srv := &treff.Server{Hosts: []treff.Host{{Domain: "localhost"}}, Modules: []treff.Module{moduleFunc(func(r *treff.Registry) {
			r.HandleNonza(ns, treff.NonzaHandlerFunc(func(context.Context, *treff.Session, *treff.Nonza) {}))
		})}}
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("HandleNonza(%q) did not panic", ns)
				}
			}()
			srv.Setup()
		}()
	}
}

// TestOnUnacked checks that a module claims the copies it made for a
// session that never acknowledged them, and the rest is delivered again
// (to offline storage here).
func TestOnUnacked(t *testing.T) {
	closed := make(trefftest.ClosedSessions, 8)
	claimed := make(chan string, 4)
	ts := newTestServer(t, func(s *treff.Server) {
		s.Modules = []treff.Module{&sm.Module{ResumeTimeout: 100 * time.Millisecond}, &offline.Module{}, moduleFunc(func(r *treff.Registry) {
			r.OnUnacked(func(ctx context.Context, st *treff.Stanza) bool {
				if st.Payload.Space == "urn:example:copy" {
					claimed <- st.ID
					return true
				}
				return false
			})
		}), closed}
	})
	phone := ts.Login(t, "alice", "alicepw", "phone")
	id := enableResume(t, phone)
	phone.Send("<presence/>")
	phone.Sync()
	bob := ts.Login(t, "bob", "bobpw", "desk")
	bob.Send("<message to='alice@localhost/phone' id='c1' type='chat'><copy xmlns='urn:example:copy'/><body>copy</body></message>")
	bob.Send("<message to='alice@localhost/phone' id='m1' type='chat'><body>one</body></message>")
	phone.Expect(`id='m1'`)
	phone.Conn().Close()
	closed.Wait(t, "alice@localhost/phone")
	if got := <-claimed; got != "c1" {
		t.Errorf("OnUnacked claimed %q, want c1", got)
	}
	late := ts.Dial(t, ts.Addr)
	late.Authenticate("alice", "alicepw")
	late.Send("<resume xmlns='urn:xmpp:sm:3' previd='" + id + "' h='0'/>")
	late.Expect(`<failed`)
	late.Send("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
	late.Expect(`</iq>`)
	late.Send("<presence/>")
	got := late.Expect(`id='m1'.*?</message>`)
	got += late.Sync()
	if strings.Contains(got, "id='c1'") {
		t.Errorf("the claimed copy was delivered again: %s", got)
	}
}
