package treff_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/trefftest"
)

// panicky is a module whose handlers and hooks panic when a stanza asks
// them to (an id starting with "boom-"), the way a buggy plugin would: a
// write to a nil map.
type panicky struct {
	mu     sync.Mutex
	events []string
	closed chan string
}

func (m *panicky) Name() string { return "panicky" }

func (m *panicky) note(s string) {
	m.mu.Lock()
	m.events = append(m.events, s)
	m.mu.Unlock()
}

func (m *panicky) seen() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return strings.Join(m.events, ",")
}

func boom() {
	var m map[string]int
	m["x"] = 1 // assignment to entry in nil map
}

func (m *panicky) Setup(ctx context.Context, r *treff.Registry) error {
	r.HandleIQ("urn:example:boom", treff.IQHandlerFunc(func(ctx context.Context, iq *treff.Stanza) ([]byte, error) {
		boom()
		return nil, nil
	}))
	r.HandlePreAuthIQ("urn:example:boom", treff.IQHandlerFunc(func(ctx context.Context, iq *treff.Stanza) ([]byte, error) {
		boom()
		return nil, nil
	}))
	r.HandleDomain("boom.localhost", treff.StanzaHandlerFunc(func(ctx context.Context, st *treff.Stanza) {
		boom()
	}))
	r.AddStreamFeature(treff.StreamFeature{Phase: treff.AfterAuth, Render: func() string {
		boom()
		return "<never xmlns='urn:example:never'/>"
	}})
	r.AddStreamFeature(treff.StreamFeature{Phase: treff.AfterAuth, XML: "<fine xmlns='urn:example:fine'/>"})
	r.OnClientStanza(func(ctx context.Context, st *treff.Stanza) bool {
		if st.ID == "boom-client" && st.Type != "error" {
			boom()
		}
		return false
	})
	r.OnAccountStanza(func(ctx context.Context, st *treff.Stanza) bool {
		if st.ID == "boom-account" && st.Type != "error" {
			boom()
		}
		return false
	})
	r.OnDelivered(func(ctx context.Context, st *treff.Stanza, to []*treff.Session) {
		if st.ID == "boom-delivered" && st.Type != "error" {
			boom()
		}
	})
	r.OnUndeliverable(func(ctx context.Context, st *treff.Stanza) bool {
		if st.ID == "boom-offline" && st.Type != "error" {
			boom()
		}
		return false
	})
	r.OnSessionBound(func(ctx context.Context, s *treff.Session) {
		if s.JID().Resourcepart() == "boom-bound" {
			boom()
		}
	})
	r.OnSessionClosed(func(ctx context.Context, s *treff.Session) {
		if s.JID().Resourcepart() == "boom-closed" {
			boom()
		}
	})
	r.OnAccountDeleted(func(ctx context.Context, user jid.JID) error {
		if user.Localpart() == "carol" {
			boom()
		}
		return nil
	})
	return nil
}

// observer comes after panicky: its hooks must still run.
type observer struct {
	closed    chan string
	delivered chan string
}

func (observer) Name() string { return "observer" }

func (o observer) Setup(ctx context.Context, r *treff.Registry) error {
	r.OnSessionClosed(func(ctx context.Context, s *treff.Session) {
		o.closed <- s.JID().Resourcepart()
	})
	r.OnDelivered(func(ctx context.Context, st *treff.Stanza, to []*treff.Session) {
		if st.ID == "boom-delivered" {
			o.delivered <- st.ID
		}
	})
	r.OnAccountDeleted(func(ctx context.Context, user jid.JID) error {
		if user.Localpart() == "carol" {
			return errors.New("observer: disk on fire")
		}
		return nil
	})
	return nil
}

