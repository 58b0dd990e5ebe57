// Package antispam defends an open server against spam, bots and abuse
// from its own new accounts and from strangers, as two Treff modules:
//
//   - Limits caps what local accounts send, with token buckets per
//     account (package ratelimit): every account's messages and room
//     joins, and, for new accounts only, messages and subscription
//     requests to JIDs that are not their contacts, room creations and
//     upload slots. A stanza over a limit is bounced to its sender with
//     <policy-violation/> (type wait) and a text naming the limit; it is
//     never lost silently.
//   - Filter keeps messages and subscription requests from strangers (JIDs
//     not in the user's roster) and from blocklisted domains away from
//     users who want that: dropped or quarantined for review, set
//     server-wide and per user through an ad-hoc command (XEP-0050).
//
// Like Prosody's mod_anti_spam and ejabberd's mod_antispam, and in the
// spirit of the JabberSPAM recommendations for open servers.
package antispam

import (
	"context"
	"encoding/xml"
	"errors"
	"strings"
	"sync"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/ratelimit"
	"github.com/treff-im/treff/stanza"
	"github.com/treff-im/treff/storage"
)

// Defaults of Limits.
const (
	DefaultNewAccountAge = 24 * time.Hour
)

// Default limits (see Limits).
var (
	DefaultStrangers = ratelimit.Limit{N: 30, Period: time.Hour}
	DefaultMessages  = ratelimit.Limit{N: 600, Period: time.Minute}
	DefaultJoins     = ratelimit.Limit{N: 100, Period: time.Minute}
	DefaultCreations = ratelimit.Limit{N: 5, Period: time.Hour}
	DefaultUploads   = ratelimit.Limit{N: 20, Period: time.Hour}
)

// Namespaces the limits recognise.
const (
	nsMUC    = "http://jabber.org/protocol/muc"
	nsUpload = "urn:xmpp:http:upload:0"
)

// RoomExists reports whether a group chat room exists (for Limits to tell
// a room's creation from a join). muc.Module.RoomExists is one.
type RoomExists func(ctx context.Context, room jid.JID) (bool, error)

// Limits is the module that limits local accounts' traffic. Each limit
// is a token bucket per account, kept in memory (a restart refills
// them): N stanzas at once, then N per period. The zero value of a limit
// field means its default; a limit with N < 0 is off.
type Limits struct {
	// NewAccountAge is how long an account counts as new, from its
	// creation (storage.Account.Created). 0 means DefaultNewAccountAge
	// (24 hours); negative means no account is new. Accounts the store
	// does not know (an external authenticator) are not new.
	NewAccountAge time.Duration
	// Strangers limits the messages and presence subscription requests
	// a new account sends to JIDs that are not its contacts, together.
	// A contact is a roster item with a subscription (to, from or both)
	// or whose own subscription request waits for an answer, or who sent
	// the account a message first (remembered in memory, 100 at most):
	// the other side agreed, asked or wrote, which a spammer cannot
	// arrange alone.
	// Messages of type groupchat and error, and stanzas to the account
	// itself or to a domain (no localpart), do not count; private
	// messages to room occupants do. Zero means DefaultStrangers (30 per
	// hour).
	Strangers ratelimit.Limit
	// Messages limits all messages an account sends (type error
	// excepted), new or not. Zero means DefaultMessages (600 per minute).
	Messages ratelimit.Limit
	// Joins limits the group chat rooms (XEP-0045) an account enters:
	// available presence to a room occupant JID with a
	// <x xmlns='http://jabber.org/protocol/muc'/> child. Zero means
	// DefaultJoins (100 per minute: a client that rejoins 100 bookmarked
	// rooms at once passes).
	Joins ratelimit.Limit
	// Creations limits the rooms a new account creates: joins of rooms
	// that RoomExists says do not exist. Without RoomExists, creations
	// count as joins only. Zero means DefaultCreations (5 per hour).
	Creations ratelimit.Limit
	// Uploads limits the upload slots (XEP-0363 requests) a new account
	// asks for. Zero means DefaultUploads (20 per hour).
	Uploads ratelimit.Limit
	// RoomExists tells creations from joins; nil counts joins only.
	RoomExists RoomExists
	// Accounts gives the accounts' creation times. nil means the
	// server's Storage.
	Accounts storage.Accounts
	// Rosters tells contacts from strangers. nil means the server's
	// Storage.
	Rosters storage.Rosters
	// Now returns the current time; nil means time.Now (for tests).
	Now func() time.Time

	srv    *treff.Server
	shards [32]shard
	maxPer time.Duration // the longest period, after which a quiet account's state goes
}

