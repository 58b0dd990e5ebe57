package treff_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/stanza"
	"github.com/treff-im/treff/trefftest"
)

// SendIQ from a local account's bare JID (a request on the user's
// behalf, such as a push notification) gets its response, which the
// service addresses to that bare JID; the account's sessions do not see
// it. The service answers with an error, which SendIQ returns as the
// response.
func TestSendIQFromAccount(t *testing.T) {
	var srv *treff.Server
	ts := trefftest.NewServer(t, func(s *treff.Server) {
		srv = s
		s.Modules = append(s.Modules, moduleFunc(func(r *treff.Registry) {
			r.HandleDomain("svc.localhost", treff.StanzaHandlerFunc(func(ctx context.Context, st *treff.Stanza) {
				var raw []byte
				if st.ID == "ok" {
					raw = treff.AppendResult(nil, st, []byte("<pong xmlns='urn:example'/>"))
				} else {
					raw = treff.AppendError(nil, st, stanza.ItemNotFound)
				}
				reply, err := treff.NewStanza(raw)
				if err != nil {
					t.Error(err)
					return
				}
				r.Server().Route(ctx, reply)
			}))
		}))
	})
	ts.AddUser(t, "alice", "pw")
	alice := ts.Login(t, "alice", "pw", "phone")
	alice.Send("<presence/>")
	alice.Sync()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, id := range []string{"ok", "fails"} {
		req, err := treff.NewStanza([]byte("<iq type='set' id='" + id + "' from='alice@localhost' to='svc.localhost'><ping xmlns='urn:example'/></iq>"))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := srv.SendIQ(ctx, req)
		if err != nil {
			t.Fatalf("SendIQ %s: %v", id, err)
		}
		want := map[string]string{"ok": "result", "fails": "error"}[id]
		if resp.Type != want || resp.ID != id || resp.From.String() != "svc.localhost" || resp.To.String() != "alice@localhost" {
			t.Errorf("SendIQ %s: response %s, want a %s from svc.localhost to alice@localhost", id, resp.Raw(), want)
		}
	}
	if got := alice.Sync(); strings.Contains(got, "svc.localhost") {
		t.Errorf("alice's session was given the responses: %s", got)
	}
}
