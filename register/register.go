// Package register implements XEP-0077 In-Band Registration as a Treff
// module: creating an account before logging in (with the legacy
// username/password fields and the XEP-0004 data form), changing the
// password and removing the account from a logged-in session.
//
// Registration follows a policy the operator can switch while the server
// runs (Module.SetPolicy): Open, or Closed with a clear <not-allowed/>
// error. Abuse limits keep nothing on disk: an in-memory rate limit per
// client address and one for the whole server, a minimum password length,
// reserved usernames, and usernames checked with the JID PRECIS profile.
//
// Removing an account goes through treff.Server.DeleteAccount, so every
// module deletes what it keeps for the user.
package register

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/xml"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/dataform"
	"github.com/treff-im/treff/ratelimit"
	"github.com/treff-im/treff/stanza"
	"github.com/treff-im/treff/storage"
)

// Namespaces of XEP-0077.
const (
	NS        = "jabber:iq:register"
	NSFeature = "http://jabber.org/features/iq-register"
)

// Policy says who may create an account.
type Policy string

// Registration policies.
const (
	// Open lets anyone create an account, within the rate limits.
	Open Policy = "open"
	// Closed refuses every registration with <not-allowed/>.
	Closed Policy = "closed"
	// Invite lets only holders of an invitation create an account: the
	// client presents the token of an invitation link
	// (xmpp:example.org?register;preauth=TOKEN, XEP-0401) with a
	// <preauth xmlns='urn:xmpp:pars:0'/> request before registering.
	Invite Policy = "invite"
)

// NSPreAuth is the namespace of the pre-authentication request that
// presents an invitation token (XEP-0379, XEP-0401).
const NSPreAuth = "urn:xmpp:pars:0"

// ParsePolicy parses "open", "closed" or "invite".
func ParsePolicy(s string) (Policy, error) {
	switch p := Policy(strings.ToLower(strings.TrimSpace(s))); p {
	case Open, Closed, Invite:
		return p, nil
	}
	return "", fmt.Errorf("register: unknown policy %q (open, closed or invite)", s)
}

// Accounts creates accounts and changes passwords. The default
// authenticator, auth.Store, is one.
type Accounts interface {
	CreateUser(ctx context.Context, user, password string) error
	SetPassword(ctx context.Context, user, password string) error
}

// Limit allows N events per period; N <= 0 means no limit. It is the
// limit type of package ratelimit; registrations count it in fixed
// windows, so that a failed registration can be given back.
type Limit = ratelimit.Limit

// DefaultReserved are usernames nobody may register.
var DefaultReserved = []string{
	"admin", "administrator", "root", "postmaster", "hostmaster", "webmaster",
	"abuse", "security", "support", "info", "noc", "xmpp", "jabber", "operator",
	"sysadmin", "system", "mail", "www",
}

// Module is the in-band registration module.
type Module struct {
	// OnRegistered, if set, is called after an account was created by
	// in-band registration (with an invitation or not), e.g. to tell the
	// admins. It must not block for long.
	OnRegistered func(ctx context.Context, user jid.JID, invited bool)
	// Policy is the policy at start; SetPolicy changes it later. Empty
	// means Closed.
	Policy Policy
	// Accounts creates the accounts. nil means the server's Authenticator,
	// which must then implement Accounts.
	Accounts Accounts
	// MinPasswordLength is the shortest password accepted, in
	// characters. 0 means 8.
	MinPasswordLength int
	// Reserved are usernames nobody may register (compared after PRECIS
	// preparation). nil means DefaultReserved.
	Reserved []string
	// PerAddress limits registrations from one client address, kept in
	// memory only. The zero Limit means 3 per hour.
	PerAddress Limit
	// Global limits registrations on the whole server. The zero Limit
	// means 60 per hour.
	Global Limit
	// ClosedText is the text sent with <not-allowed/> while registration
	// is closed. Empty means "Registration is closed for now."
	ClosedText string
	// HoldDeleted is how long the name of a deleted account cannot be
	// registered again, so that nobody inherits its contacts. 0 means 30
	// days; negative means not at all.
	HoldDeleted time.Duration
	// Held keeps those names. nil means the server's Storage if it
	// implements storage.HeldNames.
	Held storage.HeldNames
	// Invites keeps the invitations. nil means the server's Storage if it
	// implements storage.Invites; without one, the Invite policy cannot
	// be chosen.
	Invites storage.Invites
	// Shared, if set, shares the counts of PerAddress and Global with the
	// other servers that serve the same users (the nodes of a cluster;
	// *cluster.Node is one), so that the limits hold for all of them
	// together. nil means this server counts alone.
	Shared Sharer

	srv      *treff.Server
	policy   atomic.Value  // Policy
	made     atomic.Uint64 // accounts registered
	reserved map[string]bool
	mu       sync.Mutex
	perAddr  map[string]*window
	global   window
	tokens   map[string]presented // by stream ID
	publish  func([]byte)         // to the other servers, if Shared
}