var _ treff.Module = (*Limits)(nil)

// shard holds the state of some accounts, by hash of the bare JID.
type shard struct {
	mu    sync.Mutex
	m     map[userKey]*account
	swept time.Time
}

// userKey identifies an account without building its bare JID string.
type userKey struct{ local, domain string }

// account is what the limits keep about one account.
type account struct {
	created                                        time.Time // zero: unknown, not new
	messages, strangers, joins, creations, uploads ratelimit.Bucket
	used                                           time.Time // last stanza counted
	// wroteFirst, for a new account, are the JIDs that sent it a
	// message: answering them is no message to a stranger.
	wroteFirst map[userKey]struct{}
}

// maxWroteFirst bounds account.wroteFirst.
const maxWroteFirst = 100

// Name implements treff.Module.
func (m *Limits) Name() string { return "limits" }

// Approved tells the limits that an admin approved the account
// (storage.Account.Approved): it counts as established from now on, not
// new, whatever its age.
func (m *Limits) Approved(user jid.JID) {
	k := userKey{user.Localpart(), user.Domainpart()}
	sh := m.shard(k)
	sh.mu.Lock()
	if a := sh.m[k]; a != nil {
		a.created = time.Time{}
	}
	sh.mu.Unlock()
}

// Setup implements treff.Module.
func (m *Limits) Setup(ctx context.Context, r *treff.Registry) error {
	m.srv = r.Server()
	if m.Accounts == nil && m.srv.Storage != nil {
		m.Accounts = m.srv.Storage
	}
	if m.Rosters == nil && m.srv.Storage != nil {
		m.Rosters = m.srv.Storage
	}
	for _, l := range []ratelimit.Limit{m.strangers(), m.messages(), m.joins(), m.creations(), m.uploads()} {
		m.maxPer = max(m.maxPer, l.Period)
	}
	// Limits decide before any other module sees the stanza.
	r.InPhase(treff.PhaseFilter).OnClientStanza(m.check)
	// Who wrote to a new account first.
	r.InPhase(treff.PhaseObserve).OnAccountStanza(m.inbound)
	// A deleted account's state goes with it: an account made again
	// under its name is new.
	r.OnAccountDeleted(func(ctx context.Context, user jid.JID) error {
		k := userKey{user.Localpart(), user.Domainpart()}
		sh := m.shard(k)
		sh.mu.Lock()
		delete(sh.m, k)
		sh.mu.Unlock()
		return nil
	})
	// The account's creation time is read once, at login.
	r.OnSessionBound(func(ctx context.Context, s *treff.Session) {
		_, sh := m.account(ctx, s.JID(), m.now())
		sh.mu.Unlock()
	})
	return nil
}

func orDefault(l, def ratelimit.Limit) ratelimit.Limit {
	switch {
	case l.N < 0:
		return ratelimit.Limit{}
	case l.N == 0 && l.Period == 0:
		return def
	}
	return l
}

func (m *Limits) strangers() ratelimit.Limit { return orDefault(m.Strangers, DefaultStrangers) }
func (m *Limits) messages() ratelimit.Limit  { return orDefault(m.Messages, DefaultMessages) }
func (m *Limits) joins() ratelimit.Limit     { return orDefault(m.Joins, DefaultJoins) }
func (m *Limits) creations() ratelimit.Limit { return orDefault(m.Creations, DefaultCreations) }
func (m *Limits) uploads() ratelimit.Limit   { return orDefault(m.Uploads, DefaultUploads) }

func (m *Limits) newAge() time.Duration {
	if m.NewAccountAge == 0 {
		return DefaultNewAccountAge
	}
	return m.NewAccountAge
}

func (m *Limits) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

func (m *Limits) shard(k userKey) *shard {
	// FNV-1a over the name: keeps the key's strings on the stack (a
	// hash.Hash would make them escape, and each costs an allocation).
	h := uint32(2166136261)
	for i := 0; i < len(k.local); i++ {
		h = (h ^ uint32(k.local[i])) * 16777619
	}
	for i := 0; i < len(k.domain); i++ {
		h = (h ^ uint32(k.domain[i])) * 16777619
	}
	return &m.shards[h%uint32(len(m.shards))]
}

