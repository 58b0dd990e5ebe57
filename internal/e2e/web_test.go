package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/treff-im/treff/trefftest"
)

// The tests in this file use the HTTP side of the example server binary:
// XMPP over WebSocket (RFC 7395) with xmpp.js (js/ws.mjs) talking to a
// slixmpp user on TCP, connection discovery (XEP-0156), and the status
// page with the live registration policy. webdriver_test.go adds
// Converse.js in a browser.

// webProc is the example server with its http and https listeners.
type webProc struct {
	*communityProc
	http  string // plain HTTP, loopback
	https string // HTTPS, with the server's certificate (DATA/cert.pem)
}

// startWebCommunity starts the binary like startCommunity, with its http
// and https listeners on fresh loopback ports and the extra flags; if a
// port was taken in the meantime, it tries again with others.
func startWebCommunity(t *testing.T, bin, data string, flags ...string) *webProc {
	t.Helper()
	for try := 1; ; try++ {
		w := &webProc{http: trefftest.FreeAddr(t), https: trefftest.FreeAddr(t)}
		args := append([]string{"-http", w.http, "-https", w.https}, flags...)
		p, err := tryStartCommunity(t, withFlags(t, bin, args...), data)
		if err == nil {
			err = waitAccepts(w.http, w.https)
		}
		if err == nil {
			w.communityProc = p
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("server output:\n%s", p.logs)
				}
			})
			return w
		}
		if try == 3 || !strings.Contains(p.logs.String(), "address already in use") {
			t.Fatalf("%v\nserver output:\n%s", err, p.logs)
		}
		p.cmd.Process.Kill()
		<-p.done
	}
}

// waitAccepts waits until every address accepts connections (at most 10s).
func waitAccepts(addrs ...string) error {
	deadline := time.Now().Add(10 * time.Second)
	for _, a := range addrs {
		for !accepts(a) {
			if time.Now().After(deadline) {
				return fmt.Errorf("%s does not accept connections", a)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

// httpsClient trusts only the server's self-signed certificate.
func httpsClient(t *testing.T, certFile string) *http.Client {
	t.Helper()
	pem, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("no certificate in %s", certFile)
	}
	return &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// get fetches url and fails the test unless the status is 200.
func get(t *testing.T, c *http.Client, url string) (string, http.Header) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s\n%s", url, resp.Status, b)
	}
	return string(b), resp.Header
}

// bigBody is a message body of exactly size bytes of UTF-8 text, with
// characters XML escapes (<, &, quotes) and multi-byte ones, numbered so
// that a lost or repeated piece shows.
func bigBody(tag string, size int) string {
	var b strings.Builder
	for i := 0; b.Len() < size; i++ {
		fmt.Fprintf(&b, "%s %05d <&'\"> grüße ✓ ", tag, i)
	}
	s := b.String()[:size]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1] + "."
	}
	return s
}

// bgClient is a client program that runs while the test does other
// things: its JSON event lines are read as they are printed.
type bgClient struct {
	name   string
	argv   []string
	cmd    *exec.Cmd
	stderr *trefftest.LogBuffer
	done   chan struct{} // closed after stdout ended and the program exited
	err    error         // of Wait, valid after done

	mu    sync.Mutex
	es    events
	lines bytes.Buffer
	more  chan struct{} // signaled (capacity 1) on each new event
}

// startClient starts program with argv; it is killed when the test ends
// if it still runs.
func startClient(t *testing.T, name string, env []string, program string, argv ...string) *bgClient {
	t.Helper()
	c := &bgClient{name: name, argv: argv, stderr: new(trefftest.LogBuffer), done: make(chan struct{}), more: make(chan struct{}, 1)}
	c.cmd = exec.Command(program, argv...)
	c.cmd.Env = env
	c.cmd.Stderr = c.stderr
	out, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			var e event
			jerr := json.Unmarshal(line, &e)
			c.mu.Lock()
			c.lines.Write(line)
			c.lines.WriteByte('\n')
			if jerr == nil {
				e.raw = slices.Clone(line)
				c.es = append(c.es, e)
			} else {
				c.es = append(c.es, event{Event: "not_json", raw: slices.Clone(line)})
			}
			c.mu.Unlock()
			select {
			case c.more <- struct{}{}:
			default:
			}
		}
		io.Copy(io.Discard, out)
		c.err = c.cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(func() {
		select {
		case <-c.done:
		default:
			c.cmd.Process.Kill()
			<-c.done
		}
	})
	return c
}

