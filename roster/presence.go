package roster

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/storage"
)

// presenceState is what the module remembers of one session.
type presenceState struct {
	mu       sync.Mutex
	last     *treff.Stanza      // last broadcast available presence, nil if unavailable
	directed map[string]jid.JID // directed presence recipients (RFC 6121 4.6)
	initial  bool               // initial presence seen
}

// state returns what the module remembers of s, made on first use. Once
// the session has ended it returns an empty state that nobody keeps.
// last returns the last available presence s broadcast, or nil: for a
// session on another node of a cluster, the one its node announced.
func (m *Module) last(s *treff.Session) *treff.Stanza {
	if s.Remote() {
		return s.Presence()
	}
	ps := m.state(s)
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.last
}

func (m *Module) state(s *treff.Session) *presenceState {
	if ps, ok := m.presence.Get(s); ok {
		return ps
	}
	ps := m.presence.Update(s, func(old *presenceState, ok bool) *presenceState {
		if ok {
			return old
		}
		return &presenceState{}
	})
	if ps == nil {
		return &presenceState{}
	}
	return ps
}

func (m *Module) setupSubscriptions(r *treff.Registry) {
	r.OnClientStanza(m.outbound)
	r.OnAccountStanza(m.inbound)
	r.OnSessionClosed(m.closed)
}

func isSubscription(typ string) bool {
	switch typ {
	case "subscribe", "subscribed", "unsubscribe", "unsubscribed":
		return true
	}
	return false
}

// route builds and routes a presence stanza.
func (m *Module) routePresence(ctx context.Context, from, to jid.JID, typ string) {
	b := []byte("<presence from='")
	b = treff.AppendEscaped(b, from.String())
	b = append(b, "' to='"...)
	b = treff.AppendEscaped(b, to.String())
	b = append(b, '\'')
	if typ != "" {
		b = append(b, " type='"...)
		b = append(b, typ...)
		b = append(b, '\'')
	}
	b = append(b, "/>"...)
	st, err := treff.NewStanza(b)
	if err != nil {
		m.srv.Log().Error("roster: bad presence built", "err", err)
		return
	}
	m.srv.Route(ctx, st)
}

// sendFromUser routes a subscription stanza from the user's bare JID.
func (m *Module) sendFromUser(ctx context.Context, user, contact jid.JID, typ string) {
	m.routePresence(ctx, user, contact, typ)
}

// item returns the user's roster item for contact, or a fresh one.
func (m *Module) item(ctx context.Context, user, contact jid.JID) (storage.RosterItem, bool, error) {
	it, err := m.Store.RosterItem(ctx, user.String(), contact.String())
	if errors.Is(err, storage.ErrNotFound) {
		return storage.RosterItem{JID: contact.String(), Subscription: storage.SubNone}, false, nil
	}
	return it, err == nil, err
}

// pendingOnly reports an item that exists only to remember an unanswered
// inbound subscription request. Such items are not shown to clients: RFC
// 6121 3.1.3 keeps pending requests out of the roster until approved.
func pendingOnly(it storage.RosterItem) bool {
	return it.PendingIn && !it.PendingOut && !it.Approved && it.Subscription == storage.SubNone &&
		it.Name == "" && len(it.Groups) == 0
}

// empty reports an item with no subscription, request or approval that
// the user never named or grouped.
func empty(it storage.RosterItem) bool {
	return !it.PendingIn && !it.PendingOut && !it.Approved && it.Subscription == storage.SubNone &&
		it.Name == "" && len(it.Groups) == 0
}

// save stores a changed item and pushes it unless clients must not see it.
// wasHidden tells whether clients saw the item before.
func (m *Module) save(ctx context.Context, user jid.JID, it storage.RosterItem, wasHidden bool) {
	if wasHidden && empty(it) {
		// A request the user denied: forget it without a trace.
		if _, err := m.Store.DeleteRosterItem(ctx, user.String(), it.JID); err != nil && !errors.Is(err, storage.ErrNotFound) {
			m.srv.Log().Error("roster: store failed", "user", user.String(), "err", err)
		}
		return
	}
	ver, err := m.Store.PutRosterItem(ctx, user.String(), it)
	if err != nil {
		m.srv.Log().Error("roster: store failed", "user", user.String(), "err", err)
		return
	}
	if !pendingOnly(it) {
		m.Push(ctx, user, it, ver, false)
	}
}