// TestModulePanics checks that a panic in any module's handler or hook,
// triggered by one client, harms that stanza only: the sender gets
// <internal-server-error/>, its stream and everybody else's go on, and
// the log names the module with a stack but carries no content and no
// address.
func TestModulePanics(t *testing.T) {
	var logs trefftest.LogBuffer
	obs := observer{closed: make(chan string, 16), delivered: make(chan string, 1)}
	ts := newTestServer(t, func(s *treff.Server) {
		s.Modules = []treff.Module{&panicky{}, obs}
		s.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	ts.AddUser(t, "carol", "carolpw")
	bob := ts.Login(t, "bob", "bobpw", "phone")
	alice := ts.Dial(t, ts.Addr)
	alice.Authenticate("alice", "alicepw")
	// A feature whose Render panics is left out; the others are offered.
	if f := alice.Pending(); strings.Contains(f, "urn:example:never") {
		t.Errorf("features after auth offer the panicking feature: %q", f)
	}
	alice.Send("<iq type='set' id='bind-1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>desk</resource></bind></iq>")
	alice.Expect(`</iq>`)

	// roundTrip proves a stream still works: the server answers an IQ.
	roundTrip := func(c *trefftest.Client, id string) {
		t.Helper()
		c.Send("<iq type='get' id='" + id + "' to='localhost'><query xmlns='urn:example:nothing'/></iq>")
		c.Expect(`<iq[^>]*id='` + id + `'`)
	}
	bob.Send("<presence/>")
	roundTrip(bob, "bob-available")
	internalError := `<error[^>]*><internal-server-error xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>`

	t.Run("IQ handler", func(t *testing.T) {
		alice.Send("<iq type='get' id='boom-iq' to='localhost'><q xmlns='urn:example:boom'/></iq>")
		alice.Expect(`<iq[^>]*id='boom-iq'[^>]*type='error'|<iq[^>]*type='error'[^>]*id='boom-iq'`)
		alice.Expect(internalError)
		roundTrip(alice, "after-iq")
	})
	t.Run("client stanza hook", func(t *testing.T) {
		alice.Send("<message to='bob@localhost/phone' id='boom-client' type='chat'><body>secret words</body></message>")
		alice.Expect(`id='boom-client'`)
		alice.Expect(internalError)
		roundTrip(alice, "after-client")
	})
	t.Run("account stanza hook", func(t *testing.T) {
		alice.Send("<message to='bob@localhost' id='boom-account' type='chat'><body>secret words</body></message>")
		alice.Expect(`id='boom-account'`)
		alice.Expect(internalError)
		// Bob still gets what follows.
		alice.Send("<message to='bob@localhost' id='ok-1' type='chat'><body>hi</body></message>")
		bob.Expect(`id='ok-1'`)
	})
	t.Run("delivered hook", func(t *testing.T) {
		// Delivered already: nothing to answer, the message arrived.
		alice.Send("<message to='bob@localhost' id='boom-delivered' type='chat'><body>hi</body></message>")
		bob.Expect(`id='boom-delivered'`)
		// The delivered hooks after the one that panicked still run.
		if got := <-obs.delivered; got != "boom-delivered" {
			t.Errorf("the next delivered hook saw %q", got)
		}
		roundTrip(alice, "after-delivered")
	})
	t.Run("undeliverable hook", func(t *testing.T) {
		// carol is offline: the message would go to offline storage.
		alice.Send("<message to='carol@localhost' id='boom-offline' type='chat'><body>secret words</body></message>")
		alice.Expect(`id='boom-offline'`)
		alice.Expect(internalError)
	})
	t.Run("domain handler", func(t *testing.T) {
		alice.Send("<iq type='get' id='boom-domain' to='boom.localhost'><q xmlns='urn:example:x'/></iq>")
		alice.Expect(`id='boom-domain'`)
		alice.Expect(internalError)
		roundTrip(alice, "after-domain")
	})
	t.Run("pre-auth IQ handler", func(t *testing.T) {
		c := ts.Dial(t, ts.Addr)
		c.StartTLS()
		c.Send(header("localhost"))
		c.Expect(`</stream:features>`)
		c.Send("<iq type='set' id='boom-pre'><q xmlns='urn:example:boom'/></iq>")
		c.Expect(`id='boom-pre'`)
		c.Expect(internalError)
		c.Send(plainAuth("carol", "carolpw"))
		c.Expect(`<success`)
	})
	t.Run("session bound hook", func(t *testing.T) {
		// The module could not set the session up: that stream ends.
		c := ts.Dial(t, ts.Addr)
		c.Login("alice", "alicepw", "boom-bound")
		c.Expect(`<internal-server-error xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>`)
		c.Send("</stream:stream>")
		c.ExpectClosed()
		if got := <-obs.closed; got != "boom-bound" {
			t.Errorf("closed hook saw %q, want boom-bound", got)
		}
		roundTrip(alice, "after-bound")
	})
	t.Run("session closed hook", func(t *testing.T) {
		c := ts.Dial(t, ts.Addr)
		c.Login("alice", "alicepw", "boom-closed")
		c.Send("</stream:stream>")
		c.ExpectClosed()
		// The hooks after the panicking one still run.
		if got := <-obs.closed; got != "boom-closed" {
			t.Errorf("closed hook saw %q, want boom-closed", got)
		}
		roundTrip(alice, "after-closed")
	})
	t.Run("account deleted hook", func(t *testing.T) {
		err := ts.DeleteAccount(context.Background(), jid.MustParse("carol@localhost"), "gone")
		if err == nil {
			t.Fatal("DeleteAccount = nil, want an error naming the modules that failed")
		}
		for _, want := range []string{"panicky", "observer", "disk on fire"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("DeleteAccount error %q does not mention %q", err, want)
			}
		}
	})

	// The server still accepts new streams.
	ts.Login(t, "bob", "bobpw", "laptop")
	roundTrip(bob, "after-all")

	log := logs.String()
	// Ten panics above, and the feature's Render at each of five logins.
	if n := strings.Count(log, `msg="panic recovered"`); n != 15 {
		t.Errorf("log has %d panic reports, want 15 (one per panic):\n%s", n, log)
	}
	for _, want := range []string{"module=panicky", "assignment to entry in nil map", "panic_test.go"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q", want)
		}
	}
	for _, leak := range []string{"secret words", "127.0.0.1"} {
		if strings.Contains(log, leak) {
			t.Errorf("log contains %q", leak)
		}
	}
}

