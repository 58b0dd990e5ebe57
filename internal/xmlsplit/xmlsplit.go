// Package xmlsplit splits the server's own output stream back into whole
// top-level elements, for transports that frame elements one by one
// (WebSocket, RFC 7395) or batch them into HTTP responses (BOSH,
// XEP-0124/XEP-0206), and makes each element stand alone outside the
// stream (with the namespace declarations it inherited from the stream
// header).
//
// The input is what the session layer writes: well-formed, without
// comments, processing instructions (other than the XML declaration) or
// DTDs. Tracking tags, quoted attribute values and CDATA is enough; this is
// not a parser for untrusted input.
package xmlsplit

import "bytes"

// Namespaces a standalone element may need.
const (
	nsClient = "jabber:client"
	nsStream = "http://etherx.jabber.org/streams"
)

// ElementEnd returns the length of the first whole top-level item at the
// start of b, or 0 if b does not hold one yet. An item is an element, the
// XML declaration, the stream header (<stream:stream ...>, an open tag) or
// the stream's closing tag; whitespace before it is part of it.
func ElementEnd(b []byte) int {
	i := 0
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	if i == len(b) || b[i] != '<' {
		return 0
	}
	if bytes.HasPrefix(b[i:], []byte("<?")) {
		j := bytes.Index(b[i:], []byte("?>"))
		if j < 0 {
			return 0
		}
		return i + j + 2
	}
	if bytes.HasPrefix(b[i:], []byte("<stream:stream")) || bytes.HasPrefix(b[i:], []byte("</stream:stream")) {
		e := TagEnd(b, i)
		if e < 0 {
			return 0
		}
		return e
	}
	depth := 0
	for i < len(b) {
		if b[i] != '<' {
			j := bytes.IndexByte(b[i:], '<')
			if j < 0 {
				return 0
			}
			i += j
			continue
		}
		if bytes.HasPrefix(b[i:], []byte("<![CDATA[")) {
			j := bytes.Index(b[i:], []byte("]]>"))
			if j < 0 {
				return 0
			}
			i += j + 3
			continue
		}
		e := TagEnd(b, i)
		if e < 0 {
			return 0
		}
		switch {
		case b[i+1] == '/':
			depth--
		case b[e-2] == '/':
			// An empty element: the depth does not change.
		default:
			depth++
		}
		i = e
		if depth == 0 {
			return i
		}
	}
	return 0
}

// TagEnd returns the index just past the tag that starts at b[i] ('<'), or
// -1 if the tag is not complete; a '>' inside a quoted attribute value
// does not end it.
func TagEnd(b []byte, i int) int {
	var quote byte
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case c == '>':
			return j + 1
		}
	}
	return -1
}

// Standalone returns el (one element of a client stream, not the header
// or the closing tag) with the namespace declarations it needs outside
// the stream: xmlns:stream on stream-level elements (<stream:features/>,
// <stream:error/>), xmlns='jabber:client' on stanzas that have none. It
// returns el itself when nothing is missing, else a new slice.
func Standalone(el []byte) []byte {
	switch {
	case bytes.HasPrefix(el, []byte("<stream:")):
		if !bytes.Contains(startTag(el), []byte("xmlns:stream=")) {
			return WithAttr(el, " xmlns:stream='"+nsStream+"'")
		}
	case bytes.HasPrefix(el, []byte("<message")) || bytes.HasPrefix(el, []byte("<presence")) || bytes.HasPrefix(el, []byte("<iq")):
		if !HasOwnXMLNS(el) {
			return WithAttr(el, " xmlns='"+nsClient+"'")
		}
	}
	return el
}

// WithAttr returns a copy of el with attr (starting with a space) inserted
// after the element's name.
func WithAttr(el []byte, attr string) []byte {
	i := 1
	for i < len(el) && el[i] != '>' && el[i] != '/' && !isSpace(el[i]) {
		i++
	}
	out := make([]byte, 0, len(el)+len(attr))
	out = append(out, el[:i]...)
	out = append(out, attr...)
	return append(out, el[i:]...)
}

// HasOwnXMLNS reports whether the start tag of el declares a default
// namespace.
func HasOwnXMLNS(el []byte) bool {
	tag := startTag(el)
	// Skip the element's name, then walk the attributes: name, optional
	// white space, '=', optional white space, a quoted value.
	i := 1
	for i < len(tag) && !isSpace(tag[i]) && tag[i] != '/' && tag[i] != '>' {
		i++
	}
	for i < len(tag) {
		for i < len(tag) && isSpace(tag[i]) {
			i++
		}
		start := i
		for i < len(tag) && !isSpace(tag[i]) && tag[i] != '=' && tag[i] != '/' && tag[i] != '>' {
			i++
		}
		name := tag[start:i]
		for i < len(tag) && isSpace(tag[i]) {
			i++
		}
		if i >= len(tag) || tag[i] != '=' {
			return false
		}
		i++
		for i < len(tag) && isSpace(tag[i]) {
			i++
		}
		if i >= len(tag) || tag[i] != '\'' && tag[i] != '"' {
			return false
		}
		q := tag[i]
		end := bytes.IndexByte(tag[i+1:], q)
		if end < 0 {
			return false
		}
		if string(name) == "xmlns" {
			return true
		}
		i += end + 2
	}
	return false
}

func startTag(el []byte) []byte {
	end := TagEnd(el, 0)
	if end < 0 {
		return nil
	}
	return el[:end]
}

func isSpace(c byte) bool { return c == ' ' || c == '\n' || c == '\r' || c == '\t' }
