// Package carbons implements XEP-0280: Message Carbons (version 1.0.1,
// with the eligibility rules advertised as urn:xmpp:carbons:rules:0) for
// a Treff server: every device of a user sees both sides of the user's
// conversations.
//
// A session enables carbons with an IQ set holding
// <enable xmlns='urn:xmpp:carbons:2'/> and disables them with <disable/>;
// the choice lasts as long as the session (a stream resumed with XEP-0198
// is the same session, so it keeps it). Once enabled, and while the
// session is available, it gets:
//
//   - a <received/> copy of each eligible message delivered to one of the
//     user's other sessions (section 5), unless it got the message itself;
//   - a <sent/> copy of each eligible message one of the user's other
//     sessions sends (section 6).
//
// A message is eligible (section 6) if it has no <private/> element and no
// <no-copy/> hint (XEP-0334), is not itself a carbon or an archive
// (XEP-0313) result, is not of type groupchat, headline or error, and is
// of type chat, or of type normal with a body, a receipt (XEP-0184), a
// chat marker (XEP-0333), a chat state (XEP-0085) or a MUC <x/> (private
// messages through a room). Error messages are never copied: the server
// does not track which message an error answers. Messages between two
// sessions of the same user are not copied either (each side has its
// copy already).
//
// As the receiving server, the module removes a <private/> element before
// delivering a message to a local user (section 7); it puts a XEP-0334
// <no-copy/> hint in its place unless the message has one, so the
// recipient's other sessions get no copy either.
//
// Copies are built by appending bytes: the original stanza, as delivered,
// goes inside <forwarded xmlns='urn:xmpp:forward:0'/> (XEP-0297) with
// xmlns='jabber:client' added to it. The module keeps no data: whether a
// session enabled carbons is a treff.SessionState on the session, and a
// count of such sessions lets the hooks return at once while there are
// none.
package carbons

import (
	"bytes"
	"context"
	"slices"
	"sync/atomic"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/stanza"
)

// Namespaces of XEP-0280 and the forwarding it wraps copies in.
const (
	// NS is the Message Carbons namespace and service discovery feature.
	NS = "urn:xmpp:carbons:2"
	// NSRules is the feature saying the server applies the eligibility
	// rules of section 6.
	NSRules = "urn:xmpp:carbons:rules:0"
	// NSForward is XEP-0297's namespace.
	NSForward = "urn:xmpp:forward:0"
)

// Module is the Message Carbons module. Its zero value is ready to use.
type Module struct {
	srv *treff.Server

	// carbons is each session's setting.
	carbons *treff.SessionState[setting]
	// enabled counts the sessions with carbons on, so that the hooks
	// cost one atomic load while nobody uses carbons.
	enabled atomic.Int64
}

// setting is a session's carbons setting.
type setting uint8

const (
	off setting = iota
	on
	ended // the session has ended: carbons stay off
)

// account is a user's bare JID as its two parts (slices of a JID's own
// string, so making one allocates nothing).
type account struct{ local, domain string }

func accountOf(j jid.JID) account { return account{j.Localpart(), j.Domainpart()} }

var _ treff.Module = (*Module)(nil)

// Name implements treff.Module.
func (m *Module) Name() string { return "carbons" }

// Setup implements treff.Module.
func (m *Module) Setup(ctx context.Context, r *treff.Registry) error {
	m.srv = r.Server()
	m.carbons = treff.NewSessionState[setting]()
	h := treff.IQHandlerFunc(m.handleIQ)
	r.HandleIQ(NS, h)
	r.HandleAccountIQ(NS, h)
	r.AddFeature(NS)
	r.AddFeature(NSRules)
	// Sent copies are made as the message leaves the account: after a
	// block list refused it or an archive stamped its stanza-id.
	r.InPhase(treff.PhaseObserve).OnAccountOutbound(m.sent)
	r.InPhase(treff.PhaseStamp).OnAccountStanza(m.stripPrivate)
	r.InPhase(treff.PhaseObserve).OnDelivered(m.received)
	r.OnSessionClosed(m.closed)
	// A copy was for the session that did not acknowledge it: the
	// original went its own way.
	r.OnUnacked(func(ctx context.Context, st *treff.Stanza) bool { return st.Payload.Space == NS })
	return nil
}