func (c *bgClient) report() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return fmt.Sprintf("args: %q\nstdout:\n%s\nstderr:\n%s", c.argv, c.lines.String(), c.stderr)
}

// waitEvent waits at most d for an event of the given kind and returns
// it; it fails the test if the program ends or prints an error first.
func (c *bgClient) waitEvent(t *testing.T, kind string, d time.Duration) event {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		c.mu.Lock()
		for _, e := range c.es {
			if e.Event == kind {
				c.mu.Unlock()
				return e
			}
			if e.Event == "error" || e.Event == "timeout" || e.Event == "not_json" {
				c.mu.Unlock()
				t.Fatalf("%s failed before %q:\n%s", c.name, kind, c.report())
			}
		}
		c.mu.Unlock()
		select {
		case <-c.more:
		case <-c.done:
			select {
			case <-c.more: // a last line, looked at on the next round
			default:
				t.Fatalf("%s ended (%v) before %q:\n%s", c.name, c.err, kind, c.report())
			}
		case <-timer.C:
			t.Fatalf("%s: no %q within %v:\n%s", c.name, kind, d, c.report())
		}
	}
}

// finish waits at most d for the program to exit and checks that it
// exited 0 after a "done" event; it returns all its events.
func (c *bgClient) finish(t *testing.T, d time.Duration) events {
	t.Helper()
	select {
	case <-c.done:
	case <-time.After(d):
		c.cmd.Process.Kill()
		<-c.done
		t.Fatalf("%s did not finish within %v (killed):\n%s", c.name, d, c.report())
	}
	c.mu.Lock()
	es := slices.Clone(c.es)
	c.mu.Unlock()
	if c.err != nil || len(es) == 0 || es[len(es)-1].Event != "done" {
		t.Fatalf("%s exited with %v, want 0 after a done event:\n%s", c.name, c.err, c.report())
	}
	t.Logf("%s:\n%s", c.name, c.report())
	return es
}

// checkHostMeta checks connection discovery (XEP-0156) on base (http or
// https): host-meta (XRD) and host-meta.json (JRD) both list the
// WebSocket endpoint wsURL.
func checkHostMeta(t *testing.T, c *http.Client, base, wsURL string) {
	t.Helper()
	const rel = "urn:xmpp:alt-connections:websocket"
	body, h := get(t, c, base+"/.well-known/host-meta.json")
	if ct := h.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("host-meta.json: Content-Type %q, want application/json", ct)
	}
	if h.Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("host-meta.json: Access-Control-Allow-Origin %q, want *", h.Get("Access-Control-Allow-Origin"))
	}
	var jrd struct {
		Links []struct{ Rel, Href string } `json:"links"`
	}
	if err := json.Unmarshal([]byte(body), &jrd); err != nil {
		t.Fatalf("host-meta.json: %v\n%s", err, body)
	}
	var hrefs []string
	for _, l := range jrd.Links {
		if l.Rel == rel {
			hrefs = append(hrefs, l.Href)
		}
	}
	if !slices.Equal(hrefs, []string{wsURL}) {
		t.Errorf("host-meta.json: websocket links %q, want [%s]\n%s", hrefs, wsURL, body)
	}

	body, h = get(t, c, base+"/.well-known/host-meta")
	if ct := h.Get("Content-Type"); !strings.HasPrefix(ct, "application/xrd+xml") {
		t.Errorf("host-meta: Content-Type %q, want application/xrd+xml", ct)
	}
	var xrd struct {
		XMLName xml.Name `xml:"http://docs.oasis-open.org/ns/xri/xrd-1.0 XRD"`
		Links   []struct {
			Rel  string `xml:"rel,attr"`
			Href string `xml:"href,attr"`
		} `xml:"Link"`
	}
	if err := xml.Unmarshal([]byte(body), &xrd); err != nil {
		t.Fatalf("host-meta: %v\n%s", err, body)
	}
	hrefs = nil
	for _, l := range xrd.Links {
		if l.Rel == rel {
			hrefs = append(hrefs, l.Href)
		}
	}
	if !slices.Equal(hrefs, []string{wsURL}) {
		t.Errorf("host-meta: websocket links %q, want [%s]\n%s", hrefs, wsURL, body)
	}
}

