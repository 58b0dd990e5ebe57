package xmlscan

import (
	"encoding/xml"
	"errors"
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
