package muc

import (
	"strconv"
	"testing"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff/storage"
)

// TestTombstoneOf: a tombstone keeps the message's from, type and id, its
// origin-id and occupant-id, and nothing else of its content.
func TestTombstoneOf(t *testing.T) {
	orig := []byte("<message xmlns='jabber:client' from='r@muc.example/b&amp;b' type='groupchat' id='m&lt;1'>" +
		"<body>secret</body><origin-id xmlns='urn:xmpp:sid:0' id='o1'/><occupant-id xmlns='urn:xmpp:occupant-id:0' id='occ'/>" +
		"<x xmlns='jabber:x:oob'><url>https://example.org/secret</url></x><reply xmlns='urn:xmpp:reply:0' to='x' id='y'/></message>")
	got, err := tombstoneOf(orig, []byte("<retracted xmlns='urn:xmpp:message-retract:1' stamp='2026-01-01T00:00:00Z'/>"))
	if err != nil {
		t.Fatal(err)
	}
	want := "<message from='r@muc.example/b&amp;b' type='groupchat' id='m&lt;1'><origin-id xmlns='urn:xmpp:sid:0' id='o1'/>" +
		"<occupant-id xmlns='urn:xmpp:occupant-id:0' id='occ'/><retracted xmlns='urn:xmpp:message-retract:1' stamp='2026-01-01T00:00:00Z'/></message>"
	if string(got) != want {
		t.Errorf("tombstone\n%s\nwant\n%s", got, want)
	}
	if _, err := tombstoneOf([]byte("<message"), nil); err == nil {
		t.Error("a broken stanza made a tombstone")
	}
}

// TestNoteAuthorBound: a room remembers the authors of its latest
// MaxRetractable messages only.
func TestNoteAuthorBound(t *testing.T) {
	m := &Module{MaxRetractable: 3}
	r := newRoom(m, jid.MustParse("r@muc.example"), storage.Room{JID: "r@muc.example"})
	for i := range 5 {
		r.noteAuthor("id"+strconv.Itoa(i), "u"+strconv.Itoa(i)+"@example.org")
	}
	if len(r.mod.authors) != 3 || len(r.mod.order) != 3 {
		t.Fatalf("%d authors, %d in order, want 3", len(r.mod.authors), len(r.mod.order))
	}
	for i := range 5 {
		got, ok := r.mod.authors["id"+strconv.Itoa(i)]
		if want := i >= 2; ok != want || ok && got != "u"+strconv.Itoa(i)+"@example.org" {
			t.Errorf("id%d: %q %v", i, got, ok)
		}
	}
}
