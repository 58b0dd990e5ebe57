package muc

import (
	"context"
	"strconv"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
)

// Rooms in a cluster. Each node of a cluster (package cluster) runs a
// Module for the same service domains; one node at a time owns a room
// and holds it in memory. A Placement, set in Module.Placement, sees
// every stanza to a room before the module does and takes to the owner
// node those for rooms owned elsewhere; the owner handles them with
// Module.Handle. The owner's stanzas to occupants on other nodes go
// through the cluster's routing table like any other.

// Placement decides which node of a cluster handles a room.
type Placement interface {
	// Elsewhere is called with every stanza to a room JID (its To has a
	// localpart) before the module handles it. It reports true if it
	// took the stanza elsewhere (to the node that owns the room, or
	// answered it with an error), false if this node handles it.
	Elsewhere(ctx context.Context, st *treff.Stanza) bool
}

// A Placement with a method Ready() has it called at the end of the
// module's Setup, once its service domains and store are known: stanzas
// other nodes forward may arrive before.

// Handle handles a stanza for the service or one of its rooms on this
// node, without asking Module.Placement: for the node that owns the room,
// with the stanzas other nodes forwarded to it.
func (m *Module) Handle(ctx context.Context, st *treff.Stanza) {
	m.handleHere(ctx, st)
}

// Prune takes the sessions that gone reports out of every live room of
// this node, as if each had ended (the others see it leave): for the
// occupants of a node of the cluster that died, whose sessions' ends
// this node is not told of.
func (m *Module) Prune(ctx context.Context, gone func(real jid.JID) bool) int {
	m.mu.Lock()
	rooms := make([]*room, 0, len(m.rooms))
	for _, r := range m.rooms {
		rooms = append(rooms, r)
	}
	m.mu.Unlock()
	n := 0
	for _, r := range rooms {
		var out []jid.JID
		r.mu.Lock()
		for _, o := range r.order {
			for _, s := range o.sessions {
				if gone(s.real) {
					out = append(out, s.real)
				}
			}
		}
		r.mu.Unlock()
		for _, real := range out {
			r.leave(ctx, real, "", true)
		}
		n += len(out)
	}
	return n
}

// Owns reports whether the room is live on this node (in memory: entered
// or looked up since it was loaded or created).
func (m *Module) Owns(roomJID jid.JID) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.rooms[roomJID.Bare().String()]
	return r != nil && !r.gone.Load()
}

// IsService reports whether domain is one of the module's service
// domains.
func (m *Module) IsService(domain string) bool { return m.services[domain] }

// ShutdownPresence is the presence that tells the occupant at dest,
// entered as nick in the room, that it was removed from the room because
// the service (the room's node) went down: XEP-0045 status code 332,
// with 110 (it is the occupant's own presence). Clients rejoin after it.
func ShutdownPresence(roomJID jid.JID, nick string, dest jid.JID) []byte {
	from, err := jid.New(roomJID.Localpart(), roomJID.Domainpart(), nick)
	if err != nil {
		from = roomJID.Bare()
	}
	b := []byte("<presence from='")
	b = treff.AppendEscaped(b, from.String())
	b = append(b, "' to='"...)
	b = treff.AppendEscaped(b, dest.String())
	b = append(b, "' type='unavailable'><x xmlns='"+NSUser+"'><item affiliation='none' role='none'/>"...)
	for _, c := range []int{110, 332} {
		b = append(b, "<status code='"...)
		b = strconv.AppendInt(b, int64(c), 10)
		b = append(b, "'/>"...)
	}
	return append(b, "</x></presence>"...)
}

// Claimed tells the module that this node has just become the room's
// owner: what it remembered of the room's absence from the store is
// forgotten, so that the next stanza loads the room another node kept.
func (m *Module) Claimed(roomJID jid.JID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.missing, roomJID.Bare().String())
}

// Release drops the live room from this node without touching its stored
// state or archive: another node of the cluster owns it now (this node
// was cut off, and the others took the room over). Each session of each
// occupant gets its unavailable self-presence with status 332, so that
// its client rejoins, at the new owner. It reports whether the room was
// live here.
func (m *Module) Release(roomJID jid.JID) bool {
	key := roomJID.Bare().String()
	m.mu.Lock()
	r := m.rooms[key]
	m.mu.Unlock()
	if r == nil {
		return false
	}
	r.mu.Lock()
	if r.gone.Swap(true) {
		r.mu.Unlock()
		return false
	}
	if r.histSave != nil {
		r.histSave.Stop()
		r.histSave = nil
	}
	for _, o := range r.order {
		for _, s := range o.sessions {
			left := *o
			left.real, left.inner = s.real, ""
			r.send(r.presenceOf(&left, &left, s.real, "unavailable", "", 110, 332))
		}
	}
	r.order, r.byNick, r.byReal = nil, map[string]*occupant{}, map[string]*occupant{}
	r.later(func(context.Context) {
		m.mu.Lock()
		if m.rooms[key] == r {
			delete(m.rooms, key)
		}
		m.mu.Unlock()
		close(r.ended)
	})
	r.unlock(m.srv.Context())
	return true
}
