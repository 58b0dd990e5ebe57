package xmlscan

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

const header = `<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='example.org' version='1.0'>`

func scanAll(t *testing.T, in string, r io.Reader) ([]*Element, error) {
	t.Helper()
	if r == nil {
		r = strings.NewReader(in)
	}
	s := NewScanner(r, 1024)
	h, err := s.Header()
	if err != nil {
		return nil, err
	}
	if v, _ := h.Attr("to"); v != "example.org" {
		t.Fatalf("header to = %q", v)
	}
	var out []*Element
	for i := 0; i < 100; i++ {
		el, err := s.Next()
		if err != nil {
			return out, err
		}
		out = append(out, el)
	}
	t.Fatal("too many elements")
	return nil, nil
}

func TestScanElements(t *testing.T) {
	in := header + ` <message to='bob@example.org' type="chat" id='a&amp;1'><body>hi &lt;3 <![CDATA[<x>]]></body><x:y xmlns:x='urn:x' x:a='1'/></message>
<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq><presence/></stream:stream>`
	for _, tc := range []struct {
		name string
		r    io.Reader
	}{
		{"whole", nil},
		{"onebyte", iotest.OneByteReader(strings.NewReader(in))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			els, err := scanAll(t, in, tc.r)
			if !errors.Is(err, ErrStreamEnd) {
				t.Fatalf("err = %v", err)
			}
			if len(els) != 3 {
				t.Fatalf("got %d elements", len(els))
			}
			m := els[0]
			if m.Name != "message" || m.Child != "body" || m.ChildNS != "" {
				t.Errorf("message: %q child %q %q", m.Name, m.Child, m.ChildNS)
			}
			if v, _ := m.Attr("id"); v != "a&1" {
				t.Errorf("id = %q", v)
			}
			if v, _ := m.Attr("type"); v != "chat" {
				t.Errorf("type = %q", v)
			}
			if !strings.HasPrefix(m.Raw, "<message") || !strings.HasSuffix(m.Raw, "</message>") {
				t.Errorf("raw = %q", m.Raw)
			}
			if got := m.Raw[:m.StartEnd]; got != `<message to='bob@example.org' type="chat" id='a&amp;1'>` {
				t.Errorf("start tag = %q", got)
			}
			iq := els[1]
			if iq.Child != "ping" || iq.ChildNS != "urn:xmpp:ping" {
				t.Errorf("iq child %q %q", iq.Child, iq.ChildNS)
			}
			if p := els[2]; p.Name != "presence" || !p.Empty || p.Inner() != "" {
				t.Errorf("presence %+v", p)
			}
			// Each element must be parseable by encoding/xml.
			for _, el := range els {
				d := xml.NewDecoder(strings.NewReader(el.Raw))
				for {
					if _, err := d.Token(); err == io.EOF {
						break
					} else if err != nil {
						t.Fatalf("encoding/xml rejects %q: %v", el.Raw, err)
					}
				}
			}
		})
	}
}

