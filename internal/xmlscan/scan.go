// Package xmlscan reads an XMPP stream (RFC 6120 section 4 and 11) one
// top-level element at a time.
//
// It is a byte-level scanner, not a general XML parser: it checks that each
// element is well-formed and uses only the restricted XML that RFC 6120
// section 11.1 allows, enforces a size limit, and returns the element's raw
// bytes together with the few facts routing needs (its name, attributes, the
// first child's name and namespace). The element is parsed once; modules that
// need more decode Raw lazily. An element costs a handful of allocations, none
// per token.
package xmlscan

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"unicode/utf8"
)

// Errors returned by the scanner. Each maps to a stream error condition of
// RFC 6120 section 4.9.3.
var (
	// ErrNotWellFormed: the data is not well-formed XML (not-well-formed).
	ErrNotWellFormed = errors.New("xmlscan: not well-formed")
	// ErrRestrictedXML: a comment, processing instruction, DTD or entity
	// reference that RFC 6120 forbids (restricted-xml).
	ErrRestrictedXML = errors.New("xmlscan: restricted XML")
	// ErrTooLarge: an element exceeded the size limit (policy-violation).
	ErrTooLarge = errors.New("xmlscan: element too large")
	// ErrBadPrefix: an element uses a namespace prefix it does not declare
	// itself (bad-namespace-prefix).
	ErrBadPrefix = errors.New("xmlscan: undeclared namespace prefix")
	// ErrUnsupportedEncoding: the XML declaration names an encoding other
	// than UTF-8 (unsupported-encoding).
	ErrUnsupportedEncoding = errors.New("xmlscan: unsupported encoding")
	// ErrStreamEnd: the peer closed the stream with </stream:stream>.
	ErrStreamEnd = errors.New("xmlscan: end of stream")
	// ErrNamespace: a start tag that Namespaces in XML 1.0 forbids: a
	// name that is not a QName (a:b:c, :a, a:), a reserved prefix or
	// namespace misused (xmlns:xml='urn:x', xmlns:xmlns=...), a prefix
	// undeclared with xmlns:p='', or two attributes with the same
	// expanded name. It wraps ErrNotWellFormed: RFC 6120 4.9.3.13 counts
	// violations of [XML-NAMES] as not well-formed (not-well-formed).
	ErrNamespace = fmt.Errorf("%w: namespace constraint violated", ErrNotWellFormed)
	// ErrTooManyAttrs: a start tag has more attributes than the limit
	// (policy-violation).
	ErrTooManyAttrs = errors.New("xmlscan: too many attributes")
	// ErrNestedStream: a stream header inside the stream, after it was
	// opened and before a restart (invalid-xml).
	ErrNestedStream = errors.New("xmlscan: stream header inside the stream")
)

// DefaultMaxAttrs is the attribute limit of a new scanner, per start tag:
// generous for any XMPP element (the busiest carry about ten) and the
// limit before authentication, when anyone can send.
const DefaultMaxAttrs = 100

// ErrNoData is what a reader returns to say that no data is there now and
// that it would have to wait. When Next gets it before reading any byte of
// an element, Next returns it and the scanner stays usable: call Next again
// when the reader has data. It is a net.Error whose Temporary method
// reports true, so that crypto/tls passes it through and stays usable too.
var ErrNoData error = noData{}

type noData struct{}

func (noData) Error() string   { return "xmlscan: no data now" }
func (noData) Timeout() bool   { return false }
func (noData) Temporary() bool { return true }

// Attr is one attribute of an element's start tag.
type Attr struct {
	// Name is the qualified name as written ("to", "xml:lang", "xmlns:x").
	Name string
	// Value is the attribute value with entities resolved.
	Value string
	// off and end delimit the attribute in Element.Raw, including the
	// whitespace before it.
	off, end int
}

// Element is one top-level element of the stream.
type Element struct {
	// Raw is the element exactly as received.
	Raw string
	// Name is the element's qualified name as written ("message",
	// "stream:error").
	Name string
	// Attrs are the attributes of the start tag in document order.
	Attrs []Attr
	// TagEnd is the offset in Raw just past the start tag's name, where
	// attributes begin.
	TagEnd int
	// StartEnd is the offset in Raw just past the start tag ('>' or "/>").
	StartEnd int
	// Empty reports a self-closing element (<x/>).
	Empty bool
	// Child is the qualified name of the first child element, or "".
	Child string
	// ChildNS is the namespace declared for the first child element: its
	// xmlns attribute, or for a prefixed child the prefix's declaration
	// (on the child or the top element); "" if none.
	ChildNS string

	attrs [6]Attr
}