// TestWebSocketXMPPJS: xmpp.js logs alice in over XMPP over WebSocket
// (wss://, the certificate checked) at the URL that connection discovery
// (XEP-0156, host-meta and host-meta.json) gives; bob, a slixmpp user on
// TCP, sends her a 20 KiB chat message (XML-escaped and multi-byte
// characters in it), which arrives whole, in one WebSocket message; her
// 20 KiB answer reaches bob whole. Every WebSocket message alice gets holds
// exactly one whole element (RFC 7395 3.3.3). The server then exits 0 on
// SIGTERM.
func TestWebSocketXMPPJS(t *testing.T) {
	needSlixmpp(t)
	needXMPPJS(t)
	w := startWebAliceBob(t)
	hc := httpsClient(t, w.cert)

	wsURL := "wss://" + w.https + "/xmpp-websocket"
	checkHostMeta(t, hc, "https://"+w.https, wsURL)
	checkHostMeta(t, hc, "http://"+w.http, "ws://"+w.http+"/xmpp-websocket")

	const size = 20 << 10
	aliceBody := bigBody("alice", size)
	bobBody := bigBody("bob", size)
	const resource = "xmppjs-ws"

	script := filepath.Join(jsDir, "ws.mjs")
	alice := startClient(t, "node ws.mjs", nodeEnv(w.cert), "node", script,
		"--service", wsURL, "--jid", "alice@localhost", "--password", alicePW,
		"--peer", "bob@localhost", "--resource", resource, "--body", aliceBody,
		"--wait", "20", "--timeout", "40")
	// xmpp.js logs in with SASL2 and Bind 2 (XEP-0388, XEP-0386): its
	// resource option is the Bind 2 tag, which the server's resource
	// begins with.
	aliceJID := alice.waitEvent(t, "login", 20*time.Second).JID
	if !regexp.MustCompile(`^alice@localhost/` + resource + `/[0-9a-f]{12}$`).MatchString(aliceJID) {
		t.Errorf("alice bound %s, want alice@localhost/%s/ and a Bind 2 suffix", aliceJID, resource)
	}
	alice.waitEvent(t, "ready", 20*time.Second)

	// bob (slix.py's first client is named "alice" in its events) sends to
	// alice's full JID and waits for her answer.
	es := w.clients().slix(t, "send", "--jid", "bob@localhost", "--password", bobPW,
		"--to", aliceJID, "--body", bobBody, "--expect-reply")
	bobJID := es.one(t, "login", "alice").JID
	got := es.of("message", "alice")
	if len(got) != 1 {
		t.Fatalf("bob got %d messages, want alice's answer", len(got))
	}
	if m := got[0]; m.From != aliceJID || m.To != bobJID || m.Type != "chat" || m.Body != aliceBody {
		t.Errorf("bob got from=%q to=%q type=%q and a body of %d bytes (equal: %v); want alice's chat message from %s to %s, %d bytes",
			m.From, m.To, m.Type, len(m.Body), m.Body == aliceBody, aliceJID, bobJID, len(aliceBody))
	}

	aes := alice.finish(t, 30*time.Second)
	var login struct {
		JID, Mech, Protocol, URL string
	}
	aes.one(t, "login", "alice").decode(t, &login)
	if login.JID != aliceJID || login.Mech != "SCRAM-SHA-1" || login.Protocol != "xmpp" || login.URL != wsURL {
		t.Errorf("alice logged in as %+v; want %s with SCRAM-SHA-1 over %s, subprotocol xmpp", login, aliceJID, wsURL)
	}
	msgs := aes.of("message", "alice")
	if len(msgs) != 1 {
		t.Fatalf("alice got %d messages, want bob's", len(msgs))
	}
	if m := msgs[0]; m.From != bobJID || m.To != aliceJID || m.Type != "chat" || m.Body != bobBody {
		t.Errorf("alice got from=%q to=%q type=%q and a body of %d bytes (equal: %v); want bob's chat message from %s, %d bytes",
			m.From, m.To, m.Type, len(m.Body), m.Body == bobBody, bobJID, len(bobBody))
	}
	var frames struct {
		In         int      `json:"in"`
		LargestIn  int      `json:"largest_in"`
		LargestOut int      `json:"largest_out"`
		Partial    []string `json:"partial"`
	}
	aes.one(t, "frames", "alice").decode(t, &frames)
	if len(frames.Partial) != 0 {
		t.Errorf("alice got WebSocket messages that are not one whole element: %q", frames.Partial)
	}
	if frames.LargestIn < size || frames.LargestOut < size {
		t.Errorf("largest WebSocket message in %d bytes, out %d; want both >= %d (the 20 KiB stanzas, each in one message)",
			frames.LargestIn, frames.LargestOut, size)
	}
	if len(aes.of("offline", "alice")) != 1 {
		t.Error("alice did not close her stream")
	}

	w.stop(t)
}

