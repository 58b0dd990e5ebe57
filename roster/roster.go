// Package roster implements roster management and presence subscriptions
// of RFC 6121 (XMPP IM) sections 2 and 3, with roster versioning
// (XEP-0237), as a Treff module.
package roster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"unicode/utf8"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/stanza"
	"github.com/treff-im/treff/storage"
)

// NS is the roster namespace.
const NS = "jabber:iq:roster"

// NSVer is the stream feature namespace of roster versioning (XEP-0237).
const NSVer = "urn:xmpp:features:rosterver"

// Module manages rosters and subscriptions.
type Module struct {
	// Store keeps the rosters. nil means the server's Storage.
	Store storage.Rosters
	// MaxItems is the most items a roster may hold. 0 means 1000.
	MaxItems int
	// MaxLength is the longest item name or group name, in characters.
	// 0 means 1023 (RFC 6121 suggests at least that much).
	MaxLength int
	// MaxSharedDirected is how many of a session's directed presence
	// recipients (RFC 6121 4.6) are published with its row in a cluster
	// (treff.SharedDirected), so that another node can tell them if the
	// session's node dies. Recipients beyond it are still told when the
	// session ends on a live node. 0 means DefaultMaxSharedDirected.
	MaxSharedDirected int

	srv        *treff.Server
	interested *treff.SessionState[bool]           // requested the roster
	presence   *treff.SessionState[*presenceState] // what its presence was
	// locks serialise the read-modify-write of a user's roster items:
	// the user's own sessions and contacts' subscription stanzas change
	// the same item from different goroutines. Held only around storage
	// calls and pushes, never while routing, so at most one is held.
	locks [64]sync.Mutex
}

// lock locks the stripe of user's roster and returns its unlock.
func (m *Module) lock(user jid.JID) func() {
	h := fnv.New32a()
	h.Write([]byte(user.String()))
	l := &m.locks[h.Sum32()%uint32(len(m.locks))]
	l.Lock()
	return l.Unlock
}

var _ treff.Module = (*Module)(nil)

// Name implements treff.Module.
func (m *Module) Name() string { return "roster" }

// Setup implements treff.Module.
func (m *Module) Setup(ctx context.Context, r *treff.Registry) error {
	m.srv = r.Server()
	m.interested = treff.NewSessionState[bool]()
	m.presence = treff.NewSessionState[*presenceState]()
	if m.Store == nil {
		if m.srv.Storage == nil {
			return errors.New("roster: no storage")
		}
		m.Store = m.srv.Storage
	}
	r.HandleAccountIQ(NS, treff.IQHandlerFunc(m.handleIQ))
	r.AddStreamFeature(treff.StreamFeature{Phase: treff.AfterAuth, XML: "<ver xmlns='" + NSVer + "'/>"})
	// RFC 6121 3.4.1: subscription pre-approval is supported.
	r.AddStreamFeature(treff.StreamFeature{Phase: treff.AfterAuth, XML: "<sub xmlns='urn:xmpp:features:pre-approval'/>"})
	m.setupSubscriptions(r)
	r.OnAccountDeleted(m.accountDeleted)
	return nil
}

// accountDeleted cancels the subscriptions between a removed account and
// its contacts, both ways, so that their rosters stop showing it as
// subscribed (its sessions have already sent unavailable presence), then
// deletes its roster.
func (m *Module) accountDeleted(ctx context.Context, user jid.JID) error {
	items, _, err := m.Store.Roster(ctx, user.String())
	if err != nil {
		// Without the roster the contacts cannot be told; the roster
		// stays for another try.
		return fmt.Errorf("roster: reading the roster: %w", err)
	}
	for _, it := range items {
		contact, err := jid.Parse(it.JID)
		if err != nil {
			continue
		}
		st := StateOf(it)
		if st.from() || st.PendingIn {
			m.sendFromUser(ctx, user, contact, "unsubscribed")
		}
		if st.to() || st.PendingOut {
			m.sendFromUser(ctx, user, contact, "unsubscribe")
		}
	}
	if err := m.Store.DeleteRoster(ctx, user.String()); err != nil {
		return fmt.Errorf("roster: deleting the roster: %w", err)
	}
	return nil
}

