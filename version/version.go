// Package version implements XEP-0092: Software Version for a Treff
// server. Operators who prefer not to tell which software they run leave
// the module out (the server then answers <service-unavailable/>) or set
// Hide.
package version

import (
	"context"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/stanza"
)

// NS is the XEP-0092 namespace.
const NS = "jabber:iq:version"

// Module answers software version queries to the server.
type Module struct {
	// Software is the name reported; "" means "Treff".
	Software string
	// Version is the version reported; "" means the module's build version
	// if known, else "devel".
	Version string
	// OS, if set, is reported as the operating system; empty means none
	// (RFC-style privacy: the OS helps attackers more than users).
	OS string
	// Hide answers every query with <service-unavailable/> and does not
	// advertise the feature.
	Hide bool
}

var _ treff.Module = (*Module)(nil)

// Name implements treff.Module.
func (m *Module) Name() string { return "version" }

// Setup implements treff.Module.
func (m *Module) Setup(ctx context.Context, r *treff.Registry) error {
	if m.Hide {
		return nil
	}
	name := m.Software
	if name == "" {
		name = "Treff"
	}
	ver := m.Version
	if ver == "" {
		ver = buildVersion()
	}
	b := []byte("<query xmlns='" + NS + "'><name>")
	b = treff.AppendEscaped(b, name)
	b = append(b, "</name><version>"...)
	b = treff.AppendEscaped(b, ver)
	b = append(b, "</version>"...)
	if m.OS != "" {
		b = append(b, "<os>"...)
		b = treff.AppendEscaped(b, m.OS)
		b = append(b, "</os>"...)
	}
	b = append(b, "</query>"...)
	r.AddFeature(NS)
	r.HandleIQ(NS, treff.IQHandlerFunc(func(ctx context.Context, iq *treff.Stanza) ([]byte, error) {
		if iq.Type != "get" {
			return nil, stanza.BadRequest
		}
		return b, nil
	}))
	return nil
}