// Attr returns the value of the named attribute and whether it is present.
func (e *Element) Attr(name string) (string, bool) {
	for i := range e.Attrs {
		if e.Attrs[i].Name == name {
			return e.Attrs[i].Value, true
		}
	}
	return "", false
}

// NS returns the value of the element's own xmlns attribute, or "".
func (e *Element) NS() string {
	v, _ := e.Attr("xmlns")
	return v
}

// Space returns the element's namespace as declared on it: its xmlns
// attribute, or for a prefixed name the prefix's xmlns:p attribute; "" if
// the element declares none (a prefix declared on the stream header is
// not seen here).
func (e *Element) Space() string {
	if i := strings.IndexByte(e.Name, ':'); i >= 0 {
		for _, a := range e.Attrs {
			if len(a.Name) == 6+i && a.Name[:6] == "xmlns:" && a.Name[6:] == e.Name[:i] {
				return a.Value
			}
		}
		return ""
	}
	return e.NS()
}

// Local returns the local part of the element's name.
func (e *Element) Local() string {
	if i := strings.IndexByte(e.Name, ':'); i >= 0 {
		return e.Name[i+1:]
	}
	return e.Name
}

// Inner returns the element's content between its start and end tag.
func (e *Element) Inner() string {
	if e.Empty {
		return ""
	}
	end := strings.LastIndexByte(e.Raw, '<')
	if end < e.StartEnd {
		return ""
	}
	return e.Raw[e.StartEnd:end]
}

// AppendWithout appends the element to dst with the named attributes removed
// and extra (which must start with a space, e.g. ` from='a@b/c'`) inserted
// right after the element name. It serves to stamp or rewrite addresses
// without re-serialising the element.
func (e *Element) AppendWithout(dst []byte, extra string, names ...string) []byte {
	dst = append(dst, e.Raw[:e.TagEnd]...)
	dst = append(dst, extra...)
	pos := e.TagEnd
	for i := range e.Attrs {
		a := &e.Attrs[i]
		for _, n := range names {
			if a.Name == n {
				dst = append(dst, e.Raw[pos:a.off]...)
				pos = a.end
				break
			}
		}
	}
	return append(dst, e.Raw[pos:]...)
}

// Scanner reads top-level elements from a stream.
type Scanner struct {
	r        io.Reader
	max      int
	maxAttrs int // per start tag

	buf   []byte  // buf[:n] holds data; buf[pos:n] is unread; nil after Release
	pbuf  *[]byte // buf's pooled backing, if it came from bufPool
	n     int
	pos   int
	start int // start of the element being scanned
	rerr  error

	streamName    string       // qualified name of the stream element
	streamDecls   []streamDecl // the prefixes the stream header declares
	streamDefault string       // the stream header's default namespace
	// scratch for element scanning, reused between elements
	stack     []span
	prefix    []prefixDecl     // declarations in scope
	prefixIdx map[string]int32 // prefix to its innermost declaration, when indexed
	indexed   bool
	attrTmp   []rawAttr
	table     []int32 // uniqueHashed's table
	check     bool    // Check: scan, but build no Element (done returns &checked)
}

type span struct{ off, end int }

type rawAttr struct {
	name, val span
	off, end  int
	colon     int32 // end of the name's prefix, or -1; set by startTag
	escaped   bool
}

// NewScanner returns a scanner reading from r that refuses elements larger
// than max bytes (max <= 0 means 256 KiB) and start tags with more than
// DefaultMaxAttrs attributes (see SetMaxAttrs).
func NewScanner(r io.Reader, max int) *Scanner {
	if max <= 0 {
		max = 256 << 10
	}
	return &Scanner{r: r, max: max, maxAttrs: DefaultMaxAttrs}
}

// SetMaxAttrs sets the most attributes a start tag may have, for the
// header and the elements read from now on; n <= 0 means
// DefaultMaxAttrs. A stream raises it once its peer is authenticated.
func (s *Scanner) SetMaxAttrs(n int) {
	if n <= 0 {
		n = DefaultMaxAttrs
	}
	s.maxAttrs = n
}

const bufSize = 4096

var bufPool = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}

// Release gives the read buffer back if nothing is buffered, so that an
// idle stream holds none; the next read takes one again.
func (s *Scanner) Release() {
	if s.pos != s.n || s.buf == nil {
		return
	}
	if s.pbuf != nil && len(s.buf) == bufSize {
		bufPool.Put(s.pbuf)
	}
	s.buf, s.pbuf = nil, nil
	s.n, s.pos, s.start = 0, 0, 0
	s.stack, s.prefix, s.attrTmp, s.table = nil, nil, nil, nil
	s.prefixIdx, s.indexed = nil, false
}

