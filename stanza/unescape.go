package stanza

import (
	"strings"
	"unicode/utf8"
)

// unescapeAttr resolves the references in an attribute value and
// normalises white space as XML 1.0 section 3.3.3 says: a literal tab,
// newline or carriage return (a "\r\n" pair counting once) becomes a space,
// while one written as a character reference stays. The value is returned
// as it is when there is nothing to do.
func unescapeAttr(v string) string {
	plain := true
	for i := 0; i < len(v); i++ {
		if c := v[i]; c == '&' || c == '\t' || c == '\n' || c == '\r' {
			plain = false
			break
		}
	}
	if plain {
		return v
	}
	b := make([]byte, 0, len(v))
	for i := 0; i < len(v); i++ {
		switch c := v[i]; c {
		case '\r':
			if i+1 < len(v) && v[i+1] == '\n' {
				i++
			}
			b = append(b, ' ')
		case '\t', '\n':
			b = append(b, ' ')
		case '&':
			var n int
			b, n = appendRef(b, v[i:])
			i += n - 1
		default:
			b = append(b, c)
		}
	}
	return string(b)
}

// appendRef appends the character that the reference at the start of s
// ('&') stands for and returns how many bytes it took; an unknown or
// unterminated one is copied as it is.
func appendRef(b []byte, s string) ([]byte, int) {
	j := strings.IndexByte(s, ';')
	if j < 0 {
		return append(b, '&'), 1
	}
	switch ref := s[1:j]; ref {
	case "lt":
		b = append(b, '<')
	case "gt":
		b = append(b, '>')
	case "amp":
		b = append(b, '&')
	case "quot":
		b = append(b, '"')
	case "apos":
		b = append(b, '\'')
	default:
		r, ok := charRef(ref)
		if !ok {
			return append(b, s[:j+1]...), j + 1
		}
		b = utf8.AppendRune(b, r)
	}
	return b, j + 1
}

// charRef decodes "#123" or "#x7B".
func charRef(ref string) (rune, bool) {
	if len(ref) < 2 || ref[0] != '#' {
		return 0, false
	}
	ref = ref[1:]
	base := rune(10)
	if ref[0] == 'x' {
		base, ref = 16, ref[1:]
	}
	if ref == "" {
		return 0, false
	}
	var v rune
	for i := 0; i < len(ref); i++ {
		c := ref[i]
		var d rune
		switch {
		case c >= '0' && c <= '9':
			d = rune(c - '0')
		case base == 16 && c >= 'a' && c <= 'f':
			d = rune(c-'a') + 10
		case base == 16 && c >= 'A' && c <= 'F':
			d = rune(c-'A') + 10
		default:
			return 0, false
		}
		v = v*base + d
		if v > utf8.MaxRune {
			return 0, false
		}
	}
	return v, true
}

// textBuilder collects the pieces of an element's character data,
// allocating only when there is more than one or one needs decoding.
type textBuilder struct {
	s   string // the only piece so far, taken as it is
	b   []byte // or the text so far
	buf bool   // whether b is in use
}

// add appends a piece of text; escaped says whether it is character data
// (with references and line ends to resolve) rather than a CDATA section's
// content (where only line ends are normalised).
func (t *textBuilder) add(s string, escaped bool) {
	if s == "" {
		return
	}
	plain := strings.IndexByte(s, '\r') < 0 && (!escaped || strings.IndexByte(s, '&') < 0)
	if plain && !t.buf && t.s == "" {
		t.s = s
		return
	}
	if !t.buf {
		t.b = append(t.b, t.s...)
		t.s, t.buf = "", true
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\r':
			// XML 1.0 section 2.11: "\r\n" and a lone "\r" are "\n".
			if i+1 < len(s) && s[i+1] == '\n' {
				i++
			}
			t.b = append(t.b, '\n')
		case c == '&' && escaped:
			var n int
			t.b, n = appendRef(t.b, s[i:])
			i += n - 1
		default:
			t.b = append(t.b, c)
		}
	}
}

func (t *textBuilder) String() string {
	if t.buf {
		return string(t.b)
	}
	return t.s
}
