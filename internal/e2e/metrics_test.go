package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/treff-im/treff/trefftest"
)

// TestCommunityMetrics: the example server binary started with -metrics
// on a loopback address serves /metrics in the Prometheus text format.
// Between two scrapes, the load tool (cmd/treff-load, registering its
// own accounts in-band) chats for two seconds, a client stores a message
// for an offline user and another fails to log in. Both scrapes must
// parse strictly (HELP and TYPE once per family, before its samples;
// well-formed names, labels and values; no duplicate series; cumulative
// histogram buckets), every counter must not decrease, and the series
// the load moves must have moved. No label carries a JID or an address.
func TestCommunityMetrics(t *testing.T) {
	bin := buildCommunity(t)
	load := buildLoad(t)
	data := t.TempDir()
	runCommunity(t, bin, "adduser", "-data", data, "-password", alicePW, "alice@localhost")
	runCommunity(t, bin, "adduser", "-data", data, "-password", bobPW, "bob@localhost")

	p, metricsAddr := startCommunityMetrics(t, bin, data, "-archive", "yes", "-registration", "open",
		"-registration-per-address", "1000/1m", "-registration-global", "1000/1m")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server output:\n%s", p.logs)
		}
	})
	url := "http://" + metricsAddr + "/metrics"

	first := scrape(t, url)
	for _, fam := range []string{
		"treff_sessions", "treff_sessions_bound_total", "treff_stanzas_in_total", "treff_stanzas_out_total",
		"treff_deliveries_total", "treff_offline_messages", "treff_queue_drops_total", "treff_registrations_total",
		"treff_auth_failures_total", "treff_auth_refused_total", "treff_storage_seconds",
		"go_goroutines", "go_heap_objects_bytes", "go_gc_cycles_total",
	} {
		if _, ok := first.types[fam]; !ok {
			t.Errorf("family %s missing", fam)
		}
	}
	for _, tr := range []string{"tcp", "tls", "websocket", "bosh"} {
		if _, ok := first.samples[`treff_sessions{transport="`+tr+`"}`]; !ok {
			t.Errorf("no treff_sessions series for transport %s", tr)
		}
	}

	// The load: 4 clients in 2 pairs, chatting at 20 messages a second
	// each for 2 seconds, with accounts made by in-band registration.
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, load, "-addr", p.addr, "-scenario", "chat", "-users", "4", "-rate", "20",
		"-duration", "2s", "-register", "-prefix", "metrics", "-password", "metrics-load-pw", "-json")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("treff-load: %v\n%s", err, out)
	}
	t.Logf("treff-load: %s", out)

	// A message for bob, who is offline, is stored; a wrong password is
	// a failed login.
	roots := x509.NewCertPool()
	pem, err := os.ReadFile(p.cert)
	if err != nil || !roots.AppendCertsFromPEM(pem) {
		t.Fatalf("server certificate: %v", err)
	}
	tlsCfg := &tls.Config{RootCAs: roots, ServerName: "localhost"}
	dial := func() *trefftest.Client {
		nc, err := net.Dial("tcp", p.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		return trefftest.NewClient(t, nc, "localhost", tlsCfg)
	}
	alice := dial()
	alice.Login("alice", alicePW, "metrics")
	alice.Send("<message to='bob@localhost' type='chat' id='off1'><body>stored for later</body></message>")
	alice.Sync() // the message was routed (and so stored) before the answer
	guess := dial()
	guess.StartTLS()
	guess.Send(trefftest.Header("localhost"))
	guess.Expect(`</stream:features>`)
	guess.Send(trefftest.PlainAuth("bob", "not-bobs-password"))
	guess.Expect(`<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>`)

	second := scrape(t, url)

	// Counters never go down.
	for key, v := range first.samples {
		fam := first.familyOf(key)
		if first.types[fam] != "counter" && first.types[fam] != "histogram" {
			continue
		}
		if w, ok := second.samples[key]; !ok {
			t.Errorf("%s gone in the second scrape", key)
		} else if w < v {
			t.Errorf("counter %s went down: %v → %v", key, v, w)
		}
	}
	// What the load moved.
	grew := func(key string, atLeast float64) {
		t.Helper()
		if d := second.samples[key] - first.samples[key]; d < atLeast {
			t.Errorf("%s grew by %v (%v → %v), want at least %v", key, d, first.samples[key], second.samples[key], atLeast)
		}
	}
	grew(`treff_sessions_bound_total{transport="tcp"}`, 5) // 4 load clients, alice
	grew(`treff_registrations_total`, 4)
	grew(`treff_stanzas_in_total{kind="message"}`, 20)
	grew(`treff_stanzas_out_total{kind="message"}`, 20)
	grew(`treff_stanzas_in_total{kind="iq"}`, 1)
	grew(`treff_deliveries_total{result="delivered"}`, 20)
	grew(`treff_deliveries_total{result="offline"}`, 1)
	grew(`treff_auth_failures_total`, 1)
	grew(`treff_offline_messages`, 1)
	grew(`treff_storage_seconds_count{op="offline_push"}`, 1)
	grew(`treff_storage_seconds_count{op="archive_append"}`, 20)
	if second.samples[`treff_sessions{transport="tcp"}`] < 1 {
		t.Errorf("treff_sessions{transport=\"tcp\"} = %v with alice online", second.samples[`treff_sessions{transport="tcp"}`])
	}
	if g := second.samples["go_goroutines"]; g < 5 {
		t.Errorf("go_goroutines = %v", g)
	}
	p.stop(t)
}

