package auth_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/auth"
	"github.com/treff-im/treff/storage"
	"github.com/treff-im/treff/storage/memstore"
)

func TestStore(t *testing.T) {
	ctx := context.Background()
	st := memstore.New()
	a := &auth.Store{Accounts: st}
	if err := a.CreateUser(ctx, "alice@example.org", "Correct Horse"); err != nil {
		t.Fatal(err)
	}
	if err := a.CreateUser(ctx, "alice@example.org", "x"); !errors.Is(err, storage.ErrExists) {
		t.Errorf("duplicate: %v", err)
	}
	if err := a.CreateUser(ctx, "bob@example.org", ""); !errors.Is(err, auth.ErrEmptyPassword) {
		t.Errorf("empty password: %v", err)
	}
	if err := a.CheckPassword(ctx, "alice@example.org", "Correct Horse"); err != nil {
		t.Errorf("right password: %v", err)
	}
	for _, bad := range []string{"correct horse", "", "Correct Horse "} {
		if err := a.CheckPassword(ctx, "alice@example.org", bad); !errors.Is(err, treff.ErrNotAuthorized) {
			t.Errorf("%q: %v", bad, err)
		}
	}
	if err := a.CheckPassword(ctx, "nobody@example.org", "x"); !errors.Is(err, treff.ErrNotAuthorized) {
		t.Errorf("unknown user: %v", err)
	}
	acct, err := st.Account(ctx, "alice@example.org")
	if err != nil {
		t.Fatal(err)
	}
	if len(acct.Credentials) != 2 {
		t.Fatalf("credentials: %d", len(acct.Credentials))
	}
	for _, c := range acct.Credentials {
		if c.Iterations < auth.MinIterations || len(c.Salt) < 16 || len(c.StoredKey) == 0 || len(c.ServerKey) == 0 {
			t.Errorf("weak credential %+v", c)
		}
		for _, field := range [][]byte{c.Salt, c.StoredKey, c.ServerKey} {
			if bytes.Contains(field, []byte("Correct Horse")) {
				t.Error("password stored")
			}
		}
	}
	if bytes.Equal(acct.Credentials[0].Salt, acct.Credentials[1].Salt) {
		t.Error("salt reused across mechanisms")
	}
	if err := a.SetPassword(ctx, "alice@example.org", "new one"); err != nil {
		t.Fatal(err)
	}
	if err := a.CheckPassword(ctx, "alice@example.org", "Correct Horse"); !errors.Is(err, treff.ErrNotAuthorized) {
		t.Errorf("old password still works: %v", err)
	}
	if err := a.CheckPassword(ctx, "alice@example.org", "new one"); err != nil {
		t.Errorf("new password: %v", err)
	}
	if err := a.SetPassword(ctx, "nobody@example.org", "x"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("set password of unknown user: %v", err)
	}
	if _, err := a.SCRAMCredential(ctx, "alice@example.org", "SCRAM-SHA-512"); !errors.Is(err, treff.ErrNotAuthorized) {
		t.Errorf("unknown mechanism: %v", err)
	}
}
