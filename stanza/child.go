package stanza

import (
	"encoding/xml"
	"iter"
	"strings"
)

// NSClient is the default namespace of a client stream (RFC 6120 section
// 4.8.3), and so of a stanza's unqualified children.
const NSClient = "jabber:client"

const nsXML = "http://www.w3.org/XML/1998/namespace"

// Child is a child element of a serialised element, as Children and
// Child.Children yield it. It refers to the serialised element without
// copying it: Raw, Inner and most Attr and Text results are substrings of
// it.
//
// The zero Child has no name and no content.
type Child struct {
	// Name is the element's name with its namespace resolved as
	// encoding/xml does: the element's own xmlns (or, for a prefixed
	// name, the prefix's nearest declaration), else the default namespace
	// in scope (jabber:client for a stanza's children).
	Name xml.Name

	doc  string // the serialised element the walk began with
	off  int    // the child is doc[off:end], its start tag doc[off:tag]
	tag  int
	end  int
	dflt string // the default namespace in the child's content
}

// Children returns an iterator over the child elements of the element
// serialised in raw, in document order; ns is the default namespace in
// scope where the element is (NSClient for a stanza), unless the element
// declares its own. Leading white space in raw is skipped.
//
// raw must be well-formed, restricted XML (RFC 6120 section 11.1), as every
// element the server accepts is: the walk only follows tags, quotes and
// CDATA sections, and stops early at anything it cannot read. It
// allocates nothing, unless a namespace is written with entities.
func Children(raw, ns string) iter.Seq[Child] {
	return func(yield func(Child) bool) {
		root, ok := rootOf(raw, ns)
		if ok {
			walk(root, yield)
		}
	}
}

// rootOf reads the start tag of the element in raw.
func rootOf(raw, ns string) (Child, bool) {
	i := 0
	for i < len(raw) && isSpace(raw[i]) {
		i++
	}
	if i >= len(raw) || raw[i] != '<' {
		return Child{}, false
	}
	tag, empty, ok := startTag(raw, i)
	if !ok {
		return Child{}, false
	}
	c := Child{doc: raw, off: i, tag: tag, end: len(raw)}
	if empty {
		c.end = tag
	}
	c.resolve(ns)
	return c, true
}

// Children returns an iterator over the child's own child elements, in
// document order (see the package function Children).
func (c Child) Children() iter.Seq[Child] {
	return func(yield func(Child) bool) { walk(c, yield) }
}

// Raw returns the child element as serialised, start tag to end tag.
func (c Child) Raw() string { return c.doc[c.off:c.end] }

// Offset returns where Raw begins in the string the walk began with (for
// treff.Stanza.Children, in the stanza's Raw), so that a caller can cut the
// child out or replace it.
func (c Child) Offset() int { return c.off }

// Inner returns the child's content, between its start and end tags; ""
// for an empty element.
func (c Child) Inner() string {
	if c.tag >= c.end {
		return ""
	}
	return c.doc[c.tag : c.off+strings.LastIndexByte(c.doc[c.off:c.end], '<')]
}

// Attr returns the value of the attribute with the qualified name as
// written ("id", "xml:lang") on the child's start tag, with entities and
// character references resolved and white space normalised as XML
// requires. It allocates only for a value with a reference or a tab,
// newline or carriage return.
func (c Child) Attr(name string) (string, bool) {
	tag := c.doc[c.off:c.tag]
	for j := len(tagName(tag)) + 1; ; {
		n, v, next, ok := nextAttr(tag, j)
		if !ok {
			return "", false
		}
		if n == name {
			return unescapeAttr(v), true
		}
		j = next
	}
}

// Text returns the character data directly in the child (not in its
// children), CDATA sections included, with references resolved and line
// ends normalised. It allocates only if the text has references, carriage
// returns, or several pieces.
func (c Child) Text() string {
	if c.tag >= c.end {
		return ""
	}
	var tb textBuilder
	doc := c.doc
	i, end := c.tag, c.end
	depth := 0
	for i < end {
		k := strings.IndexByte(doc[i:end], '<')
		if k < 0 {
			break
		}
		if depth == 0 && k > 0 {
			tb.add(doc[i:i+k], true)
		}
		i += k
		if i+1 >= end {
			break
		}
		switch doc[i+1] {
		case '/':
			if depth == 0 {
				return tb.String()
			}
			depth--
			i = skipPast(doc, i, end, ">")
		case '!':
			if strings.HasPrefix(doc[i:end], "<![CDATA[") {
				e := strings.Index(doc[i:end], "]]>")
				if e < 0 {
					return tb.String()
				}
				if depth == 0 {
					tb.add(doc[i+len("<![CDATA["):i+e], false)
				}
				i += e + len("]]>")
			} else {
				i = skipPast(doc, i, end, "-->")
			}
		case '?':
			i = skipPast(doc, i, end, "?>")
		default:
			t, empty, ok := startTag(doc, i)
			if !ok {
				return tb.String()
			}
			if !empty {
				depth++
			}
			i = t
		}
	}
	return tb.String()
}

