// Package muc implements XEP-0045 Multi-User Chat as a Treff module: a
// group chat service on a subdomain of each host (conference.example.org)
// where users create rooms by joining them, talk, send private messages
// to each other through the room, and owners configure their rooms.
//
// This first part covers the service and room discovery, joining (with
// instant and configured rooms, members-only and password-protected
// rooms, outcasts, nickname conflicts, the occupant limit), presence
// with the status codes of XEP-0045's tables for entering, leaving and
// changing nickname, history on join, the subject, groupchat and private
// messages, owner configuration (muc#owner) with destruction, and
// persistence of rooms through storage.Rooms, role and affiliation changes
// (kick, ban, voice, membership, lists) through muc#admin, and mediated
// invitations, which make the invitee a member of a members-only room.
//
// For communities: several sessions of one account share a nickname
// (one occupant to the others, every message to each session), every
// presence and message carries an XEP-0421: Occupant identifiers for
// semi-anonymous MUCs (version 1.0.1) occupant-id, and live rooms are
// stored when the server stops, to be there after it starts again
// (temporary ones for Module.KeepTemporary): the sessions that end as the
// server stops do not take their users out of the rooms, and Stop stores
// every live room that is not being set up with its configuration,
// affiliations, subject, occupant-id secret and recent history. A kept
// temporary room is there after the start as it was, ends as temporary
// rooms do when its last occupant leaves, and ends at its KeepUntil if
// nobody has entered it by then.
//
// With Module.Archive set, each room also keeps a message archive queried
// at the room's JID: XEP-0313: Message Archive Management (version 1.1.3)
// on group chat rooms, with XEP-0359: Unique and Stable Stanza IDs
// (version 0.7.0) on the messages the room sends. Moderators then retract
// messages by their stanza-ids (XEP-0425: Moderated Message Retraction,
// version 0.3.0) and authors their own (XEP-0424: Message Retraction,
// version 0.4.1), leaving tombstones in the archive (moderation.go). Rooms
// have vCards with avatars set by their owners (XEP-0486: MUC Avatars,
// version 0.1.0; avatar.go).
//
// No lock of the module or of a room is held while calling storage or
// routing a stanza: rooms are looked up per room JID (one store call per
// room at a time, "no such room" remembered until the room is created),
// and a room queues under its lock what it sends and stores, to be
// carried out in order after the lock (see the room type).
package muc

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/discoinfo"
	"github.com/treff-im/treff/internal/logevery"
	"github.com/treff-im/treff/mam"
	"github.com/treff-im/treff/stanza"
	"github.com/treff-im/treff/storage"
)

// Namespaces of XEP-0045.
const (
	NS      = "http://jabber.org/protocol/muc"
	NSUser  = NS + "#user"
	NSOwner = NS + "#owner"
	NSAdmin = NS + "#admin"
)

