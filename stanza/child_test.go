package stanza_test

import (
	"encoding/xml"
	"fmt"
	"strings"
	"testing"

	"github.com/treff-im/treff/stanza"
)

// names lists the children of raw as "{ns}local" strings, nested children
// in brackets.
func names(seq func(func(stanza.Child) bool)) string {
	var b strings.Builder
	for c := range seq {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "{%s}%s", c.Name.Space, c.Name.Local)
		if inner := names(c.Children()); inner != "" {
			b.WriteString("[" + inner + "]")
		}
	}
	return b.String()
}

func TestChildrenNames(t *testing.T) {
	cases := []struct{ raw, want string }{
		{`<message/>`, ``},
		{`<message></message>`, ``},
		{`<message><body>hi</body></message>`, `{jabber:client}body`},
		{`<message xmlns='jabber:server'><body/></message>`, `{jabber:server}body`},
		{`<message><x xmlns='urn:a'><y/><z xmlns=''/></x><body/></message>`, `{urn:a}x[{urn:a}y {}z] {jabber:client}body`},
		// '>' and '/' in attribute values, both quotes
		{`<message a='>/' b="/>"><c d='x/>' e=">"/><f g="'/>'">t</f></message>`, `{jabber:client}c {jabber:client}f`},
		// CDATA with tags in it
		{`<message><body><![CDATA[<x/></body>]]></body><y/></message>`, `{jabber:client}body {jabber:client}y`},
		// prefixes: on the child, on the stanza, on an ancestor, redeclared
		{`<message xmlns:p='urn:p'><p:a/><q:b xmlns:q='urn:q'><q:c/><p:d/></q:b></message>`, `{urn:p}a {urn:q}b[{urn:q}c {urn:p}d]`},
		{`<message xmlns:p='urn:p'><x xmlns:p='urn:other'><p:y/></x><p:z/></message>`, `{jabber:client}x[{urn:other}y] {urn:p}z`},
		{`<message><a xmlns:p='urn:p'><p:b/></a><a><b/></a></message>`, `{jabber:client}a[{urn:p}b] {jabber:client}a[{jabber:client}b]`},
		// a namespace written with a reference
		{`<message><x xmlns='urn:&#x61;'/></message>`, `{urn:a}x`},
		// white space everywhere
		{"  <message  >\n <a\n xmlns = 'u' / >\n</message >", `{u}a`},
	}
	for _, c := range cases {
		if got := names(stanza.Children(c.raw, stanza.NSClient)); got != c.want {
			t.Errorf("Children(%s) = %s\nwant %s", c.raw, got, c.want)
		}
	}
}

func TestChildAccessors(t *testing.T) {
	raw := `<message to='a@b'><body xml:lang='en' a='x &amp; y' t='1&#9;2	3'>fish &amp; chips<![CDATA[ <&> ]]><i>not</i>!</body>` +
		`<stanza-id xmlns='urn:xmpp:sid:0' by='a@b' id='1'/><e></e></message>`
	var got []stanza.Child
	for c := range stanza.Children(raw, stanza.NSClient) {
		got = append(got, c)
	}
	if len(got) != 3 {
		t.Fatalf("%d children", len(got))
	}
	body, sid, e := got[0], got[1], got[2]
	if body.Raw() != raw[body.Offset():body.Offset()+len(body.Raw())] || !strings.HasPrefix(body.Raw(), "<body") || !strings.HasSuffix(body.Raw(), "</body>") {
		t.Errorf("body Raw %q at %d", body.Raw(), body.Offset())
	}
	if v, ok := body.Attr("xml:lang"); !ok || v != "en" {
		t.Errorf("xml:lang = %q, %v", v, ok)
	}
	if v, _ := body.Attr("a"); v != "x & y" {
		t.Errorf("a = %q", v)
	}
	if v, _ := body.Attr("t"); v != "1\t2 3" {
		t.Errorf("t = %q", v)
	}
	if _, ok := body.Attr("lang"); ok {
		t.Error("lang found")
	}
	if got, want := body.Text(), "fish & chips <&> !"; got != want {
		t.Errorf("Text = %q, want %q", got, want)
	}
	if got, want := body.Inner(), "fish &amp; chips<![CDATA[ <&> ]]><i>not</i>!"; got != want {
		t.Errorf("Inner = %q, want %q", got, want)
	}
	if v, _ := sid.Attr("by"); v != "a@b" || sid.Inner() != "" || sid.Text() != "" || sid.Raw() != `<stanza-id xmlns='urn:xmpp:sid:0' by='a@b' id='1'/>` {
		t.Errorf("stanza-id: %q %q", v, sid.Raw())
	}
	if e.Raw() != "<e></e>" || e.Inner() != "" {
		t.Errorf("e: %q %q", e.Raw(), e.Inner())
	}
	if strings.Contains(names(sid.Children()), "{") {
		t.Error("an empty element has children")
	}
}

