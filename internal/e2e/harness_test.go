package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/trefftest"
)

// python is Debian's interpreter, which sees the python3-slixmpp package
// (the python3 first on PATH may be another build that does not).
const python = "/usr/bin/python3"

// clientTimeout bounds one client script (it gives up itself after
// scriptTimeout and exits 3 with a message saying at which step).
const (
	clientTimeout = 30 * time.Second
	scriptTimeout = 20 * time.Second
)

var (
	slixOnce sync.Once
	slixErr  error
)

// needSlixmpp skips the test when slixmpp cannot be imported, or fails it
// when CI=true (CI installs it, so its absence is a broken setup).
func needSlixmpp(t *testing.T) {
	t.Helper()
	slixOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, python, "-c", "import slixmpp; print(slixmpp.__version__)")
		cmd.Env = pythonEnv()
		out, err := cmd.CombinedOutput()
		if err != nil {
			slixErr = fmt.Errorf("%s cannot import slixmpp: %v: %s", python, err, bytes.TrimSpace(out))
		}
	})
	if slixErr != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%v (CI=true: install it with apt-get install python3-slixmpp)", slixErr)
		}
		t.Skipf("%v (apt-get install python3-slixmpp)", slixErr)
	}
}

// pythonEnv is the environment of the client scripts: this one without
// variables that could point Debian's interpreter at another Python's
// modules, and without writing bytecode into the source tree.
func pythonEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if k == "PYTHONPATH" || k == "PYTHONHOME" || k == "PYTHONSTARTUP" {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1", "PYTHONIOENCODING=utf-8")
}

// stanzaError is a stanza's <error/> as the script reports it.
type stanzaError struct {
	Type       string   `json:"type"`
	Conditions []string `json:"conditions"`
	Text       string   `json:"text"`
	From       string   `json:"from"` // only in "received" events' errors
}

// streamError is a stream error as the script reports it.
type streamError struct {
	Conditions []string `json:"conditions"`
	Text       string   `json:"text"`
	XML        string   `json:"xml"`
}

// event is one JSON line printed by clients/slix.py. Which fields are set
// depends on Event.
type event struct {
	Event  string `json:"event"`
	Client string `json:"client"`

	// raw is the line as printed, for scenario-specific fields (see decode).
	raw []byte

	// login
	JID         string   `json:"jid"`
	Mech        string   `json:"mech"`
	SentMechs   []string `json:"sent_mechs"`
	TLS         string   `json:"tls"`
	StartTLS    bool     `json:"starttls"`
	Connects    int      `json:"connects"`
	Disconnects int      `json:"disconnects"`

	// message, iq
	From   string       `json:"from"`
	To     string       `json:"to"`
	Type   string       `json:"type"`
	ID     string       `json:"id"`
	Body   string       `json:"body"`
	Error  *stanzaError `json:"error"`
	SentTo *string      `json:"sent_to"`

	// failed_auth, stream_error
	Conditions []string `json:"conditions"`
	Text       string   `json:"text"`
	XML        string   `json:"xml"`

	// auth_result
	Outcome  string `json:"outcome"`
	Failures int    `json:"failures"`

	// received
	Presences []string      `json:"presences"`
	Bodies    []string      `json:"bodies"`
	Errors    []stanzaError `json:"errors"`

	// conflict_result
	FirstJID          string        `json:"first_jid"`
	SecondJID         string        `json:"second_jid"`
	FirstStreamErrors []streamError `json:"first_stream_errors"`
	FirstMessages     int           `json:"first_messages"`
	FirstDisconnects  int           `json:"first_disconnects"`
	FirstConnects     int           `json:"first_connects"`

	// error, timeout
	Message string `json:"message"`
	Step    string `json:"step"`
}

// decode unmarshals the whole line of e into v, for events whose fields
// are not in event.
func (e event) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(e.raw, v); err != nil {
		t.Fatalf("%s event: %v: %s", e.Event, err, e.raw)
	}
}

type events []event

// of returns the events of the given kind (and client, unless "").
func (es events) of(kind, client string) events {
	var out events
	for _, e := range es {
		if e.Event == kind && (client == "" || e.Client == client) {
			out = append(out, e)
		}
	}
	return out
}

// one returns the only event of the given kind and client, failing the
// test if there is not exactly one.
func (es events) one(t *testing.T, kind, client string) event {
	t.Helper()
	got := es.of(kind, client)
	if len(got) != 1 {
		t.Fatalf("want one %q event of client %q, got %d: %+v", kind, client, len(got), got)
	}
	return got[0]
}

// server is a test server whose logs are kept, for checks of what the
// server saw (the SASL mechanism, failures).
type server struct {
	*trefftest.Server
	logs *logStore
}

// newServer starts a test server; configure, if given, may change it (add
// modules) before it starts.
func newServer(t *testing.T, configure ...func(*treff.Server)) *server {
	t.Helper()
	logs := &logStore{}
	ts := trefftest.NewServer(t, func(s *treff.Server) {
		s.Logger = slog.New(&logHandler{store: logs})
		for _, f := range configure {
			f(s)
		}
	})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server log:\n%s", logs.dump())
		}
	})
	return &server{Server: ts, logs: logs}
}