// Module is the group chat service.
type Module struct {
	// Subdomain is the label put before each host's domain to name its
	// service. "" means "conference".
	Subdomain string
	// Store keeps persistent rooms. nil means the server's Storage if it
	// implements storage.Rooms; without one, rooms live in memory only.
	Store storage.Rooms
	// CreatorDomains are the domains whose users may create rooms. nil
	// means the server's hosts: users of other servers cannot create
	// rooms.
	CreatorDomains []string
	// Creators, if not empty, are the only bare JIDs that may create
	// rooms (e.g. the server's admins).
	Creators []string
	// MaxOccupants is the most occupants of a room. 0 means 200.
	MaxOccupants int
	// MaxNick is the longest nickname, in characters. 0 means 64.
	MaxNick int
	// MaxHistory is how many messages a room keeps for new occupants. 0
	// means 20.
	MaxHistory int
	// MaxMessage is the largest groupchat message, in bytes. 0 means
	// 64 KiB.
	MaxMessage int
	// MaxRoomsPerUser is the most rooms one user may own. 0 means 20.
	MaxRoomsPerUser int
	// Archive, if not nil, keeps a message archive for each room
	// (XEP-0313 on room JIDs), which its owners may turn off in the room
	// configuration: groupchat messages and subject changes, from the
	// occupants' room JIDs, stamped with XEP-0359 stanza-ids by the room.
	// Its Store nil means the server's Storage, which must then implement
	// storage.Archive; its Retention, if set, starts a retention job
	// (store-wide: unneeded when a mam.Module with a Retention uses the
	// same store).
	Archive *mam.Archiver
	// MaxQueueBytes bounds, in bytes, what one room has waiting to be
	// routed and stored (behind a slow store or a full disk, say): its
	// stanzas and archive writes, plus 64 bytes each. A room whose queue
	// is full refuses messages and joins with <resource-constraint/>
	// (type wait) until it drains. 0 means DefaultMaxQueueBytes.
	MaxQueueBytes int
	// Blocklist, if set, keeps the JIDs it blocks (the server's block list
	// and real-time block lists, package abuse) out of public rooms:
	// joining one gets <forbidden/> unless the room made them a member,
	// admin or owner.
	Blocklist interface{ Blocked(jid.JID) bool }
	// MaxRetractable is how many of each room's latest archived messages
	// the room remembers the authors of, so that an author's retraction
	// (XEP-0424) leaves a tombstone in the archive. 0 means
	// DefaultMaxRetractable. See moderation.go.
	MaxRetractable int
	// VCards keeps the rooms' vCards and avatars (XEP-0486). nil means
	// the server's Storage if it implements storage.PrivateXML; without
	// one, rooms have no vCards.
	VCards storage.PrivateXML
	// MaxVCardSize is the largest room vCard, in bytes. 0 means
	// DefaultMaxVCardSize (256 KiB).
	MaxVCardSize int
	// KeepTemporary is how long a temporary room that had occupants when
	// the server stopped is kept after the next start for them to come
	// back: it ends then if nobody has entered it. 0 means
	// DefaultKeepTemporary (24 hours); negative: temporary rooms end when
	// the server stops, as when their last occupant leaves. Persistent
	// rooms are always kept, with their recent history.
	KeepTemporary time.Duration
	// SaveHistory, if positive, is how long after a new message a
	// persistent room stores its recent history (at most one store per
	// room per SaveHistory), so that the history survives a crash of the
	// server, or of the cluster node holding the room. 0 means the
	// history is stored only when the server stops.
	SaveHistory time.Duration
	// Placement, in a cluster, takes the stanzas for rooms that another
	// node owns to that node (see cluster.go). nil means every room is
	// here.
	Placement Placement

	keepMu     sync.Mutex
	keepTimers map[string]*time.Timer // ends of the rooms kept over the restart

	// A room's archive failing for every message is logged once a minute.
	logArchive logevery.Limiter

	srv      *treff.Server
	services map[string]bool // service domains

	// mu guards the three maps below and nothing else: it is never held
	// while calling storage or routing (see "Locking" in room.go).
	mu      sync.Mutex
	rooms   map[string]*room     // live rooms by bare room JID
	loading map[string]*roomLoad // lookups in the store under way, by bare room JID
	missing map[string]time.Time // rooms the store said it lacks, and when
}

var (
	_ treff.Module  = (*Module)(nil)
	_ treff.Stopper = (*Module)(nil)
)

// Name implements treff.Module.
func (m *Module) Name() string { return "muc" }

