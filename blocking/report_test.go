package blocking_test

import (
	"context"
	"strings"
	gosync "sync"
	"testing"

	"github.com/treff-im/treff/blocking"
	"github.com/treff-im/treff/storage"
)

// TestReport checks that reports carried in <block/> (XEP-0377) reach
// OnReport with the reporter, the JID, the reason, the text and the
// message ids, after the block is in place, and that the feature is
// advertised.
func TestReport(t *testing.T) {
	var mu gosync.Mutex
	var got []blocking.Report
	m := &blocking.Module{OnReport: func(ctx context.Context, r blocking.Report) {
		mu.Lock()
		got = append(got, r)
		mu.Unlock()
	}}
	ts := newServer(t, m)
	alice := ts.Login(t, "alice", "pw", "r")
	alice.Send("<iq type='set' id='b1'><block xmlns='urn:xmpp:blocking'>" +
		"<item jid='spammer@spam.example'><report xmlns='urn:xmpp:reporting:1' reason='urn:xmpp:reporting:spam'>" +
		"<stanza-id xmlns='urn:xmpp:sid:0' by='alice@localhost' id='28482-98726-73623'/>" +
		"<text xml:lang='en'>Sells pills &amp; more</text></report></item>" +
		"<item jid='plain@other.example'/>" +
		"<item jid='rude@other.example'><report xmlns='urn:xmpp:reporting:1' reason='urn:xmpp:reporting:abuse'/></item>" +
		"</block></iq>")
	alice.Expect(`<iq type='result' id='b1'`)
	// The block is in place when the report arrives: after the result.
	sync(alice, "s1")
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 {
		t.Fatalf("%d reports, want 2: %+v", len(got), got)
	}
	r := got[0]
	if r.Reporter.String() != "alice@localhost" || r.Reported.String() != "spammer@spam.example" || r.Reason != blocking.ReasonSpam ||
		r.Text != "Sells pills & more" || len(r.StanzaIDs) != 1 || r.StanzaIDs[0] != (blocking.StanzaID{By: "alice@localhost", ID: "28482-98726-73623"}) || r.Time.IsZero() {
		t.Errorf("report = %+v", r)
	}
	if r := got[1]; r.Reported.String() != "rude@other.example" || r.Reason != blocking.ReasonAbuse || r.Text != "" || len(r.StanzaIDs) != 0 {
		t.Errorf("second report = %+v", r)
	}
	if l, _ := ts.Store.(storage.Blocklists).Blocklist(context.Background(), "alice@localhost"); strings.Join(l, " ") != "plain@other.example rude@other.example spammer@spam.example" {
		t.Errorf("block list = %q", l)
	}
}
