package roster

import "github.com/treff-im/treff/storage"

// State is the subscription state of one contact in a user's roster, one
// of the nine states of RFC 6121 Appendix A (plus a pre-approval flag,
// section 3.4).
type State struct {
	Sub        storage.Subscription // none, to, from, both
	PendingOut bool                 // the user asked the contact; no answer yet (ask='subscribe')
	PendingIn  bool                 // the contact asked the user; no answer yet
	Approved   bool                 // the user pre-approved the contact
}

// StateOf returns the subscription state of a roster item.
func StateOf(it storage.RosterItem) State {
	sub := it.Subscription
	if sub == "" {
		sub = storage.SubNone
	}
	return State{Sub: sub, PendingOut: it.PendingOut, PendingIn: it.PendingIn, Approved: it.Approved}
}

// Apply stores s in a roster item.
func (s State) Apply(it *storage.RosterItem) {
	it.Subscription, it.PendingOut, it.PendingIn, it.Approved = s.Sub, s.PendingOut, s.PendingIn, s.Approved
}

func (s State) to() bool   { return s.Sub == storage.SubTo || s.Sub == storage.SubBoth }
func (s State) from() bool { return s.Sub == storage.SubFrom || s.Sub == storage.SubBoth }

func mk(to, from bool, s State) State {
	switch {
	case to && from:
		s.Sub = storage.SubBoth
	case to:
		s.Sub = storage.SubTo
	case from:
		s.Sub = storage.SubFrom
	default:
		s.Sub = storage.SubNone
	}
	// The pending flags only exist where the subscription does not.
	if to {
		s.PendingOut = false
	}
	if from {
		s.PendingIn = false
		s.Approved = false
	}
	return s
}

// String returns the state in the RFC's notation, e.g. "None + Pending Out".
func (s State) String() string {
	names := map[storage.Subscription]string{storage.SubNone: "None", storage.SubTo: "To", storage.SubFrom: "From", storage.SubBoth: "Both"}
	n := names[s.Sub]
	switch {
	case s.PendingOut && s.PendingIn:
		n += " + Pending Out+In"
	case s.PendingOut:
		n += " + Pending Out"
	case s.PendingIn:
		n += " + Pending In"
	}
	if s.Approved {
		n += " (pre-approved)"
	}
	return n
}

// Outbound applies a subscription stanza of type typ ("subscribe",
// "subscribed", "unsubscribe", "unsubscribed") that the user sends to the
// contact, per RFC 6121 Appendix A.2, and reports whether the user's server
// routes it to the contact. With preApproval, a "subscribed" without a
// pending request records a pre-approval (section 3.4) instead of being
// dropped.
func Outbound(s State, typ string, preApproval bool) (next State, route bool) {
	switch typ {
	case "subscribe":
		// A.2.1: routed in every state (the contact's server may have lost
		// its state); adds Pending Out unless already subscribed.
		if !s.to() {
			s.PendingOut = true
		}
		return s, true
	case "unsubscribe":
		// A.2.2: cancels the user's subscription or request.
		n := mk(false, s.from(), s)
		n.PendingOut = false
		return n, true
	case "subscribed":
		// A.2.3: approves a pending request; otherwise a pre-approval.
		if s.PendingIn {
			return mk(s.to(), true, s), true
		}
		if !s.from() && preApproval && !s.Approved {
			s.Approved = true
			return s, false
		}
		return s, false
	case "unsubscribed":
		// A.2.4: cancels the contact's subscription, denies its request,
		// and withdraws a pre-approval.
		changed := s.from() || s.PendingIn
		n := mk(s.to(), false, s)
		n.PendingIn = false
		n.Approved = false
		return n, changed
	}
	return s, false
}

// InboundResult is the outcome of Inbound.
type InboundResult struct {
	// Next is the user's new state for the contact.
	Next State
	// Deliver tells whether the stanza goes to the user (and a subscribe
	// request is kept until the user answers).
	Deliver bool
	// AutoReply is "subscribed" when the server answers a subscribe on the
	// user's behalf (already subscribed, or pre-approved).
	AutoReply string
	// Changed reports that the state changed.
	Changed bool
}

// Inbound applies a subscription stanza of type typ that the contact sent
// to the user, per RFC 6121 Appendix A.3.
func Inbound(s State, typ string) InboundResult {
	var r InboundResult
	switch typ {
	case "subscribe":
		// A.3.1
		switch {
		case s.from():
			r = InboundResult{Next: s, AutoReply: "subscribed"}
		case s.Approved:
			r = InboundResult{Next: mk(s.to(), true, s), AutoReply: "subscribed"}
		case s.PendingIn:
			r = InboundResult{Next: s}
		default:
			n := s
			n.PendingIn = true
			r = InboundResult{Next: n, Deliver: true}
		}
	case "unsubscribe":
		// A.3.2: the contact ends its subscription to the user (or its
		// request).
		if s.from() || s.PendingIn {
			n := mk(s.to(), false, s)
			n.PendingIn = false
			r = InboundResult{Next: n, Deliver: true}
		} else {
			r = InboundResult{Next: s}
		}
	case "subscribed":
		// A.3.3: the contact approves the user's request.
		if s.PendingOut {
			r = InboundResult{Next: mk(true, s.from(), s), Deliver: true}
		} else {
			r = InboundResult{Next: s}
		}
	case "unsubscribed":
		// A.3.4: the contact cancels or denies the user's subscription.
		if s.to() || s.PendingOut {
			n := mk(false, s.from(), s)
			n.PendingOut = false
			r = InboundResult{Next: n, Deliver: true}
		} else {
			r = InboundResult{Next: s}
		}
	default:
		r = InboundResult{Next: s}
	}
	r.Changed = r.Next != s
	return r
}
