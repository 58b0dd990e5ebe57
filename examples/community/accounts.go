package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	treffadmin "github.com/treff-im/treff/admin"

	"golang.org/x/text/secure/precis"
	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/auth"
	"github.com/treff-im/treff/fast"
	"github.com/treff-im/treff/register"
	"github.com/treff-im/treff/storage"
)

// Error kinds, as carried by the admin protocol.
const (
	kindUsage    = "usage"    // bad arguments: exit code 2
	kindExists   = "exists"   // the account exists already
	kindNotFound = "notfound" // no such account
	kindError    = "error"    // anything else
)

// cmdError is an error with a kind that decides the exit code.
type cmdError struct {
	kind string
	msg  string
}

func (e *cmdError) Error() string { return e.msg }

func usageErrorf(format string, args ...any) error {
	return &cmdError{kind: kindUsage, msg: fmt.Sprintf(format, args...)}
}

// errorKind returns the kind of err.
func errorKind(err error) string {
	var ce *cmdError
	if errors.As(err, &ce) {
		return ce.kind
	}
	return kindError
}

// parseUser checks that s is a bare JID with a localpart and returns it
// normalised. It does not check the domain.
func parseUser(s string) (jid.JID, error) {
	j, err := jid.Parse(s)
	if err != nil {
		return jid.JID{}, usageErrorf("%q is not a valid JID: %v", s, err)
	}
	if j.Localpart() == "" || j.Resourcepart() != "" {
		return jid.JID{}, usageErrorf("%q is not a user's bare JID (like alice@example.org)", s)
	}
	return j, nil
}

// checkPassword refuses passwords that no login could match.
func checkPassword(pw string) error {
	if pw == "" {
		return usageErrorf("empty password")
	}
	if _, err := precis.OpaqueString.String(pw); err != nil {
		return usageErrorf("invalid password: %v", err)
	}
	return nil
}

// accounts carries out the admin commands on a store, in the server process
// (srv is the running server) or in an admin command that opened the
// database itself (srv is nil).
type accounts struct {
	store   storage.Store
	auth    *auth.Store
	domains []string
	srv     *treff.Server
	log     *slog.Logger
	// offline is set in an admin command that opened the database itself:
	// srv then never serves, and its modules may not be set up.
	offline bool
	// landing returns the web page of an invitation link, or "" if the
	// server serves none; nil means none.
	landing func(link string) string
}

// user parses s and checks that its domain is served.
func (a *accounts) user(s string) (string, error) {
	j, err := parseUser(s)
	if err != nil {
		return "", err
	}
	if !slices.Contains(a.domains, j.Domainpart()) {
		return "", usageErrorf("%s is not on a configured domain (configured: %s); use -domain or -config",
			j, strings.Join(a.domains, ", "))
	}
	return j.String(), nil
}

func (a *accounts) addUser(ctx context.Context, user, password string) error {
	u, err := a.user(user)
	if err != nil {
		return err
	}
	if err := checkPassword(password); err != nil {
		return err
	}
	if err := a.auth.CreateUser(ctx, u, password); err != nil {
		if errors.Is(err, storage.ErrExists) {
			return &cmdError{kind: kindExists, msg: fmt.Sprintf("account %s exists already", u)}
		}
		return err
	}
	a.logInfo("account created", u)
	return nil
}

func (a *accounts) setPassword(ctx context.Context, user, password string) error {
	u, err := a.user(user)
	if err != nil {
		return err
	}
	if err := checkPassword(password); err != nil {
		return err
	}
	if err := a.auth.SetPassword(ctx, u, password); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return notFound(u)
		}
		return err
	}
	a.logInfo("password changed", u)
	if a.srv != nil {
		// What the old password granted (FAST tokens) goes with it.
		bare, err := jid.Parse(u)
		if err != nil {
			return err
		}
		if err := a.srv.PasswordChanged(ctx, bare); err != nil {
			return err
		}
	}
	return nil
}

func notFound(u string) error {
	return &cmdError{kind: kindNotFound, msg: fmt.Sprintf("no account %s", u)}
}

// deleteUser deletes the account and all its data through the server
// (treff.Server.DeleteAccount): the account first, so that nobody can log
// in as it any more, then its sessions, then what the modules keep, and
// the contacts' subscriptions are cancelled.
func (a *accounts) deleteUser(ctx context.Context, user string) error {
	u, err := a.user(user)
	if err != nil {
		return err
	}
	bare, err := jid.Parse(u)
	if err != nil {
		return err
	}
	if err := a.srv.DeleteAccount(ctx, bare, "account deleted"); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return notFound(u)
		}
		return err
	}
	return nil
}

// devices lists the user's devices that log in with FAST tokens
// (XEP-0484), one line each: user agent id, software and device, last
// use. With revoke, it ends that device's tokens instead.
func (a *accounts) devices(ctx context.Context, user, revoke string) ([]string, error) {
	u, err := a.user(user)
	if err != nil {
		return nil, err
	}
	tokens, ok := a.store.(storage.FastTokens)
	if !ok {
		return nil, errors.New("the store keeps no FAST tokens")
	}
	if revoke != "" {
		if _, err := tokens.FastDevice(ctx, u, revoke); errors.Is(err, storage.ErrNotFound) {
			return nil, &cmdError{kind: kindNotFound, msg: fmt.Sprintf("%s has no device %q", u, revoke)}
		} else if err != nil {
			return nil, err
		}
		if fm := fastModuleOf(a.srv); fm != nil && !a.offline {
			// Through the module: the device's sessions end too.
			bare, _ := jid.Parse(u)
			if err := fm.Revoke(ctx, bare, revoke); err != nil {
				return nil, err
			}
		} else if err := tokens.DeleteFastDevice(ctx, u, revoke); err != nil {
			return nil, err
		}
		a.logInfo("FAST device logged out", u)
		return nil, nil
	}
	devs, err := tokens.FastDevices(ctx, u)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(devs))
	for i, d := range devs {
		out[i] = fast.DescribeDevice(d)
	}
	return out, nil
}

