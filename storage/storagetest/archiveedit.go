package storagetest

import (
	"context"
	"fmt"
	"testing"

	"github.com/treff-im/treff/storage"
)

// The checks of storage.ArchiveEditor, listed in archiveTests: they run
// only for stores that implement both storage.Archive and it.

func archiveEditorOf(t *testing.T, s storage.Store) (storage.Archive, storage.ArchiveEditor) {
	t.Helper()
	a := archiveOf(t, s)
	e, ok := s.(storage.ArchiveEditor)
	if !ok {
		t.Skip("store does not implement storage.ArchiveEditor")
	}
	return a, e
}

// testArchiveReplace checks that a replaced message keeps its ID, time,
// parties and place, that queries show the new stanza, that the others
// are untouched, and that the store keeps its own copy.
func testArchiveReplace(t *testing.T, ctx context.Context, s storage.Store) {
	a, e := archiveEditorOf(t, s)
	alice := appendArch(t, ctx, a, archAlice, 5)
	bob := appendArch(t, ctx, a, archBob, 2)
	tomb := []byte("<message type='groupchat'><retracted xmlns='urn:xmpp:message-retract:1' stamp='2026-01-02T03:04:05Z'/></message>")
	in := append([]byte(nil), tomb...)
	must(t, e.ReplaceArchived(ctx, archAlice, alice[2].ID, in), "ReplaceArchived")
	in[1] = 'X' // the caller's buffer is the caller's
	want := append([]storage.ArchivedMessage(nil), alice...)
	want[2].Stanza = tomb
	checkPage(t, "alice's archive after the replacement", query(t, ctx, a, archAlice, storage.ArchiveQuery{Limit: 10}), want, 5, 0, true)
	checkPage(t, "the replaced message by ID", query(t, ctx, a, archAlice, storage.ArchiveQuery{IDs: []string{alice[2].ID}, Limit: 10}), want[2:3], 1, 0, true)
	with := pick(want, func(_ int, m storage.ArchivedMessage) bool { return m.With == alice[2].With })
	checkPage(t, "with filter after the replacement", query(t, ctx, a, archAlice, storage.ArchiveQuery{With: alice[2].With, Limit: 10}), with, len(with), 0, true)
	checkPage(t, "bob's archive", query(t, ctx, a, archBob, storage.ArchiveQuery{Limit: 10}), bob, 2, 0, true)
	// Twice is fine: the last stanza stays.
	again := []byte("<message><retracted xmlns='urn:xmpp:message-retract:1'/></message>")
	must(t, e.ReplaceArchived(ctx, archAlice, alice[2].ID, again), "ReplaceArchived again")
	want[2].Stanza = again
	checkPage(t, "after the second replacement", query(t, ctx, a, archAlice, storage.ArchiveQuery{IDs: []string{alice[2].ID}, Limit: 10}), want[2:3], 1, 0, true)
	n, err := a.CountArchive(ctx, archAlice)
	must(t, err, "CountArchive")
	if n != 5 {
		t.Errorf("CountArchive after replacing: %d, want 5", n)
	}
}

// testArchiveReplaceUnknown checks ErrNotFound for IDs that are not in
// the user's archive, and that nothing changes.
func testArchiveReplaceUnknown(t *testing.T, ctx context.Context, s storage.Store) {
	a, e := archiveEditorOf(t, s)
	err := e.ReplaceArchived(ctx, archAlice, "AAAAAAAAAAAAAAAAAAAAAA", []byte("<message/>"))
	wantErr(t, err, storage.ErrNotFound, "ReplaceArchived in an empty store")
	alice := appendArch(t, ctx, a, archAlice, 2)
	bob := appendArch(t, ctx, a, archBob, 1)
	for _, id := range []string{"nope", "AAAAAAAAAAAAAAAAAAAAAA", bob[0].ID, alice[0].ID + "x", "%%%%", ""} {
		err := e.ReplaceArchived(ctx, archAlice, id, []byte("<message/>"))
		wantErr(t, err, storage.ErrNotFound, fmt.Sprintf("ReplaceArchived(%q) in alice's archive", id))
	}
	err = e.ReplaceArchived(ctx, archCarol, alice[0].ID, []byte("<message/>"))
	wantErr(t, err, storage.ErrNotFound, "ReplaceArchived of alice's message in carol's archive that does not exist")
	checkPage(t, "alice's archive", query(t, ctx, a, archAlice, storage.ArchiveQuery{Limit: 10}), alice, 2, 0, true)
	checkPage(t, "bob's archive", query(t, ctx, a, archBob, storage.ArchiveQuery{Limit: 10}), bob, 1, 0, true)
}

func archiveEditCalls(t *testing.T, ctx context.Context, s storage.Store) []call {
	a, e := archiveEditorOf(t, s)
	id, err := a.AppendArchive(ctx, alice, archMsg(0))
	must(t, err, "AppendArchive")
	return []call{
		{"ReplaceArchived", alice, func(ctx context.Context, j string) error { return e.ReplaceArchived(ctx, j, id, []byte("<message/>")) }},
	}
}
