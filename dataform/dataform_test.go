package dataform_test

import (
	"encoding/xml"
	"testing"

	"github.com/treff-im/treff/dataform"
)

func TestRoundTrip(t *testing.T) {
	f := dataform.Form{Title: "T & t", Instructions: "Fill <in>", Fields: []dataform.Field{
		dataform.FormType("urn:example"),
		{Var: "who", Type: "jid-multi", Label: "Who's there", Required: true, Values: []string{"a@b", "c@d"}},
		{Var: "pick", Type: "list-single", Options: []string{"x", "y"}, Values: []string{"y"}},
	}}
	got := string(f.Append(nil, "form"))
	want := `<x xmlns='jabber:x:data' type='form'><title>T &amp; t</title><instructions>Fill &lt;in&gt;</instructions>` +
		`<field var='FORM_TYPE' type='hidden'><value>urn:example</value></field>` +
		`<field var='who' type='jid-multi' label='Who&apos;s there'><required/><value>a@b</value><value>c@d</value></field>` +
		`<field var='pick' type='list-single'><option><value>x</value></option><option><value>y</value></option><value>y</value></field></x>`
	if got != want {
		t.Errorf("Append:\n got %s\nwant %s", got, want)
	}
	var s struct {
		X *dataform.Submitted `xml:"jabber:x:data x"`
	}
	if err := xml.Unmarshal([]byte("<q>"+got+"</q>"), &s); err != nil {
		t.Fatal(err)
	}
	v := s.X.Values()
	if v.Get("FORM_TYPE") != "urn:example" || len(v["who"]) != 2 || v.Get("pick") != "y" || v.Get("missing") != "" {
		t.Errorf("Values: %v", v)
	}
	var none *dataform.Submitted
	if len(none.Values()) != 0 {
		t.Error("a nil form has values")
	}
}