// Setup implements treff.Module.
func (m *Module) Setup(ctx context.Context, r *treff.Registry) error {
	m.srv = r.Server()
	if m.Store == nil {
		m.Store, _ = m.srv.Storage.(storage.Rooms)
	}
	if m.VCards == nil {
		m.VCards, _ = m.srv.Storage.(storage.PrivateXML)
	}
	sub := m.Subdomain
	if sub == "" {
		sub = "conference"
	}
	m.services = make(map[string]bool)
	m.init()
	for _, h := range m.srv.Hosts {
		d := sub + "." + h.Domain
		m.services[d] = true
		r.HandleDomain(d, treff.StanzaHandlerFunc(m.handle))
		r.AddItem(discoinfo.Item{JID: d, Name: "Group chat"})
	}
	if m.CreatorDomains == nil {
		for _, h := range m.srv.Hosts {
			m.CreatorDomains = append(m.CreatorDomains, h.Domain)
		}
	}
	r.OnSessionClosed(m.sessionClosed)
	if a := m.Archive; a != nil {
		var err error
		if a.Store, err = storage.Require(a.Store, m.srv.Storage, "muc"); err != nil {
			return err
		}
		a.StartRetention(m.srv)
		// A room archive's results went to the session that asked.
		r.OnUnacked(mam.IsResult)
	}
	m.restoreKept(ctx)
	if p, ok := m.Placement.(interface{ Ready() }); ok {
		p.Ready() // the services and the store are known now
	}
	return nil
}

// Stop implements treff.Stopper: it stores the live rooms for the next
// start (see the package documentation) and ends the archive's
// retention job.
func (m *Module) Stop(ctx context.Context) error {
	if m.srv == nil {
		return nil // Setup did not run
	}
	m.stopKeepTimers()
	m.stopHistoryTimers()
	err := m.keepRooms(ctx)
	if err != nil {
		m.srv.Log().Error("muc: storing the rooms at the stop failed", "err", err)
	}
	if m.Archive == nil {
		return err
	}
	return errors.Join(err, m.Archive.StopRetention(ctx))
}

func (m *Module) maxOccupants() int  { return or(m.MaxOccupants, 200) }
func (m *Module) maxNick() int       { return or(m.MaxNick, 64) }
func (m *Module) maxHistory() int    { return or(m.MaxHistory, 20) }
func (m *Module) maxQueueBytes() int { return or(m.MaxQueueBytes, DefaultMaxQueueBytes) }

// DefaultMaxQueueBytes is the bound of a room's queue when
// Module.MaxQueueBytes is 0.
const DefaultMaxQueueBytes = 4 << 20

func (m *Module) maxMessage() int { return or(m.MaxMessage, 64<<10) }
func (m *Module) maxRooms() int   { return or(m.MaxRoomsPerUser, 20) }

// ownedRooms counts the rooms of a service the user owns, live and
// stored.
func (m *Module) ownedRooms(ctx context.Context, user jid.JID, service string) int {
	owner := user.Bare().String()
	seen := map[string]bool{}
	n := 0
	m.mu.Lock()
	for k, r := range m.rooms {
		if r.jid.Domainpart() != service {
			continue
		}
		conf, _ := r.snapshot()
		seen[k] = true
		if !r.gone.Load() && conf.Affiliations[owner] == storage.AffOwner {
			n++
		}
	}
	m.mu.Unlock()
	if m.Store != nil {
		stored, _ := m.Store.ListRooms(ctx, service)
		for _, r := range stored {
			if !seen[r.JID] && r.Affiliations[owner] == storage.AffOwner {
				n++
			}
		}
	}
	return n
}

func or(v, def int) int {
	if v <= 0 {
		return def
	}
	return v
}

// handle receives every stanza for a service domain.
func (m *Module) handle(ctx context.Context, st *treff.Stanza) {
	if m.Placement != nil && st.To.Localpart() != "" && m.Placement.Elsewhere(ctx, st) {
		return
	}
	m.handleHere(ctx, st)
}

func (m *Module) handleHere(ctx context.Context, st *treff.Stanza) {
	switch {
	case st.To.Localpart() == "":
		m.service(ctx, st)
	case st.Kind == treff.KindPresence:
		m.presence(ctx, st)
	case st.Kind == treff.KindMessage:
		m.message(ctx, st)
	default:
		m.roomIQ(ctx, st)
	}
}

