// Package blocking implements XEP-0191: Blocking Command (version 1.3)
// for a Treff server.
//
// A user's client fetches the block list, blocks and unblocks JIDs (or
// everything, with an empty <unblock/>) with IQs to the user's own
// account; the server pushes every change to the user's sessions that
// fetched the list. Lists are kept through the optional
// storage.Blocklists and removed with the account.
//
// JIDs on a list match as XEP-0191 section 4 (after XEP-0016) says: a full
// JID only that resource, a bare JID any of its resources, domain/resource
// only that resource of the domain, a domain the domain itself, every JID
// at it and every JID at a subdomain of it.
//
// Enforcement, for stanzas that match the user's list:
//
//   - Inbound (from the blocked JID to the user, before delivery, offline
//     storage or the server answering for the account): presence of any
//     type is dropped without an answer; messages are answered with
//     <service-unavailable/> (groupchat and error messages are dropped);
//     IQ get and set are answered with <service-unavailable/>, other IQs
//     dropped. The user appears offline to the blocked JID (XEP-0191
//     section 3.3).
//   - Outbound (from the user, including what modules send on the user's
//     behalf, such as presence broadcasts and answers to probes):
//     presence is dropped; messages and IQ get/set are not routed, and the
//     sending session gets a <not-acceptable/> error with
//     <blocked xmlns='urn:xmpp:blocking:errors'/>; errors and IQ results
//     are dropped.
//
// On block, every available session of the user sends unavailable
// presence to the newly blocked contacts that receive the user's presence
// (subscription "from" or "both"); on unblock, such contacts get the
// user's current presence again: the module routes a presence probe from
// the contact to the user, which the roster module answers as it answers
// any probe. Directed presence is not tracked here: a contact that got
// directed presence only sees the user go offline when the user's session
// ends.
//
// The lists are cached in memory per user (loaded on first use, replaced
// on every change), so a stanza for or from a user who blocks nobody costs
// one map lookup and no allocation.
//
// List the module before the roster module in Server.Modules, so that
// subscription requests and probes from blocked JIDs are dropped before
// the roster module sees them.
package blocking

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"sync"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/stanza"
	"github.com/treff-im/treff/storage"
)

// NS is the namespace of the blocking command.
const NS = "urn:xmpp:blocking"

// NSErrors qualifies the <blocked/> error condition.
const NSErrors = "urn:xmpp:blocking:errors"

// DefaultLimit is the default number of JIDs a block list may hold.
const DefaultLimit = 1000

// maxCached bounds the number of users whose lists are cached; the cache
// starts afresh when it is full.
const maxCached = 1 << 16

// Module answers blocking commands and enforces the block lists.
type Module struct {
	// Store keeps the block lists. nil means the server's Storage, which
	// must then implement storage.Blocklists.
	Store storage.Blocklists
	// Rosters is consulted for the contacts that receive presence. nil
	// means the server's Storage.
	Rosters storage.Rosters
	// Limit is the most JIDs a list may hold. 0 means DefaultLimit;
	// negative means no limit.
	Limit int
	// OnReport, if set, is given each spam or abuse report (XEP-0377)
	// that came with a block, after the block is in place; the feature
	// urn:xmpp:reporting:1 is advertised only then. It must not block
	// for long.
	OnReport func(ctx context.Context, r Report)

	srv        *treff.Server
	interested *treff.SessionState[bool] // fetched the list
	cache      listCache
	locks      [32]sync.Mutex // serialise changes per user (by hash)
}

var _ treff.Module = (*Module)(nil)

// Name implements treff.Module.
func (m *Module) Name() string { return "blocking" }

