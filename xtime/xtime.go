// Package xtime implements XEP-0202: Entity Time for a Treff server. The
// server reports UTC (offset +00:00), which reveals nothing about where it
// runs.
package xtime

import (
	"context"
	"time"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/stanza"
)

// NS is the XEP-0202 namespace.
const NS = "urn:xmpp:time"

// Module answers entity time queries to the server.
type Module struct {
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

var _ treff.Module = (*Module)(nil)

// Name implements treff.Module.
func (m *Module) Name() string { return "time" }

// Setup implements treff.Module.
func (m *Module) Setup(ctx context.Context, r *treff.Registry) error {
	now := m.Now
	if now == nil {
		now = time.Now
	}
	r.AddFeature(NS)
	r.HandleIQ(NS, treff.IQHandlerFunc(func(ctx context.Context, iq *treff.Stanza) ([]byte, error) {
		if iq.Type != "get" {
			return nil, stanza.BadRequest
		}
		return []byte("<time xmlns='" + NS + "'><tzo>+00:00</tzo><utc>" +
			now().UTC().Format("2006-01-02T15:04:05.000Z") + "</utc></time>"), nil
	}))
	return nil
}
