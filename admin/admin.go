// Package admin provides the service administration commands of XEP-0133
// as XEP-0050 ad-hoc commands (package adhoc), for the JIDs listed as
// admins: add a user, delete users, change a user's password, count and
// list the registered users, count the online users, announce to every
// online user, disable (suspend) and re-enable users, and switch the
// in-band registration policy. It also offers
// the XEP-0401 invitation command (urn:xmpp:invite#invite) to admins and,
// if allowed, to every local user.
package admin

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/adhoc"
	"github.com/treff-im/treff/register"
	"github.com/treff-im/treff/stanza"
	"github.com/treff-im/treff/storage"
)

// Namespaces and nodes.
const (
	NS             = "http://jabber.org/protocol/admin"
	NodeAddUser    = NS + "#add-user"
	NodeDeleteUser = NS + "#delete-user"
	NodeChangePass = NS + "#change-user-password"
	NodeUsersNum   = NS + "#get-registered-users-num"
	NodeUsersList  = NS + "#get-registered-users-list"
	NodeOnlineNum  = NS + "#get-online-users-num"
	NodeOnlineList = NS + "#get-online-users-list"
	NodeAnnounce   = NS + "#announce"
	// NodeRegistration switches the in-band registration policy (Treff's
	// own command).
	NodeRegistration = "urn:treff:admin#registration"
	// NodeInvite creates an invitation link (XEP-0401).
	NodeInvite = "urn:xmpp:invite#invite"
)

// Module adds the administration commands to an ad-hoc commands module.
type Module struct {
	// AdHoc is the ad-hoc commands module the commands are added to; it
	// must be among the server's modules too.
	AdHoc *adhoc.Module
	// Admins are the bare JIDs allowed to run the commands.
	Admins []string
	// Accounts creates accounts and sets passwords. nil means the
	// server's Authenticator, which must then implement it.
	Accounts register.Accounts
	// Register, if set, gives the registration policy command and the
	// invitation command.
	Register *register.Module
	// UsersMayInvite lets every local user (not only admins) create
	// invitations.
	UsersMayInvite bool
	// InviteValidity is how long an invitation can be used. 0 means 7
	// days.
	InviteValidity time.Duration
	// LandingURL, if not nil, returns the https address of a web page
	// for an invitation (one that tells people without an XMPP app which
	// to install and opens the invitation in it), added to the result as
	// XEP-0401's landing-url. nil means no such page.
	LandingURL func(inv storage.Invite) string

	srv    *treff.Server
	admins map[string]bool
}

var _ treff.Module = (*Module)(nil)

// Name implements treff.Module.
func (m *Module) Name() string { return "admin" }

