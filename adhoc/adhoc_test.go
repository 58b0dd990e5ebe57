package adhoc_test

import (
	"context"
	"errors"
	"log/slog"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/adhoc"
	"github.com/treff-im/treff/disco"
	"github.com/treff-im/treff/stanza"
	"github.com/treff-im/treff/trefftest"
)

// fixture: a server with four commands, alice and bob logged in.
type fixture struct {
	alice, bob *trefftest.Client
	log        *trefftest.LogBuffer
	mu         sync.Mutex
	got        adhoc.Values // what the form command was run with
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{log: &trefftest.LogBuffer{}}
	ah := &adhoc.Module{}
	ah.Add(
		adhoc.Command{Node: "urn:example:hello", Name: "Say hello",
			Run: func(ctx context.Context, from jid.JID, v adhoc.Values) (adhoc.Result, error) {
				return adhoc.Result{Note: "Hello, " + from.Localpart() + " <&>"}, nil
			}},
		adhoc.Command{Node: "urn:example:greet", Name: "Greet someone",
			Form: func(ctx context.Context, from jid.JID) *adhoc.Form {
				return &adhoc.Form{Title: "Greet", Fields: []adhoc.Field{
					adhoc.FormType("urn:example:greet"),
					{Var: "who", Type: "jid-single", Label: "Whom", Required: true},
				}}
			},
			Run: func(ctx context.Context, from jid.JID, v adhoc.Values) (adhoc.Result, error) {
				f.mu.Lock()
				f.got = v
				f.mu.Unlock()
				who, err := adhoc.JIDs(v["who"])
				if err != nil {
					return adhoc.Result{}, err
				}
				return adhoc.Result{Form: &adhoc.Form{Fields: []adhoc.Field{{Var: "greeted", Values: []string{who[0].String()}}}}}, nil
			}},
		adhoc.Command{Node: "urn:example:alice-only", Name: "For alice",
			Allowed: func(ctx context.Context, from jid.JID) bool { return from.Localpart() == "alice" },
			Run: func(ctx context.Context, from jid.JID, v adhoc.Values) (adhoc.Result, error) {
				return adhoc.Result{Note: "ok"}, nil
			}},
		adhoc.Command{Node: "urn:example:broken", Name: "Broken",
			Run: func(ctx context.Context, from jid.JID, v adhoc.Values) (adhoc.Result, error) {
				return adhoc.Result{}, errors.New("disk on fire")
			}},
	)
	ts := trefftest.NewServer(t, func(s *treff.Server) {
		s.Modules = []treff.Module{&disco.Module{}, ah}
		s.Logger = slog.New(slog.NewTextHandler(f.log, nil))
	})
	ts.AddUser(t, "alice", "pw")
	ts.AddUser(t, "bob", "pw")
	f.alice = ts.Login(t, "alice", "pw", "r")
	f.bob = ts.Login(t, "bob", "pw", "r")
	return f
}

func command(id, node, attrs, inner string) string {
	return "<iq type='set' id='" + id + "' to='localhost'><command xmlns='http://jabber.org/protocol/commands' node='" +
		node + "'" + attrs + ">" + inner + "</command></iq>"
}

func answer(c *trefftest.Client, id string) string {
	return c.Expect(`<iq type='(?:result|error)' id='` + id + `'[^>]*(?:/>|>.*?</iq>)`)
}