func (m *Module) maxItems() int {
	if m.MaxItems <= 0 {
		return 1000
	}
	return m.MaxItems
}

// DefaultMaxSharedDirected is Module.MaxSharedDirected's default.
const DefaultMaxSharedDirected = 64

func (m *Module) maxSharedDirected() int {
	if m.MaxSharedDirected <= 0 {
		return DefaultMaxSharedDirected
	}
	return m.MaxSharedDirected
}

func (m *Module) maxLength() int {
	if m.MaxLength <= 0 {
		return 1023
	}
	return m.MaxLength
}

type xmlItem struct {
	JID          string   `xml:"jid,attr"`
	Name         string   `xml:"name,attr"`
	Subscription string   `xml:"subscription,attr"`
	Groups       []string `xml:"group"`
}

type xmlQuery struct {
	XMLName xml.Name `xml:"iq"`
	Query   struct {
		Ver   *string   `xml:"ver,attr"`
		Items []xmlItem `xml:"item"`
	} `xml:"jabber:iq:roster query"`
}

func (m *Module) handleIQ(ctx context.Context, iq *treff.Stanza) ([]byte, error) {
	user := iq.From.Bare()
	if !iq.To.Equal(jid.JID{}) && !iq.To.Equal(user) {
		return nil, stanza.Forbidden
	}
	var q xmlQuery
	if err := iq.Decoder().Decode(&q); err != nil {
		return nil, stanza.BadRequest
	}
	if iq.Type == "get" {
		if len(q.Query.Items) > 0 {
			return nil, stanza.BadRequest
		}
		if s := m.srv.Session(iq.From); s != nil {
			m.interested.Set(s, true)
			s.SetShared(NS, "interested") // for the other nodes of a cluster
		}
		items, ver, err := m.Store.Roster(ctx, user.String())
		if err != nil {
			return nil, err
		}
		if q.Query.Ver != nil && *q.Query.Ver == ver && ver != "" {
			// XEP-0237: the client's copy is current; changes come as pushes.
			return nil, nil
		}
		b := []byte("<query xmlns='" + NS + "' ver='")
		b = treff.AppendEscaped(b, ver)
		b = append(b, "'>"...)
		for _, it := range items {
			if !pendingOnly(it) {
				b = AppendItem(b, it)
			}
		}
		return append(b, "</query>"...), nil
	}
	// set: exactly one item (RFC 6121 2.1.5)
	if len(q.Query.Items) != 1 {
		return nil, stanza.BadRequest
	}
	x := q.Query.Items[0]
	contact, err := jid.Parse(x.JID)
	if err != nil || contact.Resourcepart() != "" {
		return nil, stanza.BadRequest.WithText("item JID must be a bare JID")
	}
	if contact.Equal(user) {
		return nil, stanza.NotAllowed.WithText("cannot add yourself")
	}
	if x.Subscription == "remove" {
		return nil, m.remove(ctx, user, contact)
	}
	if utf8.RuneCountInString(x.Name) > m.maxLength() {
		return nil, stanza.Errorf(stanza.NotAcceptable, "name longer than %d characters", m.maxLength())
	}
	seen := map[string]bool{}
	for _, g := range x.Groups {
		if g == "" {
			return nil, stanza.NotAcceptable.WithText("empty group name")
		}
		if utf8.RuneCountInString(g) > m.maxLength() {
			return nil, stanza.Errorf(stanza.NotAcceptable, "group name longer than %d characters", m.maxLength())
		}
		if seen[g] {
			return nil, stanza.BadRequest.WithText("duplicate group")
		}
		seen[g] = true
	}
	if len(x.Groups) > 64 {
		return nil, stanza.NotAcceptable.WithText("too many groups")
	}
	defer m.lock(user)()
	it, err := m.Store.RosterItem(ctx, user.String(), contact.String())
	switch {
	case errors.Is(err, storage.ErrNotFound):
		items, _, err := m.Store.Roster(ctx, user.String())
		if err != nil {
			return nil, err
		}
		if len(items) >= m.maxItems() {
			return nil, stanza.Errorf(stanza.NotAllowed, "roster is full (%d items)", m.maxItems())
		}
		it = storage.RosterItem{JID: contact.String(), Subscription: storage.SubNone}
	case err != nil:
		return nil, err
	}
	// Only the handle and groups are the client's to set; subscription
	// state changes only through presence (RFC 6121 2.1.2.5).
	it.Name = x.Name
	it.Groups = x.Groups
	if pendingOnly(it) {
		// Adding a contact who asked to subscribe: make the item visible.
		it.Name = contact.Localpart()
		if it.Name == "" {
			it.Name = contact.String()
		}
		if x.Name != "" {
			it.Name = x.Name
		}
	}
	ver, err := m.Store.PutRosterItem(ctx, user.String(), it)
	if err != nil {
		return nil, err
	}
	m.Push(ctx, user, it, ver, false)
	return nil, nil
}

