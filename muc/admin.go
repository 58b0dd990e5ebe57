package muc

import (
	"context"
	"strings"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/stanza"
	"github.com/treff-im/treff/storage"
)

// adminItem is an <item/> of a muc#admin request.
type adminItem struct {
	Nick        string `xml:"nick,attr"`
	JID         string `xml:"jid,attr"`
	Role        string `xml:"role,attr"`
	Affiliation string `xml:"affiliation,attr"`
	Reason      string `xml:"reason"`
}

var affRank = map[storage.Affiliation]int{storage.AffOutcast: -1, "": 0, storage.AffMember: 1, storage.AffAdmin: 2, storage.AffOwner: 3}

// adminIQ handles role and affiliation changes and lists (XEP-0045
// sections 8 and 9).
func (r *room) adminIQ(ctx context.Context, st *treff.Stanza) {
	var q struct {
		Items []adminItem `xml:"item"`
	}
	if err := st.DecodePayload(&q); err != nil || len(q.Items) == 0 {
		r.m.fail(ctx, st, stanza.BadRequest)
		return
	}
	r.mu.Lock()
	defer r.unlock(ctx)
	actor := r.byReal[st.From.String()]
	actorAff := r.affiliation(st.From)
	if st.Type == "get" {
		r.adminList(st, q.Items[0], actor, actorAff)
		return
	}
	var notes [][]byte
	for _, it := range q.Items {
		var e error
		var n [][]byte
		if it.Role != "" {
			n, e = r.setRole(it, actor)
		} else {
			n, e = r.setAffiliation(it, st.From, actorAff)
		}
		if e != nil {
			r.fail(st, e)
			return
		}
		notes = append(notes, n...)
	}
	r.save()
	r.send(treff.AppendResult(nil, st, nil))
	for _, b := range notes {
		r.send(b)
	}
}

func forbidden(text string) error {
	return stanza.Forbidden.WithText(text)
}

// setRole kicks, grants or revokes voice or moderation by nickname.
func (r *room) setRole(it adminItem, actor *occupant) ([][]byte, error) {
	if actor == nil || actor.role != roleModerator {
		return nil, forbidden("only moderators change roles")
	}
	o := r.byNick[it.Nick]
	if o == nil {
		return nil, stanza.ItemNotFound.WithText("nobody by that nickname is in this room")
	}
	targetAff, actorAff := r.affiliation(o.real), r.affiliation(actor.real)
	switch it.Role {
	case "none", roleVisitor, roleParticipant:
		if affRank[targetAff] >= affRank[storage.AffAdmin] || (o.role == roleModerator && affRank[actorAff] < affRank[storage.AffAdmin]) {
			return nil, stanza.NotAllowed.WithText("admins and owners keep their role")
		}
	case roleModerator:
		if affRank[actorAff] < affRank[storage.AffAdmin] {
			return nil, forbidden("only admins and owners grant moderation")
		}
	default:
		return nil, stanza.BadRequest
	}
	if it.Role == "none" {
		r.remove(o, it.Reason, 307, actor.nick)
		return nil, nil
	}
	o.role = it.Role
	r.broadcastPresence(o, "", "", nil, r.selfCodes(false))
	return nil, nil
}

// setAffiliation grants or revokes membership, administration, ownership
// or a ban, by bare JID.
func (r *room) setAffiliation(it adminItem, actorJID jid.JID, actorAff storage.Affiliation) ([][]byte, error) {
	target, err := jid.Parse(it.JID)
	if err != nil || it.JID == "" {
		return nil, stanza.JIDMalformed.WithText("an affiliation is given to a JID")
	}
	target = target.Bare()
	aff := storage.Affiliation(it.Affiliation)
	if aff == "none" {
		aff = ""
	}
	if _, ok := affRank[aff]; !ok {
		return nil, stanza.BadRequest
	}
	old := r.conf.Affiliations[target.String()]
	need := storage.AffAdmin
	if aff == storage.AffOwner || aff == storage.AffAdmin || old == storage.AffOwner || old == storage.AffAdmin {
		need = storage.AffOwner
	}
	if affRank[actorAff] < affRank[need] {
		return nil, forbidden("you may not give or take that affiliation")
	}
	if old == storage.AffOwner && aff != storage.AffOwner && r.owners() == 1 {
		return nil, stanza.Conflict.WithText("a room keeps at least one owner")
	}
	if aff == "" {
		delete(r.conf.Affiliations, target.String())
	} else {
		r.conf.Affiliations[target.String()] = aff
	}
	// The occupants with that bare JID change at once.
	for _, o := range append([]*occupant(nil), r.order...) {
		if !o.real.Bare().Equal(target) {
			continue
		}
		switch {
		case aff == storage.AffOutcast:
			r.remove(o, it.Reason, 301, "")
		case aff == "" && r.conf.MembersOnly:
			r.remove(o, it.Reason, 321, "")
		default:
			switch aff {
			case storage.AffOwner, storage.AffAdmin:
				o.role = roleModerator
			default:
				if o.role == roleModerator || o.role == roleVisitor && aff == storage.AffMember {
					o.role = roleParticipant
				}
			}
			r.broadcastPresence(o, "", "", nil, r.selfCodes(false))
		}
	}
	return nil, nil
}

func (r *room) owners() int {
	n := 0
	for _, a := range r.conf.Affiliations {
		if a == storage.AffOwner {
			n++
		}
	}
	return n
}

