package trefftest_test

import (
	"fmt"
	"log"
	"os"
	"strings"
	"testing"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/ping"
	"github.com/treff-im/treff/trefftest"
)

// A test starts a server with the modules under test, creates an account,
// logs in and checks the server's answer. In a test, t is the test's
// *testing.T; here a stand-in lets the example run.
func ExampleNewServer() {
	t := newExampleT()
	defer t.finish()

	ts := trefftest.NewServer(t, func(s *treff.Server) {
		s.Modules = []treff.Module{&ping.Module{}}
	})
	ts.AddUser(t, "alice", "secret")
	c := ts.Login(t, "alice", "secret", "phone") // STARTTLS, PLAIN, bind
	fmt.Println(c.JID)
	c.Send("<iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
	c.Expect(`<iq type='result' id='p1'[^>]*/>`) // a regular expression; fails t after 5 s
	fmt.Println("pong")
	// Output:
	// alice@localhost/phone
	// pong
}

// Sync waits for an event, the answer to a round trip, instead of
// sleeping: once alice's Sync returns, the server has routed her message,
// and bob's Sync returns everything that was queued for him before.
func ExampleClient_Sync() {
	t := newExampleT()
	defer t.finish()

	ts := trefftest.NewServer(t, nil)
	ts.AddUser(t, "alice", "secret")
	ts.AddUser(t, "bob", "secret")
	alice := ts.Login(t, "alice", "secret", "desk")
	bob := ts.Login(t, "bob", "secret", "phone")
	alice.Send("<message to='bob@localhost/phone' id='m1'><body>hi</body></message>")
	alice.Sync() // the server routed m1
	got := bob.Sync()
	fmt.Println(strings.Contains(got, "<body>hi</body>"))
	// Output: true
}

// exampleT stands in for a *testing.T so that the examples run: it
// implements what trefftest uses and runs the clean-ups at the end.
type exampleT struct {
	testing.TB // not set: the methods trefftest does not use panic
	cleanups   []func()
	dirs       []string
}

func newExampleT() *exampleT { return &exampleT{} }

func (t *exampleT) Helper()                   {}
func (t *exampleT) Fatal(args ...any)         { log.Fatal(args...) }
func (t *exampleT) Fatalf(f string, a ...any) { log.Fatalf(f, a...) }
func (t *exampleT) Errorf(f string, a ...any) { log.Printf(f, a...) }
func (t *exampleT) Cleanup(f func())          { t.cleanups = append(t.cleanups, f) }

func (t *exampleT) TempDir() string {
	d, err := os.MkdirTemp("", "trefftest-example")
	if err != nil {
		log.Fatal(err)
	}
	t.dirs = append(t.dirs, d)
	return d
}

// finish runs the clean-ups, last registered first, as testing does.
func (t *exampleT) finish() {
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
	for _, d := range t.dirs {
		os.RemoveAll(d)
	}
}
