package fast

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/adhoc"
	"github.com/treff-im/treff/bind2"
	"github.com/treff-im/treff/sasl2"
	"github.com/treff-im/treff/saslmech"
	"github.com/treff-im/treff/storage"
	"github.com/treff-im/treff/storage/memstore"
	"github.com/treff-im/treff/trefftest"
)

// TestHTVectors checks the HMACs of draft-schmaus-kitten-sasl-ht-09
// against values computed independently (Python's hmac module) for the
// token of XEP-0484's example and, for channel binding, cb-data 00 01 .. 1f.
func TestHTVectors(t *testing.T) {
	const token = "WXZzciBwYmFmdmZnZiBqdmd1IGp2eXFhcmZm"
	cb := make([]byte, 32)
	for i := range cb {
		cb[i] = byte(i)
	}
	for _, tc := range []struct {
		label string
		cb    []byte
		want  string
	}{
		{"Initiator", nil, "9097787461a184e0fa84ec00c1381190b6c4d16a8ec4453c7b2ac5e7fcf935ed"},
		{"Responder", nil, "4e513409631474863b986c9f3e8c1e27ca29d1d7ab9ed4097e7afd6007bf9c62"},
		{"Initiator", cb, "0c5745576afeea711960549186a31a65c9f328205ee38b66825b3d4c872b395c"},
		{"Responder", cb, "1260579b34d55aeba4e43062a412db609a0a7153abd218b0f148445c4e83529f"},
	} {
		if got := hex.EncodeToString(htHash(token, tc.label, tc.cb)); got != tc.want {
			t.Errorf("htHash(%s, %d bytes of cb) = %s, want %s", tc.label, len(tc.cb), got, tc.want)
		}
	}
}

// fixture is a test server with the FAST module and a clock.
type fixture struct {
	t     *testing.T
	ts    *trefftest.Server
	m     *Module
	ah    *adhoc.Module
	clock *trefftest.Clock
	start time.Time
}