// Reset makes the scanner read from r with an empty buffer, as needed after
// STARTTLS or a SASL stream restart. It keeps the size limit.
func (s *Scanner) Reset(r io.Reader) {
	s.r = r
	s.n, s.pos, s.start = 0, 0, 0
	s.rerr = nil
	s.streamName = ""
}

// Buffered returns the number of bytes read from the connection but not yet
// consumed. After <starttls/> it must be zero: bytes sent before the TLS
// handshake must not be processed as if they were protected.
func (s *Scanner) Buffered() int { return s.n - s.pos }

// BufferedSpace reports whether the bytes read but not yet consumed are
// all XML whitespace (none at all included): whitespace between elements
// means nothing, so a client may send it after <starttls/> (go-xmpp
// sends a newline) without anything being processed unprotected.
func (s *Scanner) BufferedSpace() bool {
	for _, b := range s.buf[s.pos:s.n] {
		if b != ' ' && b != '\t' && b != '\r' && b != '\n' {
			return false
		}
	}
	return true
}

// StreamName returns the qualified name of the stream element read by Header.
func (s *Scanner) StreamName() string { return s.streamName }

func (s *Scanner) fill() error {
	if s.rerr != nil {
		return s.rerr
	}
	if s.buf == nil {
		s.pbuf = bufPool.Get().(*[]byte)
		s.buf = *s.pbuf
	}
	if s.pos-s.start > s.max {
		return ErrTooLarge
	}
	if s.n == len(s.buf) {
		if s.start > 0 {
			// Compact: offsets recorded during scanning are relative to
			// s.start, so moving the element to the front is safe.
			copy(s.buf, s.buf[s.start:s.n])
			s.n -= s.start
			s.pos -= s.start
			s.start = 0
		}
		if s.n == len(s.buf) {
			size := min(2*len(s.buf), s.max+1)
			if size <= len(s.buf) {
				return ErrTooLarge
			}
			nb := make([]byte, size)
			copy(nb, s.buf[:s.n])
			if s.pbuf != nil {
				bufPool.Put(s.pbuf)
				s.pbuf = nil
			}
			s.buf = nb
		}
	}
	// Read no further than one byte past the largest element: the
	// limit then holds while scanning, and a stream header or element
	// that exceeds it is refused before more of it is read or scanned.
	end := min(len(s.buf), s.start+s.max+1)
	if end <= s.n {
		return ErrTooLarge
	}
	m, err := s.r.Read(s.buf[s.n:end])
	s.n += m
	if err == ErrNoData && m == 0 && s.pos == s.start {
		return err // nothing of an element read yet: not sticky
	}
	if err != nil {
		s.rerr = err
		if m > 0 {
			return nil
		}
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
			s.rerr = err
		}
		return err
	}
	return nil
}

// next returns the next byte.
func (s *Scanner) next() (byte, error) {
	for s.pos >= s.n {
		if err := s.fill(); err != nil {
			return 0, err
		}
	}
	b := s.buf[s.pos]
	s.pos++
	return b, nil
}

func (s *Scanner) peek() (byte, error) {
	for s.pos >= s.n {
		if err := s.fill(); err != nil {
			return 0, err
		}
	}
	return s.buf[s.pos], nil
}

func isSpace(b byte) bool { return b == ' ' || b == '\t' || b == '\n' || b == '\r' }

func isNameStart(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b == '_' || b == ':' || b >= 0x80
}

func isNameChar(b byte) bool {
	return isNameStart(b) || b >= '0' && b <= '9' || b == '-' || b == '.'
}

// skipSpace skips whitespace and returns the first other byte.
func (s *Scanner) skipSpace() (byte, error) {
	for {
		b, err := s.next()
		if err != nil || !isSpace(b) {
			return b, err
		}
	}
}

// name scans a name whose first byte b has been consumed, returning its span
// (relative to s.start) and the byte following it.
func (s *Scanner) name(b byte) (span, byte, error) {
	if !isNameStart(b) {
		return span{}, 0, ErrNotWellFormed
	}
	off := s.pos - 1 - s.start
	for {
		c, err := s.next()
		if err != nil {
			return span{}, 0, err
		}
		if !isNameChar(c) {
			return span{off, s.pos - 1 - s.start}, c, nil
		}
	}
}

func (s *Scanner) text(sp span) []byte { return s.buf[s.start+sp.off : s.start+sp.end] }

