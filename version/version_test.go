package version_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/disco"
	"github.com/treff-im/treff/trefftest"
	"github.com/treff-im/treff/version"
)

const query = "<iq type='get' id='v' to='localhost'><query xmlns='jabber:iq:version'/></iq>"

func login(t *testing.T, m *version.Module) *trefftest.Client {
	t.Helper()
	ts := trefftest.NewServer(t, func(s *treff.Server) { s.Modules = []treff.Module{&disco.Module{}, m} })
	ts.AddUser(t, "alice", "pw")
	return ts.Login(t, "alice", "pw", "r")
}

func TestDefaults(t *testing.T) {
	c := login(t, &version.Module{})
	c.Send(query)
	got := c.Expect(`<iq type='result' id='v'.*?</iq>`)
	// The version is the module's from the build information, "devel"
	// when there is none (as in a test binary).
	if !regexp.MustCompile(`<query xmlns='jabber:iq:version'><name>Treff</name><version>[^<]+</version></query>`).MatchString(got) {
		t.Errorf("answer: %s", got)
	}
	if strings.Contains(got, "<os>") {
		t.Errorf("the OS is reported unless set: %s", got)
	}
}

func TestConfigured(t *testing.T) {
	c := login(t, &version.Module{Software: "Chat & Co", Version: "1.2<3", OS: "Plan 9"})
	c.Send(query)
	got := c.Expect(`<iq type='result' id='v'.*?</iq>`)
	want := "<query xmlns='jabber:iq:version'><name>Chat &amp; Co</name><version>1.2&lt;3</version><os>Plan 9</os></query>"
	if !strings.Contains(got, want) {
		t.Errorf("answer %s, want %s", got, want)
	}
	// Only get is defined.
	c.Send("<iq type='set' id='s' to='localhost'><query xmlns='jabber:iq:version'/></iq>")
	c.Expect(`<iq type='error' id='s'[^>]*>.*<error type='modify'><bad-request `)
	// Advertised.
	c.Send("<iq type='get' id='d' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
	if got := c.Expect(`<iq type='result' id='d'.*?</iq>`); !strings.Contains(got, "<feature var='jabber:iq:version'/>") {
		t.Errorf("feature not advertised: %s", got)
	}
}

// Hide answers like a server without the module and does not advertise it.
func TestHide(t *testing.T) {
	c := login(t, &version.Module{Hide: true, Software: "Secret"})
	c.Send(query)
	if got := c.Expect(`<iq type='error' id='v'.*?</iq>`); !regexp.MustCompile(`<error type='cancel'><service-unavailable `).MatchString(got) || strings.Contains(got, "Secret") {
		t.Errorf("hidden version answered with %s", got)
	}
	c.Send("<iq type='get' id='d' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
	if got := c.Expect(`<iq type='result' id='d'.*?</iq>`); strings.Contains(got, "jabber:iq:version") {
		t.Errorf("hidden feature advertised: %s", got)
	}
}
