package treff_test

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/trefftest"
)

// The server's logs, even at debug level, never contain IP addresses,
// passwords, SASL data or message bodies.
func TestLogsKeepSecrets(t *testing.T) {
	var logs trefftest.LogBuffer
	ts := newTestServer(t, func(s *treff.Server) {
		s.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	r := dialRaw(t, ts, ts.Addr)
	r.StartTLS()
	r.Send(header("localhost"))
	r.Expect(`</stream:features>`)
	r.Send(plainAuth("alice", "wrong-secret-pw"))
	r.Expect(`<not-authorized/>`)
	r.Send(plainAuth("alice", "alicepw"))
	r.Expect(`<success`)
	b := dialRaw(t, ts, ts.Addr)
	b.Login("bob@localhost", "bobpw", "x")
	b.Send("<presence/>")
	syncServer(b)
	r.Send(header("localhost"))
	r.Expect(`</stream:features>`)
	r.Send("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
	r.Expect(`</iq>`)
	r.Send("<message to='nobody@localhost'><body>secret-body-text</body></message>")
	r.Expect(`service-unavailable`)
	r.Send("<message to='bob@localhost'><body>another-secret-body</body></message>")
	b.Expect(`another-secret-body`)
	r.Send("<bogus/>")
	r.Expect(`unsupported-stanza-type`)
	ts.Close()
	out := logs.String()
	if !strings.Contains(out, "authentication failed") {
		t.Fatalf("expected some logs, got %q", out)
	}
	for _, secret := range []string{"127.0.0.1", "wrong-secret-pw", "alicepw", "bobpw", "secret-body-text", "another-secret-body",
		"AGFsaWNl" /* base64 of the PLAIN payload's start */} {
		if strings.Contains(out, secret) {
			t.Errorf("logs contain %q:\n%s", secret, out)
		}
	}
}