func newFixture(t *testing.T) *fixture {
	f := &fixture{t: t, start: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	f.clock = trefftest.NewClock(f.start)
	f.ah = &adhoc.Module{}
	f.m = &Module{Secret: []byte("0123456789abcdef0123456789abcdef"), Now: f.clock.Now, AdHoc: f.ah}
	f.ts = trefftest.NewServer(t, func(s *treff.Server) {
		s.Modules = []treff.Module{f.ah, f.m}
		s.Logger = slog.New(slog.DiscardHandler)
	})
	// The listeners' goroutines set the modules up; Setup waits for that.
	if err := f.ts.Server.Setup(); err != nil {
		t.Fatal(err)
	}
	f.ts.AddUser(t, "alice", "alicepw")
	f.ts.AddUser(t, "bob", "bobpw")
	return f
}

var phone = sasl2.UserAgent{ID: "d4565fa7-4d72-4749-b3d3-740edbf87770", Software: "AwesomeXMPP", Device: "Kiva's Phone"}

// passwordLogin is the request of a password login by alice's phone that
// asks for a token for mech.
func passwordLogin(mech string) request {
	return request{user: jid.MustParse("alice@localhost"), agent: phone, mechanism: "SCRAM-SHA-256", requestToken: mech, offered: []string{MechNone}}
}

var tokenRE = regexp.MustCompile(`^<token xmlns='urn:xmpp:fast:0' expiry='([^']+)' token='([^']+)'/>$`)

// issue runs Success for req and returns the token it hands out.
func (f *fixture) issue(req request) string {
	f.t.Helper()
	out, err := f.m.success(f.t.Context(), req)
	if err != nil {
		f.t.Fatalf("Success: %v", err)
	}
	m := tokenRE.FindStringSubmatch(out)
	if m == nil {
		f.t.Fatalf("Success = %q, want a <token/>", out)
	}
	exp, err := time.Parse(time.RFC3339, m[1])
	if err != nil || !exp.Equal(f.clock.Now().Add(DefaultExpiry).Truncate(time.Second)) {
		f.t.Errorf("token expiry %q, want %v", m[1], f.clock.Now().Add(DefaultExpiry))
	}
	return m[2]
}

// initiator is the client's initiator-msg, computed here as a client
// would.
func initiator(authcid, token string, cb []byte) []byte {
	h := hmac.New(sha256.New, []byte(token))
	h.Write([]byte("Initiator"))
	h.Write(cb)
	return append([]byte(authcid+"\x00"), h.Sum(nil)...)
}

// login runs an HT exchange of mechanism mech on stream s (nil: a stream
// without channel binding) for req, with the client's message msg.
func (f *fixture) login(s *saslmech.Stream, mech string, req request, msg []byte) ([]byte, jid.JID, error) {
	if s == nil {
		s = &saslmech.Stream{Host: "localhost"}
	}
	req.mechanism = mech
	x := &htExchange{m: f.m, mech: mech, s: s, req: req}
	return x.Step(f.t.Context(), msg)
}

// fastLogin is the request of a FAST login by alice's phone.
func fastLogin() request {
	return request{user: jid.MustParse("alice@localhost"), agent: phone, offered: []string{MechNone}}
}

// mustLogin logs in with token and checks the responder-msg.
func (f *fixture) mustLogin(req request, token string) {
	f.t.Helper()
	out, user, err := f.login(nil, MechNone, req, initiator("alice", token, nil))
	if err != nil {
		f.t.Fatalf("FAST login: %v", err)
	}
	if user.String() != "alice@localhost" {
		f.t.Errorf("FAST login authenticated %q", user)
	}
	h := hmac.New(sha256.New, []byte(token))
	h.Write([]byte("Responder"))
	if !hmac.Equal(out, h.Sum(nil)) {
		f.t.Errorf("responder-msg = %x, want HMAC(token, \"Responder\")", out)
	}
}

// refused logs in with token and wants the login refused with cond.
func (f *fixture) refused(req request, token, cond string) {
	f.t.Helper()
	_, _, err := f.login(nil, MechNone, req, initiator("alice", token, nil))
	if got := condition(err); got != cond {
		f.t.Fatalf("FAST login: error %v (%s), want %s", err, got, cond)
	}
}

func condition(err error) string {
	var se *saslmech.Error
	switch {
	case err == nil:
		return "success"
	case errors.Is(err, saslmech.ErrNotAuthorized):
		return "not-authorized"
	case errors.As(err, &se):
		return se.Condition
	}
	return "other: " + err.Error()
}

func TestRequestTokenAndLogin(t *testing.T) {
	f := newFixture(t)
	tok := f.issue(passwordLogin(MechNone))
	if !strings.HasPrefix(tok, "secret-token:fast-") || len(tok) < 40 {
		t.Errorf("token %q", tok)
	}
	// Nothing in the store is the token.
	d, err := f.m.tokens.FastDevice(t.Context(), "alice@localhost", phone.ID)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(d.Next.ID), tok) || d.Next.Mechanism != MechNone || d.Software != phone.Software || d.Device != phone.Device {
		t.Errorf("stored device %+v", d)
	}
	f.clock.Add(time.Hour)
	f.mustLogin(fastLogin(), tok)
	// A FAST login one hour later gets no new token (not due).
	req := fastLogin()
	req.mechanism = MechNone
	if out, err := f.m.success(t.Context(), req); out != "" || err != nil {
		t.Errorf("Success after a FAST login of a fresh token = %q, %v; want nothing", out, err)
	}
	devs, err := f.m.Devices(t.Context(), jid.MustParse("alice@localhost"))
	if err != nil || len(devs) != 1 || !devs[0].LastUsed.Equal(f.clock.Now()) || len(devs[0].Current.ID) == 0 || len(devs[0].Next.ID) != 0 {
		t.Errorf("devices after the login: %+v, %v", devs, err)
	}
	// The same token with the authcid as a bare JID works too.
	if _, _, err := f.login(nil, MechNone, fastLogin(), initiator("alice@localhost", tok, nil)); err != nil {
		t.Errorf("login with a bare JID as authcid: %v", err)
	}
}

func TestRequestTokenRefused(t *testing.T) {
	f := newFixture(t)
	for name, req := range map[string]request{
		"no user agent":         {user: jid.MustParse("alice@localhost"), mechanism: "PLAIN", requestToken: MechNone, offered: []string{MechNone}},
		"mechanism not offered": passwordLogin(MechExpr),
		"unknown mechanism":     passwordLogin("HT-SHA-256-ENDP"),
		"no request":            passwordLogin(""),
	} {
		if out, err := f.m.success(t.Context(), req); out != "" || err != nil {
			t.Errorf("%s: Success = %q, %v; want no token", name, out, err)
		}
	}
	bad := passwordLogin(MechNone)
	bad.bad = "<request-token/> names no mechanism"
	if _, err := f.m.success(t.Context(), bad); err == nil {
		t.Error("Success of a malformed request: no error")
	}
}