// Header reads the optional XML declaration and the stream's opening tag and
// returns the tag as an Element (Raw holds only the start tag). The element
// must be named stream in the namespace http://etherx.jabber.org/streams;
// checking its default namespace and attributes is the caller's job.
func (s *Scanner) Header() (*Element, error) {
	s.start = s.pos
	b, err := s.skipSpace()
	if err != nil {
		return nil, err
	}
	if b != '<' {
		return nil, ErrNotWellFormed
	}
	c, err := s.peek()
	if err != nil {
		return nil, err
	}
	if c == '?' {
		if err := s.xmlDecl(); err != nil {
			return nil, err
		}
		if b, err = s.skipSpace(); err != nil {
			return nil, err
		}
		if b != '<' {
			return nil, ErrNotWellFormed
		}
	}
	s.start = s.pos - 1
	b, err = s.next()
	if err != nil {
		return nil, err
	}
	if b == '!' || b == '?' {
		return nil, ErrRestrictedXML
	}
	nm, c, err := s.name(b)
	if err != nil {
		return nil, err
	}
	s.attrTmp = s.attrTmp[:0]
	c, err = s.attrs(c, 0)
	if err != nil {
		return nil, err
	}
	if c != '>' {
		return nil, ErrNotWellFormed
	}
	// The header is held to the same namespace rules as any start tag;
	// its prefixes are its own (there is no stream around it yet).
	s.streamName = ""
	s.resetPrefixes()
	if err := s.startTag(nm, s.attrTmp, 0); err != nil {
		return nil, err
	}
	if s.pos-s.start > s.max {
		// As for elements: refused whatever the sizes of the reads (fill
		// sees the size only when it has to read more).
		return nil, ErrTooLarge
	}
	if !validUTF8(s.buf[s.start:s.pos]) {
		return nil, ErrNotWellFormed // as Next checks elements
	}
	el := s.finish(nm, true)
	el.Empty = false
	el.StartEnd = len(el.Raw)
	qn := el.Name
	prefix := ""
	if i := strings.IndexByte(qn, ':'); i >= 0 {
		prefix = qn[:i]
	}
	ns := ""
	if prefix == "" {
		ns, _ = el.Attr("xmlns")
	} else {
		ns, _ = el.Attr("xmlns:" + prefix)
	}
	if el.Local() != "stream" || ns != "http://etherx.jabber.org/streams" {
		return el, ErrBadStreamHeader
	}
	s.streamName = strings.Clone(qn) // not a piece of the header's Raw
	s.streamDecls = s.streamDecls[:0]
	s.streamDefault = strings.Clone(el.NS())
	for _, a := range el.Attrs {
		if p, ok := strings.CutPrefix(a.Name, "xmlns:"); ok {
			s.streamDecls = append(s.streamDecls, streamDecl{strings.Clone(p), strings.Clone(a.Value)})
		}
	}
	return el, nil
}

// ErrBadStreamHeader reports an opening tag that is not a stream element in
// the streams namespace (invalid-namespace).
var ErrBadStreamHeader = errors.New("xmlscan: not a stream header")

// xmlDecl consumes "?xml ...?>" after '<'.
func (s *Scanner) xmlDecl() error {
	s.pos++ // '?'
	off := s.pos
	for i := 0; ; i++ {
		if i > 200 {
			return ErrNotWellFormed
		}
		b, err := s.next()
		if err != nil {
			return err
		}
		if b == '>' {
			break
		}
	}
	decl := s.buf[off : s.pos-1]
	if !bytes.HasPrefix(decl, []byte("xml")) || len(decl) < 4 || !isSpace(decl[3]) || decl[len(decl)-1] != '?' {
		return ErrRestrictedXML
	}
	if i := bytes.Index(decl, []byte("encoding")); i >= 0 {
		rest := bytes.TrimLeft(decl[i+len("encoding"):], " \t\r\n=")
		if len(rest) < 6 || !bytes.EqualFold(rest[1:6], []byte("utf-8")) || rest[6] != rest[0] {
			return ErrUnsupportedEncoding
		}
	}
	return nil
}

