package treff_test

import (
	"bytes"
	"encoding/xml"
	"io"
	"strings"
	"testing"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/stanza"
)

// FuzzNewStanza checks stanza parsing through NewStanza, the exported
// entry point that turns serialised XML into a Stanza (the same
// stanzaFrom that client streams use). For every accepted stanza:
//   - Kind is the element's name, Type and ID are its attributes, To and
//     From are its parsed addresses, as encoding/xml reads the same bytes;
//   - Payload is the first child, as encoding/xml reads it;
//   - the addressing survives re-serialisation: WithAddresses, AppendError
//     and (for an IQ) AppendResult produce stanzas that NewStanza accepts
//     with the same (or swapped) to/from and the same type and id;
//   - Rewrite with the same bytes succeeds, and AddChild keeps the kind
//     and the addresses.
func FuzzNewStanza(f *testing.F) {
	for _, s := range []string{
		`<message from='a@b/c' to='d@e' type='chat' id='1'><body>hi</body></message>`,
		`<presence from='a@b/c' id='2'/>`,
		`<iq type='get' id='p&amp;1' to='example.org'><ping xmlns='urn:xmpp:ping'/></iq>`,
		`<iq type="set" id="x"><query xmlns="jabber:iq:roster"><item jid="x@y"/></query></iq>`,
		`<message xmlns='jabber:client' to='Alice@Example.ORG/Res'/>`,
		`<message to='a@b' xmlns='jabber:server'/>`,
		`<message to='@b'/>`,
		`<presence><x:c xmlns:x='urn:x'/></presence>`,
		`<iq id='a&#9;b' type='get'/>`,
		"<presence/>\n",
		`<foo/>`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := treff.NewStanza(data)
		if err != nil {
			return
		}
		if st.String() != string(data) || !bytes.Equal(st.Raw(), data) {
			t.Fatalf("Raw %q, input %q", st.Raw(), data)
		}
		x := decodeStanza(t, data)
		switch x.name {
		case "message":
			if st.Kind != treff.KindMessage {
				t.Fatalf("%q: kind %v", data, st.Kind)
			}
		case "presence":
			if st.Kind != treff.KindPresence {
				t.Fatalf("%q: kind %v", data, st.Kind)
			}
		case "iq":
			if st.Kind != treff.KindIQ {
				t.Fatalf("%q: kind %v", data, st.Kind)
			}
		default:
			t.Fatalf("NewStanza accepted a <%s/>: %q", x.name, data)
		}
		x.ns = x.attr["xmlns"]
		if x.ns != "" && x.ns != "jabber:client" {
			t.Fatalf("NewStanza accepted the namespace %q: %q", x.ns, data)
		}
		// encoding/xml does not normalise whitespace in attribute values
		// (XML 1.0 section 3.3.3) and cannot tell a literal tab from
		// &#9;: compare with both normalised.
		if normSpace(st.Type) != normSpace(x.attr["type"]) || normSpace(st.ID) != normSpace(x.attr["id"]) {
			t.Fatalf("%q: type %q id %q, encoding/xml %q %q", data, st.Type, st.ID, x.attr["type"], x.attr["id"])
		}
		for _, a := range []struct {
			name string
			got  jid.JID
		}{{"to", st.To}, {"from", st.From}} {
			v, ok := st.Attr(a.name)
			if xv, xok := x.attr[a.name]; xok != ok || normSpace(xv) != normSpace(v) {
				t.Fatalf("%q: %s %q, encoding/xml %q", data, a.name, v, xv)
			}
			want := jid.JID{}
			if ok {
				if want, err = jid.Parse(v); err != nil {
					t.Fatalf("%q: NewStanza accepted %s=%q: %v", data, a.name, v, err)
				}
			}
			if !a.got.Equal(want) {
				t.Fatalf("%q: %s %q, want %q", data, a.name, a.got, want)
			}
		}
		if x.hasChild {
			if st.Payload != (xml.Name{Space: x.childNS, Local: x.child.Local}) {
				t.Fatalf("%q: payload %v, encoding/xml %v in %q", data, st.Payload, x.child, x.childNS)
			}
		} else if st.Payload != (xml.Name{}) {
			t.Fatalf("%q: payload %v without a child", data, st.Payload)
		}

		// Re-serialisation keeps the addressing.
		same := st.WithAddresses(st.From, st.To)
		again, err := treff.NewStanza(same.Raw())
		if err != nil {
			t.Fatalf("WithAddresses of %q = %q: %v", data, same.Raw(), err)
		}
		sameAddressing(t, "WithAddresses", data, again, st.Kind, st.From, st.To, st.Type, st.ID)
		if again.Payload != st.Payload || again.Inner() != st.Inner() {
			t.Fatalf("WithAddresses of %q = %q changed the content", data, same.Raw())
		}

		{
			e := treff.AppendError(nil, st, stanza.BadRequest)
			es, err := treff.NewStanza(e)
			if err != nil {
				t.Fatalf("AppendError for %q = %q: %v", data, e, err)
			}
			sameAddressing(t, "AppendError", data, es, st.Kind, st.To, st.From, "error", st.ID)
			if st.Kind == treff.KindIQ {
				r := treff.AppendResult(nil, st, []byte(`<q xmlns='urn:fuzz'/>`))
				rs, err := treff.NewStanza(r)
				if err != nil {
					t.Fatalf("AppendResult for %q = %q: %v", data, r, err)
				}
				sameAddressing(t, "AppendResult", data, rs, st.Kind, st.To, st.From, "result", st.ID)
				if rs.Payload != (xml.Name{Space: "urn:fuzz", Local: "q"}) {
					t.Fatalf("AppendResult for %q = %q: payload %v", data, r, rs.Payload)
				}
			}
		}

		if err := st.Rewrite(data); err != nil {
			t.Fatalf("Rewrite of %q with itself: %v", data, err)
		}
		trimmed := st
		if err := trimmed.AddChild([]byte(`<added xmlns='urn:fuzz'/>`)); err != nil {
			t.Fatalf("AddChild to %q: %v", data, err)
		}
		sameAddressing(t, "AddChild", data, trimmed, st.Kind, st.From, st.To, st.Type, st.ID)
		if !x.hasChild && trimmed.Payload != (xml.Name{Space: "urn:fuzz", Local: "added"}) {
			t.Fatalf("AddChild to %q = %q: payload %v", data, trimmed.Raw(), trimmed.Payload)
		}
	})
}

