package e2e

import (
	"testing"
)

// The test in this file drives vcard-temp (XEP-0054), the avatar hash in
// presence (XEP-0153, package vcard) and private XML storage (XEP-0049,
// package private) of the example server binary (examples/community,
// started as in register_test.go) with the scenario of clients/vcard.py.

// TestVCard: alice publishes a vCard with a photo through slixmpp's
// xep_0054 (her client does not load xep_0153, so it adds no hash
// itself); her next presence reaches bob, who subscribed to her, with the
// photo's SHA-1 in <x xmlns='vcard-temp:x:update'/>, added by the server;
// bob fetches her vCard and gets the name and the photo; alice stores an
// element with escaping-prone text in private XML storage with xep_0049
// and reads it back unchanged.
func TestVCard(t *testing.T) {
	_, _, p := startRegCommunity(t, nil, [2]string{"alice@localhost", alicePW}, [2]string{"bob@localhost", bobPW})
	body := uniqueBody("vcard")
	es := p.clients().client(t, "vcard.py", "vcard", "--jid", "alice@localhost", "--password", alicePW,
		"--peer", "bob@localhost", "--peer-password", bobPW, "--body", body)

	var published struct {
		PhotoSHA1 string `json:"photo_sha1"`
	}
	for _, e := range es.of("iq_reply", "alice") {
		var r iqReply
		e.decode(t, &r)
		if r.Label == "publish_vcard" {
			e.decode(t, &published)
		} else if r.Type != "result" {
			t.Errorf("alice's %s: %+v", r.Label, r)
		}
	}
	if published.PhotoSHA1 == "" {
		t.Fatal("no publish_vcard reply")
	}
	var avatar struct {
		From  string `json:"from"`
		Photo string `json:"photo"`
	}
	found := false
	for _, e := range es.of("avatar", "bob") {
		e.decode(t, &avatar)
		if avatar.From != "" && avatar.Photo == published.PhotoSHA1 {
			found = true
		}
	}
	if !found {
		t.Errorf("bob saw no presence of alice with the photo hash %s", published.PhotoSHA1)
	}
	var card struct {
		FN        string `json:"fn"`
		PhotoType string `json:"photo_type"`
		PhotoSHA1 string `json:"photo_sha1"`
	}
	es.one(t, "vcard", "bob").decode(t, &card)
	if card.FN != "Alice "+body || card.PhotoType != "image/png" || card.PhotoSHA1 != published.PhotoSHA1 {
		t.Errorf("bob fetched %+v, want FN %q and the photo %s", card, "Alice "+body, published.PhotoSHA1)
	}
	var priv struct {
		Nick string `json:"nick"`
	}
	es.one(t, "private", "alice").decode(t, &priv)
	if want := "Al & <Co> " + body; priv.Nick != want {
		t.Errorf("private storage gave back %q, want %q", priv.Nick, want)
	}
	p.stop(t)
}
