package storage

import (
	"context"
	"time"
)

// FastToken is the server's record of one FAST token (XEP-0484). It holds
// no token: ID is a random identifier from which the module derives the
// token with a secret kept outside the store (see package fast), so that a
// copy of the database lets nobody log in.
type FastToken struct {
	// ID identifies the token; empty means no token (an empty slot).
	ID []byte
	// Mechanism is the HT-* SASL mechanism the token is bound to.
	Mechanism string
	// Issued and Expires are when the token was made and until when it is
	// valid (UTC).
	Issued, Expires time.Time
	// MinCount is the lowest replay counter (the <fast count=''/>
	// attribute) still accepted with the token: one more than the highest
	// one used so far, 0 before any.
	MinCount uint64
}

// FastDevice is one device of a user (a SASL2 user agent, XEP-0388) that
// may log in with FAST tokens, with its two token slots: Current, the
// token the device last logged in with, and Next, a token handed out and
// not used yet (XEP-0484 section 6.1). Either may be empty.
type FastDevice struct {
	// Agent is the user agent's id, unique per user.
	Agent string
	// Software and Device are the names the client gave, for people to
	// recognise the device.
	Software, Device string
	// LastUsed is when the device last logged in (UTC).
	LastUsed time.Time
	// Current and Next are the token slots.
	Current, Next FastToken
}

// FastTokens stores the devices that may log in with FAST tokens, per user
// and user agent id. Optional: package fast needs it. The user is a bare
// JID and is refused when empty; so is an empty agent.
type FastTokens interface {
	// FastDevice returns the user's device with agent id agent, or
	// ErrNotFound.
	FastDevice(ctx context.Context, user, agent string) (FastDevice, error)
	// PutFastDevice stores d under its Agent, replacing what was there.
	PutFastDevice(ctx context.Context, user string, d FastDevice) error
	// DeleteFastDevice removes one device; a missing one is not an error.
	DeleteFastDevice(ctx context.Context, user, agent string) error
	// FastDevices returns the user's devices sorted by Agent (none: an
	// empty result).
	FastDevices(ctx context.Context, user string) ([]FastDevice, error)
	// DeleteFastDevices removes all the user's devices (password change,
	// account removal).
	DeleteFastDevices(ctx context.Context, user string) error
}

// Clone returns a copy of d that shares no memory with it.
func (d FastDevice) Clone() FastDevice {
	d.Current.ID = append([]byte(nil), d.Current.ID...)
	d.Next.ID = append([]byte(nil), d.Next.ID...)
	if len(d.Current.ID) == 0 {
		d.Current.ID = nil
	}
	if len(d.Next.ID) == 0 {
		d.Next.ID = nil
	}
	return d
}