// TestCommunityMetricsS2S: two example servers federate (a.test and
// b.test on loopback, self-signed certificates accepted, routes given
// with -s2s-resolve). Before any message, neither has a server-to-server
// stream; after alice@a.test's message reached bob@b.test, a.test's
// /metrics shows an established outgoing stream and b.test's an
// established incoming one.
func TestCommunityMetricsS2S(t *testing.T) {
	bin := buildCommunity(t)
	type side struct {
		domain, user, data, s2s string
		p                       *communityProc
		metrics                 string
	}
	// Each server's s2s listener on its own loopback address: two free
	// ports asked for one after the other on one address can be the
	// same (the first is closed before the second is taken).
	a := &side{domain: "a.test", user: "alice", data: t.TempDir(), s2s: freeAddrOn(t, "127.0.24.1")}
	b := &side{domain: "b.test", user: "bob", data: t.TempDir(), s2s: freeAddrOn(t, "127.0.24.2")}
	resolve := "a.test=" + a.s2s + ",b.test=" + b.s2s
	for _, sd := range []*side{a, b} {
		runCommunity(t, bin, "adduser", "-data", sd.data, "-domain", sd.domain, "-password", alicePW, sd.user+"@"+sd.domain)
		sd.p, sd.metrics = startCommunityMetrics(t, bin, sd.data, "-domain", sd.domain, "-s2s", sd.s2s,
			"-s2s-resolve", resolve, "-s2s-self-signed", "yes", "-muc", "no")
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("%s output:\n%s", sd.domain, sd.p.logs)
			}
		})
	}
	streams := func(sd *side) exposition {
		t.Helper()
		e := scrape(t, "http://"+sd.metrics+"/metrics")
		if e.types["treff_s2s_streams"] != "gauge" {
			t.Fatalf("%s: no treff_s2s_streams gauge", sd.domain)
		}
		return e
	}
	for _, sd := range []*side{a, b} {
		for key, v := range streams(sd).samples {
			if strings.HasPrefix(key, "treff_s2s_streams{") && v != 0 {
				t.Errorf("%s before any message: %s = %v", sd.domain, key, v)
			}
		}
	}

	login := func(sd *side) *trefftest.Client {
		roots := x509.NewCertPool()
		pem, err := os.ReadFile(sd.p.cert)
		if err != nil || !roots.AppendCertsFromPEM(pem) {
			t.Fatalf("%s certificate: %v", sd.domain, err)
		}
		nc, err := net.Dial("tcp", sd.p.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		c := trefftest.NewClient(t, nc, sd.domain, &tls.Config{RootCAs: roots, ServerName: sd.domain})
		c.Login(sd.user, alicePW, "metrics")
		return c
	}
	alice, bob := login(a), login(b)
	alice.Send("<message to='" + bob.JID + "' type='chat' id='fed1'><body>across</body></message>")
	bob.Expect(`<message [^>]*id='fed1'`)

	ea, eb := streams(a), streams(b)
	if v := ea.samples[`treff_s2s_streams{direction="out",state="established"}`]; v != 1 {
		t.Errorf("a.test: outgoing established streams = %v, want 1", v)
	}
	if v := eb.samples[`treff_s2s_streams{direction="in",state="established"}`]; v != 1 {
		t.Errorf("b.test: incoming established streams = %v, want 1", v)
	}
	if v := eb.samples[`treff_deliveries_total{result="delivered"}`]; v < 1 {
		t.Errorf("b.test: delivered = %v", v)
	}
	a.p.stop(t)
	b.p.stop(t)
}