// account returns the state of user's account with its shard locked; the
// caller unlocks it. The first stanza of an account (usually at session
// bind) reads its creation time from the store, without the lock.
func (m *Limits) account(ctx context.Context, user jid.JID, now time.Time) (*account, *shard) {
	k := userKey{user.Localpart(), user.Domainpart()}
	sh := m.shard(k)
	sh.mu.Lock()
	if a := sh.m[k]; a != nil {
		return a, sh
	}
	sh.mu.Unlock()
	var created time.Time
	if m.Accounts != nil {
		acc, err := m.Accounts.Account(ctx, user.Bare().String())
		switch {
		case err == nil:
			created = acc.Created
			if !acc.Approved.IsZero() {
				// An admin vouched for it: no longer new.
				created = time.Time{}
			}
		case !errors.Is(err, storage.ErrNotFound):
			m.srv.Log().Error("limits: reading an account failed", "user", user.Bare().String(), "err", err)
		}
	}
	nk := userKey{strings.Clone(user.Localpart()), strings.Clone(user.Domainpart())} // the map keeps its own copies
	sh.mu.Lock()
	if sh.m == nil {
		sh.m = make(map[userKey]*account)
	}
	if now.Sub(sh.swept) >= time.Minute {
		sh.sweep(now, m.maxPer)
	}
	a := sh.m[nk]
	if a == nil {
		a = &account{created: created, used: now}
		sh.m[nk] = a
	}
	return a, sh
}

// sweep forgets the accounts quiet for longer than the longest period:
// their buckets are full again, the same as new ones.
func (sh *shard) sweep(now time.Time, maxPer time.Duration) {
	sh.swept = now
	for k, a := range sh.m {
		if now.Sub(a.used) > maxPer {
			delete(sh.m, k)
		}
	}
}

func (a *account) isNew(now time.Time, age time.Duration) bool {
	return age > 0 && !a.created.IsZero() && now.Sub(a.created) < age
}

// check is the OnClientStanza hook: it counts st against its sender's
// limits and bounces it if one is exceeded.
func (m *Limits) check(ctx context.Context, st *treff.Stanza) bool {
	switch st.Kind {
	case treff.KindMessage:
		if st.Type == "error" {
			return false
		}
		return m.message(ctx, st)
	case treff.KindPresence:
		switch {
		case st.Type == "subscribe":
			return m.subscribe(ctx, st)
		case st.Type == "" && st.To.Resourcepart() != "" && st.To.Localpart() != "" && isJoin(st):
			return m.join(ctx, st)
		}
	case treff.KindIQ:
		if st.Type == "get" && st.Payload.Space == nsUpload && st.Payload.Local == "request" {
			return m.upload(ctx, st)
		}
	}
	return false
}

// isJoin reports a presence that enters a room (XEP-0045 7.2.1).
func isJoin(st *treff.Stanza) bool {
	for c := range st.Children() {
		if c.Name == (xml.Name{Space: nsMUC, Local: "x"}) {
			return true
		}
	}
	return false
}

// mayBeStranger reports whether a stanza from user to to could count
// against the strangers limit: to another account.
func mayBeStranger(user, to jid.JID) bool {
	return to.Localpart() != "" && !(to.Localpart() == user.Localpart() && to.Domainpart() == user.Domainpart())
}

func (m *Limits) message(ctx context.Context, st *treff.Stanza) bool {
	now := m.now()
	a, sh := m.account(ctx, st.From, now)
	a.used = now
	msgs := m.messages()
	if !a.isNew(now, m.newAge()) || st.Type == "groupchat" || !mayBeStranger(st.From, st.To) || m.strangers().None() || a.wroteFirstTo(st.To) {
		ok := a.messages.Allow(msgs, now)
		sh.mu.Unlock()
		if !ok {
			m.refuse(st, "You are sending too many messages (the limit is "+msgs.Text()+"); try again later.")
			return true
		}
		return false
	}
	sh.mu.Unlock()
	// A new account writing to someone: a contact or a stranger?
	stranger := !m.contact(ctx, st.From, st.To)
	sh.mu.Lock()
	mb, sb := a.messages, a.strangers
	okM := mb.Allow(msgs, now)
	okS := !stranger || sb.Allow(m.strangers(), now)
	if okM && okS {
		a.messages, a.strangers = mb, sb
	}
	sh.mu.Unlock()
	switch {
	case !okM:
		m.refuse(st, "You are sending too many messages (the limit is "+msgs.Text()+"); try again later.")
		return true
	case !okS:
		m.refuse(st, m.strangersText())
		return true
	}
	return false
}

func (m *Limits) strangersText() string {
	return "New accounts may send " + m.strangers().Text() + " messages and contact requests to people who are not their contacts; try again later."
}