// attrs scans attributes starting at c (the byte after the name) and returns
// the byte that ends the tag: '>' or '/' (already checked to be followed by
// '>').
func (s *Scanner) attrs(c byte, first int) (byte, error) {
	var err error
	for {
		sawSpace := false
		for isSpace(c) {
			sawSpace = true
			if c, err = s.next(); err != nil {
				return 0, err
			}
		}
		switch c {
		case '>':
			return c, nil
		case '/':
			if c, err = s.next(); err != nil {
				return 0, err
			}
			if c != '>' {
				return 0, ErrNotWellFormed
			}
			return '/', nil
		}
		if !sawSpace {
			return 0, ErrNotWellFormed
		}
		if len(s.attrTmp)-first >= s.maxAttrs {
			return 0, ErrTooManyAttrs
		}
		var a rawAttr
		// the attribute's span starts at the whitespace before it
		a.off = s.pos - 1 - s.start
		for a.off > 0 && isSpace(s.buf[s.start+a.off-1]) {
			a.off--
		}
		if a.name, c, err = s.name(c); err != nil {
			return 0, err
		}
		for isSpace(c) {
			if c, err = s.next(); err != nil {
				return 0, err
			}
		}
		if c != '=' {
			return 0, ErrNotWellFormed
		}
		if c, err = s.skipSpace(); err != nil {
			return 0, err
		}
		if c != '"' && c != '\'' {
			return 0, ErrNotWellFormed
		}
		q := c
		a.val.off = s.pos - s.start
		for {
			if c, err = s.next(); err != nil {
				return 0, err
			}
			if c == q {
				break
			}
			switch {
			case c == '<':
				return 0, ErrNotWellFormed
			case c == '&':
				a.escaped = true
				if err := s.entity(); err != nil {
					return 0, err
				}
			case c == '\t' || c == '\n' || c == '\r':
				a.escaped = true
			case c < 0x20:
				return 0, ErrNotWellFormed
			}
		}
		a.val.end = s.pos - 1 - s.start
		a.end = s.pos - s.start
		// Duplicates are found by startTag, in linear time.
		s.attrTmp = append(s.attrTmp, a)
		if c, err = s.next(); err != nil {
			return 0, err
		}
	}
}

// entity checks an entity reference after '&'.
func (s *Scanner) entity() error {
	var ref [12]byte
	n := 0
	for {
		c, err := s.next()
		if err != nil {
			return err
		}
		if c == ';' {
			break
		}
		if n == len(ref) || !isNameChar(c) && c != '#' {
			return ErrNotWellFormed
		}
		ref[n] = c
		n++
	}
	r := ref[:n]
	switch string(r) {
	case "lt", "gt", "amp", "quot", "apos":
		return nil
	}
	if n >= 2 && r[0] == '#' {
		if _, ok := charRef(r[1:]); ok {
			return nil
		}
		return ErrNotWellFormed
	}
	if n > 0 && isNameStart(r[0]) {
		return ErrRestrictedXML
	}
	return ErrNotWellFormed
}

func charRef(r []byte) (rune, bool) {
	var v rune
	if len(r) > 1 && r[0] == 'x' {
		for _, c := range r[1:] {
			switch {
			case c >= '0' && c <= '9':
				v = v*16 + rune(c-'0')
			case c >= 'a' && c <= 'f':
				v = v*16 + rune(c-'a'+10)
			case c >= 'A' && c <= 'F':
				v = v*16 + rune(c-'A'+10)
			default:
				return 0, false
			}
			if v > 0x10FFFF {
				return 0, false
			}
		}
	} else {
		if len(r) == 0 {
			return 0, false
		}
		for _, c := range r {
			if c < '0' || c > '9' {
				return 0, false
			}
			v = v*10 + rune(c-'0')
			if v > 0x10FFFF {
				return 0, false
			}
		}
	}
	return v, isChar(v)
}

func isChar(r rune) bool {
	return r == 0x9 || r == 0xA || r == 0xD || r >= 0x20 && r <= 0xD7FF ||
		r >= 0xE000 && r <= 0xFFFD || r >= 0x10000 && r <= 0x10FFFF
}

// Next reads the next top-level element. Whitespace between elements is
// skipped. At </stream:stream> it returns ErrStreamEnd.
func (s *Scanner) Next() (*Element, error) {
	// Drop the previous element from the buffer.
	if s.pos == s.n {
		s.pos, s.n = 0, 0
	}
	s.start = s.pos
	b, err := s.skipSpace()
	if err != nil {
		if err == io.ErrUnexpectedEOF {
			err = io.EOF
		}
		return nil, err
	}
	if b != '<' {
		return nil, ErrNotWellFormed
	}
	s.start = s.pos - 1
	b, err = s.next()
	if err != nil {
		return nil, err
	}
	switch b {
	case '/':
		c, err := s.next()
		if err != nil {
			return nil, err
		}
		nm, c, err := s.name(c)
		if err != nil {
			return nil, err
		}
		for isSpace(c) {
			if c, err = s.next(); err != nil {
				return nil, err
			}
		}
		if c != '>' || string(s.text(nm)) != s.streamName {
			return nil, ErrNotWellFormed
		}
		return nil, ErrStreamEnd
	case '!', '?':
		return nil, ErrRestrictedXML
	}
	return s.element(b)
}

