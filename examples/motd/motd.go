// Package motd is a Treff module that greets every client with a message
// of the day.
//
// When a client session has bound a resource, the module sends it a
// headline message (RFC 6121 5.2.2: a notice that needs no reply and is not
// stored offline) from the server's domain:
//
//	<message type='headline' from='example.org' to='alice@example.org/phone'>
//	  <body>Welcome! Maintenance on Sunday 04:00 UTC.</body>
//	</message>
//
// It uses only Treff's public module API, and is meant as a small example
// of one.
package motd

import (
	"context"

	"github.com/treff-im/treff"
)

// Module sends Text to every session that binds a resource. The zero value,
// and a Module with empty Text, send nothing.
type Module struct {
	// Text is the message body, plain text (it is XML-escaped). It must
	// not change once the server started.
	Text string
}

var _ treff.Module = (*Module)(nil)

// New returns a module that sends text.
func New(text string) *Module { return &Module{Text: text} }

// Name implements treff.Module.
func (m *Module) Name() string { return "motd" }

// Setup implements treff.Module: it registers the session hook.
func (m *Module) Setup(ctx context.Context, r *treff.Registry) error {
	if m.Text == "" {
		return nil
	}
	body := treff.AppendEscaped(nil, m.Text)
	r.OnSessionBound(func(ctx context.Context, s *treff.Session) {
		s.Send(message(s, body))
	})
	return nil
}

// message builds the headline for session s with the escaped body.
func message(s *treff.Session, body []byte) []byte {
	full := s.JID()
	b := make([]byte, 0, 96+len(body))
	b = append(b, "<message type='headline' from='"...)
	b = treff.AppendEscaped(b, full.Domainpart())
	b = append(b, "' to='"...)
	b = treff.AppendEscaped(b, full.String())
	b = append(b, "'><body>"...)
	b = append(b, body...)
	b = append(b, "</body></message>"...)
	return b
}