// Setup implements treff.Module.
func (m *Module) Setup(ctx context.Context, r *treff.Registry) error {
	m.srv = r.Server()
	if m.AdHoc == nil {
		return errors.New("admin: no ad-hoc commands module")
	}
	if m.Accounts == nil {
		a, ok := m.srv.Authenticator.(register.Accounts)
		if !ok {
			return errors.New("admin: the server's Authenticator cannot create accounts; set Module.Accounts")
		}
		m.Accounts = a
	}
	m.admins = make(map[string]bool)
	for _, a := range m.Admins {
		j, err := jid.Parse(a)
		if err != nil || j.Localpart() == "" {
			return fmt.Errorf("admin: %q is not a user's JID", a)
		}
		m.admins[j.Bare().String()] = true
	}
	isAdmin := func(ctx context.Context, from jid.JID) bool { return m.admins[from.Bare().String()] }
	cmds := []adhoc.Command{
		{Node: NodeAddUser, Name: "Add a user", Allowed: isAdmin, Form: m.addUserForm, Run: m.addUser},
		{Node: NodeDeleteUser, Name: "Delete users", Allowed: isAdmin, Form: form("Delete users", "The accounts and all their data are deleted.",
			adhoc.Field{Var: "accountjids", Type: "jid-multi", Label: "The accounts to delete", Required: true}), Run: m.deleteUsers},
		{Node: NodeChangePass, Name: "Change a user's password", Allowed: isAdmin, Form: form("Change a user's password", "",
			adhoc.Field{Var: "accountjid", Type: "jid-single", Label: "The account", Required: true},
			adhoc.Field{Var: "password", Type: "text-private", Label: "The new password", Required: true}), Run: m.changePassword},
		{Node: NodeUsersNum, Name: "Number of registered users", Allowed: isAdmin, Run: m.usersNum},
		{Node: NodeUsersList, Name: "List of registered users", Allowed: isAdmin, Run: m.usersList},
		{Node: NodeOnlineNum, Name: "Number of online users", Allowed: isAdmin, Run: m.onlineNum},
		{Node: NodeOnlineList, Name: "List of online users", Allowed: isAdmin, Run: m.onlineList},
		{Node: NodeAnnounce, Name: "Send an announcement to online users", Allowed: isAdmin, Form: form("Announcement", "Sent as a headline message to everyone online on this domain.",
			adhoc.Field{Var: "subject", Type: "text-single", Label: "Subject"},
			adhoc.Field{Var: "announcement", Type: "text-multi", Label: "Announcement", Required: true}), Run: m.announce},
	}
	cmds = append(cmds, m.suspendCommands(isAdmin)...)
	r.GuardLogins(m)
	if m.Register != nil {
		cmds = append(cmds,
			adhoc.Command{Node: NodeRegistration, Name: "Registration policy", Allowed: isAdmin, Form: m.registrationForm, Run: m.setRegistration},
			adhoc.Command{Node: NodeInvite, Name: "Invite someone to create an account", Allowed: func(ctx context.Context, from jid.JID) bool {
				return m.Register.Invites != nil && (m.UsersMayInvite || isAdmin(ctx, from))
			}, Run: m.invite},
		)
	}
	m.AdHoc.Add(cmds...)
	return nil
}

func form(title, instructions string, fields ...adhoc.Field) func(context.Context, jid.JID) *adhoc.Form {
	return func(context.Context, jid.JID) *adhoc.Form {
		return &adhoc.Form{Title: title, Instructions: instructions, Fields: append([]adhoc.Field{adhoc.FormType(NS)}, fields...)}
	}
}

// account parses a submitted JID and checks it is on the admin's domain.
func (m *Module) account(from jid.JID, v string) (jid.JID, error) {
	js, err := adhoc.JIDs([]string{v})
	if err != nil {
		return jid.JID{}, err
	}
	if len(js) != 1 || js[0].Localpart() == "" {
		return jid.JID{}, stanza.BadRequest.WithText("an account's address is required")
	}
	if js[0].Domainpart() != from.Domainpart() {
		return jid.JID{}, stanza.NotAllowed.WithText("accounts of other domains cannot be changed from here")
	}
	return js[0], nil
}

func (m *Module) addUserForm(ctx context.Context, from jid.JID) *adhoc.Form {
	return form("Add a user", "",
		adhoc.Field{Var: "accountjid", Type: "jid-single", Label: "The address of the new account", Required: true},
		adhoc.Field{Var: "password", Type: "text-private", Label: "The password", Required: true},
		adhoc.Field{Var: "password-verify", Type: "text-private", Label: "The password again"})(ctx, from)
}

func (m *Module) addUser(ctx context.Context, from jid.JID, v adhoc.Values) (adhoc.Result, error) {
	acct, err := m.account(from, v.Get("accountjid"))
	if err != nil {
		return adhoc.Result{}, err
	}
	pw := v.Get("password")
	if pw == "" {
		return adhoc.Result{}, stanza.NotAcceptable.WithText("a password is required")
	}
	if vf, ok := v["password-verify"]; ok && strings.Join(vf, "") != pw {
		return adhoc.Result{}, stanza.NotAcceptable.WithText("the passwords differ")
	}
	if err := m.Accounts.CreateUser(ctx, acct.String(), pw); err != nil {
		if errors.Is(err, storage.ErrExists) {
			return adhoc.Result{}, stanza.Conflict.WithText("the account exists already")
		}
		return adhoc.Result{}, err
	}
	m.srv.Log().Info("account created by an admin", "jid", acct.String(), "admin", from.Bare().String())
	return adhoc.Result{Note: "The account " + acct.String() + " was created."}, nil
}

