package muc

import (
	"context"

	"mellium.im/xmpp/jid"
)

// RoomExists reports whether the room exists, live or in the store (an
// abuse limit tells a room's creation from a join with it, see
// antispam.Limits.RoomExists). Rooms of other services count as
// existing: creating them is not this server's business. An error means
// the store could not say.
func (m *Module) RoomExists(ctx context.Context, room jid.JID) (bool, error) {
	if !m.services[room.Domainpart()] {
		return true, nil
	}
	r, err := m.room(ctx, room.Bare())
	return r != nil, err
}