// send routes raw XML as a stanza; nil is nothing to send.
func (m *Module) send(ctx context.Context, raw []byte) {
	if raw == nil {
		return
	}
	st, err := treff.NewStanza(raw)
	if err != nil {
		m.srv.Log().Error("muc: built a bad stanza", "err", err)
		return
	}
	m.srv.Route(ctx, st)
}

// fail answers st with an error, unless it is an error itself.
func (m *Module) fail(ctx context.Context, st *treff.Stanza, e error) {
	m.send(ctx, errorReply(st, e))
}

// failJoin refuses a join.
func (m *Module) failJoin(ctx context.Context, st *treff.Stanza, e error) {
	m.send(ctx, joinErrorReply(st, e))
}

// errorReply is the error answer to st; nil if st is an error itself or
// has no sender.
func errorReply(st *treff.Stanza, e error) []byte {
	if st.Type == "error" || st.From.Equal(jid.JID{}) {
		return nil
	}
	return treff.AppendError(nil, st, e)
}

// joinErrorReply is the refusal of a join: the error presence carries the
// MUC element back, which clients use to tell a refused join from other
// errors (XEP-0045 7.2).
func joinErrorReply(st *treff.Stanza, e error) []byte {
	if st.From.Equal(jid.JID{}) {
		return nil
	}
	b := treff.AppendError(nil, st, e)
	if i := strings.Index(string(b), "<error"); i >= 0 {
		b = []byte(string(b[:i]) + "<x xmlns='" + NS + "'/>" + string(b[i:]))
	}
	return b
}

func (m *Module) init() {
	m.rooms = make(map[string]*room)
	m.loading = make(map[string]*roomLoad)
	m.missing = make(map[string]time.Time)
}

// The negative cache: how long the store's "no such room" is believed
// (the room's creation here forgets it at once; the time bounds what a
// store written by others may show), and how many such answers are kept
// (anyone can ask for any number of rooms that do not exist).
const (
	missingFor = time.Minute
	maxMissing = 10000
)

// roomLoad is one lookup of a room in the store, shared by everyone who
// asks for that room while it runs.
type roomLoad struct {
	done chan struct{} // closed when r and err are set
	r    *room
	err  error
}

// room returns the live room with the given JID, loading a persistent one
// from the store; nil and no error if there is no such room, or if it has
// ended (destroyed, or emptied) and waits to be forgotten. An error means
// the store could not say.
//
// Lookups of one room share one call to the store; lookups of other rooms
// never wait for it (no lock is held during the call), and a room the
// store lacks is not asked for again for a while (missingFor), or until
// it is created here.
func (m *Module) room(ctx context.Context, roomJID jid.JID) (*room, error) {
	key := roomJID.Bare().String()
	m.mu.Lock()
	if r := m.rooms[key]; r != nil {
		m.mu.Unlock()
		if r.gone.Load() {
			return nil, nil
		}
		return r, nil
	}
	if m.Store == nil {
		m.mu.Unlock()
		return nil, nil
	}
	if at, ok := m.missing[key]; ok {
		if time.Since(at) < missingFor {
			m.mu.Unlock()
			return nil, nil
		}
		delete(m.missing, key)
	}
	if l := m.loading[key]; l != nil {
		m.mu.Unlock()
		select {
		case <-l.done:
			return l.r, l.err
		case <-ctx.Done():
			return nil, fmt.Errorf("muc: waiting for room %s: %w", key, ctx.Err())
		}
	}
	l := &roomLoad{done: make(chan struct{})}
	m.loading[key] = l
	m.mu.Unlock()

	// Shared by the others waiting: not ended by this caller's context.
	stored, err := m.Store.Room(context.WithoutCancel(ctx), key)

	m.mu.Lock()
	delete(m.loading, key)
	switch {
	case m.rooms[key] != nil:
		// Created meanwhile (by someone who stopped waiting).
		l.r = m.rooms[key]
	case err == nil:
		l.r = newRoom(m, roomJID.Bare(), stored)
		l.r.kept = !stored.Persistent && !stored.KeepUntil.IsZero()
		m.rooms[key] = l.r
	case errors.Is(err, storage.ErrNotFound):
		if len(m.missing) >= maxMissing {
			for k := range m.missing {
				delete(m.missing, k) // any one
				break
			}
		}
		m.missing[key] = time.Now()
	default:
		l.err = fmt.Errorf("muc: loading room %s: %w", key, err)
	}
	m.mu.Unlock()
	close(l.done)
	if l.err != nil {
		m.srv.Log().Error("muc: loading a room failed", "room", key, "err", err)
	}
	if err == nil && l.r != nil && len(stored.OccupantIDKey) == 0 {
		// A room stored before occupant-ids keeps the secret it got.
		l.r.mu.Lock()
		l.r.save()
		l.r.unlock(ctx)
	}
	return l.r, l.err
}

