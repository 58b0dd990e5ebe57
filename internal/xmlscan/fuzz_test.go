package xmlscan

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"testing"
	"testing/iotest"
)

// The fuzz targets of this file check properties of the scanner, not only
// that it does not panic:
//
//   - FuzzParse: an element Parse accepts is accepted by encoding/xml too,
//     with the same name, attributes, first child and child namespace
//     (differential, on the subset where encoding/xml is strict enough);
//     whatever encoding/xml accepts, written back in the restricted XML of
//     RFC 6120, the scanner accepts with the same facts; the reported
//     offsets (TagEnd, StartEnd, Inner) delimit what they claim, Raw
//     re-scans to the same Element, AppendWithout rewrites attributes
//     without breaking the element, and the size limit is exact.
//   - FuzzStream: a stream scans to the same elements (or the same error)
//     whatever the sizes of the reads, every element re-scans alone to
//     the same Element, and whitespace is all that lies between them.
//
// Seed inputs, including some the fuzzer found, are in testdata/fuzz.

// FuzzParse checks Parse on one element.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`<message to='a@b' type="chat" id='x&amp;1'><body>hi &lt;3</body></message>`,
		`<iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>`,
		`<presence/>`,
		` <a b='&#x41;&#10;&#9;'><![CDATA[<x>]]></a> `,
		`<x:y xmlns:x='urn:x' x:a='1'><x:z/></x:y>`,
		"<a b='1\r\n2\t3'/>",
		`<a><b xmlns="u1"/><c xmlns="u2"/></a>`,
		`<a b='1' b='2'/>`,
		`<a><!-- c --></a>`,
		`<a>]]></a>`,
		`<a>&#0;</a>`,
		`<a>&#x0000000000041;</a>`,
		`<a></b>`,
		`<a b='<'/>`,
		"<a>\xef\xbf\xbe</a>",
		`<a:b:c xmlns:a='u'/>`,
		// Check's fast path (simpleEmpty) and its near misses.
		`<stanza-id xmlns='urn:xmpp:sid:0' by='bob@example.org' id='AAAAAAAAAAAAAAAA'/>`,
		`<x a="1" b='2'  />`, `<x a='1' a='2'/>`, `<x xmlns='' b='&amp;'/>`,
	} {
		f.Add([]byte(s), uint16(64))
		f.Add([]byte(s), uint16(4096))
	}
	f.Fuzz(func(t *testing.T, data []byte, max16 uint16) {
		max := int(max16)
		if max == 0 {
			max = 1 // 0 would mean the default
		}
		el, err := Parse(data, max)
		big, bigErr := Parse(data, 1<<20)
		if cerr := Check(data, max); cerr != err {
			t.Fatalf("Check says %v, Parse %v", cerr, err)
		}
		// The limit: only the size may change the verdict.
		if err == nil {
			if len(el.Raw) > max {
				t.Fatalf("Parse accepted %d bytes with a limit of %d", len(el.Raw), max)
			}
			if bigErr != nil {
				t.Fatalf("accepted with limit %d, refused with 1 MiB: %v", max, bigErr)
			}
		} else if bigErr == nil {
			if len(big.Raw) <= max {
				t.Fatalf("refused with limit %d (%v) an element of %d bytes", max, err, len(big.Raw))
			}
			if !errors.Is(err, ErrTooLarge) {
				t.Fatalf("an element of %d bytes with a limit of %d: %v, want ErrTooLarge", len(big.Raw), max, err)
			}
		}
		if bigErr != nil {
			checkRejected(t, data, bigErr)
			return
		}
		checkElement(t, big)
		if strings.Trim(string(data), " \t\r\n") != big.Raw {
			t.Fatalf("Raw %q is not the input %q without its surrounding whitespace", big.Raw, data)
		}
		checkDifferential(t, big)
	})
}

