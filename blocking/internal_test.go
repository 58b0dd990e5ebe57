package blocking

import (
	"context"
	"testing"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
)

// TestMatches checks the JID matching rules of XEP-0191 section 4 on
// addresses of other domains, which a one-host test server cannot send
// from.
func TestMatches(t *testing.T) {
	for _, tc := range []struct {
		entry string
		yes   []string
		no    []string
	}{
		{"romeo@montague.net/orchard", []string{"romeo@montague.net/orchard"},
			[]string{"romeo@montague.net", "romeo@montague.net/garden", "montague.net", "montague.net/orchard"}},
		{"romeo@montague.net", []string{"romeo@montague.net", "romeo@montague.net/garden"},
			[]string{"juliet@montague.net", "montague.net", "romeo@capulet.net"}},
		{"montague.net/orchard", []string{"montague.net/orchard"},
			[]string{"montague.net", "montague.net/garden", "romeo@montague.net/orchard"}},
		{"montague.net", []string{"montague.net", "montague.net/x", "romeo@montague.net", "romeo@montague.net/x", "chat.montague.net", "room@chat.montague.net/nick"},
			[]string{"montague.network", "romeo@xmontague.net", "net", "capulet.net"}},
	} {
		l := newList([]string{tc.entry})
		for _, s := range tc.yes {
			if !l.matches(jid.MustParse(s)) {
				t.Errorf("%s does not match entry %s", s, tc.entry)
			}
		}
		for _, s := range tc.no {
			if l.matches(jid.MustParse(s)) {
				t.Errorf("%s matches entry %s", s, tc.entry)
			}
		}
	}
	if emptyList.matches(jid.MustParse("a@b")) {
		t.Error("the empty list matches")
	}
}

// TestHooksDoNotAllocate: for a user who blocks nobody (list cached), the
// hooks cost a lookup and no allocation.
func TestHooksDoNotAllocate(t *testing.T) {
	m := &Module{}
	bob := jid.MustParse("bob.with.a.long.name@chat.example.org")
	m.cache.put(bob, emptyList, false, 0)
	in, err := treff.NewStanza([]byte("<message from='alice@example.org/phone' to='bob.with.a.long.name@chat.example.org/laptop' type='chat'><body>hi</body></message>"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := treff.NewStanza([]byte("<message from='bob.with.a.long.name@chat.example.org/laptop' to='alice@example.org/phone' type='chat'><body>hi</body></message>"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if n := testing.AllocsPerRun(100, func() {
		if m.inbound(ctx, in) || m.outbound(ctx, out) {
			t.Fatal("blocked by an empty list")
		}
	}); n != 0 {
		t.Errorf("%v allocations per stanza, want 0", n)
	}
}