var registrationRE = regexp.MustCompile(`(?s)<p id="registration"[^>]*>(.*?)</p>`)

// TestStatusPage: the status page at / (over https and over plain http on
// loopback) names the domain and shows the registration policy as it is
// now: closed at first, then open, invite-only and closed again as
// 'community registration' switches it while the server runs, each seen
// on a reload. /healthz says ok. Without web_client the page has no link
// to /chat/, which is not served.
func TestStatusPage(t *testing.T) {
	bin := buildCommunity(t)
	data := t.TempDir()
	w := startWebCommunity(t, bin, data)
	hc := httpsClient(t, w.cert)

	for _, base := range []string{"https://" + w.https, "http://" + w.http} {
		body, _ := get(t, hc, base+"/healthz")
		if strings.TrimSpace(body) != "ok" {
			t.Errorf("%s/healthz: %q, want ok", base, body)
		}
	}

	page := func(base string) string {
		t.Helper()
		body, h := get(t, hc, base+"/")
		if ct := h.Get("Content-Type"); ct != "text/html; charset=utf-8" {
			t.Errorf("GET %s/: Content-Type %q", base, ct)
		}
		if !strings.Contains(body, "<h1>localhost</h1>") || !strings.Contains(body, "<title>localhost") {
			t.Errorf("GET %s/: the domain is not the title and heading:\n%s", base, body)
		}
		m := registrationRE.FindStringSubmatch(body)
		if m == nil {
			t.Fatalf("GET %s/: no <p id=\"registration\">:\n%s", base, body)
		}
		return strings.TrimSpace(m[1])
	}
	check := func(want string) {
		t.Helper()
		for _, base := range []string{"https://" + w.https, "http://" + w.http} {
			if got := page(base); !strings.HasPrefix(got, want) {
				t.Errorf("GET %s/: registration %q, want %q...", base, got, want)
			}
		}
	}

	check("Registration is closed")
	checkPolicy(t, bin, data, "open", "open")
	check("Registration is open")
	checkPolicy(t, bin, data, "invite", "invite")
	check("Registration is by invitation")
	checkPolicy(t, bin, data, "closed", "closed")
	check("Registration is closed")

	body, _ := get(t, hc, "https://"+w.https+"/")
	if strings.Contains(body, `href="/chat/"`) {
		t.Error("the status page links to /chat/ without a web client")
	}
	resp, err := hc.Get("https://" + w.https + "/chat/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /chat/ without a web client: %s, want 404", resp.Status)
	}

	w.stop(t)
}

// runScript runs a shell script of the repository (at most 5 minutes).
func runScript(t *testing.T, script string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, "bash", append([]string{filepath.Join(root, script)}, args...)...)
	cmd.WaitDelay = 2 * time.Second
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// startWebAliceBob builds and starts the example binary with its web
// listeners (startWebCommunity) and the accounts alice and bob.
func startWebAliceBob(t *testing.T, flags ...string) *webProc {
	t.Helper()
	bin := buildCommunity(t)
	data := t.TempDir()
	for _, a := range [][2]string{{"alice@localhost", alicePW}, {"bob@localhost", bobPW}} {
		runCommunity(t, bin, "adduser", "-data", data, "-password", a[1], a[0])
	}
	return startWebCommunity(t, bin, data, flags...)
}
