package xmlscan

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"maps"
	"strings"
	"testing"
)

// FuzzNamespaces is a differential check of namespace well-formedness: the
// scanner's verdict on a small document against refNS, a reference written
// from Namespaces in XML 1.0 (third edition) alone, on a tree of elements
// with their names as written and their attribute values resolved.
//
// The first input byte chooses how the rest becomes a document: even, a
// generator picks names, declarations and values from small sets that hit
// every rule (reserved prefixes and namespaces, empty declarations,
// non-QNames, clashing expanded names, nesting and shadowing); odd, the
// rest is the document itself, whose tree encoding/xml reads (inputs it
// refuses are FuzzParse's business and are skipped here).
//
// The scanner checks start tags in document order and stops at the first
// bad one, so it must refuse exactly the documents where refNS finds a bad
// element, with one of the errors refNS lists for the first such element.
func FuzzNamespaces(f *testing.F) {
	for _, s := range []string{
		`<a xmlns:p='u' p:x='1'><p:b/></a>`,
		`<a xmlns:xml='urn:other'/>`,
		`<a xmlns:xml='http://www.w3.org/XML/1998/namespace' xml:lang='en'/>`,
		`<a xmlns:p='http://www.w3.org/XML/1998/namespace'/>`,
		`<a xmlns='http://www.w3.org/XML/1998/namespace'/>`,
		`<a xmlns:p=''/>`,
		`<a xmlns=''/>`,
		`<a xmlns:xmlns='u'/>`,
		`<a xmlns:p='http://www.w3.org/2000/xmlns/'/>`,
		`<a xmlns='http://www.w3.org/2000/xmlns/'/>`,
		`<xmlns:a/>`,
		`<a xmlns:a='u' xmlns:b='u' a:z='1' b:z='2'/>`,
		`<a xmlns:a='u' xmlns:b='&#x75;' a:z='1' b:z='2'/>`,
		`<a xmlns:a='u'><b xmlns:b='u' a:z='1' b:z='2'/></a>`,
		`<a xmlns:a='u'><b xmlns:a='v' a:z='1'><c xmlns:b='u' a:z='1' b:z='2'/></b></a>`,
		`<a:b:c xmlns:a='u'/>`,
		`<a x:y:z='1' xmlns:x='u'/>`,
		`<:a/>`,
		`<a :b='1'/>`,
		`<a: xmlns:a='u'/>`,
		`<a xmlns:='u'/>`,
		`<a xmlns:p='u' p:1='x'/>`,
		`<a p:x='1'/>`,
		`<p:a/>`,
		`<a><b xmlns:p='u'/><p:c/></a>`,
		`<xml:a/>`,
		`<a x='1' x='2'/>`,
	} {
		f.Add(append([]byte{1}, s...))
	}
	for _, s := range []string{
		"\x00\x02\x07\x08\x09\x02\x0a\x05\x01\x00",
		"\x00\x03\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e",
		"\x00\x05\x0c\x03\x02\x03\x0d\x03\x02\x03\x05\x04\x00",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		var doc string
		var root *refElem
		if data[0]%2 == 0 {
			g := &nsGen{data: data[1:]}
			var b strings.Builder
			root = g.element(&b, 0)
			doc = b.String()
		} else {
			doc = string(data[1:])
			var ok bool
			if root, ok = refTree(data[1:]); !ok {
				return
			}
		}
		want := refNS(root)
		_, err := Parse([]byte(doc), 1<<20)
		if data[0]%2 == 1 && err != nil && err != ErrNamespace && err != ErrBadPrefix && !want[err] {
			// Refused for something else than namespaces, which
			// encoding/xml does not check (no space between
			// attributes): FuzzParse's business. Generated documents
			// are well-formed XML, so this is for input documents only.
			return
		}
		switch {
		case want == nil && err != nil:
			t.Fatalf("%q: the reference accepts it, the scanner says %v", doc, err)
		case want != nil && err == nil:
			t.Fatalf("%q: the scanner accepts it, the reference finds %v", doc, want)
		case want != nil && !want[err]:
			t.Fatalf("%q: the scanner says %v, the reference finds %v", doc, err, want)
		}
	})
}