// remove deletes a contact and cancels subscriptions both ways (RFC 6121
// 2.5.2).
func (m *Module) remove(ctx context.Context, user, contact jid.JID) error {
	unlock := m.lock(user)
	it, err := m.Store.RosterItem(ctx, user.String(), contact.String())
	if errors.Is(err, storage.ErrNotFound) {
		unlock()
		return stanza.ItemNotFound
	}
	if err != nil {
		unlock()
		return err
	}
	st := StateOf(it)
	ver, err := m.Store.DeleteRosterItem(ctx, user.String(), contact.String())
	unlock()
	if err != nil {
		return err
	}
	if st.Sub == storage.SubTo || st.Sub == storage.SubBoth || st.PendingOut {
		m.sendFromUser(ctx, user, contact, "unsubscribe")
	}
	if st.Sub == storage.SubFrom || st.Sub == storage.SubBoth || st.PendingIn {
		m.sendFromUser(ctx, user, contact, "unsubscribed")
	}
	m.Push(ctx, user, storage.RosterItem{JID: contact.String()}, ver, true)
	return nil
}

// AppendItem appends the XML of a roster item as a client sees it.
func AppendItem(b []byte, it storage.RosterItem) []byte {
	b = append(b, "<item jid='"...)
	b = treff.AppendEscaped(b, it.JID)
	b = append(b, '\'')
	if it.Name != "" {
		b = append(b, " name='"...)
		b = treff.AppendEscaped(b, it.Name)
		b = append(b, '\'')
	}
	sub := it.Subscription
	if sub == "" {
		sub = storage.SubNone
	}
	b = append(b, " subscription='"...)
	b = append(b, sub...)
	b = append(b, '\'')
	if it.PendingOut {
		b = append(b, " ask='subscribe'"...)
	}
	if len(it.Groups) == 0 {
		return append(b, "/>"...)
	}
	b = append(b, '>')
	for _, g := range it.Groups {
		b = append(b, "<group>"...)
		b = treff.AppendEscaped(b, g)
		b = append(b, "</group>"...)
	}
	return append(b, "</item>"...)
}

// Push sends a roster push for item to every session of user that has
// requested the roster (RFC 6121 2.1.6). removed pushes
// subscription='remove'.
func (m *Module) Push(ctx context.Context, user jid.JID, it storage.RosterItem, ver string, removed bool) {
	var id [6]byte
	rand.Read(id[:])
	var item []byte
	if removed {
		item = []byte("<item jid='")
		item = treff.AppendEscaped(item, it.JID)
		item = append(item, "' subscription='remove'/>"...)
	} else {
		item = AppendItem(nil, it)
	}
	for _, s := range m.srv.Sessions(user) {
		if ok, _ := m.interested.Get(s); !ok && s.Shared(NS) == "" {
			continue
		}
		b := []byte("<iq type='set' id='push-" + hex.EncodeToString(id[:]) + "' to='")
		b = treff.AppendEscaped(b, s.JID().String())
		b = append(b, "'><query xmlns='"+NS+"' ver='"...)
		b = treff.AppendEscaped(b, ver)
		b = append(b, "'>"...)
		b = append(b, item...)
		b = append(b, "</query></iq>"...)
		s.Send(b)
	}
}
