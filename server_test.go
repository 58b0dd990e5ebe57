package treff_test

import (
	"context"
	"crypto/tls"
	"encoding/xml"
	"net"
	"strings"
	"testing"
	"time"

	"mellium.im/sasl"
	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"github.com/treff-im/treff/storage"
	"github.com/treff-im/treff/trefftest"
)

// login connects with mellium's client (an independent implementation)
// over STARTTLS.
func login(t *testing.T, ts *trefftest.Server, user, pass string, mech sasl.Mechanism) *xmpp.Session {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := net.Dial("tcp", ts.Addr)
	if err != nil {
		t.Fatal(err)
	}
	j := jid.MustParse(user)
	s, err := xmpp.NewClientSession(ctx, j, conn,
		xmpp.StartTLS(ts.TLSConfig()),
		xmpp.SASL("", pass, mech),
		xmpp.BindResource(),
	)
	if err != nil {
		conn.Close()
		t.Fatalf("login %s: %v", user, err)
	}
	t.Cleanup(func() { s.Close(); conn.Close() })
	return s
}

func TestMelliumClientChat(t *testing.T) {
	ts := trefftest.NewServer(t, nil)
	ts.AddUser(t, "alice", "alicepw")
	ts.AddUser(t, "bob", "bobpw")
	for _, mech := range []sasl.Mechanism{sasl.ScramSha256, sasl.ScramSha1, sasl.Plain} {
		t.Run(mech.Name, func(t *testing.T) {
			alice := login(t, ts, "alice@localhost", "alicepw", mech)
			bob := login(t, ts, "bob@localhost", "bobpw", mech)
			got := make(chan string, 1)
			go bob.Serve(xmpp.HandlerFunc(func(r xmlstream.TokenReadEncoder, start *xml.StartElement) error {
				if start.Name.Local != "message" {
					return nil
				}
				for _, a := range start.Attr {
					if a.Name.Local == "from" {
						got <- a.Value
					}
				}
				return nil
			}))
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			// Available presence so that bob's session may receive bare-JID messages.
			if err := bob.Send(ctx, stanza.Presence{}.Wrap(nil)); err != nil {
				t.Fatal(err)
			}
			// The answer to an IQ (an error: no ping module) proves the
			// presence before it was processed.
			resp, err := bob.SendIQElement(ctx, xmlstream.Wrap(nil, xml.StartElement{Name: xml.Name{Space: "urn:xmpp:ping", Local: "ping"}}),
				stanza.IQ{Type: stanza.GetIQ, To: jid.MustParse("localhost")})
			if err != nil {
				t.Fatal(err)
			}
			resp.Close()
			msg := stanza.Message{To: jid.MustParse("bob@localhost"), Type: stanza.ChatMessage}
			if err := alice.Send(ctx, msg.Wrap(xmlstream.Wrap(xmlstream.Token(xml.CharData("hi")), xml.StartElement{Name: xml.Name{Local: "body"}}))); err != nil {
				t.Fatal(err)
			}
			select {
			case from := <-got:
				if !strings.HasPrefix(from, "alice@localhost/") {
					t.Errorf("from = %q", from)
				}
			case <-ctx.Done():
				t.Fatal("bob got nothing")
			}
		})
	}
}

var _ = tls.VersionTLS12

// A login records its day in the account, once a day.
func TestLastLoginRecorded(t *testing.T) {
	ts := newTestServer(t, nil)
	ctx := context.Background()
	if a, _ := ts.Store.Account(ctx, "alice@localhost"); !a.LastLogin.IsZero() {
		t.Fatalf("LastLogin before any login: %v", a.LastLogin)
	}
	ts.Login(t, "alice", "alicepw", "r")
	a, err := ts.Store.Account(ctx, "alice@localhost")
	if err != nil || !a.LastLogin.Equal(storage.Day(time.Now())) {
		t.Errorf("LastLogin after a login: %v %v, want today", a.LastLogin, err)
	}
	if b, _ := ts.Store.Account(ctx, "bob@localhost"); !b.LastLogin.IsZero() {
		t.Errorf("bob's LastLogin: %v", b.LastLogin)
	}
}
