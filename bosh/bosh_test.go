package bosh_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/bosh"
	"github.com/treff-im/treff/trefftest"
	"mellium.im/xmpp/jid"
)

// client speaks BOSH to the handler.
type client struct {
	t   *testing.T
	url string
	sid string
	rid uint64
	// from, if set, is the client address (host:port) the handler sees
	// instead of the loopback one (see setup.watch).
	from string
}

// post sends one raw body and returns the HTTP status and response body.
func (c *client) post(body string) (int, string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, strings.NewReader(body))
	if err != nil {
		c.t.Error(err)
		return 0, ""
	}
	req.Header.Set("Content-Type", "text/xml; charset=utf-8")
	if c.from != "" {
		req.Header.Set(fromHeader, c.from)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Error(err)
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); ct != "text/xml; charset=utf-8" {
		c.t.Errorf("Content-Type %q", ct)
	}
	return resp.StatusCode, string(b)
}

// body is a request with the given rid, extra attributes and payload.
func (c *client) body(rid uint64, attrs, payload string) string {
	b := "<body xmlns='http://jabber.org/protocol/httpbind' rid='" + strconv.FormatUint(rid, 10) + "' sid='" + c.sid + "'" + attrs
	if payload == "" {
		return b + "/>"
	}
	return b + ">" + payload + "</body>"
}

// send posts the next request and returns the response.
func (c *client) send(attrs, payload string) string {
	c.t.Helper()
	c.rid++
	_, resp := c.post(c.body(c.rid, attrs, payload))
	return resp
}

func match(t *testing.T, what, got, pattern string) []string {
	t.Helper()
	m := regexp.MustCompile(pattern).FindStringSubmatch(got)
	if m == nil {
		t.Fatalf("%s: got %q, want a match of %q", what, got, pattern)
	}
	return m
}

type setup struct {
	ts *trefftest.Server
	h  *bosh.Handler
	hs *httptest.Server
	// closed reports the client sessions that end.
	closed trefftest.ClosedSessions
	// taken reports the rid of each request of a session that the
	// handler has taken in (see takenWriter).
	taken chan uint64
}

func newSetup(t *testing.T, h *bosh.Handler, configure ...func(*treff.Server)) *setup {
	closed := make(trefftest.ClosedSessions, 16)
	ts := trefftest.NewServer(t, func(s *treff.Server) {
		s.Modules = []treff.Module{closed}
		for _, f := range configure {
			f(s)
		}
	})
	ts.AddUser(t, "alice", "alicepw")
	ts.AddUser(t, "bob", "bobpw")
	h.Server = ts.Server
	s := &setup{ts: ts, h: h, closed: closed, taken: make(chan uint64, 64)}
	s.hs = httptest.NewServer(s.watch(h))
	t.Cleanup(s.hs.Close)
	return s
}

var ridSID = regexp.MustCompile(`^<body [^>]*?\brid='(\d+)' sid='`)

// fromHeader carries a test client's address: setup.watch makes it the
// request's RemoteAddr, as a reverse proxy's real-IP handling would, so
// that loopback test clients can stand for clients at other addresses.
const fromHeader = "X-Test-Client-Address"

// watch wraps the handler: a request of an existing session (rid and sid)
// gets a takenWriter, so that a test knows when the session holds it; a
// request with fromHeader comes from that address.
func (s *setup) watch(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a := r.Header.Get(fromHeader); a != "" {
			r.RemoteAddr = a
		}
		if r.Method == http.MethodPost {
			b, err := io.ReadAll(r.Body)
			if err != nil {
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(b))
			if m := ridSID.FindSubmatch(b); m != nil {
				rid, _ := strconv.ParseUint(string(m[1]), 10, 64)
				w = &takenWriter{ResponseWriter: w, rid: rid, taken: s.taken}
			}
		}
		h.ServeHTTP(w, r)
	})
}

// takenWriter reports its request's rid when the handler sets the write
// deadline: bosh.Handler does that (through http.ResponseController, so
// that a long poll outlives a short http.Server.WriteTimeout) after the
// session has taken the request in, applied or queued, and before it
// waits for the answer. That is the event "the server holds this
// request"; the handler has no hook of its own for it.
type takenWriter struct {
	http.ResponseWriter
	rid   uint64
	taken chan<- uint64
}

func (w *takenWriter) SetWriteDeadline(t time.Time) error {
	select {
	case w.taken <- w.rid:
	default:
	}
	return http.NewResponseController(w.ResponseWriter).SetWriteDeadline(t)
}

