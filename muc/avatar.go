package muc

import (
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"slices"
	"strings"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/dataform"
	"github.com/treff-im/treff/stanza"
	"github.com/treff-im/treff/storage"
)

// Room avatars: XEP-0486: MUC Avatars (version 0.1.0). A room has a
// vcard-temp (XEP-0054) at its bare JID: its owners set it (an empty
// <vCard/> removes it), anyone gets it. The room advertises vcard-temp
// and, while its vCard has photos, their SHA-1s in the
// muc#roominfo_avatarhash field of its disco#info, and tells its
// occupants of a change with a status 104 message, after which clients
// ask for the room's information again. The vCards live in
// Module.VCards (storage.PrivateXML, under the room's bare JID and the
// key "vcard-temp", as the vcard module keeps users' vCards) and go with
// the room.

// nsVCard is vcard-temp's namespace (XEP-0054), which is also the
// storage.PrivateXML key of a room's vCard.
const nsVCard = "vcard-temp"

// DefaultMaxVCardSize is the largest room vCard, in bytes, when
// Module.MaxVCardSize is 0.
const DefaultMaxVCardSize = 256 << 10

func (m *Module) maxVCard() int { return or(m.MaxVCardSize, DefaultMaxVCardSize) }

// avatarHashes returns the SHA-1s (hex) of the photos of a serialised
// vCard, in document order, without repeats (XEP-0486 section 5.1).
func avatarHashes(doc []byte) []string {
	if !strings.Contains(string(doc), "BINVAL") {
		return nil
	}
	var v struct {
		Photos []struct {
			Binval string `xml:"BINVAL"`
		} `xml:"PHOTO"`
	}
	if xml.Unmarshal(doc, &v) != nil {
		return nil
	}
	var out []string
	for _, p := range v.Photos {
		data, err := base64.StdEncoding.DecodeString(strings.Map(func(r rune) rune {
			if r == ' ' || r == '\t' || r == '\n' || r == '\r' {
				return -1
			}
			return r
		}, p.Binval))
		if err != nil || len(data) == 0 {
			continue
		}
		sum := sha1.Sum(data)
		h := hex.EncodeToString(sum[:])
		if !slices.Contains(out, h) {
			out = append(out, h)
		}
	}
	return out
}

// loadAvatar reads the room vCard's photo hashes from the store, once; a
// failed read is tried again next time. r.mu is not held.
func (r *room) loadAvatar(ctx context.Context) {
	if r.m.VCards == nil {
		return
	}
	r.mu.Lock()
	known := r.mod.avatarKnown
	r.mu.Unlock()
	if known {
		return
	}
	doc, err := r.m.VCards.PrivateXML(ctx, r.jid.String(), nsVCard)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		r.m.srv.Log().Error("muc: reading a room's vCard failed", "room", r.jid.String(), "err", err)
		return
	}
	hashes := avatarHashes(doc)
	r.mu.Lock()
	if !r.mod.avatarKnown { // not set meanwhile
		r.mod.avatar, r.mod.avatarKnown = hashes, true
	}
	r.mu.Unlock()
}

// avatarFields are the room information fields of its avatar
// (XEP-0486 section 3.3): none without one. r.mu is held.
func (r *room) avatarFields() []dataform.Field {
	if len(r.mod.avatar) == 0 {
		return nil
	}
	return []dataform.Field{{Var: "muc#roominfo_avatarhash", Type: "text-multi", Label: "Avatar hash", Values: append([]string(nil), r.mod.avatar...)}}
}

// vcardIQ answers vcard-temp requests to the room's bare JID.
func (r *room) vcardIQ(ctx context.Context, st *treff.Stanza) {
	store := r.m.VCards
	if store == nil {
		r.m.fail(ctx, st, stanza.ServiceUnavailable)
		return
	}
	if st.Payload.Local != "vCard" {
		r.m.fail(ctx, st, stanza.BadRequest)
		return
	}
	if st.Type == "get" {
		doc, err := store.PrivateXML(ctx, r.jid.String(), nsVCard)
		switch {
		case errors.Is(err, storage.ErrNotFound) || err == nil && len(doc) == 0:
			doc = []byte("<vCard xmlns='" + nsVCard + "'/>")
		case err != nil:
			r.m.srv.Log().Error("muc: reading a room's vCard failed", "room", r.jid.String(), "err", err)
			r.m.fail(ctx, st, stanza.InternalServerError)
			return
		}
		r.m.send(ctx, treff.AppendResult(nil, st, doc))
		return
	}
	var card stanza.Child
	for c := range st.Children() {
		card = c
		break
	}
	doc := []byte(card.Raw())
	switch {
	case len(doc) > r.m.maxVCard():
		r.m.fail(ctx, st, stanza.Errorf(stanza.NotAcceptable, "a room's vCard may have at most %d bytes", r.m.maxVCard()))
		return
	case !card.SelfContained():
		r.m.fail(ctx, st, stanza.BadRequest.WithText("the vCard must declare its own namespace and prefixes"))
		return
	}
	empty := true
	for range card.Children() {
		empty = false
		break
	}
	if r.busy() {
		r.m.fail(ctx, st, errBusy)
		return
	}
	r.mu.Lock()
	defer r.unlock(ctx)
	if r.affiliation(st.From) != storage.AffOwner {
		r.fail(st, forbidden("only the room's owners may set its avatar"))
		return
	}
	hashes := avatarHashes(doc)
	r.laterSized(len(doc), func(ctx context.Context) {
		var err error
		if empty {
			err = store.DeletePrivateXML(ctx, r.jid.String(), nsVCard)
		} else {
			err = store.PutPrivateXML(ctx, r.jid.String(), nsVCard, doc)
		}
		if err != nil {
			r.m.srv.Log().Error("muc: storing a room's vCard failed", "room", r.jid.String(), "err", err)
			r.m.fail(ctx, st, stanza.InternalServerError)
			return
		}
		// The configuration changed (XEP-0486 section 3.2): clients ask
		// for the room's information again.
		r.mu.Lock()
		r.mod.avatar, r.mod.avatarKnown = hashes, true
		var notices [][]byte
		for _, o := range r.order {
			for _, s := range o.sessions { // every session of each occupant
				b := []byte("<message type='groupchat' from='")
				b = treff.AppendEscaped(b, r.jid.String())
				b = append(b, "' to='"...)
				b = treff.AppendEscaped(b, s.real.String())
				b = append(b, "' id='"...)
				b = append(b, newID()...)
				notices = append(notices, append(b, "'><x xmlns='"+NSUser+"'><status code='104'/></x></message>"...))
			}
		}
		r.mu.Unlock()
		for _, b := range notices {
			r.m.send(ctx, b)
		}
		r.m.send(ctx, treff.AppendResult(nil, st, nil))
	})
}

// deleteVCard deletes the vCard of a room that ends.
func (m *Module) deleteVCard(ctx context.Context, r *room) {
	if m.VCards == nil {
		return
	}
	if err := m.VCards.DeletePrivateXML(ctx, r.jid.String(), nsVCard); err != nil {
		m.srv.Log().Error("muc: deleting a room's vCard failed", "room", r.jid.String(), "err", err)
	}
}