// SelfContained reports whether Raw declares every namespace prefix that
// its element and attribute names use, so that it can be stored and read
// again on its own (a prefix declared on the stanza or a parent is not
// carried along). The xml prefix needs no declaration.
func (c Child) SelfContained() bool {
	var buf [8]string
	declared := buf[:0]
	var depthBuf [8]int
	at := depthBuf[:0] // the depth of each declaration
	doc, i, end := c.doc, c.off, c.end
	depth := 0
	for {
		kind, at0, t, empty := nextTag(doc, i, end)
		switch kind {
		case noTag:
			return true
		case badTag:
			return false
		case closeTag:
			depth--
			for len(at) > 0 && at[len(at)-1] > depth {
				at, declared = at[:len(at)-1], declared[:len(declared)-1]
			}
		case openTag:
			i = at0
			depth++
			tag := doc[i:t]
			nameEnd := len(tagName(tag)) + 1
			for j := nameEnd; ; {
				n, _, next, ok := nextAttr(tag, j)
				if !ok {
					break
				}
				if p, ok := strings.CutPrefix(n, "xmlns:"); ok {
					declared = append(declared, p)
					at = append(at, depth)
				}
				j = next
			}
			has := func(name string) bool {
				p, _, ok := strings.Cut(name, ":")
				if !ok {
					return true
				}
				for _, d := range declared {
					if d == p {
						return true
					}
				}
				return false
			}
			if !has(tagName(tag)) {
				return false
			}
			for j := nameEnd; ; {
				n, _, next, ok := nextAttr(tag, j)
				if !ok {
					break
				}
				if !strings.HasPrefix(n, "xmlns:") && !strings.HasPrefix(n, "xml:") && !has(n) {
					return false
				}
				j = next
			}
			if empty {
				depth--
				for len(at) > 0 && at[len(at)-1] > depth {
					at, declared = at[:len(at)-1], declared[:len(declared)-1]
				}
			}
		}
		i = t
	}
}

// walk yields the child elements of parent.
func walk(parent Child, yield func(Child) bool) {
	doc := parent.doc
	i, end := parent.tag, parent.end
	if i >= end {
		return // an empty element
	}
	depth := 0
	var cur Child
	for {
		kind, at, t, empty := nextTag(doc, i, end)
		switch kind {
		case noTag, badTag:
			return
		case closeTag:
			if depth == 0 {
				return // the parent's end tag
			}
			depth--
			if depth == 0 {
				cur.end = t
				if !yield(cur) {
					return
				}
			}
		case openTag:
			if depth == 0 {
				cur = Child{doc: doc, off: at, tag: t}
				cur.resolve(parent.dflt)
				if empty {
					cur.end = t
					if !yield(cur) {
						return
					}
				} else {
					depth = 1
				}
			} else if !empty {
				depth++
			}
		}
		i = t
	}
}

// resolve sets the child's name and the default namespace of its content
// from its start tag; inherited is the default namespace around it.
func (c *Child) resolve(inherited string) {
	tag := c.doc[c.off:c.tag]
	qn := tagName(tag)
	prefix, local := splitName(qn)
	c.Name.Local = local
	c.dflt = inherited
	var pns string
	var hasP bool
	if !strings.Contains(tag, "xmlns") {
		// The common case: no declarations at all.
		if prefix == "" {
			c.Name.Space = c.dflt
			return
		}
	}
	for j := len(qn) + 1; ; {
		n, v, next, ok := nextAttr(tag, j)
		if !ok {
			break
		}
		switch {
		case n == "xmlns":
			c.dflt = unescapeAttr(v)
		case prefix != "" && len(n) == len("xmlns:")+len(prefix) && strings.HasPrefix(n, "xmlns:") && n[len("xmlns:"):] == prefix:
			pns, hasP = unescapeAttr(v), true
		}
		j = next
	}
	switch {
	case prefix == "":
		c.Name.Space = c.dflt
	case hasP:
		c.Name.Space = pns
	case prefix == "xml":
		c.Name.Space = nsXML
	default:
		if v, ok := lookupPrefix(c.doc, c.off, prefix); ok {
			c.Name.Space = v
		} else {
			c.Name.Space = prefix // undeclared: as encoding/xml does
		}
	}
}

// splitName splits a qualified name as encoding/xml does: at its colon if
// it has exactly one with text on both sides.
func splitName(qn string) (prefix, local string) {
	p, l, ok := strings.Cut(qn, ":")
	if !ok || p == "" || l == "" || strings.IndexByte(l, ':') >= 0 {
		return "", qn
	}
	return p, l
}

