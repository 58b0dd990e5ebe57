package router

// Kind is the kind of a stanza.
type Kind uint8

// Stanza kinds.
const (
	Message Kind = iota + 1
	Presence
	IQ
)

// Action says what to do with a stanza for a local user once the rules have
// run.
type Action uint8

// Actions returned by SelectBare and SelectFull.
const (
	// Deliver to the returned sessions.
	Deliver Action = iota + 1
	// Undeliverable: no session qualifies. The caller stores the message
	// offline if it can, or else answers with an error (ErrorReply) or drops
	// it (Drop) as the rules say.
	Undeliverable
	// ErrorReply: answer the sender with <service-unavailable/>.
	ErrorReply
	// Drop the stanza silently.
	Drop
	// Handle: the server answers on behalf of the account (IQ to a bare JID).
	Handle
)

// SelectBare applies RFC 6121 8.5.2 to a stanza addressed to the bare JID of
// an existing local account whose bound sessions are given. For Deliver it
// appends the receiving sessions to dst. For Undeliverable, fallback tells
// what to do when the message cannot be stored offline either.
func SelectBare(dst []Entry, sessions []Entry, k Kind, typ string) (out []Entry, act, fallback Action) {
	switch k {
	case IQ:
		return dst, Handle, 0
	case Presence:
		// 8.5.2.1.1/8.5.2.2.1: presence goes to all available resources;
		// subscription handling is the presence module's.
		for _, s := range sessions {
			if s.Available() {
				dst = append(dst, s)
			}
		}
		if len(dst) == 0 {
			return dst, Drop, 0
		}
		return dst, Deliver, 0
	}
	switch typ {
	case "error":
		return dst, Drop, 0
	case "groupchat":
		// 8.5.2.1.1: groupchat to a bare JID is an error.
		return dst, ErrorReply, 0
	case "headline":
		// every available resource with non-negative priority
		for _, s := range sessions {
			if s.Available() && s.Priority() >= 0 {
				dst = append(dst, s)
			}
		}
		if len(dst) == 0 {
			return dst, Undeliverable, Drop
		}
		return dst, Deliver, 0
	}
	// normal and chat: the available resources with the highest
	// non-negative priority (all of them when several tie).
	best := -1
	for _, s := range sessions {
		if s.Available() && s.Priority() > best {
			best = s.Priority()
		}
	}
	if best < 0 {
		return dst, Undeliverable, ErrorReply
	}
	for _, s := range sessions {
		if s.Available() && s.Priority() == best {
			dst = append(dst, s)
		}
	}
	return dst, Deliver, 0
}

// SelectFull applies RFC 6121 8.5.3.1 and 8.5.3.2 to a stanza addressed to a full JID of an
// existing local account. target is the session bound to that full JID, or
// nil. When the resource is not online a message of type normal or chat
// falls back to the bare-JID rules (the caller then calls
// SelectBare); act is then Undeliverable with fallback 0.
func SelectFull(target Entry, k Kind, typ string) (act, fallback Action) {
	if target != nil {
		return Deliver, 0
	}
	switch k {
	case IQ:
		if typ == "get" || typ == "set" {
			return ErrorReply, 0
		}
		return Drop, 0
	case Presence:
		return Drop, 0
	}
	switch typ {
	case "error":
		return Drop, 0
	case "groupchat":
		return ErrorReply, 0
	case "headline":
		return Drop, 0
	}
	return Undeliverable, 0
}
