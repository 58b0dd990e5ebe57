package storagetest

import (
	"context"
	"testing"
	"time"

	"github.com/treff-im/treff/storage"
)

// heldTests run only for stores that implement storage.HeldNames.
var heldTests = []test{
	{name: "HoldAndExpire", fn: testHeldNames},
	{name: "CancelledContext", fn: cancelled(heldCalls)},
	{name: "EmptyJID", fn: emptyJID(heldCalls)},
}

func testHeldNames(t *testing.T, ctx context.Context, s storage.Store) {
	h, ok := s.(storage.HeldNames)
	if !ok {
		t.Skip("store does not implement storage.HeldNames")
	}
	if until, err := h.NameHeldUntil(ctx, alice); err != nil || !until.IsZero() {
		t.Fatalf("NameHeldUntil before any hold: %v %v, want zero", until, err)
	}
	week := time.Now().Add(7 * 24 * time.Hour).Round(time.Second)
	must(t, h.HoldName(ctx, alice, week), "HoldName")
	until, err := h.NameHeldUntil(ctx, alice)
	must(t, err, "NameHeldUntil")
	if !until.Equal(week) || until.Location() != time.UTC {
		t.Errorf("NameHeldUntil = %v, want %v (UTC)", until, week)
	}
	if until, _ := h.NameHeldUntil(ctx, bob); !until.IsZero() {
		t.Errorf("bob held until %v, never held", until)
	}
	// A passed hold is no hold, and a new hold replaces the old.
	must(t, h.HoldName(ctx, bob, time.Now().Add(-time.Second)), "HoldName in the past")
	if until, _ := h.NameHeldUntil(ctx, bob); !until.IsZero() {
		t.Errorf("passed hold still held until %v", until)
	}
	day := time.Now().Add(24 * time.Hour).Round(time.Second)
	must(t, h.HoldName(ctx, alice, day), "HoldName again")
	if until, _ := h.NameHeldUntil(ctx, alice); !until.Equal(day) {
		t.Errorf("after a new hold: %v, want %v", until, day)
	}
}