// TestPanicValueNotLogged checks that a panic whose value is not a
// runtime error is logged by type only: it may hold stanza content.
func TestPanicValueNotLogged(t *testing.T) {
	var logs trefftest.LogBuffer
	ts := newTestServer(t, func(s *treff.Server) {
		s.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		s.Modules = []treff.Module{moduleFunc(func(r *treff.Registry) {
			r.HandleIQ("urn:example:leak", treff.IQHandlerFunc(func(ctx context.Context, iq *treff.Stanza) ([]byte, error) {
				panic("leaked " + string(iq.Raw()))
			}))
		})}
	})
	c := ts.Login(t, "alice", "alicepw", "r")
	c.Send("<iq type='get' id='l1' to='localhost'><q xmlns='urn:example:leak'>private</q></iq>")
	c.Expect(`id='l1'`)
	c.Expect(`internal-server-error`)
	log := logs.String()
	if strings.Contains(log, "private") || strings.Contains(log, "leaked") {
		t.Errorf("log holds the panic's value:\n%s", log)
	}
	if !strings.Contains(log, "panic value of type string") {
		t.Errorf("log does not name the panic's type:\n%s", log)
	}
}

// moduleFunc is a module set up by a function.
type moduleFunc func(r *treff.Registry)

func (moduleFunc) Name() string { return "func" }

func (f moduleFunc) Setup(ctx context.Context, r *treff.Registry) error {
	f(r)
	return nil
}
