package websocket

import (
	"bytes"
	"encoding/xml"
	"io"
	"strings"
	"testing"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/internal/xmlscan"
)

// FuzzTranslateIn checks the RFC 7395 framing of a client's message:
//   - it becomes the stream's closing tag only if it is <close/> in the
//     framing namespace;
//   - it becomes a stream header only if it is <open/> in the framing
//     namespace, and then the header is one the scanner accepts, with the
//     <open/>'s attributes;
//   - anything else is passed on unchanged, and an <open/> or <close/> in
//     the framing namespace is never passed on unchanged.
func FuzzTranslateIn(f *testing.F) {
	for _, s := range []string{
		`<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='example.org' version='1.0' xml:lang='en'/>`,
		` <close xmlns="urn:ietf:params:xml:ns:xmpp-framing"/> `,
		`<closed xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>`,
		`<opener xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='example.org'/>`,
		`<open xmlns='urn:other' to='example.org'/>`,
		`<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='a&amp;b&apos;c'/>`,
		`<message to='a@b'><body>hi</body></message>`,
		`<open`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, msg string) {
		out := string(translateIn(msg))
		el, err := xmlscan.Parse([]byte(strings.TrimSpace(msg)), 0)
		framing := err == nil && el.NS() == NSFraming
		switch {
		case out == msg:
			if framing && (el.Name == "open" || el.Name == "close") {
				t.Fatalf("%q passed on as is", msg)
			}
		case out == "</stream:stream>":
			if !framing || el.Name != "close" {
				t.Fatalf("%q became the closing tag", msg)
			}
		default:
			if !framing || el.Name != "open" {
				t.Fatalf("%q became %q", msg, out)
			}
			hdr, err := xmlscan.NewScanner(strings.NewReader(out), 0).Header()
			if err != nil {
				for _, a := range el.Attrs {
					if strings.HasPrefix(a.Name, "xmlns:") || a.Name == "xml:lang" && strings.ContainsAny(a.Value, "\t\n\r") {
						return // the client's own declarations may clash with the header's
					}
				}
				t.Fatalf("%q became the header %q: %v", msg, out, err)
			}
			for _, a := range el.Attrs {
				if a.Name == "xmlns" || strings.HasPrefix(a.Name, "xmlns:") {
					continue
				}
				if v, _ := hdr.Attr(a.Name); v != a.Value && !strings.ContainsAny(a.Value, "\t\n\r") {
					t.Fatalf("%q became %q: %s=%q, want %q", msg, out, a.Name, v, a.Value)
				}
			}
		}
	})
}

// FuzzTranslateOut checks what the client receives for the server's
// stream: the header becomes an <open/> that translates back to a header
// with the same attributes; each element becomes a standalone document
// with the same name, attributes and content, in the namespace it had on
// the stream.
func FuzzTranslateOut(f *testing.F) {
	for _, s := range []string{
		`<message from='a@b/c' to='d@e' type='chat' id='1'><body>hi</body></message>`,
		`<iq type='result' id='x'/>`,
		`<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>`,
		`<stream:error><not-well-formed xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>`,
		`<presence xmlns='jabber:client'/>`,
		`<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>eA==</success>`,
		`<r xmlns='urn:xmpp:sm:3'/>`,
	} {
		f.Add(s, "example.org", "id1", "en")
	}
	f.Fuzz(func(t *testing.T, elem, from, id, lang string) {
		// The header, with values the server could write.
		if !strings.ContainsAny(from+id+lang, "\t\n\r") { // see FuzzTranslateIn
			hdr := "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' from='" +
				string(treff.AppendEscaped(nil, from)) + "' id='" + string(treff.AppendEscaped(nil, id)) +
				"' version='1.0' xml:lang='" + string(treff.AppendEscaped(nil, lang)) + "'>"
			want, err := xmlscan.NewScanner(strings.NewReader(hdr), 0).Header()
			if err == nil {
				open := translateOut([]byte(hdr))
				back := translateIn(string(open))
				got, err := xmlscan.NewScanner(bytes.NewReader(back), 0).Header()
				if err != nil {
					t.Fatalf("header %q became %q and %q: %v", hdr, open, back, err)
				}
				for _, a := range want.Attrs {
					if v, _ := got.Attr(a.Name); v != a.Value {
						t.Fatalf("header %q became %q and %q: %s=%q", hdr, open, back, a.Name, v)
					}
				}
			}
		}

		// An element the server's scanner accepts on a client stream.
		sc := xmlscan.NewScanner(strings.NewReader("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"+elem), 0)
		if _, err := sc.Header(); err != nil {
			t.Fatal(err)
		}
		el, err := sc.Next()
		if err != nil {
			return
		}
		out := translateOut([]byte(el.Raw))
		alone, err := xmlscan.Parse(out, 0)
		if err != nil {
			t.Fatalf("%q became %q: %v", el.Raw, out, err)
		}
		if alone.Name != el.Name || alone.Inner() != el.Inner() {
			t.Fatalf("%q became %q", el.Raw, out)
		}
		for _, a := range el.Attrs {
			if v, _ := alone.Attr(a.Name); v != a.Value {
				t.Fatalf("%q became %q: %s=%q, want %q", el.Raw, out, a.Name, v, a.Value)
			}
		}
		// The namespace of the root, as on the stream.
		wantNS := el.NS()
		switch {
		case strings.HasPrefix(el.Name, "stream:"):
			wantNS = "http://etherx.jabber.org/streams"
		case wantNS == "" && (el.Name == "message" || el.Name == "presence" || el.Name == "iq"):
			wantNS = "jabber:client"
		case wantNS == "":
			// The server writes no other unqualified element: what
			// it writes besides stanzas declares its namespace.
			return
		}
		if !strings.Contains(el.Name, ":") || strings.HasPrefix(el.Name, "stream:") {
			// encoding/xml normalises line ends in attribute values but
			// not whitespace (XML 1.0 3.3.3: a literal tab or line end
			// is a space, a character reference to one is not), which
			// the scanner does: compare both sides normalised.
			if got := rootNS(out); normalizeAttr(got) != normalizeAttr(wantNS) {
				t.Fatalf("%q became %q: namespace %q, want %q", el.Raw, out, got, wantNS)
			}
		}
	})
}

// normalizeAttr turns tabs and line ends into spaces, as XML 1.0's
// attribute-value normalisation (3.3.3) does with literal ones.
func normalizeAttr(v string) string {
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\t' || r == '\r' {
			return ' '
		}
		return r
	}, v)
}

func rootNS(doc []byte) string {
	d := xml.NewDecoder(bytes.NewReader(doc))
	for {
		tok, err := d.Token()
		if err == io.EOF || err != nil {
			return "(" + err.Error() + ")"
		}
		if s, ok := tok.(xml.StartElement); ok {
			return s.Name.Space
		}
	}
}

// Found by FuzzTranslateIn: any element of the framing namespace whose
// name began with "open" or "close" was taken for <open/>.
func TestTranslateInExactNames(t *testing.T) {
	for _, msg := range []string{
		`<closed xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>`,
		`<opener xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='example.org'/>`,
	} {
		if got := string(translateIn(msg)); got != msg {
			t.Errorf("translateIn(%q) = %q", msg, got)
		}
	}
}