// remove takes an occupant out with a status code: 307 kicked, 301
// banned, 321 no longer a member.
// Every session of the occupant goes.
func (r *room) remove(o *occupant, reason string, code int, actorNick string) {
	for _, s := range o.sessions {
		delete(r.byReal, s.real.String())
	}
	delete(r.byNick, o.nick)
	for i, x := range r.order {
		if x == o {
			r.order = append(r.order[:i], r.order[i+1:]...)
			break
		}
	}
	extra := ">"
	if actorNick != "" {
		extra += "<actor nick='" + string(treff.AppendEscaped(nil, actorNick)) + "'/>"
	}
	if reason != "" {
		extra += "<reason>" + string(treff.AppendEscaped(nil, reason)) + "</reason>"
	}
	extra += "</item>"
	o.inner = ""
	r.broadcastPresence(o, "unavailable", extra, []int{code}, []int{110, code})
}

// adminList answers a request for the occupants with a role or the users
// with an affiliation (XEP-0045 8.5, 9.5, 10.5).
func (r *room) adminList(st *treff.Stanza, want adminItem, actor *occupant, actorAff storage.Affiliation) {
	b := []byte("<query xmlns='" + NSAdmin + "'>")
	switch {
	case want.Role != "":
		if actor == nil || actor.role != roleModerator {
			r.fail(st, forbidden("only moderators list roles"))
			return
		}
		for _, o := range r.order {
			if o.role == want.Role {
				b = appendItem(b, o.real.String(), string(r.affiliation(o.real)), o.nick, o.role)
			}
		}
	case want.Affiliation != "":
		aff := storage.Affiliation(want.Affiliation)
		if affRank[actorAff] < affRank[storage.AffAdmin] && !(aff == storage.AffMember && r.conf.MembersOnly && actorAff == storage.AffMember) {
			r.fail(st, forbidden("only admins and owners list affiliations"))
			return
		}
		for j, a := range r.conf.Affiliations {
			if a == aff {
				b = appendItem(b, j, string(a), "", "")
			}
		}
	default:
		r.fail(st, stanza.BadRequest)
		return
	}
	r.send(treff.AppendResult(nil, st, append(b, "</query>"...)))
}

func appendItem(b []byte, j, aff, nick, role string) []byte {
	if aff == "" {
		aff = "none"
	}
	b = append(b, "<item affiliation='"...)
	b = append(b, aff...)
	b = append(b, "' jid='"...)
	b = treff.AppendEscaped(b, j)
	if nick != "" {
		b = append(b, "' nick='"...)
		b = treff.AppendEscaped(b, nick)
	}
	if role != "" {
		b = append(b, "' role='"...)
		b = append(b, role...)
	}
	return append(b, "'/>"...)
}

// invite handles mediated invitations and declines sent to the room
// (XEP-0045 7.8.2, 7.8.2.2). An invitation to a members-only room makes
// the invitee a member, so that users of other servers can join when
// invited.
func (r *room) invite(ctx context.Context, st *treff.Stanza) bool {
	var m struct {
		X *struct {
			Invites []struct {
				To     string `xml:"to,attr"`
				Reason string `xml:"reason"`
			} `xml:"invite"`
			Decline *struct {
				To     string `xml:"to,attr"`
				Reason string `xml:"reason"`
			} `xml:"decline"`
		} `xml:"http://jabber.org/protocol/muc#user x"`
	}
	if !strings.Contains(st.Inner(), NSUser) || st.Decoder().Decode(&m) != nil || m.X == nil {
		return false
	}
	r.mu.Lock()
	defer r.unlock(ctx)
	if d := m.X.Decline; d != nil {
		to, err := jid.Parse(d.To)
		if err != nil {
			r.fail(st, stanza.JIDMalformed)
			return true
		}
		b := []byte("<message from='")
		b = treff.AppendEscaped(b, r.jid.String())
		b = append(b, "' to='"...)
		b = treff.AppendEscaped(b, to.String())
		b = append(b, "'><x xmlns='"+NSUser+"'><decline from='"...)
		b = treff.AppendEscaped(b, st.From.Bare().String())
		b = append(b, "'>"...)
		b = appendReason(b, d.Reason)
		r.send(append(b, "</decline></x></message>"...))
		return true
	}
	if len(m.X.Invites) == 0 {
		return false
	}
	inviter := r.byReal[st.From.String()]
	aff := r.affiliation(st.From)
	switch {
	case inviter == nil:
		r.fail(st, stanza.NotAcceptable.WithText("you are not in this room"))
		return true
	case r.conf.MembersOnly && affRank[aff] < affRank[storage.AffAdmin] && !r.conf.OccupantsInvite:
		r.fail(st, forbidden("only admins may invite to this room"))
		return true
	}
	for _, inv := range m.X.Invites {
		to, err := jid.Parse(inv.To)
		if err != nil {
			r.fail(st, stanza.JIDMalformed)
			return true
		}
		if r.conf.MembersOnly && r.conf.Affiliations[to.Bare().String()] == "" {
			r.conf.Affiliations[to.Bare().String()] = storage.AffMember
			r.save()
		}
		b := []byte("<message from='")
		b = treff.AppendEscaped(b, r.jid.String())
		b = append(b, "' to='"...)
		b = treff.AppendEscaped(b, to.String())
		b = append(b, "'><x xmlns='"+NSUser+"'><invite from='"...)
		b = treff.AppendEscaped(b, st.From.Bare().String())
		b = append(b, "'>"...)
		b = appendReason(b, inv.Reason)
		b = append(b, "</invite>"...)
		if r.conf.Password != "" {
			b = append(b, "<password>"...)
			b = treff.AppendEscaped(b, r.conf.Password)
			b = append(b, "</password>"...)
		}
		r.send(append(b, "</x></message>"...))
	}
	return true
}

func appendReason(b []byte, reason string) []byte {
	if reason == "" {
		return b
	}
	b = append(b, "<reason>"...)
	b = treff.AppendEscaped(b, reason)
	return append(b, "</reason>"...)
}