// checkElement checks what an accepted element's fields claim about Raw.
func checkElement(t *testing.T, el *Element) {
	t.Helper()
	raw := el.Raw
	if raw[:el.TagEnd] != "<"+el.Name {
		t.Fatalf("Raw[:TagEnd] = %q, want %q", raw[:el.TagEnd], "<"+el.Name)
	}
	if el.StartEnd < el.TagEnd || el.StartEnd > len(raw) || raw[el.StartEnd-1] != '>' {
		t.Fatalf("StartEnd %d does not end the start tag of %q", el.StartEnd, raw)
	}
	if el.Empty {
		if el.StartEnd != len(raw) || !strings.HasSuffix(raw, "/>") || el.Inner() != "" || el.Child != "" {
			t.Fatalf("empty element %q: StartEnd %d, Inner %q, Child %q", raw, el.StartEnd, el.Inner(), el.Child)
		}
	} else {
		want := raw[:el.StartEnd] + el.Inner() + "</" + el.Name
		if !strings.HasPrefix(raw, want) || strings.TrimLeft(raw[len(want):], " \t\r\n") != ">" {
			t.Fatalf("start tag %q, Inner %q and end tag do not make Raw %q", raw[:el.StartEnd], el.Inner(), raw)
		}
	}
	// Raw re-scans to the same element.
	again, err := Parse([]byte(raw), len(raw))
	if err != nil {
		t.Fatalf("Raw %q does not re-scan: %v", raw, err)
	}
	if a, b := describe(el), describe(again); a != b {
		t.Fatalf("re-scan of %q differs:\n%s\n%s", raw, a, b)
	}
	// AppendWithout with nothing to do is the identity.
	if got := string(el.AppendWithout(nil, "")); got != raw {
		t.Fatalf("AppendWithout(nil, \"\") = %q, want %q", got, raw)
	}
	// Removing each attribute in turn, and adding one, keeps the element
	// well-formed with the other attributes intact.
	for i, a := range el.Attrs {
		if strings.HasPrefix(a.Name, "xmlns") {
			continue // removing a declaration may leave a prefix unbound
		}
		out := el.AppendWithout(nil, " added='&amp;'", a.Name)
		e2, err := Parse(out, len(out))
		if err != nil {
			t.Fatalf("AppendWithout(%q) of %q = %q: %v", a.Name, raw, out, err)
		}
		var want []Attr
		want = append(want, Attr{Name: "added", Value: "&"})
		want = append(want, el.Attrs[:i]...)
		want = append(want, el.Attrs[i+1:]...)
		if a.Name == "added" {
			want = want[:1]
			for _, b := range el.Attrs {
				if b.Name != "added" {
					want = append(want, b)
				}
			}
		}
		if got, w := attrList(e2.Attrs), attrList(want); got != w {
			t.Fatalf("AppendWithout(%q) of %q = %q: attributes %s, want %s", a.Name, raw, out, got, w)
		}
		if e2.Name != el.Name || e2.Child != el.Child || e2.ChildNS != el.ChildNS || e2.Inner() != el.Inner() {
			t.Fatalf("AppendWithout(%q) of %q = %q changed the element", a.Name, raw, out)
		}
	}
}

func attrList(as []Attr) string {
	var b strings.Builder
	for _, a := range as {
		fmt.Fprintf(&b, "%q=%q ", a.Name, a.Value)
	}
	return b.String()
}

func describe(el *Element) string {
	return fmt.Sprintf("name %q attrs %s tagEnd %d startEnd %d empty %v child %q childNS %q inner %q",
		el.Name, attrList(el.Attrs), el.TagEnd, el.StartEnd, el.Empty, el.Child, el.ChildNS, el.Inner())
}

// facts are what encoding/xml says about one element, in the scanner's
// terms: qualified names as written, attribute values resolved.
type facts struct {
	name, child, childNS string
	hasChild             bool
	attrs                []Attr
}

// decodeStrict decodes data as one element with encoding/xml in strict mode.
// It refuses what RFC 6120 restricts (comments, processing instructions,
// directives) and anything but whitespace around the element.
func decodeStrict(data []byte) (*facts, error) {
	// Well-formedness, with matching end tags.
	d := xml.NewDecoder(bytes.NewReader(data))
	d.Strict = true
	roots, depth := 0, 0
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			if depth == 0 {
				roots++
			}
			depth++
		case xml.EndElement:
			depth--
		case xml.CharData:
			if depth == 0 && len(bytes.Trim(tok, " \t\r\n")) > 0 {
				return nil, errors.New("text outside the element")
			}
		default:
			return nil, fmt.Errorf("restricted XML: %T", tok)
		}
	}
	if roots != 1 || depth != 0 {
		return nil, fmt.Errorf("%d root elements", roots)
	}
	// Names as written.
	d = xml.NewDecoder(bytes.NewReader(data))
	d.Strict = true
	var f facts
	depth = 0
	for {
		tok, err := d.RawToken()
		if err == io.EOF {
			return &f, nil
		}
		if err != nil {
			return nil, err
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			switch depth {
			case 0:
				f.name = qname(tok.Name)
				for _, a := range tok.Attr {
					f.attrs = append(f.attrs, Attr{Name: qname(a.Name), Value: a.Value})
				}
			case 1:
				if !f.hasChild {
					f.hasChild = true
					f.child = qname(tok.Name)
					// The namespace declared for the child: its xmlns,
					// or its prefix's declaration on it or the top.
					want := "xmlns"
					if tok.Name.Space != "" {
						want = "xmlns:" + tok.Name.Space
					}
					found := false
					for _, a := range tok.Attr {
						if qname(a.Name) == want {
							f.childNS, found = a.Value, true
						}
					}
					for _, a := range f.attrs {
						if !found && want != "xmlns" && a.Name == want {
							f.childNS = a.Value
						}
					}
				}
			}
			depth++
		case xml.EndElement:
			depth--
		}
	}
}