func (s *Scanner) element(b byte) (*Element, error) {
	s.stack = s.stack[:0]
	s.resetPrefixes()
	s.attrTmp = s.attrTmp[:0]
	var top span
	startEnd := 0
	child := span{-1, -1}
	var childNS rawAttr
	hasChildNS := false
	for {
		// b is the first byte of a name after '<'.
		nm, c, err := s.name(b)
		if err != nil {
			return nil, err
		}
		depth := len(s.stack)
		attrStart := len(s.attrTmp)
		if c, err = s.attrs(c, attrStart); err != nil {
			return nil, err
		}
		if err := s.startTag(nm, s.attrTmp[attrStart:], depth); err != nil {
			return nil, err
		}
		if depth == 0 && s.streamName != "" && s.nestedStream(nm, s.attrTmp) {
			// Refused at its start tag: waiting for its end would
			// hang the stream.
			return nil, ErrNestedStream
		}
		if depth == 1 && child.off < 0 {
			child = nm
			// The child's namespace: its xmlns, or for a prefixed name
			// the prefix's declaration, on the child or on the top
			// element (checkPrefixes made sure there is one).
			want := "xmlns"
			if i := bytes.IndexByte(s.text(nm), ':'); i >= 0 {
				want = "xmlns:" + string(s.text(nm)[:i])
			}
			for _, a := range s.attrTmp[attrStart:] {
				if string(s.text(a.name)) == want {
					childNS, hasChildNS = a, true
				}
			}
			if !hasChildNS && want != "xmlns" {
				for _, a := range s.attrTmp[:attrStart] {
					if string(s.text(a.name)) == want {
						childNS, hasChildNS = a, true
					}
				}
			}
		}
		if depth == 0 {
			top = nm
			startEnd = s.pos - s.start
		} else {
			// keep only the top element's attributes
			s.attrTmp = s.attrTmp[:attrStart]
		}
		if c == '/' {
			s.popPrefixes(depth)
			if depth == 0 {
				return s.done(top, startEnd, child, childNS, hasChildNS, true)
			}
		} else {
			s.stack = append(s.stack, nm)
		}
		// content until the next start tag or the end of the top element
		for {
			c, err := s.content()
			if err != nil {
				return nil, err
			}
			if c != '/' {
				b = c
				break
			}
			if c, err = s.next(); err != nil {
				return nil, err
			}
			en, c, err := s.name(c)
			if err != nil {
				return nil, err
			}
			for isSpace(c) {
				if c, err = s.next(); err != nil {
					return nil, err
				}
			}
			if c != '>' {
				return nil, ErrNotWellFormed
			}
			open := s.stack[len(s.stack)-1]
			if !bytes.Equal(s.text(open), s.text(en)) {
				return nil, ErrNotWellFormed
			}
			s.stack = s.stack[:len(s.stack)-1]
			s.popPrefixes(len(s.stack))
			if len(s.stack) == 0 {
				return s.done(top, startEnd, child, childNS, hasChildNS, false)
			}
		}
	}
}

// content scans character data up to '<' and returns the byte after it
// ('/' for an end tag or the first byte of a child's name).
func (s *Scanner) content() (byte, error) {
	for {
		c, err := s.next()
		if err != nil {
			return 0, err
		}
		switch {
		case c == '<':
			c, err := s.next()
			if err != nil {
				return 0, err
			}
			switch c {
			case '?':
				return 0, ErrRestrictedXML
			case '!':
				if err := s.cdata(); err != nil {
					return 0, err
				}
				continue
			}
			return c, nil
		case c == '&':
			if err := s.entity(); err != nil {
				return 0, err
			}
		case c == '>':
			if s.pos-s.start >= 3 && s.buf[s.pos-2] == ']' && s.buf[s.pos-3] == ']' {
				return 0, ErrNotWellFormed
			}
		case c < 0x20 && c != '\t' && c != '\n' && c != '\r':
			return 0, ErrNotWellFormed
		}
	}
}

// cdata consumes a CDATA section after "<!"; anything else there (comment,
// DTD) is restricted XML.
func (s *Scanner) cdata() error {
	const open = "[CDATA["
	for i := 0; i < len(open); i++ {
		c, err := s.next()
		if err != nil {
			return err
		}
		if c != open[i] {
			return ErrRestrictedXML
		}
	}
	var p1, p2 byte
	for {
		c, err := s.next()
		if err != nil {
			return err
		}
		if c == '>' && p1 == ']' && p2 == ']' {
			return nil
		}
		if c < 0x20 && c != '\t' && c != '\n' && c != '\r' {
			return ErrNotWellFormed
		}
		p2, p1 = p1, c
	}
}

