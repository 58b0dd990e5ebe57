package mam

import (
	"testing"

	"mellium.im/xmpp/jid"
)

func TestMayClaim(t *testing.T) {
	owner := jid.MustParse("alice@localhost")
	for _, tc := range []struct {
		raw  string
		want bool
	}{
		{`<message type='groupchat'><body>x</body><stanza-id xmlns='urn:xmpp:sid:0' by='room@conference.localhost' id='1'/></message>`, false},
		{`<message><stanza-id xmlns='urn:xmpp:sid:0' by='alice@localhost' id='1'/></message>`, true},
		{`<message><stanza-id xmlns='urn:xmpp:sid:0' by="Alice@LocalHost" id='1'/></message>`, true},
		{`<message><stanza-id xmlns='urn:xmpp:sid:0' id='1' by='alice&#64;localhost'/></message>`, true},
		{`<message><stanza-id xmlns='urn:xmpp:sid:0' xby='alice@localhost' by='room@x' id='1'/></message>`, false},
		{`<message><stanza-id xmlns='urn:xmpp:sid:0' id='1'/></message>`, false},
		{`<message><body>no ids</body></message>`, false},
		{`<message><x:stanza-id xmlns:x='urn:xmpp:sid:0' by='ALICE@localhost' id='1'/></message>`, true},
	} {
		if got := mayClaim([]byte(tc.raw), owner); got != tc.want {
			t.Errorf("mayClaim(%s) = %v, want %v", tc.raw, got, tc.want)
		}
	}
}

// TestClaims checks that claims, with its shortcut for plain bare JIDs,
// answers as parsing every 'by' does.
func TestClaims(t *testing.T) {
	owner := jid.MustParse("alice@localhost")
	local := func(d string) bool { return d == "localhost" || d == "example.org" }
	parsed := func(by string, local func(string) bool) bool {
		j, err := jid.Parse(by)
		return err == nil && (j.Equal(owner) || local != nil && j.Localpart() != "" && j.Resourcepart() == "" && local(j.Domainpart()))
	}
	for _, by := range []string{
		"alice@localhost", "Alice@localhost", "alice@LOCALHOST", "alice@localhost.", "bob@localhost",
		"bob@example.org", "bob@example.org/phone", "localhost", "room@conference.localhost",
		"bob@xn--bcher-kva.example", "bob@-localhost", "bob@localhost-", "b.o_b-1@localhost", "@localhost",
		"bob@", "bob@@localhost", "bob@local..host", "bob@127.0.0.1", "bob@[::1]", "ßob@localhost",
		"alice@xn--localhost", "bob@exa_mple.org", "bob@example.org@localhost", "",
	} {
		for _, l := range []func(string) bool{nil, local} {
			if got, want := claims(by, owner, owner.String(), l), parsed(by, l); got != want {
				t.Errorf("claims(%q, local %v) = %v, parsing says %v", by, l != nil, got, want)
			}
			if got, want := claims(by, owner, "", l), parsed(by, l); got != want {
				t.Errorf("claims(%q, no owner string, local %v) = %v, parsing says %v", by, l != nil, got, want)
			}
		}
	}
}
