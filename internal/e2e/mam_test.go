package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// The tests in this file drive message archives (XEP-0313, package mam) in
// the example server binary with the scenarios of clients/mam.py, which
// uses slixmpp's xep_0313 plugin and its RSM iterator (XEP-0059).

// Events of clients/mam.py (see its doc comment).
type (
	mamExchanged struct {
		Index     int    `json:"index"`
		Sender    string `json:"sender"`
		Receiver  string `json:"receiver"`
		Body      string `json:"body"`
		StanzaIDs []struct {
			By string `json:"by"`
			ID string `json:"id"`
		} `json:"stanza_ids"`
	}
	mamFeatures struct {
		Features []string `json:"features"`
	}
	mamResult struct {
		ID         string `json:"id"`
		QueryID    string `json:"queryid"`
		ResultFrom string `json:"result_from"`
		Stamp      string `json:"stamp"`
		From       string `json:"from"`
		To         string `json:"to"`
		Body       string `json:"body"`
	}
	mamPage struct {
		Results    []mamResult `json:"results"`
		First      string      `json:"first"`
		Last       string      `json:"last"`
		Count      string      `json:"count"`
		FirstIndex string      `json:"first_index"`
		Complete   string      `json:"complete"`
		QueryID    string      `json:"queryid"`
	}
	mamQueryReply struct {
		Type      string `json:"type"`
		Condition string `json:"condition"`
	}
)

const mamCarolPW = "carol pässwörd"

// mamAccounts are the accounts of the archive tests.
var mamAccounts = [][2]string{{"alice@localhost", alicePW}, {"bob@localhost", bobPW}, {"carol@localhost", mamCarolPW}}

// mam runs a scenario of clients/mam.py.
func (s *server) mam(t *testing.T, scenario string, args ...string) events {
	t.Helper()
	return s.client(t, "mam.py", scenario, args...)
}

// converse has user and peer exchange n messages and returns what each
// recipient saw, in order.
func converse(t *testing.T, s *server, user, userPW, peer, peerPW, tag string, n int) []mamExchanged {
	t.Helper()
	es := s.mam(t, "converse", "--jid", user, "--password", userPW, "--peer", peer, "--peer-password", peerPW,
		"--count", fmt.Sprint(n), "--body", tag)
	var out []mamExchanged
	for _, e := range es.of("exchanged", "") {
		var x mamExchanged
		e.decode(t, &x)
		out = append(out, x)
	}
	if len(out) != n {
		t.Fatalf("%d messages exchanged, want %d", len(out), n)
	}
	return out
}

// retrieval is what one run of the retrieve scenario got.
type retrieval struct {
	features []string
	pages    []mamPage
}

func (r retrieval) results() []mamResult {
	var out []mamResult
	for _, p := range r.pages {
		out = append(out, p.Results...)
	}
	return out
}

func (r retrieval) bodies() []string {
	var out []string
	for _, m := range r.results() {
		out = append(out, m.Body)
	}
	return out
}

// retrieve runs the retrieve scenario for user with extra arguments.
func retrieve(t *testing.T, s *server, user, pw string, args ...string) retrieval {
	t.Helper()
	es := s.mam(t, "retrieve", append([]string{"--jid", user, "--password", pw}, args...)...)
	var r retrieval
	var f mamFeatures
	es.one(t, "features", "alice").decode(t, &f)
	r.features = f.Features
	for _, e := range es.of("page", "alice") {
		var p mamPage
		e.decode(t, &p)
		r.pages = append(r.pages, p)
	}
	return r
}

func bodiesOf(tag string, idx ...int) []string {
	var out []string
	for _, i := range idx {
		out = append(out, fmt.Sprintf("%s %d", tag, i))
	}
	return out
}

func span(from, to int) []int {
	var out []int
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}

