package treff_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"regexp"
	"testing"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/stanza"
	"github.com/treff-im/treff/trefftest"
)

// helloModule answers <query xmlns='urn:example:hello'/> IQs addressed to
// the server with a greeting for the sender.
type helloModule struct{}

func (helloModule) Name() string { return "hello" }

func (helloModule) Setup(ctx context.Context, r *treff.Registry) error {
	r.AddFeature("urn:example:hello") // listed in disco#info
	r.HandleIQ("urn:example:hello", treff.IQHandlerFunc(func(ctx context.Context, iq *treff.Stanza) ([]byte, error) {
		if iq.Type != "get" {
			return nil, stanza.BadRequest // sent as an error reply
		}
		b := []byte("<query xmlns='urn:example:hello'><greeting>Hello, ")
		b = treff.AppendEscaped(b, iq.From.Localpart()) // iq.From is set by the server
		return append(b, "</greeting></query>"...), nil // the result's payload
	}))
	return nil
}

// A minimal IQ module: a handler for one namespace, registered in Setup.
// The server wraps what the handler returns in the result IQ, or turns its
// error into an error IQ. Here trefftest runs it and a client asks (in a
// test, t is the test's *testing.T).
func ExampleRegistry_HandleIQ() {
	t := &exampleT{}
	defer t.finish()
	ts := trefftest.NewServer(t, func(s *treff.Server) { s.Modules = []treff.Module{helloModule{}} })
	ts.AddUser(t, "alice", "secret")
	c := ts.Login(t, "alice", "secret", "phone")

	c.Send("<iq type='get' id='1' to='localhost'><query xmlns='urn:example:hello'/></iq>")
	fmt.Println(regexp.MustCompile(`<query.*</query>`).FindString(c.Expect(`<iq type='result' id='1'.*?</iq>`)))
	c.Send("<iq type='set' id='2' to='localhost'><query xmlns='urn:example:hello'/></iq>")
	fmt.Println(regexp.MustCompile(`<error.*</error>`).FindString(c.Expect(`<iq type='error' id='2'.*?</iq>`)))
	// Output:
	// <query xmlns='urn:example:hello'><greeting>Hello, alice</greeting></query>
	// <error type='modify'><bad-request xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>
}

// exampleT stands in for a *testing.T so that the example runs: it
// implements what trefftest uses and runs the clean-ups at the end.
type exampleT struct {
	testing.TB // not set: the methods trefftest does not use panic
	cleanups   []func()
	dirs       []string
}

func (t *exampleT) Helper()                   {}
func (t *exampleT) Fatal(args ...any)         { log.Fatal(args...) }
func (t *exampleT) Fatalf(f string, a ...any) { log.Fatalf(f, a...) }
func (t *exampleT) Errorf(f string, a ...any) { log.Printf(f, a...) }
func (t *exampleT) Cleanup(f func())          { t.cleanups = append(t.cleanups, f) }

func (t *exampleT) TempDir() string {
	d, err := os.MkdirTemp("", "treff-example")
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
