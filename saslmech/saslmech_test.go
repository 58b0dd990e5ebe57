package saslmech_test

import (
	"encoding/base64"
	"errors"
	"fmt"
	"testing"

	"github.com/treff-im/treff/saslmech"
)

func TestAccount(t *testing.T) {
	s := &saslmech.Stream{Host: "example.org"}
	for _, tc := range []struct {
		username, want string
		ok             bool
	}{
		{"alice", "alice@example.org", true},
		{"Alice", "alice@example.org", true}, // normalised
		{"alice@example.org", "alice@example.org", true},
		{"alice@other.org", "", false},
		{"alice@example.org/res", "", false},
		{"", "", false},
		{"a b", "", false},
	} {
		j, err := s.Account(tc.username)
		if tc.ok != (err == nil) || tc.ok && j.String() != tc.want {
			t.Errorf("Account(%q) = %v, %v; want %q", tc.username, j, err, tc.want)
		}
		if err != nil && !errors.Is(err, saslmech.ErrNotAuthorized) {
			t.Errorf("Account(%q) error %v is not ErrNotAuthorized", tc.username, err)
		}
	}
}

func TestError(t *testing.T) {
	err := fmt.Errorf("wrapped: %w", &saslmech.Error{Condition: "invalid-authzid"})
	var se *saslmech.Error
	if !errors.As(err, &se) || se.Condition != "invalid-authzid" {
		t.Errorf("errors.As(%v) = %v", err, se)
	}
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