func TestAppendWithout(t *testing.T) {
	s := NewScanner(strings.NewReader(header+`<message from='evil@x/y' to='b@c' id='1'><body/></message>`), 0)
	if _, err := s.Header(); err != nil {
		t.Fatal(err)
	}
	el, err := s.Next()
	if err != nil {
		t.Fatal(err)
	}
	got := string(el.AppendWithout(nil, ` from='a@c/r'`, "from"))
	want := `<message from='a@c/r' to='b@c' id='1'><body/></message>`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestScanErrors(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     error
	}{
		{"mismatch", `<message><body></message>`, ErrNotWellFormed},
		{"unclosed attr", `<message to='a></message>`, ErrNotWellFormed},
		{"lt in attr", `<message to='<'/>`, ErrNotWellFormed},
		{"dup attr", `<message to='a' to='b'/>`, ErrNotWellFormed},
		{"comment", `<message><!-- hi --></message>`, ErrRestrictedXML},
		{"top comment", `<!-- hi -->`, ErrRestrictedXML},
		{"pi", `<message><?pi x?></message>`, ErrRestrictedXML},
		{"doctype", `<message><!DOCTYPE x></message>`, ErrRestrictedXML},
		{"entity", `<message>&foo;</message>`, ErrRestrictedXML},
		{"bad charref", `<message>&#0;</message>`, ErrNotWellFormed},
		{"bare amp", `<message>a & b</message>`, ErrNotWellFormed},
		{"control char", "<message>\x01</message>", ErrNotWellFormed},
		{"bad utf8", "<message>\xff</message>", ErrNotWellFormed},
		{"cdata end", `<message>]]></message>`, ErrNotWellFormed},
		{"undeclared prefix", `<message><x:y/></message>`, ErrBadPrefix},
		{"prefix out of scope", `<message><a xmlns:x='u'/><x:y/></message>`, ErrBadPrefix},
		{"text at top", `hello`, ErrNotWellFormed},
		{"too large", `<message><body>` + strings.Repeat("a", 2000) + `</body></message>`, ErrTooLarge},
		{"wrong stream end", `</stream>`, ErrNotWellFormed},
		{"eof", `<message>`, io.ErrUnexpectedEOF},
		{"no space between attrs", `<message to='a'id='b'/>`, ErrNotWellFormed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := scanAll(t, header+tc.in, nil)
			if !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestHeaderErrors(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     error
	}{
		{"encoding", `<?xml version='1.0' encoding='ISO-8859-1'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams'>`, ErrUnsupportedEncoding},
		{"wrong ns", `<stream:stream xmlns:stream='urn:wrong'>`, ErrBadStreamHeader},
		{"not stream", `<foo>`, ErrBadStreamHeader},
		{"garbage", `hello`, ErrNotWellFormed},
		{"doctype", `<!DOCTYPE foo>`, ErrRestrictedXML},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewScanner(strings.NewReader(tc.in), 0).Header()
			if !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
		})
	}
	// utf-8 in any case and a prefix-less stream element are fine.
	s := NewScanner(strings.NewReader(`<?xml version="1.0" encoding="UTF-8"?><stream xmlns='http://etherx.jabber.org/streams'><a/></stream>`), 0)
	if _, err := s.Header(); err != nil {
		t.Fatal(err)
	}
	if el, err := s.Next(); err != nil || el.Name != "a" {
		t.Fatal(el, err)
	}
	if _, err := s.Next(); !errors.Is(err, ErrStreamEnd) {
		t.Fatal(err)
	}
}

func FuzzScanner(f *testing.F) {
	f.Add(`<message to='a'><body>x</body></message>`)
	f.Add(`<iq><q xmlns='u' a="&amp;&#x41;"/></iq>`)
	f.Add(`<a><![CDATA[x]]></a>`)
	f.Fuzz(func(t *testing.T, in string) {
		s := NewScanner(strings.NewReader(header+in), 4096)
		if _, err := s.Header(); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 50; i++ {
			el, err := s.Next()
			if err != nil {
				return
			}
			// Whatever the scanner accepts, encoding/xml must accept too.
			d := xml.NewDecoder(strings.NewReader(el.Raw))
			d.Strict = true
			for {
				_, err := d.RawToken()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("accepted %q but encoding/xml says %v", el.Raw, err)
				}
			}
		}
	})
}

func BenchmarkScanMessage(b *testing.B) {
	msg := `<message to='bob@example.org/phone' type='chat' id='abc123'><body>Hello Bob, how are you doing today?</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>`
	in := strings.Repeat(msg, 1000)
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	r := strings.NewReader("")
	s := NewScanner(r, 0)
	for i := 0; i < b.N; i++ {
		if i%1000 == 0 {
			r.Reset(in)
			s.Reset(r)
			s.streamName = "stream:stream"
		}
		if _, err := s.Next(); err != nil {
			b.Fatal(err)
		}
	}
}

