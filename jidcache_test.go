package treff

import (
	"fmt"
	"testing"

	"mellium.im/xmpp/jid"
)

func TestJIDCache(t *testing.T) {
	var c jidCache
	for _, s := range []string{"Alice@Example.ORG/Phone", "alice@example.org", "example.org", "ὈΔΥΣΣΕΎΣ@example.com/r"} {
		want, err := jid.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 2; i++ { // miss, then hit
			got, err := c.parse(s)
			if err != nil || !got.Equal(want) || got.String() != want.String() {
				t.Errorf("%s (round %d): got %v %v, want %v", s, i, got, err, want)
			}
		}
	}
	for _, bad := range []string{"a@b@c", "@example.org", ""} {
		for i := 0; i < 2; i++ {
			if _, err := c.parse(bad); err == nil {
				t.Errorf("%q accepted", bad)
			}
		}
	}
	// Shards are bounded.
	for i := 0; i < 20*jidCacheShardSize; i++ {
		c.parse(fmt.Sprintf("u%d@example.org", i))
	}
	for i := range c.shard {
		if n := len(c.shard[i].m); n > jidCacheShardSize {
			t.Errorf("shard %d holds %d entries", i, n)
		}
	}
}
