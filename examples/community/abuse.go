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

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/abuse"
	treffadmin "github.com/treff-im/treff/admin"
	"github.com/treff-im/treff/antispam"
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
	if a.srv != nil && !a.offline {
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

// approve marks the account as approved by an admin: the limits for new
// accounts (new_account_age) no longer apply to it.
func (a *accounts) approve(ctx context.Context, user string) error {
	u, err := a.user(user)
	if err != nil {
		return err
	}
	ac, err := a.store.Account(ctx, u)
	if errors.Is(err, storage.ErrNotFound) {
		return notFound(u)
	}
	if err != nil {
		return err
	}
	ac.Approved = time.Now().UTC()
	if err := a.store.UpdateAccount(ctx, ac); err != nil {
		return err
	}
	if !a.offline && a.srv != nil {
		for _, m := range a.srv.Modules {
			if l, ok := m.(*antispam.Limits); ok {
				bare, _ := jid.Parse(u)
				l.Approved(bare)
			}
		}
	}
	a.logInfo("account approved", u)
	return nil
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

// cmdSuspend runs suspend, unsuspend, ban and approve.
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
	case "approve":
		fmt.Fprintf(stdout, "%s is approved: the limits for new accounts no longer apply to it\n", j)
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
	case "approve":
		return true, a.approve(ctx, req.JID)
	case "ban":
		return true, a.ban(ctx, req.JID)
	case "recent":
		resp.Users, err = a.recent(ctx, req.Before)
		return true, err
	case "block", "unblock":
		resp.Users, err = a.blockList(ctx, req.Entries, req.Cmd == "unblock")
		return true, err
	case "reports":
		resp.Users, err = a.reports(ctx, req.Agent)
		return true, err
	}
	return false, nil
}

// abuseModule returns srv's abuse module, or nil (also for no server).
func abuseModule(srv *treff.Server) *abuse.Module {
	if srv == nil {
		return nil
	}
	for _, m := range srv.Modules {
		if a, ok := m.(*abuse.Module); ok {
			return a
		}
	}
	return nil
}

// blockList changes or lists the server-wide block list: entries are
// blocked (or with unblock, unblocked); without entries it lists the
// list and the real-time block lists' sizes.
func (a *accounts) blockList(ctx context.Context, entries []string, unblock bool) ([]string, error) {
	if m := abuseModule(a.srv); m != nil && !a.offline {
		var err error
		switch {
		case len(entries) == 0:
		case unblock:
			err = m.Unblock(ctx, entries...)
		default:
			err = m.Block(ctx, entries...)
		}
		if err != nil {
			return nil, usageErrorf("%v", err)
		}
		if len(entries) > 0 {
			return nil, nil
		}
		list, feeds, err := m.List(ctx)
		if err != nil {
			return nil, err
		}
		for f, n := range feeds {
			list = append(list, fmt.Sprintf("# real-time block list %s: %d entries", f, n))
		}
		return list, nil
	}
	// No server runs: the stored list alone.
	bl, ok := a.store.(storage.Blocklists)
	if !ok {
		return nil, errors.New("the store keeps no block lists")
	}
	var norm []string
	for _, e := range entries {
		j, err := jid.Parse(strings.TrimSpace(e))
		if err != nil || j.Resourcepart() != "" {
			return nil, usageErrorf("%q is not a domain, a bare JID or a SHA-256 hash", e)
		}
		if !unblock && slices.Contains(a.domains, j.Domainpart()) {
			return nil, usageErrorf("%s is served here: delete or suspend the account instead", j)
		}
		norm = append(norm, strings.ToLower(j.String()))
	}
	switch {
	case len(norm) == 0:
		list, err := bl.Blocklist(ctx, abuse.ListKey)
		slices.Sort(list)
		return list, err
	case unblock:
		return nil, bl.Unblock(ctx, abuse.ListKey, norm)
	default:
		return nil, bl.Block(ctx, abuse.ListKey, norm)
	}
}

// reports lists the spam reports, oldest first, or deletes one.
func (a *accounts) reports(ctx context.Context, del string) ([]string, error) {
	rs, ok := a.store.(storage.Reports)
	if !ok {
		return nil, errors.New("the store keeps no reports")
	}
	if del != "" {
		if err := rs.DeleteReport(ctx, del); errors.Is(err, storage.ErrNotFound) {
			return nil, &cmdError{kind: kindNotFound, msg: fmt.Sprintf("no report %s", del)}
		} else if err != nil {
			return nil, err
		}
		return nil, nil
	}
	list, err := rs.ListReports(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(list))
	for i, r := range list {
		out[i] = r.ID + " " + abuse.DescribeReport(r)
	}
	return out, nil
}

// cmdBlock runs block and unblock.
func cmdBlock(cmd string, args []string, stdout, stderr io.Writer) error {
	f := newFlags("community "+cmd, stderr, "data", "domain")
	if cmd == "block" {
		f.usage("Usage: community block [flags] DOMAIN|JID|SHA256...   block them server-wide\n       community block [flags]                        list the server's block list\n")
	} else {
		f.usage("Usage: community unblock [flags] DOMAIN|JID|SHA256...\n")
	}
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if cmd == "unblock" && len(pos) == 0 {
		return usageErrorf("unblock needs at least one entry")
	}
	cfg, err := f.config()
	if err != nil {
		return err
	}
	resp, err := admin(cfg, adminRequest{Cmd: cmd, Entries: pos})
	if err != nil {
		return err
	}
	for _, l := range resp.Users {
		fmt.Fprintln(stdout, l)
	}
	return nil
}

// cmdReports lists the spam reports or deletes one.
func cmdReports(args []string, stdout, stderr io.Writer) error {
	f := newFlags("community reports", stderr, "data", "domain")
	var del string
	f.fs.StringVar(&del, "delete", "", "delete the report with this `id` (the first column)")
	f.usage("Usage: community reports [flags]\n")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usageErrorf("reports takes no arguments")
	}
	cfg, err := f.config()
	if err != nil {
		return err
	}
	resp, err := admin(cfg, adminRequest{Cmd: "reports", Agent: del})
	if err != nil {
		return err
	}
	if del != "" {
		fmt.Fprintf(stdout, "report %s deleted\n", del)
	}
	for _, l := range resp.Users {
		fmt.Fprintln(stdout, l)
	}
	return nil
}