func sameAddressing(t *testing.T, what string, in []byte, st *treff.Stanza, kind treff.Kind, from, to jid.JID, typ, id string) {
	t.Helper()
	if st.Kind != kind || !st.From.Equal(from) || !st.To.Equal(to) || st.Type != typ || st.ID != id {
		t.Fatalf("%s for %q = %q: kind %v from %q to %q type %q id %q; want %v %q %q %q %q",
			what, in, st.Raw(), st.Kind, st.From, st.To, st.Type, st.ID, kind, from, to, typ, id)
	}
}

// decoded is what encoding/xml reads from a stanza.
type decoded struct {
	name, ns string
	attr     map[string]string
	hasChild bool
	child    xml.Name // Local without a prefix
	childNS  string   // the namespace declared for the child (its xmlns, or its prefix's)
}

func decodeStanza(t *testing.T, data []byte) decoded {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(data))
	d.Strict = true
	x := decoded{attr: map[string]string{}}
	depth := 0
	for {
		tok, err := d.RawToken()
		if err == io.EOF {
			return x
		}
		if err != nil {
			t.Fatalf("NewStanza accepted %q, encoding/xml says %v", data, err)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			switch depth {
			case 0:
				x.name = tok.Name.Local
				if tok.Name.Space != "" {
					x.name = tok.Name.Space + ":" + tok.Name.Local
				}
				for _, a := range tok.Attr {
					n := a.Name.Local
					if a.Name.Space != "" {
						n = a.Name.Space + ":" + n
					}
					x.attr[n] = a.Value
				}
			case 1:
				if !x.hasChild {
					x.hasChild = true
					x.child = xml.Name{Local: tok.Name.Local}
					prefix := tok.Name.Space
					found := false
					for _, a := range tok.Attr {
						if prefix == "" && a.Name.Space == "" && a.Name.Local == "xmlns" ||
							prefix != "" && a.Name.Space == "xmlns" && a.Name.Local == prefix {
							x.childNS, found = a.Value, true
						}
					}
					if !found && prefix != "" {
						x.childNS = x.attr["xmlns:"+prefix]
					}
				}
			}
			depth++
		case xml.EndElement:
			depth--
		}
	}
}

func normSpace(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\t' || r == '\n' || r == '\r' {
			return ' '
		}
		return r
	}, s)
}
