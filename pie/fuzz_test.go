package pie_test

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"io"
	"testing"

	"github.com/treff-im/treff/pie"
	"github.com/treff-im/treff/storage/memstore"
)

// wellFormed reports whether doc is one well-formed element.
func wellFormed(doc []byte) error {
	d := xml.NewDecoder(bytes.NewReader(doc))
	d.Strict = true
	depth, roots := 0, 0
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			if roots != 1 {
				return errors.New("not one root element")
			}
			return nil
		}
		if err != nil {
			return err
		}
		switch tok.(type) {
		case xml.StartElement:
			if depth == 0 {
				roots++
			}
			depth++
		case xml.EndElement:
			depth--
		}
	}
}

// FuzzImport: whatever a file holds, Decode does not panic; every element
// it copies (vCard, private XML, PEP payloads, messages) is well-formed on
// its own; and what Import stored, Export writes as a document Decode
// reads again with the same users.
func FuzzImport(f *testing.F) {
	for _, s := range []string{
		`<server-data xmlns='urn:xmpp:pie:0'><host jid='example.org'><user name='a' password='pw'><query xmlns='jabber:iq:roster'><item jid='b@example.org' subscription='both' name='B'><group>G</group></item></query><presence type='subscribe' from='c@example.org'/><vCard xmlns='vcard-temp'><FN xml:lang='en'>A &amp; B</FN></vCard></user></host></server-data>`,
		`<server-data xmlns='urn:xmpp:pie:0'><host jid='example.org'><user name='a'><query xmlns='jabber:iq:private'><p:x xmlns:p='urn:p' xmlns:q='urn:q' q:attr='1'><p:y/><z xmlns=''/></p:x></query><offline-messages><message xmlns='jabber:client' to='a@example.org'><delay xmlns='urn:xmpp:delay' stamp='2026-01-01T00:00:00Z'/><body>hi</body></message></offline-messages></user></host></server-data>`,
		`<server-data xmlns='urn:xmpp:pie:0'><host jid='example.org'><user name='a'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='n'><item id='1'><x xmlns='urn:x'>t</x></item></items></pubsub></user></host><host jid='conference.example.org'><room xmlns='urn:xmpp:treff:pie:room:0' name='r' title='T'><affiliation jid='a@example.org' affiliation='owner'/></room></host></server-data>`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ctx := context.Background()
		var users []string
		err := pie.Decode(bytes.NewReader(data), pie.DecodeOptions{}, func(e pie.Entry) error {
			if e.User == nil {
				return nil
			}
			u := e.User
			docs := [][]byte{}
			if u.VCard != nil {
				docs = append(docs, u.VCard)
			}
			for _, d := range u.Private {
				docs = append(docs, d.Doc)
			}
			for _, n := range u.PEP {
				for _, it := range n.Items {
					if it.Payload != nil {
						docs = append(docs, it.Payload)
					}
				}
			}
			for _, m := range u.Offline {
				docs = append(docs, m.Stanza)
			}
			for _, d := range docs {
				if err := wellFormed(d); err != nil {
					t.Fatalf("copied element %q: %v", d, err)
				}
			}
			return nil
		})
		if err != nil {
			return
		}
		store := memstore.New()
		opts := pie.Options{Iterations: 1, RoomServices: []string{"conference.example.org"}}
		if _, err := pie.Import(ctx, store, bytes.NewReader(data), opts); err != nil {
			return
		}
		accts, _ := store.ListAccounts(ctx, "")
		var out bytes.Buffer
		if err := pie.Export(ctx, store, &out, pie.Filter{RoomServices: opts.RoomServices}); err != nil {
			t.Fatalf("export of an import: %v", err)
		}
		err = pie.Decode(bytes.NewReader(out.Bytes()), pie.DecodeOptions{}, func(e pie.Entry) error {
			if e.User != nil {
				users = append(users, e.User.JID)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("decoding the export of an import: %v\n%s", err, out.Bytes())
		}
		if len(users) != len(accts) {
			t.Fatalf("export has %d users, the store %d", len(users), len(accts))
		}
	})
}
