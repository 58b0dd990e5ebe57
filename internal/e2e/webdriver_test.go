package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/treff-im/treff/trefftest"
)

// The test in this file opens the example server's web client,
// Converse.js (fetched from npm by scripts/fetch-converse.sh), in Debian's
// chromium, headless, driven through chromedriver with plain WebDriver
// calls (W3C WebDriver over HTTP, no client library).

const (
	chromiumBin     = "/usr/bin/chromium"
	chromedriverBin = "chromedriver"
	// converseDir is where scripts/fetch-converse.sh puts Converse.js for
	// the tests (not committed; .ci/run fetches it first).
	converseDir = "js/converse"
	// webElementKey is the key of an element reference (WebDriver 12.1).
	webElementKey = "element-6066-11e4-a52e-4f735466cecf"
)

// needBrowser skips the test without chromium and chromedriver, or fails
// it when CI=true (.ci/run installs them); it returns chromedriver's path.
func needBrowser(t *testing.T) string {
	t.Helper()
	var missing []string
	if _, err := os.Stat(chromiumBin); err != nil {
		missing = append(missing, chromiumBin)
	}
	driver, err := exec.LookPath(chromedriverBin)
	if err != nil {
		missing = append(missing, chromedriverBin)
	}
	if len(missing) == 0 {
		return driver
	}
	msg := fmt.Sprintf("the browser test needs %s (apt-get install -y chromium chromium-driver)", strings.Join(missing, " and "))
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + " (CI=true: .ci/run installs them)")
	}
	t.Skip(msg)
	return ""
}

// needConverse returns the folder with Converse.js's dist/, running
// scripts/fetch-converse.sh (which does nothing when it is there).
func needConverse(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(converseDir)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := runScript(t, "scripts/fetch-converse.sh", dir); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("scripts/fetch-converse.sh %s: %v\n%s", dir, err, out)
		}
		// Most likely no registry from here.
		t.Skipf("scripts/fetch-converse.sh %s: %v\n%s", dir, err, out)
	}
	return dir
}

// artifactsDir is where the test saves its screenshots: $E2E_ARTIFACTS,
// or a temporary folder.
func artifactsDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("E2E_ARTIFACTS")
	if dir == "" {
		return t.TempDir()
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// webDriver is one WebDriver session of chromedriver.
type webDriver struct {
	t       *testing.T
	base    string // http://127.0.0.1:PORT
	session string
	hc      *http.Client
	shots   string // folder for screenshots
}

// startBrowser starts chromedriver on a free loopback port and opens a
// session of headless chromium with a fresh profile that reaches no host
// but localhost and accepts the server's self-signed certificate. The
// session is closed and chromedriver and chromium killed when the test
// ends; if the test failed, a screenshot of the page is saved first.
func startBrowser(t *testing.T, driver, shots string) *webDriver {
	t.Helper()
	addr := trefftest.FreeAddr(t)
	_, port, _ := strings.Cut(addr, ":")
	logs := new(trefftest.LogBuffer)
	cmd := exec.Command(driver, "--port="+port)
	cmd.Stdout, cmd.Stderr = logs, logs
	// Its own process group: chromium and its helpers are killed with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", driver, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Errorf("chromedriver (pid %d) did not exit within 10s of SIGKILL", cmd.Process.Pid)
		}
		if t.Failed() {
			t.Logf("chromedriver output:\n%s", logs)
		}
	})

	d := &webDriver{t: t, base: "http://" + addr, hc: &http.Client{Timeout: 60 * time.Second}, shots: shots}
	deadline := time.Now().Add(20 * time.Second)
	for {
		var st struct {
			Ready bool `json:"ready"`
		}
		if err := d.call("GET", "/status", nil, &st); err == nil && st.Ready {
			break
		}
		select {
		case <-done:
			t.Fatalf("chromedriver exited early:\n%s", logs)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("chromedriver not ready within 20s:\n%s", logs)
		}
		time.Sleep(100 * time.Millisecond)
	}

	profile := t.TempDir()
	caps := map[string]any{"capabilities": map[string]any{"alwaysMatch": map[string]any{
		"browserName":         "chrome",
		"acceptInsecureCerts": true,
		"timeouts":            map[string]int{"pageLoad": 30000, "script": 10000, "implicit": 0},
		"goog:chromeOptions": map[string]any{
			"binary": chromiumBin,
			"args": []string{
				"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
				"--disable-component-update", "--disable-sync", "--no-first-run",
				"--disable-dev-shm-usage", "--window-size=1280,900",
				"--user-data-dir=" + profile,
				"--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost",
			},
		},
	}}}
	var s struct {
		SessionID string `json:"sessionId"`
	}
	if err := d.call("POST", "/session", caps, &s); err != nil {
		t.Fatalf("new WebDriver session: %v\nchromedriver output:\n%s", err, logs)
	}
	d.session = "/session/" + s.SessionID
	t.Cleanup(func() {
		if err := d.call("DELETE", d.session, nil, nil); err != nil {
			t.Logf("closing the WebDriver session: %v", err)
		}
	})
	t.Cleanup(func() {
		if t.Failed() {
			d.screenshot("failure.png")
			var src string
			if v, err := d.exec("return document.documentElement.outerHTML.slice(0, 20000)"); err == nil && json.Unmarshal(v, &src) == nil {
				t.Logf("page at the failure (up to 20000 characters):\n%s", src)
			}
		}
	})
	return d
}