// Setup implements treff.Module.
func (m *Module) Setup(ctx context.Context, r *treff.Registry) error {
	m.srv = r.Server()
	m.interested = treff.NewSessionState[bool]()
	var err error
	if m.Store, err = storage.Require(m.Store, m.srv.Storage, "blocking"); err != nil {
		return err
	}
	if m.Rosters == nil && m.srv.Storage != nil {
		m.Rosters = m.srv.Storage
	}
	r.HandleAccountIQ(NS, treff.IQHandlerFunc(m.handleIQ))
	r.AddFeature(NS)
	if m.OnReport != nil {
		r.AddFeature(NSReporting)
	}
	// A block list filters before any other module sees the stanza.
	r.InPhase(treff.PhaseFilter).OnAccountStanza(m.inbound)
	r.InPhase(treff.PhaseFilter).OnAccountOutbound(m.outbound)
	r.OnAccountDeleted(func(ctx context.Context, user jid.JID) error {
		defer m.cache.forget(user)
		if err := m.Store.UnblockAll(ctx, user.String()); err != nil {
			return fmt.Errorf("blocking: deleting the block list: %w", err)
		}
		return nil
	})
	return nil
}

func (m *Module) limit() int {
	switch {
	case m.Limit == 0:
		return DefaultLimit
	case m.Limit < 0:
		return 0
	}
	return m.Limit
}

// list is one user's block list. It is never changed once built: a
// change builds a new one.
type list struct {
	jids []string // sorted
	set  map[string]struct{}
	// which forms occur, so that matching builds only the keys it needs
	full, bare, domainRes, domain bool
}

var emptyList = &list{}

func newList(jids []string) *list {
	if len(jids) == 0 {
		return emptyList
	}
	l := &list{jids: slices.Clone(jids), set: make(map[string]struct{}, len(jids))}
	slices.Sort(l.jids)
	for _, s := range l.jids {
		l.set[s] = struct{}{}
		local, rest, hasLocal := strings.Cut(s, "@")
		if !hasLocal {
			rest = local
		}
		hasRes := strings.Contains(rest, "/")
		switch {
		case hasLocal && hasRes:
			l.full = true
		case hasLocal:
			l.bare = true
		case hasRes:
			l.domainRes = true
		default:
			l.domain = true
		}
	}
	return l
}

func (l *list) has(s string) bool {
	_, ok := l.set[s]
	return ok
}

// matches reports whether j matches an entry of the list (XEP-0191
// section 4).
func (l *list) matches(j jid.JID) bool {
	if len(l.jids) == 0 {
		return false
	}
	local, domain, res := j.Localpart(), j.Domainpart(), j.Resourcepart()
	if local != "" {
		if l.full && res != "" && l.has(local+"@"+domain+"/"+res) {
			return true
		}
		if l.bare && l.has(local+"@"+domain) {
			return true
		}
	} else if l.domainRes && res != "" && l.has(domain+"/"+res) {
		return true
	}
	if l.domain {
		// The domain and every domain it is a subdomain of.
		for d := domain; d != ""; {
			if l.has(d) {
				return true
			}
			i := strings.IndexByte(d, '.')
			if i < 0 {
				break
			}
			d = d[i+1:]
		}
	}
	return false
}

// userKey identifies a user in the cache without building the bare JID
// string.
type userKey struct{ local, domain string }

// listCache holds the lists of users seen recently.
type listCache struct {
	mu  sync.RWMutex
	m   map[userKey]*list
	gen uint64 // changes with every update, so a slow load cannot undo one
}

// get looks the user up. It does not allocate: the key's strings stay on
// the stack.
func (c *listCache) get(user jid.JID) (*list, uint64, bool) {
	c.mu.RLock()
	l, ok := c.m[userKey{user.Localpart(), user.Domainpart()}]
	gen := c.gen
	c.mu.RUnlock()
	return l, gen, ok
}

// put stores l for user; a load (gen != 0) only if nothing changed since
// gen was read.
func (c *listCache) put(user jid.JID, l *list, load bool, gen uint64) {
	k := userKey{strings.Clone(user.Localpart()), strings.Clone(user.Domainpart())}
	c.mu.Lock()
	defer c.mu.Unlock()
	if load && c.gen != gen {
		return
	}
	if !load {
		c.gen++
	}
	if c.m == nil || len(c.m) >= maxCached {
		c.m = make(map[userKey]*list)
	}
	c.m[k] = l
}

func (c *listCache) forget(user jid.JID) {
	c.mu.Lock()
	c.gen++
	delete(c.m, userKey{user.Localpart(), user.Domainpart()})
	c.mu.Unlock()
}

