package e2e

import (
	"slices"
	"strings"
	"testing"
)

// TestContactAddresses: the example server's contact addresses (XEP-0157,
// contact_* keys) are in its disco#info as the serverinfo form, read by
// slixmpp's XEP-0030/XEP-0128 plugins, and on the status page.
func TestContactAddresses(t *testing.T) {
	needSlixmpp(t)
	bin := buildCommunity(t)
	data := t.TempDir()
	runCommunity(t, bin, "adduser", "-data", data, "-password", "alicepw", "alice@localhost")
	w := startWebCommunity(t, bin, data,
		"-contact-abuse", "xmpp:abuse@localhost,mailto:abuse@example.org",
		"-contact-security", "https://example.org/security")
	es := w.clients().slix(t, "disco", "--jid", "alice@localhost", "--password", "alicepw")
	var got struct {
		Features []string
		Forms    map[string]map[string][]string
	}
	es.one(t, "disco", "alice").decode(t, &got)
	info := got.Forms["http://jabber.org/network/serverinfo"]
	if info == nil {
		t.Fatalf("no serverinfo form in disco#info: %+v", got.Forms)
	}
	if a := info["abuse-addresses"]; !slices.Equal(a, []string{"xmpp:abuse@localhost", "mailto:abuse@example.org"}) {
		t.Errorf("abuse-addresses %q", a)
	}
	if s := info["security-addresses"]; !slices.Equal(s, []string{"https://example.org/security"}) {
		t.Errorf("security-addresses %q", s)
	}
	if _, ok := info["admin-addresses"]; ok {
		t.Errorf("admin-addresses without configuration: %v", info)
	}

	body, _ := get(t, httpsClient(t, w.cert), "https://"+w.https+"/")
	for _, want := range []string{
		`Report abuse: <a href="xmpp:abuse@localhost">xmpp:abuse@localhost</a>, <a href="mailto:abuse@example.org">mailto:abuse@example.org</a>`,
		`Security issues: <a href="https://example.org/security">https://example.org/security</a>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the status page lacks %s:\n%s", want, body)
		}
	}
	w.stop(t)
}
