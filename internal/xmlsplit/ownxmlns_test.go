package xmlsplit

import "testing"

func TestHasOwnXMLNS(t *testing.T) {
	for _, tc := range []struct {
		el   string
		want bool
	}{
		{`<iq xmlns='jabber:client'/>`, true},
		{`<iq xmlns ='jabber:client'/>`, true},
		{"<iq\txmlns\n=\r\"jabber:client\"/>", true},
		{`<iq id='1' xmlns = "x"><q/></iq>`, true},
		{`<iq xmlns:p='x'/>`, false},
		{`<iq id=' xmlns=' />`, false},
		{`<iq><q xmlns='x'/></iq>`, false},
		{`<iq/>`, false},
	} {
		if got := HasOwnXMLNS([]byte(tc.el)); got != tc.want {
			t.Errorf("HasOwnXMLNS(%q) = %v, want %v", tc.el, got, tc.want)
		}
	}
}
