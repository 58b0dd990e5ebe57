package treff

import (
	"bytes"

	"github.com/treff-im/treff/internal/xmlscan"
)

// Client state indication (XEP-0352): a client that says it is inactive
// (a phone with its screen off) is sent only what the user would want to
// be woken for. Presence updates and messages without content (chat
// states) are held back, only the latest presence of each sender is
// kept, and everything held is sent, in order, just before the next
// stanza that matters (a message with a body, an IQ, a subscription
// request) or when the client becomes active again.

const nsCSI = "urn:xmpp:csi:0"

// Bounds of what an inactive session holds back before it sends it all.
const (
	csiMaxHeld      = 100
	csiMaxHeldBytes = 64 << 10
)

// csiState is a session's client state, under Session.mu.
type csiState struct {
	inactive bool
	held     [][]byte
	bytes    int
}

// hold keeps raw back if it can wait and there is room, and reports
// whether it did.
func (c *csiState) hold(raw []byte) bool {
	if important(raw) || len(c.held) >= csiMaxHeld || c.bytes+len(raw) > csiMaxHeldBytes {
		return false
	}
	if bytes.HasPrefix(raw, []byte("<presence")) {
		// A newer presence from the same sender replaces the older one.
		from := attrOf(raw, "from")
		for i, h := range c.held {
			if bytes.HasPrefix(h, []byte("<presence")) && bytes.Equal(attrOf(h, "from"), from) {
				c.bytes -= len(h)
				c.held = append(c.held[:i], c.held[i+1:]...)
				break
			}
		}
	}
	c.held = append(c.held, raw)
	c.bytes += len(raw)
	return true
}

// take returns and forgets what was held.
func (c *csiState) take() [][]byte {
	h := c.held
	c.held, c.bytes = nil, 0
	return h
}

// important reports whether a stanza should reach an inactive client at
// once: IQs, subscription requests and errors, and messages with a body,
// a subject or encrypted content (or a carbon or archive result carrying
// one), or a call invitation.
func important(raw []byte) bool {
	switch {
	case bytes.HasPrefix(raw, []byte("<presence")):
		t := attrOf(raw, "type")
		return len(t) > 0 && string(t) != "unavailable"
	case bytes.HasPrefix(raw, []byte("<message")):
		for _, k := range [...]string{"<body", "<subject", "<encrypted", "urn:xmpp:jingle-message:0", ":body", ":encrypted"} {
			if bytes.Contains(raw, []byte(k)) {
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

// csiElement handles <active/> and <inactive/> from the client.
func (s *Session) csiElement(el *xmlscan.Element) {
	switch el.Name {
	case "inactive":
		s.mu.Lock()
		s.csi.inactive = true
		s.mu.Unlock()
	case "active":
		s.mu.Lock()
		s.csi.inactive = false
		fail := s.sendHeldLocked()
		s.mu.Unlock()
		if fail != nil {
			s.closeStream(*fail)
		}
	default:
		s.closeStream(streamError{cond: "unsupported-stanza-type"})
	}
}

// Inactive reports whether the client said it is inactive (XEP-0352).
func (s *Session) Inactive() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.csi.inactive
}

// sendHeldLocked sends what client state indication held back, in order
// (under s.mu), and returns the stream error to close with, if any.
func (s *Session) sendHeldLocked() *streamError {
	for _, raw := range s.csi.take() {
		if e := s.sendLocked(raw); e != nil {
			return e
		}
	}
	return nil
}
