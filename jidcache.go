package treff

import (
	"strings"
	"sync"

	"mellium.im/xmpp/jid"
)

// jidCache remembers parsed JIDs: PRECIS normalisation costs about as much
// as the rest of routing a message, and chat traffic repeats the same
// addresses. JIDs are immutable values, so sharing them is safe. Each shard
// is cleared when it fills up, which bounds memory without LRU bookkeeping.
type jidCache struct {
	shard [16]struct {
		sync.RWMutex
		m map[string]jid.JID
	}
}

const jidCacheShardSize = 4096

var parsedJIDs jidCache

func (c *jidCache) parse(s string) (jid.JID, error) {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	sh := &c.shard[h%uint32(len(c.shard))]
	sh.RLock()
	j, ok := sh.m[s]
	sh.RUnlock()
	if ok {
		return j, nil
	}
	j, err := jid.Parse(s)
	if err != nil {
		return j, err
	}
	sh.Lock()
	if sh.m == nil || len(sh.m) >= jidCacheShardSize {
		sh.m = make(map[string]jid.JID)
	}
	// The key must not keep the stanza it was sliced from alive.
	sh.m[strings.Clone(s)] = j
	sh.Unlock()
	return j, nil
}
