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

// Message retraction in rooms: XEP-0424: Message Retraction (version
// 0.4.1) by a message's author, and XEP-0425: Moderated Message
// Retraction (version 0.3.0) by a moderator. Both refer to a message by
// the stanza-id the room gave it (XEP-0359), so both need the room
// archive (Module.Archive), and its store must implement
// storage.ArchiveEditor to keep a tombstone where the message was.
//
// A moderator sends
//
//	<iq type='set' to='room@service'><moderate id='STANZA-ID' xmlns='urn:xmpp:message-moderate:1'>
//	  <retract xmlns='urn:xmpp:message-retract:1'/><reason>…</reason></moderate></iq>
//
// and the room replaces the archived message with a tombstone
// (<retracted stamp=…><moderated by='room@service/modnick'/><reason/></retracted>),
// archives and broadcasts from its bare JID
//
//	<message type='groupchat' from='room@service'><retract id='STANZA-ID' xmlns='urn:xmpp:message-retract:1'>
//	  <moderated by='room@service/modnick' xmlns='urn:xmpp:message-moderate:1'/><reason>…</reason></retract></message>
//
// and answers the IQ. An author's groupchat message with <retract id='STANZA-ID'/>
// is an ordinary message to the room (archived and broadcast, as XEP-0424
// requires: receivers check the author themselves); the room also
// replaces the original with a tombstone if the retraction's sender is
// its author (the same bare JID). The room remembers the authors of its
// latest archived messages (Module.MaxRetractable per room, in memory:
// the archive keeps no real JIDs), so an older message, or one from
// before a restart, keeps its archived content; the retraction is still
// archived and broadcast.

// Namespaces of message retraction and moderation.
const (
	// NSRetract is XEP-0424's namespace.
	NSRetract = "urn:xmpp:message-retract:1"
	// NSModerate is XEP-0425's namespace.
	NSModerate = "urn:xmpp:message-moderate:1"
	// NSTombstone is the feature of an archive that replaces retracted
	// messages with tombstones (XEP-0424 section 5); clients (Monal)
	// ignore tombstones from rooms that do not advertise it.
	NSTombstone = NSRetract + "#tombstone"
)

// Namespaces a tombstone keeps children of: the author's origin-id
// (XEP-0359) and occupant-id (XEP-0421), which clients match retractions
// with; everything else may tell what the message said.
const (
	nsSID        = "urn:xmpp:sid:0"
	nsOccupantID = "urn:xmpp:occupant-id:0"
)

// DefaultMaxRetractable is how many of a room's latest archived messages
// the room remembers the authors of, for retraction by their authors,
// when Module.MaxRetractable is 0.
const DefaultMaxRetractable = 1000

func (m *Module) maxRetractable() int { return or(m.MaxRetractable, DefaultMaxRetractable) }

// modState is a room's state for retraction and its avatar; room.mu
// guards it.
type modState struct {
	authors map[string]string // stanza-id -> the author's bare JID
	order   []string          // the keys of authors, oldest first

	avatarKnown bool     // avatar holds what the store has
	avatar      []string // SHA-1s of the room vCard's photos
}

// editor returns the room archive's store as a storage.ArchiveEditor, or
// nil if there is no archive or its store cannot edit.
func (m *Module) editor() storage.ArchiveEditor {
	if m.Archive == nil {
		return nil
	}
	e, _ := m.Archive.Store.(storage.ArchiveEditor)
	return e
}

// noteAuthor remembers that the message with stanza-id id is by author
// (a bare JID), forgetting the oldest beyond Module.MaxRetractable.
// r.mu is held.
func (r *room) noteAuthor(id, author string) {
	s := &r.mod
	if s.authors == nil {
		s.authors = map[string]string{}
	}
	s.authors[id] = author
	s.order = append(s.order, id)
	if over := len(s.order) - r.m.maxRetractable(); over > 0 {
		for _, old := range s.order[:over] {
			delete(s.authors, old)
		}
		s.order = append(s.order[:0], s.order[over:]...)
	}
}

// retractTarget returns the id of the XEP-0424 <retract/> in a message,
// if it has one.
func retractTarget(st *treff.Stanza) (string, bool) {
	for c := range st.Children() {
		if c.Name.Space == NSRetract && c.Name.Local == "retract" {
			id, ok := c.Attr("id")
			return id, ok && id != ""
		}
	}
	return "", false
}