func TestStreamPrefixes(t *testing.T) {
	in := `<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback'>` +
		`<db:result from='a' to='b'>k</db:result><message><db:x/></message>`
	s := NewScanner(strings.NewReader(in), 0)
	if _, err := s.Header(); err != nil {
		t.Fatal(err)
	}
	el, err := s.Next()
	if err != nil || el.Name != "db:result" {
		t.Fatalf("db:result: %v %v", el, err)
	}
	// Inside a stanza, the stream's declarations do not count: the stanza
	// is routed without them.
	if _, err := s.Next(); err != ErrBadPrefix {
		t.Errorf("db: inside a stanza: %v", err)
	}
}

// Issue 15, 1: start tags that Namespaces in XML 1.0 forbids were accepted
// and relayed byte for byte; a namespace-aware recipient (expat) then
// dropped its connection.
func TestNamespaceErrors(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     error
	}{
		{"xml prefix rebound", `<message xmlns:xml='urn:other'/>`, ErrNamespace},
		{"xml namespace on other prefix", `<message xmlns:x='http://www.w3.org/XML/1998/namespace'/>`, ErrNamespace},
		{"xml namespace as default", `<message><a xmlns='http://www.w3.org/XML/1998/namespace'/></message>`, ErrNamespace},
		{"xml namespace escaped", `<message xmlns:x='http://www.w3.org/XML/1998/namespac&#x65;'/>`, ErrNamespace},
		{"prefix undeclared", `<message xmlns:p=''/>`, ErrNamespace},
		{"prefix undeclared in child", `<message><a xmlns:p='u'><b xmlns:p=''/></a></message>`, ErrNamespace},
		{"xmlns declared", `<message xmlns:xmlns='urn:x'/>`, ErrNamespace},
		{"xmlns declared to its namespace", `<message xmlns:xmlns='http://www.w3.org/2000/xmlns/'/>`, ErrNamespace},
		{"xmlns namespace bound", `<message xmlns:p='http://www.w3.org/2000/xmlns/'/>`, ErrNamespace},
		{"xmlns namespace as default", `<message xmlns='http://www.w3.org/2000/xmlns/'/>`, ErrNamespace},
		{"element prefix xmlns", `<message><xmlns:a/></message>`, ErrNamespace},
		{"same expanded name", `<message xmlns:a='u' xmlns:b='u' a:z='1' b:z='2'/>`, ErrNamespace},
		{"same expanded name escaped", `<message xmlns:a='u' xmlns:b='&#x75;' a:z='1' b:z='2'/>`, ErrNamespace},
		{"same expanded name inherited", `<message xmlns:a='u'><x xmlns:b='u' a:z='1' b:z='2'/></message>`, ErrNamespace},
		{"two colons", `<message><a:b:c xmlns:a='u'/></message>`, ErrNamespace},
		{"two colons attr", `<message xmlns:a='u' a:b:c='1'/>`, ErrNamespace},
		{"empty prefix", `<message><:a/></message>`, ErrNamespace},
		{"empty prefix attr", `<message :a='1'/>`, ErrNamespace},
		{"empty local", `<message><a: xmlns:a='u'/></message>`, ErrNamespace},
		{"empty local attr", `<message xmlns:a='u' a:='1'/>`, ErrNamespace},
		{"empty declared prefix", `<message xmlns:='u'/>`, ErrNamespace},
		{"local not an NCName", `<message xmlns:a='u' a:1='1'/>`, ErrNamespace},
		{"undeclared attr prefix", `<message p:a='1'/>`, ErrBadPrefix},
		{"undeclared prefix on top", `<p:message/>`, ErrBadPrefix},
		{"dup qualified attr", `<message xmlns:a='u' a:z='1' a:z='2'/>`, ErrNotWellFormed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := scanAll(t, header+tc.in, nil)
			if err != tc.want {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
			if !errors.Is(err, tc.want) {
				t.Errorf("errors.Is(%v, %v) is false", err, tc.want)
			}
		})
	}
	// What the rules allow.
	for _, in := range []string{
		`<message xmlns:xml='http://www.w3.org/XML/1998/namespace' xml:lang='en'/>`,
		`<message xml:lang='en'><xml:a/></message>`,
		`<message xmlns:a='u' xmlns:b='v' a:z='1' b:z='2' z='3'/>`,
		`<message xmlns:a='u'><x xmlns:a='v' a:z='1'><y xmlns:b='u' a:z='1' b:z='2'/></x></message>`,
		`<message><a xmlns=''/></message>`,
		`<message xmlnsx='1' xmlx:a='2' xmlns:xmlx='u'/>`,
	} {
		if _, err := scanAll(t, header+in+`</stream:stream>`, nil); !errors.Is(err, ErrStreamEnd) {
			t.Errorf("%s: %v", in, err)
		}
	}
}