func (w *takenWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// waitTaken waits until the session has taken the request with the rid
// (see takenWriter), skipping the reports of other requests.
func (s *setup) waitTaken(t *testing.T, rid uint64) {
	t.Helper()
	timeout := time.NewTimer(5 * time.Second)
	defer timeout.Stop()
	for {
		select {
		case got := <-s.taken:
			if got == rid {
				return
			}
		case <-timeout.C:
			t.Fatalf("the handler did not take the request with rid %d", rid)
		}
	}
}

func (s *setup) client(t *testing.T) *client {
	return &client{t: t, url: s.hs.URL + "/http-bind", rid: 1000}
}

// create opens a session and returns the creation response.
func (c *client) create(attrs string) string {
	c.t.Helper()
	c.rid++
	_, resp := c.post("<body xmlns='http://jabber.org/protocol/httpbind' xmlns:xmpp='urn:xmpp:xbosh' rid='" + strconv.FormatUint(c.rid, 10) +
		"' to='localhost' xml:lang='en' wait='60' hold='1' ver='1.6' xmpp:version='1.0'" + attrs + "/>")
	if m := regexp.MustCompile(` sid='([^']+)'`).FindStringSubmatch(resp); m != nil {
		c.sid = m[1]
	}
	return resp
}

// login creates a session, authenticates with PLAIN, restarts and binds
// resource.
func (c *client) login(user, pass, resource string) {
	c.t.Helper()
	resp := c.create("")
	match(c.t, "creation", resp, `^<body xmlns='http://jabber.org/protocol/httpbind' xmlns:xmpp='urn:xmpp:xbosh' sid='[^']+' wait='\d+' requests='2' hold='1' inactivity='\d+' polling='2' maxpause='\d+' ver='1.6' from='localhost' authid='[^']+' xmpp:version='1.0' xmpp:restartlogic='true'><stream:features xmlns:stream='http://etherx.jabber.org/streams'>.*PLAIN.*</stream:features></body>$`)
	if strings.Contains(resp, "starttls") {
		c.t.Errorf("STARTTLS offered over BOSH: %s", resp)
	}
	resp = c.send("", trefftest.PlainAuth(user, pass))
	match(c.t, "auth", resp, `^<body xmlns='http://jabber.org/protocol/httpbind'><success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/></body>$`)
	resp = c.send(" xmlns:xmpp='urn:xmpp:xbosh' to='localhost' xml:lang='en' xmpp:restart='true'", "")
	match(c.t, "restart", resp, `^<body xmlns='http://jabber.org/protocol/httpbind'><stream:features xmlns:stream='http://etherx.jabber.org/streams'>.*<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>.*</stream:features></body>$`)
	resp = c.send("", "<iq xmlns='jabber:client' type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>"+resource+"</resource></bind></iq>")
	match(c.t, "bind", resp, `<iq xmlns='jabber:client' type='result' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>`+user+`@localhost/`+resource+`</jid></bind></iq>`)
}

// async posts a request in the background; the channel gets the response.
func (c *client) async(rid uint64, attrs, payload string) <-chan string {
	ch := make(chan string, 1)
	body := c.body(rid, attrs, payload)
	go func() {
		_, resp := c.post(body)
		ch <- resp
	}()
	return ch
}

func recv(t *testing.T, what string, ch <-chan string, within time.Duration) string {
	t.Helper()
	select {
	case s := <-ch:
		return s
	case <-time.After(within):
		t.Fatalf("%s: no response within %v", what, within)
		return ""
	}
}

// TestLoginAndChat: a whole login over BOSH (SASL PLAIN, restart, bind),
// a chat with a TCP client, a long poll that returns when a message
// arrives, and the client's terminate.
func TestLoginAndChat(t *testing.T) {
	s := newSetup(t, &bosh.Handler{})
	c := s.client(t)
	c.login("alice", "alicepw", "web")
	bob := s.ts.Login(t, "bob", "bobpw", "desk")
	// The server counts each session under its transport.
	if st := s.ts.Stats(); st.Sessions.BOSH != 1 || st.Sessions.TCP != 1 || st.Sessions.Other != 0 {
		t.Errorf("Stats().Sessions = %+v, want one BOSH and one TCP session", st.Sessions)
	}

	// A held poll returns as soon as a message arrives.
	c.rid++
	poll := c.async(c.rid, "", "")
	s.waitTaken(t, c.rid)
	select {
	case r := <-poll:
		t.Fatalf("the poll returned at once: %s", r)
	default: // and if it is on its way, it is not the message matched below
	}
	bob.Send("<message to='alice@localhost/web' id='m1'><body>hi &lt;alice&gt;</body></message>")
	got := recv(t, "long poll", poll, 5*time.Second)
	match(t, "message", got, `^<body xmlns='http://jabber.org/protocol/httpbind'><message xmlns='jabber:client' from='bob@localhost/desk' to='alice@localhost/web' id='m1'><body>hi &lt;alice&gt;</body></message></body>$`)

	// With a poll held, a request with a message answers the poll (empty)
	// and is held itself.
	c.rid++
	poll = c.async(c.rid, "", "")
	s.waitTaken(t, c.rid)
	c.rid++
	send := c.async(c.rid, "", "<message xmlns='jabber:client' to='bob@localhost/desk' id='m2'><body>hi 'bob'</body></message>")
	match(t, "held poll", recv(t, "held poll", poll, 5*time.Second), `^<body xmlns='http://jabber.org/protocol/httpbind'/>$`)
	bob.Expect(`<message from='alice@localhost/web' to='bob@localhost/desk' id='m2'><body>hi 'bob'</body></message>`)
	bob.Send("<message to='alice@localhost/web' id='m3'><body>back</body></message>")
	match(t, "reply", recv(t, "reply", send, 5*time.Second), `id='m3'><body>back</body></message></body>$`)

	// The client terminates, with a last presence.
	resp := c.send(" type='terminate'", "<presence xmlns='jabber:client' type='unavailable'/>")
	match(t, "terminate", resp, `^<body xmlns='http://jabber.org/protocol/httpbind' type='terminate'/>$`)
	s.closed.Wait(t, "alice@localhost/web")
	if st := s.ts.Stats(); st.Sessions.BOSH != 0 || st.SessionsBound.BOSH != 1 {
		t.Errorf("after terminate: Sessions %+v, SessionsBound %+v", st.Sessions, st.SessionsBound)
	}
	resp = c.send("", "")
	match(t, "after terminate", resp, `type='terminate' condition='item-not-found'`)
}

// TestRIDs: out-of-order requests are applied in rid order, a repeated
// rid gets the same response again, a rid outside the window or an
// unknown sid terminates.
func TestRIDs(t *testing.T) {
	s := newSetup(t, &bosh.Handler{})
	c := s.client(t)
	c.login("alice", "alicepw", "web")
	bob := s.ts.Login(t, "bob", "bobpw", "desk")

	// rid+2 arrives before rid+1: held back until rid+1 comes.
	late := c.async(c.rid+2, "", "<message xmlns='jabber:client' to='bob@localhost/desk' id='second'><body>2</body></message>")
	s.waitTaken(t, c.rid+2)
	if p := bob.Sync(); strings.Contains(p, "<message") {
		t.Fatalf("bob got something before the gap was filled: %q", p)
	}
	early := c.async(c.rid+1, "", "<message xmlns='jabber:client' to='bob@localhost/desk' id='first'><body>1</body></message>")
	c.rid += 2
	got := bob.Expect(`id='second'`)
	if !strings.Contains(got, "id='first'") || strings.Index(got, "id='first'") > strings.Index(got, "id='second'") {
		t.Errorf("bob got the messages out of order: %q", got)
	}
	recv(t, "rid+1", early, 5*time.Second)
	// Nothing to say: the later one is held; a ping answers it.
	c.rid++
	ping := c.async(c.rid, "", "<iq xmlns='jabber:client' type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>")
	recv(t, "rid+2", late, 5*time.Second)
	pong := recv(t, "ping", ping, 5*time.Second)
	match(t, "ping", pong, `<iq xmlns='jabber:client' [^>]*id='p1'`)

	// The same rid again: the same response, and the ping is not sent
	// twice (the next request has nothing).
	_, again := c.post(c.body(c.rid, "", "<iq xmlns='jabber:client' type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>"))
	if again != pong {
		t.Errorf("repeated rid: %q, want %q", again, pong)
	}
	c.rid++
	next := c.async(c.rid, " pause='1'", "")
	match(t, "paused poll", recv(t, "paused poll", next, 5*time.Second), `^<body xmlns='http://jabber.org/protocol/httpbind'/>$`)

	// An unknown sid.
	other := s.client(t)
	other.sid = "nonesuch"
	match(t, "unknown sid", other.send("", ""), `^<body xmlns='http://jabber.org/protocol/httpbind' type='terminate' condition='item-not-found'/>$`)

	// A rid far ahead ends the session.
	c.rid += 10
	match(t, "rid outside the window", c.send("", ""), `type='terminate' condition='item-not-found'`)
	s.closed.Wait(t, "alice@localhost/web")
	match(t, "after the end", c.send("", ""), `type='terminate' condition='item-not-found'`)
}

// TestInactivity: a session without requests for 'inactivity' ends, and a
// held request keeps it alive past that limit. The timeouts are the thing
// under test and the handler takes no clock, so the test waits for the
// session's end (an event) and checks a lower bound on when it came: load
// only makes things later.
func TestInactivity(t *testing.T) {
	// inactivity is long enough that no stall between the login's
	// requests on a loaded machine comes near it.
	const wait, inactivity = time.Second, 4 * time.Second
	s := newSetup(t, &bosh.Handler{Inactivity: inactivity, Wait: wait})
	c := s.client(t)
	c.login("alice", "alicepw", "web")
	// A held request keeps the session alive past the inactivity limit:
	// it is answered, empty and not with a terminate, after 'wait'.
	c.rid++
	sent := time.Now()
	poll := c.async(c.rid, "", "")
	match(t, "poll after wait", recv(t, "poll", poll, 5*time.Second), `^<body xmlns='http://jabber.org/protocol/httpbind'/>$`)
	// Then, with no request, the session ends 'inactivity' later.
	s.closed.Wait(t, "alice@localhost/web")
	if d := time.Since(sent); d < wait+inactivity {
		t.Errorf("the session ended %v after the poll was sent, before wait (%v) and inactivity (%v) had passed", d, wait, inactivity)
	}
	match(t, "after inactivity", c.send("", ""), `type='terminate' condition='item-not-found'`)
}

// TestServerCloses: a stream error from the server terminates the session
// with remote-stream-error and the error; an unknown host is host-unknown.
func TestServerCloses(t *testing.T) {
	s := newSetup(t, &bosh.Handler{})
	c := s.client(t)
	c.login("alice", "alicepw", "web")
	c.rid++
	poll := c.async(c.rid, "", "")
	s.waitTaken(t, c.rid)
	s.ts.Server.CloseUser(jid.MustParse("alice@localhost"), "policy-violation", "bye")
	got := recv(t, "terminate", poll, 5*time.Second)
	match(t, "terminate", got, `^<body xmlns='http://jabber.org/protocol/httpbind' type='terminate' condition='remote-stream-error'><stream:error xmlns:stream='http://etherx.jabber.org/streams'><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>bye</text></stream:error></body>$`)

	d := s.client(t)
	d.rid++
	_, resp := d.post("<body xmlns='http://jabber.org/protocol/httpbind' rid='7' to='elsewhere.example' wait='60' hold='1' ver='1.11'/>")
	match(t, "unknown host", resp, `^<body xmlns='http://jabber.org/protocol/httpbind' type='terminate' condition='host-unknown'><stream:error`)
}

// TestHTTP: GET, OPTIONS (CORS), malformed and oversized bodies.
func TestHTTP(t *testing.T) {
	s := newSetup(t, &bosh.Handler{AllowOrigin: "https://chat.example", MaxBodySize: 1024})
	resp, err := http.Get(s.hs.URL)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), "BOSH") {
		t.Errorf("GET: %d %q", resp.StatusCode, b)
	}
	req, _ := http.NewRequest(http.MethodOptions, s.hs.URL, nil)
	req.Header.Set("Origin", "https://chat.example")
	req.Header.Set("Access-Control-Request-Method", "POST")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	h := resp.Header
	if resp.StatusCode/100 != 2 || h.Get("Access-Control-Allow-Origin") != "https://chat.example" ||
		h.Get("Access-Control-Allow-Methods") != "POST, OPTIONS" || h.Get("Access-Control-Allow-Headers") != "Content-Type" {
		t.Errorf("OPTIONS: %d %v", resp.StatusCode, h)
	}
	c := s.client(t)
	for _, tc := range []struct{ body, cond string }{
		{"not xml", "bad-request"},
		{"<body xmlns='urn:other' rid='1' to='localhost'/>", "bad-request"},
		{"<body xmlns='http://jabber.org/protocol/httpbind' to='localhost'/>", "bad-request"},
		{"<body xmlns='http://jabber.org/protocol/httpbind' rid='1' ver='1.6'/>", "improper-addressing"},
		{"<body xmlns='http://jabber.org/protocol/httpbind' rid='1' to='localhost'>" + strings.Repeat("x", 2000) + "</body>", "policy-violation"},
	} {
		status, got := c.post(tc.body)
		if status != 200 || got != "<body xmlns='http://jabber.org/protocol/httpbind' type='terminate' condition='"+tc.cond+"'/>" {
			t.Errorf("%.40q: %d %q, want %s", tc.body, status, got, tc.cond)
		}
	}
}
