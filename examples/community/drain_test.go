package main

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"testing"
	"time"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/sm"
	"github.com/treff-im/treff/trefftest"
)

// TestDrain: draining closes the client listeners it was given, turns
// /health to 503 "draining", refuses WebSocket requests, lets a stream management client acknowledge
// before its stream ends with see-other-host, ends the others' streams
// so too, and closes a stream that binds afterwards at once.
func TestDrain(t *testing.T) {
	cfg := Default()
	cfg.DrainSeeOtherHost = "xmpp.example.org:5222"
	cfg.DrainAckWait = 5 * time.Second
	var d *drainer
	ts := trefftest.NewServer(t, func(s *treff.Server) {
		s.Modules = append(s.Modules, &sm.Module{})
		d = newDrainer(cfg, s, slog.New(slog.NewTextHandler(io.Discard, nil)))
		s.Modules = append(s.Modules, d)
	})
	ts.AddUser(t, "alice", "alicepw")
	ts.AddUser(t, "bob", "bobpw")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	d.addListener(l)

	w, err := newWeb(cfg, ts.Server, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.drain = d
	health := func() (int, string) {
		rec := httptest.NewRecorder()
		w.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/health", nil))
		return rec.Code, rec.Body.String()
	}
	if code, body := health(); code != 200 || body != "ok\n" {
		t.Errorf("/health before: %d %q", code, body)
	}

	alice := ts.Login(t, "alice", "alicepw", "phone")
	alice.Send("<enable xmlns='urn:xmpp:sm:3'/>")
	alice.Expect(`<enabled xmlns='urn:xmpp:sm:3'/>`)
	bob := ts.Login(t, "bob", "bobpw", "desk")
	bob.Send("<message to='alice@localhost/phone' id='m1' type='chat'><body>hi</body></message>")
	alice.Expect(`id='m1'.*</message>`)

	drained := make(chan int, 1)
	go func() { drained <- d.drain() }()
	// The stream management client is asked first, and its stream stays
	// open until it answers.
	alice.Expect(regexp.QuoteMeta("<a xmlns='urn:xmpp:sm:3' h='0'/><r xmlns='urn:xmpp:sm:3'/>"))
	const seeOther = "<stream:error><see-other-host xmlns='urn:ietf:params:xml:ns:xmpp-streams'>xmpp.example.org:5222</see-other-host></stream:error>"
	bob.Expect(regexp.QuoteMeta(seeOther))
	if code, body := health(); code != http.StatusServiceUnavailable || body != "draining\n" {
		t.Errorf("/health while draining: %d %q", code, body)
	}
	rec := httptest.NewRecorder()
	w.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/xmpp-websocket", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("a WebSocket request while draining: %d, want 503", rec.Code)
	}
	if _, err := l.Accept(); err == nil {
		t.Error("the client listener still accepts")
	}
	select {
	case n := <-drained:
		t.Fatalf("drain returned (%d) before the stream management client answered", n)
	default:
	}
	alice.Send("<a xmlns='urn:xmpp:sm:3' h='1'/>")
	alice.Expect(regexp.QuoteMeta(seeOther))
	if n := <-drained; n != 2 {
		t.Errorf("drain closed %d streams, want 2", n)
	}
	// A stream binding now is sent away at once; a second drain waits for
	// nothing and says the same.
	carol := ts.Login(t, "bob", "bobpw", "late")
	carol.Expect(regexp.QuoteMeta(seeOther))
	if n := d.drain(); n != 2 {
		t.Errorf("second drain: %d", n)
	}
}