// handleIQ answers <enable/> and <disable/> from a local session about
// itself (sent without 'to', or to its server or its own bare JID).
func (m *Module) handleIQ(ctx context.Context, iq *treff.Stanza) ([]byte, error) {
	if iq.Type != "set" {
		return nil, stanza.BadRequest
	}
	s := m.srv.Session(iq.From)
	if s == nil || iq.To.Localpart() != "" && accountOf(iq.To) != accountOf(iq.From) {
		// Another server's user, or another user's carbons.
		return nil, stanza.NotAllowed
	}
	switch iq.Payload.Local {
	case "enable":
		m.set(s, true)
	case "disable":
		m.set(s, false)
	default:
		return nil, stanza.BadRequest
	}
	return nil, nil
}

// Bind2Feature and Bind2 make carbons an inline feature of XEP-0386
// Bind 2 (package bind2): <enable xmlns='urn:xmpp:carbons:2'/> in the
// client's <bind/> enables carbons on the new session (section 4 of
// XEP-0386: it always succeeds, and nothing goes into <bound/>).
func (m *Module) Bind2Feature() string { return NS }

// Bind2 enables carbons on s if el is <enable/>.
func (m *Module) Bind2(ctx context.Context, s *treff.Session, el *treff.Nonza) (string, error) {
	if el.Name.Local == "enable" {
		m.set(s, true)
	}
	return "", nil
}

// set enables or disables carbons for s; doing either twice is no error
// (section 8.1). The count of enabled sessions changes with the setting,
// under the session's state lock.
func (m *Module) set(s *treff.Session, enable bool) {
	m.carbons.Update(s, func(old setting, _ bool) setting {
		switch {
		case old == ended:
		case enable && old != on:
			m.enabled.Add(1)
			s.SetShared(NS, "on") // for the other nodes of a cluster
			return on
		case !enable && old == on:
			m.enabled.Add(-1)
			s.SetShared(NS, "")
			return off
		}
		return old
	})
}

// closed takes an ending session out of the count; nothing enables its
// carbons after that.
func (m *Module) closed(ctx context.Context, s *treff.Session) {
	m.carbons.Update(s, func(old setting, _ bool) setting {
		if old == on {
			m.enabled.Add(-1)
		}
		return ended
	})
}

// Enabled reports whether s has carbons enabled.
func (m *Module) Enabled(s *treff.Session) bool {
	if s.Remote() {
		return s.Shared(NS) == "on"
	}
	v, _ := m.carbons.Get(s)
	return v == on
}

// targets appends to dst the available sessions of user with carbons
// enabled, except those in got and the one bound to sender.
func (m *Module) targets(dst []*treff.Session, user jid.JID, got []*treff.Session, sender jid.JID) []*treff.Session {
	var buf [8]*treff.Session
	for _, s := range m.srv.AppendSessions(buf[:0], user) {
		if s.Available() && !slices.Contains(got, s) && !s.JID().Equal(sender) && m.Enabled(s) {
			dst = append(dst, s)
		}
	}
	return dst
}

// copied reports whether a message of this type can be eligible.
func copied(typ string) bool { return typ == "chat" || typ == "normal" || typ == "" }

// received sends <received/> copies of a message delivered to the
// sessions in got to the user's other sessions that want them.
func (m *Module) received(ctx context.Context, st *treff.Stanza, got []*treff.Session) {
	if st.Kind != treff.KindMessage || !copied(st.Type) || m.enabled.Load() == 0 && !m.srv.Clustered() {
		return
	}
	if accountOf(st.From) == accountOf(st.To) {
		return // from one of the user's sessions to another: sent copies cover it
	}
	var buf [4]*treff.Session
	to := m.targets(buf[:0], st.To, got, jid.JID{})
	if len(to) == 0 || !eligible(st, st.Type) {
		return
	}
	m.send(to, st, st.To.Bare(), "received")
}