func (m *Module) deleteUsers(ctx context.Context, from jid.JID, v adhoc.Values) (adhoc.Result, error) {
	accts, err := m.accounts(from, v)
	if err != nil {
		return adhoc.Result{}, err
	}
	for _, a := range accts {
		if a.Equal(from.Bare()) {
			return adhoc.Result{}, stanza.NotAllowed.WithText("delete your own account with in-band registration instead")
		}
	}
	return m.each(accts, "Deleted", "Nothing deleted.", func(a jid.JID) error {
		return m.srv.DeleteAccount(ctx, a, "account deleted by an administrator")
	})
}

func (m *Module) changePassword(ctx context.Context, from jid.JID, v adhoc.Values) (adhoc.Result, error) {
	acct, err := m.account(from, v.Get("accountjid"))
	if err != nil {
		return adhoc.Result{}, err
	}
	pw := v.Get("password")
	if pw == "" {
		return adhoc.Result{}, stanza.NotAcceptable.WithText("a password is required")
	}
	if err := m.Accounts.SetPassword(ctx, acct.String(), pw); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return adhoc.Result{}, stanza.ItemNotFound.WithText("no such account")
		}
		return adhoc.Result{}, err
	}
	m.srv.Log().Info("password changed by an admin", "jid", acct.String(), "admin", from.Bare().String())
	if err := m.srv.PasswordChanged(ctx, acct); err != nil {
		return adhoc.Result{}, err
	}
	return adhoc.Result{Note: "The password of " + acct.String() + " was changed."}, nil
}

func (m *Module) users(ctx context.Context, domain string) ([]string, error) {
	if m.srv.Storage == nil {
		return nil, errors.New("admin: no storage")
	}
	accts, err := m.srv.Storage.ListAccounts(ctx, domain)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(accts))
	for i, a := range accts {
		out[i] = a.JID
	}
	return out, nil
}

func result(fields ...adhoc.Field) *adhoc.Form {
	return &adhoc.Form{Fields: append([]adhoc.Field{adhoc.FormType(NS)}, fields...)}
}

func (m *Module) usersNum(ctx context.Context, from jid.JID, _ adhoc.Values) (adhoc.Result, error) {
	users, err := m.users(ctx, from.Domainpart())
	if err != nil {
		return adhoc.Result{}, err
	}
	return adhoc.Result{Form: result(adhoc.Field{Var: "registeredusersnum", Label: "The number of registered users", Values: []string{strconv.Itoa(len(users))}})}, nil
}

func (m *Module) usersList(ctx context.Context, from jid.JID, _ adhoc.Values) (adhoc.Result, error) {
	users, err := m.users(ctx, from.Domainpart())
	if err != nil {
		return adhoc.Result{}, err
	}
	return adhoc.Result{Form: result(adhoc.Field{Var: "registereduserjids", Type: "jid-multi", Label: "The registered users", Values: users})}, nil
}

// online returns the bare JIDs with a session bound on domain, on this
// server or, in a cluster, on any node (Server.AllSessions), sorted.
func (m *Module) online(domain string) []string {
	seen := map[string]bool{}
	var users []string
	for _, s := range m.srv.AllSessions() {
		if b := s.JID().Bare().String(); s.JID().Domainpart() == domain && !seen[b] {
			seen[b] = true
			users = append(users, b)
		}
	}
	slices.Sort(users)
	return users
}

func (m *Module) onlineNum(ctx context.Context, from jid.JID, _ adhoc.Values) (adhoc.Result, error) {
	n := len(m.online(from.Domainpart()))
	return adhoc.Result{Form: result(adhoc.Field{Var: "onlineusersnum", Label: "The number of online users", Values: []string{strconv.Itoa(n)}})}, nil
}

