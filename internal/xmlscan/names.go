package xmlscan

import (
	"bytes"
	"hash/maphash"
	"strings"
)

// Namespace well-formedness (Namespaces in XML 1.0, third edition): what a
// start tag must satisfy beyond XML 1.0 itself. A recipient whose parser
// is namespace-aware (expat, libxml2) drops its whole connection on a
// stanza that fails these checks, so the scanner refuses such a stanza
// before anything routes it.

const (
	nsXML     = "http://www.w3.org/XML/1998/namespace"
	nsXMLNS   = "http://www.w3.org/2000/xmlns/"
	nsStreams = "http://etherx.jabber.org/streams"
)

// smallAttrs is the attribute count up to which the duplicate check
// compares every pair: no hashing and no allocation for the few
// attributes of an ordinary stanza. Above it a hash table keeps the check
// linear, so a start tag with thousands of attributes costs no more per
// attribute than a small one.
const smallAttrs = 8

// smallDecls is the number of namespace declarations in scope up to which
// a prefix is looked up by a linear search; above it, through an index,
// so that deep elements each declaring many prefixes cost linear time too.
const smallDecls = 8

var attrSeed = maphash.MakeSeed()

// prefixDecl is one xmlns:p declaration in scope.
type prefixDecl struct {
	name   span    // the prefix p
	decl   rawAttr // the declaring attribute; its value is the namespace
	depth  int
	shadow int32 // with the index: the declaration of p it hides, or -1
}

// splitQName reports where name's prefix ends (-1 without a prefix) and
// whether name is a QName: at most one colon, a non-empty prefix, and a
// local part that starts like an NCName (Namespaces in XML section 4).
func splitQName(n []byte) (int, bool) {
	i := bytes.IndexByte(n, ':')
	if i < 0 {
		return -1, true
	}
	local := n[i+1:]
	if i == 0 || len(local) == 0 || !isNameStart(local[0]) || bytes.IndexByte(local, ':') >= 0 {
		return i, false
	}
	return i, true
}

// startTag checks a start tag whose attributes have been scanned: names,
// namespace declarations (recorded for the tag's content), prefixes, and
// the uniqueness of attributes. depth is 0 for the top element.
func (s *Scanner) startTag(nm span, attrs []rawAttr, depth int) error {
	if err := s.qnames(nm, attrs); err != nil {
		return err
	}
	if err := s.declare(attrs, depth); err != nil {
		return err
	}
	if err := s.checkPrefixes(nm, attrs, depth); err != nil {
		return err
	}
	return s.uniqueAttrs(attrs)
}

// qnames checks that the element's and the attributes' names are QNames
// and the element's prefix is not xmlns; it notes each attribute's colon.
func (s *Scanner) qnames(nm span, attrs []rawAttr) error {
	n := s.text(nm)
	i, ok := splitQName(n)
	if !ok || i == 5 && string(n[:5]) == "xmlns" {
		return ErrNamespace // element names must not have the prefix xmlns
	}
	for k := range attrs {
		a := &attrs[k]
		i, ok := splitQName(s.text(a.name))
		if !ok {
			return ErrNamespace
		}
		a.colon = int32(i)
	}
	return nil
}

// declare checks the namespace declarations among attrs and records those
// that bind a prefix (Namespaces in XML section 3).
func (s *Scanner) declare(attrs []rawAttr, depth int) error {
	for _, a := range attrs {
		n := s.text(a.name)
		switch {
		case string(n) == "xmlns":
			// Neither reserved namespace may be the default one.
			if s.valueIs(a, nsXML) || s.valueIs(a, nsXMLNS) {
				return ErrNamespace
			}
		case a.colon == 5 && string(n[:5]) == "xmlns":
			if err := s.checkDecl(n[6:], a); err != nil {
				return err
			}
			s.pushDecl(prefixDecl{name: span{a.name.off + 6, a.name.end}, decl: a, depth: depth})
		}
	}
	return nil
}

// checkDecl checks a declaration of prefix p: xmlns itself is never
// declared, xml only to its own namespace, no other prefix to either
// reserved namespace, and no prefix to the empty string (undeclaring a
// prefix is XML 1.1 only).
func (s *Scanner) checkDecl(p []byte, a rawAttr) error {
	isXML := string(p) == "xml"
	if string(p) == "xmlns" || a.val.off == a.val.end ||
		isXML != s.valueIs(a, nsXML) || s.valueIs(a, nsXMLNS) {
		return ErrNamespace
	}
	return nil
}