// buildLoad builds cmd/treff-load into a temporary folder.
func buildLoad(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "treff-load")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/treff-load")
	cmd.Dir = filepath.Join("..", "..")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build treff-load: %v\n%s", err, out)
	}
	return bin
}

// startCommunityMetrics starts the binary with -metrics on a fresh
// loopback port and the further arguments args, and waits until the
// client listener and the metrics endpoint answer; it tries other ports
// if one was taken meanwhile.
func startCommunityMetrics(t *testing.T, bin, data string, args ...string) (*communityProc, string) {
	t.Helper()
	for try := 1; ; try++ {
		p := &communityProc{logs: new(trefftest.LogBuffer), done: make(chan struct{}),
			addr: trefftest.FreeAddr(t), tls: trefftest.FreeAddr(t), cert: filepath.Join(data, "cert.pem")}
		maddr := trefftest.FreeAddr(t)
		argv := append([]string{"-data", data, "-c2s", p.addr, "-c2s-tls", p.tls, "-s2s", "", "-http", "", "-https", "",
			"-metrics", maddr}, args...) // later flags win
		p.start(t, bin, argv...)
		err := waitReady(p, maddr)
		if err == nil {
			return p, maddr
		}
		if try == 3 || !strings.Contains(p.logs.String(), "address already in use") {
			t.Fatalf("%v\nserver output:\n%s", err, p.logs)
		}
		<-p.done
	}
}

func waitReady(p *communityProc, maddr string) error {
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-p.done:
			return fmt.Errorf("server exited early: %v", p.err)
		default:
		}
		if accepts(p.addr) && accepts(maddr) {
			if _, err := os.Stat(p.cert); err == nil {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("server not ready within 20s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// exposition is one parsed scrape.
type exposition struct {
	types   map[string]string  // family → counter, gauge, histogram, ...
	samples map[string]float64 // "name{labels}" as written → value
}

// familyOf returns the family a sample key belongs to.
func (e exposition) familyOf(key string) string {
	name, _, _ := strings.Cut(key, "{")
	if _, ok := e.types[name]; ok {
		return name
	}
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suf); ok && e.types[base] == "histogram" {
			return base
		}
	}
	return ""
}

var (
	metricName = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	labelPair  = regexp.MustCompile(`^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"$`)
	// A label value that looks like a JID or an IP address.
	personal = regexp.MustCompile(`@|^\d{1,3}(\.\d{1,3}){3}|:.*:`)
)

// scrape fetches url and parses it strictly as the Prometheus text
// format, version 0.0.4.
func scrape(t *testing.T, url string) exposition {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain; version=0.0.4") {
		t.Fatalf("GET %s: %s, Content-Type %q", url, resp.Status, resp.Header.Get("Content-Type"))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	e, err := parseExposition(string(body))
	if err != nil {
		t.Fatalf("%v\n%s", err, body)
	}
	return e
}

func parseExposition(text string) (exposition, error) {
	e := exposition{types: map[string]string{}, samples: map[string]float64{}}
	help := map[string]bool{}
	seen := map[string]bool{} // families with samples written
	current := ""
	// For histograms: the cumulative buckets of each series.
	lastBucket := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(text))
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		fail := func(f string, a ...any) error {
			return fmt.Errorf("line %d %q: %s", n, line, fmt.Sprintf(f, a...))
		}
		if line == "" {
			return e, fail("empty line")
		}
		if rest, ok := strings.CutPrefix(line, "# "); ok {
			kw, rest, _ := strings.Cut(rest, " ")
			name, arg, _ := strings.Cut(rest, " ")
			if !metricName.MatchString(name) || arg == "" {
				return e, fail("bad %s line", kw)
			}
			switch kw {
			case "HELP":
				if help[name] {
					return e, fail("second HELP for %s", name)
				}
				help[name] = true
			case "TYPE":
				if _, dup := e.types[name]; dup || seen[name] {
					return e, fail("TYPE for %s again or after its samples", name)
				}
				switch arg {
				case "counter", "gauge", "histogram", "summary", "untyped":
				default:
					return e, fail("unknown type %q", arg)
				}
				if arg == "counter" && !strings.HasSuffix(name, "_total") {
					return e, fail("counter %s does not end in _total", name)
				}
				e.types[name] = arg
				current = name
			default:
				return e, fail("unknown comment keyword")
			}
			continue
		}
		if strings.HasPrefix(line, "#") {
			return e, fail("bad comment")
		}
		key, value, ok := strings.Cut(line, " ")
		if !ok || strings.Contains(value, " ") {
			return e, fail("not NAME{LABELS} VALUE")
		}
		name, labels, hasLabels := strings.Cut(key, "{")
		if !metricName.MatchString(name) {
			return e, fail("bad metric name")
		}
		var le string
		if hasLabels {
			body, ok := strings.CutSuffix(labels, "}")
			if !ok || body == "" {
				return e, fail("bad label set")
			}
			names := map[string]bool{}
			for _, pair := range strings.Split(body, ",") {
				m := labelPair.FindStringSubmatch(pair)
				if m == nil {
					return e, fail("bad label %q", pair)
				}
				if names[m[1]] {
					return e, fail("label %s twice", m[1])
				}
				names[m[1]] = true
				if m[1] == "le" {
					le = m[2]
				} else if personal.MatchString(m[2]) {
					return e, fail("label value %q looks like an address", m[2])
				}
			}
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			return e, fail("bad value")
		}
		fam := e.familyOf(key)
		if fam == "" || fam != current {
			return e, fail("sample outside its family's block (TYPE %q)", current)
		}
		if !help[fam] {
			return e, fail("no HELP for %s", fam)
		}
		seen[fam] = true
		if _, dup := e.samples[key]; dup {
			return e, fail("duplicate series")
		}
		e.samples[key] = v
		if e.types[fam] == "counter" && (v < 0 || math.IsNaN(v)) {
			return e, fail("negative counter")
		}
		if e.types[fam] == "histogram" {
			series := strings.Replace(key[len(name):], ",le=\""+le+"\"", "", 1)
			switch {
			case strings.HasSuffix(name, "_bucket"):
				if le == "" {
					return e, fail("bucket without le")
				}
				if v < lastBucket[series] {
					return e, fail("buckets not cumulative")
				}
				lastBucket[series] = v
				if le == "+Inf" {
					e.samples[fam+"_inf"+series] = v
				}
			case strings.HasSuffix(name, "_count"):
				if inf, ok := e.samples[fam+"_inf"+series]; !ok || inf != v {
					return e, fail("_count %v is not the +Inf bucket %v", v, inf)
				}
				delete(e.samples, fam+"_inf"+series)
			}
		}
	}
	for fam := range e.types {
		if !seen[fam] {
			return e, fmt.Errorf("family %s has no samples", fam)
		}
	}
	return e, sc.Err()
}

