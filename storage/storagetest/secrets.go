package storagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/treff-im/treff/storage"
)

// secretTests run only for stores that implement storage.Secrets.
var secretTests = []test{
	{name: "PutGet", fn: testSecretsPutGet},
	{name: "Swap", fn: testSecretsSwap},
	{name: "SwapOnce", fn: testSecretsSwapOnce},
	{name: "EmptyNameOrValue", fn: testSecretsEmpty},
	{name: "CancelledContext", fn: cancelled(secretCalls)},
}

func testSecretsPutGet(t *testing.T, ctx context.Context, s storage.Store) {
	ss := as[storage.Secrets](t, s)
	_, err := ss.Secret(ctx, "s2s/dialback")
	wantErr(t, err, storage.ErrNotFound, "Secret never stored")
	v := []byte("\x00binary\xffvalue")
	must(t, ss.PutSecret(ctx, "s2s/dialback", v), "PutSecret")
	v[0] = 'x' // the store keeps its own copy
	got, err := ss.Secret(ctx, "s2s/dialback")
	must(t, err, "Secret")
	if !bytes.Equal(got, []byte("\x00binary\xffvalue")) {
		t.Fatalf("Secret = %q, want what was put", got)
	}
	got[0] = 'y' // and hands out a copy
	must(t, ss.PutSecret(ctx, "fast", []byte("other")), "PutSecret of another name")
	if again, _ := ss.Secret(ctx, "s2s/dialback"); !bytes.Equal(again, []byte("\x00binary\xffvalue")) {
		t.Errorf("Secret after changing a returned value and putting another name = %q", again)
	}
	must(t, ss.PutSecret(ctx, "s2s/dialback", []byte("replaced")), "PutSecret replacing")
	if got, _ := ss.Secret(ctx, "s2s/dialback"); string(got) != "replaced" {
		t.Errorf("Secret after a replacing PutSecret = %q", got)
	}
	if got, _ := ss.Secret(ctx, "fast"); string(got) != "other" {
		t.Errorf("Secret of the other name = %q", got)
	}
	// A name is the whole name: no prefix matches.
	_, err = ss.Secret(ctx, "s2s")
	wantErr(t, err, storage.ErrNotFound, "Secret of a prefix of a stored name")
	// Secrets are not accounts: a store with secrets only has no account.
	list, err := s.ListAccounts(ctx, "")
	must(t, err, "ListAccounts")
	if len(list) != 0 {
		t.Errorf("ListAccounts after PutSecret = %v", jids(list))
	}
}

func testSecretsSwap(t *testing.T, ctx context.Context, s storage.Store) {
	ss := as[storage.Secrets](t, s)
	swap := func(old, value string, want bool) {
		t.Helper()
		var o []byte
		if old != "" {
			o = []byte(old)
		}
		ok, err := ss.SwapSecret(ctx, "lease", o, []byte(value))
		must(t, err, "SwapSecret")
		if ok != want {
			t.Errorf("SwapSecret(%q → %q) = %v, want %v", old, value, ok, want)
		}
	}
	check := func(want string) {
		t.Helper()
		got, err := ss.Secret(ctx, "lease")
		must(t, err, "Secret")
		if string(got) != want {
			t.Errorf("Secret = %q, want %q", got, want)
		}
	}
	swap("x", "a", false) // nothing stored, old given
	if _, err := ss.Secret(ctx, "lease"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("a failed SwapSecret stored something: %v", err)
	}
	swap("", "a", true) // create
	check("a")
	swap("", "b", false) // exists already
	check("a")
	swap("b", "c", false) // wrong old
	check("a")
	swap("a", "b", true)
	check("b")
	swap("b", "b", true) // same value: still a success
	check("b")
	// An empty (not nil) old also means "absent".
	if ok, err := ss.SwapSecret(ctx, "other", []byte{}, []byte("v")); err != nil || !ok {
		t.Errorf("SwapSecret from []byte{} of an absent name = %v, %v; want true", ok, err)
	}
	// A put after swaps replaces.
	must(t, ss.PutSecret(ctx, "lease", []byte("put")), "PutSecret")
	swap("b", "c", false)
	swap("put", "c", true)
	check("c")
}

// testSecretsSwapOnce checks that of many concurrent swaps from the same
// old value exactly one succeeds, for creation and for replacement.
func testSecretsSwapOnce(t *testing.T, ctx context.Context, s storage.Store) {
	ss := as[storage.Secrets](t, s)
	const workers = 16
	for _, old := range []string{"", "held"} {
		if old != "" {
			must(t, ss.PutSecret(ctx, "lease", []byte(old)), "PutSecret")
		}
		var (
			errs errorList
			won  atomic.Int32
			who  atomic.Value
		)
		parallel(t, ctx, workers, func(i int) {
			var o []byte
			if old != "" {
				o = []byte(old)
			}
			v := fmt.Sprintf("node-%d", i)
			ok, err := ss.SwapSecret(ctx, "lease", o, []byte(v))
			if err != nil {
				errs.add("SwapSecret in goroutine %d: %v", i, err)
			}
			if ok {
				won.Add(1)
				who.Store(v)
			}
		})
		errs.report(t)
		if n := won.Load(); n != 1 {
			t.Fatalf("%d concurrent SwapSecret from %q: %d succeeded, want 1", workers, old, n)
		}
		got, err := ss.Secret(ctx, "lease")
		must(t, err, "Secret")
		if string(got) != who.Load().(string) {
			t.Errorf("Secret = %q, want the winner's %q", got, who.Load())
		}
	}
}

func testSecretsEmpty(t *testing.T, ctx context.Context, s storage.Store) {
	ss := as[storage.Secrets](t, s)
	if _, err := ss.Secret(ctx, ""); err == nil || errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Secret of an empty name: %v, want an error other than ErrNotFound", err)
	}
	if err := ss.PutSecret(ctx, "", []byte("v")); err == nil {
		t.Error("PutSecret of an empty name: no error")
	}
	if err := ss.PutSecret(ctx, "n", nil); err == nil {
		t.Error("PutSecret of an empty value: no error")
	}
	if _, err := ss.SwapSecret(ctx, "", nil, []byte("v")); err == nil {
		t.Error("SwapSecret of an empty name: no error")
	}
	if _, err := ss.SwapSecret(ctx, "n", nil, []byte{}); err == nil {
		t.Error("SwapSecret to an empty value: no error")
	}
	if _, err := ss.Secret(ctx, "n"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("refused calls stored something: %v", err)
	}
}

func secretCalls(t *testing.T, ctx context.Context, s storage.Store) []call {
	ss := as[storage.Secrets](t, s)
	must(t, ss.PutSecret(ctx, "k", []byte("v")), "PutSecret")
	return []call{
		{"Secret", "", func(ctx context.Context, _ string) error { _, err := ss.Secret(ctx, "k"); return err }},
		{"PutSecret", "", func(ctx context.Context, _ string) error { return ss.PutSecret(ctx, "k", []byte("w")) }},
		{"SwapSecret", "", func(ctx context.Context, _ string) error {
			_, err := ss.SwapSecret(ctx, "k", []byte("v"), []byte("w"))
			return err
		}},
	}
}
