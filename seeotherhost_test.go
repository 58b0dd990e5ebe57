package treff_test

import (
	"regexp"
	"testing"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
)

// A stream closed with see-other-host carries the alternate address as
// the condition's character data (RFC 6120 4.9.3.19), escaped; and a
// session tells its transport.
func TestSeeOtherHostAndTransport(t *testing.T) {
	ts := newTestServer(t, nil)
	c := ts.Login(t, "alice", "alicepw", "desk")
	s := ts.Session(jid.MustParse("alice@localhost/desk"))
	if got := s.Transport(); got != "tcp" {
		t.Errorf("Transport = %q, want tcp", got)
	}
	s.CloseWith(&treff.StreamError{Condition: "see-other-host", Data: "[2001:db8::1]:5222&"})
	c.Expect(regexp.QuoteMeta("<stream:error><see-other-host xmlns='urn:ietf:params:xml:ns:xmpp-streams'>[2001:db8::1]:5222&amp;</see-other-host></stream:error>"))

	tc := ts.DialTLS(t)
	tc.Login("alice", "alicepw", "tls")
	if got := ts.Session(jid.MustParse("alice@localhost/tls")).Transport(); got != "tls" {
		t.Errorf("Transport = %q, want tls", got)
	}
}
