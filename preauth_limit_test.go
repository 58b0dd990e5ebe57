package treff_test

import (
	"testing"
	"time"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/ratelimit"
)

// PreAuthIQs bounds the IQs one stream sends before it authenticates;
// over it they bounce with <policy-violation/>, and the stream goes on.
func TestPreAuthIQLimit(t *testing.T) {
	m := &hookModule{}
	ts := newTestServer(t, func(s *treff.Server) {
		s.Modules = []treff.Module{m}
		s.PreAuthIQs = ratelimit.Limit{N: 3, Period: time.Hour}
	})
	r := dialRaw(t, ts, ts.Addr)
	r.StartTLS()
	r.Send(header("localhost"))
	r.Expect(`</stream:features>`)
	for _, id := range []string{"p1", "p2", "p3"} {
		r.Send("<iq type='get' id='" + id + "'><q xmlns='urn:example:pre'/></iq>")
		r.Expect(`<iq type='result' id='` + id + `'><pre xmlns='urn:example:pre'/></iq>`)
	}
	r.Send("<iq type='get' id='p4'><q xmlns='urn:example:pre'/></iq>")
	r.Expect(`<iq type='error' id='p4'><error type='wait'><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>too many requests before logging in \(the limit is 3 per 1h\); try again later</text></error></iq>`)
	// Logging in is still possible, and afterwards the limit is gone.
	r.Send(plainAuth("alice", "alicepw"))
	r.Expect(`<success`)
	// A new stream has its own bucket.
	r2 := dialRaw(t, ts, ts.Addr)
	r2.StartTLS()
	r2.Send(header("localhost"))
	r2.Expect(`</stream:features>`)
	r2.Send("<iq type='get' id='q1'><q xmlns='urn:example:pre'/></iq>")
	r2.Expect(`<iq type='result' id='q1'>`)
}
