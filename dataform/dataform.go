// Package dataform implements the parts of XEP-0004 Data Forms that
// modules need: building a form to send (Form, Field) and reading the
// values a client submitted (Submitted, Values).
package dataform

import "github.com/treff-im/treff"

// NS is the XEP-0004 namespace.
const NS = "jabber:x:data"

// Submitted is an <x xmlns='jabber:x:data'/> element as clients send it,
// for use as a field of a struct decoded with encoding/xml, tagged
// `xml:"jabber:x:data x"`.
type Submitted struct {
	Type   string `xml:"type,attr"`
	Fields []struct {
		Var    string   `xml:"var,attr"`
		Values []string `xml:"value"`
	} `xml:"field"`
}

// Values returns the submitted values by field name.
func (s *Submitted) Values() Values {
	v := Values{}
	if s == nil {
		return v
	}
	for _, f := range s.Fields {
		v[f.Var] = f.Values
	}
	return v
}

// Values are the submitted values of a form, by field name.
type Values map[string][]string

// Get returns the first value of a field, or "".
func (v Values) Get(name string) string {
	if vs := v[name]; len(vs) > 0 {
		return vs[0]
	}
	return ""
}

// Form is a XEP-0004 data form.
type Form struct {
	Title, Instructions string
	Fields              []Field
}

// Field is one field of a form.
type Field struct {
	Var, Type, Label string // Type as in XEP-0004: text-single, jid-multi, ...
	Required         bool
	Values           []string
	Options          []string // for list-single and list-multi
}

// Append appends the form as an <x/> element of type typ ("form" or
// "result").
func (f *Form) Append(b []byte, typ string) []byte {
	b = append(b, "<x xmlns='"+NS+"' type='"+typ+"'>"...)
	if f.Title != "" {
		b = append(b, "<title>"...)
		b = treff.AppendEscaped(b, f.Title)
		b = append(b, "</title>"...)
	}
	if f.Instructions != "" {
		b = append(b, "<instructions>"...)
		b = treff.AppendEscaped(b, f.Instructions)
		b = append(b, "</instructions>"...)
	}
	for _, fl := range f.Fields {
		b = append(b, "<field var='"...)
		b = treff.AppendEscaped(b, fl.Var)
		if fl.Type != "" {
			b = append(b, "' type='"...)
			b = append(b, fl.Type...)
		}
		if fl.Label != "" {
			b = append(b, "' label='"...)
			b = treff.AppendEscaped(b, fl.Label)
		}
		b = append(b, "'>"...)
		if fl.Required {
			b = append(b, "<required/>"...)
		}
		for _, o := range fl.Options {
			b = append(b, "<option><value>"...)
			b = treff.AppendEscaped(b, o)
			b = append(b, "</value></option>"...)
		}
		for _, v := range fl.Values {
			b = append(b, "<value>"...)
			b = treff.AppendEscaped(b, v)
			b = append(b, "</value>"...)
		}
		b = append(b, "</field>"...)
	}
	return append(b, "</x>"...)
}

// FormType is the hidden FORM_TYPE field (XEP-0068) a form of a
// registered type carries.
func FormType(ns string) Field {
	return Field{Var: "FORM_TYPE", Type: "hidden", Values: []string{ns}}
}