// list returns the user's block list, from the cache or the store. On a
// storage error it logs and returns the empty list: a failing store must
// not stop all traffic.
func (m *Module) list(ctx context.Context, user jid.JID) *list {
	l, gen, ok := m.cache.get(user)
	if ok {
		return l
	}
	l, err := m.load(ctx, user.Bare())
	if err != nil {
		m.srv.Log().Error("blocking: reading a block list failed", "user", user.Bare().String(), "err", err)
		return emptyList
	}
	m.cache.put(user, l, true, gen)
	return l
}

func (m *Module) load(ctx context.Context, user jid.JID) (*list, error) {
	jids, err := m.Store.Blocklist(ctx, user.String())
	if err != nil {
		return nil, err
	}
	return newList(jids), nil
}

// exemptKey marks a context whose stanzas the module sends itself (errors
// and presence to blocked JIDs), so that its own hooks let them pass.
type exemptKey struct{}

func exempt(ctx context.Context) bool { return ctx.Value(exemptKey{}) != nil }

// ownServer reports whether j is the user's own server (a domain JID of
// the user's domain), which a list never blocks.
func ownServer(user, j jid.JID) bool {
	return j.Localpart() == "" && j.Resourcepart() == "" && j.Equal(user.Domain())
}

// inbound enforces the addressee's list on a stanza to a local account.
func (m *Module) inbound(ctx context.Context, st *treff.Stanza) bool {
	if st.From.Equal(jid.JID{}) {
		return false
	}
	l := m.list(ctx, st.To)
	if len(l.jids) == 0 || exempt(ctx) || st.From.Bare().Equal(st.To.Bare()) || ownServer(st.To, st.From) || !l.matches(st.From) {
		return false
	}
	if Answered(st) {
		m.answer(ctx, st, stanza.ServiceUnavailable)
	}
	return true
}

// Answered reports whether a stanza a block list stops gets an error
// back (XEP-0191 section 3.5): a message other than an error or a group
// chat message, or an IQ request; presence, errors and results are
// dropped silently.
func Answered(st *treff.Stanza) bool {
	switch st.Kind {
	case treff.KindMessage:
		return st.Type != "error" && st.Type != "groupchat"
	case treff.KindIQ:
		return st.Type == "get" || st.Type == "set"
	}
	return false
}

// answer routes the error e to st's sender, past the module's own hooks.
func (m *Module) answer(ctx context.Context, st *treff.Stanza, e error) {
	reply, err := treff.NewStanza(treff.AppendError(nil, st, e))
	if err != nil {
		m.srv.Log().Error("blocking: bad error built", "err", err)
		return
	}
	m.srv.Route(context.WithValue(ctx, exemptKey{}, true), reply)
}

// outbound enforces the sender's list on a stanza leaving a local account.
func (m *Module) outbound(ctx context.Context, st *treff.Stanza) bool {
	if st.To.Equal(jid.JID{}) {
		return false
	}
	l := m.list(ctx, st.From)
	if len(l.jids) == 0 || exempt(ctx) || st.To.Bare().Equal(st.From.Bare()) || ownServer(st.From, st.To) || !l.matches(st.To) {
		return false
	}
	if st.Type == "error" || st.Kind == treff.KindPresence || st.Kind == treff.KindIQ && st.Type == "result" {
		return true
	}
	// The sending session learns why (XEP-0191 section 3.3). The error
	// goes to it directly: routed, it would come from the blocked JID and
	// be dropped by the user's own list.
	if s := m.srv.Session(st.From); s != nil {
		b := treff.AppendError(nil, st, stanza.Error{Type: stanza.Cancel, Condition: stanza.NotAcceptable})
		b = insertBlocked(b)
		s.Send(b)
	}
	m.srv.Log().Debug("stanza not delivered", "from", st.From.String(), "to", st.To.String(), "why", "blocked by the sender")
	return true
}

// insertBlocked adds the application condition to a serialised error.
func insertBlocked(b []byte) []byte {
	const end = "</error>"
	s := string(b)
	i := strings.LastIndex(s, end)
	if i < 0 {
		return b
	}
	return []byte(s[:i] + "<blocked xmlns='" + NSErrors + "'/>" + s[i:])
}

// request is a blocking command.
type request struct {
	XMLName xml.Name
	Items   []struct {
		JID    *string     `xml:"jid,attr"`
		Report *reportElem `xml:"urn:xmpp:reporting:1 report"`
	} `xml:"item"`
}