func qname(n xml.Name) string {
	if n.Space == "" {
		return n.Local
	}
	return n.Space + ":" + n.Local
}

// normSpace maps tab, newline and carriage return to spaces: encoding/xml
// does not normalise attribute values (XML 1.0 section 3.3.3), the scanner
// does.
func normSpace(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\t' || r == '\n' || r == '\r' {
			return ' '
		}
		return r
	}, s)
}

var nameRE = regexp.MustCompile(`</?([^\s/>]+)|\s([^\s=<>]+)\s*=`)

// outsideDifferential reports inputs whose names encoding/xml judges
// differently from XML 1.0 fifth edition, which the scanner follows:
// names with non-ASCII characters, for which encoding/xml uses the much
// smaller name character tables of XML 1.0 (fourth edition) Appendix B.
// (Names that are not QNames, a:b:c, :a or a:, are no longer left out:
// the scanner refuses them as ErrNamespace, and FuzzNamespaces checks
// that against a reference.)
func outsideDifferential(raw string) bool {
	for _, m := range nameRE.FindAllStringSubmatch(raw, -1) {
		n := m[1] + m[2]
		for i := 0; i < len(n); i++ {
			if n[i] >= 0x80 {
				return true
			}
		}
	}
	return false
}

// checkDifferential compares an accepted element with encoding/xml.
func checkDifferential(t *testing.T, el *Element) {
	t.Helper()
	if outsideDifferential(el.Raw) {
		return
	}
	f, err := decodeStrict([]byte(el.Raw))
	if err != nil {
		t.Fatalf("the scanner accepted %q, encoding/xml says %v", el.Raw, err)
	}
	if f.name != el.Name || f.child != el.Child || normSpace(f.childNS) != normSpace(el.ChildNS) {
		t.Fatalf("%q: scanner name %q child %q %q, encoding/xml %q child %q %q",
			el.Raw, el.Name, el.Child, el.ChildNS, f.name, f.child, f.childNS)
	}
	if len(f.attrs) != len(el.Attrs) {
		t.Fatalf("%q: scanner attributes %s, encoding/xml %s", el.Raw, attrList(el.Attrs), attrList(f.attrs))
	}
	for i, a := range f.attrs {
		b := el.Attrs[i]
		// Both sides normalised: encoding/xml does not tell a literal
		// tab from &#9;, and only the literal is normalised.
		if a.Name != b.Name || normSpace(a.Value) != normSpace(b.Value) {
			t.Fatalf("%q: scanner attribute %q=%q, encoding/xml %q=%q", el.Raw, b.Name, b.Value, a.Name, a.Value)
		}
	}
}

// checkRejected checks an input the scanner refuses: when encoding/xml
// accepts it, the same document written back in restricted XML (single
// quotes, escaped text, no comments) must be accepted by the scanner with
// the same facts. Prefixes that no element declares may still be refused
// (RFC 6120's bad-namespace-prefix), and so may duplicate attributes, which
// encoding/xml does not check (they are left out of the rewrite), and
// whatever else Namespaces in XML forbids (ErrNamespace), which encoding/xml
// does not check either: FuzzNamespaces holds those to a reference.
func checkRejected(t *testing.T, data []byte, scanErr error) {
	t.Helper()
	if _, err := decodeStrict(data); err != nil {
		return // both refuse
	}
	canon, ok := canonical(data)
	if !ok || outsideDifferential(canon) {
		return
	}
	el, err := Parse([]byte(canon), 1<<20)
	if err != nil {
		if errors.Is(err, ErrBadPrefix) || errors.Is(err, ErrNamespace) {
			return
		}
		t.Fatalf("encoding/xml accepts %q (scanner: %v); the scanner refuses it as %q: %v", data, scanErr, canon, err)
	}
	f, _ := decodeStrict([]byte(canon))
	if f.name != el.Name || f.child != el.Child || f.childNS != el.ChildNS || attrList(f.attrs) != attrList(el.Attrs) {
		t.Fatalf("%q: scanner %s, encoding/xml name %q attrs %s child %q %q",
			canon, describe(el), f.name, attrList(f.attrs), f.child, f.childNS)
	}
}