// done builds the Element for buf[start:pos].
func (s *Scanner) done(top span, startEnd int, child span, childNS rawAttr, hasChildNS, empty bool) (*Element, error) {
	raw := s.buf[s.start:s.pos]
	if len(raw) > s.max {
		return nil, ErrTooLarge
	}
	if !validUTF8(raw) {
		return nil, ErrNotWellFormed
	}
	if s.check {
		return &checked, nil
	}
	el := s.finish(top, empty)
	el.StartEnd = startEnd
	if child.off >= 0 {
		el.Child = el.Raw[child.off:child.end]
		if hasChildNS {
			el.ChildNS = attrValue(el.Raw, childNS)
		}
	}
	return el, nil
}

// finish copies the element out of the buffer and builds its Element.
func (s *Scanner) finish(top span, empty bool) *Element {
	el := &Element{Raw: string(s.buf[s.start:s.pos]), Empty: empty}
	el.Name = el.Raw[top.off:top.end]
	el.TagEnd = top.end
	el.Attrs = el.attrs[:0]
	for _, a := range s.attrTmp {
		el.Attrs = append(el.Attrs, Attr{
			Name:  el.Raw[a.name.off:a.name.end],
			Value: attrValue(el.Raw, a),
			off:   a.off,
			end:   a.end,
		})
	}
	return el
}

func attrValue(raw string, a rawAttr) string {
	v := raw[a.val.off:a.val.end]
	if !a.escaped {
		return v
	}
	return Unescape(v)
}

