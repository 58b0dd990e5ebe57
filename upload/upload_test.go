package upload_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/xml"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/disco"
	"github.com/treff-im/treff/storage"
	"github.com/treff-im/treff/storage/memstore"
	"github.com/treff-im/treff/trefftest"
	"github.com/treff-im/treff/upload"
)

// remote catches what the server sends to other domains.
type remote struct{ got chan *treff.Stanza }

func (r *remote) Name() string { return "remote" }
func (r *remote) Setup(ctx context.Context, reg *treff.Registry) error {
	reg.HandleRemote(treff.StanzaHandlerFunc(func(ctx context.Context, st *treff.Stanza) {
		select {
		case r.got <- st:
		default:
		}
	}))
	return nil
}

type env struct {
	ts     *trefftest.Server
	m      *upload.Module
	web    *httptest.Server
	clock  *trefftest.Clock
	dir    string
	logs   *trefftest.LogBuffer
	remote *remote
	alice  *trefftest.Client
	// putReading gets a value when the handler first reads the body of a
	// PUT: it has taken the slot by then (see signalBody).
	putReading chan struct{}
}

// newEnv starts a server with the upload module (its handler mounted at
// /upload/ of an HTTP test server) and logs alice in.
func newEnv(t *testing.T, configure func(*upload.Module)) *env {
	t.Helper()
	e := &env{clock: trefftest.NewClock(time.Now()), dir: t.TempDir(), logs: &trefftest.LogBuffer{}, remote: &remote{got: make(chan *treff.Stanza, 4)}}
	e.m = &upload.Module{Dir: e.dir, Now: e.clock.Now}
	mux := http.NewServeMux()
	mux.Handle("/upload/", http.StripPrefix("/upload", e.m.HTTPHandler()))
	e.putReading = make(chan struct{}, 16)
	e.web = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut {
			r.Body = &signalBody{ReadCloser: r.Body, first: e.putReading}
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(e.web.Close)
	e.m.BaseURL = e.web.URL + "/upload/"
	if configure != nil {
		configure(e.m)
	}
	e.ts = trefftest.NewServer(t, func(s *treff.Server) {
		s.Modules = []treff.Module{&disco.Module{}, e.m, e.remote}
		s.Logger = slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	e.ts.AddUser(t, "alice", "pw")
	e.ts.AddUser(t, "bob", "pw")
	e.alice = e.ts.Login(t, "alice", "pw", "r")
	return e
}

// reply is an IQ response as the tests look at it.
type reply struct {
	Type string `xml:"type,attr"`
	Slot *struct {
		Put struct {
			URL string `xml:"url,attr"`
		} `xml:"put"`
		Get struct {
			URL string `xml:"url,attr"`
		} `xml:"get"`
	} `xml:"urn:xmpp:http:upload:0 slot"`
	Error *struct {
		Type  string `xml:"type,attr"`
		Inner string `xml:",innerxml"`
	} `xml:"error"`
	raw string
}

var iqSeq int

// iq sends an IQ with the given payload to the upload service and returns
// the response.
func (e *env) iq(t *testing.T, c *trefftest.Client, typ, payload string) reply {
	t.Helper()
	iqSeq++
	id := fmt.Sprint("q", iqSeq)
	c.Send("<iq type='" + typ + "' id='" + id + "' to='upload.localhost'>" + payload + "</iq>")
	out := c.Expect(`(?s)<iq[^>]* id='` + id + `'.*?</iq>`)
	out = out[strings.LastIndex(out, "<iq"):]
	var r reply
	if err := xml.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("bad reply %q: %v", out, err)
	}
	r.raw = out
	return r
}

func request(filename string, size int64, ctype string) string {
	s := "<request xmlns='urn:xmpp:http:upload:0' filename='" + filename + "' size='" + fmt.Sprint(size) + "'"
	if ctype != "" {
		s += " content-type='" + ctype + "'"
	}
	return s + "/>"
}

// slot requests a slot and fails the test if there is none.
func (e *env) slot(t *testing.T, filename string, size int64, ctype string) (put, get string) {
	t.Helper()
	r := e.iq(t, e.alice, "get", request(filename, size, ctype))
	if r.Type != "result" || r.Slot == nil {
		t.Fatalf("slot request: %s", r.raw)
	}
	return r.Slot.Put.URL, r.Slot.Get.URL
}

func do(t *testing.T, method, url string, body []byte, header ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body == nil {
		req.Body, req.ContentLength = nil, 0
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func readAll(t *testing.T, resp *http.Response) []byte {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func wantStatus(t *testing.T, resp *http.Response, code int, what string) {
	t.Helper()
	if resp.StatusCode != code {
		t.Errorf("%s: status %d, want %d", what, resp.StatusCode, code)
	}
}

func TestDiscovery(t *testing.T) {
	e := newEnv(t, func(m *upload.Module) { m.MaxFileSize = 5242880 })
	e.alice.Send("<iq type='get' id='items' to='localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>")
	e.alice.Expect(`<item jid='upload.localhost' name='HTTP File Upload'/>`)
	r := e.iq(t, e.alice, "get", "<query xmlns='http://jabber.org/protocol/disco#info'/>")
	for _, want := range []string{
		`<identity category='store' type='file' name='HTTP File Upload'/>`,
		`<feature var='urn:xmpp:http:upload:0'/>`,
		`<x xmlns='jabber:x:data' type='result'><field var='FORM_TYPE' type='hidden'><value>urn:xmpp:http:upload:0</value></field><field var='max-file-size'><value>5242880</value></field></x>`,
	} {
		if !strings.Contains(r.raw, want) {
			t.Errorf("disco#info lacks %s: %s", want, r.raw)
		}
	}
	r = e.iq(t, e.alice, "get", "<query xmlns='urn:treff:test:unknown'/>")
	if r.Error == nil || !strings.Contains(r.Error.Inner, "<service-unavailable") {
		t.Errorf("unknown request: %s", r.raw)
	}
}

func TestUploadAndDownload(t *testing.T) {
	e := newEnv(t, nil)
	data := randomBytes(3000)
	put, get := e.slot(t, "holiday photo ☀.png", int64(len(data)), "image/png")
	if !strings.HasPrefix(get, e.web.URL+"/upload/") || !strings.HasSuffix(get, "/holiday%20photo%20%E2%98%80.png") {
		t.Errorf("GET URL %q does not keep the file name under BaseURL", get)
	}
	if !strings.HasPrefix(put, get+"?") {
		t.Errorf("PUT URL %q is not the GET URL %q with a signature", put, get)
	}
	// Not there before the PUT.
	wantStatus(t, do(t, "GET", get, nil), 404, "GET before PUT")

	resp := do(t, "PUT", put, data, "Content-Type", "image/png")
	wantStatus(t, resp, 201, "PUT")
	resp = do(t, "PUT", put, data, "Content-Type", "image/png")
	wantStatus(t, resp, 409, "second PUT to the same URL")

	resp = do(t, "GET", get, nil)
	wantStatus(t, resp, 200, "GET")
	if got := readAll(t, resp); !bytes.Equal(got, data) {
		t.Errorf("GET returned %d bytes, not the %d uploaded", len(got), len(data))
	}
	for k, want := range map[string]string{
		"Content-Type":                "image/png",
		"Content-Length":              "3000",
		"X-Content-Type-Options":      "nosniff",
		"Content-Disposition":         `inline; filename="holiday photo _.png"; filename*=UTF-8''holiday%20photo%20%E2%98%80.png`,
		"Access-Control-Allow-Origin": "*",
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("GET %s = %q, want %q", k, got, want)
		}
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "sandbox") {
		t.Errorf("Content-Security-Policy = %q", csp)
	}
	if cc := resp.Header.Get("Cache-Control"); !regexp.MustCompile(`max-age=\d+`).MatchString(cc) {
		t.Errorf("Cache-Control = %q", cc)
	}

	resp = do(t, "HEAD", get, nil)
	wantStatus(t, resp, 200, "HEAD")
	if resp.Header.Get("Content-Length") != "3000" || len(readAll(t, resp)) != 0 {
		t.Errorf("HEAD: Content-Length %q", resp.Header.Get("Content-Length"))
	}
	resp = do(t, "GET", get, nil, "Range", "bytes=100-199")
	wantStatus(t, resp, 206, "Range GET")
	if got := readAll(t, resp); !bytes.Equal(got, data[100:200]) {
		t.Errorf("Range GET returned other bytes")
	}
	resp = do(t, "GET", get, nil, "If-None-Match", resp.Header.Get("ETag"))
	wantStatus(t, resp, 304, "GET with the ETag")

	resp = do(t, "OPTIONS", put, nil, "Origin", "https://web.example", "Access-Control-Request-Method", "PUT", "Access-Control-Request-Headers", "content-type")
	wantStatus(t, resp, 204, "CORS preflight")
	if resp.Header.Get("Access-Control-Allow-Origin") != "*" || !strings.Contains(resp.Header.Get("Access-Control-Allow-Methods"), "PUT") ||
		!strings.Contains(resp.Header.Get("Access-Control-Allow-Headers"), "Content-Type") {
		t.Errorf("preflight headers: %v", resp.Header)
	}

	// The handler finds the slot whatever the prefix: also unstripped.
	direct := httptest.NewServer(e.m.HTTPHandler())
	defer direct.Close()
	resp = do(t, "GET", direct.URL+strings.TrimPrefix(get, e.web.URL), nil)
	wantStatus(t, resp, 200, "GET without StripPrefix")

	// The file is on disk under the slot ID, nothing else is left.
	entries, _ := os.ReadDir(e.dir)
	if len(entries) != 1 || !strings.Contains(get, "/"+entries[0].Name()+"/") {
		t.Errorf("files in Dir: %v", entries)
	}
	// No file names in the logs, not even at debug level.
	logs := e.logs.String()
	if !strings.Contains(logs, "upload: stored") {
		t.Errorf("no debug record of the upload: %s", logs)
	}
	if strings.Contains(logs, "holiday") || strings.Contains(logs, "127.0.0.1") {
		t.Errorf("the logs show a file name or an address: %s", logs)
	}
}

func TestUnsafeTypesAreAttachments(t *testing.T) {
	e := newEnv(t, nil)
	for _, tc := range []struct{ name, ctype, disp string }{
		{`évil "x".html`, "text/html", `attachment; filename="_vil _x_.html"; filename*=UTF-8''%C3%A9vil%20%22x%22.html`},
		{"logo.svg", "image/svg+xml", `attachment; filename="logo.svg"; filename*=UTF-8''logo.svg`},
		{"page.xhtml", "application/xhtml+xml", `attachment; filename="page.xhtml"`},
		{"data.bin", "", `attachment; filename="data.bin"`},
		{"notes.txt", "text/plain; charset=utf-8", `inline; filename="notes.txt"`},
		{"song.ogg", "audio/ogg", `inline; filename="song.ogg"`},
	} {
		data := []byte("<script>alert(1)</script>")
		put, get := e.slot(t, strings.ReplaceAll(tc.name, `"`, "&quot;"), int64(len(data)), tc.ctype)
		var h []string
		if tc.ctype != "" {
			h = []string{"Content-Type", tc.ctype}
		}
		wantStatus(t, do(t, "PUT", put, data, h...), 201, "PUT "+tc.ctype)
		resp := do(t, "GET", get, nil)
		wantStatus(t, resp, 200, "GET "+tc.ctype)
		if got := resp.Header.Get("Content-Disposition"); !strings.HasPrefix(got, tc.disp) {
			t.Errorf("%s: Content-Disposition %q, want %q", tc.ctype, got, tc.disp)
		}
		want := tc.ctype
		if want == "" {
			want = "application/octet-stream"
		}
		if got := resp.Header.Get("Content-Type"); got != want {
			t.Errorf("Content-Type %q, want %q", got, want)
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: no nosniff", tc.ctype)
		}
	}
}

func TestFileTooLarge(t *testing.T) {
	e := newEnv(t, func(m *upload.Module) { m.MaxFileSize = 1000 })
	r := e.iq(t, e.alice, "get", request("big.bin", 1001, "application/octet-stream"))
	if r.Type != "error" || r.Error == nil || r.Error.Type != "modify" ||
		!strings.Contains(r.Error.Inner, "<not-acceptable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>") ||
		!strings.Contains(r.Error.Inner, "<file-too-large xmlns='urn:xmpp:http:upload:0'><max-file-size>1000</max-file-size></file-too-large>") {
		t.Errorf("oversized request: %s", r.raw)
	}
	e.slot(t, "ok.bin", 1000, "")
}

func TestQuota(t *testing.T) {
	e := newEnv(t, func(m *upload.Module) { m.Quota = 1000 })
	put, _ := e.slot(t, "a.bin", 600, "")
	wantStatus(t, do(t, "PUT", put, randomBytes(600)), 201, "PUT")
	r := e.iq(t, e.alice, "get", request("b.bin", 500, ""))
	if r.Type != "error" || r.Error == nil || r.Error.Type != "wait" ||
		!strings.Contains(r.Error.Inner, "<resource-constraint xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>") ||
		!strings.Contains(r.Error.Inner, "<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>Quota") ||
		!regexp.MustCompile(`<retry xmlns='urn:xmpp:http:upload:0' stamp='\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ'/>`).MatchString(r.Error.Inner) {
		t.Errorf("request over quota: %s", r.raw)
	}
	// Another user has a quota of their own.
	bob := e.ts.Login(t, "bob", "pw", "r")
	if r := e.iq(t, bob, "get", request("b.bin", 500, "")); r.Type != "result" {
		t.Errorf("bob's request: %s", r.raw)
	}
	// An unused slot counts until its PUT URL expires.
	e.slot(t, "c.bin", 400, "")
	if r := e.iq(t, e.alice, "get", request("d.bin", 400, "")); r.Type != "error" {
		t.Errorf("request over quota with a pending slot: %s", r.raw)
	}
	e.clock.Add(upload.DefaultSlotTimeout + time.Second)
	e.slot(t, "d.bin", 400, "")
}

func TestBadRequests(t *testing.T) {
	e := newEnv(t, nil)
	for _, p := range []string{
		"<request xmlns='urn:xmpp:http:upload:0' filename='a.txt'/>",
		"<request xmlns='urn:xmpp:http:upload:0' size='10'/>",
		request("a.txt", -1, ""),
		"<request xmlns='urn:xmpp:http:upload:0' filename='a.txt' size='ten'/>",
		request("..", 10, ""),
		request("  ", 10, ""),
		request("a.txt", 10, "not a type"),
	} {
		r := e.iq(t, e.alice, "get", p)
		if r.Type != "error" || r.Error == nil || !strings.Contains(r.Error.Inner, "<bad-request") {
			t.Errorf("%s: %s", p, r.raw)
		}
	}
	if r := e.iq(t, e.alice, "set", request("a.txt", 10, "")); r.Error == nil || !strings.Contains(r.Error.Inner, "<bad-request") {
		t.Errorf("request in an IQ set: %s", r.raw)
	}
	// A path is cut to its last element.
	_, get := e.slot(t, "../../etc/passwd", 10, "")
	if !strings.HasSuffix(get, "/passwd") {
		t.Errorf("GET URL %q", get)
	}
}

func TestPutChecks(t *testing.T) {
	e := newEnv(t, nil)
	data := randomBytes(100)
	put, get := e.slot(t, "f.jpg", 100, "image/jpeg")
	wantStatus(t, do(t, "PUT", put, data[:99], "Content-Type", "image/jpeg"), 400, "PUT of fewer bytes")
	wantStatus(t, do(t, "PUT", put, append(data, 1), "Content-Type", "image/jpeg"), 413, "PUT of more bytes")
	wantStatus(t, do(t, "PUT", put, data, "Content-Type", "text/html"), 415, "PUT with another Content-Type")
	wantStatus(t, do(t, "PUT", put, data), 415, "PUT without Content-Type")
	wantStatus(t, do(t, "PUT", get, data, "Content-Type", "image/jpeg"), 403, "PUT to the GET URL")
	wantStatus(t, do(t, "PUT", strings.Replace(put, "&s=", "&s=x", 1), data, "Content-Type", "image/jpeg"), 403, "PUT with a wrong signature")
	wantStatus(t, do(t, "GET", get, nil), 404, "GET after refused PUTs")
	wantStatus(t, do(t, "PUT", e.web.URL+"/upload/AAAAAAAAAAAAAAAAAAAAAA/f.jpg", data), 404, "PUT to an unknown slot")
	wantStatus(t, do(t, "DELETE", get, nil), 405, "DELETE")
	if entries, _ := os.ReadDir(e.dir); len(entries) != 0 {
		t.Errorf("refused PUTs left files: %v", entries)
	}

	// A PUT URL expires.
	put2, _ := e.slot(t, "g.jpg", 100, "image/jpeg")
	e.clock.Add(upload.DefaultSlotTimeout)
	wantStatus(t, do(t, "PUT", put2, data, "Content-Type", "image/jpeg"), 403, "PUT after the slot timeout")
	// The first one too, and cleaning up removes both unused slots.
	if err := e.m.Cleanup(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n, _ := e.ts.Store.(storage.Uploads).UploadUsage(context.Background(), "alice@localhost"); n != 0 {
		t.Errorf("usage after the unused slots expired: %d", n)
	}
	wantStatus(t, do(t, "PUT", put, data, "Content-Type", "image/jpeg"), 404, "PUT to a removed slot")
}

func TestExpiry(t *testing.T) {
	e := newEnv(t, func(m *upload.Module) { m.Quota = 1000 })
	data := randomBytes(800)
	put, get := e.slot(t, "old.bin", 800, "")
	wantStatus(t, do(t, "PUT", put, data), 201, "PUT")
	e.clock.Add(29 * 24 * time.Hour)
	if err := e.m.Cleanup(context.Background()); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, do(t, "GET", get, nil), 200, "GET after 29 days")
	e.clock.Add(24*time.Hour + time.Second)
	// Gone at once, before the job runs.
	wantStatus(t, do(t, "GET", get, nil), 404, "GET after 30 days")
	if err := e.m.Cleanup(context.Background()); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(e.dir); len(entries) != 0 {
		t.Errorf("files left after expiry: %v", entries)
	}
	if n, _ := e.ts.Store.(storage.Uploads).UploadUsage(context.Background(), "alice@localhost"); n != 0 {
		t.Errorf("usage after expiry: %d", n)
	}
	e.slot(t, "new.bin", 800, "")
}

func TestExpiredFilesFreeQuotaBeforeTheJob(t *testing.T) {
	e := newEnv(t, func(m *upload.Module) { m.Quota = 1000; m.Expire = time.Hour })
	put, _ := e.slot(t, "old.bin", 800, "")
	wantStatus(t, do(t, "PUT", put, randomBytes(800)), 201, "PUT")
	e.clock.Add(time.Hour)
	e.slot(t, "new.bin", 800, "")
}

func TestAccountDeleted(t *testing.T) {
	e := newEnv(t, nil)
	put, get := e.slot(t, "mine.txt", 5, "text/plain")
	wantStatus(t, do(t, "PUT", put, []byte("hello"), "Content-Type", "text/plain"), 201, "PUT")
	e.slot(t, "pending.txt", 5, "text/plain")
	if err := e.ts.DeleteAccount(context.Background(), jid.MustParse("alice@localhost"), "bye"); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, do(t, "GET", get, nil), 404, "GET after the account was deleted")
	if entries, _ := os.ReadDir(e.dir); len(entries) != 0 {
		t.Errorf("files left: %v", entries)
	}
	if list, _ := e.ts.Store.(storage.Uploads).ListUploads(context.Background(), "alice@localhost"); len(list) != 0 {
		t.Errorf("records left: %+v", list)
	}
}

func TestRemoteUsersRefused(t *testing.T) {
	e := newEnv(t, nil)
	st, err := treff.NewStanza([]byte("<iq type='get' id='r1' from='eve@remote.example/x' to='upload.localhost'>" + request("a.bin", 10, "") + "</iq>"))
	if err != nil {
		t.Fatal(err)
	}
	e.ts.Route(context.Background(), st)
	select {
	case got := <-e.remote.got:
		if got.To.String() != "eve@remote.example/x" || !strings.Contains(got.String(), "<not-allowed xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>") {
			t.Errorf("answer to a remote user: %s", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no answer to the remote user")
	}
}

func TestSetupNeedsBaseURLAndStore(t *testing.T) {
	for _, tc := range []struct {
		name string
		m    *upload.Module
	}{
		{"no BaseURL", &upload.Module{Dir: t.TempDir()}},
		{"relative BaseURL", &upload.Module{Dir: t.TempDir(), BaseURL: "/upload/"}},
		{"no Dir", &upload.Module{BaseURL: "https://localhost/upload/"}},
	} {
		srv := &treff.Server{Hosts: []treff.Host{{Domain: "localhost"}}, Storage: memstore.New(), Modules: []treff.Module{tc.m}}
		if err := srv.Setup(); err == nil {
			t.Errorf("%s: Setup succeeded", tc.name)
		}
	}
}

func TestConcurrentPutsTakeOneFile(t *testing.T) {
	e := newEnv(t, nil)
	data := randomBytes(1000)
	put, get := e.slot(t, "f.bin", 1000, "")
	pr, pw := io.Pipe()
	req, err := http.NewRequest("PUT", put, pr)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = 1000
	done := make(chan int, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- 0
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	pw.Write(data[:500])
	// The first PUT is under way once the handler reads its body; until
	// then the second may also find the slot free, so wait for that.
	select {
	case <-e.putReading:
	case <-time.After(5 * time.Second):
		t.Fatal("the handler did not read the first PUT's body")
	}
	wantStatus(t, do(t, "PUT", put, data), 409, "PUT while another runs")
	pw.Write(data[500:])
	pw.Close()
	if code := <-done; code != 201 {
		t.Errorf("first PUT: status %d", code)
	}
	resp := do(t, "GET", get, nil)
	if got := readAll(t, resp); !bytes.Equal(got, data) {
		t.Errorf("GET returned other bytes")
	}
}

// signalBody reports the first Read of a request body. The upload handler
// marks the slot as being uploaded before it reads the body, so this is
// the event "the PUT holds the slot".
type signalBody struct {
	io.ReadCloser
	first chan<- struct{}
	once  sync.Once
}

func (b *signalBody) Read(p []byte) (int, error) {
	b.once.Do(func() {
		select {
		case b.first <- struct{}{}:
		default:
		}
	})
	return b.ReadCloser.Read(p)
}
