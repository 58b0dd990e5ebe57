package storagetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/treff-im/treff/storage"
)

// lastTests run only for stores that implement storage.LastActivity.
var lastTests = []test{
	{name: "RoundTrip", fn: testLastRoundTrip},
	{name: "CancelledContext", fn: cancelled(lastCalls)},
	{name: "EmptyJID", fn: emptyJID(lastCalls)},
}

func testLastRoundTrip(t *testing.T, ctx context.Context, s storage.Store) {
	la, ok := s.(storage.LastActivity)
	if !ok {
		t.Skip("store does not implement storage.LastActivity")
	}
	if _, _, err := la.LastActivity(ctx, alice); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("LastActivity before any record: %v, want ErrNotFound", err)
	}
	at := time.Date(2026, 3, 4, 5, 6, 7, 8, time.FixedZone("x", 3600))
	must(t, la.SetLastActivity(ctx, alice, at, "gone fishing ✓"), "SetLastActivity")
	must(t, la.SetLastActivity(ctx, bob, at.Add(time.Hour), ""), "SetLastActivity")
	got, status, err := la.LastActivity(ctx, alice)
	must(t, err, "LastActivity")
	if !got.Equal(at) || got.Location() != time.UTC || status != "gone fishing ✓" {
		t.Errorf("LastActivity = %v %q, want %v (UTC) %q", got, status, at, "gone fishing ✓")
	}
	later := at.Add(time.Minute)
	must(t, la.SetLastActivity(ctx, alice, later, ""), "SetLastActivity again")
	if got, status, _ := la.LastActivity(ctx, alice); !got.Equal(later) || status != "" {
		t.Errorf("after update: %v %q", got, status)
	}
	must(t, la.DeleteLastActivity(ctx, alice), "DeleteLastActivity")
	must(t, la.DeleteLastActivity(ctx, alice), "DeleteLastActivity of a missing record")
	if _, _, err := la.LastActivity(ctx, alice); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("after delete: %v", err)
	}
	if got, _, err := la.LastActivity(ctx, bob); err != nil || !got.Equal(at.Add(time.Hour)) {
		t.Errorf("other user's record: %v %v", got, err)
	}
}
