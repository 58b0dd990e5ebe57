package treff

import (
	"bytes"
	"context"
	"encoding/xml"
	"fmt"
	"iter"
	"slices"

	"github.com/treff-im/treff/internal/xmlscan"
	"github.com/treff-im/treff/stanza"
)

// Nonza is a top-level element of a client's stream that is not a
// stanza, such as XEP-0352's <inactive/>: it is about the stream itself,
// is not routed, and is not counted by stream management.
type Nonza struct {
	// Name is the element's name; Space is its namespace.
	Name xml.Name
	el   *xmlscan.Element
	// A child element (Nonza.Child) is read through ch instead of el.
	ch    stanza.Child
	child bool
}

// Attr returns the value of one of the element's attributes.
func (n *Nonza) Attr(name string) (string, bool) {
	if n.child {
		return n.ch.Attr(name)
	}
	return n.el.Attr(name)
}

// Raw returns the element as the client sent it.
func (n *Nonza) Raw() string {
	if n.child {
		return n.ch.Raw()
	}
	return n.el.Raw
}

// Inner returns the element's content between its start and end tags.
func (n *Nonza) Inner() string {
	if n.child {
		return n.ch.Inner()
	}
	return n.el.Inner()
}

// Text returns the character data directly in the element (not in its
// children), with references resolved (see stanza.Child.Text).
func (n *Nonza) Text() string { return n.self().Text() }

// Children returns an iterator over the element's child elements, in
// document order, read from Raw without copying it (see
// stanza.Children).
func (n *Nonza) Children() iter.Seq[stanza.Child] { return n.self().Children() }

// Child returns the first child element with that namespace and local
// name, such as the <user-agent/> of a XEP-0388 <authenticate/>.
func (n *Nonza) Child(space, local string) (*Nonza, bool) {
	for c := range n.Children() {
		if c.Name.Local == local && c.Name.Space == space {
			return &Nonza{Name: c.Name, ch: c, child: true}, true
		}
	}
	return nil, false
}

// self returns the element as a stanza.Child.
func (n *Nonza) self() stanza.Child {
	if n.child {
		return n.ch
	}
	// A top-level element: jabber:client is the default namespace
	// around it, unless it declares its own.
	for c := range stanza.Children("<x>"+n.el.Raw+"</x>", nsClient) {
		return c
	}
	return stanza.Child{}
}

// NonzaHandler handles the nonzas of one namespace that clients send on
// bound sessions' streams (see Registry.HandleNonza). HandleNonza is
// called from the session's read loop, before the client's next element
// is read: keep it short. To refuse the element, close the stream (e.g.
// s.Close("unsupported-stanza-type", "")).
type NonzaHandler interface {
	HandleNonza(ctx context.Context, s *Session, n *Nonza)
}

// NonzaHandlerFunc adapts a function to a NonzaHandler.
type NonzaHandlerFunc func(ctx context.Context, s *Session, n *Nonza)

// HandleNonza calls f(ctx, s, n).
func (f NonzaHandlerFunc) HandleNonza(ctx context.Context, s *Session, n *Nonza) { f(ctx, s, n) }

// HandleNonza makes h handle the top-level elements in namespace ns that
// clients send after binding a resource (such as client state
// indication's, urn:xmpp:csi:0, or stream management's, urn:xmpp:sm:3).
// Any other element that is not a stanza closes the stream with
// <unsupported-stanza-type/>. It panics if ns is taken or is
// jabber:client.
func (r *Registry) HandleNonza(ns string, h NonzaHandler) {
	if ns == nsClient || ns == "" {
		panic(fmt.Sprintf("treff: module %s registers nonzas of namespace %q, which the server handles", r.module, ns))
	}
	if r.m.nonzas == nil {
		r.m.nonzas = make(map[string]hook[NonzaHandler])
	}
	if old, ok := r.m.nonzas[ns]; ok {
		panic(fmt.Sprintf("treff: module %s registers nonzas of namespace %q, already registered by %s", r.module, ns, old.module))
	}
	r.m.nonzas[ns] = hook[NonzaHandler]{module: r.module, h: h}
}

// AddUrgentNamespace says that a message carrying an element of namespace
// ns (at any depth, so also inside a carbon copy or an archive result)
// is one its recipient wants at once, even on a device that told the
// server it is inactive (XEP-0352), as a call invitation is. See
// Server.Urgent.
func (r *Registry) AddUrgentNamespace(ns string) {
	for _, q := range [...]string{"'" + ns + "'", `"` + ns + `"`} {
		if !slices.ContainsFunc(r.m.urgent, func(b []byte) bool { return string(b) == q }) {
			r.m.urgent = append(r.m.urgent, []byte(q))
		}
	}
}

