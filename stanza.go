package treff

import (
	"bytes"
	"encoding/xml"
	"errors"
	"iter"
	"strings"
	"unsafe"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff/internal/xmlscan"
	"github.com/treff-im/treff/router"
	"github.com/treff-im/treff/stanza"
)

// Kind is the kind of a stanza: message, presence or IQ.
type Kind = router.Kind

// Stanza kinds.
const (
	KindMessage  = router.Message
	KindPresence = router.Presence
	KindIQ       = router.IQ
)

// Stanza is a message, presence or IQ stanza as the server routes it.
//
// The element is parsed once when it arrives: the addressing attributes and
// the name of the first child are at hand, the rest stays serialised and is
// forwarded as bytes. A module that needs the content decodes it from Raw
// (with encoding/xml, for example). A Stanza is immutable once routed and may
// be shared between goroutines; to change it, build a new one with
// NewStanza.
type Stanza struct {
	// Kind is message, presence or IQ.
	Kind Kind
	// To is the addressee; the zero JID if the stanza had no 'to'.
	To jid.JID
	// From is the sender as stamped by the server for stanzas from local
	// clients, or as given for stanzas a module builds.
	From jid.JID
	// Type is the value of the 'type' attribute ("" if absent).
	Type string
	// ID is the value of the 'id' attribute ("" if absent).
	ID string
	// Payload is the name of the first child element, with the namespace
	// declared on it (the IQ payload, or the first extension of a message).
	Payload xml.Name

	el  *xmlscan.Element
	raw []byte
}

// Raw returns the serialised stanza as it is delivered. The caller must not
// modify it.
func (st *Stanza) Raw() []byte { return st.raw }

// Attr returns the value of an attribute of the stanza's own element as
// it was received: for a client's stanza, before the server stamped
// 'from' and dropped an explicit xmlns (use From, and Raw for what is
// delivered).
func (st *Stanza) Attr(name string) (string, bool) { return st.el.Attr(name) }

// Inner returns the stanza's content between its start and end tags.
func (st *Stanza) Inner() string { return st.el.Inner() }

// Children returns an iterator over the stanza's child elements in
// document order, read from Raw without copying it (see stanza.Children;
// unqualified children are in jabber:client). Each Child's Offset is its
// place in Raw, and its own children are at hand through Child.Children.
// A walk allocates nothing.
//
//	for c := range st.Children() {
//		if c.Name == (xml.Name{Space: "urn:xmpp:hints", Local: "no-store"}) {
//			return
//		}
//	}
func (st *Stanza) Children() iter.Seq[stanza.Child] {
	return stanza.Children(rawString(st.raw), nsClient)
}

// rawString returns raw as a string without copying it. Raw is never
// modified once the stanza exists (see NewStanza), so the string is as
// immutable as Go requires.
func rawString(raw []byte) string { return unsafe.String(unsafe.SliceData(raw), len(raw)) }

// Decoder returns a decoder over the stanza, positioned before its start
// element, for modules that need its full content.
func (st *Stanza) Decoder() *xml.Decoder {
	return xml.NewDecoder(strings.NewReader(st.el.Raw))
}

// DecodePayload decodes the stanza's first child element (an IQ's
// payload) into v with encoding/xml. It returns an error if there is none
// or it does not decode.
func (st *Stanza) DecodePayload(v any) error {
	d := st.Decoder()
	depth := 0
	for {
		tok, err := d.Token()
		if err != nil {
			return err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if depth == 1 {
				return d.DecodeElement(v, &t)
			}
			depth++
		case xml.EndElement:
			depth--
			if depth == 0 {
				return errors.New("treff: the stanza has no payload")
			}
		}
	}
}

// String returns the stanza's XML.
func (st *Stanza) String() string { return string(st.raw) }

// ErrBadStanza is returned by NewStanza for input that is not one
// well-formed message, presence or iq element with valid addresses.
var ErrBadStanza = errors.New("treff: not a valid stanza")

// NewStanza parses one serialised message, presence or iq element in the
// jabber:client namespace (written without an xmlns attribute, as it appears
// on a client stream) for routing with Server.Route. The stanza keeps raw
// as its Raw: the caller must not modify it afterwards.
func NewStanza(raw []byte) (*Stanza, error) {
	el, err := xmlscan.Parse(raw, 0)
	if err != nil {
		return nil, errors.Join(ErrBadStanza, err)
	}
	st, err := stanzaFrom(el)
	if err != nil {
		return nil, err
	}
	st.raw = raw
	return st, nil
}

// stanzaFrom fills a Stanza from a scanned element without setting raw.
func stanzaFrom(el *xmlscan.Element) (*Stanza, error) {
	st := &Stanza{el: el}
	switch el.Name {
	case "message":
		st.Kind = KindMessage
	case "presence":
		st.Kind = KindPresence
	case "iq":
		st.Kind = KindIQ
	default:
		return nil, ErrBadStanza
	}
	if ns := el.NS(); ns != "" && ns != nsClient {
		return nil, ErrBadStanza
	}
	var bad error
	for i := range el.Attrs {
		a := &el.Attrs[i]
		var err error
		switch a.Name {
		case "to":
			if st.To, err = parseJID(a.Value); err != nil {
				bad = errBadJID
			}
		case "from":
			if st.From, err = parseJID(a.Value); err != nil {
				bad = errBadJID
			}
		case "type":
			st.Type = a.Value
		case "id":
			st.ID = a.Value
		}
	}
	if el.Child != "" {
		st.Payload = xml.Name{Space: el.ChildNS, Local: el.Child}
		if i := strings.IndexByte(el.Child, ':'); i >= 0 {
			st.Payload.Local = el.Child[i+1:]
		}
	}
	return st, bad
}

