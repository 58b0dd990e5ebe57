package treff_test

import (
	"context"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/saslmech"
)

// auth2 is a plugin's authentication protocol in the manner of XEP-0388
// (SASL2): SASL exchanges in its own elements, with no stream restart
// after success. It runs the server's mechanisms through the Negotiation.
type auth2 struct{}

const nsAuth2 = "urn:example:auth2"

func (auth2) Name() string { return "auth2" }

func (a auth2) Setup(ctx context.Context, r *treff.Registry) error {
	r.AddStreamFeature(treff.StreamFeature{Phase: treff.BeforeAuth, Offer: func(n *treff.Negotiation) string {
		var b strings.Builder
		b.WriteString("<auth2 xmlns='" + nsAuth2 + "'>")
		for _, m := range n.SASL().Mechanisms {
			b.WriteString("<mechanism>" + m + "</mechanism>")
		}
		b.WriteString("</auth2>")
		return b.String()
	}})
	r.HandleNegotiation(nsAuth2, treff.NegotiationHandlerFunc(a.handle))
	return nil
}

func (auth2) handle(ctx context.Context, n *treff.Negotiation, el *treff.Nonza) error {
	switch el.Name.Local {
	case "authenticate":
	case "close-please":
		return &treff.StreamError{Condition: "policy-violation", Text: "as asked"}
	case "panic":
		var m map[int]int
		m[1]++
	default:
		return &treff.StreamError{Condition: "unsupported-stanza-type"}
	}
	if n.User().String() != "" {
		return &treff.StreamError{Condition: "policy-violation", Text: "authenticated already"}
	}
	name, _ := el.Attr("mechanism")
	m, ok := n.Mechanism(name)
	if !ok {
		n.Write([]byte("<failure xmlns='" + nsAuth2 + "'><invalid-mechanism/></failure>"))
		return nil
	}
	x := m.Start(ctx, n.SASL())
	var in []byte
	if s := strings.TrimSpace(el.Inner()); s != "" {
		in, _ = base64.StdEncoding.DecodeString(strings.TrimSuffix(strings.TrimPrefix(s, "<initial>"), "</initial>"))
	}
	for {
		out, user, cond, err := n.Step(ctx, m, x, in)
		if err != nil {
			n.Write([]byte("<failure xmlns='" + nsAuth2 + "'><" + cond + "/></failure>"))
			return n.Failed()
		}
		if user.Localpart() != "" {
			if err := n.Authenticated(user); err != nil {
				return err
			}
			return n.Write([]byte("<success xmlns='" + nsAuth2 + "'><authorization-identifier>" + user.String() + "</authorization-identifier></success>"))
		}
		n.Write([]byte("<challenge xmlns='" + nsAuth2 + "'>" + base64.StdEncoding.EncodeToString(out) + "</challenge>"))
		resp, err := n.Next()
		if err != nil {
			return err
		}
		in, _ = base64.StdEncoding.DecodeString(resp.Inner())
	}
}

// TestNegotiationHandler checks a plugin's negotiation step: a
// stream-dependent feature, SASL exchanges through the server's and a
// plugin's mechanisms in the plugin's elements, authentication without a
// restart followed by binding, failures counted, and the ways a handler
// ends a stream.
func TestNegotiationHandler(t *testing.T) {
	tm := tokenMech{streams: make(chan *saslmech.Stream, 8)}
	ts := newTestServer(t, func(s *treff.Server) {
		s.Modules = []treff.Module{auth2{}, moduleFunc(func(r *treff.Registry) { r.AddSASLMechanism(tm) })}
	})
	enc := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	open := func() *raw {
		c := ts.Dial(t, ts.Addr)
		c.StartTLS()
		c.Send(header("localhost"))
		f := c.Expect(`</stream:features>`)
		if !strings.Contains(f, "<auth2 xmlns='urn:example:auth2'><mechanism>X-TOKEN</mechanism><mechanism>SCRAM-SHA-256-PLUS</mechanism><mechanism>SCRAM-SHA-1-PLUS</mechanism><mechanism>SCRAM-SHA-256</mechanism><mechanism>SCRAM-SHA-1</mechanism><mechanism>PLAIN</mechanism></auth2>") {
			t.Fatalf("features lack the stream's auth2: %s", f)
		}
		return c
	}

	// PLAIN with an initial response; then bind on the same stream.
	c := open()
	c.Send("<authenticate xmlns='urn:example:auth2' mechanism='PLAIN'><initial>" + enc("\x00alice\x00alicepw") + "</initial></authenticate>")
	c.Expect(`<success xmlns='urn:example:auth2'><authorization-identifier>alice@localhost</authorization-identifier></success>`)
	c.Send("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>r</resource></bind></iq>")
	c.Expect(`<jid>alice@localhost/r</jid>`)

	// A plugin mechanism with a challenge.
	c = open()
	c.Send("<authenticate xmlns='urn:example:auth2' mechanism='X-TOKEN'/>")
	c.Expect(`<challenge xmlns='urn:example:auth2'>` + enc("token please") + `</challenge>`)
	c.Send("<response xmlns='urn:example:auth2'>" + enc("bob:let-me-in") + "</response>")
	c.Expect(`<authorization-identifier>bob@localhost</authorization-identifier>`)
	<-tm.streams

	// Failures count against MaxAuthFailures (3).
	c = open()
	for i := range 3 {
		c.Send("<authenticate xmlns='urn:example:auth2' mechanism='PLAIN'><initial>" + enc("\x00alice\x00wrong") + "</initial></authenticate>")
		c.Expect(`<failure xmlns='urn:example:auth2'><not-authorized/></failure>`)
		if i == 2 {
			c.Expect(`<policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>`)
		}
	}

	for _, tc := range []struct{ send, want string }{
		{"<close-please xmlns='urn:example:auth2'/>", "<policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>as asked</text>"},
		{"<panic xmlns='urn:example:auth2'/>", "<internal-server-error xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"},
		{"<other xmlns='urn:example:unknown'/>", "<not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"},
	} {
		c = open()
		c.Send(tc.send)
		c.Expect(tc.want)
	}

	for _, ns := range []string{"urn:ietf:params:xml:ns:xmpp-sasl", "urn:ietf:params:xml:ns:xmpp-bind", "jabber:client"} {
		srv := &treff.Server{Hosts: []treff.Host{{Domain: "localhost"}}, Modules: []treff.Module{moduleFunc(func(r *treff.Registry) {
			r.HandleNegotiation(ns, treff.NegotiationHandlerFunc(func(context.Context, *treff.Negotiation, *treff.Nonza) error { return nil }))
		})}}
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("HandleNegotiation(%q) did not panic", ns)
				}
			}()
			srv.Setup()
		}()
	}
}