func (m *Limits) subscribe(ctx context.Context, st *treff.Stanza) bool {
	now := m.now()
	a, sh := m.account(ctx, st.From, now)
	a.used = now
	if !a.isNew(now, m.newAge()) || !mayBeStranger(st.From, st.To) || m.strangers().None() || a.wroteFirstTo(st.To) {
		sh.mu.Unlock()
		return false
	}
	sh.mu.Unlock()
	if m.contact(ctx, st.From, st.To) {
		return false
	}
	sh.mu.Lock()
	ok := a.strangers.Allow(m.strangers(), now)
	sh.mu.Unlock()
	if !ok {
		m.refuse(st, m.strangersText())
		return true
	}
	return false
}

func (m *Limits) join(ctx context.Context, st *treff.Stanza) bool {
	now := m.now()
	a, sh := m.account(ctx, st.From, now)
	a.used = now
	isNew := a.isNew(now, m.newAge())
	sh.mu.Unlock()
	create := false
	if isNew && m.RoomExists != nil && !m.creations().None() {
		exists, err := m.RoomExists(ctx, st.To.Bare())
		create = err == nil && !exists
	}
	sh.mu.Lock()
	jb, cb := a.joins, a.creations
	okJ := jb.Allow(m.joins(), now)
	okC := !create || cb.Allow(m.creations(), now)
	if okJ && okC {
		a.joins, a.creations = jb, cb
	}
	sh.mu.Unlock()
	switch {
	case !okJ:
		m.refuse(st, "You are entering too many group chats (the limit is "+m.joins().Text()+"); try again later.")
		return true
	case !okC:
		m.refuse(st, "New accounts may create "+m.creations().Text()+" group chats; try again later.")
		return true
	}
	return false
}

func (m *Limits) upload(ctx context.Context, st *treff.Stanza) bool {
	now := m.now()
	a, sh := m.account(ctx, st.From, now)
	a.used = now
	ok := !a.isNew(now, m.newAge()) || a.uploads.Allow(m.uploads(), now)
	sh.mu.Unlock()
	if !ok {
		m.refuse(st, "New accounts may upload "+m.uploads().Text()+" files; try again later.")
		return true
	}
	return false
}

// inbound is the OnAccountStanza hook: a message that reaches a new
// account (online, so its state is at hand) makes its sender someone the
// account may answer freely.
func (m *Limits) inbound(ctx context.Context, st *treff.Stanza) bool {
	if st.Kind != treff.KindMessage || st.Type == "error" || st.Type == "groupchat" || st.From.Localpart() == "" ||
		m.newAge() < 0 || m.strangers().None() {
		return false
	}
	k := userKey{st.To.Localpart(), st.To.Domainpart()}
	sh := m.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	a := sh.m[k]
	if a == nil || !a.isNew(m.now(), m.newAge()) || len(a.wroteFirst) >= maxWroteFirst {
		return false
	}
	if a.wroteFirst == nil {
		a.wroteFirst = make(map[userKey]struct{})
	}
	a.wroteFirst[userKey{strings.Clone(st.From.Localpart()), strings.Clone(st.From.Domainpart())}] = struct{}{}
	return false
}

// wroteFirstTo reports whether to wrote to the account first; a's
// shard must be locked.
func (a *account) wroteFirstTo(to jid.JID) bool {
	_, ok := a.wroteFirst[userKey{to.Localpart(), to.Domainpart()}]
	return ok
}

// contact reports whether to is user's contact (see Limits.Strangers).
// A store that fails counts as yes: limits must not stop all traffic.
func (m *Limits) contact(ctx context.Context, user, to jid.JID) bool {
	if m.Rosters == nil {
		return false
	}
	it, err := m.Rosters.RosterItem(ctx, user.Bare().String(), to.Bare().String())
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return false
	case err != nil:
		m.srv.Log().Error("limits: reading a roster failed", "user", user.Bare().String(), "err", err)
		return true
	}
	return it.Subscription != storage.SubNone && it.Subscription != "" || it.PendingIn
}

// refuse bounces st to its sender's session with <policy-violation/>.
func (m *Limits) refuse(st *treff.Stanza, text string) {
	m.srv.Log().Debug("stanza over a limit", "from", st.From.String(), "why", text)
	if s := m.srv.Session(st.From); s != nil {
		s.Send(treff.AppendError(nil, st, stanza.Error{Type: stanza.Wait, Condition: stanza.PolicyViolation, Text: text}))
	}
}