// outbound handles presence a local client sends (RFC 6121 3 and 4).
func (m *Module) outbound(ctx context.Context, st *treff.Stanza) bool {
	if st.Kind != treff.KindPresence {
		return false
	}
	user := st.From.Bare()
	switch {
	case isSubscription(st.Type):
		if st.To.Equal(jid.JID{}) {
			return true // nowhere to go
		}
		contact := st.To.Bare()
		m.outboundSubscription(ctx, user, contact, st.Type)
		return true
	case st.Type == "probe" || st.Type == "error":
		// Clients do not probe (RFC 6121 4.3); errors go as addressed.
		return st.Type == "probe"
	case st.To.Equal(jid.JID{}):
		if s := m.srv.Session(st.From); s != nil {
			m.broadcast(ctx, s, st)
		}
		// Not consumed: other modules (offline delivery, last activity)
		// watch broadcast presence too; the core does nothing more with it.
		return false
	default:
		// Directed presence (RFC 6121 4.6): remember the recipient unless
		// it already gets broadcasts, so that it hears of our logout.
		s := m.srv.Session(st.From)
		if s == nil {
			return false
		}
		ps := m.state(s)
		to := st.To
		if it, ok, _ := m.item(ctx, user, to.Bare()); ok && (it.Subscription == storage.SubFrom || it.Subscription == storage.SubBoth) {
			return false
		}
		ps.mu.Lock()
		before := len(ps.directed)
		if st.Type == "unavailable" {
			delete(ps.directed, to.String())
		} else {
			if ps.directed == nil {
				ps.directed = make(map[string]jid.JID)
			}
			ps.directed[to.String()] = to
		}
		if len(ps.directed) != before {
			m.shareDirectedLocked(s, ps)
		}
		ps.mu.Unlock()
		return false
	}
}

// shareDirectedLocked publishes ps's directed presence recipients with
// s's row (treff.SharedDirected), at most MaxSharedDirected of them, when
// the server is a node of a cluster: if s's node dies, another node tells
// them. ps.mu is held, so that two changes publish in their order.
func (m *Module) shareDirectedLocked(s *treff.Session, ps *presenceState) {
	if !m.srv.Clustered() {
		return
	}
	keys := make([]string, 0, len(ps.directed))
	for k := range ps.directed {
		keys = append(keys, k)
	}
	slices.Sort(keys) // the same set publishes the same value
	if len(keys) > m.maxSharedDirected() {
		keys = keys[:m.maxSharedDirected()]
	}
	s.SetShared(treff.SharedDirected, strings.Join(keys, "\n"))
}

func (m *Module) outboundSubscription(ctx context.Context, user, contact jid.JID, typ string) {
	if contact.Equal(user) {
		return
	}
	unlock := m.lock(user)
	it, exists, err := m.item(ctx, user, contact)
	if err != nil {
		unlock()
		m.srv.Log().Error("roster: read failed", "user", user.String(), "err", err)
		return
	}
	before := StateOf(it)
	hidden := !exists || pendingOnly(it)
	next, route := Outbound(before, typ, true)
	if next != before {
		next.Apply(&it)
		m.save(ctx, user, it, hidden)
	}
	unlock()
	if !route {
		return
	}
	// Subscription stanzas go out from the user's bare JID (RFC 6121 3.1.2).
	m.sendFromUser(ctx, user, contact, typ)
	switch typ {
	case "subscribed":
		// The contact now receives the user's presence (RFC 6121 3.1.5).
		m.presenceTo(ctx, user, contact, false)
	case "unsubscribed":
		m.presenceTo(ctx, user, contact, true)
	}
}

// presenceTo sends the current presence of each of the user's available
// sessions (or unavailable) to to.
func (m *Module) presenceTo(ctx context.Context, user, to jid.JID, unavailable bool) {
	for _, s := range m.srv.Sessions(user) {
		last := m.last(s)
		if last == nil {
			continue
		}
		if unavailable {
			m.routePresence(ctx, s.JID(), to, "unavailable")
		} else {
			m.srv.Route(ctx, last.WithAddresses(s.JID(), to))
		}
	}
}