// TestRotation checks that a token due for rotation gets a successor, that
// the old one stays valid until the successor is first used, and that a
// token handed out but never received is replaced by the next one.
func TestRotation(t *testing.T) {
	f := newFixture(t)
	t1 := f.issue(passwordLogin(MechNone))
	f.clock.Add(2 * 24 * time.Hour)
	f.mustLogin(fastLogin(), t1)
	req := fastLogin()
	req.mechanism = MechNone
	t2 := f.issue(req) // rotation, unasked
	// The <success/> carrying t2 was lost: t1 still works, and the next
	// rotation replaces t2.
	f.mustLogin(fastLogin(), t1)
	t3 := f.issue(req)
	f.refused(fastLogin(), t2, "not-authorized")
	// t3's first use retires t1.
	f.mustLogin(fastLogin(), t3)
	f.refused(fastLogin(), t1, "not-authorized")
	f.mustLogin(fastLogin(), t3)
	// Not due again yet.
	if out, _ := f.m.success(t.Context(), req); out != "" {
		t.Errorf("Success right after a rotation = %q, want nothing", out)
	}
	// An invalidating login is not rotated.
	f.clock.Add(2 * 24 * time.Hour)
	inv := req
	inv.invalidate = true
	if out, _ := f.m.success(t.Context(), inv); out != "" {
		t.Errorf("Success of an invalidating login = %q, want no token", out)
	}
}

func TestInvalidate(t *testing.T) {
	f := newFixture(t)
	tok := f.issue(passwordLogin(MechNone))
	f.mustLogin(fastLogin(), tok)
	pending := f.issue(passwordLogin(MechNone)) // handed out, not used
	req := fastLogin()
	req.invalidate = true
	f.mustLogin(req, tok)
	f.refused(fastLogin(), tok, "not-authorized")
	f.refused(fastLogin(), pending, "not-authorized")
	if devs, _ := f.m.Devices(t.Context(), jid.MustParse("alice@localhost")); len(devs) != 0 {
		t.Errorf("devices after invalidation: %+v", devs)
	}
	// With <request-token/> too, the client gets a new one.
	again := f.issue(passwordLogin(MechNone))
	req.requestToken, req.mechanism = MechNone, MechNone
	f.mustLogin(req, again)
	fresh := f.issue(req)
	f.refused(fastLogin(), again, "not-authorized")
	f.mustLogin(fastLogin(), fresh)
}

func TestCountReplay(t *testing.T) {
	f := newFixture(t)
	tok := f.issue(passwordLogin(MechNone))
	counted := func(n uint64) request {
		r := fastLogin()
		r.counted, r.count = true, n
		return r
	}
	f.mustLogin(counted(5), tok)
	f.refused(counted(5), tok, "not-authorized")
	f.refused(counted(4), tok, "not-authorized")
	f.mustLogin(counted(6), tok)
	// Without a count (no 0-RTT) the token still works.
	f.mustLogin(fastLogin(), tok)
	f.refused(counted(6), tok, "not-authorized")
	// A new token starts counting afresh.
	next := f.issue(passwordLogin(MechNone))
	f.mustLogin(counted(1), next)
	f.refused(counted(1), next, "not-authorized")
	// A count that is no number is malformed.
	bad := fastLogin()
	bad.bad = "the count of <fast/> is not a number"
	f.refused(bad, next, "malformed-request")
}

func TestExpiry(t *testing.T) {
	f := newFixture(t)
	tok := f.issue(passwordLogin(MechNone))
	f.clock.Add(DefaultExpiry - time.Second)
	f.mustLogin(fastLogin(), tok)
	f.clock.Add(time.Second)
	f.refused(fastLogin(), tok, "credentials-expired")
	f.refused(fastLogin(), tok, "not-authorized") // and it is gone
	if devs, _ := f.m.Devices(t.Context(), jid.MustParse("alice@localhost")); len(devs) != 0 {
		t.Errorf("devices after expiry: %+v", devs)
	}
}

