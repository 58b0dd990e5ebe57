package treff

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/treff-im/treff/storage"
	"mellium.im/xmpp/jid"
)

// AccountHook is run for a local account (see Registry.OnAccountDeleted).
// An error says the module could not do its part (such as deleting what
// it keeps for the user); the server reports it to its caller.
type AccountHook func(ctx context.Context, user jid.JID) error

// OnAccountDeleted registers a hook run by Server.DeleteAccount after the
// account is gone and its streams have ended. Each module removes what it
// keeps for the user (roster, offline messages, archives, ...) and tells
// others what they must know (the roster module cancels the contacts'
// subscriptions).
func (r *Registry) OnAccountDeleted(h AccountHook) {
	r.m.deleted = append(r.m.deleted, newHook(r, h))
}

// OnPasswordChanged registers a hook run by Server.PasswordChanged after
// a user's password changed. Each module revokes what the old password
// granted and outlives it, such as FAST tokens (XEP-0484).
func (r *Registry) OnPasswordChanged(h AccountHook) {
	r.m.passwd = append(r.m.passwd, newHook(r, h))
}

// PasswordChanged tells the modules that user's password was changed, by
// running their OnPasswordChanged hooks. Whoever changes a password calls
// it afterwards: in-band registration (XEP-0077), the admin commands
// (XEP-0133) and an embedder's own tools. It returns an error naming each
// module whose hook failed (the password is changed then, but something
// the old one granted may still work: call it again).
func (srv *Server) PasswordChanged(ctx context.Context, user jid.JID) error {
	if err := srv.init(); err != nil {
		return err
	}
	user = user.Bare()
	var errs []error
	for _, h := range srv.mods.passwd {
		if err := srv.accountHook(ctx, h, user); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		srv.logger().Error("password changed, hooks failed", "jid", user.String(), "failed", len(errs))
		return fmt.Errorf("treff: password of %s changed, but: %w", user, errors.Join(errs...))
	}
	return nil
}

// accountEndWait bounds how long DeleteAccount waits for the user's
// streams to end before it removes their data.
const accountEndWait = 5 * time.Second

// DeleteAccount deletes the local account user and every piece of its
// data. It removes the account from Storage first, so that no new login
// succeeds; ends the user's streams with a <not-authorized/> stream error
// carrying text and waits (at most five seconds) for them to end; then
// runs the modules' OnAccountDeleted hooks. It returns an error wrapping
// storage.ErrNotFound if there is no such account, and an error naming
// each module whose hook failed (the account is gone then, some of its
// data may not be: run the deletion of that data again).
//
// Called from a handler of one of the user's own sessions (XEP-0077
// account removal), it must run in a goroutine of its own: it waits for
// that session to end.
func (srv *Server) DeleteAccount(ctx context.Context, user jid.JID, text string) error {
	if err := srv.init(); err != nil {
		return err
	}
	user = user.Bare()
	if srv.Storage == nil {
		return fmt.Errorf("treff: delete account: no storage")
	}
	if err := srv.Storage.DeleteAccount(ctx, user.String()); err != nil {
		return fmt.Errorf("treff: delete account %s: %w", user, err)
	}
	sessions := srv.CloseUser(user, "not-authorized", text)
	timeout := time.NewTimer(accountEndWait)
	defer timeout.Stop()
wait:
	for _, s := range sessions {
		select {
		case <-s.gone: // ended, its session-closed hooks run
		case <-timeout.C:
			break wait
		case <-ctx.Done():
			break wait
		}
	}
	var errs []error
	for _, h := range srv.mods.deleted {
		if err := srv.accountHook(ctx, h, user); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		srv.logger().Error("account deleted, some of its data not", "jid", user.String(), "failed", len(errs))
		return fmt.Errorf("treff: delete account %s: the account is gone but not all its data: %w", user, errors.Join(errs...))
	}
	srv.logger().Info("account deleted", "jid", user.String(), "sessions_closed", len(sessions))
	return nil
}

// recordLogin keeps the day of the user's last login in Storage (at most
// one write per user and day), so that unused accounts can be found and
// expired. Accounts that only an external authenticator knows are skipped.
func (srv *Server) recordLogin(ctx context.Context, user jid.JID) {
	if srv.Storage == nil {
		return
	}
	today := storage.Day(time.Now())
	a, err := srv.Storage.Account(ctx, user.String())
	if err != nil || !a.LastLogin.Before(today) {
		return
	}
	if err := srv.Storage.SetLastLogin(ctx, user.String(), today); err != nil {
		srv.logger().Error("recording the last login failed", "jid", user.String(), "err", err)
	}
}
