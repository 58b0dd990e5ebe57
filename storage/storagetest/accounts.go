package storagetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/treff-im/treff/storage"
)

var accountTests = []test{
	{name: "CreateAndGet", fn: testAccountCreateAndGet},
	{name: "CreateExisting", fn: testAccountCreateExisting},
	{name: "NotFound", fn: testAccountNotFound},
	{name: "Update", fn: testAccountUpdate},
	{name: "Delete", fn: testAccountDelete},
	{name: "ListSortedAndFiltered", fn: testAccountList},
	{name: "EmptyByteSlices", fn: testAccountEmptyBytes},
	{name: "CopiesIn", fn: testAccountCopiesIn},
	{name: "CopiesOut", fn: testAccountCopiesOut},
	{name: "SetLastLogin", fn: testAccountSetLastLogin},
	{name: "SuspendedAndApproved", fn: testAccountSuspended},
	{name: "CancelledContext", fn: cancelled(accountCalls)},
	{name: "EmptyJID", fn: emptyJID(accountCalls)},
}

// SetLastLogin keeps the day only and changes no other field.
func testAccountSetLastLogin(t *testing.T, ctx context.Context, s storage.Store) {
	a := newAccount("lastlogin@example.org")
	if err := s.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	login := time.Date(2026, 3, 4, 23, 59, 58, 999, time.FixedZone("x", -5*3600)) // 5 March in UTC
	if err := s.SetLastLogin(ctx, a.JID, login); err != nil {
		t.Fatalf("SetLastLogin: %v", err)
	}
	a.LastLogin = time.Date(2026, 3, 5, 0, 0, 0, 0, time.UTC)
	checkAccount(t, ctx, s, a)
	got, _ := s.Account(ctx, a.JID)
	checkUTC(t, got.LastLogin, "Account.LastLogin")
	if err := s.SetLastLogin(ctx, "nobody@example.org", login); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("SetLastLogin of a missing account: %v, want ErrNotFound", err)
	}
}

// Suspension (time and reason) and approval are kept through create,
// update and SetLastLogin, and cleared by an update that clears them.
func testAccountSuspended(t *testing.T, ctx context.Context, s storage.Store) {
	a := newAccount("suspended@example.org")
	a.Suspended, a.SuspendReason = t2, "spam waves, see report 12"
	must(t, s.CreateAccount(ctx, a), "CreateAccount")
	checkAccount(t, ctx, s, a)
	got, _ := s.Account(ctx, a.JID)
	checkUTC(t, got.Suspended, "Account.Suspended")
	a.Approved = t3
	must(t, s.UpdateAccount(ctx, a), "UpdateAccount")
	checkAccount(t, ctx, s, a)
	must(t, s.SetLastLogin(ctx, a.JID, t3), "SetLastLogin")
	a.LastLogin = storage.Day(t3)
	checkAccount(t, ctx, s, a)
	a.Suspended, a.SuspendReason = time.Time{}, ""
	must(t, s.UpdateAccount(ctx, a), "UpdateAccount (unsuspend)")
	checkAccount(t, ctx, s, a)
	a.Approved = time.Time{}
	must(t, s.UpdateAccount(ctx, a), "UpdateAccount (unapprove)")
	checkAccount(t, ctx, s, a)
}

// newAccount returns a fully populated account with two credentials.
func newAccount(jid string) storage.Account {
	return storage.Account{
		JID: jid,
		Credentials: []storage.Credential{
			{
				Mechanism:  "SCRAM-SHA-1",
				Salt:       []byte("salt-1-" + jid),
				Iterations: 4096,
				StoredKey:  []byte{0x00, 0x01, 0xfe, 0xff},
				ServerKey:  []byte("server-key-1"),
			},
			{
				Mechanism:  "SCRAM-SHA-256",
				Salt:       []byte("salt-256-" + jid),
				Iterations: 10000,
				StoredKey:  []byte("stored-key-256"),
				ServerKey:  []byte{0xff, 0x00, 0x7f},
			},
		},
		Created: t1,
	}
}

