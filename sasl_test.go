package treff_test

import (
	"context"
	"encoding/base64"
	"strings"
	"testing"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/saslmech"
)

// tokenMech is a plugin's SASL mechanism: the client sends
// "localpart:token" and is in if the token is "let-me-in". It records
// what it learnt of the stream.
type tokenMech struct {
	streams chan *saslmech.Stream
}

func (tokenMech) Name() string { return "X-TOKEN" }

func (m tokenMech) Start(ctx context.Context, s *saslmech.Stream) saslmech.Exchange {
	m.streams <- s
	return tokenExchange{s}
}

type tokenExchange struct{ s *saslmech.Stream }

func (x tokenExchange) Step(ctx context.Context, in []byte) ([]byte, jid.JID, error) {
	if in == nil {
		return []byte("token please"), jid.JID{}, nil
	}
	local, tok, ok := strings.Cut(string(in), ":")
	if !ok {
		return nil, jid.JID{}, &saslmech.Error{Condition: "malformed-request"}
	}
	if tok != "let-me-in" {
		return nil, jid.JID{}, treff.ErrNotAuthorized
	}
	user, err := x.s.Account(local)
	return []byte("welcome"), user, err
}

// neverMech declines every stream.
type neverMech struct{}

func (neverMech) Name() string                                              { return "X-NEVER" }
func (neverMech) Offer(*saslmech.Stream) bool                               { return false }
func (neverMech) Start(context.Context, *saslmech.Stream) saslmech.Exchange { return nil }

// panicMech panics in its exchange.
type panicMech struct{}

func (panicMech) Name() string { return "X-PANIC" }
func (panicMech) Start(context.Context, *saslmech.Stream) saslmech.Exchange {
	return panicExchange{}
}

type panicExchange struct{}

func (panicExchange) Step(context.Context, []byte) ([]byte, jid.JID, error) {
	var m map[int]int
	m[0]++
	return nil, jid.JID{}, nil
}

// TestSASLMechanismPlugin checks that a module's mechanism is offered
// first, runs challenges, authenticates, sees the stream's TLS state, and
// that a declining or panicking mechanism harms nothing.
func TestSASLMechanismPlugin(t *testing.T) {
	tm := tokenMech{streams: make(chan *saslmech.Stream, 4)}
	ts := newTestServer(t, func(s *treff.Server) {
		s.Modules = []treff.Module{moduleFunc(func(r *treff.Registry) {
			r.AddSASLMechanism(tm)
			r.AddSASLMechanism(neverMech{})
			r.AddSASLMechanism(panicMech{})
		})}
	})
	c := ts.Dial(t, ts.Addr)
	c.StartTLS()
	c.Send(header("localhost"))
	feats := c.Expect(`</stream:features>`)
	want := "<mechanism>X-TOKEN</mechanism><mechanism>X-PANIC</mechanism><mechanism>SCRAM-SHA-256-PLUS</mechanism><mechanism>SCRAM-SHA-1-PLUS</mechanism><mechanism>SCRAM-SHA-256</mechanism><mechanism>SCRAM-SHA-1</mechanism><mechanism>PLAIN</mechanism>"
	if !strings.Contains(feats, want) {
		t.Fatalf("features %q lack %q", feats, want)
	}
	auth := func(mech, data string) {
		c.Send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='" + mech + "'>" + data + "</auth>")
	}
	enc := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

	auth("X-NEVER", "")
	c.Expect(`<invalid-mechanism/>`)
	auth("X-PANIC", enc("x"))
	c.Expect(`<temporary-auth-failure/>`)
	// A challenge, then a wrong token.
	auth("X-TOKEN", "")
	c.Expect(`<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>` + enc("token please") + `</challenge>`)
	c.Send("<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>" + enc("alice:guess") + "</response>")
	c.Expect(`<not-authorized/>`)
	s := <-tm.streams
	if s.Host != "localhost" || s.TLS == nil || !s.TLS.HandshakeComplete {
		t.Errorf("saslmech.Stream = %+v, want host localhost and a completed TLS state", s)
	} else if _, err := s.TLS.ExportKeyingMaterial("EXPORTER-Channel-Binding", nil, 32); err != nil {
		t.Errorf("no channel-binding data from the stream's TLS state: %v", err)
	}
	if strings.Join(s.Mechanisms, " ") != "X-TOKEN X-PANIC SCRAM-SHA-256-PLUS SCRAM-SHA-1-PLUS SCRAM-SHA-256 SCRAM-SHA-1 PLAIN" {
		t.Errorf("saslmech.Stream.Mechanisms = %v", s.Mechanisms)
	}
	if strings.Join(s.ChannelBindings, " ") != "tls-exporter tls-server-end-point" || s.Certificate == nil {
		t.Errorf("saslmech.Stream.ChannelBindings = %v, Certificate %v; want both types and the certificate", s.ChannelBindings, s.Certificate != nil)
	}
	// The right token, as an initial response; success carries data.
	auth("X-TOKEN", enc("alice:let-me-in"))
	c.Expect(`<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>` + enc("welcome") + `</success>`)
	<-tm.streams
	c.Send(header("localhost"))
	c.Expect(`</stream:features>`)
	c.Send("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
	c.Expect(`<jid>alice@localhost/`)
}

// TestSASLMechanismConflict checks that two mechanisms of one name are a
// start-up error (a panic, as for IQ handlers).
func TestSASLMechanismConflict(t *testing.T) {
	srv := &treff.Server{
		Hosts: []treff.Host{{Domain: "localhost"}},
		Modules: []treff.Module{moduleFunc(func(r *treff.Registry) {
			r.AddSASLMechanism(neverMech{})
			r.AddSASLMechanism(neverMech{})
		})},
	}
	defer func() {
		if r := recover(); r == nil {
			t.Error("registering X-NEVER twice did not panic")
		}
	}()
	srv.Setup()
}