// authorRetraction runs after a groupchat message by author was archived
// and broadcast: if it retracts an earlier message of the same author
// (XEP-0424), the archived original becomes a tombstone, and so does its
// entry in the history for new occupants. It runs as a step of the
// room's queue; r.mu is not held.
func (r *room) authorRetraction(ctx context.Context, msg *treff.Stanza, author string) {
	target, ok := retractTarget(msg)
	e := r.m.editor()
	if !ok || e == nil {
		return
	}
	r.mu.Lock()
	by, known := r.mod.authors[target]
	r.mu.Unlock()
	if !known || by != author {
		// Not this sender's, or too old to tell: the retraction itself
		// is archived and broadcast, the original stays.
		return
	}
	retracted := []byte("<retracted xmlns='" + NSRetract + "' stamp='")
	retracted = time.Now().UTC().AppendFormat(retracted, time.RFC3339)
	if msg.ID != "" {
		retracted = append(retracted, "' id='"...)
		retracted = treff.AppendEscaped(retracted, msg.ID)
	}
	retracted = append(retracted, "'/>"...)
	if err := r.tombstone(ctx, e, target, retracted); err != nil && !errors.Is(err, storage.ErrNotFound) {
		r.m.srv.Log().Error("muc: replacing a retracted message failed", "room", r.jid.String(), "err", err)
	}
}

// tombstone replaces the archived message with stanza-id id by a
// tombstone holding retracted (a serialised <retracted/> element), and
// its history entry likewise. It returns storage.ErrNotFound (wrapped) if
// the archive has no such message. r.mu is not held.
func (r *room) tombstone(ctx context.Context, e storage.ArchiveEditor, id string, retracted []byte) error {
	room := r.jid.String()
	page, err := r.m.Archive.Store.QueryArchive(ctx, room, storage.ArchiveQuery{IDs: []string{id}, Limit: 1})
	if err != nil {
		return err
	}
	if len(page.Messages) != 1 {
		return storage.ErrNotFound
	}
	tomb, err := tombstoneOf(page.Messages[0].Stanza, retracted)
	if err != nil {
		return err
	}
	if err := e.ReplaceArchived(ctx, room, id, tomb); err != nil {
		return err
	}
	if t, err := treff.NewStanza(tomb); err == nil {
		inner := t.Inner() + string(mam.AppendStanzaID(nil, room, id))
		r.mu.Lock()
		for _, h := range r.history {
			if h.sid == id {
				h.inner = inner
			}
		}
		r.mu.Unlock()
	}
	return nil
}

// tombstoneOf makes the tombstone of an archived message: its from, type
// and id, its origin-id and occupant-id, and retracted instead of
// everything else (XEP-0424 section 5, XEP-0425 section 5).
func tombstoneOf(orig, retracted []byte) ([]byte, error) {
	st, err := treff.NewStanza(orig)
	if err != nil {
		return nil, err
	}
	b := []byte("<message")
	for _, a := range []struct{ name, val string }{{"from", st.From.String()}, {"type", st.Type}, {"id", st.ID}} {
		if a.val == "" || a.name == "from" && st.From.Equal(jid.JID{}) {
			continue
		}
		b = append(b, " "+a.name+"='"...)
		b = treff.AppendEscaped(b, a.val)
		b = append(b, '\'')
	}
	b = append(b, '>')
	for c := range st.Children() {
		keep := c.Name.Space == nsOccupantID || c.Name.Space == nsSID && c.Name.Local == "origin-id"
		if keep && c.SelfContained() {
			b = append(b, c.Raw()...)
		}
	}
	b = append(b, retracted...)
	return append(b, "</message>"...), nil
}

// moderateRequest is a parsed <moderate/> (XEP-0425 section 3).
type moderateRequest struct {
	id     string
	reason string
}

func parseModerate(st *treff.Stanza) (moderateRequest, error) {
	var req moderateRequest
	for c := range st.Children() {
		if c.Name.Space != NSModerate || c.Name.Local != "moderate" {
			continue
		}
		req.id, _ = c.Attr("id")
		retract := false
		for cc := range c.Children() {
			switch {
			case cc.Name.Space == NSRetract && cc.Name.Local == "retract":
				retract = true
			case cc.Name.Space == NSModerate && cc.Name.Local == "reason":
				req.reason = cc.Text()
			}
		}
		switch {
		case req.id == "":
			return req, stanza.BadRequest.WithText("the id of the message to moderate is missing")
		case !retract:
			return req, stanza.FeatureNotImplemented.WithText("messages can only be retracted")
		}
		return req, nil
	}
	return req, stanza.BadRequest
}