// create makes a new, locked room owned by creator, unless a live room
// has that JID: then it returns that one, and false. A room of that JID
// that has ended is first waited for, so that the new room starts after
// the old one's archive and stored state are gone.
func (m *Module) create(ctx context.Context, roomJID jid.JID, creator jid.JID) (*room, bool, error) {
	key := roomJID.Bare().String()
	for {
		m.mu.Lock()
		old := m.rooms[key]
		if old == nil {
			break
		}
		m.mu.Unlock()
		if !old.gone.Load() {
			return old, false, nil
		}
		select {
		case <-old.ended:
		case <-ctx.Done():
			return nil, false, fmt.Errorf("muc: waiting for room %s to end: %w", key, ctx.Err())
		}
	}
	defer m.mu.Unlock()
	delete(m.missing, key)
	r := newRoom(m, roomJID.Bare(), storage.Room{
		JID:          key,
		Public:       true,
		Affiliations: map[string]storage.Affiliation{creator.Bare().String(): storage.AffOwner},
		Created:      time.Now().UTC(),
	})
	r.locked = true
	m.rooms[key] = r
	return r, true, nil
}

// forget ends a room that is gone: its archive is deleted (a new room of
// that name must not inherit it), and its stored state if fromStore, and
// then it leaves the module's map. It is the room's last step.
func (m *Module) forget(ctx context.Context, r *room, fromStore bool) {
	m.deleteArchive(ctx, r)
	m.deleteVCard(ctx, r)
	if fromStore && m.Store != nil {
		if err := m.Store.DeleteRoom(ctx, r.jid.String()); err != nil {
			m.srv.Log().Error("muc: deleting a room failed", "room", r.jid.String(), "err", err)
		}
	}
	m.mu.Lock()
	if m.rooms[r.jid.String()] == r {
		delete(m.rooms, r.jid.String())
	}
	m.mu.Unlock()
	close(r.ended)
}

func (m *Module) mayCreate(user jid.JID) bool {
	if len(m.Creators) > 0 {
		for _, c := range m.Creators {
			if j, err := jid.Parse(c); err == nil && j.Bare().Equal(user.Bare()) {
				return true
			}
		}
		return false
	}
	for _, d := range m.CreatorDomains {
		if user.Domainpart() == d {
			return true
		}
	}
	return false
}

// sessionClosed takes a user whose session ended out of every room,
// unless the server stops: the rooms are then kept as they are, to be
// stored by Stop.
func (m *Module) sessionClosed(ctx context.Context, s *treff.Session) {
	if m.srv.Closing() {
		return
	}
	m.mu.Lock()
	var rooms []*room
	for _, r := range m.rooms {
		rooms = append(rooms, r)
	}
	m.mu.Unlock()
	for _, r := range rooms {
		r.leave(ctx, s.JID(), "", true)
	}
}

