package muc

import (
	"context"
	"slices"
	"strconv"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/dataform"
	"github.com/treff-im/treff/stanza"
	"github.com/treff-im/treff/storage"
)

// ownerQuery is a muc#owner payload.
type ownerQuery struct {
	Form    *dataform.Submitted `xml:"jabber:x:data x"`
	Destroy *struct {
		JID    string `xml:"jid,attr"`
		Reason string `xml:"reason"`
	} `xml:"destroy"`
}

// ownerIQ handles room configuration and destruction (XEP-0045 10).
func (r *room) ownerIQ(ctx context.Context, st *treff.Stanza) {
	var q ownerQuery
	if st.Type == "set" {
		if err := st.DecodePayload(&q); err != nil {
			r.m.fail(ctx, st, stanza.BadRequest)
			return
		}
	}
	r.loadArchiving(ctx)
	r.mu.Lock()
	defer r.unlock(ctx)
	switch {
	case r.gone.Load():
		r.fail(st, stanza.ItemNotFound.WithText("no such room"))
	case r.affiliation(st.From) != storage.AffOwner:
		r.fail(st, stanza.Forbidden.WithText("only owners configure a room"))
	case st.Type == "get":
		b := r.configForm().Append([]byte("<query xmlns='"+NSOwner+"'>"), "form")
		r.send(treff.AppendResult(nil, st, append(b, "</query>"...)))
	case q.Destroy != nil:
		// The occupants hear of the end before the owner's answer
		// (XEP-0045 10.9).
		r.destroy(q.Destroy.JID, q.Destroy.Reason)
		r.send(treff.AppendResult(nil, st, nil))
	case q.Form != nil && q.Form.Type == "cancel":
		if r.locked {
			// Cancelling the configuration of a new room destroys it.
			r.destroy("", "")
		}
		r.send(treff.AppendResult(nil, st, nil))
	case q.Form != nil && q.Form.Type == "submit":
		r.configure(st, q.Form.Values())
	default:
		r.fail(st, stanza.BadRequest)
	}
}

func boolValue(b bool) []string {
	if b {
		return []string{"1"}
	}
	return []string{"0"}
}

// configForm is the muc#roomconfig form with the room's settings. r.mu
// is held.
func (r *room) configForm() *dataform.Form {
	c := r.conf
	whois := "moderators"
	if c.NonAnonymous {
		whois = "anyone"
	}
	f := &dataform.Form{Title: "Configuration of " + r.jid.String(), Fields: []dataform.Field{
		dataform.FormType(NS + "#roomconfig"),
		{Var: "muc#roomconfig_roomname", Type: "text-single", Label: "Name", Values: []string{c.Name}},
		{Var: "muc#roomconfig_roomdesc", Type: "text-single", Label: "Description", Values: []string{c.Description}},
		{Var: "muc#roomconfig_persistentroom", Type: "boolean", Label: "Keep the room when the last occupant leaves", Values: boolValue(c.Persistent)},
		{Var: "muc#roomconfig_publicroom", Type: "boolean", Label: "List the room publicly", Values: boolValue(c.Public)},
		{Var: "muc#roomconfig_membersonly", Type: "boolean", Label: "Members only", Values: boolValue(c.MembersOnly)},
		{Var: "muc#roomconfig_moderatedroom", Type: "boolean", Label: "Only participants with voice may speak", Values: boolValue(c.Moderated)},
		{Var: "muc#roomconfig_whois", Type: "list-single", Label: "Who may see occupants' real addresses", Options: []string{"moderators", "anyone"}, Values: []string{whois}},
		{Var: "muc#roomconfig_passwordprotectedroom", Type: "boolean", Label: "Password required to enter", Values: boolValue(c.Password != "")},
		{Var: "muc#roomconfig_roomsecret", Type: "text-private", Label: "Password", Values: []string{c.Password}},
		{Var: "muc#roomconfig_maxusers", Type: "list-single", Label: "Most occupants (none: the service's limit, " + strconv.Itoa(r.m.maxOccupants()) + ")", Options: r.maxUsersOptions(), Values: []string{maxUsersValue(c.MaxOccupants)}},
		{Var: "muc#roomconfig_lang", Type: "text-single", Label: "Language of the discussion (e.g. en, de)", Values: []string{c.Lang}},
		{Var: "muc#roomconfig_changesubject", Type: "boolean", Label: "Occupants may change the subject", Values: boolValue(c.OccupantsChangeSubject)},
		{Var: "muc#roomconfig_allowinvites", Type: "boolean", Label: "Occupants may invite others", Values: boolValue(c.OccupantsInvite)},
		{Var: "muc#maxhistoryfetch", Type: "text-single", Label: "Messages of history for new occupants", Values: []string{strconv.Itoa(or(c.MaxHistory, r.m.maxHistory()))}},
	}}
	if r.m.Archive != nil {
		f.Fields = append(f.Fields, dataform.Field{Var: cfgArchiving, Type: "boolean", Label: "Keep a message archive (XEP-0313)", Values: boolValue(r.archiving())})
	}
	return f
}