func TestHeaderNamespaceErrors(t *testing.T) {
	const ns = ` xmlns:stream='http://etherx.jabber.org/streams'`
	for _, tc := range []struct {
		name, in string
		want     error
	}{
		{"xml rebound", `<stream:stream` + ns + ` xmlns:xml='urn:other'>`, ErrNamespace},
		{"undeclared", `<stream:stream` + ns + ` xmlns:p=''>`, ErrNamespace},
		{"xmlns declared", `<stream:stream` + ns + ` xmlns:xmlns='urn:x'>`, ErrNamespace},
		{"same expanded name", `<stream:stream` + ns + ` xmlns:a='u' xmlns:b='u' a:z='1' b:z='2'>`, ErrNamespace},
		{"two colons", `<stream:stream:x` + ns + `>`, ErrNamespace},
		{"undeclared attr prefix", `<stream:stream` + ns + ` p:a='1'>`, ErrBadPrefix},
		{"undeclared stream prefix", `<stream:stream xmlns='jabber:client'>`, ErrBadPrefix},
		{"too many attributes", `<stream:stream` + ns + strings.Repeat(` a='1'`, 1) + attrs(DefaultMaxAttrs) + `>`, ErrTooManyAttrs},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewScanner(strings.NewReader(tc.in), 0).Header()
			if err != tc.want {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

// attrs returns n distinct attributes.
func attrs(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, " a%d='%d'", i, i)
	}
	return b.String()
}

// Issue 15, 3: a stream header of 256 KiB with some 37,000 attributes cost
// seconds of CPU (the duplicate check compared every pair). The attribute
// limit stops it after DefaultMaxAttrs attributes, and the scanner reads no
// more of it than the first read brought.
func TestHeaderManyAttrs(t *testing.T) {
	in := `<stream:stream xmlns:stream='http://etherx.jabber.org/streams'` + attrs(37000) + `>`
	if len(in) < 256<<10 {
		t.Fatalf("header of %d bytes", len(in))
	}
	r := &countReader{r: strings.NewReader(in)}
	s := NewScanner(r, len(in))
	if _, err := s.Header(); err != ErrTooManyAttrs {
		t.Fatalf("err = %v, want ErrTooManyAttrs", err)
	}
	if got := len(s.attrTmp); got != DefaultMaxAttrs {
		t.Errorf("scanned %d attributes, want the limit %d", got, DefaultMaxAttrs)
	}
	if r.n > bufSize {
		t.Errorf("read %d bytes, want at most one buffer (%d)", r.n, bufSize)
	}
	// With the limit raised, the same header is scanned whole and its
	// attributes are all checked for duplicates.
	s = NewScanner(strings.NewReader(in), len(in))
	s.SetMaxAttrs(40000)
	if _, err := s.Header(); err != nil {
		t.Fatal(err)
	}
	dup := `<stream:stream xmlns:stream='http://etherx.jabber.org/streams'` + attrs(5000) + ` a4711='x'>`
	s = NewScanner(strings.NewReader(dup), 0)
	s.SetMaxAttrs(40000)
	if _, err := s.Header(); err != ErrNotWellFormed {
		t.Errorf("duplicate among 5001 attributes: %v, want ErrNotWellFormed", err)
	}
}

// The attribute limit applies to every start tag of an element, not only
// the top one, and SetMaxAttrs changes it for the next elements.
func TestMaxAttrs(t *testing.T) {
	in := header + `<message><x` + attrs(3) + `/></message><message` + attrs(2) + `/>`
	s := NewScanner(strings.NewReader(in), 0)
	if _, err := s.Header(); err != nil {
		t.Fatal(err)
	}
	s.SetMaxAttrs(2)
	if _, err := s.Next(); err != ErrTooManyAttrs {
		t.Fatalf("3 attributes on a child with a limit of 2: %v", err)
	}
	s = NewScanner(strings.NewReader(in), 0)
	if _, err := s.Header(); err != nil {
		t.Fatal(err)
	}
	s.SetMaxAttrs(3)
	for range 2 {
		if _, err := s.Next(); err != nil {
			t.Fatal(err)
		}
	}
}

// Many prefixes in scope and many attributes per tag: the index and the
// hash table find the same clashes as the pairwise checks.
func TestManyDeclarations(t *testing.T) {
	var b strings.Builder
	b.WriteString(`<message>`)
	for i := range 20 {
		fmt.Fprintf(&b, `<e%d xmlns:p%d='u%d'>`, i, i, i)
	}
	// p3 and p13 are different namespaces; q is p7's namespace again.
	b.WriteString(`<x xmlns:q='u7' p3:z='1' p13:z='2' q:y='1' p7:w='1'` + attrs(10) + `/>`)
	for i := 19; i >= 0; i-- {
		fmt.Fprintf(&b, `</e%d>`, i)
	}
	b.WriteString(`</message>`)
	ok := b.String()
	if _, err := Parse([]byte(ok), 0); err != nil {
		t.Fatalf("%v", err)
	}
	bad := strings.Replace(ok, `p7:w='1'`, `p7:y='1'`, 1)
	if _, err := Parse([]byte(bad), 0); err != ErrNamespace {
		t.Errorf("q:y and p7:y, same namespace: %v, want ErrNamespace", err)
	}
	// Shadowing: p5 rebound to u7 inside, so p5:y and q:y clash there.
	shadow := strings.Replace(ok, `<x xmlns:q='u7'`, `<x xmlns:q='u7' xmlns:p5='u7' p5:y='2'`, 1)
	if _, err := Parse([]byte(shadow), 0); err != ErrNamespace {
		t.Errorf("p5 rebound: %v, want ErrNamespace", err)
	}
	// After the inner elements end, their declarations are gone.
	out := strings.Replace(ok, `</message>`, `<p19:a/></message>`, 1)
	if _, err := Parse([]byte(out), 0); err != ErrBadPrefix {
		t.Errorf("prefix out of scope: %v, want ErrBadPrefix", err)
	}
	// With the index on, a shadowing declaration ends with its element
	// (p is u again for g), and the next top-level element starts with
	// nothing declared.
	var d strings.Builder
	d.WriteString(`<message xmlns:p='u'>`)
	for i := range 10 {
		fmt.Fprintf(&d, `<e%d xmlns:s%d='w'>`, i, i)
	}
	d.WriteString(`<f xmlns:p='v' p:z='1'/><g xmlns:q='v' p:z='1' q:z='2'/>`)
	for i := 9; i >= 0; i-- {
		fmt.Fprintf(&d, `</e%d>`, i)
	}
	d.WriteString(`</message><message><s3:a/></message>`)
	sc := NewScanner(strings.NewReader(header+d.String()), 0)
	if _, err := sc.Header(); err != nil {
		t.Fatal(err)
	}
	if _, err := sc.Next(); err != nil {
		t.Errorf("shadowed prefix restored: %v", err)
	}
	if _, err := sc.Next(); err != ErrBadPrefix {
		t.Errorf("declarations of the previous element: %v, want ErrBadPrefix", err)
	}
}

// Issue 15, 5: a second stream header in the stream was taken for an
// element, whose end the scanner then waited for; the stream hung.
func TestNestedStreamHeader(t *testing.T) {
	for _, tc := range []struct{ name, hdr, in string }{
		{"prefixed", header, `<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='example.org' version='1.0'>`},
		{"prefix from the header", header, `<stream:stream to='example.org'>`},
		{"other prefix", header, `<s:stream xmlns:s='http://etherx.jabber.org/streams'>`},
		{"default namespace", header, `<stream xmlns='http://etherx.jabber.org/streams'>`},
		{"self-closed", header, `<stream:stream/>`},
		{"unprefixed header", `<stream xmlns='http://etherx.jabber.org/streams' to='example.org'>`, `<stream>`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// No end tag follows: the scanner must decide at the start
			// tag (waiting for more, it would get io.ErrUnexpectedEOF).
			s := NewScanner(strings.NewReader(tc.hdr+`<presence/>`+tc.in), 0)
			if _, err := s.Header(); err != nil {
				t.Fatal(err)
			}
			if el, err := s.Next(); err != nil || el.Name != "presence" {
				t.Fatalf("%v %v", el, err)
			}
			if _, err := s.Next(); err != ErrNestedStream {
				t.Fatalf("err = %v, want ErrNestedStream", err)
			}
		})
	}
	// Elements named stream in another namespace are not headers, and
	// Parse, with no stream around, reads a header as an element (the
	// WebSocket and BOSH code parse the server's own headers so).
	in := header + `<stream xmlns='urn:other'/><x:stream xmlns:x='urn:other'/></stream:stream>`
	if _, err := scanAll(t, in, nil); err != ErrStreamEnd {
		t.Errorf("stream elements in other namespaces: %v", err)
	}
	if _, err := Parse([]byte(`<stream:stream xmlns:stream='http://etherx.jabber.org/streams'/>`), 0); err != nil {
		t.Errorf("Parse: %v", err)
	}
}

