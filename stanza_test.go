package treff_test

import (
	"testing"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
)

func TestWithAddresses(t *testing.T) {
	st, err := treff.NewStanza([]byte(`<presence from='a@b/c' to='x@y' id='1'><show>away</show></presence>`))
	if err != nil {
		t.Fatal(err)
	}
	c := st.WithAddresses(jid.MustParse("a@b/c"), jid.MustParse("d@e"))
	if got, want := string(c.Raw()), `<presence from='a@b/c' to='d@e' id='1'><show>away</show></presence>`; got != want {
		t.Errorf("got %s want %s", got, want)
	}
	if c.To.String() != "d@e" || st.To.String() != "x@y" {
		t.Error("addresses not copied")
	}
	c = st.WithAddresses(jid.MustParse("a@b"), jid.JID{})
	if got, want := string(c.Raw()), `<presence from='a@b' id='1'><show>away</show></presence>`; got != want {
		t.Errorf("got %s want %s", got, want)
	}
}

func TestDecodePayload(t *testing.T) {
	st, err := treff.NewStanza([]byte("<iq type='set' id='1'><query xmlns='urn:example' a='x'><item>one</item></query></iq>"))
	if err != nil {
		t.Fatal(err)
	}
	var q struct {
		A    string   `xml:"a,attr"`
		Item []string `xml:"item"`
	}
	if err := st.DecodePayload(&q); err != nil || q.A != "x" || len(q.Item) != 1 || q.Item[0] != "one" {
		t.Errorf("DecodePayload: %+v %v", q, err)
	}
	empty, _ := treff.NewStanza([]byte("<iq type='get' id='2'/>"))
	if err := empty.DecodePayload(&q); err == nil {
		t.Error("DecodePayload of an empty IQ succeeded")
	}
}

func TestRewriteAndAddChild(t *testing.T) {
	st, err := treff.NewStanza([]byte(`<message from='a@b/c' to='d@e' id='1'><body>hi</body></message>`))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.AddChild([]byte(`<stanza-id xmlns='urn:xmpp:sid:0' by='d@e' id='x'/>`)); err != nil {
		t.Fatal(err)
	}
	if got, want := string(st.Raw()), `<message from='a@b/c' to='d@e' id='1'><body>hi</body><stanza-id xmlns='urn:xmpp:sid:0' by='d@e' id='x'/></message>`; got != want {
		t.Errorf("got %s want %s", got, want)
	}
	empty, _ := treff.NewStanza([]byte(`<presence from='a@b/c' id='2'/>`))
	if err := empty.AddChild([]byte(`<x xmlns='vcard-temp:x:update'><photo/></x>`)); err != nil {
		t.Fatal(err)
	}
	if got, want := string(empty.Raw()), `<presence from='a@b/c' id='2'><x xmlns='vcard-temp:x:update'><photo/></x></presence>`; got != want {
		t.Errorf("got %s want %s", got, want)
	}
	if empty.Payload.Space != "vcard-temp:x:update" {
		t.Errorf("payload not re-read: %v", empty.Payload)
	}
	before := string(st.Raw())
	for _, bad := range []string{
		`<message from='a@b/c' to='other@e' id='1'/>`,
		`<presence from='a@b/c' to='d@e' id='1'/>`,
		`<message from='a@b/c' to='d@e'><body>`,
	} {
		if err := st.Rewrite([]byte(bad)); err == nil {
			t.Errorf("Rewrite(%s) succeeded", bad)
		}
	}
	if string(st.Raw()) != before {
		t.Error("a failed Rewrite changed the stanza")
	}
}