// The strict parser of TestCommunityMetrics accepts a well-formed
// exposition and refuses each kind of mistake it is there to catch.
func TestParseExposition(t *testing.T) {
	good := "# HELP a_total A.\n# TYPE a_total counter\na_total{k=\"v\"} 1\na_total{k=\"w\"} 2\n" +
		"# HELP h H.\n# TYPE h histogram\nh_bucket{op=\"x\",le=\"1\"} 1\nh_bucket{op=\"x\",le=\"+Inf\"} 2\nh_sum{op=\"x\"} 0.5\nh_count{op=\"x\"} 2\n"
	e, err := parseExposition(good)
	if err != nil || e.samples[`a_total{k="w"}`] != 2 || e.samples[`h_count{op="x"}`] != 2 {
		t.Fatalf("good exposition: %v, %v", e, err)
	}
	for _, bad := range []string{
		"a_total 1\n",                          // no TYPE
		"# TYPE a_total counter\na_total 1\n",  // no HELP
		"# HELP a A.\n# TYPE a counter\na 1\n", // counter without _total
		"# HELP a_total A.\n# TYPE a_total counter\na_total 1\na_total 2\n",                           // duplicate
		"# HELP a_total A.\n# TYPE a_total counter\na_total{k=v} 1\n",                                 // unquoted label
		"# HELP a_total A.\n# TYPE a_total counter\na_total{k=\"x@y.org\"} 1\n",                       // a JID
		"# HELP a_total A.\n# TYPE a_total counter\na_total{k=\"127.0.0.1\"} 1\n",                     // an address
		"# HELP a_total A.\n# TYPE a_total counter\na_total one\n",                                    // not a number
		"# HELP a_total A.\n# TYPE a_total counter\n",                                                 // no samples
		"# HELP g G.\n# TYPE g gauge\n# HELP a_total A.\n# TYPE a_total counter\ng 1\n",               // outside its block
		"# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n", // not cumulative
		"# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_count 3\n",                       // count differs
	} {
		if _, err := parseExposition(bad); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

// freeAddrOn returns a free TCP address on the loopback address ip.
func freeAddrOn(t *testing.T, ip string) string {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
