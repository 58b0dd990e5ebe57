package ping_test

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/ping"
	"github.com/treff-im/treff/trefftest"
)

// The server pings a silent client; an answer keeps the session, silence
// closes it with connection-timeout.
func TestServerPings(t *testing.T) {
	ts := trefftest.NewServer(t, func(s *treff.Server) {
		s.Modules = []treff.Module{&ping.Module{Interval: 200 * time.Millisecond, Timeout: 300 * time.Millisecond}}
	})
	ts.AddUser(t, "alice", "pw")
	ts.AddUser(t, "bob", "pw")

	alive := ts.Login(t, "alice", "pw", "alive")
	re := regexp.MustCompile(`<iq type='get' id='(ping-[0-9a-f]+)' from='localhost' to='alice@localhost/alive'><ping xmlns='urn:xmpp:ping'/></iq>`)
	for i := 0; i < 3; i++ {
		id := re.FindStringSubmatch(alive.Expect(re.String()))[1]
		if strings.Contains(alive.Pending(), "connection-timeout") {
			t.Fatal("answering client was disconnected")
		}
		alive.Send("<iq type='result' id='" + id + "' to='localhost'/>")
	}

	dead := ts.Login(t, "bob", "pw", "dead")
	dead.Expect(`<ping xmlns='urn:xmpp:ping'/>`)
	dead.Expect(`<connection-timeout xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>`)
}