// valueIs reports whether attribute a's normalised value is v. Namespace
// names are compared after entity expansion: &#x68;ttp://... is http://...
func (s *Scanner) valueIs(a rawAttr, v string) bool {
	raw := s.text(a.val)
	if !a.escaped {
		return string(raw) == v
	}
	return Unescape(string(raw)) == v
}

// sameValue reports whether two attributes have the same normalised value.
func (s *Scanner) sameValue(a, b rawAttr) bool {
	if !a.escaped && !b.escaped {
		return bytes.Equal(s.text(a.val), s.text(b.val))
	}
	return Unescape(string(s.text(a.val))) == Unescape(string(s.text(b.val)))
}

// pushDecl records a declaration, indexing it once there are too many in
// scope for a linear search.
func (s *Scanner) pushDecl(d prefixDecl) {
	d.shadow = -1
	s.prefix = append(s.prefix, d)
	switch {
	case s.indexed:
		s.index(len(s.prefix) - 1)
	case len(s.prefix) > smallDecls:
		if s.prefixIdx == nil {
			s.prefixIdx = make(map[string]int32)
		}
		s.indexed = true
		for i := range s.prefix {
			s.index(i)
		}
	}
}

func (s *Scanner) index(i int) {
	d := &s.prefix[i]
	k := string(s.text(d.name))
	if j, ok := s.prefixIdx[k]; ok {
		d.shadow = j
	}
	s.prefixIdx[k] = int32(i)
}

// lookup returns the index in s.prefix of the innermost declaration of
// prefix p in scope.
func (s *Scanner) lookup(p []byte) (int, bool) {
	if s.indexed {
		i, ok := s.prefixIdx[string(p)]
		return int(i), ok
	}
	for i := len(s.prefix) - 1; i >= 0; i-- {
		if bytes.Equal(s.text(s.prefix[i].name), p) {
			return i, true
		}
	}
	return -1, false
}

// popPrefixes drops the declarations of elements at depth or deeper.
func (s *Scanner) popPrefixes(depth int) {
	for len(s.prefix) > 0 && s.prefix[len(s.prefix)-1].depth >= depth {
		d := s.prefix[len(s.prefix)-1]
		if s.indexed {
			k := string(s.text(d.name))
			if d.shadow >= 0 {
				s.prefixIdx[k] = d.shadow
			} else {
				delete(s.prefixIdx, k)
			}
		}
		s.prefix = s.prefix[:len(s.prefix)-1]
	}
}

// resetPrefixes empties the declarations for a new top-level element.
func (s *Scanner) resetPrefixes() {
	s.prefix = s.prefix[:0]
	if s.indexed {
		clear(s.prefixIdx)
		s.indexed = false
	}
}

// checkPrefixes checks that every prefix the tag and its attributes use
// is declared: in the element itself or an ancestor inside the top
// element (the stream's own declarations do not travel with a routed
// stanza), or for the top element's name, on the stream header.
func (s *Scanner) checkPrefixes(nm span, attrs []rawAttr, depth int) error {
	if err := s.checkPrefix(s.text(nm), depth == 0); err != nil {
		return err
	}
	for _, a := range attrs {
		if a.colon < 0 {
			continue
		}
		n := s.text(a.name)
		if p := n[:a.colon]; string(p) == "xmlns" || string(p) == "xml" {
			continue
		}
		if err := s.checkPrefix(n, false); err != nil {
			return err
		}
	}
	return nil
}

func (s *Scanner) checkPrefix(n []byte, top bool) error {
	i := bytes.IndexByte(n, ':')
	if i < 0 {
		return nil
	}
	p := n[:i]
	if string(p) == "xml" {
		return nil // bound by definition
	}
	if top && s.streamName != "" {
		if j := strings.IndexByte(s.streamName, ':'); j >= 0 && string(p) == s.streamName[:j] {
			return nil // stream:error, stream:features
		}
		// Elements of the stream itself may use the header's other
		// prefixes (db:result on server-to-server streams).
		for _, d := range s.streamDecls {
			if d.prefix == string(p) {
				return nil
			}
		}
	}
	if _, ok := s.lookup(p); ok {
		return nil
	}
	return ErrBadPrefix
}

// nsKey identifies an attribute's namespace: a fixed name (none, xml,
// xmlns) when decl < 0, else the declaration at s.prefix[decl].
type nsKey struct {
	fixed string
	decl  int
}

