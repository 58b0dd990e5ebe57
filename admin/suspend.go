package admin

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/adhoc"
	"github.com/treff-im/treff/saslmech"
	"github.com/treff-im/treff/stanza"
	"github.com/treff-im/treff/storage"
)

// XEP-0133 nodes for suspension.
const (
	NodeDisableUser  = NS + "#disable-user"
	NodeReenableUser = NS + "#reenable-user"
)

// Suspension: a suspended account (storage.Account.Suspended) keeps its
// data but cannot log in; its logins are refused with <account-disabled/>
// and the admin's reason (the module is a treff.LoginGuard), and its
// sessions end when it is suspended.

// Suspend suspends the account user with the reason (may be empty) and
// ends its sessions with <policy-violation/>. It returns an error
// wrapping storage.ErrNotFound if there is no such account.
func Suspend(ctx context.Context, srv *treff.Server, user jid.JID, reason string) error {
	user = user.Bare()
	a, err := srv.Storage.Account(ctx, user.String())
	if err != nil {
		return err
	}
	a.Suspended, a.SuspendReason = time.Now().UTC(), reason
	if err := srv.Storage.UpdateAccount(ctx, a); err != nil {
		return err
	}
	text := "your account was suspended"
	if reason != "" {
		text += ": " + reason
	}
	srv.CloseUser(user, "policy-violation", text)
	srv.Log().Info("account suspended", "jid", user.String())
	return nil
}

// Unsuspend lifts the suspension of the account user. It returns an
// error wrapping storage.ErrNotFound if there is no such account.
func Unsuspend(ctx context.Context, store storage.Accounts, user jid.JID) error {
	a, err := store.Account(ctx, user.Bare().String())
	if err != nil {
		return err
	}
	if a.Suspended.IsZero() && a.SuspendReason == "" {
		return nil
	}
	a.Suspended, a.SuspendReason = time.Time{}, ""
	return store.UpdateAccount(ctx, a)
}

// Start implements treff.LoginGuard.
func (m *Module) Start(ctx context.Context, a treff.LoginAttempt) error { return nil }

// Failed implements treff.LoginGuard.
func (m *Module) Failed(ctx context.Context, a treff.LoginAttempt) time.Duration { return 0 }

// Allow implements treff.LoginGuard: a suspended account is refused with
// <account-disabled/> and the reason.
func (m *Module) Allow(ctx context.Context, a treff.LoginAttempt) error {
	acct, err := m.srv.Storage.Account(ctx, a.User.String())
	if errors.Is(err, storage.ErrNotFound) {
		// An external Authenticator's user without a stored account.
		return nil
	}
	if err != nil {
		return err
	}
	if acct.Suspended.IsZero() {
		return nil
	}
	text := "This account is suspended."
	if acct.SuspendReason != "" {
		text = "This account is suspended: " + acct.SuspendReason
	}
	return &saslmech.Error{Condition: "account-disabled", Text: text}
}

var _ treff.LoginGuard = (*Module)(nil)

func (m *Module) suspendCommands(isAdmin func(context.Context, jid.JID) bool) []adhoc.Command {
	return []adhoc.Command{
		{Node: NodeDisableUser, Name: "Disable a user", Allowed: isAdmin, Form: form("Disable users",
			"The accounts keep their data but cannot log in; their sessions end.",
			adhoc.Field{Var: "accountjids", Type: "jid-multi", Label: "The accounts to disable", Required: true},
			adhoc.Field{Var: "reason", Type: "text-single", Label: "Reason (shown to the user)"}), Run: m.disableUsers},
		{Node: NodeReenableUser, Name: "Re-enable a user", Allowed: isAdmin, Form: form("Re-enable users", "",
			adhoc.Field{Var: "accountjids", Type: "jid-multi", Label: "The accounts to re-enable", Required: true}), Run: m.reenableUsers},
	}
}

func (m *Module) accounts(from jid.JID, v adhoc.Values) ([]jid.JID, error) {
	var out []jid.JID
	for _, s := range v["accountjids"] {
		if strings.TrimSpace(s) == "" {
			continue
		}
		a, err := m.account(from, s)
		if err != nil {
			return nil, err
		}
		out = append(out, a.Bare())
	}
	if len(out) == 0 {
		return nil, stanza.BadRequest.WithText("no account given")
	}
	return out, nil
}

func (m *Module) disableUsers(ctx context.Context, from jid.JID, v adhoc.Values) (adhoc.Result, error) {
	accts, err := m.accounts(from, v)
	if err != nil {
		return adhoc.Result{}, err
	}
	for _, a := range accts {
		if a.Equal(from.Bare()) {
			return adhoc.Result{}, stanza.NotAllowed.WithText("you cannot disable your own account")
		}
	}
	return m.each(accts, "Disabled", "Nothing changed.", func(a jid.JID) error { return Suspend(ctx, m.srv, a, strings.TrimSpace(v.Get("reason"))) })
}

func (m *Module) reenableUsers(ctx context.Context, from jid.JID, v adhoc.Values) (adhoc.Result, error) {
	accts, err := m.accounts(from, v)
	if err != nil {
		return adhoc.Result{}, err
	}
	return m.each(accts, "Re-enabled", "Nothing changed.", func(a jid.JID) error { return Unsuspend(ctx, m.srv.Storage, a) })
}

// each runs f for each account and says what it did (none: nothing).
func (m *Module) each(accts []jid.JID, did, nothing string, f func(jid.JID) error) (adhoc.Result, error) {
	var done, missing []string
	for _, a := range accts {
		err := f(a)
		switch {
		case errors.Is(err, storage.ErrNotFound):
			missing = append(missing, a.String())
		case err != nil:
			return adhoc.Result{}, err
		default:
			done = append(done, a.String())
		}
	}
	note := fmt.Sprintf("%s: %s.", did, strings.Join(done, ", "))
	if len(done) == 0 {
		note = nothing
	}
	if len(missing) > 0 {
		note += fmt.Sprintf(" No such account: %s.", strings.Join(missing, ", "))
	}
	return adhoc.Result{Note: note}, nil
}