// service answers stanzas to the service itself: disco info and items.
func (m *Module) service(ctx context.Context, st *treff.Stanza) {
	if st.Kind != treff.KindIQ || (st.Type != "get" && st.Type != "set") {
		if st.Kind == treff.KindMessage || st.Kind == treff.KindIQ {
			m.fail(ctx, st, stanza.ServiceUnavailable)
		}
		return
	}
	switch {
	case st.Type == "get" && st.Payload.Space == nsDiscoInfo:
		m.send(ctx, treff.AppendResult(nil, st, []byte("<query xmlns='"+nsDiscoInfo+"'><identity category='conference' type='text' name='Group chat'/>"+
			"<feature var='"+NS+"'/><feature var='"+nsDiscoInfo+"'/><feature var='"+nsDiscoItems+"'/></query>")))
	case st.Type == "get" && st.Payload.Space == nsDiscoItems:
		b := []byte("<query xmlns='" + nsDiscoItems + "'>")
		for _, r := range m.publicRooms(ctx, st.To.Domainpart()) {
			b = append(b, "<item jid='"...)
			b = treff.AppendEscaped(b, r.JID)
			if r.Name != "" {
				b = append(b, "' name='"...)
				b = treff.AppendEscaped(b, r.Name)
			}
			b = append(b, "'/>"...)
		}
		m.send(ctx, treff.AppendResult(nil, st, append(b, "</query>"...)))
	default:
		m.fail(ctx, st, stanza.ServiceUnavailable)
	}
}

// publicRooms lists the public, unlocked rooms of a service, in memory
// and stored.
func (m *Module) publicRooms(ctx context.Context, service string) []storage.Room {
	seen := map[string]bool{}
	var out []storage.Room
	m.mu.Lock()
	for _, r := range m.rooms {
		if r.jid.Domainpart() == service {
			conf, locked := r.snapshot()
			seen[conf.JID] = true
			if conf.Public && !locked && !r.gone.Load() {
				out = append(out, conf)
			}
		}
	}
	m.mu.Unlock()
	if m.Store != nil {
		stored, err := m.Store.ListRooms(ctx, service)
		if err != nil {
			m.srv.Log().Error("muc: listing rooms failed", "err", err)
		}
		for _, r := range stored {
			if !seen[r.JID] && r.Public {
				out = append(out, r)
			}
		}
	}
	return out
}

const (
	nsDiscoInfo  = "http://jabber.org/protocol/disco#info"
	nsDiscoItems = "http://jabber.org/protocol/disco#items"
	nsDelay      = "urn:xmpp:delay"
)