// checkAccount fails t unless the store holds want under want.JID.
func checkAccount(t *testing.T, ctx context.Context, s storage.Store, want storage.Account) {
	t.Helper()
	got, err := s.Account(ctx, want.JID)
	if err != nil {
		t.Errorf("Account(%q): %v", want.JID, err)
		return
	}
	if d := DiffAccount(got, want); d != "" {
		t.Errorf("Account(%q): %s", want.JID, d)
	}
	checkUTC(t, got.Created, "Account.Created")
	checkUTC(t, got.LastLogin, "Account.LastLogin")
}

func testAccountCreateAndGet(t *testing.T, ctx context.Context, s storage.Store) {
	alice := newAccount("alice@example.org")
	must(t, s.CreateAccount(ctx, alice), "CreateAccount(alice)")
	checkAccount(t, ctx, s, alice)

	got, err := s.Account(ctx, alice.JID)
	must(t, err, "Account(alice)")
	if !got.LastLogin.IsZero() {
		t.Errorf("LastLogin of a new account = %v, want the zero time", got.LastLogin)
	}

	// An account without credentials (external authentication) and with
	// both times set.
	bob := storage.Account{JID: "bob@example.org", Created: t2, LastLogin: t3}
	must(t, s.CreateAccount(ctx, bob), "CreateAccount(bob)")
	checkAccount(t, ctx, s, bob)
	checkAccount(t, ctx, s, alice)
}

func testAccountCreateExisting(t *testing.T, ctx context.Context, s storage.Store) {
	alice := newAccount("alice@example.org")
	must(t, s.CreateAccount(ctx, alice), "CreateAccount")

	other := newAccount("alice@example.org")
	other.Credentials = other.Credentials[:1]
	other.Credentials[0].Salt = []byte("different")
	other.Created = t3
	wantErr(t, s.CreateAccount(ctx, other), storage.ErrExists, "second CreateAccount with the same JID")
	// The failed create must not have replaced anything.
	checkAccount(t, ctx, s, alice)
}

func testAccountNotFound(t *testing.T, ctx context.Context, s storage.Store) {
	const jid = "nobody@example.org"
	_, err := s.Account(ctx, jid)
	wantErr(t, err, storage.ErrNotFound, "Account of a missing account")
	wantErr(t, s.UpdateAccount(ctx, newAccount(jid)), storage.ErrNotFound, "UpdateAccount of a missing account")
	wantErr(t, s.DeleteAccount(ctx, jid), storage.ErrNotFound, "DeleteAccount of a missing account")

	// UpdateAccount must not have created it.
	_, err = s.Account(ctx, jid)
	wantErr(t, err, storage.ErrNotFound, "Account after failed UpdateAccount")
	list, err := s.ListAccounts(ctx, "")
	must(t, err, "ListAccounts")
	if len(list) != 0 {
		t.Errorf("ListAccounts after failed UpdateAccount = %d accounts, want none", len(list))
	}

	// Existing accounts do not change the answer for others.
	must(t, s.CreateAccount(ctx, newAccount("alice@example.org")), "CreateAccount(alice)")
	_, err = s.Account(ctx, jid)
	wantErr(t, err, storage.ErrNotFound, "Account of a missing account next to an existing one")
	_, err = s.Account(ctx, "alice@example.or")
	wantErr(t, err, storage.ErrNotFound, "Account of a JID that is a prefix of an existing one")
	_, err = s.Account(ctx, "alice@example.org.")
	wantErr(t, err, storage.ErrNotFound, "Account of a JID that extends an existing one")
}

func testAccountUpdate(t *testing.T, ctx context.Context, s storage.Store) {
	alice := newAccount("alice@example.org")
	bob := newAccount("bob@example.org")
	must(t, s.CreateAccount(ctx, alice), "CreateAccount(alice)")
	must(t, s.CreateAccount(ctx, bob), "CreateAccount(bob)")

	// New credentials and a login.
	upd := newAccount("alice@example.org")
	upd.Credentials = []storage.Credential{{
		Mechanism:  "SCRAM-SHA-512",
		Salt:       []byte("new salt"),
		Iterations: 20000,
		StoredKey:  []byte("new stored key"),
		ServerKey:  []byte("new server key"),
	}}
	upd.LastLogin = t2
	must(t, s.UpdateAccount(ctx, upd), "UpdateAccount(alice)")
	checkAccount(t, ctx, s, upd)
	checkAccount(t, ctx, s, bob)

	// Another update replaces the previous one entirely.
	upd2 := upd
	upd2.Credentials = nil
	upd2.LastLogin = t3
	must(t, s.UpdateAccount(ctx, upd2), "second UpdateAccount(alice)")
	checkAccount(t, ctx, s, upd2)
	checkAccount(t, ctx, s, bob)
}

