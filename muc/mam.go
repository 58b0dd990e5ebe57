package muc

import (
	"context"
	"errors"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/mam"
	"github.com/treff-im/treff/stanza"
	"github.com/treff-im/treff/storage"
)

// Room archives (XEP-0313 on room JIDs). Each room's archive is kept in
// Module.Archive's store under the room's bare JID. It holds the
// groupchat messages with content (a body, an OMEMO payload, a <store/>
// hint) and the subject changes, each as the occupants received it: from
// the occupant's room JID (room@service/nick; the real JID is never
// stored, whatever the room's anonymity), without a 'to'. The room's
// archiving switch (muc#roomconfig_enablearchiving) is kept as the
// archive's XEP-0441 default ("never" when off), so that it lives and
// dies with the archive.

// cfgArchiving is the room configuration field that turns a room's
// archive on and off.
const cfgArchiving = "muc#roomconfig_enablearchiving"

// archiving reports whether the room archives its messages: the service
// has archives, and the room's owners have not turned its archive off
// (if the switch could not be read, it is on: the default). r.mu is held.
func (r *room) archiving() bool {
	return r.m.Archive != nil && r.archive >= 0
}

// loadArchiving reads the room's archiving switch from the store, once;
// a failed read is tried again next time. r.mu is not held.
func (r *room) loadArchiving(ctx context.Context) {
	a := r.m.Archive
	if a == nil {
		return
	}
	r.mu.Lock()
	known := r.archive != 0
	r.mu.Unlock()
	if known {
		return
	}
	p, err := a.Store.ArchivePrefs(ctx, r.jid.String())
	if err != nil {
		r.m.srv.Log().Error("muc: reading a room's archiving setting failed", "room", r.jid.String(), "err", err)
		return
	}
	r.mu.Lock()
	if r.archive == 0 { // not set meanwhile
		r.archive = 1
		if p.Default == storage.ArchiveNever {
			r.archive = -1
		}
	}
	r.mu.Unlock()
}

// setArchiving turns the room's archive on or off, and queues the storing
// of the switch. r.mu is held.
func (r *room) setArchiving(on bool) {
	if r.m.Archive == nil || r.archiving() == on {
		return
	}
	p := storage.ArchivePrefs{Default: storage.ArchiveAlways}
	r.archive = 1
	if !on {
		p.Default, r.archive = storage.ArchiveNever, -1
	}
	r.later(func(ctx context.Context) {
		if err := r.m.Archive.Store.SetArchivePrefs(ctx, r.jid.String(), p); err != nil {
			r.m.srv.Log().Error("muc: storing a room's archiving setting failed", "room", r.jid.String(), "err", err)
		}
	})
}

// prepareGroupchat turns a groupchat message from the occupant o into
// what the room sends: from the occupant's room JID, without 'to',
// without the stanza-ids claiming to be by the room and the occupant-ids
// that the sender put in, with o's occupant-id (XEP-0421). r.mu is held.
func (r *room) prepareGroupchat(st *treff.Stanza, o *occupant) *treff.Stanza {
	out := st.WithAddresses(r.nickJID(o.nick), jid.JID{})
	if clean, ok := mam.WithoutStanzaIDs(out.Raw(), r.jid); ok {
		if c, err := treff.NewStanza(clean); err == nil {
			out = c
		} else {
			r.m.srv.Log().Error("muc: removing a stanza-id failed", "room", r.jid.String(), "err", err)
		}
	}
	if clean, ok := withoutOccupantIDs(out); ok {
		if c, err := treff.NewStanza(clean); err == nil {
			out = c
		} else {
			r.m.srv.Log().Error("muc: removing an occupant-id failed", "room", r.jid.String(), "err", err)
		}
	}
	if err := out.AddChild(appendOccupantID(nil, o.id)); err != nil {
		r.m.srv.Log().Error("muc: adding the occupant-id failed", "room", r.jid.String(), "err", err)
	}
	return out
}

// archiveGroupchat archives a prepared message and stamps it with
// <stanza-id by='room'/> (XEP-0359), returning the stanza-id if it
// stamped it ("" if not), or the archive's error. It runs as a step of the room's queue (r.mu is not
// held), so that the archive keeps the room's order. A failed append is
// logged at most once a minute, without the room's address.
func (r *room) archiveGroupchat(ctx context.Context, out *treff.Stanza, nick string) (string, error) {
	room := r.jid.String()
	id, err := r.m.Archive.Append(ctx, room, storage.ArchivedMessage{
		With:         room,
		WithResource: nick,
		Stanza:       out.Raw(),
	})
	if err != nil {
		if ok, n := r.m.logArchive.Allow(time.Now()); ok {
			r.m.srv.Log().Error("muc: archiving a room's message failed; messages are refused with an error to their senders", "err", err, "failures", n+1)
		}
		return "", err
	}
	if err := out.AddChild(mam.AppendStanzaID(nil, room, id)); err != nil {
		r.m.srv.Log().Error("muc: adding the stanza-id failed", "room", room, "err", err)
		return "", nil
	}
	return id, nil
}

// mayReadArchive reports whether the user with the given full JID may
// query the room's archive: its current occupants and its members, admins
// and owners; in an open room (neither members-only nor
// password-protected, where anyone may enter and get the history), anyone
// who is not banned. r.mu is held.
func (r *room) mayReadArchive(from jid.JID) bool {
	aff := r.affiliation(from)
	switch {
	case aff == storage.AffOutcast:
		return false
	case r.byReal[from.String()] != nil, aff != "":
		return true
	}
	return !r.locked && !r.conf.MembersOnly && r.conf.Password == ""
}

// mamIQ answers the archive requests to the room's bare JID.
func (r *room) mamIQ(ctx context.Context, st *treff.Stanza) {
	a := r.m.Archive
	if a == nil {
		r.m.fail(ctx, st, stanza.ServiceUnavailable)
		return
	}
	r.mu.Lock()
	allowed := r.mayReadArchive(st.From)
	r.mu.Unlock()
	if !allowed {
		r.m.fail(ctx, st, forbidden("only occupants and members may read this room's archive"))
		return
	}
	if st.Payload.Local == "prefs" {
		r.m.fail(ctx, st, stanza.FeatureNotImplemented.WithText("a room's archive is configured in its room configuration"))
		return
	}
	payload, err := a.Answer(ctx, r.m.srv, r.jid, st)
	if errors.Is(err, treff.ErrNoReply) {
		return
	}
	if err != nil {
		if _, ok := stanza.FromError(err); !ok {
			r.m.srv.Log().Error("muc: querying a room's archive failed", "room", r.jid.String(), "err", err)
		}
		r.m.fail(ctx, st, err) // anything but a stanza error is sent as internal-server-error
		return
	}
	r.m.send(ctx, treff.AppendResult(nil, st, payload))
}

// archiveFeatures are the disco#info features of an archiving room.
var archiveFeatures = []string{mam.NS, mam.NSExtended, mam.NSSID}

// deleteArchive deletes the archive of a room that ends.
func (m *Module) deleteArchive(ctx context.Context, r *room) {
	if m.Archive == nil {
		return
	}
	if err := m.Archive.Store.DeleteArchive(ctx, r.jid.String()); err != nil {
		m.srv.Log().Error("muc: deleting a room's archive failed", "room", r.jid.String(), "err", err)
	}
}