// Sharer shares counts with other servers: each server counts an event
// in its own memory and publishes it; the others add it to theirs. A
// server that cannot reach the others counts alone meanwhile. The
// module publishes "+KEY" for a registration counted and "-KEY" for one
// given back, where KEY is the client address hashed with HashKey; its
// state is "=KEY START N" per address window and "=* START N" for the
// global one (START in Unix nanoseconds), which a server merges by
// taking the larger count.
type Sharer interface {
	// Share subscribes recv to the events the other servers publish on
	// topic and returns the function that publishes this server's
	// events to them (not to itself). recv must not block. A server
	// that starts (or meets another) gets the others' state, from their
	// state function, through recv too.
	Share(topic string, recv func(data []byte), state func() [][]byte) (publish func(data []byte), err error)
	// HashKey returns a keyed hash of s that is the same on every server
	// and cannot be reversed without the key, so that client addresses
	// never leave the server that saw them.
	HashKey(s string) string
}

// ShareTopic is the topic the module shares its counts on.
const ShareTopic = "register"

// presented is an invitation token a stream presented.
type presented struct {
	token string
	at    time.Time
}

var _ treff.Module = (*Module)(nil)

// Name implements treff.Module.
func (m *Module) Name() string { return "register" }

// Setup implements treff.Module.
func (m *Module) Setup(ctx context.Context, r *treff.Registry) error {
	m.srv = r.Server()
	if m.Accounts == nil {
		a, ok := m.srv.Authenticator.(Accounts)
		if !ok {
			return errors.New("register: the server's Authenticator cannot create accounts; set Module.Accounts")
		}
		m.Accounts = a
	}
	p := m.Policy
	if p == "" {
		p = Closed
	}
	if _, err := ParsePolicy(string(p)); err != nil {
		return err
	}
	m.policy.Store(p)
	m.reserved = make(map[string]bool)
	reserved := m.Reserved
	if reserved == nil {
		reserved = DefaultReserved
	}
	for _, u := range reserved {
		if j, err := jid.New(u, "example.org", ""); err == nil {
			m.reserved[j.Localpart()] = true
		}
	}
	m.perAddr = make(map[string]*window)
	if m.Shared != nil {
		pub, err := m.Shared.Share(ShareTopic, m.counted, m.state)
		if err != nil {
			return fmt.Errorf("register: sharing the limits: %w", err)
		}
		m.publish = pub
	}
	if m.Held == nil {
		m.Held, _ = m.srv.Storage.(storage.HeldNames)
	}
	if m.Invites == nil {
		m.Invites, _ = m.srv.Storage.(storage.Invites)
	}
	if p == Invite && m.Invites == nil {
		return errors.New("register: the invite policy needs a store of invitations (storage.Invites)")
	}
	m.tokens = make(map[string]presented)
	r.HandlePreAuthIQ(NSPreAuth, treff.IQHandlerFunc(m.preAuthToken))
	if m.Held != nil && m.HoldDeleted >= 0 {
		r.OnAccountDeleted(m.hold)
	}
	r.HandlePreAuthIQ(NS, treff.IQHandlerFunc(m.preAuth))
	r.HandleAccountIQ(NS, treff.IQHandlerFunc(m.inSession))
	r.AddStreamFeature(treff.StreamFeature{Phase: treff.BeforeAuth, Render: func() string {
		if m.CurrentPolicy() == Closed {
			return ""
		}
		return "<register xmlns='" + NSFeature + "'/>"
	}})
	r.AddFeature(NS)
	return nil
}

// Registered returns how many accounts the module registered since it
// was set up (by in-band registration, XEP-0077), for monitoring.
func (m *Module) Registered() uint64 { return m.made.Load() }

// CurrentPolicy returns the registration policy in force.
func (m *Module) CurrentPolicy() Policy {
	p, _ := m.policy.Load().(Policy)
	return p
}