var errBadJID = errors.New("treff: malformed JID")

// parseJID parses and normalises a JID, from a cache when the same address
// was seen recently.
func parseJID(s string) (jid.JID, error) {
	return parsedJIDs.parse(s)
}

const (
	nsClient   = "jabber:client"
	nsStanzas  = stanza.NS
	nsStreams  = "urn:ietf:params:xml:ns:xmpp-streams"
	nsStream   = "http://etherx.jabber.org/streams"
	nsSASL     = "urn:ietf:params:xml:ns:xmpp-sasl"
	nsSASLCB   = "urn:xmpp:sasl-cb:0" // XEP-0440
	nsTLS      = "urn:ietf:params:xml:ns:xmpp-tls"
	nsBind     = "urn:ietf:params:xml:ns:xmpp-bind"
	nsSession  = "urn:ietf:params:xml:ns:xmpp-session"
	nsXMLSpace = "http://www.w3.org/XML/1998/namespace"
)

// The stanza errors the server itself sends.
var (
	errBadRequest          = stanza.Error{Condition: stanza.BadRequest}
	errJIDMalformed        = stanza.Error{Condition: stanza.JIDMalformed}
	errServiceUnavailable  = stanza.Error{Condition: stanza.ServiceUnavailable}
	errInternalServerError = stanza.Error{Condition: stanza.InternalServerError}
	errRemoteNotFound      = stanza.Error{Condition: stanza.RemoteServerNotFound}
)

// AppendError appends to dst the error response to st (RFC 6120 8.3.1):
// the same kind and id, addresses swapped, type 'error', and the error
// element of err. err is a stanza.Condition or stanza.Error, possibly
// wrapped (see stanza.FromError); any other error, nil included, is sent
// as <internal-server-error/>. The original payload is not echoed.
func AppendError(dst []byte, st *Stanza, err error) []byte {
	e, ok := stanza.FromError(err)
	if !ok {
		e = errInternalServerError
	}
	name := st.el.Name
	dst = append(dst, '<')
	dst = append(dst, name...)
	dst = append(dst, " type='error'"...)
	if st.ID != "" {
		dst = appendAttr(dst, "id", st.ID)
	}
	if !st.From.Equal(jid.JID{}) {
		dst = appendAttr(dst, "to", st.From.String())
	}
	if !st.To.Equal(jid.JID{}) {
		dst = appendAttr(dst, "from", st.To.String())
	}
	dst = append(dst, '>')
	dst = e.AppendXML(dst)
	dst = append(dst, "</"...)
	dst = append(dst, name...)
	return append(dst, '>')
}

// AppendResult appends to dst the result response to the IQ st with the given
// serialised payload (which may be empty).
func AppendResult(dst []byte, st *Stanza, payload []byte) []byte {
	dst = append(dst, "<iq type='result'"...)
	dst = appendAttr(dst, "id", st.ID)
	if !st.From.Equal(jid.JID{}) {
		dst = appendAttr(dst, "to", st.From.String())
	}
	if !st.To.Equal(jid.JID{}) {
		dst = appendAttr(dst, "from", st.To.String())
	}
	if len(payload) == 0 {
		return append(dst, "/>"...)
	}
	dst = append(dst, '>')
	dst = append(dst, payload...)
	return append(dst, "</iq>"...)
}

func appendAttr(dst []byte, name, val string) []byte {
	dst = append(dst, ' ')
	dst = append(dst, name...)
	dst = append(dst, "='"...)
	dst = AppendEscaped(dst, val)
	return append(dst, '\'')
}

// AppendEscaped appends s to dst escaped for use in XML character data or
// in an attribute value quoted with either quote; see
// stanza.AppendEscaped, which it calls.
func AppendEscaped(dst []byte, s string) []byte { return stanza.AppendEscaped(dst, s) }

// WithAddresses returns a copy of st with its 'from' and 'to' attributes
// replaced (a zero JID omits the attribute); the rest of the element is
// copied as bytes.
func (st *Stanza) WithAddresses(from, to jid.JID) *Stanza {
	var extra []byte
	if !from.Equal(jid.JID{}) {
		extra = appendAttr(extra, "from", from.String())
	}
	if !to.Equal(jid.JID{}) {
		extra = appendAttr(extra, "to", to.String())
	}
	c := *st
	c.From, c.To = from, to
	c.raw = st.el.AppendWithout(make([]byte, 0, len(st.el.Raw)+len(extra)), string(extra), "from", "to")
	return &c
}