func (m *Module) lock(user jid.JID) func() {
	h := fnv.New32a()
	h.Write([]byte(user.String()))
	mu := &m.locks[h.Sum32()%uint32(len(m.locks))]
	mu.Lock()
	return mu.Unlock
}

func (m *Module) handleIQ(ctx context.Context, iq *treff.Stanza) ([]byte, error) {
	user := iq.From.Bare()
	if !iq.To.Equal(jid.JID{}) && !iq.To.Equal(user) {
		return nil, stanza.Forbidden
	}
	var req request
	if err := iq.DecodePayload(&req); err != nil || req.XMLName.Space != NS {
		return nil, stanza.BadRequest
	}
	switch {
	case iq.Type == "get" && req.XMLName.Local == "blocklist":
		if s := m.srv.Session(iq.From); s != nil {
			m.interested.Set(s, true)
			s.SetShared(NS, "interested") // for the other nodes of a cluster
		}
		l, err := m.load(ctx, user)
		if err != nil {
			return nil, fmt.Errorf("blocking: read %s: %w", user, err)
		}
		return appendItems(nil, "blocklist", l.jids), nil
	case iq.Type == "set" && (req.XMLName.Local == "block" || req.XMLName.Local == "unblock"):
	default:
		return nil, stanza.BadRequest
	}
	jids := make([]string, 0, len(req.Items))
	for _, it := range req.Items {
		if it.JID == nil {
			return nil, stanza.JIDMalformed.WithText("an item has no jid")
		}
		j, err := jid.Parse(*it.JID)
		if err != nil {
			return nil, stanza.JIDMalformed.WithText("not a JID: " + *it.JID)
		}
		if s := j.String(); !slices.Contains(jids, s) {
			jids = append(jids, s)
		}
	}
	if req.XMLName.Local == "block" {
		if len(jids) == 0 {
			return nil, stanza.BadRequest.WithText("a block command needs at least one item")
		}
		if err := m.block(ctx, user, jids); err != nil {
			return nil, err
		}
		m.report(ctx, m.reports(user, req))
	} else if err := m.unblock(ctx, user, jids); err != nil {
		return nil, err
	}
	// The result goes first, then the pushes (XEP-0191 section 3.3).
	if reply, err := treff.NewStanza(treff.AppendResult(nil, iq, nil)); err == nil {
		m.srv.Route(ctx, reply)
	}
	m.push(ctx, user, req.XMLName.Local, jids)
	return nil, treff.ErrNoReply
}

func (m *Module) block(ctx context.Context, user jid.JID, jids []string) error {
	unlock := m.lock(user)
	defer unlock()
	old, err := m.load(ctx, user)
	if err != nil {
		return fmt.Errorf("blocking: read %s: %w", user, err)
	}
	var added []string
	for _, j := range jids {
		if !old.has(j) {
			added = append(added, j)
		}
	}
	if len(added) == 0 {
		return nil
	}
	if n := m.limit(); n > 0 && len(old.jids)+len(added) > n {
		return stanza.Errorf(stanza.NotAcceptable, "a block list may hold at most %d JIDs", n)
	}
	// The contacts that see the user's presence see the user go offline
	// (XEP-0191 section 3.3), before the block stops all presence.
	m.presenceTo(ctx, user, newList(added), "unavailable")
	if err := m.Store.Block(ctx, user.String(), added); err != nil {
		return fmt.Errorf("blocking: block for %s: %w", user, err)
	}
	return m.refresh(ctx, user)
}

func (m *Module) unblock(ctx context.Context, user jid.JID, jids []string) error {
	unlock := m.lock(user)
	defer unlock()
	old, err := m.load(ctx, user)
	if err != nil {
		return fmt.Errorf("blocking: read %s: %w", user, err)
	}
	var removed []string
	if len(jids) == 0 {
		removed = old.jids
		err = m.Store.UnblockAll(ctx, user.String())
	} else {
		for _, j := range jids {
			if old.has(j) {
				removed = append(removed, j)
			}
		}
		err = m.Store.Unblock(ctx, user.String(), jids)
	}
	if err != nil {
		return fmt.Errorf("blocking: unblock for %s: %w", user, err)
	}
	if err := m.refresh(ctx, user); err != nil {
		return err
	}
	if len(removed) > 0 {
		m.presenceTo(ctx, user, newList(removed), "probe")
	}
	return nil
}