// onlineList answers XEP-0133 4.14 (Get List of Online Users) with every
// online user of the admin's domain.
func (m *Module) onlineList(ctx context.Context, from jid.JID, _ adhoc.Values) (adhoc.Result, error) {
	users := m.online(from.Domainpart())
	return adhoc.Result{Form: result(adhoc.Field{Var: "onlineuserjids", Type: "jid-multi", Label: "The online users", Values: users})}, nil
}

func (m *Module) announce(ctx context.Context, from jid.JID, v adhoc.Values) (adhoc.Result, error) {
	body := strings.Join(v["announcement"], "\n")
	if strings.TrimSpace(body) == "" {
		return adhoc.Result{}, stanza.NotAcceptable.WithText("the announcement is empty")
	}
	n := Announce(m.srv, from.Domainpart(), v.Get("subject"), body)
	m.srv.Log().Info("announcement sent", "admin", from.Bare().String(), "sessions", n)
	return adhoc.Result{Note: fmt.Sprintf("The announcement was sent to %d sessions.", n)}, nil
}

// Announce sends a headline message from domain, with subject (if not
// empty) and body, to every online session on domain, and returns how
// many it went to.
func Announce(srv *treff.Server, domain, subject, body string) int {
	n := 0
	for _, s := range srv.AllSessions() {
		if s.JID().Domainpart() != domain {
			continue
		}
		b := []byte("<message type='headline' from='")
		b = treff.AppendEscaped(b, domain)
		b = append(b, "' to='"...)
		b = treff.AppendEscaped(b, s.JID().String())
		b = append(b, "'>"...)
		if subject != "" {
			b = append(b, "<subject>"...)
			b = treff.AppendEscaped(b, subject)
			b = append(b, "</subject>"...)
		}
		b = append(b, "<body>"...)
		b = treff.AppendEscaped(b, body)
		b = append(b, "</body></message>"...)
		if s.Send(b) == nil {
			n++
		}
	}
	return n
}

func (m *Module) registrationForm(ctx context.Context, from jid.JID) *adhoc.Form {
	return form("Registration policy", "Who may create an account from their client.",
		adhoc.Field{Var: "policy", Type: "list-single", Label: "Policy", Required: true,
			Options: []string{string(register.Open), string(register.Closed), string(register.Invite)},
			Values:  []string{string(m.Register.CurrentPolicy())}})(ctx, from)
}

func (m *Module) setRegistration(ctx context.Context, from jid.JID, v adhoc.Values) (adhoc.Result, error) {
	p, err := register.ParsePolicy(v.Get("policy"))
	if err != nil {
		return adhoc.Result{}, stanza.NotAcceptable.WithText("the policy is open, closed or invite")
	}
	if err := m.Register.SetPolicy(p); err != nil {
		return adhoc.Result{}, stanza.NotAcceptable.WithText(err.Error())
	}
	return adhoc.Result{Note: "Registration is now " + string(p) + "."}, nil
}

// invite creates an invitation (XEP-0401 section 4).
func (m *Module) invite(ctx context.Context, from jid.JID, _ adhoc.Values) (adhoc.Result, error) {
	validity := m.InviteValidity
	if validity <= 0 {
		validity = 7 * 24 * time.Hour
	}
	inv, link, err := m.Register.NewInvite(ctx, from.Domainpart(), from.Bare().String(), validity)
	if err != nil {
		return adhoc.Result{}, err
	}
	m.srv.Log().Info("invitation created", "by", from.Bare().String())
	form := &adhoc.Form{Fields: []adhoc.Field{
		adhoc.FormType("urn:xmpp:invite"),
		{Var: "uri", Label: "Invitation link", Values: []string{link}},
		{Var: "expire", Label: "Valid until", Values: []string{inv.Expires.Format(time.RFC3339)}},
	}}
	if m.LandingURL != nil {
		if u := m.LandingURL(inv); u != "" {
			form.Fields = append(form.Fields, adhoc.Field{Var: "landing-url", Label: "Invitation web page", Values: []string{u}})
		}
	}
	return adhoc.Result{Form: form}, nil
}
