package sasl2_test

import (
	"context"
	"encoding/base64"
	"regexp"
	"strings"
	"testing"

	"mellium.im/sasl"
	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/bind2"
	"github.com/treff-im/treff/carbons"
	"github.com/treff-im/treff/csi"
	"github.com/treff-im/treff/sasl2"
	"github.com/treff-im/treff/saslmech"
	"github.com/treff-im/treff/sm"
	"github.com/treff-im/treff/trefftest"
)

const (
	uaID  = "d4565fa7-4d72-4749-b3d3-740edbf87770"
	uaXML = "<user-agent id='" + uaID + "'><software>Test &amp; Co</software><device>Kiva's Phone</device></user-agent>"
)

// open connects, runs STARTTLS and opens the secured stream; it returns
// the client and the stream features.
func open(t *testing.T, ts *trefftest.Server) (*trefftest.Client, string) {
	t.Helper()
	c := ts.Dial(t, ts.Addr)
	c.StartTLS()
	c.Send(trefftest.Header(ts.Domain))
	return c, c.Expect(`</stream:features>`)
}

func plain(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
}

// authenticate returns a PLAIN <authenticate/> with the user agent and
// the extra children.
func authenticate(user, pass string, extra ...string) string {
	return "<authenticate xmlns='urn:xmpp:sasl:2' mechanism='PLAIN'><initial-response>" + plain(user, pass) +
		"</initial-response>" + uaXML + strings.Join(extra, "") + "</authenticate>"
}

// textOf returns the content of the first element named name in s.
func textOf(t *testing.T, s, name string) string {
	t.Helper()
	m := regexp.MustCompile(`<` + name + `>([^<]*)</` + name + `>`).FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("no <%s/> in %q", name, s)
	}
	return m[1]
}

func TestFeature(t *testing.T) {
	ts := trefftest.NewServer(t, func(s *treff.Server) { s.Modules = []treff.Module{&carbons.Module{}, &csi.Module{}} })
	c := ts.Dial(t, ts.Addr)
	c.Send(trefftest.Header(ts.Domain))
	if f := c.Expect(`</stream:features>`); strings.Contains(f, "urn:xmpp:sasl:2") {
		t.Errorf("SASL2 offered before TLS: %s", f)
	}
	_, f := open(t, ts)
	want := "<authentication xmlns='urn:xmpp:sasl:2'><mechanism>SCRAM-SHA-256-PLUS</mechanism><mechanism>SCRAM-SHA-1-PLUS</mechanism>" +
		"<mechanism>SCRAM-SHA-256</mechanism><mechanism>SCRAM-SHA-1</mechanism><mechanism>PLAIN</mechanism>" +
		"<inline><sm xmlns='urn:xmpp:sm:3'/><bind xmlns='urn:xmpp:bind:0'><inline>" +
		"<feature var='urn:xmpp:carbons:2'/><feature var='urn:xmpp:csi:0'/><feature var='urn:xmpp:sm:3'/>" +
		"</inline></bind></inline></authentication>"
	if !strings.Contains(f, want) {
		t.Errorf("features %s\nwant %s", f, want)
	}
	if !strings.Contains(f, "<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>") {
		t.Errorf("legacy SASL not offered beside SASL2: %s", f)
	}
}

// TestPlainWithoutBind: <success/> with the bare JID, then the features of
// an authenticated stream without a restart, and RFC 6120 binding.
func TestPlainWithoutBind(t *testing.T) {
	ts := trefftest.NewServer(t, nil)
	ts.AddUser(t, "alice", "pw")
	c, _ := open(t, ts)
	c.Send(authenticate("alice", "pw"))
	got := c.Expect(`</stream:features>`)
	want := "<success xmlns='urn:xmpp:sasl:2'><authorization-identifier>alice@localhost</authorization-identifier></success><stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"
	if !strings.HasPrefix(got, want) {
		t.Fatalf("got %q\nwant prefix %q", got, want)
	}
	c.Send("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>r</resource></bind></iq>")
	c.Expect(`<jid>alice@localhost/r</jid>`)
	c.Sync()
}