// fastModuleOf returns srv's FAST module, or nil (also for no server).
func fastModuleOf(srv *treff.Server) *fast.Module {
	if srv == nil {
		return nil
	}
	return fastModule(srv)
}

// listUsers returns the bare JIDs of all accounts, sorted.
func (a *accounts) listUsers(ctx context.Context) ([]string, error) {
	accts, err := a.store.ListAccounts(ctx, "")
	if err != nil {
		return nil, err
	}
	users := make([]string, len(accts))
	for i, ac := range accts {
		users[i] = ac.JID
	}
	slices.Sort(users)
	return users, nil
}

// expire finds the accounts on the configured domains unused since before
// cutoff: last login before it or, never used, created before it. With
// del it deletes them (with all their data) and returns those it deleted.
// Each line says the account and when it was last used.
func (a *accounts) expire(ctx context.Context, cutoff time.Time, del bool) ([]string, error) {
	accts, err := a.store.ListAccounts(ctx, "")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, ac := range accts {
		used, what := ac.LastLogin, "last login"
		if used.IsZero() {
			used, what = ac.Created, "never logged in, created"
		}
		if !used.Before(cutoff) {
			continue
		}
		j, err := jid.Parse(ac.JID)
		if err != nil || !slices.Contains(a.domains, j.Domainpart()) {
			continue
		}
		if del {
			if err := a.srv.DeleteAccount(ctx, j, "account expired"); err != nil {
				return out, fmt.Errorf("deleting %s: %w", ac.JID, err)
			}
		}
		out = append(out, fmt.Sprintf("%s (%s %s)", ac.JID, what, used.Format(time.DateOnly)))
	}
	return out, nil
}

func (a *accounts) logInfo(msg, user string) {
	if a.log != nil {
		a.log.Info(msg, "jid", user)
	}
}

// registrationModule returns the server's registration module.
func (a *accounts) registrationModule() (*register.Module, error) {
	if a.srv != nil {
		for _, mod := range a.srv.Modules {
			if r, ok := mod.(*register.Module); ok {
				return r, nil
			}
		}
	}
	return nil, errors.New("the server has no registration module")
}

// invite creates an invitation for domain (the first configured domain if
// empty) valid for validity and returns its link; list instead returns
// the links of the invitations not used and not expired, with their
// expiry.
func (a *accounts) invite(ctx context.Context, domain string, validity time.Duration, list bool) ([]string, error) {
	m, err := a.registrationModule()
	if err != nil {
		return nil, err
	}
	if err := a.srv.Setup(); err != nil {
		return nil, err
	}
	if list {
		if m.Invites == nil {
			return nil, errors.New("no store of invitations")
		}
		invs, err := m.Invites.ListInvites(ctx)
		if err != nil {
			return nil, err
		}
		var out []string
		for _, inv := range invs {
			out = append(out, register.InviteLink(inv)+" (expires "+inv.Expires.Format(time.DateTime)+" UTC)")
		}
		return out, nil
	}
	if domain == "" {
		domain = a.domains[0]
	}
	if !slices.Contains(a.domains, domain) {
		return nil, usageErrorf("%s is not a configured domain", domain)
	}
	_, link, err := m.NewInvite(ctx, domain, "", validity)
	if err != nil {
		return nil, err
	}
	a.logInfo("invitation created", domain)
	out := []string{link}
	if a.landing != nil {
		if page := a.landing(link); page != "" {
			out = append(out, page) // for phones: which app to install
		}
	}
	return out, nil
}

// registration switches the running server's registration policy, if
// policy is not empty, and returns the policy in force.
func (a *accounts) registration(policy string) (string, error) {
	m, err := a.registrationModule()
	if err != nil {
		return "", err
	}
	if policy != "" {
		p, err := register.ParsePolicy(policy)
		if err != nil {
			return "", usageErrorf("%q is not open, closed or invite", policy)
		}
		if err := m.SetPolicy(p); err != nil {
			return "", err
		}
	}
	return string(m.CurrentPolicy()), nil
}

// inviteRequest carries out an admin protocol invite request.
func (a *accounts) inviteRequest(ctx context.Context, req adminRequest) ([]string, error) {
	var validity time.Duration
	if !req.List {
		d, err := time.ParseDuration(req.Valid)
		if err != nil || d <= 0 {
			return nil, usageErrorf("invite needs a positive validity, not %q", req.Valid)
		}
		validity = d
	}
	return a.invite(ctx, req.Domain, validity, req.List)
}

// announce sends a headline message to everyone online on the configured
// domains and returns how many sessions it went to.
func (a *accounts) announce(subject, body string) (int, error) {
	if strings.TrimSpace(body) == "" {
		return 0, usageErrorf("the announcement is empty")
	}
	if a.srv == nil {
		return 0, errors.New("no server runs")
	}
	n := 0
	for _, d := range a.domains {
		n += treffadmin.Announce(a.srv, d, subject, body)
	}
	if a.log != nil {
		a.log.Info("announcement sent", "sessions", n)
	}
	return n, nil
}
