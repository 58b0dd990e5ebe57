package storagetest

import (
	"context"
	"fmt"
	"testing"

	"github.com/treff-im/treff/storage"
)

var rosterTests = []test{
	{name: "Empty", fn: testRosterEmpty},
	{name: "PutAndGet", fn: testRosterPutAndGet},
	{name: "AllFields", fn: testRosterAllFields},
	{name: "Replace", fn: testRosterReplace},
	{name: "Sorted", fn: testRosterSorted},
	{name: "VersionChanges", fn: testRosterVersionChanges},
	{name: "VersionStable", fn: testRosterVersionStable},
	{name: "DeleteItem", fn: testRosterDeleteItem},
	{name: "DeleteRoster", fn: testRosterDeleteRoster},
	{name: "EmptyGroups", fn: testRosterEmptyGroups},
	{name: "CopiesIn", fn: testRosterCopiesIn},
	{name: "CopiesOut", fn: testRosterCopiesOut},
	{name: "CancelledContext", fn: cancelled(rosterCalls)},
	{name: "EmptyJID", fn: emptyJID(rosterCalls)},
}

const (
	alice = "alice@example.org"
	bob   = "bob@example.org"
	// aliceP is a prefix of alice, to catch backends that look users up by
	// key prefix.
	aliceP = "alice@example.or"
)

// newItem returns a roster item for contact with some fields set.
func newItem(contact string) storage.RosterItem {
	return storage.RosterItem{
		JID:          contact,
		Name:         "Name of " + contact,
		Groups:       []string{"Friends", "Work"},
		Subscription: storage.SubBoth,
	}
}

// checkRoster fails t unless user's roster is exactly want (in that order)
// at version ver; ver "" skips the version check. It returns the version.
func checkRoster(t *testing.T, ctx context.Context, s storage.Store, user string, want []storage.RosterItem, ver string) string {
	t.Helper()
	items, gotVer, err := s.Roster(ctx, user)
	if err != nil {
		t.Errorf("Roster(%q): %v", user, err)
		return ""
	}
	if ver != "" && gotVer != ver {
		t.Errorf("Roster(%q) version = %q, want %q", user, gotVer, ver)
	}
	if len(items) != len(want) {
		t.Errorf("Roster(%q) = %d items %v, want %d %v", user, len(items), itemJIDs(items), len(want), itemJIDs(want))
		return gotVer
	}
	for i := range items {
		if d := DiffRosterItem(items[i], want[i]); d != "" {
			t.Errorf("Roster(%q)[%d]: %s", user, i, d)
		}
	}
	return gotVer
}

// checkItem fails t unless RosterItem(user, want.JID) returns want.
func checkItem(t *testing.T, ctx context.Context, s storage.Store, user string, want storage.RosterItem) {
	t.Helper()
	got, err := s.RosterItem(ctx, user, want.JID)
	if err != nil {
		t.Errorf("RosterItem(%q, %q): %v", user, want.JID, err)
		return
	}
	if d := DiffRosterItem(got, want); d != "" {
		t.Errorf("RosterItem(%q, %q): %s", user, want.JID, d)
	}
}

// itemJIDs returns the JIDs of items, for messages.
func itemJIDs(items []storage.RosterItem) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.JID
	}
	return out
}

// put calls PutRosterItem and fails t fatally on error.
func put(t *testing.T, ctx context.Context, s storage.Store, user string, item storage.RosterItem) string {
	t.Helper()
	ver, err := s.PutRosterItem(ctx, user, item)
	must(t, err, "PutRosterItem("+user+", "+item.JID+")")
	return ver
}

func testRosterEmpty(t *testing.T, ctx context.Context, s storage.Store) {
	items, ver, err := s.Roster(ctx, alice)
	must(t, err, "Roster of a user without roster")
	if len(items) != 0 {
		t.Errorf("Roster of a user without roster = %v, want no items", itemJIDs(items))
	}
	_, ver2, err := s.Roster(ctx, alice)
	must(t, err, "Roster")
	if ver2 != ver {
		t.Errorf("version of an empty roster changed from %q to %q without modification", ver, ver2)
	}
	_, err = s.RosterItem(ctx, alice, bob)
	wantErr(t, err, storage.ErrNotFound, "RosterItem in a missing roster")

	// An empty roster's version is valid for comparison: the first item
	// changes it.
	ver3 := put(t, ctx, s, alice, newItem(bob))
	if ver3 == ver {
		t.Errorf("PutRosterItem into an empty roster returned version %q, the same as the empty roster's", ver3)
	}
}

