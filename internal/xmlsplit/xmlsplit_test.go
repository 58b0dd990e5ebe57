package xmlsplit

import "testing"

func TestElementEnd(t *testing.T) {
	in := "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='x' from='localhost' version='1.0' xml:lang='en'><stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features> <message a='>' b=\"/>\"><body><![CDATA[<x>]]></body></message><a/></stream:stream>"
	var got []string
	b := []byte(in)
	for i := 0; i < 20; i++ {
		n := ElementEnd(b)
		if n == 0 {
			break
		}
		got = append(got, string(b[:n]))
		b = b[n:]
	}
	want := []string{"<?xml version='1.0'?>",
		"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='x' from='localhost' version='1.0' xml:lang='en'>",
		"<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>",
		" <message a='>' b=\"/>\"><body><![CDATA[<x>]]></body></message>",
		"<a/>",
		"</stream:stream>",
	}
	if len(got) != len(want) || len(b) != 0 {
		t.Fatalf("got %q, left %q", got, b)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("%d: %q, want %q", i, got[i], want[i])
		}
	}
	for _, partial := range []string{"<message><body>x</bo", "<message", "  ", "<?xml ", "<stream:stream id='>"} {
		if n := ElementEnd([]byte(partial)); n != 0 {
			t.Errorf("partial %q: %d", partial, n)
		}
	}
}

func TestStandalone(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>",
			"<stream:features xmlns:stream='http://etherx.jabber.org/streams'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>"},
		{"<stream:error xmlns:stream='http://etherx.jabber.org/streams'/>", "<stream:error xmlns:stream='http://etherx.jabber.org/streams'/>"},
		{"<message to='a@b'><body>x</body></message>", "<message xmlns='jabber:client' to='a@b'><body>x</body></message>"},
		{"<iq/>", "<iq xmlns='jabber:client'/>"},
		{"<iq xmlns='jabber:client' id='1'/>", "<iq xmlns='jabber:client' id='1'/>"},
		{"<presence><x xmlns='y'/></presence>", "<presence xmlns='jabber:client'><x xmlns='y'/></presence>"},
		{"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>", "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"},
	} {
		if got := string(Standalone([]byte(tc.in))); got != tc.want {
			t.Errorf("Standalone(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
