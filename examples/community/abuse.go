package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"mellium.im/xmpp/jid"

	treffadmin "github.com/treff-im/treff/admin"
	"github.com/treff-im/treff/storage"
)

// The admin commands against abuse: suspend, unsuspend, ban, users
// -recent.

// banHold is until when a banned account's name stays held: for good
// (a hundred years; storage keeps times as int64 nanoseconds).
func banHold() time.Time { return time.Now().AddDate(100, 0, 0) }

// suspend suspends the account: it keeps its data, cannot log in (its
// logins get <account-disabled/> with the reason), and its sessions end.
func (a *accounts) suspend(ctx context.Context, user, reason string) error {
	u, err := a.user(user)
	if err != nil {
		return err
	}
	bare, _ := jid.Parse(u)
	if a.srv != nil {
		err = treffadmin.Suspend(ctx, a.srv, bare, reason)
	} else {
		var ac storage.Account
		if ac, err = a.store.Account(ctx, u); err == nil {
			ac.Suspended, ac.SuspendReason = time.Now().UTC(), reason
			err = a.store.UpdateAccount(ctx, ac)
		}
	}
	if errors.Is(err, storage.ErrNotFound) {
		return notFound(u)
	}
	if err == nil {
		a.logInfo("account suspended", u)
	}
	return err
}

// unsuspend lifts a suspension.
func (a *accounts) unsuspend(ctx context.Context, user string) error {
	u, err := a.user(user)
	if err != nil {
		return err
	}
	bare, _ := jid.Parse(u)
	err = treffadmin.Unsuspend(ctx, a.store, bare)
	if errors.Is(err, storage.ErrNotFound) {
		return notFound(u)
	}
	if err == nil {
		a.logInfo("account unsuspended", u)
	}
	return err
}

// ban deletes the account with all its data and holds its name for good,
// so that nobody registers it again.
func (a *accounts) ban(ctx context.Context, user string) error {
	u, err := a.user(user)
	if err != nil {
		return err
	}
	held, ok := a.store.(storage.HeldNames)
	if !ok {
		return errors.New("the store cannot hold names")
	}
	if err := a.deleteUser(ctx, u); err != nil {
		return err
	}
	if err := held.HoldName(ctx, u, banHold()); err != nil {
		return fmt.Errorf("the account is deleted, but holding its name failed: %w", err)
	}
	a.logInfo("account banned", u)
	return nil
}

// recent lists the accounts created since, newest first, with their
// state, one line each.
func (a *accounts) recent(ctx context.Context, since time.Time) ([]string, error) {
	accts, err := a.store.ListAccounts(ctx, "")
	if err != nil {
		return nil, err
	}
	var list []storage.Account
	for _, ac := range accts {
		if !ac.Created.Before(since) {
			list = append(list, ac)
		}
	}
	slices.SortStableFunc(list, func(x, y storage.Account) int { return y.Created.Compare(x.Created) })
	out := make([]string, len(list))
	for i, ac := range list {
		out[i] = describeAccount(ac)
	}
	return out, nil
}

// describeAccount is a line for users -recent: JID, creation, last login,
// approval and suspension.
func describeAccount(ac storage.Account) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s created %s", ac.JID, ac.Created.UTC().Format("2006-01-02 15:04 UTC"))
	if ac.LastLogin.IsZero() {
		b.WriteString(", never logged in")
	} else {
		b.WriteString(", last login " + ac.LastLogin.Format(time.DateOnly))
	}
	if !ac.Approved.IsZero() {
		b.WriteString(", approved")
	}
	if !ac.Suspended.IsZero() {
		b.WriteString(", suspended " + ac.Suspended.UTC().Format(time.DateOnly))
		if ac.SuspendReason != "" {
			fmt.Fprintf(&b, " (%s)", ac.SuspendReason)
		}
	}
	return b.String()
}

// cmdSuspend runs suspend, unsuspend and ban.
func cmdSuspend(cmd string, args []string, stdout, stderr io.Writer) error {
	f := newFlags("community "+cmd, stderr, "data", "domain")
	var reason string
	if cmd == "suspend" {
		f.fs.StringVar(&reason, "reason", "", "the `reason`, shown to the user when a login is refused")
	}
	f.usage(fmt.Sprintf("Usage: community %s [flags] JID\n", cmd))
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErrorf("%s needs exactly one JID (community %s [flags] JID)", cmd, cmd)
	}
	j, err := parseUser(pos[0])
	if err != nil {
		return err
	}
	cfg, err := f.config()
	if err != nil {
		return err
	}
	if _, err := admin(cfg, adminRequest{Cmd: cmd, JID: j.String(), Reason: reason}); err != nil {
		return err
	}
	switch cmd {
	case "suspend":
		fmt.Fprintf(stdout, "%s is suspended: its sessions ended and it cannot log in (community unsuspend %s lifts it)\n", j, j)
	case "unsuspend":
		fmt.Fprintf(stdout, "%s can log in again\n", j)
	case "ban":
		fmt.Fprintf(stdout, "%s is deleted with its data, and its name is held for good\n", j)
	}
	return nil
}

// doAbuse carries out the abuse commands of an admin request; ok is false
// for other commands.
func (a *accounts) doAbuse(ctx context.Context, req adminRequest, resp *adminResponse) (ok bool, err error) {
	switch req.Cmd {
	case "suspend":
		return true, a.suspend(ctx, req.JID, req.Reason)
	case "unsuspend":
		return true, a.unsuspend(ctx, req.JID)
	case "ban":
		return true, a.ban(ctx, req.JID)
	case "recent":
		resp.Users, err = a.recent(ctx, req.Before)
		return true, err
	}
	return false, nil
}
