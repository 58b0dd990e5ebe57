package e2e

import (
	"fmt"
	"slices"
	"testing"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/disco"
	"github.com/treff-im/treff/mam"
	"github.com/treff-im/treff/muc"
)

// TestMUCArchiveSlixmpp drives a room's archive (XEP-0313 on a XEP-0045
// room, muc.Module.Archive) with clients/mucmam.py: slixmpp's xep_0045
// and xep_0313 plugins against an in-process server. A member who left
// the room catches up through the room's archive with the RSM iterator;
// the stanza-ids by the room on the live messages are the archive IDs;
// someone who is no member of the members-only room is refused.
func TestMUCArchiveSlixmpp(t *testing.T) {
	needSlixmpp(t)
	s := newServer(t, func(srv *treff.Server) {
		srv.Modules = []treff.Module{&disco.Module{}, &mam.Module{}, &muc.Module{Archive: &mam.Archiver{}}}
	})
	for _, u := range [][2]string{{"alice", alicePW}, {"bob", bobPW}, {"carol", mucCarolPW}} {
		s.AddUser(t, u[0], u[1])
	}
	const room, n, max = "archived@" + mucService, 7, 3
	es := s.client(t, "mucmam.py", "catchup", "--jid", "alice@localhost", "--password", alicePW,
		"--peer", "bob@localhost", "--peer-password", bobPW, "--third", "carol@localhost", "--third-password", mucCarolPW,
		"--room", "archived", "--body", "news", "--count", fmt.Sprint(n), "--max", fmt.Sprint(max))

	var sent []string // the stanza-id by the room of each live message
	for _, e := range es.of("sent", "") {
		var x struct {
			Body      string `json:"body"`
			StanzaIDs []struct {
				By string `json:"by"`
				ID string `json:"id"`
			} `json:"stanza_ids"`
		}
		e.decode(t, &x)
		if len(x.StanzaIDs) != 1 || x.StanzaIDs[0].By != room || x.StanzaIDs[0].ID == "" {
			t.Errorf("%q arrived with stanza-ids %+v, want one by %s", x.Body, x.StanzaIDs, room)
			sent = append(sent, "")
			continue
		}
		sent = append(sent, x.StanzaIDs[0].ID)
	}
	if len(sent) != n {
		t.Fatalf("%d messages sent, want %d", len(sent), n)
	}

	var feats struct {
		Features []string `json:"features"`
	}
	es.one(t, "room_features", "bob").decode(t, &feats)
	for _, f := range []string{mam.NS, mam.NSSID} {
		if !slices.Contains(feats.Features, f) {
			t.Errorf("the room's features %v lack %s", feats.Features, f)
		}
	}

	var got []mamResult
	pages := es.of("page", "bob")
	for _, e := range pages {
		var p mamPage
		e.decode(t, &p)
		got = append(got, p.Results...)
	}
	if want := (n + max - 1) / max; len(pages) != want {
		t.Errorf("%d pages, want %d", len(pages), want)
	}
	if len(got) != n {
		t.Fatalf("%d archived messages retrieved, want %d: %+v", len(got), n, got)
	}
	for i, r := range got {
		if r.ResultFrom != room || r.From != room+"/alice" || r.Body != fmt.Sprintf("news %d", i) || r.ID != sent[i] {
			t.Errorf("result %d: %+v, want news %d from %s/alice with id %s", i, r, i, room, sent[i])
		}
	}

	var outsider mamQueryReply
	es.one(t, "outsider_reply", "carol").decode(t, &outsider)
	if outsider.Type != "error" || outsider.Condition != "forbidden" {
		t.Errorf("a non-member's archive query: %+v, want forbidden", outsider)
	}
}
