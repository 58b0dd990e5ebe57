package carbons

import (
	"bytes"
	"strings"

	"github.com/treff-im/treff"
)

// What a message's child elements say about it, for the eligibility rules
// of XEP-0280 section 6.
type flags uint16

const (
	fBody    flags = 1 << iota // <body/> (jabber:client)
	fPrivate                   // <private xmlns='urn:xmpp:carbons:2'/>
	fNoCopy                    // <no-copy xmlns='urn:xmpp:hints'/>
	fCarbon                    // <sent/> or <received/> (urn:xmpp:carbons:2): a carbon itself
	fMAM                       // <result xmlns='urn:xmpp:mam:*'/>: an archive result
	fIM                        // receipt, chat marker or chat state
	fMUCUser                   // <x xmlns='http://jabber.org/protocol/muc#user'/>
)

const (
	nsClient     = "jabber:client"
	nsHints      = "urn:xmpp:hints"
	nsReceipts   = "urn:xmpp:receipts"
	nsMarkers    = "urn:xmpp:chat-markers:0"
	nsChatStates = "http://jabber.org/protocol/chatstates"
	nsMUCUser    = "http://jabber.org/protocol/muc#user"
	nsMAMPrefix  = "urn:xmpp:mam:"
)

// classify says what one child element of a message means for carbons.
func classify(local, ns string) flags {
	switch ns {
	case nsClient:
		if local == "body" {
			return fBody
		}
	case NS:
		switch local {
		case "private":
			return fPrivate
		case "sent", "received":
			return fCarbon
		}
	case nsHints:
		if local == "no-copy" {
			return fNoCopy
		}
	case nsReceipts:
		if local == "received" {
			return fIM
		}
	case nsMarkers:
		switch local {
		case "received", "displayed", "acknowledged":
			return fIM
		}
	case nsChatStates:
		return fIM
	case nsMUCUser:
		if local == "x" {
			return fMUCUser
		}
	default:
		if local == "result" && strings.HasPrefix(ns, nsMAMPrefix) {
			return fMAM
		}
	}
	return 0
}

// scan returns what the children of the message say about it.
func scan(st *treff.Stanza) (f flags) {
	for c := range st.Children() {
		f |= classify(c.Name.Local, c.Name.Space)
	}
	return f
}

// eligible applies the rules of XEP-0280 section 6 to a message of type
// typ ("chat", "normal" or ""): never with <private/>
// or a <no-copy/> hint, never a carbon or an archive result; a chat
// message; a normal one with a body, a receipt, a chat marker or chat
// state, or a MUC <x/> (a private message or an invitation through a
// room). Groupchat, headline and error messages never get here.
func eligible(st *treff.Stanza, typ string) bool {
	f := scan(st)
	if f&(fPrivate|fNoCopy|fCarbon|fMAM) != 0 {
		return false
	}
	return typ == "chat" || f&(fBody|fIM|fMUCUser) != 0
}

// withoutPrivate returns the message's Raw without its <private xmlns='urn:xmpp:carbons:2'/>
// children, and with a <no-copy xmlns='urn:xmpp:hints'/> hint in place of
// the first unless it has one already (so that the delivery hook still
// knows not to copy it), or nil if raw has no such child.
func withoutPrivate(st *treff.Stanza) []byte {
	raw := st.Raw()
	var spans [][2]int
	var noCopy bool
	for c := range st.Children() {
		switch classify(c.Name.Local, c.Name.Space) {
		case fPrivate:
			spans = append(spans, [2]int{c.Offset(), c.Offset() + len(c.Raw())})
		case fNoCopy:
			noCopy = true
		}
	}
	if len(spans) == 0 {
		return nil
	}
	const hint = "<no-copy xmlns='" + nsHints + "'/>"
	out := make([]byte, 0, len(raw)+len(hint))
	pos := 0
	for n, sp := range spans {
		out = append(out, raw[pos:sp[0]]...)
		if n == 0 && !noCopy {
			out = append(out, hint...)
		}
		pos = sp[1]
	}
	return append(out, raw[pos:]...)
}

// mayBePrivate is a quick test before withoutPrivate: whether raw could
// have a <private/> child (the carbons namespace appears in it, or a
// "private" element and a character reference that could spell it).
func mayBePrivate(raw []byte) bool {
	return bytes.Contains(raw, []byte(NS)) || bytes.IndexByte(raw, '&') >= 0 && bytes.Contains(raw, []byte("private"))
}
