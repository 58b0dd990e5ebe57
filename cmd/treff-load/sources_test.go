package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"testing"
)

func TestParseSources(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
		bad  bool
	}{
		{"", nil, false},
		{"127.0.1.1-127.0.1.3", []string{"127.0.1.1", "127.0.1.2", "127.0.1.3"}, false},
		{"127.0.1.1, ::1", []string{"127.0.1.1", "::1"}, false},
		{"127.0.1.3-127.0.1.1", nil, true},
		{"127.0.0.0-127.0.2.0", nil, true},
		{"127.0.1.1-::1", nil, true},
		{"nonsense", nil, true},
	} {
		got, err := parseSources(tc.in)
		if (err != nil) != tc.bad {
			t.Errorf("%q: err %v", tc.in, err)
			continue
		}
		var s []string
		for _, a := range got {
			s = append(s, a.String())
		}
		if !slices.Equal(s, tc.want) {
			t.Errorf("%q: %q, want %q", tc.in, s, tc.want)
		}
	}
}

// TestSources dials with the round robin over three loopback addresses
// and checks that the connections came from each of them.
func TestSources(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c := config{}
	c.sources, _ = parseSources("127.0.1.1-127.0.1.3")
	seen := map[string]bool{}
	for i := 0; i < 6; i++ {
		d := net.Dialer{LocalAddr: c.localAddr()}
		conn, err := d.DialContext(context.Background(), "tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		in, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		seen[netip.MustParseAddrPort(in.RemoteAddr().String()).Addr().String()] = true
		in.Close()
		conn.Close()
	}
	if fmt.Sprint(len(seen)) != "3" || !seen["127.0.1.1"] || !seen["127.0.1.3"] {
		t.Errorf("connections came from %v, want the three sources", seen)
	}
}