type countReader struct {
	r io.Reader
	n int
}

func (r *countReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.n += n
	return n, err
}

// The size limit holds while the header is read: a header larger than the
// limit is refused once the limit is passed, not up to 4 KiB later.
func TestHeaderLimitWhileReading(t *testing.T) {
	const max = 8 << 10
	in := `<stream:stream xmlns:stream='http://etherx.jabber.org/streams' x='` + strings.Repeat("a", 64<<10) + `'>`
	r := &countReader{r: iotest.OneByteReader(strings.NewReader(in))}
	if _, err := NewScanner(r, max).Header(); err != ErrTooLarge {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
	if r.n > max+1 {
		t.Errorf("read %d bytes of a header with a limit of %d", r.n, max)
	}
	r = &countReader{r: strings.NewReader(in)}
	if _, err := NewScanner(r, max).Header(); err != ErrTooLarge {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
	if r.n > max+1 {
		t.Errorf("read %d bytes of a header with a limit of %d", r.n, max)
	}
}

// BenchmarkManyAttrs scans one start tag with n attributes; ns/attr stays
// flat as n grows when the duplicate check is linear (issue 15, 3: it
// compared every pair, so ns/attr grew with n).
func BenchmarkManyAttrs(b *testing.B) {
	for _, n := range []int{4, 8, 16, 100, 1000, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			in := []byte(`<a` + attrs(n) + `/>`)
			r := bytes.NewReader(in)
			s := NewScanner(r, 1<<20)
			s.SetMaxAttrs(n)
			b.ReportAllocs()
			b.SetBytes(int64(len(in)))
			for b.Loop() {
				r.Reset(in)
				s.Reset(r)
				if _, err := s.Next(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/attr")
		})
	}
}

// TestParseReusesBuffer: Parse gives its read buffer back to the pool;
// what an earlier Parse returned stays intact when a later one reuses it.
func TestParseReusesBuffer(t *testing.T) {
	a, err := Parse([]byte(`<message to='a@x'><body>first</body></message>`), 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if _, err := Parse(fmt.Appendf(nil, `<iq id='%d' type='get'><query xmlns='zzzzzzzzzzzzzzzzzzzzzzzzzzzz'/></iq>`, i), 0); err != nil {
			t.Fatal(err)
		}
	}
	if a.Raw != `<message to='a@x'><body>first</body></message>` || a.Name != "message" || len(a.Attrs) != 1 || a.Attrs[0].Value != "a@x" {
		t.Fatalf("first element changed: %q %q %+v", a.Raw, a.Name, a.Attrs)
	}
}
