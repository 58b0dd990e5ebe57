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
