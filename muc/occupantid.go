package muc

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/xml"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
)

// NSOccupantID is the namespace of XEP-0421: Occupant identifiers for
// semi-anonymous MUCs (version 1.0.1). Every presence, groupchat message
// and private message a room sends on behalf of an occupant carries
// <occupant-id xmlns='urn:xmpp:occupant-id:0' id='…'/>, the same for
// every session of a user and across rejoins, that does not reveal the
// user's JID: the HMAC-SHA-256 of the room's and the user's bare JIDs
// under a secret of the room's (storage.Room.OccupantIDKey, kept with the
// room so that the identifiers survive restarts), in unpadded base64url.
// An occupant-id a client put in is removed.
const NSOccupantID = "urn:xmpp:occupant-id:0"

// occupantID is the occupant-id of the user with the given JID. r.mu is
// held.
func (r *room) occupantID(user jid.JID) string {
	mac := hmac.New(sha256.New, r.conf.OccupantIDKey)
	mac.Write([]byte(r.jid.Bare().String()))
	mac.Write([]byte{0})
	mac.Write([]byte(user.Bare().String()))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// appendOccupantID appends the occupant-id element with id to b.
func appendOccupantID(b []byte, id string) []byte {
	b = append(b, "<occupant-id xmlns='"+NSOccupantID+"' id='"...)
	b = treff.AppendEscaped(b, id)
	return append(b, "'/>"...)
}

// withoutOccupantIDs returns st's serialisation without its occupant-id
// children, and whether there were any.
func withoutOccupantIDs(st *treff.Stanza) ([]byte, bool) {
	raw := st.Raw()
	if !bytes.Contains(raw, []byte(NSOccupantID)) {
		return raw, false
	}
	var cut [][2]int
	for c := range st.Children() {
		if c.Name == (xml.Name{Space: NSOccupantID, Local: "occupant-id"}) {
			cut = append(cut, [2]int{c.Offset(), c.Offset() + len(c.Raw())})
		}
	}
	if len(cut) == 0 {
		return raw, false
	}
	out := make([]byte, 0, len(raw))
	last := 0
	for _, c := range cut {
		out = append(out, raw[last:c[0]]...)
		last = c[1]
	}
	return append(out, raw[last:]...), true
}