func TestSCRAMSHA1(t *testing.T) {
	ts := trefftest.NewServer(t, nil)
	ts.AddUser(t, "alice", "pencil")
	c, _ := open(t, ts)
	cl := sasl.NewClient(sasl.ScramSha1, sasl.Credentials(func() ([]byte, []byte, []byte) {
		return []byte("alice"), []byte("pencil"), nil
	}))
	_, first, err := cl.Step(nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Send("<authenticate xmlns='urn:xmpp:sasl:2' mechanism='SCRAM-SHA-1'><initial-response>" +
		base64.StdEncoding.EncodeToString(first) + "</initial-response>" + uaXML + "</authenticate>")
	m := regexp.MustCompile(`^<challenge xmlns='urn:xmpp:sasl:2'>([^<]+)</challenge>$`).FindStringSubmatch(c.Expect(`</challenge>`))
	if m == nil {
		t.Fatal("no challenge")
	}
	ch, err := base64.StdEncoding.DecodeString(m[1])
	if err != nil {
		t.Fatal(err)
	}
	_, final, err := cl.Step(ch)
	if err != nil {
		t.Fatal(err)
	}
	c.Send("<response xmlns='urn:xmpp:sasl:2'>" + base64.StdEncoding.EncodeToString(final) + "</response>")
	got := c.Expect(`</success>`)
	add, err := base64.StdEncoding.DecodeString(textOf(t, got, "additional-data"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := cl.Step(add); err != nil {
		t.Errorf("client rejects the server's signature: %v", err)
	}
	if id := textOf(t, got, "authorization-identifier"); id != "alice@localhost" {
		t.Errorf("authorization-identifier %q", id)
	}
}

// TestFailures: a wrong password, then an unknown mechanism, then aborting
// a challenge; the stream stays usable until the third failed attempt
// (Server.MaxAuthFailures), aborting and an unknown mechanism not counted.
func TestFailures(t *testing.T) {
	ts := trefftest.NewServer(t, nil)
	ts.AddUser(t, "alice", "pw")
	c, _ := open(t, ts)
	fail := "<failure xmlns='urn:xmpp:sasl:2'><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/></failure>"

	c.Send(authenticate("alice", "wrong"))
	if got := c.Expect(`</failure>`); got != fail {
		t.Errorf("wrong password: %q", got)
	}
	c.Send("<authenticate xmlns='urn:xmpp:sasl:2' mechanism='X-NONE'/>")
	if got := c.Expect(`</failure>`); !strings.Contains(got, "<invalid-mechanism xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>") {
		t.Errorf("unknown mechanism: %q", got)
	}
	// PLAIN without an initial response: an empty challenge.
	c.Send("<authenticate xmlns='urn:xmpp:sasl:2' mechanism='PLAIN'/>")
	c.Expect(`<challenge xmlns='urn:xmpp:sasl:2'></challenge>`)
	c.Send("<abort xmlns='urn:xmpp:sasl:2'/>")
	if got := c.Expect(`</failure>`); got != "<failure xmlns='urn:xmpp:sasl:2'><aborted xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/></failure>" {
		t.Errorf("abort: %q", got)
	}
	// The same without aborting: the response authenticates.
	c.Send("<authenticate xmlns='urn:xmpp:sasl:2' mechanism='PLAIN'/>")
	c.Expect(`</challenge>`)
	c.Send("<response xmlns='urn:xmpp:sasl:2'>" + plain("alice", "wrong") + "</response>")
	if got := c.Expect(`</failure>`); got != fail {
		t.Errorf("wrong password in a response: %q", got)
	}
	c.Send(authenticate("alice", "wrong"))
	c.Expect(`</failure>`)
	c.Expect(`<policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>`)
	c.ExpectClosed()
}

// TestOutOfPlace: what XEP-0388 forbids during an exchange closes the
// stream; so does a <response/> outside one.
func TestOutOfPlace(t *testing.T) {
	ts := trefftest.NewServer(t, nil)
	c, _ := open(t, ts)
	c.Send("<authenticate xmlns='urn:xmpp:sasl:2' mechanism='PLAIN'/>")
	c.Expect(`</challenge>`)
	c.Send("<iq type='get' id='x'><ping xmlns='urn:xmpp:ping'/></iq>")
	c.Expect(`<policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>`)
	c.ExpectClosed()

	c, _ = open(t, ts)
	c.Send("<response xmlns='urn:xmpp:sasl:2'>AA==</response>")
	c.Expect(`<policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>`)
	c.ExpectClosed()
}

// probe is a mechanism X-PROBE that records the Auth it finds in its
// context, and fails with a text unless the client sends "ok".
type probe struct{ got chan *sasl2.Auth }

func (p probe) Name() string { return "X-PROBE" }
func (p probe) Setup(ctx context.Context, r *treff.Registry) error {
	r.AddSASLMechanism(p)
	return nil
}
func (p probe) Start(ctx context.Context, s *saslmech.Stream) saslmech.Exchange {
	a, _ := sasl2.FromContext(ctx)
	p.got <- a
	return p
}
func (p probe) Step(ctx context.Context, in []byte) ([]byte, jid.JID, error) {
	if a, ok := sasl2.FromContext(ctx); !ok || a.Mechanism != "X-PROBE" {
		return nil, jid.JID{}, &saslmech.Error{Condition: "temporary-auth-failure", Text: "no Auth in Step's context"}
	}
	if string(in) != "ok" {
		return nil, jid.JID{}, &saslmech.Error{Condition: "credentials-expired", Text: "change it <now> & here"}
	}
	j, _ := jid.New("alice", "localhost", "")
	return nil, j, nil
}

func TestUserAgentAndText(t *testing.T) {
	p := probe{got: make(chan *sasl2.Auth, 4)}
	ts := trefftest.NewServer(t, func(s *treff.Server) { s.Modules = []treff.Module{p} })
	ts.AddUser(t, "alice", "pw")
	c, _ := open(t, ts)
	c.Send("<authenticate xmlns='urn:xmpp:sasl:2' mechanism='X-PROBE'><initial-response>" +
		base64.StdEncoding.EncodeToString([]byte("no")) + "</initial-response>" +
		"<user-agent id='D4565FA7-4D72-4749-B3D3-740EDBF87770'><software>Test &amp; Co</software><device>Kiva's Phone</device></user-agent>" +
		"<x xmlns='urn:example:x' a='1'/></authenticate>")
	got := c.Expect(`</failure>`)
	want := "<failure xmlns='urn:xmpp:sasl:2'><credentials-expired xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/><text>change it &lt;now&gt; &amp; here</text></failure>"
	if got != want {
		t.Errorf("got %q\nwant %q", got, want)
	}
	a := <-p.got
	if a == nil {
		t.Fatal("no Auth in the mechanism's context")
	}
	if want := (sasl2.UserAgent{ID: uaID, Software: "Test & Co", Device: "Kiva's Phone"}); a.UserAgent != want {
		t.Errorf("user agent %+v, want %+v", a.UserAgent, want)
	}
	if x, ok := a.Child("urn:example:x", "x"); !ok || x.Raw() != "<x xmlns='urn:example:x' a='1'/>" {
		t.Errorf("Child = %v, %v", x, ok)
	}

	// An id that is no UUID is left out.
	c.Send("<authenticate xmlns='urn:xmpp:sasl:2' mechanism='X-PROBE'><initial-response>" +
		base64.StdEncoding.EncodeToString([]byte("ok")) + "</initial-response><user-agent id='my-phone'/></authenticate>")
	c.Expect(`</success>`)
	if a := <-p.got; a.UserAgent != (sasl2.UserAgent{}) {
		t.Errorf("user agent %+v, want none", a.UserAgent)
	}
}

// full is the full JID in <authorization-identifier/>.
func full(t *testing.T, success string) string {
	t.Helper()
	return textOf(t, success, "authorization-identifier")
}

func TestBind2Inline(t *testing.T) {
	ts := trefftest.NewServer(t, func(s *treff.Server) { s.Modules = []treff.Module{&carbons.Module{}, &csi.Module{}} })
	ts.AddUser(t, "alice", "pw")
	ts.AddUser(t, "bob", "pw")
	c, _ := open(t, ts)
	c.Send(authenticate("alice", "pw", "<bind xmlns='urn:xmpp:bind:0'><tag>Awesome</tag>"+
		"<enable xmlns='urn:xmpp:carbons:2'/><inactive xmlns='urn:xmpp:csi:0'/><enable xmlns='urn:xmpp:sm:3' resume='true'/></bind>"))
	got := c.Expect(`</success><stream:features></stream:features>`)
	res := bind2.Resource(jid.MustParse("alice@localhost"), "Awesome", uaID)
	if !regexp.MustCompile(`^Awesome/[0-9a-f]{12}$`).MatchString(res) {
		t.Errorf("resource %q", res)
	}
	me := full(t, got)
	if me != "alice@localhost/"+res {
		t.Errorf("bound %s, want alice@localhost/%s", me, res)
	}
	if !regexp.MustCompile(`<bound xmlns='urn:xmpp:bind:0'><enabled xmlns='urn:xmpp:sm:3' id='[^']+' resume='true' max='\d+'/></bound></success>`).MatchString(got) {
		t.Errorf("no <enabled/> in <bound/>: %q", got)
	}
	s := ts.Session(jid.MustParse(me))
	if s == nil {
		t.Fatal("session not routable")
	}
	if !s.Holding() {
		t.Error("CSI <inactive/> not applied")
	}
	if _, on := s.Handled(); !on {
		t.Error("stream management not enabled")
	}
	// Stream management counts: nothing handled yet.
	c.Send("<r xmlns='urn:xmpp:sm:3'/>")
	c.Expect(`<a xmlns='urn:xmpp:sm:3' h='0'/>`)
	// Carbons: a chat message from alice's other session is copied to
	// an available session (and is urgent enough for an inactive one).
	c.Send("<presence/>")
	other := ts.Login(t, "alice", "pw", "desk")
	other.Send("<message to='bob@localhost' type='chat' id='m1'><body>hi</body></message>")
	other.Sync()
	c.Expect(`<sent xmlns='urn:xmpp:carbons:2'>`)
	// The presence and the ping count.
	c.Sync()
	c.Send("<r xmlns='urn:xmpp:sm:3'/>")
	c.Expect(`<a xmlns='urn:xmpp:sm:3' h='2'/>`)
}

// TestBind2StableResource: the same device gets the same resource, and its
// new session replaces the old one; another device gets another.
func TestBind2StableResource(t *testing.T) {
	ts := trefftest.NewServer(t, nil)
	ts.AddUser(t, "alice", "pw")
	bind := "<bind xmlns='urn:xmpp:bind:0'><tag>T</tag></bind>"
	c1, _ := open(t, ts)
	c1.Send(authenticate("alice", "pw", bind))
	j1 := full(t, c1.Expect(`</success>`))
	c2, _ := open(t, ts)
	c2.Send(authenticate("alice", "pw", bind))
	j2 := full(t, c2.Expect(`</success>`))
	if j1 != j2 || !strings.HasPrefix(j1, "alice@localhost/T/") {
		t.Errorf("resources %s and %s, want the same T/...", j1, j2)
	}
	c1.Expect(`<conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>`)
	c3, _ := open(t, ts)
	c3.Send(strings.Replace(authenticate("alice", "pw", bind), uaID, "0f8fad5b-d9cb-469f-a165-70867728950e", 1))
	if j3 := full(t, c3.Expect(`</success>`)); j3 == j1 {
		t.Errorf("another device got the same resource %s", j3)
	}
	c2.Sync()
}

// deny fails the authentication when <authenticate/> carries
// <deny xmlns='urn:example:deny'/>, after Bind 2 bound a session.
type deny struct{}

func (deny) Inline(*treff.Negotiation) string { return "" }
func (deny) Success(ctx context.Context, a *sasl2.Auth) (string, error) {
	if _, ok := a.Child("urn:example:deny", "deny"); ok {
		return "", &sasl2.Failure{Condition: "not-authorized", Text: "denied"}
	}
	return "", nil
}

// TestInlineFailureDropsSession: a failure after Bind 2 bound leaves no
// session behind (its closed hooks run); the next attempt binds the same
// resource afresh.
func TestInlineFailureDropsSession(t *testing.T) {
	closed := make(trefftest.ClosedSessions, 16)
	ts := trefftest.NewServer(t, func(s *treff.Server) {
		st := &sm.Module{}
		s.Modules = []treff.Module{st, &sasl2.Module{Inline: []sasl2.Inline{st, &bind2.Module{Features: []bind2.Feature{st}}, deny{}}}, closed}
	})
	ts.AddUser(t, "alice", "pw")
	c, _ := open(t, ts)
	bind := "<bind xmlns='urn:xmpp:bind:0'><enable xmlns='urn:xmpp:sm:3'/></bind>"
	c.Send(authenticate("alice", "pw", bind, "<deny xmlns='urn:example:deny'/>"))
	got := c.Expect(`</failure>`)
	if got != "<failure xmlns='urn:xmpp:sasl:2'><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/><text>denied</text></failure>" {
		t.Errorf("got %q", got)
	}
	me := "alice@localhost/" + bind2.Resource(jid.MustParse("alice@localhost"), "", uaID)
	closed.Wait(t, me)
	if ts.Session(jid.MustParse(me)) != nil {
		t.Error("the dropped session is routable")
	}
	c.Send(authenticate("alice", "pw", bind))
	if j := full(t, c.Expect(`</success>`)); j != me {
		t.Errorf("bound %s, want %s", j, me)
	}
	c.Sync()
}

// login authenticates with Bind 2 and stream management enabled for
// resumption, and returns the full JID and the resumption id.
func login(t *testing.T, ts *trefftest.Server) (*trefftest.Client, string, string) {
	t.Helper()
	c, _ := open(t, ts)
	c.Send(authenticate("alice", "pw", "<bind xmlns='urn:xmpp:bind:0'><enable xmlns='urn:xmpp:sm:3' resume='true'/></bind>"))
	got := c.Expect(`</success><stream:features></stream:features>`)
	id := regexp.MustCompile(`<enabled xmlns='urn:xmpp:sm:3' id='([^']+)'`).FindStringSubmatch(got)
	if id == nil {
		t.Fatalf("not enabled: %q", got)
	}
	return c, full(t, got), id[1]
}

// TestInlineResume: a session whose connection broke resumes inside
// <authenticate/>; the message sent to it meanwhile arrives after
// <success/>, which carries <resumed/> and the full JID; Bind 2's request
// is ignored.
func TestInlineResume(t *testing.T) {
	ts := trefftest.NewServer(t, nil)
	ts.AddUser(t, "alice", "pw")
	ts.AddUser(t, "bob", "pw")
	c, me, id := login(t, ts)
	c.Conn().Close()
	ts.WaitHibernating(t, me)
	bob := ts.Login(t, "bob", "pw", "b")
	bob.Send("<message to='" + me + "' type='chat' id='away'><body>while away</body></message>")
	bob.Sync()

	c, _ = open(t, ts)
	c.Send(authenticate("alice", "pw", "<resume xmlns='urn:xmpp:sm:3' previd='"+id+"' h='0'/>",
		"<bind xmlns='urn:xmpp:bind:0'><enable xmlns='urn:xmpp:sm:3' resume='true'/></bind>"))
	got := c.Expect(`while away`)
	want := "<success xmlns='urn:xmpp:sasl:2'><authorization-identifier>" + me + "</authorization-identifier>" +
		"<resumed xmlns='urn:xmpp:sm:3' h='0' previd='" + id + "'/></success><stream:features></stream:features><message"
	if !strings.HasPrefix(got, want) {
		t.Fatalf("got %q\nwant prefix %q", got, want)
	}
	c.Expect(`</message>`)
	// The same session goes on: acknowledging the message is fine.
	c.Send("<a xmlns='urn:xmpp:sm:3' h='1'/>")
	c.Sync()
	if s := ts.Session(jid.MustParse(me)); s == nil || s.Hibernating() {
		t.Error("session not resumed")
	}
}

// TestInlineResumeFails: an unknown previd gets <failed/>, and Bind 2
// binds a new session in the same step.
func TestInlineResumeFails(t *testing.T) {
	ts := trefftest.NewServer(t, nil)
	ts.AddUser(t, "alice", "pw")
	c, _ := open(t, ts)
	c.Send(authenticate("alice", "pw", "<resume xmlns='urn:xmpp:sm:3' previd='nope' h='0'/>",
		"<bind xmlns='urn:xmpp:bind:0'><enable xmlns='urn:xmpp:sm:3' resume='true'/></bind>"))
	got := c.Expect(`</success><stream:features></stream:features>`)
	if !regexp.MustCompile(`</authorization-identifier><failed xmlns='urn:xmpp:sm:3'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed><bound xmlns='urn:xmpp:bind:0'><enabled xmlns='urn:xmpp:sm:3' id='[^']+' resume='true'`).MatchString(got) {
		t.Errorf("got %q", got)
	}
	if me := full(t, got); !strings.HasPrefix(me, "alice@localhost/") {
		t.Errorf("authorization-identifier %q is no full JID", me)
	}
	c.Sync()
}

// TestLegacyUnaffected: RFC 6120 SASL, binding and XEP-0198 resumption
// work as before with SASL2 offered.
func TestLegacyUnaffected(t *testing.T) {
	ts := trefftest.NewServer(t, nil)
	ts.AddUser(t, "alice", "pw")
	c := ts.Login(t, "alice", "pw", "legacy")
	c.Send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
	id := regexp.MustCompile(`id='([^']+)'`).FindStringSubmatch(c.Expect(`<enabled[^>]*/>`))[1]
	c.Conn().Close()
	ts.WaitHibernating(t, "alice@localhost/legacy")
	c = ts.Dial(t, ts.Addr)
	c.Authenticate("alice", "pw")
	c.Send("<resume xmlns='urn:xmpp:sm:3' previd='" + id + "' h='0'/>")
	c.Expect(`<resumed xmlns='urn:xmpp:sm:3' h='0' previd='` + id + `'/>`)
	c.Sync()
}