// refElem is an element as written: qualified names, attribute values
// with references resolved.
type refElem struct {
	name  string
	attrs [][2]string
	kids  []*refElem
}

// refNS returns the errors the scanner may report for the first element
// in document order that breaks a rule of Namespaces in XML 1.0, or nil if
// none does.
func refNS(root *refElem) map[error]bool {
	var first map[error]bool
	var walk func(e *refElem, scope map[string]string) bool
	walk = func(e *refElem, scope map[string]string) bool {
		inner := maps.Clone(scope)
		if bad := refTag(e, inner); len(bad) > 0 {
			first = bad
			return false
		}
		for _, k := range e.kids {
			if !walk(k, inner) {
				return false
			}
		}
		return true
	}
	walk(root, map[string]string{"xml": nsXML})
	return first
}

// refTag checks one start tag, adding its declarations to scope, and
// returns the errors it deserves.
func refTag(e *refElem, scope map[string]string) map[error]bool {
	bad := map[error]bool{}
	// Section 4: every name is a QName; element names never use xmlns.
	if !refQName(e.name) || refPrefix(e.name) == "xmlns" {
		bad[ErrNamespace] = true
	}
	for _, a := range e.attrs {
		if !refQName(a[0]) {
			bad[ErrNamespace] = true
		}
	}
	// Section 3: declarations and the reserved prefixes and names.
	for _, a := range e.attrs {
		n, v := a[0], a[1]
		switch {
		case n == "xmlns":
			if v == nsXML || v == nsXMLNS {
				bad[ErrNamespace] = true
			}
		case refPrefix(n) == "xmlns" && refQName(n):
			p := n[len("xmlns:"):]
			if p == "xmlns" || v == "" || (p == "xml") != (v == nsXML) || v == nsXMLNS {
				bad[ErrNamespace] = true
			}
			scope[p] = v
		}
	}
	// Prefix Declared (section 5): xml is always bound; xmlns: marks a
	// declaration, not a namespace prefix.
	resolve := func(n string, attr bool) (string, bool) {
		p := refPrefix(n)
		switch {
		case p == "":
			if attr {
				return "\x00none", true // unprefixed attributes are in no namespace
			}
			return "", true
		case attr && p == "xmlns":
			return nsXMLNS, true
		}
		ns, ok := scope[p]
		return ns, ok
	}
	if _, ok := resolve(e.name, false); !ok && refQName(e.name) {
		bad[ErrBadPrefix] = true
	}
	for _, a := range e.attrs {
		if _, ok := resolve(a[0], true); !ok && refQName(a[0]) {
			bad[ErrBadPrefix] = true
		}
	}
	// Attributes Unique: XML 1.0 on names as written, section 6.3 on
	// expanded names.
	for i, a := range e.attrs {
		for _, b := range e.attrs[:i] {
			if a[0] == b[0] {
				bad[ErrNotWellFormed] = true
				continue
			}
			if !refQName(a[0]) || !refQName(b[0]) || refLocal(a[0]) != refLocal(b[0]) {
				continue
			}
			na, oka := resolve(a[0], true)
			nb, okb := resolve(b[0], true)
			if oka && okb && na == nb {
				bad[ErrNamespace] = true
			}
		}
	}
	return bad
}

func refPrefix(n string) string {
	p, _, ok := strings.Cut(n, ":")
	if !ok {
		return ""
	}
	return p
}

func refLocal(n string) string {
	_, l, ok := strings.Cut(n, ":")
	if !ok {
		return n
	}
	return l
}

// refQName: an NCName, or two NCNames joined by a colon.
func refQName(n string) bool {
	parts := strings.Split(n, ":")
	if len(parts) > 2 {
		return false
	}
	for _, p := range parts {
		if !refNCName(p) {
			return false
		}
	}
	return true
}

