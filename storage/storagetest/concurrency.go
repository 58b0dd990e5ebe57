package storagetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/treff-im/treff/storage"
)

var concurrencyTests = []test{
	{name: "CreateAccountOnce", fn: testConcurrentCreateAccount},
	{name: "RosterVersions", fn: testConcurrentRosterVersions},
	{name: "Mixed", fn: testConcurrentMixed},
}

var closeTests = []test{
	{name: "ErrClosed", fn: testClosed, closes: true},
}

// testConcurrentCreateAccount checks that of many concurrent creations of
// the same account exactly one succeeds.
func testConcurrentCreateAccount(t *testing.T, ctx context.Context, s storage.Store) {
	const workers = 32
	var (
		errs    errorList
		created atomic.Int32
	)
	parallel(t, ctx, workers, func(i int) {
		a := newAccount(alice)
		a.Created = t1.Add(time.Duration(i) * time.Second)
		switch err := s.CreateAccount(ctx, a); {
		case err == nil:
			created.Add(1)
		case !errors.Is(err, storage.ErrExists):
			errs.add("CreateAccount in goroutine %d: %v, want nil or ErrExists", i, err)
		}
	})
	errs.report(t)
	if n := created.Load(); n != 1 {
		t.Errorf("%d concurrent CreateAccount calls for one JID: %d succeeded, want 1", workers, n)
	}
	list, err := s.ListAccounts(ctx, "")
	must(t, err, "ListAccounts")
	if len(list) != 1 {
		t.Errorf("ListAccounts = %v, want one account", jids(list))
	}
}

// testConcurrentRosterVersions checks that concurrent modifications of one
// roster all get distinct versions, and that the roster ends at one of them.
func testConcurrentRosterVersions(t *testing.T, ctx context.Context, s storage.Store) {
	const workers = 32
	var errs errorList
	vers := make([][2]string, workers)
	parallel(t, ctx, workers, func(i int) {
		contact := fmt.Sprintf("c%02d@example.net", i)
		v, err := s.PutRosterItem(ctx, alice, newItem(contact))
		if err != nil {
			errs.add("PutRosterItem in goroutine %d: %v", i, err)
			return
		}
		vers[i][0] = v
		if i%2 == 1 {
			if v, err = s.DeleteRosterItem(ctx, alice, contact); err != nil {
				errs.add("DeleteRosterItem in goroutine %d: %v", i, err)
				return
			}
			vers[i][1] = v
		}
	})
	if !errs.report(t) {
		return
	}
	seen := make(map[string]bool)
	for _, pair := range vers {
		for _, v := range pair {
			if v == "" {
				continue
			}
			if seen[v] {
				t.Errorf("two concurrent modifications returned the same roster version %q", v)
			}
			seen[v] = true
		}
	}
	items, ver, err := s.Roster(ctx, alice)
	must(t, err, "Roster")
	if !seen[ver] {
		t.Errorf("roster version after concurrent modifications is %q, which none of them returned", ver)
	}
	var want []string
	for i := 0; i < workers; i += 2 {
		want = append(want, fmt.Sprintf("c%02d@example.net", i))
	}
	if got := itemJIDs(items); !sameStrings(got, want) {
		t.Errorf("Roster after concurrent modifications = %v, want %v", got, want)
	}
}

