// Package csi implements XEP-0352: Client State Indication.
//
// A client that says it is inactive (a phone with its screen off) is
// sent only what the user would want to be woken for. Presence updates
// and messages without content (chat states, receipts) are held back,
// only the latest presence of each contact is kept, and everything held
// is sent, in order, just before the next stanza that matters (see
// treff.Server.Urgent: a message with a body, an IQ, a subscription
// request) or when the client becomes active again.
//
// The module is built on the server's public extension points only: a
// nonza handler for <active/> and <inactive/>, a stream feature, and a
// treff.Holder set on the session while it is inactive.
package csi

import (
	"context"

	"github.com/treff-im/treff"
)

// NS is the namespace of XEP-0352 (version 1.0.0).
const NS = "urn:xmpp:csi:0"

// Defaults of Module's bounds.
const (
	DefaultMaxHeld      = 100
	DefaultMaxHeldBytes = 64 << 10
)

// DefaultUrgent are the namespaces whose elements make a message urgent
// besides a body or a subject: end-to-end encrypted content (OMEMO, both
// versions; OpenPGP for XMPP; legacy OpenPGP) and call invitations
// (XEP-0353 Jingle Message Initiation). The module marks them with
// treff.Registry.AddUrgentNamespace; other modules add theirs.
var DefaultUrgent = []string{
	"eu.siacs.conversations.axolotl",
	"urn:xmpp:omemo:2",
	"urn:xmpp:openpgp:0",
	"jabber:x:encrypted",
	"urn:xmpp:jingle-message:0",
	"urn:xmpp:jingle-message:1",
}

// Module offers client state indication.
type Module struct {
	// MaxHeld is the most stanzas an inactive session holds back before
	// it sends them all; 0 means DefaultMaxHeld.
	MaxHeld int
	// MaxHeldBytes bounds their size likewise; 0 means
	// DefaultMaxHeldBytes.
	MaxHeldBytes int
	// Urgent are the namespaces that make a message urgent besides a
	// body or a subject; nil means DefaultUrgent.
	Urgent []string

	srv *treff.Server
}

// Name implements treff.Module.
func (*Module) Name() string { return "csi" }

// Setup implements treff.Module.
func (m *Module) Setup(ctx context.Context, r *treff.Registry) error {
	m.srv = r.Server()
	urgent := m.Urgent
	if urgent == nil {
		urgent = DefaultUrgent
	}
	for _, ns := range urgent {
		r.AddUrgentNamespace(ns)
	}
	r.AddStreamFeature(treff.StreamFeature{Phase: treff.AfterAuth, XML: "<csi xmlns='" + NS + "'/>"})
	r.HandleNonza(NS, treff.NonzaHandlerFunc(m.nonza))
	return nil
}

// Bind2Feature and Bind2 make client state indication an inline
// feature of XEP-0386 Bind 2 (package bind2): an <inactive/> or <active/>
// in the client's <bind/> sets the state the session begins in.
func (m *Module) Bind2Feature() string { return NS }

// Bind2 sets the new session's state as el says.
func (m *Module) Bind2(ctx context.Context, s *treff.Session, el *treff.Nonza) (string, error) {
	if el.Name.Local == "inactive" && !s.Holding() {
		s.SetHolder(&holder{m: m})
	}
	return "", nil
}

func (m *Module) nonza(ctx context.Context, s *treff.Session, n *treff.Nonza) {
	switch n.Name.Local {
	case "inactive":
		if !s.Holding() {
			s.SetHolder(&holder{m: m})
		}
	case "active":
		s.SetHolder(nil)
	default:
		s.Close("unsupported-stanza-type", "")
	}
}

func (m *Module) maxHeld() int {
	if m.MaxHeld > 0 {
		return m.MaxHeld
	}
	return DefaultMaxHeld
}

func (m *Module) maxHeldBytes() int {
	if m.MaxHeldBytes > 0 {
		return m.MaxHeldBytes
	}
	return DefaultMaxHeldBytes
}

// holder is an inactive session's treff.Holder. froms mirrors the
// session's held stanzas: the sender of each held presence ("" for other
// stanzas). The session changes what it holds only as Hold answers, and
// empties it when it sends it, so the two stay aligned.
type holder struct {
	m     *Module
	froms []string
}

// Hold implements treff.Holder.
func (h *holder) Hold(raw []byte, held [][]byte) (bool, int) {
	if len(held) < len(h.froms) {
		h.froms = h.froms[:0] // sent meanwhile
	}
	m := h.m
	if m.srv.Urgent(raw) {
		return false, -1
	}
	size := len(raw)
	for _, b := range held {
		size += len(b)
	}
	if size > m.maxHeldBytes() {
		return false, -1
	}
	from := ""
	if isPresence(raw) {
		st, err := treff.NewStanza(raw)
		if err != nil {
			return false, -1
		}
		from = st.From.String()
		for i, f := range h.froms {
			if f == from {
				// A newer presence of the same sender replaces the
				// older one.
				h.froms = append(h.froms[:i], h.froms[i+1:]...)
				h.froms = append(h.froms, from)
				return true, i
			}
		}
	}
	if len(held) >= m.maxHeld() {
		return false, -1
	}
	h.froms = append(h.froms, from)
	return true, -1
}

func isPresence(raw []byte) bool {
	return len(raw) > 9 && string(raw[:9]) == "<presence"
}

var _ treff.Holder = (*holder)(nil)
