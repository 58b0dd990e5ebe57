package storagetest

import (
	"context"
	"testing"

	"github.com/treff-im/treff/storage"
)

var isolationTests = []test{
	{name: "BetweenUsers", fn: testIsolationUsers},
	{name: "BetweenConcerns", fn: testIsolationConcerns},
}

// testIsolationUsers checks that one user's data never shows up for, or is
// changed through, another user, including users whose JIDs are prefixes
// of each other.
func testIsolationUsers(t *testing.T, ctx context.Context, s storage.Store) {
	carol := newItem("carol@example.org")
	dave := newItem("dave@example.org")
	put(t, ctx, s, alice, carol)
	rosterVer := put(t, ctx, s, alice, dave)
	msgs := []storage.OfflineMessage{push(t, ctx, s, alice, 1), push(t, ctx, s, alice, 2)}

	for _, other := range []string{bob, aliceP, alice + "x", "ALICE@example.org"} {
		checkRoster(t, ctx, s, other, nil, "")
		if _, err := s.RosterItem(ctx, other, carol.JID); err == nil {
			t.Errorf("RosterItem(%q, %q) found alice's item", other, carol.JID)
		} else {
			wantErr(t, err, storage.ErrNotFound, "RosterItem of another user's contact")
		}
		checkOffline(t, ctx, s, other, nil)

		// Operations on the other user leave alice alone.
		_, err := s.DeleteRosterItem(ctx, other, carol.JID)
		wantErr(t, err, storage.ErrNotFound, "DeleteRosterItem of another user's contact")
		must(t, s.DeleteRoster(ctx, other), "DeleteRoster("+other+")")
		must(t, s.DeleteOfflineMessages(ctx, other, ids(msgs)), "DeleteOfflineMessages("+other+", alice's IDs)")
		must(t, s.DeleteOffline(ctx, other), "DeleteOffline("+other+")")
		checkRoster(t, ctx, s, alice, []storage.RosterItem{carol, dave}, rosterVer)
		checkOffline(t, ctx, s, alice, msgs)
	}

	// Bob gets his own data; alice's stays as it was.
	bobItem := newItem(alice)
	bobVer := put(t, ctx, s, bob, bobItem)
	bobMsg := push(t, ctx, s, bob, 7)
	checkRoster(t, ctx, s, bob, []storage.RosterItem{bobItem}, bobVer)
	checkOffline(t, ctx, s, bob, []storage.OfflineMessage{bobMsg})
	checkRoster(t, ctx, s, alice, []storage.RosterItem{carol, dave}, rosterVer)
	checkOffline(t, ctx, s, alice, msgs)

	// Deleting alice's data leaves bob's.
	must(t, s.DeleteRoster(ctx, alice), "DeleteRoster(alice)")
	must(t, s.DeleteOffline(ctx, alice), "DeleteOffline(alice)")
	checkRoster(t, ctx, s, bob, []storage.RosterItem{bobItem}, bobVer)
	checkOffline(t, ctx, s, bob, []storage.OfflineMessage{bobMsg})
}

// testIsolationConcerns checks that accounts, rosters and offline messages
// are independent: as storage.Accounts documents, deleting an account does
// not remove the user's other data, and the other concerns do not need an
// account.
func testIsolationConcerns(t *testing.T, ctx context.Context, s storage.Store) {
	// Rosters and offline messages of users without an account.
	item := newItem(bob)
	ver := put(t, ctx, s, alice, item)
	msg := push(t, ctx, s, alice, 1)
	_, err := s.Account(ctx, alice)
	wantErr(t, err, storage.ErrNotFound, "Account of a user who only has a roster and messages")
	list, err := s.ListAccounts(ctx, "")
	must(t, err, "ListAccounts")
	if len(list) != 0 {
		t.Errorf("ListAccounts = %v, want none: rosters and messages are not accounts", jids(list))
	}

	// Creating and deleting the account leaves them alone.
	must(t, s.CreateAccount(ctx, newAccount(alice)), "CreateAccount")
	must(t, s.DeleteAccount(ctx, alice), "DeleteAccount")
	checkRoster(t, ctx, s, alice, []storage.RosterItem{item}, ver)
	checkOffline(t, ctx, s, alice, []storage.OfflineMessage{msg})

	// And removing them leaves the account alone.
	acc := newAccount(alice)
	must(t, s.CreateAccount(ctx, acc), "CreateAccount")
	must(t, s.DeleteRoster(ctx, alice), "DeleteRoster")
	must(t, s.DeleteOffline(ctx, alice), "DeleteOffline")
	checkAccount(t, ctx, s, acc)
}