func testAccountDelete(t *testing.T, ctx context.Context, s storage.Store) {
	alice := newAccount("alice@example.org")
	bob := newAccount("bob@example.org")
	must(t, s.CreateAccount(ctx, alice), "CreateAccount(alice)")
	must(t, s.CreateAccount(ctx, bob), "CreateAccount(bob)")

	must(t, s.DeleteAccount(ctx, alice.JID), "DeleteAccount(alice)")
	_, err := s.Account(ctx, alice.JID)
	wantErr(t, err, storage.ErrNotFound, "Account after DeleteAccount")
	wantErr(t, s.DeleteAccount(ctx, alice.JID), storage.ErrNotFound, "second DeleteAccount")
	wantErr(t, s.UpdateAccount(ctx, alice), storage.ErrNotFound, "UpdateAccount after DeleteAccount")
	checkAccount(t, ctx, s, bob)

	list, err := s.ListAccounts(ctx, "")
	must(t, err, "ListAccounts")
	if len(list) != 1 || list[0].JID != bob.JID {
		t.Errorf("ListAccounts after deleting alice = %v, want only bob", jids(list))
	}

	// The JID is free again.
	again := newAccount(alice.JID)
	again.Created = t3
	must(t, s.CreateAccount(ctx, again), "CreateAccount after DeleteAccount")
	checkAccount(t, ctx, s, again)
}

// jids returns the JIDs of list, for messages.
func jids(list []storage.Account) []string {
	out := make([]string, len(list))
	for i, a := range list {
		out[i] = a.JID
	}
	return out
}

func testAccountList(t *testing.T, ctx context.Context, s storage.Store) {
	list, err := s.ListAccounts(ctx, "")
	must(t, err, "ListAccounts on an empty store")
	if len(list) != 0 {
		t.Errorf("ListAccounts on an empty store = %v, want none", jids(list))
	}

	// Created out of order, with domains that share prefixes and suffixes
	// with example.org, and byte orders that differ from naive collation.
	all := []string{
		"zoë@example.org",
		"bob@example.org",
		"carol@bexample.org",
		"dave@x.example.org",
		"erin@example.org.evil",
		"Zed@example.org",
		"frank@example.com",
		"alice@example.org",
		"zoe@example.org",
		"example.org@example.net",
	}
	for i, jid := range all {
		a := newAccount(jid)
		a.Created = t1.Add(time.Duration(i) * time.Hour)
		must(t, s.CreateAccount(ctx, a), "CreateAccount("+jid+")")
	}

	for _, tc := range []struct {
		domain string
		want   []string
	}{
		{"", []string{
			"Zed@example.org",
			"alice@example.org",
			"bob@example.org",
			"carol@bexample.org",
			"dave@x.example.org",
			"erin@example.org.evil",
			"example.org@example.net",
			"frank@example.com",
			"zoe@example.org",
			"zoë@example.org",
		}},
		{"example.org", []string{"Zed@example.org", "alice@example.org", "bob@example.org", "zoe@example.org", "zoë@example.org"}},
		{"bexample.org", []string{"carol@bexample.org"}},
		{"x.example.org", []string{"dave@x.example.org"}},
		{"example.com", []string{"frank@example.com"}},
		{"example.net", []string{"example.org@example.net"}},
		{"example", nil},
		{"org", nil},
		{"nowhere.test", nil},
	} {
		list, err := s.ListAccounts(ctx, tc.domain)
		if err != nil {
			t.Errorf("ListAccounts(%q): %v", tc.domain, err)
			continue
		}
		if got := jids(list); !sameStrings(got, tc.want) {
			t.Errorf("ListAccounts(%q) = %q, want %q", tc.domain, got, tc.want)
			continue
		}
		// Every listed account is complete, not just its JID.
		for _, a := range list {
			want := newAccount(a.JID)
			want.Created = t1.Add(time.Duration(slices.Index(all, a.JID)) * time.Hour)
			if d := DiffAccount(a, want); d != "" {
				t.Errorf("ListAccounts(%q): %s", tc.domain, d)
			}
		}
	}
}