// testConcurrentMixed runs every operation from several goroutines at once:
// each writer works on its own user and on one shared user, while readers
// check invariants of the shared data. At the end every user's data must be
// exactly what the writers did. Run it with -race.
func testConcurrentMixed(t *testing.T, ctx context.Context, s storage.Store) {
	const (
		writers = 8
		readers = 4
		rounds  = 16
		shared  = "shared@example.org"
	)
	user := func(w int) string { return fmt.Sprintf("user%02d@example.org", w) }
	contact := func(w, i int) string { return fmt.Sprintf("w%02d-c%02d@example.net", w, i) }

	var (
		errs     errorList
		writing  atomic.Int32
		expected = make([]struct {
			contacts []string
			msgs     []storage.OfflineMessage
			shared   []uint64 // IDs pushed to shared, in push order
		}, writers)
	)
	writing.Store(writers)

	writer := func(w int) {
		defer writing.Add(-1)
		u := user(w)
		exp := &expected[w]
		acc := newAccount(u)
		if err := s.CreateAccount(ctx, acc); err != nil {
			errs.add("CreateAccount(%q): %v", u, err)
			return
		}
		for i := range rounds {
			if ctx.Err() != nil {
				return
			}
			acc.LastLogin = t2.Add(time.Duration(i) * 24 * time.Hour)
			if err := s.UpdateAccount(ctx, acc); err != nil {
				errs.add("UpdateAccount(%q): %v", u, err)
			}
			if got, err := s.Account(ctx, u); err != nil {
				errs.add("Account(%q): %v", u, err)
			} else if d := DiffAccount(got, acc); d != "" {
				errs.add("Account(%q) after own update: %s", u, d)
			}

			c := contact(w, i)
			if _, err := s.PutRosterItem(ctx, u, newItem(c)); err != nil {
				errs.add("PutRosterItem(%q): %v", u, err)
			} else {
				exp.contacts = append(exp.contacts, c)
			}
			if i%3 == 2 {
				old := exp.contacts[0]
				if _, err := s.DeleteRosterItem(ctx, u, old); err != nil {
					errs.add("DeleteRosterItem(%q, %q): %v", u, old, err)
				} else {
					exp.contacts = exp.contacts[1:]
				}
			}
			if _, err := s.PutRosterItem(ctx, shared, newItem(c)); err != nil {
				errs.add("PutRosterItem(shared): %v", err)
			}

			msg := storage.OfflineMessage{Received: t1.Add(time.Duration(i) * time.Millisecond), Stanza: stanza(u, i)}
			if id, err := s.PushOffline(ctx, u, msg, 0); err != nil {
				errs.add("PushOffline(%q): %v", u, err)
			} else {
				msg.ID = id
				exp.msgs = append(exp.msgs, msg)
			}
			if id, err := s.PushOffline(ctx, shared, storage.OfflineMessage{Received: t1, Stanza: stanza(u, i)}, 0); err != nil {
				errs.add("PushOffline(shared): %v", err)
			} else {
				exp.shared = append(exp.shared, id)
			}
			if i%4 == 3 {
				del := exp.msgs[0].ID
				if err := s.DeleteOfflineMessages(ctx, u, []uint64{del}); err != nil {
					errs.add("DeleteOfflineMessages(%q): %v", u, err)
				} else {
					exp.msgs = exp.msgs[1:]
				}
			}
			if n, err := s.CountOffline(ctx, u); err != nil {
				errs.add("CountOffline(%q): %v", u, err)
			} else if n != len(exp.msgs) {
				errs.add("CountOffline(%q) = %d, want %d", u, n, len(exp.msgs))
			}
		}
	}

	reader := func() {
		for writing.Load() > 0 && ctx.Err() == nil {
			if list, err := s.ListAccounts(ctx, "example.org"); err != nil {
				errs.add("ListAccounts: %v", err)
			} else if !slices.IsSortedFunc(list, func(a, b storage.Account) int { return strings.Compare(a.JID, b.JID) }) {
				errs.add("ListAccounts not sorted: %v", jids(list))
			}
			if items, ver, err := s.Roster(ctx, shared); err != nil {
				errs.add("Roster(shared): %v", err)
			} else if !slices.IsSortedFunc(items, func(a, b storage.RosterItem) int { return strings.Compare(a.JID, b.JID) }) {
				errs.add("Roster(shared) not sorted: %v", itemJIDs(items))
			} else if ver == "" && len(items) > 0 {
				errs.add("Roster(shared) has items but an empty version")
			}
			if msgs, err := s.OfflineMessages(ctx, shared); err != nil {
				errs.add("OfflineMessages(shared): %v", err)
			} else if !slices.IsSorted(ids(msgs)) {
				errs.add("OfflineMessages(shared) not in ID order: %v", ids(msgs))
			}
			if _, err := s.CountOffline(ctx, shared); err != nil {
				errs.add("CountOffline(shared): %v", err)
			}
			if _, err := s.RosterItem(ctx, shared, contact(0, 0)); err != nil && !errors.Is(err, storage.ErrNotFound) {
				errs.add("RosterItem(shared): %v", err)
			}
			// Leave the writers room: readers that only spin make the
			// subtest slow without adding interleavings.
			time.Sleep(100 * time.Microsecond)
		}
	}

	parallel(t, ctx, writers+readers, func(i int) {
		if i < writers {
			writer(i)
		} else {
			reader()
		}
	})
	if !errs.report(t) {
		return
	}

	// Every writer's own user holds exactly what that writer left.
	for w := range writers {
		u := user(w)
		var want []storage.RosterItem
		for _, c := range expected[w].contacts {
			want = append(want, newItem(c))
		}
		checkRoster(t, ctx, s, u, want, "")
		checkOffline(t, ctx, s, u, expected[w].msgs)
		acc := newAccount(u)
		acc.LastLogin = t2.Add(time.Duration(rounds-1) * 24 * time.Hour)
		checkAccount(t, ctx, s, acc)
	}

	// The shared user has everything, and each writer's messages are in
	// the order that writer pushed them.
	items, _, err := s.Roster(ctx, shared)
	must(t, err, "Roster(shared)")
	if len(items) != writers*rounds {
		t.Errorf("shared roster has %d items, want %d", len(items), writers*rounds)
	}
	msgs, err := s.OfflineMessages(ctx, shared)
	must(t, err, "OfflineMessages(shared)")
	if len(msgs) != writers*rounds {
		t.Errorf("shared user has %d offline messages, want %d", len(msgs), writers*rounds)
	}
	pos := make(map[uint64]int, len(msgs))
	for i, m := range msgs {
		pos[m.ID] = i
	}
	for w := range writers {
		last := -1
		for _, id := range expected[w].shared {
			p, ok := pos[id]
			if !ok {
				t.Errorf("writer %d's shared message %d is missing", w, id)
				continue
			}
			if p <= last {
				t.Errorf("writer %d's shared messages are not in push order", w)
			}
			last = p
		}
	}
	list, err := s.ListAccounts(ctx, "example.org")
	must(t, err, "ListAccounts")
	if len(list) != writers {
		t.Errorf("ListAccounts = %d accounts, want %d", len(list), writers)
	}
}

