package treff_test

import (
	"fmt"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/trefftest"
)

// Issue 15, 1: a stanza that Namespaces in XML 1.0 forbids was relayed byte
// for byte, and a recipient whose client parses with expat (slixmpp) was
// disconnected by it. The sender's stream is closed instead, and nothing
// reaches the recipient.
func TestNamespaceIllFormedNotRelayed(t *testing.T) {
	ts := newTestServer(t, nil)
	bob := ts.Login(t, "bob", "bobpw", "phone")
	for _, tc := range []struct{ name, attrs, child, cond string }{
		{"xml prefix rebound", ` xmlns:xml='urn:other'`, ``, "not-well-formed"},
		{"prefix undeclared", ` xmlns:p=''`, ``, "not-well-formed"},
		{"xmlns declared", ` xmlns:xmlns='urn:x'`, ``, "not-well-formed"},
		{"xmlns namespace bound", ` xmlns:p='http://www.w3.org/2000/xmlns/'`, ``, "not-well-formed"},
		{"same expanded attribute", ` xmlns:a='u' xmlns:b='u' a:z='1' b:z='2'`, ``, "not-well-formed"},
		{"two colons", ``, `<a:b:c xmlns:a='u'/>`, "not-well-formed"},
		{"empty prefix", ``, `<x :a='1'/>`, "not-well-formed"},
		{"empty local part", ``, `<a: xmlns:a='u'/>`, "not-well-formed"},
		{"undeclared prefix", ``, `<x p:a='1'/>`, "bad-namespace-prefix"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			alice := ts.Login(t, "alice", "alicepw", "r1")
			alice.Send(`<message to='bob@localhost/phone' type='chat' id='bad'` + tc.attrs + `><body>bad</body>` + tc.child + `</message>`)
			alice.Expect(`<stream:error><` + tc.cond + ` xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>`)
			alice.Expect(`</stream:stream>`)
			alice.ExpectClosed()
			// The stanza was refused before routing: had it been
			// routed, it would be queued for bob before the error
			// was written, and so before the answer to this ping.
			if got := bob.Sync(); strings.Contains(got, "bad") {
				t.Errorf("bob received %q", got)
			}
		})
	}
}

// Issue 15, 1: the stream header is held to the same rules.
func TestNamespaceIllFormedHeader(t *testing.T) {
	ts := newTestServer(t, nil)
	r := dialRaw(t, ts, ts.Addr)
	r.Send(`<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' xmlns:xml='urn:other' to='localhost' version='1.0'>`)
	r.Expect(`<stream:stream [^>]*>`)
	r.Expect(`<stream:error><not-well-formed xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>`)
	r.ExpectClosed()
}

// manyAttrs returns n distinct attributes.
func manyAttrs(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, " a%d='%d'", i, i)
	}
	return b.String()
}

// Issue 15, 3: one unauthenticated stream header of 256 KiB with 37,000
// attributes cost seconds of CPU. It is refused at the attribute limit,
// after the server has read a few KiB of it. The connection is a pipe, so
// that the bytes the server took are exactly those the writer got rid of.
func TestHeaderAttributeLimit(t *testing.T) {
	ts := newTestServer(t, nil)
	hdr := `<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'` + manyAttrs(37000) + `>`
	if len(hdr) < 256<<10 {
		t.Fatalf("header of %d bytes", len(hdr))
	}
	client, server := net.Pipe()
	served := make(chan error, 1)
	go func() { served <- ts.ServeConn(server) }()
	t.Cleanup(func() { client.Close(); <-served })
	written := make(chan int, 1)
	go func() {
		n, _ := io.WriteString(client, hdr) // ends when the server closes
		written <- n
	}()
	r := trefftest.NewClient(t, client, ts.Domain, ts.TLSConfig())
	r.Expect(`<stream:error><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>too many attributes</text></stream:error>`)
	r.ExpectClosed()
	if n := <-written; n > 16<<10 {
		t.Errorf("the server read %d bytes of the header, want a few KiB", n)
	}
}

// The limit after authentication is the server's MaxAttributes; before it,
// at most 100.
func TestMaxAttributes(t *testing.T) {
	ts := newTestServer(t, func(s *treff.Server) { s.MaxAttributes = 150 })
	bob := ts.Login(t, "bob", "bobpw", "phone")
	alice := ts.Login(t, "alice", "alicepw", "r1")
	alice.Send(`<message to='bob@localhost/phone' id='m1'><body>hi</body><x xmlns='urn:example'` + manyAttrs(120) + `/></message>`)
	bob.Expect(`<message [^>]*id='m1'`)
	alice.Send(`<message to='bob@localhost/phone' id='m2'><x xmlns='urn:example'` + manyAttrs(151) + `/></message>`)
	alice.Expect(`<policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>too many attributes</text>`)
	alice.ExpectClosed()
	if got := bob.Sync(); strings.Contains(got, "m2") {
		t.Errorf("bob received %q", got)
	}
	// Before authentication, 120 attributes are too many.
	r := dialRaw(t, ts, ts.Addr)
	r.Send(`<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'` + manyAttrs(120) + `>`)
	r.Expect(`<policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>`)
	r.ExpectClosed()
}

// Issue 15, 5: a second stream header on a bound session was read as the
// start of an element that never ended; the stream hung.
func TestNestedStreamHeader(t *testing.T) {
	ts := newTestServer(t, nil)
	r := ts.Login(t, "alice", "alicepw", "r1")
	r.Send(`<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>`)
	r.Expect(`<stream:error><invalid-xml xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>`)
	r.Expect(`</stream:stream>`)
	r.ExpectClosed()
}