// ErrRewrite is returned by Stanza.Rewrite for a new serialisation that
// changes the stanza's kind or addresses.
var ErrRewrite = errors.New("treff: a rewrite may not change a stanza's kind or addresses")

// Rewrite replaces the stanza's content with raw, which must be a valid
// stanza of the same kind with the same 'from' and 'to' (an archive adding
// a stanza-id, a module adding an avatar hash to presence). Only hooks
// that see the stanza before it is delivered (OnClientStanza,
// OnAccountOutbound, OnAccountStanza) may call it, on the stanza they were
// given; later hooks and the delivery see the new content. On error st is
// unchanged.
func (st *Stanza) Rewrite(raw []byte) error {
	n, err := NewStanza(raw)
	if err != nil {
		return err
	}
	if n.To.Equal(jid.JID{}) {
		n.To = st.To // a client's message without 'to' is for its own account
	}
	if n.Kind != st.Kind || !n.To.Equal(st.To) || !n.From.Equal(st.From) {
		return ErrRewrite
	}
	*st = *n
	return nil
}

// AddChild rewrites the stanza (see Rewrite) with child, one serialised
// element, appended to its content. It is EditChildren(nil, child).
func (st *Stanza) AddChild(child []byte) error { return st.EditChildren(nil, child) }

// EditChildren rewrites the stanza (see Rewrite) without the child
// elements for which drop reports true (drop nil: none) and with add, one
// serialised element (nil: none), appended to its content, in one step.
// Unlike Rewrite it does not parse the whole stanza again: only add is
// parsed, to check that it is one well-formed element, and the rest is
// copied as bytes once (the stanza's start tag, and so its kind,
// addresses, type and id, cannot change). Only when the first child goes,
// or a stanza without children gets one, is the result parsed again, for
// Payload. On error st is unchanged.
func (st *Stanza) EditChildren(drop func(stanza.Child) bool, add []byte) error {
	if add != nil {
		if err := xmlscan.Check(add, 0); err != nil {
			return errors.Join(ErrBadStanza, err)
		}
	}
	raw := st.raw
	var cuts [4][2]int
	cut := cuts[:0]
	firstGone := false
	if drop != nil {
		i := 0
		for c := range st.Children() {
			if drop(c) {
				cut = append(cut, [2]int{c.Offset(), c.Offset() + len(c.Raw())})
				firstGone = firstGone || i == 0
			}
			i++
		}
	}
	if len(cut) == 0 && add == nil {
		return nil
	}
	trimmed := bytes.TrimRight(raw, " \t\r\n") // NewStanza keeps trailing white space
	size := len(trimmed) + len(add) + len(st.el.Name) + 3
	// body is where raw's content begins: the element keeps its start tag
	// as received (see Attr), which may differ from raw's (the server
	// stamps 'from', WithAddresses rewrites the addresses); what follows
	// the start tag is the same in both.
	body := len(raw) - (len(st.el.Raw) - st.el.StartEnd)
	extra := 0
	if !st.el.Empty && !firstGone && st.el.Child != "" && body >= 0 &&
		!(body == st.el.StartEnd && unsafe.StringData(st.el.Raw) == unsafe.SliceData(raw)) {
		// The element's new Raw (its start tag and b's content) goes in
		// the same allocation, after b (see below).
		extra = st.el.StartEnd + size - body
	}
	b := make([]byte, 0, size+extra)
	last := 0
	for _, c := range cut {
		b = append(b, trimmed[last:c[0]]...)
		last = c[1]
	}
	if st.el.Empty {
		// <message .../> becomes <message ...>add</message>
		b = append(b, trimmed[last:len(trimmed)-2]...)
		b = append(b, '>')
		b = append(b, add...)
		b = append(b, "</"...)
		b = append(b, st.el.Name...)
		b = append(b, '>')
		return st.Rewrite(b)
	}
	end := bytes.LastIndex(trimmed, []byte("</"))
	if end < last {
		return st.Rewrite(append(b, trimmed[last:]...)) // cannot happen for a parsed stanza
	}
	b = append(b, trimmed[last:end]...)
	b = append(b, add...)
	b = append(b, trimmed[end:]...)
	if firstGone || st.el.Child == "" {
		return st.Rewrite(b)
	}
	el := *st.el
	switch {
	case body < 0 || len(cut) > 0 && cut[0][0] < body || body > end || rawString(raw[body:]) != el.Raw[el.StartEnd:]:
		return st.Rewrite(b) // not a stanza NewStanza made; cannot happen
	case body == el.StartEnd && unsafe.StringData(el.Raw) == unsafe.SliceData(raw):
		el.Raw = rawString(b) // b is not modified again
	case cap(b)-len(b) >= el.StartEnd+len(b)-body:
		// In b's array after b, which nothing else uses: b is capped.
		r := append(b[len(b):len(b)], el.Raw[:el.StartEnd]...)
		el.Raw = rawString(append(r, b[body:]...))
		b = b[:len(b):len(b)]
	default:
		el.Raw = el.Raw[:el.StartEnd] + rawString(b[body:])
	}
	// el.Attrs still points into the old element's attributes, which
	// nothing modifies: the start tag is the same.
	st.el, st.raw = &el, b
	return nil
}