func TestOtherDeviceUserMechanism(t *testing.T) {
	f := newFixture(t)
	tok := f.issue(passwordLogin(MechNone))
	other := fastLogin()
	other.agent.ID = "another-device"
	f.refused(other, tok, "not-authorized")
	noAgent := fastLogin()
	noAgent.agent = sasl2.UserAgent{}
	f.refused(noAgent, tok, "not-authorized")
	// Bob cannot use alice's token, nor can alice another host's.
	if _, _, err := f.login(nil, MechNone, fastLogin(), initiator("bob", tok, nil)); condition(err) != "not-authorized" {
		t.Errorf("bob with alice's token: %v", err)
	}
	if _, _, err := f.login(nil, MechNone, fastLogin(), initiator("alice@example.org", tok, nil)); condition(err) != "not-authorized" {
		t.Errorf("alice@example.org with alice@localhost's token: %v", err)
	}
	// A wrong token, and malformed messages.
	f.refused(fastLogin(), tok+"x", "not-authorized")
	for name, msg := range map[string][]byte{
		"no NUL":     []byte("alice"),
		"short HMAC": []byte("alice\x00abc"),
		"no authcid": initiator("", tok, nil),
		"nil":        nil,
	} {
		if _, _, err := f.login(nil, MechNone, fastLogin(), msg); condition(err) != "malformed-request" {
			t.Errorf("%s: %v, want malformed-request", name, err)
		}
	}
	// Outside SASL2 the mechanism refuses.
	x := htMechanism{m: f.m, name: MechNone}.Start(t.Context(), &saslmech.Stream{Host: "localhost"})
	if _, _, err := x.Step(t.Context(), initiator("alice", tok, nil)); condition(err) != "invalid-mechanism" {
		t.Errorf("HT outside SASL2: %v", err)
	}
}

