package storagetest

import (
	"context"
	"testing"

	"github.com/treff-im/treff/storage"
)

// blocklistTests run only for stores that implement storage.Blocklists.
var blocklistTests = []test{
	{name: "BlockUnblock", fn: testBlocklist},
	{name: "UnblockAll", fn: testUnblockAll},
	{name: "CancelledContext", fn: cancelled(blocklistCalls)},
	{name: "EmptyJID", fn: emptyJID(blocklistCalls)},
}

// checkBlocklist fails t unless the user's list is want (sorted).
func checkBlocklist(t *testing.T, ctx context.Context, b storage.Blocklists, user string, want ...string) {
	t.Helper()
	got, err := b.Blocklist(ctx, user)
	must(t, err, "Blocklist")
	if !sameStrings(got, want) {
		t.Errorf("Blocklist(%s) = %q, want %q", user, got, want)
	}
}

func testBlocklist(t *testing.T, ctx context.Context, s storage.Store) {
	b, ok := s.(storage.Blocklists)
	if !ok {
		t.Skip("store does not implement storage.Blocklists")
	}
	checkBlocklist(t, ctx, b, alice)
	jids := []string{"mallory@example.net", "spam.example", "eve@example.net/phone", "example.com/bot"}
	must(t, b.Block(ctx, alice, jids), "Block")
	// The store keeps its own copy of the slice.
	jids[0] = "changed@example.net"
	must(t, b.Block(ctx, alice, []string{"spam.example", "zed@example.org"}), "Block with one already blocked")
	must(t, b.Block(ctx, alice, nil), "Block of nothing")
	must(t, b.Block(ctx, bob, []string{"carol@example.org"}), "Block for bob")
	checkBlocklist(t, ctx, b, alice, "eve@example.net/phone", "example.com/bot", "mallory@example.net", "spam.example", "zed@example.org")
	for _, tc := range []struct {
		user, jid string
		want      bool
	}{
		{alice, "mallory@example.net", true},
		{alice, "eve@example.net/phone", true},
		{alice, "example.com/bot", true},
		{alice, "spam.example", true},
		// No matching of other forms: that is the caller's business.
		{alice, "eve@example.net", false},
		{alice, "mallory@example.net/home", false},
		{alice, "x@spam.example", false},
		{alice, "carol@example.org", false},
		{bob, "carol@example.org", true},
		{bob, "mallory@example.net", false},
		{"nobody@example.org", "mallory@example.net", false},
	} {
		got, err := b.IsBlocked(ctx, tc.user, tc.jid)
		if err != nil || got != tc.want {
			t.Errorf("IsBlocked(%s, %s) = %v, %v; want %v", tc.user, tc.jid, got, err, tc.want)
		}
	}
	got, _ := b.Blocklist(ctx, alice)
	got[0] = "changed"
	checkBlocklist(t, ctx, b, alice, "eve@example.net/phone", "example.com/bot", "mallory@example.net", "spam.example", "zed@example.org")

	must(t, b.Unblock(ctx, alice, []string{"spam.example", "never@blocked.example"}), "Unblock")
	must(t, b.Unblock(ctx, "nobody@example.org", []string{"spam.example"}), "Unblock for a user without a list")
	checkBlocklist(t, ctx, b, alice, "eve@example.net/phone", "example.com/bot", "mallory@example.net", "zed@example.org")
	if got, _ := b.IsBlocked(ctx, alice, "spam.example"); got {
		t.Error("IsBlocked after Unblock = true")
	}
	must(t, b.Unblock(ctx, alice, []string{"eve@example.net/phone", "example.com/bot", "mallory@example.net", "zed@example.org"}), "Unblock the rest")
	checkBlocklist(t, ctx, b, alice)
	must(t, b.Block(ctx, alice, []string{"again@example.net"}), "Block after emptying")
	checkBlocklist(t, ctx, b, alice, "again@example.net")
	checkBlocklist(t, ctx, b, bob, "carol@example.org")
}

func testUnblockAll(t *testing.T, ctx context.Context, s storage.Store) {
	b, ok := s.(storage.Blocklists)
	if !ok {
		t.Skip("store does not implement storage.Blocklists")
	}
	must(t, b.Block(ctx, alice, []string{"a@example.net", "b@example.net"}), "Block")
	must(t, b.Block(ctx, bob, []string{"a@example.net"}), "Block for bob")
	must(t, b.UnblockAll(ctx, alice), "UnblockAll")
	must(t, b.UnblockAll(ctx, alice), "UnblockAll again")
	checkBlocklist(t, ctx, b, alice)
	if got, _ := b.IsBlocked(ctx, alice, "a@example.net"); got {
		t.Error("IsBlocked after UnblockAll = true")
	}
	checkBlocklist(t, ctx, b, bob, "a@example.net")
}
