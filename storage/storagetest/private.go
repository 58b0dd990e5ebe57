package storagetest

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/treff-im/treff/storage"
)

// privateTests run only for stores that implement storage.PrivateXML.
var privateTests = []test{
	{name: "PutGetDelete", fn: testPrivateXML},
	{name: "DeleteAll", fn: testPrivateDeleteAll},
	{name: "Keys", fn: testPrivateKeys},
	{name: "CancelledContext", fn: cancelled(privateCalls)},
	{name: "EmptyJID", fn: emptyJID(privateCalls)},
}

func testPrivateXML(t *testing.T, ctx context.Context, s storage.Store) {
	p, ok := s.(storage.PrivateXML)
	if !ok {
		t.Skip("store does not implement storage.PrivateXML")
	}
	const key = "{storage:bookmarks}storage"
	if _, err := p.PrivateXML(ctx, alice, key); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("PrivateXML before any: %v, want ErrNotFound", err)
	}
	doc := []byte("<storage xmlns='storage:bookmarks'><conference jid='a@b' name='Käffchen &amp; Co'/></storage>")
	must(t, p.PutPrivateXML(ctx, alice, key, doc), "PutPrivateXML")
	must(t, p.PutPrivateXML(ctx, alice, "vcard", []byte("<vCard xmlns='vcard-temp'/>")), "PutPrivateXML vcard")
	must(t, p.PutPrivateXML(ctx, bob, key, []byte("<storage xmlns='storage:bookmarks'/>")), "PutPrivateXML bob")
	got, err := p.PrivateXML(ctx, alice, key)
	must(t, err, "PrivateXML")
	if !sameBytes(got, doc) {
		t.Errorf("PrivateXML = %q, want %q", got, doc)
	}
	// The store keeps its own copy, both ways.
	got[0] = 'X'
	doc[1] = 'X'
	if again, _ := p.PrivateXML(ctx, alice, key); again[0] != '<' || again[1] != 's' {
		t.Error("changing a passed or returned document changed the stored one")
	}
	must(t, p.PutPrivateXML(ctx, alice, key, []byte("<storage xmlns='storage:bookmarks'/>")), "PutPrivateXML again")
	if got, _ := p.PrivateXML(ctx, alice, key); string(got) != "<storage xmlns='storage:bookmarks'/>" {
		t.Errorf("after replacing: %q", got)
	}
	must(t, p.PutPrivateXML(ctx, alice, "empty", nil), "PutPrivateXML of an empty document")
	if got, err := p.PrivateXML(ctx, alice, "empty"); err != nil || len(got) != 0 {
		t.Errorf("empty document: %q, %v; want an empty one", got, err)
	}
	must(t, p.DeletePrivateXML(ctx, alice, key), "DeletePrivateXML")
	must(t, p.DeletePrivateXML(ctx, alice, key), "DeletePrivateXML of a missing document")
	must(t, p.DeletePrivateXML(ctx, "nobody@example.org", key), "DeletePrivateXML of a user without documents")
	if _, err := p.PrivateXML(ctx, alice, key); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("deleted document: %v, want ErrNotFound", err)
	}
	if got, err := p.PrivateXML(ctx, alice, "vcard"); err != nil || string(got) != "<vCard xmlns='vcard-temp'/>" {
		t.Errorf("other key of the same user: %q, %v", got, err)
	}
	if got, err := p.PrivateXML(ctx, bob, key); err != nil || string(got) != "<storage xmlns='storage:bookmarks'/>" {
		t.Errorf("other user's document: %q, %v", got, err)
	}
}

func testPrivateDeleteAll(t *testing.T, ctx context.Context, s storage.Store) {
	p, ok := s.(storage.PrivateXML)
	if !ok {
		t.Skip("store does not implement storage.PrivateXML")
	}
	for _, k := range []string{"a", "b", "c"} {
		must(t, p.PutPrivateXML(ctx, alice, k, []byte("<"+k+"/>")), "PutPrivateXML "+k)
	}
	must(t, p.PutPrivateXML(ctx, bob, "a", []byte("<a/>")), "PutPrivateXML bob")
	must(t, p.DeleteAllPrivateXML(ctx, alice), "DeleteAllPrivateXML")
	must(t, p.DeleteAllPrivateXML(ctx, alice), "DeleteAllPrivateXML again")
	for _, k := range []string{"a", "b", "c"} {
		if _, err := p.PrivateXML(ctx, alice, k); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("document %q after DeleteAllPrivateXML: %v, want ErrNotFound", k, err)
		}
	}
	if got, err := p.PrivateXML(ctx, bob, "a"); err != nil || string(got) != "<a/>" {
		t.Errorf("other user's document after DeleteAllPrivateXML: %q, %v", got, err)
	}
	must(t, p.PutPrivateXML(ctx, alice, "a", []byte("<new/>")), "PutPrivateXML after DeleteAllPrivateXML")
	if got, err := p.PrivateXML(ctx, alice, "a"); err != nil || string(got) != "<new/>" {
		t.Errorf("document stored after DeleteAllPrivateXML: %q, %v", got, err)
	}
}

func testPrivateKeys(t *testing.T, ctx context.Context, s storage.Store) {
	p, ok := s.(storage.PrivateXML)
	lister, ok2 := s.(storage.PrivateXMLKeys)
	if !ok || !ok2 {
		t.Skip("store does not implement storage.PrivateXMLKeys")
	}
	if keys, err := lister.PrivateXMLKeys(ctx, alice); err != nil || len(keys) != 0 {
		t.Fatalf("PrivateXMLKeys of a user without documents: %q, %v; want none", keys, err)
	}
	for _, k := range []string{"vcard-temp", "{storage:bookmarks}storage", "{a:b}c"} {
		must(t, p.PutPrivateXML(ctx, alice, k, []byte("<x/>")), "PutPrivateXML "+k)
	}
	must(t, p.PutPrivateXML(ctx, bob, "{bob:only}x", []byte("<x/>")), "PutPrivateXML bob")
	keys, err := lister.PrivateXMLKeys(ctx, alice)
	must(t, err, "PrivateXMLKeys")
	if want := []string{"vcard-temp", "{a:b}c", "{storage:bookmarks}storage"}; !slices.Equal(keys, want) {
		t.Errorf("PrivateXMLKeys = %q, want %q (sorted, only this user's)", keys, want)
	}
	must(t, p.DeletePrivateXML(ctx, alice, "{a:b}c"), "DeletePrivateXML")
	if keys, _ := lister.PrivateXMLKeys(ctx, alice); len(keys) != 2 {
		t.Errorf("PrivateXMLKeys after a delete = %q, want 2 keys", keys)
	}
	must(t, p.DeleteAllPrivateXML(ctx, alice), "DeleteAllPrivateXML")
	if keys, _ := lister.PrivateXMLKeys(ctx, alice); len(keys) != 0 {
		t.Errorf("PrivateXMLKeys after DeleteAllPrivateXML = %q, want none", keys)
	}
}
