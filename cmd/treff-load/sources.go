package main

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
)

// Source addresses (-sources): a loopback server sees at most ~28,000
// connections from one client address (the ephemeral port range); to hold
// 100,000 sessions the tool spreads its connections over several local
// addresses, round robin. On Linux all of 127.0.0.0/8 is local, so
// 127.0.1.1-127.0.1.8 needs no set-up.

// parseSources parses "A-B" (a range of IPv4 addresses, at most 256) or
// a comma-separated list of addresses.
func parseSources(s string) ([]netip.Addr, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	if lo, hi, ok := strings.Cut(s, "-"); ok && !strings.Contains(s, ",") {
		a, err := netip.ParseAddr(strings.TrimSpace(lo))
		if err != nil {
			return nil, fmt.Errorf("-sources: %w", err)
		}
		b, err := netip.ParseAddr(strings.TrimSpace(hi))
		if err != nil {
			return nil, fmt.Errorf("-sources: %w", err)
		}
		if a.Is4() != b.Is4() || b.Less(a) {
			return nil, fmt.Errorf("-sources: %s is not a range", s)
		}
		var out []netip.Addr
		for x := a; ; x = x.Next() {
			out = append(out, x)
			if len(out) > 256 {
				return nil, fmt.Errorf("-sources: more than 256 addresses in %s", s)
			}
			if x == b {
				return out, nil
			}
		}
	}
	var out []netip.Addr
	for _, f := range strings.Split(s, ",") {
		a, err := netip.ParseAddr(strings.TrimSpace(f))
		if err != nil {
			return nil, fmt.Errorf("-sources: %w", err)
		}
		out = append(out, a)
	}
	return out, nil
}

// nextSource is the round robin over -sources.
var nextSource atomic.Uint64

// localAddr returns the local address of the next connection, or nil to
// let the system choose.
func (c *config) localAddr() net.Addr {
	if len(c.sources) == 0 {
		return nil
	}
	a := c.sources[nextSource.Add(1)%uint64(len(c.sources))]
	return &net.TCPAddr{IP: a.AsSlice()}
}