// TestMAM: with archive = yes, alice and bob exchange 25 messages (each
// recipient sees one stanza-id, by its own bare JID), alice and carol 4; a
// new client of alice then fetches her archive with slixmpp's RSM
// iterator, 10 a page, and gets all 29 in order with the stanza-ids she
// saw, delay stamps from when they were sent, and correct <fin/> sets; a
// 'with' filter, a time filter and backward paging work, and bob's
// archive holds his side under the IDs he was told.
func TestMAM(t *testing.T) {
	_, _, p := startRegCommunity(t, []string{"-archive", "yes"}, mamAccounts...)
	s := p.clients()

	t0 := time.Now().Add(-time.Second)
	bobTalk := converse(t, s, "alice@localhost", alicePW, "bob@localhost", bobPW, "talk", 25)
	carolTalk := converse(t, s, "alice@localhost", alicePW, "carol@localhost", mamCarolPW, "hey", 4)
	t1 := time.Now().Add(time.Second)
	// Each message reaches its recipient with one stanza-id: its ID in
	// the recipient's archive (XEP-0313 3.3). The sender's ID stays on
	// the sender's own copies (sent carbons, the archive).
	seen := map[string]map[string]string{} // body -> archive owner -> the message's ID there, as the recipient saw it
	for _, x := range append(slices.Clone(bobTalk), carolTalk...) {
		by := map[string]string{}
		for _, sid := range x.StanzaIDs {
			by[sid.By] = sid.ID
		}
		if len(x.StanzaIDs) != 1 || by[x.Receiver] == "" {
			t.Errorf("%q reached %s with stanza-ids %+v, want one, by %s", x.Body, x.Receiver, x.StanzaIDs, x.Receiver)
			continue
		}
		seen[x.Body] = by
	}

	all := append(bobTalk, carolTalk...)
	r := retrieve(t, s, "alice@localhost", alicePW, "--max", "10")
	for _, f := range []string{"urn:xmpp:mam:2", "urn:xmpp:mam:2#extended", "urn:xmpp:sid:0"} {
		if !slices.Contains(r.features, f) {
			t.Errorf("alice's bare JID does not advertise %s: %q", f, r.features)
		}
	}
	want := append(bodiesOf("talk", span(0, 25)...), bodiesOf("hey", span(0, 4)...)...)
	if got := r.bodies(); !slices.Equal(got, want) {
		t.Fatalf("alice's archive: %q\nwant %q", got, want)
	}
	if len(r.pages) != 3 {
		t.Errorf("%d pages, want 3 (10, 10, 9)", len(r.pages))
	}
	var prev time.Time
	for i, m := range r.results() {
		x := all[i]
		if want := seen[x.Body]["alice@localhost"]; x.Receiver == "alice@localhost" && m.ID != want || m.ID == "" {
			t.Errorf("%q: archive ID %q, but the stanza-id by alice was %q", x.Body, m.ID, want)
		}
		if m.From != x.Sender || m.To != x.Receiver {
			t.Errorf("%q: archived from %q to %q, want from %s to %s", x.Body, m.From, m.To, x.Sender, x.Receiver)
		}
		if m.ResultFrom != "alice@localhost" {
			t.Errorf("%q: result from %q, want alice@localhost", x.Body, m.ResultFrom)
		}
		stamp, err := time.Parse(time.RFC3339Nano, m.Stamp)
		if err != nil || !strings.HasSuffix(m.Stamp, "Z") || stamp.Before(t0) || stamp.After(t1) || stamp.Before(prev) {
			t.Errorf("%q: delay stamp %q, want a UTC time from the conversation, not before the previous one (%v)", x.Body, m.Stamp, err)
		}
		prev = stamp
	}
	for i, pg := range r.pages {
		n := len(pg.Results)
		if n == 0 {
			t.Errorf("page %d is empty", i)
			continue
		}
		wantComplete := ""
		if i == len(r.pages)-1 {
			wantComplete = "true"
		}
		if pg.First != pg.Results[0].ID || pg.Last != pg.Results[n-1].ID || pg.Count != "29" ||
			pg.FirstIndex != fmt.Sprint(10*i) || pg.Complete != wantComplete {
			t.Errorf("page %d: fin first=%q last=%q count=%q index=%q complete=%q; want %q %q 29 %d %q", i,
				pg.First, pg.Last, pg.Count, pg.FirstIndex, pg.Complete, pg.Results[0].ID, pg.Results[n-1].ID, 10*i, wantComplete)
		}
		for _, m := range pg.Results {
			if m.QueryID != pg.QueryID {
				t.Errorf("page %d: result with queryid %q, want %q", i, m.QueryID, pg.QueryID)
			}
		}
	}
	stamps := map[int]string{}
	for i, m := range r.results() {
		stamps[i] = m.Stamp
	}

	t.Run("With", func(t *testing.T) {
		r := retrieve(t, s, "alice@localhost", alicePW, "--max", "3", "--with", "carol@localhost")
		if got, want := r.bodies(), bodiesOf("hey", 0, 1, 2, 3); !slices.Equal(got, want) {
			t.Errorf("with carol: %q, want %q", got, want)
		}
		r = retrieve(t, s, "alice@localhost", alicePW, "--max", "10", "--with", "bob@localhost")
		if got, want := r.bodies(), bodiesOf("talk", span(0, 25)...); !slices.Equal(got, want) {
			t.Errorf("with bob: %q, want %q", got, want)
		}
	})
	t.Run("Time", func(t *testing.T) {
		r := retrieve(t, s, "alice@localhost", alicePW, "--max", "4", "--start", stamps[5], "--end", stamps[14])
		if got, want := r.bodies(), bodiesOf("talk", span(5, 15)...); !slices.Equal(got, want) {
			t.Errorf("start %s end %s: %q, want %q", stamps[5], stamps[14], got, want)
		}
		if len(r.pages) > 0 && r.pages[0].Count != "10" {
			t.Errorf("count %q, want 10", r.pages[0].Count)
		}
		r = retrieve(t, s, "alice@localhost", alicePW, "--max", "10", "--start", stamps[25])
		if got, want := r.bodies(), bodiesOf("hey", 0, 1, 2, 3); !slices.Equal(got, want) {
			t.Errorf("start %s: %q, want %q", stamps[25], got, want)
		}
	})
	t.Run("Backward", func(t *testing.T) {
		r := retrieve(t, s, "alice@localhost", alicePW, "--max", "10", "--reverse")
		if len(r.pages) < 3 {
			t.Fatalf("%d pages backward, want 3", len(r.pages))
		}
		// Pages come newest first, each in chronological order.
		var got []string
		for i := len(r.pages) - 1; i >= 0; i-- {
			for _, m := range r.pages[i].Results {
				got = append(got, m.Body)
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("backward: %q, want %q", got, want)
		}
		if first := r.pages[0]; len(first.Results) != 10 || first.FirstIndex != "19" || first.Results[9].Body != "hey 3" {
			t.Errorf("last page: %d results from index %s", len(first.Results), first.FirstIndex)
		}
	})
	t.Run("Bob", func(t *testing.T) {
		r := retrieve(t, s, "bob@localhost", bobPW, "--max", "10")
		if got, want := r.bodies(), bodiesOf("talk", span(0, 25)...); !slices.Equal(got, want) {
			t.Fatalf("bob's archive: %q, want %q", got, want)
		}
		for i, m := range r.results() {
			if x := bobTalk[i]; x.Receiver == "bob@localhost" && m.ID != seen[x.Body]["bob@localhost"] || m.ID == "" {
				t.Errorf("%q: bob's archive ID %q, but the stanza-id by bob was %q", x.Body, m.ID, seen[x.Body]["bob@localhost"])
			}
		}
	})
	p.stop(t)
}

// TestMAMOff: with the default archive = no, accounts advertise no
// archive, an archive query is refused with <service-unavailable/>,
// messages carry no stanza-id, and nothing was stored: the same data
// folder served with archive = yes afterwards has empty archives.
func TestMAMOff(t *testing.T) {
	bin, data, p := startRegCommunity(t, nil, mamAccounts...)
	s := p.clients()
	for _, x := range converse(t, s, "alice@localhost", alicePW, "bob@localhost", bobPW, "unarchived", 4) {
		if len(x.StanzaIDs) != 0 {
			t.Errorf("%q carried stanza-ids %+v with archiving off", x.Body, x.StanzaIDs)
		}
	}
	es := s.mam(t, "query", "--jid", "alice@localhost", "--password", alicePW)
	var f mamFeatures
	es.one(t, "features", "alice").decode(t, &f)
	for _, feat := range f.Features {
		if strings.HasPrefix(feat, "urn:xmpp:mam:") {
			t.Errorf("archiving off, but alice's bare JID advertises %s", feat)
		}
	}
	var q mamQueryReply
	es.one(t, "query_reply", "alice").decode(t, &q)
	if q.Type != "error" || q.Condition != "service-unavailable" {
		t.Errorf("archive query with archiving off: %+v, want a service-unavailable error", q)
	}
	p.stop(t)

	p = startCommunity(t, withFlags(t, bin, "-archive", "yes"), data)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("restarted server output:\n%s", p.logs)
		}
	})
	for _, u := range mamAccounts[:2] {
		if r := retrieve(t, p.clients(), u[0], u[1], "--max", "10"); len(r.results()) != 0 {
			t.Errorf("%s's archive holds %q from while archiving was off", u[0], r.bodies())
		}
	}
	p.stop(t)
}