// Unescape resolves the predefined entities and character references of an
// attribute value or character data known to be well-formed, and normalises
// tab, newline and carriage return to spaces as XML requires for attributes.
func Unescape(v string) string {
	var b strings.Builder
	b.Grow(len(v))
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch c {
		case '\r':
			// Line ends are normalised before attribute values (XML 1.0
			// sections 2.11 and 3.3.3): "\r\n" is one space.
			if i+1 < len(v) && v[i+1] == '\n' {
				i++
			}
			b.WriteByte(' ')
		case '\t', '\n':
			b.WriteByte(' ')
		case '&':
			j := strings.IndexByte(v[i:], ';')
			if j < 0 {
				b.WriteByte(c)
				continue
			}
			ref := v[i+1 : i+j]
			i += j
			switch ref {
			case "lt":
				b.WriteByte('<')
			case "gt":
				b.WriteByte('>')
			case "amp":
				b.WriteByte('&')
			case "quot":
				b.WriteByte('"')
			case "apos":
				b.WriteByte('\'')
			default:
				if len(ref) > 1 && ref[0] == '#' {
					if r, ok := charRef([]byte(ref[1:])); ok {
						b.WriteRune(r)
					}
				}
			}
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// validUTF8 reports whether b is UTF-8 without the non-characters U+FFFE and
// U+FFFF (surrogates are already invalid UTF-8).
func validUTF8(b []byte) bool {
	ascii := true
	for _, c := range b {
		if c >= 0x80 {
			ascii = false
			break
		}
	}
	if ascii {
		return true
	}
	if !utf8.Valid(b) {
		return false
	}
	return !bytes.Contains(b, []byte("\xef\xbf\xbe")) && !bytes.Contains(b, []byte("\xef\xbf\xbf"))
}

// Parse parses raw as one complete element (with optional surrounding
// whitespace) under the same rules as a stream's top-level element. max <= 0
// means 256 KiB; start tags may have DefaultMaxAttrs attributes.
func Parse(raw []byte, max int) (*Element, error) {
	return ParseAttrs(raw, max, DefaultMaxAttrs)
}

// ParseAttrs is Parse with a limit of maxAttrs attributes per start tag
// (<= 0 means DefaultMaxAttrs).
func ParseAttrs(raw []byte, max, maxAttrs int) (*Element, error) {
	return parse(raw, max, maxAttrs, false)
}

// Check reports whether raw holds one element (and white space) that
// Parse would accept, without building the Element: for a serialised
// element a caller is about to splice into another, whose only question
// is whether it is well-formed.
func Check(raw []byte, max int) error {
	if simpleEmpty(raw, max) {
		return nil
	}
	_, err := parse(raw, max, DefaultMaxAttrs, true)
	return err
}

// simpleEmpty reports whether raw is an empty element of the plainest
// kind, which Parse accepts: <name a='v' b="w"/>, ASCII names without
// prefixes (nor starting with "xml", but for xmlns attributes), at most
// eight attributes, separated by spaces, with distinct names and
// printable ASCII values without references, and no white space around
// the element; at most max bytes. The elements the server adds to a
// stanza (a stanza-id, an occupant-id) are of this kind, and are checked
// this way in a few tens of nanoseconds instead of by the scanner. A
// false says nothing: Check then runs the scanner.
func simpleEmpty(raw []byte, max int) bool {
	if max <= 0 {
		max = 256 << 10
	}
	n := len(raw)
	if n > max || n < 4 || raw[0] != '<' || raw[n-2] != '/' || raw[n-1] != '>' {
		return false
	}
	end := n - 2 // the '/'
	// name reads a plain name at i and returns where it ends (i if none).
	name := func(i int) int {
		if i >= end || !(raw[i] >= 'a' && raw[i] <= 'z' || raw[i] >= 'A' && raw[i] <= 'Z' || raw[i] == '_') {
			return i
		}
		j := i + 1
		for j < end && (raw[j] >= 'a' && raw[j] <= 'z' || raw[j] >= 'A' && raw[j] <= 'Z' || raw[j] == '_' ||
			raw[j] >= '0' && raw[j] <= '9' || raw[j] == '-' || raw[j] == '.') {
			j++
		}
		return j
	}
	hasXML := func(b []byte) bool {
		return len(b) >= 3 && (b[0]|0x20) == 'x' && (b[1]|0x20) == 'm' && (b[2]|0x20) == 'l'
	}
	i := name(1)
	if i == 1 || hasXML(raw[1:i]) {
		return false
	}
	var attrs [8][]byte
	count := 0
	for {
		spaced := false
		for i < end && raw[i] == ' ' {
			i++
			spaced = true
		}
		if i == end {
			return true
		}
		if !spaced || count == len(attrs) {
			return false
		}
		j := name(i)
		if j == i || j+1 >= end || raw[j] != '=' || raw[j+1] != '\'' && raw[j+1] != '"' {
			return false
		}
		a := raw[i:j]
		if hasXML(a) && string(a) != "xmlns" {
			return false
		}
		for _, b := range attrs[:count] {
			if string(b) == string(a) {
				return false
			}
		}
		attrs[count] = a
		count++
		q := raw[j+1]
		k := j + 2
		for k < end && raw[k] != q {
			if c := raw[k]; c < 0x20 || c > 0x7e || c == '<' || c == '&' {
				return false
			}
			k++
		}
		if k == end {
			return false
		}
		i = k + 1
	}
}

// checked is what the scanner returns for an element in check mode.
var checked Element

func parse(raw []byte, max, maxAttrs int, check bool) (*Element, error) {
	p := parsers.Get().(*parser)
	defer p.put()
	p.r.Reset(raw)
	s := &p.s
	// A scanner from the pool keeps its scratch slices (element resets
	// them) and nothing else.
	*s = Scanner{r: &p.r, stack: s.stack[:0], prefix: s.prefix[:0], attrTmp: s.attrTmp[:0], table: s.table, check: check}
	if max <= 0 {
		max = 256 << 10
	}
	s.max = max
	s.SetMaxAttrs(maxAttrs)
	el, err := s.Next()
	if err != nil {
		if err == io.EOF || err == ErrStreamEnd {
			err = ErrNotWellFormed
		}
		return nil, err
	}
	s.start = s.pos // whitespace after the element does not count toward max
	if _, err := s.skipSpace(); err != io.ErrUnexpectedEOF {
		return nil, ErrNotWellFormed
	}
	return el, nil
}

// parser is what Parse uses, kept in a pool: elements are parsed again
// on hot paths (a stanza a module rewrites, a child it adds), and a new
// scanner each time grew its scratch slices anew.
type parser struct {
	s Scanner
	r bytes.Reader
}

var parsers = sync.Pool{New: func() any { return new(parser) }}

// put gives the read buffer back to its pool (the element copied what it
// keeps out of it), drops the references to the input and returns p to
// the pool, unless its scratch grew large.
func (p *parser) put() {
	s := &p.s
	if s.pbuf != nil && len(s.buf) == bufSize {
		bufPool.Put(s.pbuf)
	}
	s.buf, s.pbuf, s.r, s.rerr = nil, nil, nil, nil
	s.prefixIdx, s.indexed = nil, false
	p.r.Reset(nil)
	if cap(s.stack) > 256 || cap(s.prefix) > 256 || cap(s.attrTmp) > 256 || cap(s.table) > 1024 {
		return
	}
	parsers.Put(p)
}

// Restart prepares the scanner for a new stream header on the same
// connection (after SASL success), keeping data already buffered.
func (s *Scanner) Restart() { s.streamName = "" }
