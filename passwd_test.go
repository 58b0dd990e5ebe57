package treff_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/trefftest"
)

// passwdWatcher records the OnPasswordChanged hook's calls and fails or
// panics for some users.
type passwdWatcher struct {
	name  string
	calls []string
}

func (w *passwdWatcher) Name() string { return w.name }

func (w *passwdWatcher) Setup(ctx context.Context, r *treff.Registry) error {
	r.OnPasswordChanged(func(ctx context.Context, user jid.JID) error {
		w.calls = append(w.calls, user.String())
		switch user.Localpart() {
		case "bob":
			return errors.New("tokens: disk on fire")
		case "carol":
			panic("boom")
		}
		return nil
	})
	return nil
}

// TestPasswordChanged checks that Server.PasswordChanged runs every
// module's hook with the bare JID, and names the modules whose hook failed
// or panicked while still running the others.
func TestPasswordChanged(t *testing.T) {
	a, b := &passwdWatcher{name: "first"}, &passwdWatcher{name: "second"}
	ts := trefftest.NewServer(t, func(s *treff.Server) {
		s.Modules = []treff.Module{a, b}
		s.Logger = slog.New(slog.DiscardHandler)
	})
	ctx := t.Context()
	if err := ts.Server.PasswordChanged(ctx, jid.MustParse("alice@localhost/phone")); err != nil {
		t.Fatalf("PasswordChanged(alice): %v", err)
	}
	err := ts.Server.PasswordChanged(ctx, jid.MustParse("bob@localhost"))
	if err == nil || !strings.Contains(err.Error(), "module first") || !strings.Contains(err.Error(), "module second") ||
		!strings.Contains(err.Error(), "disk on fire") {
		t.Errorf("PasswordChanged(bob) = %v, want an error naming both modules", err)
	}
	if err := ts.Server.PasswordChanged(ctx, jid.MustParse("carol@localhost")); err == nil || !strings.Contains(err.Error(), "panicked") {
		t.Errorf("PasswordChanged(carol) = %v, want a panic reported as an error", err)
	}
	want := "alice@localhost bob@localhost carol@localhost"
	for _, w := range []*passwdWatcher{a, b} {
		if got := strings.Join(w.calls, " "); got != want {
			t.Errorf("module %s's hook saw %q, want %q", w.name, got, want)
		}
	}
}
