package memstore_test

import (
	"context"
	"errors"
	"testing"

	"github.com/treff-im/treff/storage"
	"github.com/treff-im/treff/storage/memstore"
	"github.com/treff-im/treff/storage/storagetest"
)

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store {
		return memstore.New()
	})
}

// TestCanceledContext checks that every method gives up on a context that is
// already done.
func TestCanceledContext(t *testing.T) {
	s := memstore.New()
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for name, err := range map[string]error{
		"CreateAccount": s.CreateAccount(ctx, storage.Account{JID: "alice@example.org"}),
		"PushOffline": func() error {
			_, err := s.PushOffline(ctx, "alice@example.org", storage.OfflineMessage{}, 0)
			return err
		}(),
		"Roster": func() error {
			_, _, err := s.Roster(ctx, "alice@example.org")
			return err
		}(),
	} {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a canceled context: got %v, want context.Canceled", name, err)
		}
	}
	// Nothing was written.
	if n, err := s.CountOffline(context.Background(), "alice@example.org"); err != nil || n != 0 {
		t.Errorf("CountOffline = %d, %v; want 0, nil", n, err)
	}
	if _, err := s.Account(context.Background(), "alice@example.org"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Account after canceled CreateAccount: got %v, want ErrNotFound", err)
	}
}

// TestCloseTwice checks that a second Close reports ErrClosed.
func TestCloseTwice(t *testing.T) {
	s := memstore.New()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); !errors.Is(err, storage.ErrClosed) {
		t.Errorf("second Close: got %v, want ErrClosed", err)
	}
}

// TestEmptyJID checks that writes keyed by an empty JID are refused rather
// than stored under a key no lookup can sensibly reach.
func TestEmptyJID(t *testing.T) {
	ctx := context.Background()
	s := memstore.New()
	defer s.Close()
	if err := s.CreateAccount(ctx, storage.Account{}); err == nil {
		t.Error("CreateAccount with an empty JID succeeded")
	}
	if _, err := s.PutRosterItem(ctx, "", storage.RosterItem{JID: "bob@example.org"}); err == nil {
		t.Error("PutRosterItem for an empty user succeeded")
	}
	if _, err := s.PutRosterItem(ctx, "alice@example.org", storage.RosterItem{}); err == nil {
		t.Error("PutRosterItem with an empty contact succeeded")
	}
	if _, err := s.PushOffline(ctx, "", storage.OfflineMessage{}, 0); err == nil {
		t.Error("PushOffline for an empty user succeeded")
	}
}