// refNCName is an XML name without colons, for the ASCII names the fuzz
// target compares (any other byte is taken as a name character, as the
// scanner does).
func refNCName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c >= 0x80
		if i == 0 && !letter || !letter && !(c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// refTree reads the elements of a document encoding/xml accepts, or
// reports false. Values with literal tabs or line ends are left out:
// encoding/xml does not normalise them (XML 1.0 3.3.3), so it cannot tell
// them from character references, which namespace names compare unlike.
func refTree(data []byte) (*refElem, bool) {
	if _, err := decodeStrict(data); err != nil {
		return nil, false
	}
	if bytes.ContainsAny(data, "\t\r\n") || outsideDifferential(string(data)) {
		return nil, false
	}
	d := xml.NewDecoder(bytes.NewReader(data))
	d.Strict = true
	var stack []*refElem
	var root *refElem
	for {
		tok, err := d.RawToken()
		if err == io.EOF {
			return root, root != nil
		}
		if err != nil {
			return nil, false
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			e := &refElem{name: qname(tok.Name)}
			for _, a := range tok.Attr {
				e.attrs = append(e.attrs, [2]string{qname(a.Name), a.Value})
			}
			if len(stack) == 0 {
				root = e
			} else {
				p := stack[len(stack)-1]
				p.kids = append(p.kids, e)
			}
			stack = append(stack, e)
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		}
	}
}

// nsGen builds a document from fuzz bytes, choosing each name and value
// from sets made to exercise the namespace rules.
type nsGen struct{ data []byte }

var (
	genElems = []string{"a", "b", "p:a", "q:b", "r:c", "xml:a", "xmlns:a", "a:b:c", ":a", "p:", "p:1", "P.-_9"}
	genAttrs = []string{"x", "y", "p:x", "q:x", "r:x", "xml:x", "xml:lang", "xmlns", "xmlns:p", "xmlns:q",
		"xmlns:r", "xmlns:xml", "xmlns:xmlns", "xmlns:", ":x", "x:", "p:x:y", "p:1", "xmlnsx", "p:y", "q:y",
		// # is a number: many distinct names and prefixes, for the
		// scanner's hash table (more than 8 attributes) and prefix index
		// (more than 8 declarations in scope).
		"x#", "p:x#", "q:x#", "xmlns:s#", "s#:x", "s#:x#", "xmlns:s#"}
	// Values as written, and resolved.
	genVals = [][2]string{
		{"", ""}, {"u", "u"}, {"v", "v"}, {"&#x75;", "u"}, {"&#117;", "u"},
		{nsXML, nsXML}, {nsXMLNS, nsXMLNS},
		{"http://www.w3.org/XML/1998/namespac&#x65;", nsXML},
		{"http://www.w3.org/2000/xmlns&#x2f;", nsXMLNS},
		{"&amp;", "&"}, {"u ", "u "},
	}
)

func (g *nsGen) next() int {
	if len(g.data) == 0 {
		return 0
	}
	b := g.data[0]
	g.data = g.data[1:]
	return int(b)
}

// element writes one element to b and returns its tree.
func (g *nsGen) element(b *strings.Builder, depth int) *refElem {
	e := &refElem{name: genElems[g.next()%len(genElems)]}
	b.WriteString("<" + e.name)
	for n := g.next() % 14; n > 0; n-- {
		name := genAttrs[g.next()%len(genAttrs)]
		name = strings.ReplaceAll(name, "#", fmt.Sprint(g.next()%16))
		v := genVals[g.next()%len(genVals)]
		e.attrs = append(e.attrs, [2]string{name, v[1]})
		fmt.Fprintf(b, " %s='%s'", name, v[0])
	}
	kids := 0
	if depth < 3 {
		kids = g.next() % 3
	}
	if kids == 0 {
		b.WriteString("/>")
		return e
	}
	b.WriteString(">")
	for range kids {
		e.kids = append(e.kids, g.element(b, depth+1))
	}
	b.WriteString("</" + e.name + ">")
	return e
}
