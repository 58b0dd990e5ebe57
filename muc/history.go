package muc

import "time"

// The recent history of persistent rooms in the store. Every store of a
// persistent room (configuration, affiliations, subject) carries its
// recent history, and with Module.SaveHistory a new message schedules a
// store after that delay (one pending per room): after a crash, the room
// comes back with the history as of its last store, on this server or
// on the cluster node that takes it over.

// historyAdded schedules the store of the room's history. r.mu is held.
func (r *room) historyAdded() {
	d := r.m.SaveHistory
	if d <= 0 || !r.conf.Persistent || r.m.Store == nil || r.histSave != nil || r.gone.Load() {
		return
	}
	r.histSave = time.AfterFunc(d, func() {
		r.mu.Lock()
		if r.histSave == nil {
			r.mu.Unlock() // stopped meanwhile
			return
		}
		r.histSave = nil
		r.save()
		r.unlock(r.m.srv.Context())
	})
}

// stopHistoryTimers stops the pending stores of histories: the server
// stops, and keepRooms stores every room with its history.
func (m *Module) stopHistoryTimers() {
	m.mu.Lock()
	rooms := make([]*room, 0, len(m.rooms))
	for _, r := range m.rooms {
		rooms = append(rooms, r)
	}
	m.mu.Unlock()
	for _, r := range rooms {
		r.mu.Lock()
		if r.histSave != nil {
			r.histSave.Stop()
			r.histSave = nil
		}
		r.mu.Unlock()
	}
}