func testRosterPutAndGet(t *testing.T, ctx context.Context, s storage.Store) {
	item := newItem(bob)
	ver := put(t, ctx, s, alice, item)
	checkItem(t, ctx, s, alice, item)
	checkRoster(t, ctx, s, alice, []storage.RosterItem{item}, ver)

	_, err := s.RosterItem(ctx, alice, "carol@example.org")
	wantErr(t, err, storage.ErrNotFound, "RosterItem of a missing contact")
	_, err = s.RosterItem(ctx, alice, "bob@example.or")
	wantErr(t, err, storage.ErrNotFound, "RosterItem of a contact that is a prefix of an existing one")
	_, err = s.RosterItem(ctx, bob, bob)
	wantErr(t, err, storage.ErrNotFound, "RosterItem in another user's roster")
}

func testRosterAllFields(t *testing.T, ctx context.Context, s storage.Store) {
	var want []storage.RosterItem
	subs := []storage.Subscription{storage.SubNone, storage.SubTo, storage.SubFrom, storage.SubBoth}
	// Every subscription state with every combination of the three flags.
	for i := range 32 {
		item := storage.RosterItem{
			JID:          fmt.Sprintf("c%02d@example.net", i),
			Subscription: subs[i%4],
			PendingOut:   i&4 != 0,
			PendingIn:    i&8 != 0,
			Approved:     i&16 != 0,
		}
		switch i % 3 {
		case 0:
			item.Name = "Ünïcode ✓ name"
			item.Groups = []string{"Zeta", "Alpha", "Mid"} // order must be kept
		case 1:
			item.Groups = []string{"Only"}
		}
		put(t, ctx, s, alice, item)
		want = append(want, item)
	}
	for _, it := range want {
		checkItem(t, ctx, s, alice, it)
	}
	checkRoster(t, ctx, s, alice, want, "")
}

func testRosterReplace(t *testing.T, ctx context.Context, s storage.Store) {
	carol := newItem("carol@example.org")
	put(t, ctx, s, alice, newItem(bob))
	put(t, ctx, s, alice, carol)

	repl := storage.RosterItem{
		JID:          bob,
		Name:         "Bobby",
		Groups:       []string{"Family"},
		Subscription: storage.SubTo,
		PendingIn:    true,
	}
	ver := put(t, ctx, s, alice, repl)
	checkItem(t, ctx, s, alice, repl)
	checkRoster(t, ctx, s, alice, []storage.RosterItem{repl, carol}, ver)

	// Replacing with empty fields clears them.
	cleared := storage.RosterItem{JID: bob, Subscription: storage.SubNone}
	ver = put(t, ctx, s, alice, cleared)
	checkItem(t, ctx, s, alice, cleared)
	checkRoster(t, ctx, s, alice, []storage.RosterItem{cleared, carol}, ver)
}

func testRosterSorted(t *testing.T, ctx context.Context, s storage.Store) {
	order := []string{
		"zoë@example.net",
		"mike@example.org",
		"Zed@example.org",
		"example.net",
		"alice@example.org",
		"zoe@example.net",
		"alice@example.com",
		"a@example.org",
	}
	for _, jid := range order {
		put(t, ctx, s, alice, newItem(jid))
	}
	var want []storage.RosterItem
	for _, jid := range []string{
		"Zed@example.org",
		"a@example.org",
		"alice@example.com",
		"alice@example.org",
		"example.net",
		"mike@example.org",
		"zoe@example.net",
		"zoë@example.net",
	} {
		want = append(want, newItem(jid))
	}
	checkRoster(t, ctx, s, alice, want, "")
}