// presence handles presence to room/nick: entering, changing nickname or
// presence, leaving.
func (m *Module) presence(ctx context.Context, st *treff.Stanza) {
	if m.srv.Closing() {
		// The server stops: the unavailable presence it sends for the
		// ending sessions (to where they sent directed presence) must not
		// empty the rooms, which Stop keeps for the next start.
		return
	}
	if st.Type == "error" {
		// An occupant's client bounced something: it is gone (XEP-0045
		// 18.1). The error may come back while the room sends (no lock
		// held then: see room), so the room takes it at once.
		if r, _ := m.room(ctx, st.To); r != nil {
			r.leave(ctx, st.From, "", true)
		}
		return
	}
	nick := st.To.Resourcepart()
	if st.Type == "unavailable" {
		if r, _ := m.room(ctx, st.To); r != nil {
			r.leave(ctx, st.From, statusText(st), false)
		}
		return
	}
	if st.Type != "" {
		return // subscriptions and probes mean nothing to a room
	}
	if nick == "" {
		m.failJoin(ctx, st, stanza.JIDMalformed.WithText("a nickname is required"))
		return
	}
	if len([]rune(nick)) > m.maxNick() {
		m.failJoin(ctx, st, stanza.Errorf(stanza.NotAcceptable, "nicknames have at most %d characters", m.maxNick()))
		return
	}
	// A room that ends while one enters it is made anew; a few times at
	// most, should that keep happening.
	for range 3 {
		r, err := m.room(ctx, st.To)
		if err != nil {
			m.failJoin(ctx, st, stanza.Error{Type: stanza.Wait, Condition: stanza.InternalServerError, Text: "the room cannot be read now"})
			return
		}
		created := false
		if r == nil {
			if !m.mayCreate(st.From) {
				text := "only users of this server may create rooms"
				if len(m.Creators) > 0 {
					text = "only some users of this server may create rooms"
				}
				m.failJoin(ctx, st, stanza.NotAllowed.WithText(text))
				return
			}
			if m.ownedRooms(ctx, st.From, st.To.Domainpart()) >= m.maxRooms() {
				m.failJoin(ctx, st, stanza.Errorf(stanza.ResourceConstraint, "you own as many rooms as one may (%d)", m.maxRooms()))
				return
			}
			if r, created, err = m.create(ctx, st.To, st.From); err != nil {
				return // the sender's session ended
			}
		}
		if r.enter(ctx, st, nick, created) {
			return
		}
	}
	m.failJoin(ctx, st, stanza.Error{Type: stanza.Wait, Condition: stanza.ServiceUnavailable, Text: "the room is being replaced; try again"})
}

func statusText(st *treff.Stanza) string {
	in := st.Inner()
	i := strings.Index(in, "<status>")
	if i < 0 {
		return ""
	}
	j := strings.Index(in[i:], "</status>")
	if j < 0 {
		return ""
	}
	return in[i : i+j+len("</status>")]
}

// message handles groupchat messages to a room and private messages to an
// occupant.
func (m *Module) message(ctx context.Context, st *treff.Stanza) {
	r, err := m.room(ctx, st.To)
	if err != nil {
		m.fail(ctx, st, stanza.InternalServerError)
		return
	}
	if r == nil {
		m.fail(ctx, st, stanza.ItemNotFound.WithText("no such room"))
		return
	}
	if len(st.Raw()) > m.maxMessage() {
		m.fail(ctx, st, stanza.Errorf(stanza.NotAcceptable, "messages have at most %d bytes", m.maxMessage()))
		return
	}
	if st.Type == "error" {
		return
	}
	if st.To.Resourcepart() == "" {
		if st.Type != "groupchat" && (r.invite(ctx, st) || r.voice(ctx, st)) {
			return
		}
		r.groupchat(ctx, st)
		return
	}
	r.private(ctx, st)
}

// roomIQ handles IQs to a room: owner configuration and disco.
func (m *Module) roomIQ(ctx context.Context, st *treff.Stanza) {
	if st.Type != "get" && st.Type != "set" {
		if r, _ := m.room(ctx, st.To); r != nil && st.To.Resourcepart() != "" {
			r.iqResponse(ctx, st)
		}
		return
	}
	r, err := m.room(ctx, st.To)
	if err != nil {
		m.fail(ctx, st, stanza.InternalServerError)
		return
	}
	if r == nil {
		m.fail(ctx, st, stanza.ItemNotFound.WithText("no such room"))
		return
	}
	if st.To.Resourcepart() != "" {
		r.occupantIQ(ctx, st)
		return
	}
	switch st.Payload.Space {
	case NSOwner:
		r.ownerIQ(ctx, st)
	case NSAdmin:
		r.adminIQ(ctx, st)
	case nsDiscoInfo:
		r.discoInfo(ctx, st)
	case nsDiscoItems:
		r.discoItems(ctx, st)
	case mam.NS:
		r.mamIQ(ctx, st)
	case NSModerate:
		r.moderateIQ(ctx, st)
	case nsVCard:
		r.vcardIQ(ctx, st)
	default:
		m.fail(ctx, st, stanza.ServiceUnavailable)
	}
}