// refresh reloads the user's list into the cache after a change.
func (m *Module) refresh(ctx context.Context, user jid.JID) error {
	l, err := m.load(ctx, user)
	if err != nil {
		m.cache.forget(user)
		return fmt.Errorf("blocking: read %s: %w", user, err)
	}
	m.cache.put(user, l, false, 0)
	return nil
}

// presenceTo tells the user's contacts that receive the user's presence
// and match changed of a change: "unavailable" sends unavailable presence
// from each available session; "probe" makes the roster module send the
// current presence, by routing a probe from the contact to the user.
func (m *Module) presenceTo(ctx context.Context, user jid.JID, changed *list, how string) {
	if m.Rosters == nil {
		return
	}
	items, _, err := m.Rosters.Roster(ctx, user.String())
	if err != nil {
		m.srv.Log().Error("blocking: reading the roster failed", "user", user.String(), "err", err)
		return
	}
	ctx = context.WithValue(ctx, exemptKey{}, true)
	sessions := m.srv.Sessions(user)
	for _, it := range items {
		if it.Subscription != storage.SubFrom && it.Subscription != storage.SubBoth {
			continue
		}
		contact, err := jid.Parse(it.JID)
		if err != nil {
			continue
		}
		var targets []jid.JID
		if changed.matches(contact) {
			targets = append(targets, contact)
		} else {
			// A blocked full JID of the contact gets the presence itself.
			for _, s := range changed.jids {
				if j, err := jid.Parse(s); err == nil && j.Resourcepart() != "" && j.Bare().Equal(contact) {
					targets = append(targets, j)
				}
			}
		}
		for _, to := range targets {
			if how == "probe" {
				m.route(ctx, presence(to.Bare(), user, "probe"))
				continue
			}
			for _, s := range sessions {
				if s.Available() {
					m.route(ctx, presence(s.JID(), to, "unavailable"))
				}
			}
		}
	}
}

func presence(from, to jid.JID, typ string) []byte {
	b := []byte("<presence from='")
	b = treff.AppendEscaped(b, from.String())
	b = append(b, "' to='"...)
	b = treff.AppendEscaped(b, to.String())
	b = append(b, "' type='"...)
	b = append(b, typ...)
	return append(b, "'/>"...)
}

func (m *Module) route(ctx context.Context, raw []byte) {
	st, err := treff.NewStanza(raw)
	if err != nil {
		m.srv.Log().Error("blocking: bad stanza built", "err", err)
		return
	}
	m.srv.Route(ctx, st)
}

// appendItems serialises <name xmlns='urn:xmpp:blocking'> with one item
// per JID.
func appendItems(b []byte, name string, jids []string) []byte {
	b = append(b, '<')
	b = append(b, name...)
	b = append(b, " xmlns='"+NS+"'"...)
	if len(jids) == 0 {
		return append(b, "/>"...)
	}
	b = append(b, '>')
	for _, j := range jids {
		b = append(b, "<item jid='"...)
		b = treff.AppendEscaped(b, j)
		b = append(b, "'/>"...)
	}
	b = append(b, "</"...)
	b = append(b, name...)
	return append(b, '>')
}

// push sends a block or unblock to the user's sessions that fetched the
// list (XEP-0191 sections 3.3 to 3.5).
func (m *Module) push(ctx context.Context, user jid.JID, name string, jids []string) {
	payload := appendItems(nil, name, jids)
	var id [6]byte
	rand.Read(id[:])
	for _, s := range m.srv.Sessions(user) {
		if ok, _ := m.interested.Get(s); !ok && s.Shared(NS) == "" {
			continue
		}
		b := []byte("<iq type='set' id='push-" + hex.EncodeToString(id[:]) + "' to='")
		b = treff.AppendEscaped(b, s.JID().String())
		b = append(b, "'>"...)
		b = append(b, payload...)
		b = append(b, "</iq>"...)
		s.Send(b)
	}
}
