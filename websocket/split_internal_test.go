package websocket

import "testing"

func TestElementEnd(t *testing.T) {
	in := "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='x' from='localhost' version='1.0' xml:lang='en'><stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features><message a='>' b=\"/>\"><body><![CDATA[<x>]]></body></message><a/></stream:stream>"
	var got []string
	b := []byte(in)
	for i := 0; i < 20; i++ {
		n := elementEnd(b)
		if n == 0 {
			break
		}
		got = append(got, string(b[:n]))
		b = b[n:]
	}
	want := []string{"<?xml version='1.0'?>",
		"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='x' from='localhost' version='1.0' xml:lang='en'>",
		"<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>",
		"<message a='>' b=\"/>\"><body><![CDATA[<x>]]></body></message>",
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
	if n := elementEnd([]byte("<message><body>x</bo")); n != 0 {
		t.Errorf("partial element: %d", n)
	}
}