// Urgent reports whether a stanza on its way to a client should reach it
// at once rather than wait, for modules that hold stanzas back (client
// state indication) or wake devices (push): every IQ; presence that is
// not a mere availability update (subscription requests and their
// answers, errors, probes); messages of type error, and messages with a
// body or a subject, or carrying an element of a namespace that a module
// marked urgent with Registry.AddUrgentNamespace (encrypted content and
// call invitations, by the modules that know them). Chat states and
// receipts alone wait.
func (srv *Server) Urgent(raw []byte) bool {
	if srv.init() != nil {
		return true
	}
	switch {
	case bytes.HasPrefix(raw, []byte("<presence")):
		t := attrOf(raw, "type")
		return len(t) > 0 && string(t) != "unavailable"
	case bytes.HasPrefix(raw, []byte("<message")):
		if string(attrOf(raw, "type")) == "error" {
			return true
		}
		// Also prefixed (a forwarded message may be written with a
		// prefix for jabber:client).
		for _, k := range [...]string{"<body", "<subject", ":body", ":subject"} {
			if bytes.Contains(raw, []byte(k)) {
				return true
			}
		}
		for _, q := range srv.mods.urgent {
			if bytes.Contains(raw, q) {
				return true
			}
		}
		return false
	}
	return true
}

// attrOf returns the value of an attribute of the element raw starts
// with, or nil.
func attrOf(raw []byte, name string) []byte {
	end := bytes.IndexByte(raw, '>')
	if end < 0 {
		return nil
	}
	tag := raw[:end]
	for i := 0; ; {
		j := bytes.Index(tag[i:], []byte(name))
		if j < 0 {
			return nil
		}
		i += j
		k := i + len(name)
		if i > 0 && (tag[i-1] == ' ' || tag[i-1] == '\t' || tag[i-1] == '\n' || tag[i-1] == '\r') &&
			k+1 < len(tag) && tag[k] == '=' && (tag[k+1] == '\'' || tag[k+1] == '"') {
			q := tag[k+1]
			v := tag[k+2:]
			if e := bytes.IndexByte(v, q); e >= 0 {
				return v[:e]
			}
			return nil
		}
		i = k
	}
}

// Holder keeps back stanzas sent to a session that can wait: client
// state indication (XEP-0352) holds presence updates and chat states for
// a phone whose screen is off. Set one with Session.SetHolder.
type Holder interface {
	// Hold is called under the session's send lock for every stanza sent
	// to the session while the Holder is set, in order; held are those
	// kept back so far, oldest first (do not keep or modify it). It
	// returns whether raw waits too, and if so the index in held of a
	// stanza that raw supersedes and that is dropped (such as an older
	// presence of the same contact), or -1. A stanza that does not wait
	// is sent after everything held, in order.
	Hold(raw []byte, held [][]byte) (wait bool, supersedes int)
}

// SetHolder makes h decide which stanzas sent to the session wait. nil
// sends what was held at once, in order, and holds nothing more. When
// the session's connection breaks, its Holder is dropped with what it
// held (a resumed session is a device active again, and asks for
// presence anew), and the session closes if it cannot take what was
// held (see Send).
func (s *Session) SetHolder(h Holder) {
	s.mu.Lock()
	if s.offline || s.closed {
		s.mu.Unlock()
		return
	}
	s.hold.h = h
	var fail *streamError
	if h == nil {
		fail = s.sendHeldLocked()
	}
	s.mu.Unlock()
	if fail != nil {
		s.closeStream(*fail)
	}
}

// Holding reports whether the session has a Holder (such as client state
// indication's while the client is inactive).
func (s *Session) Holding() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hold.h != nil
}

// holdState is a session's Holder and what it keeps back, under
// Session.mu.
type holdState struct {
	h    Holder
	held [][]byte
}

// holdLocked asks the Holder whether raw waits, and keeps it if so.
func (s *Session) holdLocked(raw []byte) bool {
	wait, sup := s.srv.holderHold(s.hold.h, raw, s.hold.held)
	if !wait {
		return false
	}
	if sup >= 0 && sup < len(s.hold.held) {
		s.hold.held = append(s.hold.held[:sup], s.hold.held[sup+1:]...)
	}
	s.hold.held = append(s.hold.held, raw)
	return true
}

// sendHeldLocked sends what the Holder kept back, in order (under s.mu),
// and returns the stream error to close with, if any.
func (s *Session) sendHeldLocked() *streamError {
	held := s.hold.held
	s.hold.held = nil
	for _, raw := range held {
		if e := s.sendLocked(raw); e != nil {
			return e
		}
	}
	return nil
}
