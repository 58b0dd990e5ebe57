package treff_test

import (
	"context"
	"encoding/xml"
	"testing"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/stanza"
)

// TestPrefixedPayloadRouted checks that an IQ whose payload is written
// with a prefix reaches the handler of its namespace (it was answered
// with service-unavailable: the namespace was taken from xmlns only).
func TestPrefixedPayloadRouted(t *testing.T) {
	ts := newTestServer(t, func(s *treff.Server) {
		s.Modules = []treff.Module{moduleFunc(func(r *treff.Registry) {
			r.HandleIQ("urn:example:p", treff.IQHandlerFunc(func(ctx context.Context, iq *treff.Stanza) ([]byte, error) {
				return []byte("<ok xmlns='urn:example:p'/>"), nil
			}))
		})}
	})
	c := ts.Login(t, "alice", "alicepw", "r")
	c.Send("<iq type='get' id='p1' to='localhost'><p:q xmlns:p='urn:example:p'/></iq>")
	c.Expect(`<iq type='result' id='p1'[^>]*><ok xmlns='urn:example:p'/></iq>`)
	c.Send("<iq type='get' id='p2' to='localhost' xmlns:p='urn:example:p'><p:q/></iq>")
	c.Expect(`<iq type='result' id='p2'[^>]*><ok xmlns='urn:example:p'/></iq>`)
}

// TestStanzaFixes covers two defects the stanza fuzz target found.
func TestStanzaFixes(t *testing.T) {
	// An id with a tab, newline or carriage return comes back intact.
	st, err := treff.NewStanza([]byte("<iq type='get' id='a&#9;b&#xA;c&#13;' to='x@y'><q xmlns='u'/></iq>"))
	if err != nil {
		t.Fatal(err)
	}
	e, err := treff.NewStanza(treff.AppendError(nil, st, stanza.BadRequest))
	if err != nil {
		t.Fatal(err)
	}
	if e.ID != "a\tb\nc\r" {
		t.Errorf("error reply's id = %q, want %q", e.ID, "a\tb\nc\r")
	}
	// AddChild on a stanza read with trailing white space (it panicked).
	p, err := treff.NewStanza([]byte("<presence/>\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AddChild([]byte("<x xmlns='urn:x'/>")); err != nil {
		t.Fatal(err)
	}
	if p.String() != "<presence><x xmlns='urn:x'/></presence>" || p.Payload != (xml.Name{Space: "urn:x", Local: "x"}) {
		t.Errorf("AddChild gave %q with payload %v", p, p.Payload)
	}
}
