package treff_test

import (
	"encoding/xml"
	"errors"
	"testing"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/stanza"
)

// TestEditChildren checks that EditChildren gives the same stanza as
// parsing its result afresh would, whether or not it parses again.
func TestEditChildren(t *testing.T) {
	const sid = `<stanza-id xmlns='urn:xmpp:sid:0' by='x@y' id='1'/>`
	isSID := func(c stanza.Child) bool { return c.Name.Local == "stanza-id" }
	for _, tc := range []struct {
		name, in string
		drop     func(stanza.Child) bool
		add      string
		want     string
	}{
		{"add", `<message to='x@y' id='a'><body>hi</body></message>`, nil, sid,
			`<message to='x@y' id='a'><body>hi</body>` + sid + `</message>`},
		{"trailing space", "<message to='x@y'><body>hi</body></message>\n ", nil, `<x xmlns='u'/>`,
			`<message to='x@y'><body>hi</body><x xmlns='u'/></message>`},
		{"drop middle and add", `<message to='x@y'><body>hi</body><stanza-id xmlns='urn:xmpp:sid:0' by='x@y' id='0'/><active xmlns='http://jabber.org/protocol/chatstates'/></message>`,
			isSID, sid,
			`<message to='x@y'><body>hi</body><active xmlns='http://jabber.org/protocol/chatstates'/>` + sid + `</message>`},
		{"drop only", `<message to='x@y'><body>hi</body><stanza-id xmlns='urn:xmpp:sid:0' by='x@y' id='0'/></message>`,
			isSID, "", `<message to='x@y'><body>hi</body></message>`},
		{"drop first", `<message to='x@y'><stanza-id xmlns='urn:xmpp:sid:0' by='x@y' id='0'/><body>hi</body></message>`,
			isSID, "", `<message to='x@y'><body>hi</body></message>`},
		{"empty", `<message to='x@y'/>`, nil, sid, `<message to='x@y'>` + sid + `</message>`},
		{"no children", `<message to='x@y'> </message>`, nil, sid, `<message to='x@y'> ` + sid + `</message>`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := treff.NewStanza([]byte(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			var add []byte
			if tc.add != "" {
				add = []byte(tc.add)
			}
			if err := st.EditChildren(tc.drop, add); err != nil {
				t.Fatal(err)
			}
			if got := string(st.Raw()); got != tc.want {
				t.Fatalf("raw:\n got %s\nwant %s", got, tc.want)
			}
			fresh, err := treff.NewStanza([]byte(tc.want))
			if err != nil {
				t.Fatal(err)
			}
			if st.Kind != fresh.Kind || !st.To.Equal(fresh.To) || st.ID != fresh.ID || st.Type != fresh.Type || st.Payload != fresh.Payload {
				t.Errorf("fields %+v, parsed afresh %+v", st, fresh)
			}
			if st.Inner() != fresh.Inner() {
				t.Errorf("inner %q, parsed afresh %q", st.Inner(), fresh.Inner())
			}
			if id, _ := st.Attr("to"); id != "x@y" {
				t.Errorf("to attribute %q", id)
			}
			var got, want []xml.Name
			for c := range st.Children() {
				got = append(got, c.Name)
			}
			for c := range fresh.Children() {
				want = append(want, c.Name)
			}
			if len(got) != len(want) {
				t.Fatalf("children %v, parsed afresh %v", got, want)
			}
			for i := range got {
				if got[i] != want[i] {
					t.Errorf("child %d %v, parsed afresh %v", i, got[i], want[i])
				}
			}
		})
	}
}

func TestEditChildrenBadChild(t *testing.T) {
	in := `<message to='x@y'><body>hi</body></message>`
	st, err := treff.NewStanza([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{`<x>`, `<x/><y/>`, `text`, `<x a='1' a='2'/>`} {
		if err := st.EditChildren(nil, []byte(bad)); !errors.Is(err, treff.ErrBadStanza) {
			t.Errorf("%s: got %v, want ErrBadStanza", bad, err)
		}
		if string(st.Raw()) != in {
			t.Fatalf("%s: stanza changed to %s", bad, st.Raw())
		}
	}
	if err := st.EditChildren(func(stanza.Child) bool { return false }, nil); err != nil || string(st.Raw()) != in {
		t.Errorf("no-op edit: %v, %s", err, st.Raw())
	}
}

func BenchmarkAddChild(b *testing.B) {
	in := []byte(`<message from='alice@example.org/phone' to='bob@example.org' type='chat' id='x1'><body>0123456789012345678901234567890123456789012345678901234567890123</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>`)
	child := []byte(`<stanza-id xmlns='urn:xmpp:sid:0' by='bob@example.org' id='AAAAAAAAAAAAAAAA'/>`)
	b.ReportAllocs()
	for b.Loop() {
		st, err := treff.NewStanza(in)
		if err != nil {
			b.Fatal(err)
		}
		if err := st.AddChild(child); err != nil {
			b.Fatal(err)
		}
	}
}

// TestEditChildrenAfterWithAddresses edits a copy whose addresses were
// rewritten (its start tag differs from the one received), then rewrites
// the addresses again, as a room does for each occupant.
func TestEditChildrenAfterWithAddresses(t *testing.T) {
	st, err := treff.NewStanza([]byte(`<message to='room@muc.y' type='groupchat' id='m1'><body>hello</body></message>`))
	if err != nil {
		t.Fatal(err)
	}
	c := st.WithAddresses(jid.MustParse("room@muc.y/Bob"), jid.MustParse("alice@y/r"))
	if err := c.AddChild([]byte(`<occupant-id xmlns='urn:xmpp:occupant-id:0' id='o1'/>`)); err != nil {
		t.Fatal(err)
	}
	want := `<message from='room@muc.y/Bob' to='alice@y/r' type='groupchat' id='m1'><body>hello</body><occupant-id xmlns='urn:xmpp:occupant-id:0' id='o1'/></message>`
	if got := string(c.Raw()); got != want {
		t.Fatalf("after AddChild:\n got %s\nwant %s", got, want)
	}
	if got, want := c.Inner(), `<body>hello</body><occupant-id xmlns='urn:xmpp:occupant-id:0' id='o1'/>`; got != want {
		t.Errorf("inner %s, want %s", got, want)
	}
	d := c.WithAddresses(jid.MustParse("room@muc.y/Bob"), jid.MustParse("carol@y/phone"))
	want = `<message from='room@muc.y/Bob' to='carol@y/phone' type='groupchat' id='m1'><body>hello</body><occupant-id xmlns='urn:xmpp:occupant-id:0' id='o1'/></message>`
	if got := string(d.Raw()); got != want {
		t.Fatalf("after WithAddresses:\n got %s\nwant %s", got, want)
	}
	if got := string(st.Raw()); got != `<message to='room@muc.y' type='groupchat' id='m1'><body>hello</body></message>` {
		t.Errorf("the original changed: %s", got)
	}
}

// TestEditChildrenRawCapped: after an edit of a stanza whose start tag
// differs from the one received (its element's new Raw shares the edit's
// allocation), appending to Raw does not change what Inner and Children
// read.
func TestEditChildrenRawCapped(t *testing.T) {
	st, err := treff.NewStanza([]byte(`<message to='bob@y' id='m1'><body>hello</body></message>`))
	if err != nil {
		t.Fatal(err)
	}
	c := st.WithAddresses(jid.MustParse("alice@y/phone"), jid.MustParse("bob@y"))
	for _, add := range []string{`<a xmlns='u1'/>`, `<b xmlns='u2'/>`} {
		if err := c.AddChild([]byte(add)); err != nil {
			t.Fatal(err)
		}
	}
	want := `<body>hello</body><a xmlns='u1'/><b xmlns='u2'/>`
	_ = append(c.Raw(), "<garbage/><garbage/><garbage/><garbage/><garbage/><garbage/>"...)
	if got := c.Inner(); got != want {
		t.Errorf("inner %s, want %s", got, want)
	}
	n := 0
	for range c.Children() {
		n++
	}
	if n != 3 {
		t.Errorf("%d children, want 3", n)
	}
}