func testRosterVersionChanges(t *testing.T, ctx context.Context, s storage.Store) {
	_, ver, err := s.Roster(ctx, alice)
	must(t, err, "Roster")

	// step checks that a modification returned a new version and that
	// Roster reports it.
	step := func(what, newVer string) {
		t.Helper()
		if newVer == ver {
			t.Errorf("%s: version stayed %q", what, ver)
		}
		_, cur, err := s.Roster(ctx, alice)
		must(t, err, "Roster")
		if cur != newVer {
			t.Errorf("%s returned version %q, but Roster reports %q", what, newVer, cur)
		}
		ver = newVer
	}

	step("first PutRosterItem", put(t, ctx, s, alice, newItem(bob)))
	step("PutRosterItem of another contact", put(t, ctx, s, alice, newItem("carol@example.org")))
	step("PutRosterItem replacing an item", put(t, ctx, s, alice, storage.RosterItem{JID: bob, Subscription: storage.SubTo}))
	step("PutRosterItem with an identical item", put(t, ctx, s, alice, storage.RosterItem{JID: bob, Subscription: storage.SubTo}))

	v, err := s.DeleteRosterItem(ctx, alice, bob)
	must(t, err, "DeleteRosterItem")
	step("DeleteRosterItem", v)

	v, err = s.DeleteRosterItem(ctx, alice, "carol@example.org")
	must(t, err, "DeleteRosterItem of the last item")
	step("DeleteRosterItem of the last item", v)

	step("PutRosterItem into a roster emptied item by item", put(t, ctx, s, alice, newItem(bob)))

	must(t, s.DeleteRoster(ctx, alice), "DeleteRoster")
	_, cur, err := s.Roster(ctx, alice)
	must(t, err, "Roster")
	if cur == ver {
		t.Errorf("DeleteRoster of a non-empty roster: version stayed %q", ver)
	}
	ver = cur
	step("PutRosterItem after DeleteRoster", put(t, ctx, s, alice, newItem(bob)))
}

func testRosterVersionStable(t *testing.T, ctx context.Context, s storage.Store) {
	put(t, ctx, s, alice, newItem(bob))
	ver := put(t, ctx, s, alice, newItem("carol@example.org"))
	want := []storage.RosterItem{newItem(bob), newItem("carol@example.org")}

	// Reads do not change the version.
	for range 3 {
		checkRoster(t, ctx, s, alice, want, ver)
		checkItem(t, ctx, s, alice, newItem(bob))
	}

	// Failed deletes do not change it.
	_, err := s.DeleteRosterItem(ctx, alice, "dave@example.org")
	wantErr(t, err, storage.ErrNotFound, "DeleteRosterItem of a missing contact")
	checkRoster(t, ctx, s, alice, want, ver)

	// Neither do changes to other users' rosters, nor to other concerns.
	put(t, ctx, s, bob, newItem(alice))
	put(t, ctx, s, aliceP, newItem(alice))
	if _, err := s.DeleteRosterItem(ctx, bob, alice); err != nil {
		t.Errorf("DeleteRosterItem(bob, alice): %v", err)
	}
	must(t, s.DeleteRoster(ctx, aliceP), "DeleteRoster of another user")
	must(t, s.CreateAccount(ctx, newAccount(alice)), "CreateAccount")
	if _, err := s.PushOffline(ctx, alice, storage.OfflineMessage{Received: t1, Stanza: []byte("<message/>")}, 0); err != nil {
		t.Errorf("PushOffline: %v", err)
	}
	checkRoster(t, ctx, s, alice, want, ver)
}