// canonical writes a document encoding/xml accepts in the restricted XML
// of RFC 6120, escaping everything that could be read differently. It
// reports false for input it cannot rewrite faithfully.
func canonical(data []byte) (string, bool) {
	d := xml.NewDecoder(bytes.NewReader(data))
	d.Strict = true
	var b strings.Builder
	depth := 0
	for {
		tok, err := d.RawToken()
		if err == io.EOF {
			return b.String(), true
		}
		if err != nil {
			return "", false
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			depth++
			b.WriteString("<" + qname(tok.Name))
			seen := map[string]bool{}
			for _, a := range tok.Attr {
				n := qname(a.Name)
				if seen[n] {
					continue
				}
				seen[n] = true
				b.WriteString(" " + n + "='" + escape(a.Value) + "'")
			}
			b.WriteString(">")
		case xml.EndElement:
			depth--
			b.WriteString("</" + qname(tok.Name) + ">")
		case xml.CharData:
			if depth > 0 {
				b.WriteString(escape(string(tok)))
			}
		}
	}
}

func escape(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '<':
			b.WriteString("&lt;")
		case '>':
			b.WriteString("&gt;")
		case '&':
			b.WriteString("&amp;")
		case '\'':
			b.WriteString("&apos;")
		case '"':
			b.WriteString("&quot;")
		case '\t', '\n', '\r':
			fmt.Fprintf(&b, "&#%d;", r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// streamHeader is the header FuzzStream reads first; its stream: prefix
// may be used by top-level elements.
const streamHeader = `<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>`

// FuzzStream checks a stream of elements read in chunks of any size.
func FuzzStream(f *testing.F) {
	for _, s := range []string{
		`<message to='a'><body>x</body></message> <presence/>` + "\n" + `<iq id='1'/></stream:stream>`,
		`<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>`,
		`<a b='1'/><a b='2'/><a b='3'/><a b='4'/>`,
		`<a><![CDATA[</a>]]></a></stream:stream >`,
		`<a/>x`,
		`</stream:foo>`,
	} {
		f.Add([]byte(s), uint8(1), uint16(256))
		f.Add([]byte(s), uint8(7), uint16(30))
	}
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8, max16 uint16) {
		max := int(max16)%8192 + 1
		in := streamHeader + string(data)
		whole, wholeErr := scanStream(strings.NewReader(in), max)
		var r io.Reader = strings.NewReader(in)
		if chunk <= 1 {
			r = iotest.OneByteReader(r)
		} else {
			r = &chunkReader{data: []byte(in), n: int(chunk)}
		}
		parts, partsErr := scanStream(r, max)
		if len(parts) != len(whole) {
			t.Fatalf("reads of %d bytes: %d elements, whole: %d", chunk, len(parts), len(whole))
		}
		rest := in // the header failed
		if len(whole) > 0 {
			last := whole[len(whole)-1].Raw
			rest = in[strings.LastIndex(in, last)+len(last):]
		}
		if !errors.Is(partsErr, wholeErr) && !(isEOF(partsErr) && isEOF(wholeErr)) {
			// An element that is too large and also broken may be
			// refused for either reason, depending on when the
			// scanner sees its size.
			tooLarge := errors.Is(partsErr, ErrTooLarge) || errors.Is(wholeErr, ErrTooLarge)
			if !tooLarge || len(strings.TrimLeft(rest, " \t\r\n")) <= max {
				t.Fatalf("reads of %d bytes: error %v, whole: %v", chunk, partsErr, wholeErr)
			}
		}
		rest = string(data)
		for i, el := range whole {
			if a, b := describe(el), describe(parts[i]); a != b {
				t.Fatalf("element %d differs with reads of %d bytes:\n%s\n%s", i, chunk, a, b)
			}
			if len(el.Raw) > max {
				t.Fatalf("element of %d bytes with a limit of %d", len(el.Raw), max)
			}
			// Between elements, only whitespace.
			trimmed := strings.TrimLeft(rest, " \t\r\n")
			if !strings.HasPrefix(trimmed, el.Raw) {
				t.Fatalf("element %d %q is not next in the input %q", i, el.Raw, trimmed)
			}
			rest = trimmed[len(el.Raw):]
			checkElement(t, withStream(t, el))
		}
		if errors.Is(wholeErr, ErrStreamEnd) && !strings.HasPrefix(strings.TrimLeft(rest, " \t\r\n"), "</stream:stream") {
			t.Fatalf("ErrStreamEnd before %q", rest)
		}
	})
}

