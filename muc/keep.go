package muc

import (
	"context"
	"errors"
	"time"

	"mellium.im/xmpp/jid"
)

// Rooms over a restart. When the server stops (Shutdown or Close), the
// sessions end without taking their users out of the rooms (see
// sessionClosed), and Stop stores every live room that is not being set
// up: persistent rooms and temporary rooms that still have occupants,
// with their configuration, affiliations, subject, occupant-id secret
// and recent history. A temporary room is stored with a KeepUntil of
// now + Module.KeepTemporary: after the next start it answers as before
// (its owners are still its owners, and the next to enter joins it
// rather than making a new room), and it ends as temporary rooms do when
// its last occupant leaves; if nobody has entered it by KeepUntil, it
// ends then (its stored state and archive are deleted).

// DefaultKeepTemporary is how long a temporary room that had occupants
// when the server stopped is kept after the next start, when
// Module.KeepTemporary is 0.
const DefaultKeepTemporary = 24 * time.Hour

func (m *Module) keepTemporary() time.Duration {
	if m.KeepTemporary == 0 {
		return DefaultKeepTemporary
	}
	return m.KeepTemporary
}

// restoreKept looks for the temporary rooms stored at the last stop and
// arranges their end at their KeepUntil; those past it end now.
func (m *Module) restoreKept(ctx context.Context) {
	if m.Store == nil {
		return
	}
	for service := range m.services {
		stored, err := m.Store.ListRooms(ctx, service)
		if err != nil {
			m.srv.Log().Error("muc: listing the rooms kept over the restart failed", "service", service, "err", err)
			continue
		}
		for _, sr := range stored {
			if sr.Persistent || sr.KeepUntil.IsZero() {
				continue
			}
			j, err := jid.Parse(sr.JID)
			if err != nil {
				continue
			}
			if !time.Now().Before(sr.KeepUntil) {
				// Nobody came back in time (the server was down): it ends
				// now, before anyone can enter it.
				if err := m.Store.DeleteRoom(ctx, sr.JID); err != nil {
					m.srv.Log().Error("muc: deleting a room kept over the restart failed", "room", sr.JID, "err", err)
				}
				m.deleteArchive(ctx, &room{jid: j})
				continue
			}
			m.keepMu.Lock()
			if m.keepTimers == nil {
				m.keepTimers = map[string]*time.Timer{}
			}
			m.keepTimers[sr.JID] = time.AfterFunc(time.Until(sr.KeepUntil), func() { m.expireKept(j) })
			m.keepMu.Unlock()
		}
	}
}

// expireKept ends a temporary room kept over the restart that nobody has
// entered since.
func (m *Module) expireKept(roomJID jid.JID) {
	m.keepMu.Lock()
	delete(m.keepTimers, roomJID.String())
	m.keepMu.Unlock()
	ctx := m.srv.Context()
	r, err := m.room(ctx, roomJID)
	if err != nil || r == nil {
		return
	}
	r.mu.Lock()
	if r.kept && !r.conf.Persistent && len(r.order) == 0 {
		r.end(true)
	}
	r.unlock(ctx)
}

// keepRooms stores the live rooms for the next start (see above) and
// waits until they are stored, or ctx ends.
func (m *Module) keepRooms(ctx context.Context) error {
	if m.Store == nil {
		return nil
	}
	m.mu.Lock()
	rooms := make([]*room, 0, len(m.rooms))
	for _, r := range m.rooms {
		rooms = append(rooms, r)
	}
	m.mu.Unlock()
	until := time.Now().Add(m.keepTemporary()).UTC()
	var dones []chan error
	for _, r := range rooms {
		r.mu.Lock()
		if r.gone.Load() || r.locked || !r.conf.Persistent && (len(r.order) == 0 || m.KeepTemporary < 0) {
			// Being set up, or ended; or temporary and empty (a room kept
			// from the last stop that nobody entered keeps its record).
			r.mu.Unlock()
			continue
		}
		conf := r.confCopy()
		conf.History = r.recentHistory()
		if !conf.Persistent {
			conf.KeepUntil = until
		}
		done := make(chan error, 1)
		dones = append(dones, done)
		// Queued: after the room's earlier stores.
		r.later(func(ctx context.Context) { done <- m.Store.PutRoom(ctx, conf) })
		r.unlock(ctx)
	}
	if len(dones) > 0 {
		m.srv.Log().Info("muc: storing the rooms for the next start", "rooms", len(dones))
	}
	var errs []error
	for _, done := range dones {
		select {
		case err := <-done:
			errs = append(errs, err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return errors.Join(errs...)
}

// stopKeepTimers stops the timers of restoreKept.
func (m *Module) stopKeepTimers() {
	m.keepMu.Lock()
	defer m.keepMu.Unlock()
	for k, t := range m.keepTimers {
		t.Stop()
		delete(m.keepTimers, k)
	}
}