// tlsPair returns the server's and the client's view of one TLS 1.3
// connection over a pipe.
func tlsPair(t *testing.T) (server, client tls.ConnectionState) {
	cert, err := trefftest.Certificate("localhost")
	if err != nil {
		t.Fatal(err)
	}
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	sc := tls.Server(a, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13})
	cc := tls.Client(b, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
	errc := make(chan error, 1)
	go func() { errc <- sc.HandshakeContext(t.Context()) }()
	if err := cc.HandshakeContext(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	return sc.ConnectionState(), cc.ConnectionState()
}

// TestExporterBinding checks HT-SHA-256-EXPR with real tls-exporter data,
// and that a token is bound to the mechanism it was asked for.
func TestExporterBinding(t *testing.T) {
	f := newFixture(t)
	srvState, cliState := tlsPair(t)
	s := &saslmech.Stream{Host: "localhost", TLS: &srvState}
	if got := offered(s); !slices.Equal(got, []string{MechExpr, MechNone}) {
		t.Errorf("offered on TLS 1.3 = %v", got)
	}
	if got := offered(&saslmech.Stream{Host: "localhost"}); !slices.Equal(got, []string{MechNone}) {
		t.Errorf("offered without TLS state = %v", got)
	}
	if (htMechanism{m: f.m, name: MechExpr}).Offer(&saslmech.Stream{Host: "localhost"}) {
		t.Error("EXPR offered without TLS state")
	}
	req := passwordLogin(MechExpr)
	req.offered = offered(s)
	tok := f.issue(req)
	cb, err := cliState.ExportKeyingMaterial("EXPORTER-Channel-Binding", nil, 32)
	if err != nil {
		t.Fatal(err)
	}
	out, user, err := f.login(s, MechExpr, fastLogin(), initiator("alice", tok, cb))
	if err != nil || user.String() != "alice@localhost" {
		t.Fatalf("EXPR login: %v %v", user, err)
	}
	h := hmac.New(sha256.New, []byte(tok))
	h.Write([]byte("Responder"))
	h.Write(cb)
	if !hmac.Equal(out, h.Sum(nil)) {
		t.Error("EXPR responder-msg does not bind the channel")
	}
	// Another connection's binding data fails, and so does the token with
	// HT-SHA-256-NONE.
	if _, _, err := f.login(s, MechExpr, fastLogin(), initiator("alice", tok, make([]byte, 32))); condition(err) != "not-authorized" {
		t.Errorf("EXPR with wrong binding data: %v", err)
	}
	if _, _, err := f.login(s, MechNone, fastLogin(), initiator("alice", tok, nil)); condition(err) != "not-authorized" {
		t.Errorf("EXPR token with NONE: %v", err)
	}
}

// TestPasswordChangeAndDeletion checks that a password change and account
// deletion remove the user's tokens, and nobody else's.
func TestPasswordChangeAndDeletion(t *testing.T) {
	f := newFixture(t)
	tok := f.issue(passwordLogin(MechNone))
	bobReq := passwordLogin(MechNone)
	bobReq.user = jid.MustParse("bob@localhost")
	bobTok := f.issue(bobReq)
	ctx := t.Context()
	if err := f.ts.Server.PasswordChanged(ctx, jid.MustParse("alice@localhost")); err != nil {
		t.Fatal(err)
	}
	f.refused(fastLogin(), tok, "not-authorized")
	bobLogin := fastLogin()
	bobLogin.user = bobReq.user
	if _, _, err := f.login(nil, MechNone, bobLogin, initiator("bob", bobTok, nil)); err != nil {
		t.Errorf("bob's token after alice's password change: %v", err)
	}
	if err := f.ts.Server.DeleteAccount(ctx, jid.MustParse("bob@localhost"), "bye"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.login(nil, MechNone, bobLogin, initiator("bob", bobTok, nil)); condition(err) != "not-authorized" {
		t.Errorf("bob's token after his account's deletion: %v", err)
	}
}

// TestDevicesCommand runs the users' ad-hoc command: it lists the devices
// and logs out those picked.
func TestDevicesCommand(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	alice := jid.MustParse("alice@localhost/phone")
	cmd := f.m.devicesCommand()
	if form := cmd.Form(ctx, alice); form != nil {
		t.Errorf("form without devices: %+v", form)
	}
	res, err := cmd.Run(ctx, alice, nil)
	if err != nil || res.Note != "No device logs in with a token." {
		t.Errorf("Run without devices = %+v, %v", res, err)
	}
	tok := f.issue(passwordLogin(MechNone))
	laptop := passwordLogin(MechNone)
	laptop.agent = sasl2.UserAgent{ID: "laptop-1", Software: "Gajim"}
	f.issue(laptop)
	form := cmd.Form(ctx, alice)
	if form == nil || len(form.Fields) != 1 || !slices.Equal(form.Fields[0].Options, []string{phone.ID, "laptop-1"}) ||
		!strings.Contains(form.Instructions, "laptop-1 (Gajim), last used 2026-03-01 12:00:00 UTC") ||
		!strings.Contains(form.Instructions, phone.ID+" (AwesomeXMPP on Kiva's Phone)") {
		t.Fatalf("form = %+v", form)
	}
	res, err = cmd.Run(ctx, alice, adhoc.Values{"revoke": {phone.ID}})
	if err != nil || !strings.HasPrefix(res.Note, "Logged out: "+phone.ID+".") || !strings.Contains(res.Note, "laptop-1") || strings.Count(res.Note, "\n") != 2 {
		t.Errorf("Run revoking the phone = %q, %v", res.Note, err)
	}
	f.refused(fastLogin(), tok, "not-authorized")
	// Bob sees none of alice's devices.
	if form := cmd.Form(ctx, jid.MustParse("bob@localhost/x")); form != nil {
		t.Errorf("bob's form lists alice's devices: %+v", form)
	}
	if err := f.m.Revoke(ctx, jid.MustParse("alice@localhost"), "nope"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Revoke of an unknown device: %v", err)
	}
}

// TestSetup checks the module's configuration errors.
func TestSetup(t *testing.T) {
	for _, tc := range []struct {
		name  string
		store storage.Store
		m     *Module
		want  string
	}{
		{"no token store", nil, &Module{}, "cannot keep FAST tokens"},
		{"short secret", memstore.New(), &Module{Secret: []byte("short")}, "at least 16"},
	} {
		srv := &treff.Server{Hosts: []treff.Host{{Domain: "localhost"}}, Modules: []treff.Module{tc.m}, Logger: slog.New(slog.DiscardHandler)}
		if tc.store != nil {
			srv.Storage = tc.store
		}
		if err := srv.Setup(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Setup = %v, want an error saying %q", tc.name, err, tc.want)
		}
		// Not set up, it offers nothing.
		if _, ok := tc.m.Mechanism(&sasl2.Auth{}, MechNone); ok {
			t.Errorf("%s: a module that failed its Setup offers %s", tc.name, MechNone)
		}
	}
}

// TestRevokeEndsSessions checks that revoking a device also ends its
// sessions, found by the resource Bind 2 derives from its user agent id
// (with and without a tag), and no other session of the user.
func TestRevokeEndsSessions(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	alice := jid.MustParse("alice@localhost")
	f.issue(passwordLogin(MechNone))
	gen := bind2.Resource(alice, "", phone.ID)
	plain := f.ts.Login(t, "alice", "alicepw", gen)
	tagged := f.ts.Login(t, "alice", "alicepw", "AwesomeXMPP/"+gen)
	other := f.ts.Login(t, "alice", "alicepw", "laptop")
	if err := f.m.Revoke(ctx, alice, phone.ID); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*trefftest.Client{plain, tagged} {
		c.Expect(`<not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text [^>]*>this device was logged out</text></stream:error></stream:stream>`)
		c.ExpectClosed()
	}
	if got := other.Sync(); strings.Contains(got, "stream:error") {
		t.Errorf("another device's session got %q", got)
	}
}
