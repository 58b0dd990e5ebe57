package main

import (
	"context"
	"encoding/xml"
	"syscall"
	"testing"
	"time"

	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"
)

// The example server runs the IM modules: a message to an offline user is
// stored, delivered after the user's initial presence (through mellium's
// client, an independent implementation) and then deleted, also across a
// restart of the binary.
func TestOfflineMessagesOnExampleServer(t *testing.T) {
	bin := buildBinary(t)
	data := t.TempDir()
	mustRun(t, bin, "", "adduser", "-data", data, "-password", "alicepw", "alice@localhost")
	mustRun(t, bin, "", "adduser", "-data", data, "-password", "bobpw", "bob@localhost")
	s := startServer(t, bin, data)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	alice := s.mustLogin(t, "alice@localhost", "alicepw", false)
	serveMessages(alice) // runs the read loop that SendIQ needs
	msg := stanza.Message{To: jid.MustParse("bob@localhost"), Type: stanza.ChatMessage}
	body := xmlstream.Wrap(xmlstream.Token(xml.CharData("kept for you")), xml.StartElement{Name: xml.Name{Local: "body"}})
	if err := alice.Send(ctx, msg.Wrap(body)); err != nil {
		t.Fatal(err)
	}
	// The server stores it before answering a later IQ from alice.
	roundTrip(ctx, t, alice)
	alice.Close()

	// Restart: offline storage is on disk.
	s.stop(t, syscall.SIGTERM)
	s = startServer(t, bin, data)
	defer s.stop(t, syscall.SIGTERM)

	bob := s.mustLogin(t, "bob@localhost", "bobpw", false)
	bodies, _ := serveMessages(bob)
	roundTrip(ctx, t, bob)
	select {
	case b := <-bodies:
		t.Fatalf("got %q before initial presence", b)
	default:
	}
	if err := bob.Send(ctx, stanza.Presence{}.Wrap(nil)); err != nil {
		t.Fatal(err)
	}
	select {
	case b := <-bodies:
		if b != "kept for you" {
			t.Errorf("body %q", b)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("offline message not delivered\n%s", s.logs)
	}
	bob.Close()

	// Delivered once: a new session gets nothing.
	bob2 := s.mustLogin(t, "bob@localhost", "bobpw", true)
	bodies2, _ := serveMessages(bob2)
	if err := bob2.Send(ctx, stanza.Presence{}.Wrap(nil)); err != nil {
		t.Fatal(err)
	}
	roundTrip(ctx, t, bob2)
	select {
	case b := <-bodies2:
		t.Errorf("delivered twice: %q", b)
	default:
	}
}

// roundTrip makes a round trip to the server (a XEP-0199 ping). The server
// handles a session's stanzas in order and sends what they cause before
// the answer; mellium's Serve loop hands earlier messages to the handler
// before it reads the answer that SendIQ waits for. So, once ping returns,
// a message the server sent before is in serveMessages' channel.
func roundTrip(ctx context.Context, t *testing.T, sess *xmpp.Session) {
	t.Helper()
	r, err := sess.SendIQ(ctx, stanza.IQ{Type: stanza.GetIQ, To: jid.MustParse("localhost")}.Wrap(
		xmlstream.Wrap(nil, xml.StartElement{Name: xml.Name{Space: "urn:xmpp:ping", Local: "ping"}})))
	if err != nil {
		t.Fatal(err)
	}
	// The Serve loop waits until the answer has been read or closed.
	r.Close()
}
