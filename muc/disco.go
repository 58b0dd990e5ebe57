package muc

import (
	"context"
	"strconv"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/dataform"
	"github.com/treff-im/treff/storage"
)

// roomInfo is the extended information of the room's disco#info
// (XEP-0128), a muc#roominfo form with the fields and types of XEP-0045's
// registry (section 15.5.4). r.mu is held.
func (r *room) roomInfo(name string) *dataform.Form {
	c := r.conf
	return &dataform.Form{Fields: []dataform.Field{
		dataform.FormType(NS + "#roominfo"),
		{Var: "muc#roomconfig_roomname", Type: "text-single", Label: "Name", Values: []string{name}},
		{Var: "muc#roominfo_description", Type: "text-single", Label: "Description", Values: []string{c.Description}},
		{Var: "muc#roominfo_subject", Type: "text-single", Label: "Subject", Values: []string{c.Subject}},
		{Var: "muc#roominfo_subjectmod", Type: "boolean", Label: "Occupants may change the subject", Values: boolValue(c.OccupantsChangeSubject)},
		{Var: "muc#roominfo_occupants", Type: "text-single", Label: "Number of occupants", Values: []string{strconv.Itoa(len(r.order))}},
		{Var: "muc#roominfo_lang", Type: "text-single", Label: "Language of the discussion", Values: []string{c.Lang}},
		{Var: "muc#maxhistoryfetch", Type: "text-single", Label: "Messages of history for new occupants", Values: []string{strconv.Itoa(or(c.MaxHistory, r.m.maxHistory()))}},
		{Var: "muc#roomconfig_allowinvites", Type: "boolean", Label: "Occupants may invite others", Values: boolValue(c.OccupantsInvite)},
	}}
}

// mayListOccupants reports whether the user with the given full JID may
// see the room's occupants in its disco#items: its occupants; and anyone
// not banned if the room is public and open (neither members-only nor
// password-protected), where anyone could enter and see them. r.mu is
// held.
func (r *room) mayListOccupants(from jid.JID) bool {
	switch {
	case r.byReal[from.String()] != nil:
		return true
	case r.locked || r.affiliation(from) == storage.AffOutcast:
		return false
	}
	return r.conf.Public && !r.conf.MembersOnly && r.conf.Password == ""
}

// discoItems answers disco#items about the room (XEP-0045 6.5): its
// occupants' room JIDs, to those who may see them (see mayListOccupants),
// else none.
func (r *room) discoItems(ctx context.Context, st *treff.Stanza) {
	r.mu.Lock()
	defer r.unlock(ctx)
	b := []byte("<query xmlns='" + nsDiscoItems + "'>")
	if r.mayListOccupants(st.From) {
		for _, o := range r.order {
			b = append(b, "<item jid='"...)
			b = treff.AppendEscaped(b, r.nickJID(o.nick).String())
			b = append(b, "' name='"...)
			b = treff.AppendEscaped(b, o.nick)
			b = append(b, "'/>"...)
		}
	}
	r.send(treff.AppendResult(nil, st, append(b, "</query>"...)))
}