// call makes one WebDriver request and decodes its "value" into out.
func (d *webDriver) call(method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, d.base+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := d.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	var r struct {
		Value json.RawMessage `json:"value"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return fmt.Errorf("%s %s: %s: %v: %.500s", method, path, resp.Status, err, b)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error, Message string }
		json.Unmarshal(r.Value, &e)
		return fmt.Errorf("%s %s: %s: %s: %.1000s", method, path, resp.Status, e.Error, e.Message)
	}
	if out != nil {
		return json.Unmarshal(r.Value, out)
	}
	return nil
}

func (d *webDriver) navigate(url string) {
	d.t.Helper()
	if err := d.call("POST", d.session+"/url", map[string]string{"url": url}, nil); err != nil {
		d.t.Fatal(err)
	}
}

// exec runs script (a function body) in the page and returns its result.
func (d *webDriver) exec(script string, args ...any) (json.RawMessage, error) {
	if args == nil {
		args = []any{}
	}
	var v json.RawMessage
	err := d.call("POST", d.session+"/execute/sync", map[string]any{"script": script, "args": args}, &v)
	return v, err
}

// waitJS polls script until it returns a non-empty string (at most d),
// which it returns. A script that throws an Error whose message starts
// with "e2e-fail: " fails the test at once.
func (d *webDriver) waitJS(what string, timeout time.Duration, script string, args ...any) string {
	d.t.Helper()
	deadline := time.Now().Add(timeout)
	var last error
	for {
		v, err := d.exec(script, args...)
		if err == nil {
			var s string
			if json.Unmarshal(v, &s) == nil && s != "" {
				return s
			}
		} else {
			last = err
			if strings.Contains(err.Error(), "e2e-fail: ") {
				d.t.Fatalf("waiting for %s: %v", what, err)
			}
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("no %s within %v (last error: %v)", what, timeout, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// find returns the first element matching the CSS selector, waiting at
// most timeout for it.
func (d *webDriver) find(css string, timeout time.Duration) string {
	d.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var el map[string]string
		err := d.call("POST", d.session+"/element", map[string]string{"using": "css selector", "value": css}, &el)
		if err == nil && el[webElementKey] != "" {
			return el[webElementKey]
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("no element %q within %v: %v", css, timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (d *webDriver) sendKeys(el, text string) {
	d.t.Helper()
	if err := d.call("POST", d.session+"/element/"+el+"/value", map[string]string{"text": text}, nil); err != nil {
		d.t.Fatal(err)
	}
}

func (d *webDriver) click(el string) {
	d.t.Helper()
	if err := d.call("POST", d.session+"/element/"+el+"/click", map[string]any{}, nil); err != nil {
		d.t.Fatal(err)
	}
}

// screenshot saves a PNG of the page as name in the artifacts folder and
// logs its path.
func (d *webDriver) screenshot(name string) string {
	var b64 string
	if err := d.call("GET", d.session+"/screenshot", nil, &b64); err != nil {
		d.t.Errorf("screenshot: %v", err)
		return ""
	}
	png, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		d.t.Errorf("screenshot: %v", err)
		return ""
	}
	path := filepath.Join(d.shots, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		d.t.Errorf("screenshot: %v", err)
		return ""
	}
	d.t.Logf("screenshot: %s", path)
	return path
}

// TestConverseBrowser: the example server serves Converse.js at /chat/
// (linked from the status page); in headless chromium, alice fills in its
// login form and logs in over XMPP over WebSocket (wss://localhost, the
// page's own origin), opens the room web@conference.localhost that bob (a
// slixmpp user on TCP) created, enters it (choosing the nickname alice if
// Converse asks), and sends a groupchat message that bob gets from
// web@conference.localhost/alice; bob's answer shows up in the page, and
// so does the message bob sent before alice came: with archives off (the
// example's default), Converse is configured to ask the room for its
// history (muc_history_max_stanzas) and shows it. A
// screenshot of the room is saved in $E2E_ARTIFACTS (default: a temporary
// folder), and one of the page if the test fails.
func TestConverseBrowser(t *testing.T) {
	needSlixmpp(t)
	needXMPPJS(t) // node and npm, for the fetch script
	driver := needBrowser(t)
	client := needConverse(t)
	shots := artifactsDir(t)

	bin := buildCommunity(t)
	data := t.TempDir()
	for _, a := range [][2]string{{"alice@localhost", alicePW}, {"bob@localhost", bobPW}} {
		runCommunity(t, bin, "adduser", "-data", data, "-password", a[1], a[0])
	}
	w := startWebCommunity(t, bin, data, "-web-client", client)
	hc := httpsClient(t, w.cert)
	_, port, _ := strings.Cut(w.https, ":")
	origin := "https://localhost:" + port

	page, _ := get(t, hc, "https://"+w.https+"/")
	if !strings.Contains(page, `href="/chat/"`) {
		t.Errorf("the status page does not link to the web client /chat/:\n%s", page)
	}
	chat, _ := get(t, hc, origin+"/chat/")
	if !strings.Contains(chat, `"wss://localhost:`+port+`/xmpp-websocket"`) || !strings.Contains(chat, "/chat/dist/converse.min.js") {
		t.Errorf("/chat/ does not start Converse.js on wss://localhost:%s/xmpp-websocket:\n%s", port, chat)
	}

	const room = "web@" + mucService
	// ChromeDriver types only characters of the Basic Multilingual Plane.
	bmp := func(s string) string {
		return strings.Map(func(r rune) rune {
			if r > 0xFFFF {
				return -1
			}
			return r
		}, s)
	}
	body := bmp(uniqueBody("converse"))
	reply := uniqueBody("slixmpp-reply")
	early := uniqueBody("before alice came")
	script, err := filepath.Abs(filepath.Join("clients", "web.py"))
	if err != nil {
		t.Fatal(err)
	}
	bob := startClient(t, "client web.py muc_wait", pythonEnv(), python, script,
		"--addr", w.addr, "--cert", w.cert, "--timeout", "150", "muc_wait",
		"--jid", "bob@localhost", "--password", bobPW, "--room", "web", "--service", mucService,
		"--body", body, "--reply", reply, "--early", early, "--wait", "90")
	bob.waitEvent(t, "ready", 30*time.Second)

	d := startBrowser(t, driver, shots)
	t.Logf("opening %s/chat/", origin)
	d.navigate(origin + "/chat/")

	// The login form: the domain is locked, so the user name only.
	jid := d.find("#converse-login-jid", 30*time.Second)
	d.sendKeys(jid, "alice")
	d.sendKeys(d.find("#converse-login-password", 5*time.Second), alicePW)
	d.click(d.find("#converse-login button[type=submit]", 5*time.Second))
	d.waitJS("login (the roster)", 30*time.Second, `
		const fb = document.querySelector('#converse-login .conn-feedback:not(.d-none) .feedback-message');
		if (fb && fb.textContent.trim() && !document.querySelector('converse-roster')) {
			const e = fb.closest('.alert');
			if (e && e.classList.contains('alert-danger')) throw new Error('e2e-fail: Converse says: ' + fb.textContent);
		}
		return document.querySelector('converse-roster') ? 'ok' : '';`)
	t.Log("alice logged in")

	// Open the room through Converse's own route.
	if _, err := d.exec(`location.hash = arguments[0]; return '';`, "#converse/room?jid="+room); err != nil {
		t.Fatal(err)
	}
	state := d.waitJS("the room (nickname form or message box)", 30*time.Second, `
		const muc = document.querySelector('converse-muc');
		if (!muc) return '';
		if (muc.querySelector('.muc-nickname-form input[name=nick]')) return 'nickname';
		if (muc.querySelector('.chat-textarea')) return 'entered';
		return '';`)
	if state == "nickname" {
		nick := d.find("converse-muc .muc-nickname-form input[name=nick]", 5*time.Second)
		d.sendKeys(nick, "alice")
		d.click(d.find("converse-muc .muc-nickname-form input[type=submit]", 5*time.Second))
	}
	// Entered: the occupant list has alice and bob.
	d.waitJS("alice and bob in the room", 30*time.Second, `
		const muc = document.querySelector('converse-muc');
		if (!muc || !muc.querySelector('.chat-textarea')) return '';
		const names = [...muc.querySelectorAll('converse-muc-occupant, .occupant-list li, .occupant')].map((e) => e.textContent);
		const text = names.join(' ');
		return text.includes('alice') && text.includes('bob') ? 'ok' : '';`)
	t.Log("alice entered the room")

	text := d.find("converse-muc .chat-textarea", 5*time.Second)
	d.sendKeys(text, body+"\uE007") // Enter sends

	// bob gets it from alice's occupant JID, and answers.
	es := bob.finish(t, 60*time.Second)
	var got []string
	for _, e := range es.of("muc_message", "bob") {
		var m mucMessage
		e.decode(t, &m)
		if m.Body != nil && *m.Body == body {
			got = append(got, fmt.Sprintf("%s %s delay=%v error=%v", m.From, m.Type, m.Delay != nil, m.Error != nil))
		}
	}
	if want := room + "/alice groupchat delay=false error=false"; len(got) != 1 || got[0] != want {
		t.Errorf("bob got alice's message as %q, want once as %q", got, want)
	}

	d.waitJS("bob's answer and the room's history in the page", 20*time.Second, `
		const texts = [...document.querySelectorAll('converse-muc .chat-msg__text')].map((e) => e.textContent);
		return arguments.length && [...arguments].every((a) => texts.some((t) => t.includes(a))) ? 'ok' : '';`,
		body, reply, early)
	if d.screenshot("converse-muc.png") == "" {
		t.Error("no screenshot saved")
	}

	w.stop(t)
}