// SetPolicy switches the registration policy; it applies to the next
// request.
func (m *Module) SetPolicy(p Policy) error {
	if _, err := ParsePolicy(string(p)); err != nil {
		return err
	}
	if p == Invite && m.Invites == nil {
		return errors.New("register: the invite policy needs a store of invitations (storage.Invites)")
	}
	m.policy.Store(p)
	if m.srv != nil {
		m.srv.Log().Info("registration policy changed", "policy", string(p))
	}
	return nil
}

func (m *Module) minPassword() int {
	if m.MinPasswordLength <= 0 {
		return 8
	}
	return m.MinPasswordLength
}

func (m *Module) closedError() error {
	text := m.ClosedText
	if text == "" {
		text = "Registration is closed for now."
	}
	return stanza.NotAllowed.WithText(text)
}

// query is a jabber:iq:register payload.
type query struct {
	Username *string             `xml:"username"`
	Password *string             `xml:"password"`
	Remove   *struct{}           `xml:"remove"`
	Form     *dataform.Submitted `xml:"jabber:x:data x"`
}

// fields returns the username and password given, from the data form if
// there is one, else from the legacy fields.
func (q *query) fields() (user, password string, ok bool) {
	if q.Form != nil {
		v := q.Form.Values()
		_, u := v["username"]
		_, p := v["password"]
		user, password = strings.Join(v["username"], ""), strings.Join(v["password"], "")
		return user, password, u && p && user != "" && password != ""
	}
	if q.Username == nil || q.Password == nil {
		return "", "", false
	}
	return *q.Username, *q.Password, *q.Username != "" && *q.Password != ""
}

func decodeQuery(iq *treff.Stanza) (*query, error) {
	var q query
	if iq.Payload.Space != NS || iq.DecodePayload(&q) != nil {
		return nil, stanza.BadRequest
	}
	return &q, nil
}

func (m *Module) form(instructions string) []byte {
	b := []byte("<query xmlns='" + NS + "'><instructions>")
	b = treff.AppendEscaped(b, instructions)
	b = append(b, "</instructions><username/><password/>"...)
	f := dataform.Form{Title: "Create an account", Instructions: instructions, Fields: []dataform.Field{
		dataform.FormType(NS),
		{Var: "username", Type: "text-single", Label: "Username", Required: true},
		{Var: "password", Type: "text-private", Label: "Password", Required: true},
	}}
	b = f.Append(b, "form")
	return append(b, "</query>"...)
}

// preAuth answers registration requests before authentication (XEP-0077
// section 3.1).
func (m *Module) preAuth(ctx context.Context, iq *treff.Stanza) ([]byte, error) {
	if m.CurrentPolicy() == Closed {
		return nil, m.closedError()
	}
	if iq.Type == "get" {
		return m.form(fmt.Sprintf("Choose a username and a password of at least %d characters.", m.minPassword())), nil
	}
	q, err := decodeQuery(iq)
	if err != nil {
		return nil, err
	}
	if q.Remove != nil {
		return nil, stanza.NotAuthorized.WithText("log in to remove your account")
	}
	user, password, ok := q.fields()
	if !ok {
		return nil, stanza.NotAcceptable.WithText("a username and a password are required")
	}
	account, err := jid.New(user, iq.To.Domainpart(), "")
	if err != nil || account.Localpart() == "" {
		return nil, stanza.NotAcceptable.WithText("this username is not allowed in an address")
	}
	if m.reserved[account.Localpart()] {
		return nil, stanza.Conflict.WithText("this username is reserved")
	}
	if err := m.checkPassword(password); err != nil {
		return nil, err
	}
	if m.Held != nil {
		until, err := m.Held.NameHeldUntil(ctx, account.String())
		if err != nil {
			return nil, err
		}
		if !until.IsZero() {
			return nil, stanza.Conflict.WithText("this username belonged to an account deleted recently; choose another")
		}
	}
	token := m.token(ctx)
	if m.CurrentPolicy() == Invite && token == "" {
		return nil, stanza.NotAllowed.WithText("Registration needs an invitation.")
	}
	// An invitation passes both limits (it counts against them all the
	// same): the operator or a user vouched for the newcomer. Over the
	// global limit, registration falls back to invitations alone until
	// the period has passed.
	switch m.allow(treff.PeerAddr(ctx), time.Now(), token != "") {
	case overAddress:
		return nil, stanza.ResourceConstraint.WithText("too many registrations; try again later")
	case overGlobal:
		return nil, stanza.NotAllowed.WithText("Registration is by invitation only for now: many accounts were made recently. Ask someone on this server for an invitation, or try again later.")
	}
	var inv storage.Invite
	if token != "" && m.Invites != nil {
		// Taken before the account is created, so that one invitation
		// makes one account; given back if creating fails.
		if inv, err = m.Invites.UseInvite(ctx, token); err != nil {
			if errors.Is(err, storage.ErrNotFound) {
				m.refund(treff.PeerAddr(ctx))
				return nil, stanza.NotAllowed.WithText("This invitation has expired or has been used.")
			}
			m.refund(treff.PeerAddr(ctx))
			return nil, err
		}
		if inv.Domain != account.Domainpart() {
			m.refund(treff.PeerAddr(ctx))
			m.Invites.CreateInvite(ctx, inv)
			return nil, stanza.NotAllowed.WithText("This invitation is for another domain.")
		}
	}
	if err := m.Accounts.CreateUser(ctx, account.String(), password); err != nil {
		m.refund(treff.PeerAddr(ctx))
		if inv.Token != "" {
			m.Invites.CreateInvite(ctx, inv)
		}
		if errors.Is(err, storage.ErrExists) {
			return nil, stanza.Conflict.WithText("this username is taken")
		}
		return nil, err
	}
	m.forget(ctx)
	m.made.Add(1)
	m.srv.Log().Info("account registered", "jid", account.String(), "invited", inv.Token != "")
	if m.OnRegistered != nil {
		m.OnRegistered(ctx, account, inv.Token != "")
	}
	return nil, nil
}

