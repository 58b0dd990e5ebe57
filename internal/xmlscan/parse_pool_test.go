package xmlscan

import "testing"

func BenchmarkParseSmall(b *testing.B) {
	child := []byte(`<stanza-id xmlns='urn:xmpp:sid:0' by='bob@example.org' id='AAAAAAAAAAAAAAAA'/>`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(child, 0); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCheckSmall(b *testing.B) {
	child := []byte(`<stanza-id xmlns='urn:xmpp:sid:0' by='bob@example.org' id='AAAAAAAAAAAAAAAA'/>`)
	b.ReportAllocs()
	for b.Loop() {
		if err := Check(child, 0); err != nil {
			b.Fatal(err)
		}
	}
}

// TestCheckAgreesWithParse checks that Check accepts exactly what Parse
// accepts.
func TestCheckAgreesWithParse(t *testing.T) {
	for _, in := range []string{
		`<x/>`, `<x a='1'/>  `, `<x><y xmlns='u'>t</y></x>`, `<x>`, `<x/><y/>`, `text`, ``, ` `,
		`<x a='1' a='2'/>`, `<p:x xmlns:p='u'/>`, `<p:x/>`, `<x>&bogus;</x>`, "<x>\xff</x>", `<!-- c --><x/>`,
		`<x a='&lt;'/>`, `<x xmlns:a='u' xmlns:b='u' a:c='1' b:c='2'/>`,
		// The kind simpleEmpty answers, and its near misses.
		`<stanza-id xmlns='urn:xmpp:sid:0' by='bob@example.org' id='AAAAAAAAAAAAAAAA'/>`,
		`<x a="1" b='2'   />`, `<x a='1'b='2'/>`, `<x a='1' a="2"/>`, `<x a='1' a='1'/>`, `<x a='1/>`,
		`<x a=1/>`, `<x a/>`, `<x a=''/>`, `<x a='"'/>`, `<x a="'"/>`, `<x a='>'/>`, `<x a='<'/>`,
		`<1x/>`, `<-x/>`, `<_x.y-z9/>`, `<x =''/>`, `<x a= '1'/>`, `<x a ='1'/>`, `<x/ >`, `< x/>`,
		`<x xmlns=''/>`, `<x xmlns='a' xmlns='b'/>`, `<xml/>`, `<x xmlfoo='1'/>`, `<x XMLNS='1'/>`,
		`<x a='1' b='2' c='3' d='4' e='5' f='6' g='7' h='8' i='9'/>`, "<x a='\t'/>", "<x\ta='1'/>",
		"<x a='\x7f'/>", "<x a='\xc3\xa9'/>", `<x a='1'//>`, `<x a='1'></x>`, `</x>`, `<x>`, `<x`,
	} {
		_, perr := Parse([]byte(in), 0)
		cerr := Check([]byte(in), 0)
		if (perr == nil) != (cerr == nil) {
			t.Errorf("%q: Parse %v, Check %v", in, perr, cerr)
		}
	}
	if err := Check([]byte(`<x>0123456789</x>`), 8); err != ErrTooLarge {
		t.Errorf("over max: %v", err)
	}
	if err := Check([]byte(`<x a='0123456789'/>`), 8); err != ErrTooLarge {
		t.Errorf("simple element over max: %v", err)
	}
	if !simpleEmpty([]byte(`<stanza-id xmlns='urn:xmpp:sid:0' by='bob@example.org' id='AAAAAAAAAAAAAAAA'/>`), 0) {
		t.Error("a stanza-id is not taken by the fast path")
	}
}