// The command list shows each user what it may run.
func TestList(t *testing.T) {
	f := newFixture(t)
	list := "<iq type='get' id='l' to='localhost'><query xmlns='http://jabber.org/protocol/disco#items' node='http://jabber.org/protocol/commands'/></iq>"
	f.alice.Send(list)
	got := f.alice.Expect(`<iq type='result' id='l'.*?</iq>`)
	for _, n := range []string{"hello", "greet", "alice-only", "broken"} {
		if !strings.Contains(got, "<item jid='localhost' node='urn:example:"+n+"'") {
			t.Errorf("alice's list lacks %s: %s", n, got)
		}
	}
	f.bob.Send(list)
	got = f.bob.Expect(`<iq type='result' id='l'.*?</iq>`)
	if strings.Contains(got, "alice-only") || !strings.Contains(got, "name='Say hello'") {
		t.Errorf("bob's list: %s", got)
	}
	f.alice.Send("<iq type='get' id='i' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info' node='http://jabber.org/protocol/commands'/></iq>")
	if got := f.alice.Expect(`<iq type='result' id='i'.*?</iq>`); !strings.Contains(got, "<identity category='automation' type='command-list'") {
		t.Errorf("node info: %s", got)
	}
	f.alice.Send("<iq type='get' id='f' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
	if got := f.alice.Expect(`<iq type='result' id='f'.*?</iq>`); !strings.Contains(got, "<feature var='http://jabber.org/protocol/commands'/>") {
		t.Errorf("feature not advertised: %s", got)
	}
}

// A command without a form completes at once with its note (escaped).
func TestRunAtOnce(t *testing.T) {
	f := newFixture(t)
	f.alice.Send(command("1", "urn:example:hello", " action='execute'", ""))
	got := answer(f.alice, "1")
	if !regexp.MustCompile(`<command xmlns='http://jabber.org/protocol/commands' node='urn:example:hello' sessionid='[0-9a-f]{16}' status='completed'><note type='info'>Hello, alice &lt;&amp;&gt;</note></command>`).MatchString(got) {
		t.Errorf("answer: %s", got)
	}
}

var sessionRe = regexp.MustCompile(`sessionid='([0-9a-f]+)'`)

// execute returns the form and a session; complete runs the command with
// the submitted values; the session is then gone.
func TestFormStage(t *testing.T) {
	f := newFixture(t)
	f.alice.Send(command("1", "urn:example:greet", "", ""))
	got := answer(f.alice, "1")
	want := `status='executing'><actions execute='complete'><complete/></actions><x xmlns='jabber:x:data' type='form'><title>Greet</title>` +
		`<field var='FORM_TYPE' type='hidden'><value>urn:example:greet</value></field><field var='who' type='jid-single' label='Whom'><required/></field></x></command>`
	if !strings.Contains(got, want) {
		t.Fatalf("form stage %s, want %s", got, want)
	}
	id := sessionRe.FindStringSubmatch(got)[1]
	submit := "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>urn:example:greet</value></field><field var='who'><value>bob@localhost/x</value></field></x>"
	// Another user cannot take the session.
	f.bob.Send(command("2", "urn:example:greet", " sessionid='"+id+"' action='complete'", submit))
	if got := answer(f.bob, "2"); !strings.Contains(got, "<bad-request ") || !strings.Contains(got, "bad-sessionid") {
		t.Errorf("bob completed alice's session: %s", got)
	}
	f.alice.Send(command("3", "urn:example:greet", " sessionid='"+id+"' action='complete'", submit))
	got = answer(f.alice, "3")
	want = "<command xmlns='http://jabber.org/protocol/commands' node='urn:example:greet' sessionid='" + id +
		"' status='completed'><x xmlns='jabber:x:data' type='result'><field var='greeted'><value>bob@localhost</value></field></x></command>"
	if !strings.Contains(got, want) {
		t.Errorf("completion %s, want %s", got, want)
	}
	f.mu.Lock()
	if w := (adhoc.Values{"FORM_TYPE": {"urn:example:greet"}, "who": {"bob@localhost/x"}}); !reflect.DeepEqual(f.got, w) {
		t.Errorf("run with %v, want %v", f.got, w)
	}
	f.mu.Unlock()
	// Completed sessions are forgotten.
	f.alice.Send(command("4", "urn:example:greet", " sessionid='"+id+"' action='complete'", submit))
	if got := answer(f.alice, "4"); !strings.Contains(got, "bad-sessionid") {
		t.Errorf("a completed session was run again: %s", got)
	}
}

func TestCancel(t *testing.T) {
	f := newFixture(t)
	f.alice.Send(command("1", "urn:example:greet", " action='execute'", ""))
	id := sessionRe.FindStringSubmatch(answer(f.alice, "1"))[1]
	f.alice.Send(command("2", "urn:example:greet", " sessionid='"+id+"' action='cancel'", ""))
	if got := answer(f.alice, "2"); !strings.Contains(got, "<command xmlns='http://jabber.org/protocol/commands' node='urn:example:greet' sessionid='"+id+"' status='canceled'></command>") {
		t.Errorf("cancel: %s", got)
	}
	f.mu.Lock()
	if f.got != nil {
		t.Errorf("a canceled command ran with %v", f.got)
	}
	f.mu.Unlock()
	f.alice.Send(command("3", "urn:example:greet", " sessionid='"+id+"' action='complete'", ""))
	if got := answer(f.alice, "3"); !strings.Contains(got, "bad-sessionid") {
		t.Errorf("a canceled session was run: %s", got)
	}
}

// Errors: each with the condition XEP-0050 and RFC 6120 give it.
func TestErrors(t *testing.T) {
	f := newFixture(t)
	f.alice.Send(command("g", "urn:example:greet", " action='execute'", ""))
	id := sessionRe.FindStringSubmatch(answer(f.alice, "g"))[1]
	for _, tc := range []struct {
		name string
		c    *trefftest.Client
		send string
		want string // in the error
	}{
		{"get", f.alice, "<iq type='get' id='e' to='localhost'><command xmlns='http://jabber.org/protocol/commands' node='urn:example:hello'/></iq>", "<error type='modify'><bad-request "},
		{"unknown node", f.alice, command("e", "urn:example:nope", "", ""), "<error type='cancel'><item-not-found "},
		{"not allowed", f.bob, command("e", "urn:example:alice-only", "", ""), "<error type='auth'><forbidden "},
		{"bad action", f.alice, command("e", "urn:example:hello", " action='next'", ""), "malformed-action"},
		{"bad session action", f.alice, command("e", "urn:example:greet", " sessionid='"+id+"' action='prev'", ""), "bad-action"},
		{"unknown session", f.alice, command("e", "urn:example:greet", " sessionid='0123456789abcdef' action='complete'", ""), "bad-sessionid"},
		{"run fails", f.alice, command("e", "urn:example:broken", "", ""), "<internal-server-error "},
		// A bad action ended the session above.
		{"session after bad action", f.alice, command("e", "urn:example:greet", " sessionid='"+id+"' action='complete'", ""), "bad-sessionid"},
	} {
		tc.c.Send(tc.send)
		got := answer(tc.c, "e")
		if !strings.Contains(got, "<iq type='error' id='e'") || !strings.Contains(got, tc.want) {
			t.Errorf("%s: %s, want an error with %s", tc.name, got, tc.want)
		}
	}
	// A stanza.Error from Run is sent as it is.
	f.alice.Send(command("g2", "urn:example:greet", "", ""))
	id = sessionRe.FindStringSubmatch(answer(f.alice, "g2"))[1]
	f.alice.Send(command("s", "urn:example:greet", " sessionid='"+id+"'",
		"<x xmlns='jabber:x:data' type='submit'><field var='who'><value>@bad</value></field></x>"))
	if got := answer(f.alice, "s"); !strings.Contains(got, "<error type='modify'><bad-request xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>not a valid address: @bad</text></error>") {
		t.Errorf("stanza error from Run: %s", got)
	}
	// The failure message stays in the server's log, not in the answer.
	f.alice.Send(command("b", "urn:example:broken", "", ""))
	if got := answer(f.alice, "b"); strings.Contains(got, "fire") {
		t.Errorf("internal error leaked: %s", got)
	}
	if log := f.log.String(); !strings.Contains(log, "node=urn:example:broken") || !strings.Contains(log, "disk on fire") {
		t.Errorf("failure not logged: %s", log)
	}
}

func TestAddTwicePanics(t *testing.T) {
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), "urn:example:x") {
			t.Errorf("recovered %v", r)
		}
	}()
	var m adhoc.Module
	m.Add(adhoc.Command{Node: "urn:example:x"})
	m.Add(adhoc.Command{Node: "urn:example:x"})
}

func TestJIDs(t *testing.T) {
	got, err := adhoc.JIDs([]string{" alice@localhost/r ", "", "bob@localhost"})
	if err != nil || len(got) != 2 || got[0].String() != "alice@localhost" || got[1].String() != "bob@localhost" {
		t.Errorf("JIDs = %v, %v", got, err)
	}
	if _, err := adhoc.JIDs([]string{"@x"}); !errors.Is(err, stanza.BadRequest) {
		t.Errorf("malformed JID: %v", err)
	}
}
