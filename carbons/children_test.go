package carbons

import (
	"testing"

	"github.com/treff-im/treff"
)

// The eligibility rules of XEP-0280 section 6, message by message.
func TestEligible(t *testing.T) {
	for _, c := range []struct {
		typ, raw string
		want     bool
	}{
		{"chat", `<message type='chat'><body>hi</body></message>`, true},
		{"chat", `<message type='chat'/>`, true},
		{"chat", `<message type='chat'><active xmlns='http://jabber.org/protocol/chatstates'/></message>`, true},
		{"", `<message><body>hi</body></message>`, true},
		{"normal", `<message type='normal'><body>hi</body></message>`, true},
		{"normal", `<message type='normal'><subject>s</subject></message>`, false},
		{"", `<message/>`, false},
		{"", `<message><received xmlns='urn:xmpp:receipts' id='x'/></message>`, true},
		{"", `<message><displayed xmlns='urn:xmpp:chat-markers:0' id='x'/></message>`, true},
		{"", `<message><markable xmlns='urn:xmpp:chat-markers:0'/></message>`, false},
		{"", `<message><composing xmlns='http://jabber.org/protocol/chatstates'/></message>`, true},
		{"", `<message from='r@conference.example/n'><x xmlns='http://jabber.org/protocol/muc#user'/></message>`, true},
		// A body in another namespace is not a body.
		{"normal", `<message><body xmlns='urn:example'>x</body></message>`, false},
		// ... nor an element named body inside another one.
		{"normal", `<message><x xmlns='urn:example'><body>x</body></x></message>`, false},
		// Not copied: private, no-copy, carbons, archive results.
		{"chat", `<message type='chat'><body>hi</body><private xmlns='urn:xmpp:carbons:2'/></message>`, false},
		{"chat", `<message type='chat'><body>hi</body><c:private xmlns:c='urn:xmpp:carbons:2'/></message>`, false},
		{"chat", `<message type='chat' xmlns:c='urn:xmpp:carbons:2'><body>hi</body><c:private/></message>`, false},
		{"chat", `<message type='chat'><body>hi</body><private xmlns='urn:xmpp:carbon&#x73;:2'/></message>`, false},
		{"chat", `<message type='chat'><body>hi</body><no-copy xmlns='urn:xmpp:hints'/></message>`, false},
		{"chat", `<message type='chat'><received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' type='chat'><body>x</body></message></forwarded></received></message>`, false},
		{"", `<message><result xmlns='urn:xmpp:mam:2' id='1'><forwarded xmlns='urn:xmpp:forward:0'/></result></message>`, false},
		// <private/> deeper down (in a forwarded message) is not the
		// message's own.
		{"chat", `<message type='chat'><body>fw</body><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client'><private xmlns='urn:xmpp:carbons:2'/></message></forwarded></message>`, true},
		// Quotes, '>' and '/' in attribute values, CDATA with tags in it.
		{"normal", `<message id='a>b/c' xml:lang="x'y"><thread parent='p/>'>t</thread><body><![CDATA[<private xmlns='urn:xmpp:carbons:2'/>]]></body></message>`, true},
	} {
		st, err := treff.NewStanza([]byte(c.raw))
		if err != nil {
			t.Fatal(err)
		}
		if got := eligible(st, c.typ); got != c.want {
			t.Errorf("eligible(%s, %q) = %v, want %v", c.raw, c.typ, got, c.want)
		}
	}
}

func TestWithoutPrivate(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`<message type='chat'><body>hi</body></message>`, ``},
		{`<message type='chat'><body>hi</body><private xmlns='urn:xmpp:carbons:2'/><no-copy xmlns='urn:xmpp:hints'/></message>`,
			`<message type='chat'><body>hi</body><no-copy xmlns='urn:xmpp:hints'/></message>`},
		{`<message type='chat'><private xmlns='urn:xmpp:carbons:2'></private><body>hi</body></message>`,
			`<message type='chat'><no-copy xmlns='urn:xmpp:hints'/><body>hi</body></message>`},
		{`<message type='chat'><body>hi</body><private xmlns='urn:xmpp:carbons:2'/><private xmlns='urn:xmpp:carbons:2'/></message>`,
			`<message type='chat'><body>hi</body><no-copy xmlns='urn:xmpp:hints'/></message>`},
		// Another namespace's private stays.
		{`<message><private xmlns='urn:example'/></message>`, ``},
	} {
		st, err := treff.NewStanza([]byte(c.in))
		if err != nil {
			t.Fatal(err)
		}
		if got := string(withoutPrivate(st)); got != c.want {
			t.Errorf("withoutPrivate(%s)\n = %s\nwant %s", c.in, got, c.want)
		}
	}
}

// The eligibility check of an ordinary chat message allocates nothing.
func TestEligibleAllocs(t *testing.T) {
	st, err := treff.NewStanza([]byte(`<message from='bob@example.org/pc' to='alice@example.org' type='chat' id='x1'><body>Hello &amp; welcome</body><active xmlns='http://jabber.org/protocol/chatstates'/><markable xmlns='urn:xmpp:chat-markers:0'/></message>`))
	if err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { eligible(st, "chat") }); n != 0 {
		t.Errorf("eligible allocates %v times, want 0", n)
	}
	if !eligible(st, "chat") {
		t.Error("not eligible")
	}
}

func BenchmarkEligible(b *testing.B) {
	st, err := treff.NewStanza([]byte(`<message from='bob@example.org/pc' to='alice@example.org' type='chat' id='x1'><body>Hello &amp; welcome</body><active xmlns='http://jabber.org/protocol/chatstates'/><markable xmlns='urn:xmpp:chat-markers:0'/></message>`))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		eligible(st, "chat")
	}
}
