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