func testRosterDeleteItem(t *testing.T, ctx context.Context, s storage.Store) {
	carol, dave := newItem("carol@example.org"), newItem("dave@example.org")
	put(t, ctx, s, alice, newItem(bob))
	put(t, ctx, s, alice, carol)
	put(t, ctx, s, alice, dave)

	ver, err := s.DeleteRosterItem(ctx, alice, bob)
	must(t, err, "DeleteRosterItem")
	_, err = s.RosterItem(ctx, alice, bob)
	wantErr(t, err, storage.ErrNotFound, "RosterItem after DeleteRosterItem")
	checkRoster(t, ctx, s, alice, []storage.RosterItem{carol, dave}, ver)

	_, err = s.DeleteRosterItem(ctx, alice, bob)
	wantErr(t, err, storage.ErrNotFound, "second DeleteRosterItem")
	_, err = s.DeleteRosterItem(ctx, alice, "carol@example.or")
	wantErr(t, err, storage.ErrNotFound, "DeleteRosterItem of a prefix of an existing contact")
	_, err = s.DeleteRosterItem(ctx, bob, "carol@example.org")
	wantErr(t, err, storage.ErrNotFound, "DeleteRosterItem in a missing roster")
	checkRoster(t, ctx, s, alice, []storage.RosterItem{carol, dave}, ver)

	// A deleted item can be added again.
	ver = put(t, ctx, s, alice, newItem(bob))
	checkRoster(t, ctx, s, alice, []storage.RosterItem{newItem(bob), carol, dave}, ver)
}

func testRosterDeleteRoster(t *testing.T, ctx context.Context, s storage.Store) {
	must(t, s.DeleteRoster(ctx, alice), "DeleteRoster of a missing roster")

	put(t, ctx, s, alice, newItem(bob))
	put(t, ctx, s, alice, newItem("carol@example.org"))
	bobVer := put(t, ctx, s, bob, newItem(alice))

	must(t, s.DeleteRoster(ctx, alice), "DeleteRoster")
	checkRoster(t, ctx, s, alice, nil, "")
	_, err := s.RosterItem(ctx, alice, bob)
	wantErr(t, err, storage.ErrNotFound, "RosterItem after DeleteRoster")
	_, err = s.DeleteRosterItem(ctx, alice, bob)
	wantErr(t, err, storage.ErrNotFound, "DeleteRosterItem after DeleteRoster")
	must(t, s.DeleteRoster(ctx, alice), "second DeleteRoster")

	// Bob's roster is untouched.
	checkRoster(t, ctx, s, bob, []storage.RosterItem{newItem(alice)}, bobVer)

	// The roster can be rebuilt.
	ver := put(t, ctx, s, alice, newItem("dave@example.org"))
	checkRoster(t, ctx, s, alice, []storage.RosterItem{newItem("dave@example.org")}, ver)
}

func testRosterEmptyGroups(t *testing.T, ctx context.Context, s storage.Store) {
	nilGroups := storage.RosterItem{JID: bob, Subscription: storage.SubNone, Groups: nil}
	emptyGroups := storage.RosterItem{JID: "carol@example.org", Subscription: storage.SubFrom, Groups: []string{}}
	put(t, ctx, s, alice, nilGroups)
	put(t, ctx, s, alice, emptyGroups)
	checkItem(t, ctx, s, alice, nilGroups)
	checkItem(t, ctx, s, alice, emptyGroups)
	checkRoster(t, ctx, s, alice, []storage.RosterItem{nilGroups, emptyGroups}, "")
}

func testRosterCopiesIn(t *testing.T, ctx context.Context, s storage.Store) {
	item := newItem(bob)
	want := newItem(bob)
	put(t, ctx, s, alice, item)
	item.Groups[0] = "Enemies"
	item.Name = "changed"
	item.Subscription = storage.SubNone
	checkItem(t, ctx, s, alice, want)
	checkRoster(t, ctx, s, alice, []storage.RosterItem{want}, "")
}

func testRosterCopiesOut(t *testing.T, ctx context.Context, s storage.Store) {
	want := newItem(bob)
	put(t, ctx, s, alice, newItem(bob))

	got, err := s.RosterItem(ctx, alice, bob)
	must(t, err, "RosterItem")
	got.Groups[0] = "Enemies"
	got.Groups = append(got.Groups, "More")
	checkItem(t, ctx, s, alice, want)

	items, _, err := s.Roster(ctx, alice)
	must(t, err, "Roster")
	if len(items) != 1 {
		t.Fatalf("Roster = %v, want one item", itemJIDs(items))
	}
	items[0].Groups[1] = "Enemies"
	items[0].JID = "mallory@example.org"
	items[0].Approved = true
	checkItem(t, ctx, s, alice, want)
	checkRoster(t, ctx, s, alice, []storage.RosterItem{want}, "")
}
