package extdisco

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/stanza"
	"github.com/treff-im/treff/trefftest"
)

var services = []Service{
	{Type: "stun", Host: "stun.example.org", Port: 3478, Transport: "udp"},
	{Type: "turn", Host: "turn.example.org", Port: 3478, Transport: "udp"},
	{Type: "turn", Host: "turn.example.org", Port: 3478, Transport: "tcp", Name: "TURN & TCP"},
}

func newServer(t *testing.T, m *Module) *trefftest.Server {
	ts := trefftest.NewServer(t, func(s *treff.Server) { s.Modules = []treff.Module{m} })
	ts.AddUser(t, "alice", "pw")
	return ts
}

// checkCredentials checks a <service/> element's TURN REST API
// credentials against the secret and the expected expiry.
func checkCredentials(t *testing.T, el, secret string, expires time.Time) {
	t.Helper()
	attr := func(name string) string {
		m := regexp.MustCompile(`\b` + name + `='([^']*)'`).FindStringSubmatch(el)
		if m == nil {
			t.Fatalf("no %s in %s", name, el)
		}
		return m[1]
	}
	user, pass := attr("username"), attr("password")
	ts, _, ok := strings.Cut(user, ":")
	if !ok || ts != strconv.FormatInt(expires.Unix(), 10) {
		t.Errorf("username %q does not start with the expiry %d", user, expires.Unix())
	}
	mac := hmac.New(sha1.New, []byte(secret))
	mac.Write([]byte(user))
	if want := base64.StdEncoding.EncodeToString(mac.Sum(nil)); pass != want {
		t.Errorf("password %q, want base64(HMAC-SHA1(secret, username)) = %q", pass, want)
	}
	if got := attr("expires"); got != expires.UTC().Format(time.RFC3339) {
		t.Errorf("expires %q, want %q", got, expires.UTC().Format(time.RFC3339))
	}
	if attr("restricted") != "1" {
		t.Errorf("credentials not marked restricted: %s", el)
	}
}

func TestServices(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	m := &Module{Services: services, Secret: "s3cret", TTL: time.Hour, now: func() time.Time { return now }}
	ts := newServer(t, m)
	c := ts.Login(t, "alice", "pw", "r")

	c.Send("<iq type='get' id='d' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
	c.Expect(`<iq [^>]*id='d'`) // no disco module here: the feature is registered
	if !strings.Contains(strings.Join(ts.Server.Features(false), " "), NS) {
		t.Errorf("feature %s not registered", NS)
	}

	c.Send("<iq type='get' id='all' to='localhost'><services xmlns='urn:xmpp:extdisco:2'/></iq>")
	got := c.Expect(`(?s)<iq type='result' id='all'.*?</iq>`)
	svcs := regexp.MustCompile(`<service [^>]*/>`).FindAllString(got, -1)
	if len(svcs) != 3 {
		t.Fatalf("%d services, want 3: %s", len(svcs), got)
	}
	if strings.Contains(svcs[0], "username") || !strings.Contains(svcs[0], "type='stun' host='stun.example.org' port='3478' transport='udp'") {
		t.Errorf("STUN service: %s", svcs[0])
	}
	for _, s := range svcs[1:] {
		checkCredentials(t, s, "s3cret", now.Add(time.Hour))
	}
	if !strings.Contains(svcs[2], "name='TURN &amp; TCP'") {
		t.Errorf("name not escaped: %s", svcs[2])
	}

	c.Send("<iq type='get' id='turn' to='localhost'><services xmlns='urn:xmpp:extdisco:2' type='turn'/></iq>")
	got = c.Expect(`(?s)<iq type='result' id='turn'.*?</iq>`)
	if n := strings.Count(got, "<service "); n != 2 || strings.Contains(got, "stun.example.org") || !strings.Contains(got, "<services xmlns='urn:xmpp:extdisco:2' type='turn'>") {
		t.Errorf("type filter: %s", got)
	}

	c.Send("<iq type='get' id='cred' to='localhost'><credentials xmlns='urn:xmpp:extdisco:2'><service host='turn.example.org' type='turn'/></credentials></iq>")
	got = c.Expect(`(?s)<iq type='result' id='cred'.*?</iq>`)
	if !strings.Contains(got, "<credentials xmlns='urn:xmpp:extdisco:2'><service ") {
		t.Fatalf("credentials: %s", got)
	}
	checkCredentials(t, got, "s3cret", now.Add(time.Hour))

	for id, req := range map[string]string{
		"nf":   "<credentials xmlns='urn:xmpp:extdisco:2'><service host='nope.example.org' type='turn'/></credentials>",
		"stun": "<credentials xmlns='urn:xmpp:extdisco:2'><service host='stun.example.org' type='stun'/></credentials>",
	} {
		c.Send("<iq type='get' id='" + id + "' to='localhost'>" + req + "</iq>")
		c.Expect(`<iq type='error' id='` + id + `'[^>]*><error type='cancel'><item-not-found `)
	}
	c.Send("<iq type='set' id='set' to='localhost'><services xmlns='urn:xmpp:extdisco:2'/></iq>")
	c.Expect(`<iq type='error' id='set'[^>]*><error type='modify'><bad-request `)
}

// Without a secret, TURN servers are listed without credentials, and
// asking for credentials finds none.
func TestNoSecret(t *testing.T) {
	ts := newServer(t, &Module{Services: services})
	c := ts.Login(t, "alice", "pw", "r")
	c.Send("<iq type='get' id='all' to='localhost'><services xmlns='urn:xmpp:extdisco:2'/></iq>")
	if got := c.Expect(`(?s)<iq type='result' id='all'.*?</iq>`); strings.Contains(got, "password") || strings.Count(got, "<service ") != 3 {
		t.Errorf("services without a secret: %s", got)
	}
	c.Send("<iq type='get' id='cred' to='localhost'><credentials xmlns='urn:xmpp:extdisco:2'><service host='turn.example.org' type='turn'/></credentials></iq>")
	c.Expect(`<iq type='error' id='cred'[^>]*><error type='cancel'><item-not-found `)
}

// Someone else's users (a remote JID, a server) get <forbidden/>.
func TestOnlyLocalUsers(t *testing.T) {
	m := &Module{Services: services, Secret: "s3cret"}
	ts := newServer(t, m)
	if err := ts.Server.Setup(); err != nil { // the module is set up (and this goroutine knows it)
		t.Fatal(err)
	}
	for _, from := range []string{"mallory@evil.example", "evil.example"} {
		iq, err := treff.NewStanza([]byte("<iq type='get' id='x' from='" + from + "' to='localhost'><services xmlns='urn:xmpp:extdisco:2'/></iq>"))
		if err != nil {
			t.Fatal(err)
		}
		_, err = m.handle(context.Background(), iq)
		if !errors.Is(err, stanza.Forbidden) {
			t.Errorf("from %s: %v, want forbidden", from, err)
		}
	}
}

func TestSetupRefusesBadServices(t *testing.T) {
	for _, m := range []*Module{
		{Services: []Service{{Type: "turn", Port: 3478}}},
		{Services: []Service{{Type: "turn", Host: "h", Port: 0}}},
		{Services: []Service{{Host: "h", Port: 1}}},
		{TTL: -time.Second},
	} {
		srv := &treff.Server{Hosts: []treff.Host{{Domain: "localhost"}}, Modules: []treff.Module{m}}
		if err := srv.Setup(); err == nil {
			t.Errorf("Setup accepted %+v", m)
		}
	}
}
