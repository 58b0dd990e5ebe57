package muc

import (
	"context"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/dataform"
	"github.com/treff-im/treff/stanza"
)

const nsRequest = NS + "#request"

// voice handles voice requests from visitors and the moderators' answers
// (XEP-0045 7.13, 8.6). It reports whether st was one.
func (r *room) voice(ctx context.Context, st *treff.Stanza) bool {
	var m struct {
		Form *dataform.Submitted `xml:"jabber:x:data x"`
	}
	if st.Decoder().Decode(&m) != nil || m.Form == nil {
		return false
	}
	v := m.Form.Values()
	if v.Get("FORM_TYPE") != nsRequest {
		return false
	}
	r.mu.Lock()
	defer r.unlock(ctx)
	o := r.byReal[st.From.String()]
	if o == nil {
		r.fail(st, stanza.NotAcceptable.WithText("you are not in this room"))
		return true
	}
	if nick := v.Get("muc#roomnick"); nick != "" && o.role == roleModerator {
		// A moderator's answer.
		if allow := v.Get("muc#request_allow"); allow == "1" || allow == "true" {
			if target := r.byNick[nick]; target != nil && target.role == roleVisitor {
				target.role = roleParticipant
				r.broadcastPresence(target, "", "", nil, r.selfCodes(false))
			}
		}
		return true
	}
	if o.role != roleVisitor {
		return true // has voice already
	}
	f := dataform.Form{Title: "Voice request", Instructions: "Grant " + o.nick + " voice in this room?", Fields: []dataform.Field{
		dataform.FormType(nsRequest),
		{Var: "muc#role", Type: "list-single", Label: "Requested role", Values: []string{roleParticipant}},
		{Var: "muc#jid", Type: "jid-single", Label: "User", Values: []string{o.real.Bare().String()}},
		{Var: "muc#roomnick", Type: "text-single", Label: "Nickname", Values: []string{o.nick}},
		{Var: "muc#request_allow", Type: "boolean", Label: "Grant voice?", Values: []string{"0"}},
	}}
	for _, mod := range r.order {
		if mod.role != roleModerator {
			continue
		}
		r.toSessions(mod, func(dest jid.JID) []byte {
			b := []byte("<message from='")
			b = treff.AppendEscaped(b, r.jid.String())
			b = append(b, "' to='"...)
			b = treff.AppendEscaped(b, dest.String())
			b = append(b, "'>"...)
			b = f.Append(b, "form")
			return append(b, "</message>"...)
		})
	}
	return true
}
