package boltstore

import (
	"context"
	"testing"
	"time"
)

// TestHeldNamesList: HeldNames lists the holds that have not passed, with
// their ends, and nothing else.
func TestHeldNamesList(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t, nil)
	future := time.Now().Add(time.Hour).UTC().Round(0)
	if err := s.HoldName(ctx, "gone@example.org", future); err != nil {
		t.Fatal(err)
	}
	if err := s.HoldName(ctx, "past@example.org", time.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	got, err := s.HeldNames(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !got["gone@example.org"].Equal(future) {
		t.Errorf("HeldNames = %v, want only gone@example.org until %v", got, future)
	}
}