// attrNS returns the namespace of an attribute whose prefixes have been
// checked. An unprefixed attribute is in no namespace; xmlns:p is in the
// xmlns namespace (Namespaces in XML section 3).
func (s *Scanner) attrNS(a rawAttr) nsKey {
	if a.colon < 0 {
		return nsKey{decl: -1}
	}
	switch p := s.text(a.name)[:a.colon]; string(p) {
	case "xmlns":
		return nsKey{fixed: nsXMLNS, decl: -1}
	case "xml":
		return nsKey{fixed: nsXML, decl: -1}
	default:
		i, _ := s.lookup(p)
		return nsKey{decl: i}
	}
}

func (s *Scanner) sameNS(x, y nsKey) bool {
	if x.decl < 0 || y.decl < 0 {
		// A declared namespace is never empty nor a reserved one.
		return x.decl == y.decl && x.fixed == y.fixed
	}
	return x.decl == y.decl || s.sameValue(s.prefix[x.decl].decl, s.prefix[y.decl].decl)
}

// local returns an attribute's local name.
func (s *Scanner) local(a rawAttr) []byte { return s.text(a.name)[a.colon+1:] }

// duplicate reports whether two attributes of one tag clash: the same
// name as written (XML 1.0), or the same local name in the same namespace
// (Namespaces in XML section 6.3).
func (s *Scanner) duplicate(a, b rawAttr) error {
	if !bytes.Equal(s.local(a), s.local(b)) {
		return nil
	}
	if bytes.Equal(s.text(a.name), s.text(b.name)) {
		return ErrNotWellFormed
	}
	if s.sameNS(s.attrNS(a), s.attrNS(b)) {
		return ErrNamespace
	}
	return nil
}

// uniqueAttrs checks that no two attributes clash.
func (s *Scanner) uniqueAttrs(attrs []rawAttr) error {
	if len(attrs) <= smallAttrs {
		for i := 1; i < len(attrs); i++ {
			for j := 0; j < i; j++ {
				if err := s.duplicate(attrs[i], attrs[j]); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return s.uniqueHashed(attrs)
}

// uniqueHashed is uniqueAttrs through an open-addressing table of
// attribute indexes (plus one; 0 is free), hashed on the expanded name.
func (s *Scanner) uniqueHashed(attrs []rawAttr) error {
	size := 1
	for size < 2*len(attrs) {
		size <<= 1
	}
	if cap(s.table) < size {
		s.table = make([]int32, size)
	}
	t := s.table[:size]
	clear(t)
	mask := uint64(size - 1)
	for i, a := range attrs {
		for slot := s.attrHash(a) & mask; ; slot = (slot + 1) & mask {
			j := t[slot]
			if j == 0 {
				t[slot] = int32(i + 1)
				break
			}
			if err := s.duplicate(a, attrs[j-1]); err != nil {
				return err
			}
		}
	}
	return nil
}

// attrHash hashes an attribute's expanded name: its namespace and local
// name, so that two names that clash always hash alike.
func (s *Scanner) attrHash(a rawAttr) uint64 {
	var h maphash.Hash
	h.SetSeed(attrSeed)
	switch k := s.attrNS(a); {
	case k.decl < 0:
		h.WriteString(k.fixed)
	case s.prefix[k.decl].decl.escaped:
		h.WriteString(Unescape(string(s.text(s.prefix[k.decl].decl.val))))
	default:
		h.Write(s.text(s.prefix[k.decl].decl.val))
	}
	h.WriteByte(0)
	h.Write(s.local(a))
	return h.Sum64()
}

// streamDecl is a namespace declaration of the stream header.
type streamDecl struct{ prefix, ns string }

// nestedStream reports whether a top-level start tag is a stream header
// ({http://etherx.jabber.org/streams}stream): the peer opened a second
// stream inside the first, which is never valid (RFC 6120 4.2, 4.3).
func (s *Scanner) nestedStream(nm span, attrs []rawAttr) bool {
	n := s.text(nm)
	i := bytes.IndexByte(n, ':')
	if string(n[i+1:]) != "stream" {
		return false
	}
	want, def := "xmlns", s.streamDefault
	if i >= 0 {
		p := string(n[:i])
		want, def = "xmlns:"+p, ""
		for _, d := range s.streamDecls {
			if d.prefix == p {
				def = d.ns
			}
		}
	}
	for _, a := range attrs {
		if string(s.text(a.name)) == want {
			return s.valueIs(a, nsStreams)
		}
	}
	return def == nsStreams
}