func testAccountEmptyBytes(t *testing.T, ctx context.Context, s storage.Store) {
	a := storage.Account{
		JID: "alice@example.org",
		Credentials: []storage.Credential{
			{Mechanism: "SCRAM-SHA-1", Salt: nil, StoredKey: []byte{}, ServerKey: nil},
			{Mechanism: "", Salt: []byte{}, Iterations: 0, StoredKey: nil, ServerKey: []byte{}},
		},
	}
	must(t, s.CreateAccount(ctx, a), "CreateAccount with empty byte slices")
	checkAccount(t, ctx, s, a)

	a.Credentials = []storage.Credential{}
	must(t, s.UpdateAccount(ctx, a), "UpdateAccount with an empty credential slice")
	checkAccount(t, ctx, s, a)
}

func testAccountCopiesIn(t *testing.T, ctx context.Context, s storage.Store) {
	a := newAccount("alice@example.org")
	want := newAccount("alice@example.org")
	must(t, s.CreateAccount(ctx, a), "CreateAccount")

	// Modify everything reachable from what was passed in.
	a.Credentials[0].Salt[0] ^= 0xff
	a.Credentials[0].StoredKey[0] ^= 0xff
	a.Credentials[1].ServerKey[0] ^= 0xff
	a.Credentials[1].Mechanism = "PLAIN"
	a.Credentials[1].Iterations = 1
	a.Created = t3
	checkAccount(t, ctx, s, want)

	// The same for UpdateAccount.
	upd := newAccount("alice@example.org")
	upd.LastLogin = t2
	wantUpd := newAccount("alice@example.org")
	wantUpd.LastLogin = t2
	must(t, s.UpdateAccount(ctx, upd), "UpdateAccount")
	upd.Credentials[0].Salt[0] ^= 0xff
	upd.Credentials[1].StoredKey[0] ^= 0xff
	upd.Credentials[0] = storage.Credential{}
	upd.LastLogin = t3
	checkAccount(t, ctx, s, wantUpd)
}

func testAccountCopiesOut(t *testing.T, ctx context.Context, s storage.Store) {
	want := newAccount("alice@example.org")
	must(t, s.CreateAccount(ctx, newAccount("alice@example.org")), "CreateAccount")
	// Enough other data that a backend cannot keep it inline in some small
	// structure that happens to be copied on every read anyway.
	for i := range 40 {
		must(t, s.CreateAccount(ctx, newAccount(fmt.Sprintf("user%02d@example.net", i))), "CreateAccount")
	}

	got, err := s.Account(ctx, want.JID)
	must(t, err, "Account")
	got.Credentials[0].Salt[0] ^= 0xff
	got.Credentials[0].StoredKey[0] ^= 0xff
	got.Credentials[1].ServerKey[0] ^= 0xff
	got.Credentials[1].Mechanism = "PLAIN"
	got.Credentials = append(got.Credentials[:1], storage.Credential{Mechanism: "X"})
	checkAccount(t, ctx, s, want)

	list, err := s.ListAccounts(ctx, "example.org")
	must(t, err, "ListAccounts")
	if len(list) != 1 {
		t.Fatalf("ListAccounts = %v, want one account", jids(list))
	}
	list[0].Credentials[0].Salt[0] ^= 0xff
	list[0].Credentials[1].StoredKey[0] ^= 0xff
	list[0].Credentials[1].Iterations = 1
	list[0].JID = "mallory@example.org"
	checkAccount(t, ctx, s, want)
	list2, err := s.ListAccounts(ctx, "example.org")
	must(t, err, "ListAccounts")
	if len(list2) != 1 || DiffAccount(list2[0], want) != "" {
		t.Errorf("ListAccounts after modifying an earlier result = %+v, want [%+v]", list2, want)
	}
}