// testClosed checks that every method reports ErrClosed after Close.
func testClosed(t *testing.T, ctx context.Context, s storage.Store) {
	must(t, s.CreateAccount(ctx, newAccount(alice)), "CreateAccount")
	put(t, ctx, s, alice, newItem(bob))
	m := push(t, ctx, s, alice, 1)

	must(t, s.Close(), "Close")

	check := func(what string, err error) {
		t.Helper()
		wantErr(t, err, storage.ErrClosed, what+" after Close")
	}
	check("CreateAccount", s.CreateAccount(ctx, newAccount(bob)))
	_, err := s.Account(ctx, alice)
	check("Account", err)
	check("UpdateAccount", s.UpdateAccount(ctx, newAccount(alice)))
	check("DeleteAccount", s.DeleteAccount(ctx, alice))
	_, err = s.ListAccounts(ctx, "")
	check("ListAccounts", err)

	_, _, err = s.Roster(ctx, alice)
	check("Roster", err)
	_, err = s.RosterItem(ctx, alice, bob)
	check("RosterItem", err)
	_, err = s.PutRosterItem(ctx, alice, newItem("carol@example.org"))
	check("PutRosterItem", err)
	_, err = s.DeleteRosterItem(ctx, alice, bob)
	check("DeleteRosterItem", err)
	check("DeleteRoster", s.DeleteRoster(ctx, alice))

	_, err = s.PushOffline(ctx, alice, storage.OfflineMessage{Received: t1}, 0)
	check("PushOffline", err)
	_, err = s.OfflineMessages(ctx, alice)
	check("OfflineMessages", err)
	check("DeleteOfflineMessages", s.DeleteOfflineMessages(ctx, alice, []uint64{m.ID}))
	_, err = s.CountOffline(ctx, alice)
	check("CountOffline", err)
	check("DeleteOffline", s.DeleteOffline(ctx, alice))
}