// preAuthToken takes the invitation token a client presents before
// registering (XEP-0401 section 5, XEP-0379) and keeps it for its stream.
func (m *Module) preAuthToken(ctx context.Context, iq *treff.Stanza) ([]byte, error) {
	if iq.Type != "set" || iq.Payload.Local != "preauth" {
		return nil, stanza.BadRequest
	}
	var pa struct {
		Token string `xml:"token,attr"`
	}
	if iq.DecodePayload(&pa) != nil || pa.Token == "" {
		return nil, stanza.BadRequest
	}
	token := pa.Token
	if m.Invites == nil || m.CurrentPolicy() == Closed {
		return nil, m.closedError()
	}
	inv, err := m.Invites.Invite(ctx, token)
	if err != nil || inv.Domain != iq.To.Domainpart() {
		return nil, stanza.ItemNotFound.WithText("This invitation is not valid: it may have expired or been used.")
	}
	now := time.Now()
	m.mu.Lock()
	for id, p := range m.tokens {
		if now.Sub(p.at) > 10*time.Minute {
			delete(m.tokens, id)
		}
	}
	m.tokens[treff.StreamID(ctx)] = presented{token, now}
	m.mu.Unlock()
	return nil, nil
}

// token returns the invitation token this stream presented, if any.
func (m *Module) token(ctx context.Context) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.tokens[treff.StreamID(ctx)].token
}

func (m *Module) forget(ctx context.Context) {
	m.mu.Lock()
	delete(m.tokens, treff.StreamID(ctx))
	m.mu.Unlock()
}

// NewInvite creates an invitation to register one account on domain,
// valid for validity, and returns it with its link. creator is the bare
// JID of the user who asked for it, or "" for the operator. The module
// must have been set up (the server has started serving).
func (m *Module) NewInvite(ctx context.Context, domain, creator string, validity time.Duration) (storage.Invite, string, error) {
	if m.Invites == nil {
		return storage.Invite{}, "", errors.New("register: no store of invitations")
	}
	var b [15]byte
	rand.Read(b[:])
	now := time.Now().UTC()
	inv := storage.Invite{
		Token:   base32.StdEncoding.EncodeToString(b[:]),
		Domain:  domain,
		Creator: creator,
		Created: now,
		Expires: now.Add(validity),
	}
	if err := m.Invites.CreateInvite(ctx, inv); err != nil {
		return storage.Invite{}, "", err
	}
	return inv, InviteLink(inv), nil
}

// InviteLink returns the link of an invitation (XEP-0401 section 4).
func InviteLink(inv storage.Invite) string {
	return "xmpp:" + inv.Domain + "?register;preauth=" + inv.Token
}

