package pgstore

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/treff-im/treff/storage"
)

// prefsCache keeps users' archiving preferences for a short while once
// read: the archive asks for them with every message it archives (twice
// per chat message), and they change rarely. A change through this
// store drops its entry at once; one made through another node's store
// (a cluster) is seen after prefsTTL at most. A read that overlapped a
// change does not fill the cache (gen), so it never keeps what it read
// before the change.
type prefsCache struct {
	gen atomic.Uint64 // bumped by every change
	mu  sync.Mutex
	m   map[string]prefsEntry
}

type prefsEntry struct {
	p  storage.ArchivePrefs
	at time.Time
}

const (
	prefsTTL      = 5 * time.Second
	prefsCacheMax = 1 << 16
)

// get returns a copy of user's cached preferences, if fresh.
func (c *prefsCache) get(user string, now time.Time) (storage.ArchivePrefs, bool) {
	c.mu.Lock()
	e, ok := c.m[user]
	c.mu.Unlock()
	if !ok || now.Sub(e.at) >= prefsTTL {
		return storage.ArchivePrefs{}, false
	}
	return clonePrefs(e.p), true
}

// put caches p as read at now, unless a change came since gen was read.
func (c *prefsCache) put(user string, p storage.ArchivePrefs, gen uint64, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen.Load() != gen {
		return
	}
	if c.m == nil || len(c.m) >= prefsCacheMax {
		c.m = make(map[string]prefsEntry)
	}
	c.m[user] = prefsEntry{clonePrefs(p), now}
}

// drop forgets user's preferences (they changed).
func (c *prefsCache) drop(user string) {
	c.mu.Lock()
	c.gen.Add(1)
	delete(c.m, user)
	c.mu.Unlock()
}

func clonePrefs(p storage.ArchivePrefs) storage.ArchivePrefs {
	p.Always, p.Never = slices.Clone(p.Always), slices.Clone(p.Never)
	return p
}
