// Package router keeps the table of online sessions and picks the sessions
// that receive a stanza addressed to a local user, following RFC 6121
// section 8 (Server Rules for Processing XML Stanzas).
//
// The package knows nothing about connections or XML: a session is anything
// that implements Entry, and the rules work on a stanza's kind and type
// only. The treff package wires it to real sessions. Table is an interface so
// that a cluster-wide table can replace the in-process Local one.
package router

import (
	"sync"

	"mellium.im/xmpp/jid"
)

// Entry is a bound resource as the router sees it.
type Entry interface {
	// JID returns the full JID the session is bound to. It does not change
	// while the entry is in a table.
	JID() jid.JID
	// Available reports whether the resource has sent available presence
	// (and not unavailable since) and so is eligible for bare-JID delivery.
	Available() bool
	// Priority returns the priority of the resource's current presence
	// (-128 to 127).
	Priority() int
}

// Table is the set of bound sessions, keyed by bare JID.
type Table interface {
	// Add inserts e. If a session with the same full JID is present it is
	// replaced and returned, so the caller can close it (RFC 6120 7.7.2.2).
	Add(e Entry) (replaced Entry)
	// Remove deletes e if it is still the entry for its full JID and reports
	// whether it did.
	Remove(e Entry) bool
	// Resources appends the sessions bound to the bare JID to dst and
	// returns the result.
	Resources(dst []Entry, bare jid.JID) []Entry
	// Lookup returns the session bound to the full JID, or nil.
	Lookup(full jid.JID) Entry
	// Len returns the number of sessions.
	Len() int
}

// Updater is a Table that wants to know when an entry's availability,
// priority or other published state changes (a cluster table publishes
// it to the other nodes). The treff package calls Update after each such
// change of an entry it added.
type Updater interface {
	Update(e Entry)
}

// Lister is a Table that can list every entry it holds, for views of
// the whole table (an administrator's list of online users, an
// announcement to all of them). Listing takes the table's locks one
// shard at a time: the result is not a snapshot of one instant.
type Lister interface {
	// AppendAll appends every entry to dst and returns the result, in no
	// order.
	AppendAll(dst []Entry) []Entry
}

const shards = 64

// Local is an in-process Table. Its zero value is ready to use. Lookups take
// only a read lock on one of 64 shards, so they scale with cores.
type Local struct {
	shard [shards]struct {
		sync.RWMutex
		m map[string][]Entry // bare JID -> sessions
	}
}

var (
	_ Table  = (*Local)(nil)
	_ Lister = (*Local)(nil)
)

func fnv(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}

func (t *Local) shardFor(bare string) *struct {
	sync.RWMutex
	m map[string][]Entry
} {
	return &t.shard[fnv(bare)%shards]
}

// Add implements Table.
func (t *Local) Add(e Entry) Entry {
	j := e.JID()
	bare := j.Bare().String()
	res := j.Resourcepart()
	sh := t.shardFor(bare)
	sh.Lock()
	defer sh.Unlock()
	if sh.m == nil {
		sh.m = make(map[string][]Entry)
	}
	list := sh.m[bare]
	for i, old := range list {
		if old.JID().Resourcepart() == res {
			nl := append([]Entry(nil), list...)
			nl[i] = e
			sh.m[bare] = nl
			return old
		}
	}
	// Copy on write: readers may hold the old slice.
	nl := make([]Entry, len(list), len(list)+1)
	copy(nl, list)
	sh.m[bare] = append(nl, e)
	return nil
}

// Remove implements Table.
func (t *Local) Remove(e Entry) bool {
	bare := e.JID().Bare().String()
	sh := t.shardFor(bare)
	sh.Lock()
	defer sh.Unlock()
	list := sh.m[bare]
	for i, old := range list {
		if old == e {
			if len(list) == 1 {
				delete(sh.m, bare)
				return true
			}
			nl := make([]Entry, 0, len(list)-1)
			nl = append(nl, list[:i]...)
			sh.m[bare] = append(nl, list[i+1:]...)
			return true
		}
	}
	return false
}

// Resources implements Table.
func (t *Local) Resources(dst []Entry, bare jid.JID) []Entry {
	return append(dst, t.resources(bare.String())...)
}

func (t *Local) resources(bare string) []Entry {
	sh := t.shardFor(bare)
	sh.RLock()
	list := sh.m[bare]
	sh.RUnlock()
	return list
}

// Lookup implements Table.
func (t *Local) Lookup(full jid.JID) Entry {
	res := full.Resourcepart()
	for _, e := range t.resources(full.Bare().String()) {
		if e.JID().Resourcepart() == res {
			return e
		}
	}
	return nil
}

// AppendAll implements Lister.
func (t *Local) AppendAll(dst []Entry) []Entry {
	for i := range t.shard {
		sh := &t.shard[i]
		sh.RLock()
		for _, l := range sh.m {
			dst = append(dst, l...)
		}
		sh.RUnlock()
	}
	return dst
}

// Len implements Table.
func (t *Local) Len() int {
	n := 0
	for i := range t.shard {
		sh := &t.shard[i]
		sh.RLock()
		for _, l := range sh.m {
			n += len(l)
		}
		sh.RUnlock()
	}
	return n
}