func TestSelfContained(t *testing.T) {
	cases := []struct {
		raw  string
		want bool
	}{
		{`<iq xmlns:p='urn:p'><query><a xmlns='x'><b/></a></query></iq>`, true},
		{`<iq xmlns:p='urn:p'><query><p:a/></query></iq>`, false},
		{`<iq xmlns:p='urn:p'><query><a xmlns='x' p:attr='1'/></query></iq>`, false},
		{`<iq><query><p:a xmlns:p='urn:p'><p:b q:c='1' xmlns:q='urn:q'/></p:a></query></iq>`, true},
		{`<iq><query><a xmlns='x'><b xmlns:p='urn:p'/><p:c/></a></query></iq>`, false},
		{`<iq><query><a xmlns='x' xml:lang='en'/></query></iq>`, true},
	}
	for _, c := range cases {
		for q := range stanza.Children(c.raw, stanza.NSClient) {
			for a := range q.Children() {
				if got := a.SelfContained(); got != c.want {
					t.Errorf("SelfContained(%s) = %v, want %v", a.Raw(), got, c.want)
				}
			}
		}
	}
}

func TestChildrenEarlyStop(t *testing.T) {
	n := 0
	for range stanza.Children(`<message><a/><b/><c/></message>`, stanza.NSClient) {
		n++
		if n == 2 {
			break
		}
	}
	if n != 2 {
		t.Fatalf("%d", n)
	}
}

// A chat message as clients send it.
const chat = `<message to='juliet@capulet.example/balcony' id='ktx72v49' type='chat' xml:lang='en'>` +
	`<body>Art thou not Romeo, and a Montague?</body><active xmlns='http://jabber.org/protocol/chatstates'/>` +
	`<request xmlns='urn:xmpp:receipts'/><origin-id xmlns='urn:xmpp:sid:0' id='de305d54-75b4-431b-adb2-eb6b9e546014'/></message>`

func TestChildrenAllocs(t *testing.T) {
	n := testing.AllocsPerRun(100, func() {
		for c := range stanza.Children(chat, stanza.NSClient) {
			_ = c.Raw()
			_, _ = c.Attr("id")
			_ = c.Text()
			for range c.Children() {
			}
		}
	})
	if n != 0 {
		t.Errorf("%v allocations", n)
	}
}

func BenchmarkChildren(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		for c := range stanza.Children(chat, stanza.NSClient) {
			_ = c.Name
		}
	}
}

// BenchmarkDecoder is the hand-written walk that Children replaces.
func BenchmarkDecoder(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		d := xml.NewDecoder(strings.NewReader(chat))
		depth := 0
		for {
			tok, err := d.Token()
			if err != nil {
				break
			}
			switch tok.(type) {
			case xml.StartElement:
				depth++
				if depth == 2 {
					_ = d.Skip()
					depth--
				}
			case xml.EndElement:
				depth--
			}
		}
	}
}
