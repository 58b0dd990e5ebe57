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

func TestWithChild(t *testing.T) {
	sid := []byte(`<stanza-id xmlns='urn:xmpp:sid:0' by='a@localhost' id='X'/>`)
	for _, tc := range []struct {
		raw, want string
		ok        bool
	}{
		{`<message><body>x</body></message>`, `<message><body>x</body>` + string(sid) + `</message>`, true},
		{"<message><body>x</body></message> \n", `<message><body>x</body>` + string(sid) + `</message>`, true},
		{`<c:message xmlns:c='jabber:client'><c:body>x</c:body></c:message>`, `<c:message xmlns:c='jabber:client'><c:body>x</c:body>` + string(sid) + `</c:message>`, true},
		{`<message to='a@localhost'/>`, ``, false},
	} {
		got, ok := withChild([]byte(tc.raw), sid)
		if string(got) != tc.want || ok != tc.ok {
			t.Errorf("withChild(%q) = %q, %v; want %q, %v", tc.raw, got, ok, tc.want, tc.ok)
		}
	}
}