// maxUsersValue is the muc#roomconfig_maxusers value of a room's limit:
// "none" for the service's.
func maxUsersValue(n int) string {
	if n <= 0 {
		return "none"
	}
	return strconv.Itoa(n)
}

// maxUsersOptions are the choices of muc#roomconfig_maxusers, a
// list-single field (XEP-0045 15.5.3): the usual sizes up to the
// service's limit, that limit, the room's own if it differs, and "none"
// (the service's limit). r.mu is held.
func (r *room) maxUsersOptions() []string {
	max := r.m.maxOccupants()
	var out []string
	for _, n := range []int{10, 20, 30, 50, 100, 200, 500, 1000} {
		if n < max {
			out = append(out, strconv.Itoa(n))
		}
	}
	out = append(out, strconv.Itoa(max))
	if c := r.conf.MaxOccupants; c > 0 && c < max && !slices.Contains(out, strconv.Itoa(c)) {
		out = append(out, strconv.Itoa(c))
		slices.SortFunc(out, func(a, b string) int { x, _ := strconv.Atoi(a); y, _ := strconv.Atoi(b); return x - y })
	}
	return append(out, "none")
}

// configure applies a submitted configuration (an empty one accepts the
// defaults: an instant room), unlocks the room, and answers st: the
// answer comes once the configuration is stored, and the notices for the
// occupants after it. r.mu is held.
func (r *room) configure(st *treff.Stanza, v dataform.Values) {
	c := r.conf
	wasPersistent, wasAnonymous := c.Persistent, !c.NonAnonymous
	flag := func(name string, dst *bool) {
		if vs, ok := v[name]; ok && len(vs) > 0 {
			*dst = vs[0] == "1" || vs[0] == "true"
		}
	}
	text := func(name string, dst *string) {
		if vs, ok := v[name]; ok {
			*dst = ""
			if len(vs) > 0 {
				*dst = vs[0]
			}
		}
	}
	text("muc#roomconfig_roomname", &c.Name)
	text("muc#roomconfig_roomdesc", &c.Description)
	text("muc#roomconfig_lang", &c.Lang)
	if len(c.Lang) > 35 {
		// BCP 47's longest useful tags are shorter (RFC 5646 4.4.1).
		r.fail(st, stanza.NotAcceptable.WithText("muc#roomconfig_lang is a language tag"))
		return
	}
	flag("muc#roomconfig_persistentroom", &c.Persistent)
	flag("muc#roomconfig_publicroom", &c.Public)
	flag("muc#roomconfig_membersonly", &c.MembersOnly)
	flag("muc#roomconfig_moderatedroom", &c.Moderated)
	flag("muc#roomconfig_changesubject", &c.OccupantsChangeSubject)
	flag("muc#roomconfig_allowinvites", &c.OccupantsInvite)
	if w := v.Get("muc#roomconfig_whois"); w != "" {
		c.NonAnonymous = w == "anyone"
	}
	protected := c.Password != ""
	flag("muc#roomconfig_passwordprotectedroom", &protected)
	text("muc#roomconfig_roomsecret", &c.Password)
	if !protected {
		c.Password = ""
	} else if c.Password == "" {
		r.fail(st, stanza.NotAcceptable.WithText("a password-protected room needs a password"))
		return
	}
	for name, dst := range map[string]*int{"muc#roomconfig_maxusers": &c.MaxOccupants, "muc#maxhistoryfetch": &c.MaxHistory} {
		if s := v.Get(name); s == "none" && name == "muc#roomconfig_maxusers" {
			*dst = 0
		} else if s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 0 {
				r.fail(st, stanza.NotAcceptable.WithText(name+" must be a number"))
				return
			}
			*dst = n
		}
	}
	if c.MaxOccupants > r.m.maxOccupants() {
		c.MaxOccupants = r.m.maxOccupants()
	}
	becameMembersOnly := c.MembersOnly && !r.conf.MembersOnly
	// Valid: now it changes.
	if vs, ok := v[cfgArchiving]; ok && len(vs) > 0 {
		r.setArchiving(vs[0] == "1" || vs[0] == "true")
	}
	r.conf = c
	initial := r.locked
	r.locked = false
	if becameMembersOnly {
		// Occupants who are not members leave, with 322 (XEP-0045 10.2.1).
		for _, o := range append([]*occupant(nil), r.order...) {
			if r.affiliation(o.real) == "" {
				r.remove(o, "", 322, "")
			}
		}
	}
	switch {
	case c.Persistent:
		r.save()
	case wasPersistent && r.m.Store != nil:
		r.later(func(ctx context.Context) {
			if err := r.m.Store.DeleteRoom(ctx, r.jid.String()); err != nil {
				r.m.srv.Log().Error("muc: deleting a room failed", "room", r.jid.String(), "err", err)
			}
		})
	}
	r.send(treff.AppendResult(nil, st, nil))
	if !initial {
		// Tell the occupants (XEP-0045 10.2.1): 104, and 172/173 when the
		// room becomes non-anonymous or semi-anonymous.
		codes := "<status code='104'/>"
		if wasAnonymous && c.NonAnonymous {
			codes += "<status code='172'/>"
		} else if !wasAnonymous && !c.NonAnonymous {
			codes += "<status code='173'/>"
		}
		for _, o := range r.order {
			b := []byte("<message type='groupchat' from='")
			b = treff.AppendEscaped(b, r.jid.String())
			b = append(b, "' to='"...)
			for _, s := range o.sessions {
				r.send(append(append(treff.AppendEscaped(slices.Clone(b), s.real.String()), "'><x xmlns='"...), NSUser+"'>"+codes+"</x></message>"...))
			}
		}
	}
}

// destroy ends the room: every occupant leaves with a <destroy/> naming
// the alternative venue, if any (XEP-0045 10.9), once the room is gone
// from the store. r.mu is held.
func (r *room) destroy(venue, reason string) {
	extra := "/><destroy"
	if venue != "" {
		extra += " jid='" + string(treff.AppendEscaped(nil, venue)) + "'"
	}
	if reason != "" {
		extra += "><reason>" + string(treff.AppendEscaped(nil, reason)) + "</reason></destroy>"
	} else {
		extra += "/>"
	}
	var out [][]byte
	for _, o := range r.order {
		for _, s := range o.sessions {
			out = append(out, r.presenceOf(o, o, s.real, "unavailable", extra))
		}
	}
	r.order, r.byNick, r.byReal = nil, map[string]*occupant{}, map[string]*occupant{}
	r.end(true)
	for _, b := range out {
		r.send(b)
	}
}