// lookupPrefix finds the declaration of prefix in scope at doc[pos], on
// the elements enclosing it.
func lookupPrefix(doc string, pos int, prefix string) (string, bool) {
	type decl struct {
		depth int
		v     string
	}
	var buf [8]decl
	decls := buf[:0]
	depth := 0
scan:
	for i := 0; ; {
		kind, at, t, empty := nextTag(doc, i, pos)
		switch kind {
		case noTag:
			break scan
		case badTag:
			return "", false
		case closeTag:
			for len(decls) > 0 && decls[len(decls)-1].depth >= depth {
				decls = decls[:len(decls)-1]
			}
			depth--
		case openTag:
			i = at
			if !empty {
				depth++
				tag := doc[i:t]
				for j := len(tagName(tag)) + 1; ; {
					n, v, next, ok := nextAttr(tag, j)
					if !ok {
						break
					}
					if p, ok := strings.CutPrefix(n, "xmlns:"); ok && p == prefix {
						decls = append(decls, decl{depth, v})
					}
					j = next
				}
			}
		}
		i = t
	}
	if len(decls) == 0 {
		return "", false
	}
	return unescapeAttr(decls[len(decls)-1].v), true
}

// Kinds of tag nextTag finds.
type tagKind uint8

const (
	noTag    tagKind = iota // none left
	badTag                  // a start tag that does not end
	openTag                 // a start tag (empty or not)
	closeTag                // an end tag
)

// nextTag finds the next start or end tag in doc[i:end], skipping CDATA
// sections, comments and processing instructions (the last two never
// occur in a stanza). It returns the tag's kind, its offset, the offset
// just past it, and for a start tag whether it closes the element
// (<x/>); for noTag and badTag, next is end.
func nextTag(doc string, i, end int) (kind tagKind, at, next int, empty bool) {
	for i < end {
		k := strings.IndexByte(doc[i:end], '<')
		if k < 0 {
			break
		}
		i += k
		if i+1 >= end {
			break
		}
		switch doc[i+1] {
		case '/':
			return closeTag, i, skipPast(doc, i, end, ">"), false
		case '!':
			if strings.HasPrefix(doc[i:end], "<![CDATA[") {
				i = skipPast(doc, i, end, "]]>")
			} else {
				i = skipPast(doc, i, end, "-->")
			}
		case '?':
			i = skipPast(doc, i, end, "?>")
		default:
			t, empty, ok := startTag(doc, i)
			if !ok {
				return badTag, i, end, false
			}
			return openTag, i, t, empty
		}
	}
	return noTag, end, end, false
}

// skipPast returns the offset just past the first occurrence of s in
// doc[i:end], or end.
func skipPast(doc string, i, end int, s string) int {
	e := strings.Index(doc[i:end], s)
	if e < 0 {
		return end
	}
	return i + e + len(s)
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// startTag reads the start tag at doc[i] ('<') and returns the offset just
// past it and whether it closes the element (<x/>). A '>' or '/' inside a
// quoted attribute value does not end it.
func startTag(doc string, i int) (end int, empty, ok bool) {
	j := i + 1
	for {
		for j < len(doc) && doc[j] != '>' && doc[j] != '\'' && doc[j] != '"' {
			j++
		}
		if j >= len(doc) {
			return 0, false, false
		}
		if doc[j] == '>' {
			return j + 1, doc[j-1] == '/', true
		}
		e := strings.IndexByte(doc[j+1:], doc[j])
		if e < 0 {
			return 0, false, false
		}
		j += 1 + e + 1
	}
}

// tagName returns the qualified name of the start tag tag ("<name ...>").
func tagName(tag string) string {
	j := 1
	for j < len(tag) && !isSpace(tag[j]) && tag[j] != '/' && tag[j] != '>' {
		j++
	}
	return tag[1:j]
}

// nextAttr reads the attribute of the start tag tag that begins at or
// after tag[j] (j is past the name, or past the previous attribute). It
// returns the name as written, the raw value (between the quotes) and
// where to continue; ok is false at the end of the tag.
func nextAttr(tag string, j int) (name, val string, next int, ok bool) {
	for j < len(tag) && isSpace(tag[j]) {
		j++
	}
	if j >= len(tag) || tag[j] == '/' || tag[j] == '>' {
		return "", "", 0, false
	}
	k := j
	for k < len(tag) && tag[k] != '=' && !isSpace(tag[k]) {
		k++
	}
	name = tag[j:k]
	for k < len(tag) && (tag[k] == '=' || isSpace(tag[k])) {
		k++
	}
	if k >= len(tag) || tag[k] != '\'' && tag[k] != '"' {
		return "", "", 0, false
	}
	e := strings.IndexByte(tag[k+1:], tag[k])
	if e < 0 {
		return "", "", 0, false
	}
	return name, tag[k+1 : k+1+e], k + 1 + e + 1, true
}