// sent sends <sent/> copies of a message a local client sends to the
// user's other sessions that want them, as the message leaves the
// account (OnAccountOutbound). It never consumes the message.
func (m *Module) sent(ctx context.Context, st *treff.Stanza) bool {
	if st.Kind != treff.KindMessage || !copied(st.Type) || m.enabled.Load() == 0 && !m.srv.Clustered() || st.To.Equal(jid.JID{}) || st.From.Resourcepart() == "" {
		return false // not from a client (a module's message on the account's behalf)
	}
	if accountOf(st.To) == accountOf(st.From) {
		return false // to the user's own account: received copies cover it
	}
	var buf [4]*treff.Session
	to := m.targets(buf[:0], st.From, nil, st.From)
	if len(to) == 0 || !eligible(st, st.Type) {
		return false
	}
	m.send(to, st, st.From.Bare(), "sent")
	return false
}

// send wraps st in a <sent/> or <received/> carbon for each session in to.
func (m *Module) send(to []*treff.Session, st *treff.Stanza, user jid.JID, dir string) {
	raw := st.Raw()
	// Everything after the wrapper's 'to' is the same for every copy.
	tail := make([]byte, 0, len(raw)+160)
	tail = append(tail, '\'')
	if st.Type != "" {
		tail = append(tail, " type='"...)
		tail = treff.AppendEscaped(tail, st.Type)
		tail = append(tail, '\'')
	}
	tail = append(tail, "><"...)
	tail = append(tail, dir...)
	tail = append(tail, " xmlns='"+NS+"'><forwarded xmlns='"+NSForward+"'>"...)
	// On the client stream the message had jabber:client as its default
	// namespace; inside <forwarded/> it must say so itself (XEP-0297).
	const open = "<message"
	if !ownNamespace(raw) && bytes.HasPrefix(raw, []byte(open)) {
		tail = append(tail, open+" xmlns='"+nsClient+"'"...)
		tail = append(tail, raw[len(open):]...)
	} else {
		tail = append(tail, raw...)
	}
	tail = append(tail, "</forwarded></"...)
	tail = append(tail, dir...)
	tail = append(tail, "></message>"...)

	head := treff.AppendEscaped([]byte("<message from='"), user.String())
	head = append(head, "' to='"...)
	for _, s := range to {
		full := s.JID().String()
		b := make([]byte, 0, len(head)+len(full)+8+len(tail))
		b = append(b, head...)
		b = treff.AppendEscaped(b, full)
		b = append(b, tail...)
		s.Send(b) // an error means the session is closing: no copy needed
	}
}

// stripPrivate removes <private/> from a message for a local user before
// it is delivered (section 7: the receiving server SHOULD), leaving a
// <no-copy/> hint so that received copies are still not made.
func (m *Module) stripPrivate(ctx context.Context, st *treff.Stanza) bool {
	if st.Kind != treff.KindMessage || !mayBePrivate(st.Raw()) {
		return false
	}
	if raw := withoutPrivate(st); raw != nil {
		if err := st.Rewrite(raw); err != nil {
			m.srv.Log().Debug("carbons: removing <private/> failed", "from", st.From.String(), "err", err)
		}
	}
	return false
}

// ownNamespace reports whether the start tag of raw declares a default
// namespace (the server drops a client's xmlns='jabber:client' when it
// stamps the sender, but a stanza from elsewhere may carry one).
func ownNamespace(raw []byte) bool {
	end := bytes.IndexByte(raw, '>')
	if end < 0 {
		return false
	}
	tag := raw[:end]
	return bytes.Contains(tag, []byte(" xmlns='")) || bytes.Contains(tag, []byte(" xmlns=\""))
}