// withStream re-scans a top-level element alone; one that uses the stream
// prefix gets the declaration, which Parse does not know about.
func withStream(t *testing.T, el *Element) *Element {
	t.Helper()
	if !strings.HasPrefix(el.Name, "stream:") {
		return el
	}
	s := NewScanner(strings.NewReader(streamHeader+el.Raw), len(streamHeader)+len(el.Raw))
	if _, err := s.Header(); err != nil {
		t.Fatal(err)
	}
	again, err := s.Next()
	if err != nil || describe(again) != describe(el) {
		t.Fatalf("%q does not re-scan after the header: %v", el.Raw, err)
	}
	// For checkElement's own re-scan, the prefix must be declared on the
	// element.
	decl := []byte(el.Raw[:el.TagEnd] + " xmlns:stream='" + nsStreamsForTest + "'" + el.Raw[el.TagEnd:])
	e2, err := Parse(decl, len(decl))
	if err != nil {
		if errors.Is(err, ErrNotWellFormed) && strings.Contains(el.Raw[:el.StartEnd], "xmlns:stream") {
			return el // declared twice now; nothing more to check alone
		}
		t.Fatalf("%q with the stream prefix declared: %v", decl, err)
	}
	return e2
}

const nsStreamsForTest = "http://etherx.jabber.org/streams"

func isEOF(err error) bool { return err == io.EOF || err == io.ErrUnexpectedEOF }

// scanStream reads the header and then elements until an error.
func scanStream(r io.Reader, max int) ([]*Element, error) {
	s := NewScanner(r, max)
	if _, err := s.Header(); err != nil {
		return nil, err
	}
	var els []*Element
	for len(els) < 200 {
		el, err := s.Next()
		if err != nil {
			return els, err
		}
		els = append(els, el)
	}
	return els, nil
}

// chunkReader returns data n bytes at a time.
type chunkReader struct {
	data []byte
	n    int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := min(r.n, len(p), len(r.data))
	n = copy(p, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}

// Regressions found by FuzzParse and FuzzStream; the inputs are also in
// testdata/fuzz.

// An attribute's "\r\n" is one line end, so one space (XML 1.0 sections
// 2.11 and 3.3.3); it was two.
func TestAttrCRLF(t *testing.T) {
	el, err := Parse([]byte("<a b='1\r\n2\r3\n4\t5&#13;&#10;6'/>"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := el.Attr("b"); v != "1 2 3 4 5\r\n6" {
		t.Errorf("b = %q", v)
	}
}

// Whitespace after the element is not part of it: an element of exactly
// max bytes followed by a space was refused as not well-formed.
func TestParseTrailingSpaceAtLimit(t *testing.T) {
	if _, err := Parse([]byte("<A></A> "), 7); err != nil {
		t.Error(err)
	}
	if _, err := Parse([]byte("<A></A> "), 6); !errors.Is(err, ErrTooLarge) {
		t.Errorf("6 bytes: %v, want ErrTooLarge", err)
	}
}

// The size limit applies to the stream header whatever the sizes of the
// reads; it applied only when a read ended inside the header.
func TestHeaderLimit(t *testing.T) {
	for _, r := range []io.Reader{
		strings.NewReader(streamHeader),
		iotest.OneByteReader(strings.NewReader(streamHeader)),
	} {
		if _, err := NewScanner(r, 30).Header(); !errors.Is(err, ErrTooLarge) {
			t.Errorf("%T: %v, want ErrTooLarge", r, err)
		}
	}
	if _, err := NewScanner(strings.NewReader(streamHeader), len(streamHeader)).Header(); err != nil {
		t.Error(err)
	}
}

// Found by FuzzTranslateOut (websocket): the header was not checked for
// UTF-8, elements were.
func TestHeaderUTF8(t *testing.T) {
	in := "<stream:stream xmlns:stream='http://etherx.jabber.org/streams' to='\xff'>"
	if _, err := NewScanner(strings.NewReader(in), 0).Header(); !errors.Is(err, ErrNotWellFormed) {
		t.Errorf("%v, want ErrNotWellFormed", err)
	}
}
