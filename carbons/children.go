package carbons

import (
	"bytes"

	"github.com/treff-im/treff/internal/xmlscan"
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
func classify(local, ns []byte) flags {
	switch string(ns) {
	case nsClient:
		if string(local) == "body" {
			return fBody
		}
	case NS:
		switch string(local) {
		case "private":
			return fPrivate
		case "sent", "received":
			return fCarbon
		}
	case nsHints:
		if string(local) == "no-copy" {
			return fNoCopy
		}
	case nsReceipts:
		if string(local) == "received" {
			return fIM
		}
	case nsMarkers:
		switch string(local) {
		case "received", "displayed", "acknowledged":
			return fIM
		}
	case nsChatStates:
		return fIM
	case nsMUCUser:
		if string(local) == "x" {
			return fMUCUser
		}
	default:
		if string(local) == "result" && bytes.HasPrefix(ns, []byte(nsMAMPrefix)) {
			return fMAM
		}
	}
	return 0
}

// child is one child element of a stanza: where it is in the serialised
// stanza, its local name and its namespace.
type child struct {
	off, end  int
	local, ns []byte
}

// clientNS is jabber:client, the default namespace of a stanza's
// children. It must not be modified.
var clientNS = []byte(nsClient)

// prefixDecl is an xmlns:prefix declaration on the stanza's own element.
type prefixDecl struct{ prefix, ns []byte }

// eachChild calls fn for each child element of the serialised stanza raw,
// in document order, and reports whether raw could be read. raw is a
// stanza the server accepted, so it is well-formed restricted XML (no
// comments, no processing instructions); the scan only keeps track of
// tags, quotes and CDATA sections. It allocates nothing unless a namespace
// is written with character references.
func eachChild(raw []byte, fn func(c child)) bool {
	var declBuf [2]prefixDecl
	decls := declBuf[:0]
	defNS := clientNS
	_, i, empty, ok := startTag(raw, 0, func(name, val []byte) {
		switch {
		case string(name) == "xmlns":
			defNS = nsValue(val)
		case bytes.HasPrefix(name, []byte("xmlns:")):
			decls = append(decls, prefixDecl{name[len("xmlns:"):], nsValue(val)})
		}
	})
	if !ok || empty {
		return ok
	}
	var cur child
	depth := 0
	for {
		k := bytes.IndexByte(raw[i:], '<')
		if k < 0 || i+k+1 >= len(raw) {
			return false
		}
		i += k
		switch raw[i+1] {
		case '/': // an end tag
			e := bytes.IndexByte(raw[i:], '>')
			if e < 0 {
				return false
			}
			i += e + 1
			if depth == 0 {
				return true // the stanza's own end tag
			}
			depth--
			if depth == 0 {
				cur.end = i
				fn(cur)
			}
		case '!': // a CDATA section
			e := bytes.Index(raw[i:], []byte("]]>"))
			if e < 0 {
				return false
			}
			i += e + 3
		default: // a start tag
			if depth > 0 {
				_, end, empty, ok := startTag(raw, i, nil)
				if !ok {
					return false
				}
				i = end
				if !empty {
					depth++
				}
				continue
			}
			var own []byte
			var hasOwn bool
			var prefix, pns []byte
			nameEnd, end, empty, ok := startTag(raw, i, nil)
			if !ok {
				return false
			}
			name := raw[i+1 : nameEnd]
			local := name
			if c := bytes.IndexByte(name, ':'); c >= 0 {
				prefix, local = name[:c], name[c+1:]
			}
			startTag(raw, i, func(n, v []byte) {
				switch {
				case string(n) == "xmlns":
					own, hasOwn = nsValue(v), true
				case prefix != nil && bytes.HasPrefix(n, []byte("xmlns:")) && bytes.Equal(n[len("xmlns:"):], prefix):
					pns = nsValue(v)
				}
			})
			cur = child{off: i, local: local}
			switch {
			case prefix != nil && pns != nil:
				cur.ns = pns
			case prefix != nil:
				for _, d := range decls {
					if bytes.Equal(d.prefix, prefix) {
						cur.ns = d.ns
					}
				}
			case hasOwn:
				cur.ns = own
			default:
				cur.ns = defNS
			}
			i = end
			if empty {
				cur.end = i
				fn(cur)
			} else {
				depth = 1
			}
		}
	}
}

// nsValue returns a namespace attribute's value with character references
// resolved (copied only if there are any).
func nsValue(v []byte) []byte {
	if bytes.IndexByte(v, '&') < 0 {
		return v
	}
	return []byte(xmlscan.Unescape(string(v)))
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// startTag reads the start tag that begins at raw[i] ('<'). It returns
// the offset just past the element's name, the offset just past the tag,
// and whether the element is empty (<x/>); attr, if not nil, is called
// with each attribute's name and raw value.
func startTag(raw []byte, i int, attr func(name, val []byte)) (nameEnd, end int, empty, ok bool) {
	j := i + 1
	for j < len(raw) && !isSpace(raw[j]) && raw[j] != '/' && raw[j] != '>' {
		j++
	}
	nameEnd = j
	for j < len(raw) {
		switch c := raw[j]; {
		case isSpace(c):
			j++
		case c == '>':
			return nameEnd, j + 1, false, true
		case c == '/':
			if j+1 < len(raw) && raw[j+1] == '>' {
				return nameEnd, j + 2, true, true
			}
			return 0, 0, false, false
		default:
			k := j
			for k < len(raw) && raw[k] != '=' && !isSpace(raw[k]) {
				k++
			}
			name := raw[j:k]
			for k < len(raw) && (raw[k] == '=' || isSpace(raw[k])) {
				k++
			}
			if k >= len(raw) || raw[k] != '\'' && raw[k] != '"' {
				return 0, 0, false, false
			}
			e := bytes.IndexByte(raw[k+1:], raw[k])
			if e < 0 {
				return 0, 0, false, false
			}
			if attr != nil {
				attr(name, raw[k+1:k+1+e])
			}
			j = k + 1 + e + 1
		}
	}
	return 0, 0, false, false
}

// scan returns what the children of the serialised message raw say about
// it; ok is false if raw could not be read.
func scan(raw []byte) (f flags, ok bool) {
	ok = eachChild(raw, func(c child) { f |= classify(c.local, c.ns) })
	return f, ok
}

// eligible applies the rules of XEP-0280 section 6 to a message of type
// typ ("chat", "normal" or "") serialised as raw: never with <private/>
// or a <no-copy/> hint, never a carbon or an archive result; a chat
// message; a normal one with a body, a receipt, a chat marker or chat
// state, or a MUC <x/> (a private message or an invitation through a
// room). Groupchat, headline and error messages never get here.
func eligible(raw []byte, typ string) bool {
	f, ok := scan(raw)
	if !ok || f&(fPrivate|fNoCopy|fCarbon|fMAM) != 0 {
		return false
	}
	return typ == "chat" || f&(fBody|fIM|fMUCUser) != 0
}

// withoutPrivate returns raw without its <private xmlns='urn:xmpp:carbons:2'/>
// children, and with a <no-copy xmlns='urn:xmpp:hints'/> hint in place of
// the first unless it has one already (so that the delivery hook still
// knows not to copy it), or nil if raw has no such child.
func withoutPrivate(raw []byte) []byte {
	var spans [][2]int
	var noCopy bool
	eachChild(raw, func(c child) {
		switch classify(c.local, c.ns) {
		case fPrivate:
			spans = append(spans, [2]int{c.off, c.end})
		case fNoCopy:
			noCopy = true
		}
	})
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