// hold keeps a deleted account's name from registration for HoldDeleted.
func (m *Module) hold(ctx context.Context, user jid.JID) error {
	d := m.HoldDeleted
	if d == 0 {
		d = 30 * 24 * time.Hour
	}
	if err := m.Held.HoldName(ctx, user.String(), time.Now().Add(d)); err != nil {
		return fmt.Errorf("register: holding the deleted account's name: %w", err)
	}
	return nil
}

func (m *Module) checkPassword(pw string) error {
	if n := utf8.RuneCountInString(pw); n < m.minPassword() {
		return stanza.Errorf(stanza.NotAcceptable, "the password must have at least %d characters", m.minPassword())
	}
	if len(pw) > 1024 {
		return stanza.NotAcceptable.WithText("the password is too long")
	}
	return nil
}

// inSession handles a logged-in user's requests (XEP-0077 sections 3.2 and
// 3.3): whether they are registered, password changes and removal.
func (m *Module) inSession(ctx context.Context, iq *treff.Stanza) ([]byte, error) {
	user := iq.From.Bare()
	if !iq.To.Equal(jid.JID{}) && !iq.To.Equal(user) {
		return nil, stanza.Forbidden
	}
	if iq.Type == "get" {
		return []byte("<query xmlns='" + NS + "'><registered/><username>" + xmlText(user.Localpart()) + "</username></query>"), nil
	}
	q, err := decodeQuery(iq)
	if err != nil {
		return nil, err
	}
	if q.Remove != nil {
		return m.remove(iq, user)
	}
	name, password, ok := q.fields()
	if !ok {
		return nil, stanza.BadRequest.WithText("a username and a new password are required")
	}
	if j, err := jid.New(name, user.Domainpart(), ""); err != nil || !j.Equal(user) {
		return nil, stanza.NotAuthorized.WithText("you can only change your own password")
	}
	if err := m.checkPassword(password); err != nil {
		return nil, err
	}
	if err := m.Accounts.SetPassword(ctx, user.String(), password); err != nil {
		return nil, err
	}
	m.srv.Log().Info("password changed", "jid", user.String())
	// What the old password granted (FAST tokens) goes with it.
	if err := m.srv.PasswordChanged(ctx, user); err != nil {
		return nil, err
	}
	return nil, nil
}

// remove answers the request, then deletes the account with all its data;
// the user's streams end with <not-authorized/> (XEP-0077 section 3.2).
func (m *Module) remove(iq *treff.Stanza, user jid.JID) ([]byte, error) {
	s := m.srv.Session(iq.From)
	if s == nil {
		return nil, stanza.ServiceUnavailable
	}
	// The result goes out before the stream error DeleteAccount causes.
	s.Send(treff.AppendResult(nil, iq, nil))
	go func() {
		// The user was told the account is removed: a server stopping
		// meanwhile does not leave it half deleted.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(m.srv.Context()), time.Minute)
		defer cancel()
		if err := m.srv.DeleteAccount(ctx, user, "account removed"); err != nil && !errors.Is(err, storage.ErrNotFound) {
			m.srv.Log().Error("removing an account failed", "jid", user.String(), "err", err)
		}
	}()
	return nil, treff.ErrNoReply
}

func xmlText(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return b.String()
}

// window counts events in a fixed time window.
type window struct {
	start time.Time
	n     int
}

func (w *window) allow(l Limit, now time.Time) bool {
	if l.N <= 0 {
		return true
	}
	if now.Sub(w.start) >= l.Period {
		w.start, w.n = now, 0
	}
	if w.n >= l.N {
		return false
	}
	w.n++
	return true
}

// merge takes another server's window for the same key if it counts
// more (the same events may have come as events and in a state), and
// its window has not ended.
func (w *window) merge(in window, l Limit, now time.Time) {
	if now.Sub(in.start) >= l.Period {
		return
	}
	if now.Sub(w.start) >= l.Period || in.n > w.n {
		*w = in
	}
}

// add counts an event whether or not it fits (another server allowed it).
func (w *window) add(l Limit, now time.Time) {
	if now.Sub(w.start) >= l.Period {
		w.start, w.n = now, 0
	}
	w.n++
}

func orLimit(l, def Limit) Limit {
	if l.N == 0 && l.Period == 0 {
		return def
	}
	return l
}

// refund gives back the registration allow counted for addr when the
// registration failed after all (a taken name, a used invitation): only
// accounts created count against the limits.
func (m *Module) refund(addr net.Addr) {
	key := m.key(addr)
	m.mu.Lock()
	m.refundLocked(key)
	m.mu.Unlock()
	if m.publish != nil {
		m.publish([]byte("-" + key))
	}
}