// broadcast handles presence without 'to' (RFC 6121 4.2, 4.4, 4.5).
func (m *Module) broadcast(ctx context.Context, s *treff.Session, st *treff.Stanza) {
	user := st.From.Bare()
	ps := m.state(s)
	ps.mu.Lock()
	initial := !ps.initial && st.Type == ""
	if st.Type == "" {
		ps.initial = true
		ps.last = st
	} else {
		ps.last = nil
	}
	var directed []jid.JID
	if st.Type == "unavailable" {
		for _, j := range ps.directed {
			directed = append(directed, j)
		}
		if len(ps.directed) > 0 {
			ps.directed = nil
			m.shareDirectedLocked(s, ps)
		}
	}
	ps.mu.Unlock()

	items, _, err := m.Store.Roster(ctx, user.String())
	if err != nil {
		m.srv.Log().Error("roster: read failed", "user", user.String(), "err", err)
	}
	for _, it := range items {
		c, err := jid.Parse(it.JID)
		if err != nil {
			continue
		}
		if it.Subscription == storage.SubFrom || it.Subscription == storage.SubBoth {
			m.srv.Route(ctx, st.WithAddresses(st.From, c))
		}
		if initial && (it.Subscription == storage.SubTo || it.Subscription == storage.SubBoth) {
			m.routePresence(ctx, st.From, c, "probe")
		}
	}
	for _, j := range directed {
		m.srv.Route(ctx, st.WithAddresses(st.From, j))
	}
	// The user's own available resources, the sender included, see it.
	for _, o := range m.srv.Sessions(user) {
		if o.Available() || o == s {
			o.Send(st.WithAddresses(st.From, o.JID()).Raw())
		}
	}
	if !initial {
		return
	}
	// The new session learns of the user's other available resources and
	// gets the subscription requests that waited for it (RFC 6121 3.1.3).
	for _, o := range m.srv.Sessions(user) {
		if o == s {
			continue
		}
		if last := m.last(o); last != nil {
			s.Send(last.WithAddresses(o.JID(), s.JID()).Raw())
		}
	}
	for _, it := range items {
		if it.PendingIn {
			c, err := jid.Parse(it.JID)
			if err != nil {
				continue
			}
			b := []byte("<presence from='")
			b = treff.AppendEscaped(b, c.String())
			b = append(b, "' to='"...)
			b = treff.AppendEscaped(b, s.JID().String())
			b = append(b, "' type='subscribe'/>"...)
			s.Send(b)
		}
	}
}

// closed broadcasts unavailable presence for a session that ends while
// available (RFC 6121 4.5.1: logout or connection loss).
func (m *Module) closed(ctx context.Context, s *treff.Session) {
	ps, ok := m.presence.Get(s)
	if !ok {
		return
	}
	ps.mu.Lock()
	last := ps.last
	directed := ps.directed
	ps.mu.Unlock()
	if last == nil && len(directed) == 0 {
		return
	}
	b := []byte("<presence from='")
	b = treff.AppendEscaped(b, s.JID().String())
	b = append(b, "' type='unavailable'/>"...)
	st, err := treff.NewStanza(b)
	if err != nil {
		return
	}
	// broadcast clears the state's last presence and directed recipients;
	// the state itself goes with the session.
	m.broadcast(ctx, s, st)
}

// inbound handles presence addressed to a local account (RFC 6121 3 and
// 4.3).
func (m *Module) inbound(ctx context.Context, st *treff.Stanza) bool {
	if st.Kind != treff.KindPresence || st.From.Equal(jid.JID{}) {
		return false
	}
	user := st.To.Bare()
	contact := st.From.Bare()
	switch {
	case isSubscription(st.Type):
		if contact.Equal(user) {
			return true
		}
		m.inboundSubscription(ctx, user, contact, st)
		return true
	case st.Type == "probe":
		m.probe(ctx, user, st)
		return true
	}
	return false
}

func (m *Module) inboundSubscription(ctx context.Context, user, contact jid.JID, st *treff.Stanza) {
	unlock := m.lock(user)
	it, exists, err := m.item(ctx, user, contact)
	if err != nil {
		unlock()
		m.srv.Log().Error("roster: read failed", "user", user.String(), "err", err)
		return
	}
	res := Inbound(StateOf(it), st.Type)
	if res.Changed && (exists || !empty(withState(it, res.Next))) {
		res.Next.Apply(&it)
		m.save(ctx, user, it, !exists || pendingOnly(it))
	}
	unlock()
	if res.Deliver {
		// Deliver from the contact's bare JID to all available resources.
		fwd := st.WithAddresses(contact, user)
		for _, s := range m.srv.Sessions(user) {
			if s.Available() {
				s.Send(fwd.WithAddresses(contact, s.JID()).Raw())
			}
		}
	}
	if res.AutoReply != "" {
		m.sendFromUser(ctx, user, contact, res.AutoReply)
		m.presenceTo(ctx, user, contact, false)
	}
}

func withState(it storage.RosterItem, s State) storage.RosterItem {
	s.Apply(&it)
	return it
}

// probe answers a presence probe (RFC 6121 4.3.2).
//
// A prober the user does not share presence with learns nothing but
// "unsubscribed" (RFC 6121 4.3.2): its server thinks it is subscribed,
// so the reply brings the two rosters back in line (A.3.4).
func (m *Module) probe(ctx context.Context, user jid.JID, st *treff.Stanza) {
	it, ok, err := m.item(ctx, user, st.From.Bare())
	if err != nil {
		return
	}
	if !ok || (it.Subscription != storage.SubFrom && it.Subscription != storage.SubBoth) {
		m.routePresence(ctx, user, st.From.Bare(), "unsubscribed")
		return
	}
	sent := false
	for _, s := range m.srv.Sessions(user) {
		if last := m.last(s); last != nil {
			m.srv.Route(ctx, last.WithAddresses(s.JID(), st.From))
			sent = true
		}
	}
	if !sent {
		m.routePresence(ctx, user, st.From, "unavailable")
	}
}
