package motd_test

import (
	"context"
	"encoding/xml"
	"net"
	"testing"
	"time"

	"mellium.im/sasl"
	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/examples/motd"
	"github.com/treff-im/treff/trefftest"
)

// headline is the part of a message the test checks.
type headline struct {
	Type string `xml:"type,attr"`
	From string `xml:"from,attr"`
	To   string `xml:"to,attr"`
	Body string `xml:"body"`
}

// login logs in with mellium's client over STARTTLS and returns the
// session and a channel receiving every message it gets.
func login(t *testing.T, ts *trefftest.Server, user, pass string) (*xmpp.Session, <-chan headline) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := net.DialTimeout("tcp", ts.Addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	s, err := xmpp.NewClientSession(ctx, jid.MustParse(user), conn,
		xmpp.StartTLS(ts.TLSConfig()),
		xmpp.SASL("", pass, sasl.ScramSha256),
		xmpp.BindResource(),
	)
	if err != nil {
		conn.Close()
		t.Fatalf("login %s: %v", user, err)
	}
	msgs := make(chan headline, 10)
	go s.Serve(xmpp.HandlerFunc(func(r xmlstream.TokenReadEncoder, start *xml.StartElement) error {
		if start.Name.Local != "message" {
			return nil
		}
		var m headline
		d := xml.NewTokenDecoder(xmlstream.MultiReader(xmlstream.Token(*start), r))
		if err := d.Decode(&m); err != nil {
			return err
		}
		msgs <- m
		return nil
	}))
	t.Cleanup(func() { s.Close(); conn.Close() })
	return s, msgs
}

func TestMOTD(t *testing.T) {
	const text = `Welcome <friends> & "neighbours" – it's Treff!`
	ts := trefftest.NewServer(t, func(srv *treff.Server) {
		srv.Modules = append(srv.Modules, motd.New(text))
	})
	ts.AddUser(t, "alice", "alicepw")
	s, msgs := login(t, ts, "alice@localhost", "alicepw")
	select {
	case m := <-msgs:
		if m.Type != "headline" || m.From != "localhost" || m.To != s.LocalAddr().String() || m.Body != text {
			t.Errorf("got %+v, want a headline from localhost to %s with body %q", m, s.LocalAddr(), text)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no message of the day within 10s")
	}
	// A second session gets its own.
	s2, msgs2 := login(t, ts, "alice@localhost", "alicepw")
	select {
	case m := <-msgs2:
		if m.To != s2.LocalAddr().String() || m.Body != text {
			t.Errorf("second session got %+v", m)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no message of the day for the second session within 10s")
	}
}

func TestEmptyTextSendsNothing(t *testing.T) {
	ts := trefftest.NewServer(t, func(srv *treff.Server) {
		srv.Modules = append(srv.Modules, &motd.Module{})
	})
	ts.AddUser(t, "alice", "alicepw")
	_, msgs := login(t, ts, "alice@localhost", "alicepw")
	select {
	case m := <-msgs:
		t.Errorf("got %+v, want nothing", m)
	case <-time.After(300 * time.Millisecond):
	}
}