func (m *Module) refundLocked(key string) {
	if w := m.perAddr[key]; w != nil && w.n > 0 {
		w.n--
	}
	if m.global.n > 0 {
		m.global.n--
	}
}

// key is what registrations from addr count under: the address's host,
// hashed with Shared.HashKey if the counts are shared.
func (m *Module) key(addr net.Addr) string {
	host := hostOf(addr)
	if m.Shared != nil {
		return m.Shared.HashKey(host)
	}
	return host
}

// counted applies a registration another server counted ("+KEY") or gave
// back ("-KEY"), or a window of its state ("=KEY START N").
func (m *Module) counted(data []byte) {
	if len(data) == 0 {
		return
	}
	key := string(data[1:])
	now := time.Now()
	per, global := m.limits()
	m.mu.Lock()
	defer m.mu.Unlock()
	switch data[0] {
	case '+':
		w := m.windowLocked(key, per, now)
		w.add(per, now)
		m.global.add(global, now)
	case '-':
		m.refundLocked(key)
	case '=':
		f := strings.Fields(key)
		if len(f) != 3 {
			return
		}
		start, err1 := strconv.ParseInt(f[1], 10, 64)
		n, err2 := strconv.Atoi(f[2])
		if err1 != nil || err2 != nil || n <= 0 {
			return
		}
		in := window{start: time.Unix(0, start), n: n}
		if f[0] == "*" {
			m.global.merge(in, global, now)
		} else if now.Sub(in.start) < per.Period {
			m.windowLocked(f[0], per, now).merge(in, per, now)
		}
	}
}

// state returns the windows still running, for a server that starts
// (Sharer).
func (m *Module) state() [][]byte {
	now := time.Now()
	per, global := m.limits()
	m.mu.Lock()
	defer m.mu.Unlock()
	var out [][]byte
	entry := func(key string, w window) {
		out = append(out, fmt.Appendf(nil, "=%s %d %d", key, w.start.UnixNano(), w.n))
	}
	for k, w := range m.perAddr {
		if w.n > 0 && now.Sub(w.start) < per.Period {
			entry(k, *w)
		}
	}
	if m.global.n > 0 && now.Sub(m.global.start) < global.Period {
		entry("*", m.global)
	}
	return out
}

func (m *Module) limits() (per, global Limit) {
	return orLimit(m.PerAddress, Limit{N: 3, Period: time.Hour}), orLimit(m.Global, Limit{N: 60, Period: time.Hour})
}

// windowLocked returns key's window, made if new; it forgets the windows
// past their period when there are many.
func (m *Module) windowLocked(key string, per Limit, now time.Time) *window {
	if len(m.perAddr) > 10000 {
		for k, w := range m.perAddr {
			if now.Sub(w.start) >= per.Period {
				delete(m.perAddr, k)
			}
		}
	}
	w := m.perAddr[key]
	if w == nil {
		w = &window{start: now}
		m.perAddr[key] = w
	}
	return w
}

func hostOf(addr net.Addr) string {
	if addr == nil {
		return ""
	}
	host := addr.String()
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return host
}

// Verdicts of allow.
const (
	allowed = iota
	overAddress
	overGlobal
)

// allow applies the rate limits to a registration from addr and counts
// it if it is allowed, or if invited is set (an invitation passes the
// limits but counts against them). Addresses are kept in memory for at
// most one period and never written anywhere.
func (m *Module) allow(addr net.Addr, now time.Time, invited bool) int {
	key := m.key(addr)
	m.mu.Lock()
	v := m.allowLocked(key, now, invited)
	m.mu.Unlock()
	if v == allowed && m.publish != nil {
		m.publish([]byte("+" + key))
	}
	return v
}

func (m *Module) allowLocked(key string, now time.Time, invited bool) int {
	per, global := m.limits()
	w := m.windowLocked(key, per, now)
	// Check both before counting either.
	wc, gc := *w, m.global
	okAddr, okGlobal := wc.allow(per, now), gc.allow(global, now)
	switch {
	case invited:
		if !okAddr {
			wc.n++
		}
		if !okGlobal {
			gc.n++
		}
	case !okAddr:
		return overAddress
	case !okGlobal:
		return overGlobal
	}
	*w, m.global = wc, gc
	return allowed
}