// slix runs clients/slix.py with the given scenario and arguments against
// s (STARTTLS unless the arguments say --direct-tls and give --addr) and
// returns the events it printed. The script must end with a "done" event
// and exit 0.
func (s *server) slix(t *testing.T, scenario string, args ...string) events {
	t.Helper()
	return s.client(t, "slix.py", scenario, args...)
}

// client runs the script clients/name (slix.py, or one built on it such
// as im.py) like slix.
func (s *server) client(t *testing.T, name, scenario string, args ...string) events {
	t.Helper()
	needSlixmpp(t)
	script, err := filepath.Abs(filepath.Join("clients", name))
	if err != nil {
		t.Fatal(err)
	}
	argv := []string{script, "--cert", s.CertFile, "--timeout", fmt.Sprint(scriptTimeout.Seconds())}
	if !slices.Contains(args, "--addr") {
		argv = append(argv, "--addr", s.Addr)
	}
	if testing.Verbose() && os.Getenv("E2E_DEBUG") != "" {
		argv = append(argv, "--debug")
	}
	argv = append(argv, scenario)
	argv = append(argv, args...)
	return runClient(t, "client "+scenario, pythonEnv(), python, argv...)
}

// runClient runs a client program (at most clientTimeout), parses the JSON
// event lines it prints and checks that it exited 0 after a "done" event.
// name says which client in failures; args are logged without the program.
func runClient(t *testing.T, name string, env []string, program string, argv ...string) events {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, program, argv...)
	cmd.Env = env
	cmd.WaitDelay = 2 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	elapsed := time.Since(start)
	report := func() string {
		return fmt.Sprintf("args: %q\nstdout:\n%s\nstderr:\n%s", argv[1:], stdout.String(), stderr.String())
	}
	if ctx.Err() != nil {
		t.Fatalf("%s killed after %v\n%s", name, clientTimeout, report())
	}
	if err != nil {
		t.Fatalf("%s failed after %v: %v\n%s", name, elapsed.Round(time.Millisecond), err, report())
	}
	var es events
	sc := bufio.NewScanner(bytes.NewReader(stdout.Bytes()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var e event
		if err := json.Unmarshal(line, &e); err != nil {
			t.Fatalf("%s printed a line that is not JSON: %q: %v\n%s", name, line, err, report())
		}
		e.raw = slices.Clone(line)
		es = append(es, e)
	}
	if len(es) == 0 || es[len(es)-1].Event != "done" {
		t.Fatalf("%s did not finish with a done event\n%s", name, report())
	}
	// Shown with -v, and on failure.
	t.Logf("%s (%v):\n%s", name, elapsed.Round(time.Millisecond), report())
	return es
}

// logRec is one server log record, attributes flattened to strings.
type logRec struct {
	Level slog.Level
	Msg   string
	Attrs map[string]string
}

type logStore struct {
	mu   sync.Mutex
	recs []logRec
}

func (s *logStore) find(msg string, attrs ...string) []logRec {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []logRec
next:
	for _, r := range s.recs {
		if r.Msg != msg {
			continue
		}
		for i := 0; i+1 < len(attrs); i += 2 {
			if r.Attrs[attrs[i]] != attrs[i+1] {
				continue next
			}
		}
		out = append(out, r)
	}
	return out
}

// waitFor waits up to 5s for n records (the server may log just after the
// client saw the outcome).
func (s *logStore) waitFor(n int, msg string, attrs ...string) []logRec {
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := s.find(msg, attrs...)
		if len(got) >= n || time.Now().After(deadline) {
			return got
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (s *logStore) dump() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	for _, r := range s.recs {
		fmt.Fprintf(&b, "  %v %s %v\n", r.Level, r.Msg, r.Attrs)
	}
	return b.String()
}

type logHandler struct {
	store *logStore
	attrs []slog.Attr
}

func (h *logHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *logHandler) Handle(_ context.Context, r slog.Record) error {
	rec := logRec{Level: r.Level, Msg: r.Message, Attrs: map[string]string{}}
	for _, a := range h.attrs {
		rec.Attrs[a.Key] = a.Value.String()
	}
	r.Attrs(func(a slog.Attr) bool {
		rec.Attrs[a.Key] = a.Value.String()
		return true
	})
	h.store.mu.Lock()
	h.store.recs = append(h.store.recs, rec)
	h.store.mu.Unlock()
	return nil
}

func (h *logHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &logHandler{store: h.store, attrs: append(slices.Clip(h.attrs), as...)}
}

func (h *logHandler) WithGroup(string) slog.Handler { return h }

// uniqueBody is a message body that is unique per call and holds
// characters that must be escaped in XML and some outside ASCII.
func uniqueBody(tag string) string {
	return fmt.Sprintf("%s <&> \"quoted\" 'single' ünïcødé 🦊 %d", tag, time.Now().UnixNano())
}
