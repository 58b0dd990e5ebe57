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
