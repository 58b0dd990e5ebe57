package pie

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"unicode"
)

const xmlURL = "http://www.w3.org/XML/1998/namespace"

// maxDepth bounds the nesting of an element copied by raw.
const maxDepth = 64

// raw reads the rest of the element that start opened and returns it
// serialised on its own: xmlns declared on the element and wherever a
// child's namespace differs from its parent's, attributes of other
// namespaces with prefixes of their own. skip, if not nil, is called for
// each direct child; a child it returns true for is left out (read over).
func raw(d *xml.Decoder, start xml.StartElement, skip func(xml.StartElement) bool) ([]byte, error) {
	var b bytes.Buffer
	type frame struct{ ns string }
	stack := []frame{}
	var bad error
	open := func(se xml.StartElement, parentNS string) {
		if !ncName(se.Name.Local) {
			bad = fmt.Errorf("pie: %q is not an element name", se.Name.Local)
		}
		for _, a := range se.Attr {
			if !ncName(a.Name.Local) {
				bad = fmt.Errorf("pie: %q is not an attribute name", a.Name.Local)
			}
		}
		b.WriteByte('<')
		b.WriteString(se.Name.Local)
		if se.Name.Space != parentNS || len(stack) == 0 {
			b.WriteString(` xmlns="`)
			xml.EscapeText(&b, []byte(se.Name.Space))
			b.WriteByte('"')
		}
		n := 0
		for _, a := range se.Attr {
			if a.Name.Space == "xmlns" || a.Name.Space == "" && a.Name.Local == "xmlns" {
				continue
			}
			b.WriteByte(' ')
			switch a.Name.Space {
			case "":
			case xmlURL, "xml":
				b.WriteString("xml:")
			default:
				n++
				fmt.Fprintf(&b, `xmlns:a%d="`, n)
				xml.EscapeText(&b, []byte(a.Name.Space))
				fmt.Fprintf(&b, `" a%d:`, n)
			}
			b.WriteString(a.Name.Local)
			b.WriteString(`="`)
			xml.EscapeText(&b, []byte(a.Value))
			b.WriteByte('"')
		}
		b.WriteByte('>')
		stack = append(stack, frame{se.Name.Space})
	}
	open(start, "")
	for len(stack) > 0 {
		if bad != nil {
			return nil, bad
		}
		tok, err := d.Token()
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if len(stack) == 1 && skip != nil && skip(t) {
				if err := d.Skip(); err != nil {
					return nil, err
				}
				continue
			}
			if len(stack) >= maxDepth {
				return nil, fmt.Errorf("pie: <%s/> nested too deeply", start.Name.Local)
			}
			open(t, stack[len(stack)-1].ns)
		case xml.EndElement:
			b.WriteString("</")
			b.WriteString(t.Name.Local)
			b.WriteByte('>')
			stack = stack[:len(stack)-1]
		case xml.CharData:
			xml.EscapeText(&b, t)
		}
	}
	if bad != nil {
		return nil, bad
	}
	return b.Bytes(), nil
}

// ncName reports whether s is a name without a colon (Namespaces in XML
// 1.0), which encoding/xml does not check: copies must stand alone.
func ncName(s string) bool {
	for i, r := range s {
		switch {
		case r == '_' || unicode.IsLetter(r):
		case i > 0 && (r == '-' || r == '.' || unicode.IsDigit(r) || unicode.Is(unicode.Mn, r) || unicode.Is(unicode.Mc, r) || r == 0xB7):
		default:
			return false
		}
	}
	return s != ""
}

// text reads the rest of the element start opened and returns its
// character data (of children too).
func text(d *xml.Decoder) (string, error) {
	var b bytes.Buffer
	for depth := 1; depth > 0; {
		tok, err := d.Token()
		if err != nil {
			return "", err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
		case xml.EndElement:
			depth--
		case xml.CharData:
			b.Write(t)
		}
	}
	return b.String(), nil
}

// eachChild reads the rest of the element whose start tag d has just
// returned, up to and including its end tag, and calls f with the start
// tag of each child element; f reads the child to its end (d.Skip() for
// one it does not want). Text, comments and processing instructions
// between the children are passed over. An error reading the document,
// or one from f, ends the walk and is returned as it is.
func eachChild(d *xml.Decoder, f func(xml.StartElement) error) error {
	for {
		tok, err := d.Token()
		if err != nil {
			return err
		}
		switch t := tok.(type) {
		case xml.EndElement:
			return nil
		case xml.StartElement:
			if err := f(t); err != nil {
				return err
			}
		}
	}
}

// docChildren is eachChild for the document's own structure
// (<server-data/>, <host/>): an error reading the document gets the
// package's prefix; one from f (a user's, a room's, the caller's own
// from Decode's fn) is returned as it is.
func docChildren(d *xml.Decoder, f func(xml.StartElement) error) error {
	var ferr error
	err := eachChild(d, func(t xml.StartElement) error {
		ferr = f(t)
		return ferr
	})
	if err != nil && ferr == nil {
		return fmt.Errorf("pie: %w", err)
	}
	return err
}

// childTexts reads the rest of the element whose start tag d has just
// returned and gives the text of each child named local, in order;
// other children are read over.
func childTexts(d *xml.Decoder, local string) ([]string, error) {
	var texts []string
	err := eachChild(d, func(t xml.StartElement) error {
		s, err := text(d)
		if err == nil && t.Name.Local == local {
			texts = append(texts, s)
		}
		return err
	})
	return texts, err
}

func attr(se xml.StartElement, name string) string {
	for _, a := range se.Attr {
		if a.Name.Space == "" && a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}