// moderateIQ handles a moderator's request to retract a message (XEP-0425).
func (r *room) moderateIQ(ctx context.Context, st *treff.Stanza) {
	e := r.m.editor()
	if e == nil {
		r.m.fail(ctx, st, stanza.ServiceUnavailable)
		return
	}
	if st.Type != "set" {
		r.m.fail(ctx, st, stanza.BadRequest.WithText("a moderation request is an IQ set"))
		return
	}
	req, err := parseModerate(st)
	if err != nil {
		r.m.fail(ctx, st, err)
		return
	}
	if r.busy() {
		r.m.fail(ctx, st, errBusy)
		return
	}
	r.mu.Lock()
	defer r.unlock(ctx)
	o := r.byReal[st.From.String()]
	if o == nil || o.role != roleModerator {
		r.fail(st, forbidden("only moderators may retract other occupants' messages"))
		return
	}
	by := r.nickJID(o.nick).String()
	r.later(func(ctx context.Context) { r.moderate(ctx, e, st, req, by) })
}

// moderate carries out a moderation as a step of the room's queue (r.mu
// is not held): the tombstone, then the notice, archived and broadcast,
// then the answer.
func (r *room) moderate(ctx context.Context, e storage.ArchiveEditor, st *treff.Stanza, req moderateRequest, by string) {
	room := r.jid.String()
	moderated := []byte("<moderated xmlns='" + NSModerate + "' by='")
	moderated = treff.AppendEscaped(moderated, by)
	moderated = append(moderated, "'/>"...)
	var reason []byte
	if req.reason != "" {
		reason = append([]byte("<reason>"), treff.AppendEscaped(nil, req.reason)...)
		reason = append(reason, "</reason>"...)
	}
	retracted := []byte("<retracted xmlns='" + NSRetract + "' stamp='")
	retracted = time.Now().UTC().AppendFormat(retracted, time.RFC3339)
	retracted = append(append(append(append(retracted, "'>"...), moderated...), reason...), "</retracted>"...)
	if err := r.tombstone(ctx, e, req.id, retracted); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			r.m.fail(ctx, st, stanza.ItemNotFound.WithText("this room has no message with that id"))
			return
		}
		r.m.srv.Log().Error("muc: moderating a message failed", "room", room, "err", err)
		r.m.fail(ctx, st, mam.ArchiveError(err))
		return
	}
	notice := []byte("<message type='groupchat' from='")
	notice = treff.AppendEscaped(notice, room)
	notice = append(notice, "' id='"...)
	notice = append(notice, newID()...)
	notice = append(notice, "'><retract xmlns='"+NSRetract+"' id='"...)
	notice = treff.AppendEscaped(notice, req.id)
	notice = append(append(append(append(notice, "'>"...), moderated...), reason...), "</retract></message>"...)
	out, err := treff.NewStanza(notice)
	if err != nil {
		r.m.srv.Log().Error("muc: built a bad moderation notice", "err", err)
		r.m.fail(ctx, st, stanza.InternalServerError)
		return
	}
	// XEP-0424: the archive keeps the retraction too, for those who
	// catch up later.
	r.mu.Lock()
	archiving := r.archiving()
	r.mu.Unlock()
	if archiving {
		if id, err := r.m.Archive.Append(ctx, room, storage.ArchivedMessage{With: room, Stanza: out.Raw()}); err != nil {
			r.m.srv.Log().Error("muc: archiving a moderation notice failed", "room", room, "err", err)
		} else if err := out.AddChild(mam.AppendStanzaID(nil, room, id)); err != nil {
			r.m.srv.Log().Error("muc: adding the stanza-id failed", "room", room, "err", err)
		}
	}
	r.mu.Lock()
	to := make([]jid.JID, 0, len(r.order))
	for _, o := range r.order {
		for _, s := range o.sessions { // every session of each occupant
			to = append(to, s.real)
		}
	}
	r.mu.Unlock()
	for _, j := range to {
		r.m.srv.Route(ctx, out.WithAddresses(r.jid, j))
	}
	r.m.send(ctx, treff.AppendResult(nil, st, nil))
}

// modFeatures are the room's disco#info features of this file and of
// room avatars. r.mu is held.
func (r *room) modFeatures(archiving bool) []string {
	var f []string
	if r.m.editor() != nil {
		f = append(f, NSModerate, NSTombstone)
	}
	if archiving {
		f = append(f, NSRetract)
	}
	if r.m.VCards != nil {
		f = append(f, nsVCard)
	}
	return f
}
