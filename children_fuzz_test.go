package treff_test

import (
	"bytes"
	"encoding/xml"
	"io"
	"strings"
	"testing"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/stanza"
)

// node is an element as encoding/xml reads it: name, where it is in the
// input, attributes without a prefix, direct character data, children.
type node struct {
	name      xml.Name
	off, end  int64 // the element
	in, inEnd int64 // its content
	attrs     []xml.Attr
	text      string
	children  []*node
}

// decodeTree reads data with encoding/xml, unqualified names in
// jabber:client; nil if encoding/xml refuses it.
func decodeTree(data []byte) *node {
	d := xml.NewDecoder(bytes.NewReader(data))
	d.DefaultSpace = stanza.NSClient
	var stack []*node
	var root *node
	for {
		off := d.InputOffset()
		tok, err := d.Token()
		if err == io.EOF {
			return root
		}
		if err != nil {
			return nil
		}
		switch t := tok.(type) {
		case xml.StartElement:
			n := &node{name: t.Name, off: off, in: d.InputOffset()}
			for _, a := range t.Attr {
				if a.Name.Space == "" {
					n.attrs = append(n.attrs, a)
				}
			}
			if len(stack) == 0 {
				root = n
			} else {
				p := stack[len(stack)-1]
				p.children = append(p.children, n)
			}
			stack = append(stack, n)
		case xml.EndElement:
			stack[len(stack)-1].inEnd = off
			stack[len(stack)-1].end = d.InputOffset()
			stack = stack[:len(stack)-1]
		case xml.CharData:
			if len(stack) > 0 {
				stack[len(stack)-1].text += string(t)
			}
		}
	}
}

// spaces maps white space to spaces: encoding/xml does not normalise
// attribute values as XML 1.0 section 3.3.3 says, Attr does.
func spaces(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\t' || r == '\n' || r == '\r' {
			return ' '
		}
		return r
	}, s)
}

// compareChildren checks the children that Children yields against
// encoding/xml's reading of the same element.
func compareChildren(t *testing.T, data []byte, raw string, want []*node, got func(func(stanza.Child) bool)) {
	t.Helper()
	i := 0
	for c := range got {
		if i >= len(want) {
			t.Fatalf("%q: extra child %v at %d", data, c.Name, c.Offset())
		}
		w := want[i]
		i++
		if c.Name != w.name {
			t.Fatalf("%q: child %d is %v, encoding/xml says %v", data, i, c.Name, w.name)
		}
		if int64(c.Offset()) != w.off || c.Raw() != raw[w.off:w.end] {
			t.Fatalf("%q: child %v: Raw %q at %d, encoding/xml %q at %d", data, c.Name, c.Raw(), c.Offset(), raw[w.off:w.end], w.off)
		}
		for _, a := range w.attrs {
			if v, ok := c.Attr(a.Name.Local); !ok || spaces(v) != spaces(a.Value) {
				t.Fatalf("%q: child %v: Attr(%q) = %q, %v; encoding/xml %q", data, c.Name, a.Name.Local, v, ok, a.Value)
			}
		}
		if got := c.Text(); got != w.text {
			t.Fatalf("%q: child %v: Text %q, encoding/xml %q", data, c.Name, got, w.text)
		}
		if in := c.Inner(); in != raw[w.in:w.inEnd] {
			t.Fatalf("%q: child %v: Inner %q, encoding/xml %q", data, c.Name, in, raw[w.in:w.inEnd])
		}
		compareChildren(t, data, raw, w.children, c.Children())
	}
	if i != len(want) {
		t.Fatalf("%q: %d children, encoding/xml finds %d", data, i, len(want))
	}
}

// FuzzChildren checks Stanza.Children against encoding/xml on every
// stanza NewStanza accepts and encoding/xml reads: the same children in
// the same order at every depth, with the same names (namespaces
// resolved), bytes, unprefixed attributes and character data.
func FuzzChildren(f *testing.F) {
	for _, s := range []string{
		`<message to='a@b' type='chat'><body>hi &amp; bye</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>`,
		`<message a='>/' b="/>"><c d='x/>' e=">"/><f g="'/>'">t</f></message>`,
		`<message><body><![CDATA[<x/></body>]]>tail</body><y/></message>`,
		`<message xmlns:p='urn:p'><p:a/><q:b xmlns:q='urn:q'><q:c/><p:d/></q:b></message>`,
		`<message xmlns:p='urn:p'><x xmlns:p='urn:other'><p:y/></x><p:z/></message>`,
		`<message><received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' type='chat'><body>x</body></message></forwarded></received></message>`,
		`<iq type='set' id='1'><query xmlns='jabber:iq:private'><a xmlns='x'/><b xmlns='y' z='1&#10;2'>t&#x3C;</b></query></iq>`,
		"<presence>\r\n<status>a\r\nb</status><x xmlns=''/></presence>",
		`<message><x xmlns='urn:&#x61;'><y/></x></message>`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := treff.NewStanza(data)
		if err != nil {
			return
		}
		root := decodeTree(data)
		if root == nil {
			return // encoding/xml is stricter about some names
		}
		compareChildren(t, data, string(data), root.children, st.Children())
	})
}

func TestStanzaChildrenAllocs(t *testing.T) {
	st, err := treff.NewStanza([]byte(`<message to='a@b' type='chat' id='x'><body>hi</body><active xmlns='http://jabber.org/protocol/chatstates'/><request xmlns='urn:xmpp:receipts'/></message>`))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	if a := testing.AllocsPerRun(100, func() {
		n = 0
		for c := range st.Children() {
			if c.Name.Space == stanza.NSClient {
				n++
			}
			_, _ = c.Attr("id")
			for range c.Children() {
			}
		}
	}); a != 0 {
		t.Errorf("Stanza.Children: %v allocations", a)
	}
	if n != 1 {
		t.Errorf("%d children in jabber:client, want 1", n)
	}
}
