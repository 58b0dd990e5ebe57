package dnstest

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"
)

func TestLookups(t *testing.T) {
	s, err := Start("127.0.0.1:0", Zone{
		Addrs: map[string][]netip.Addr{
			"xmpp.example.org": {netip.MustParseAddr("192.0.2.7"), netip.MustParseAddr("2001:db8::7")},
			"v4.example.org":   {netip.MustParseAddr("192.0.2.8")},
		},
		SRV: map[string][]net.SRV{
			"_xmpp-client._tcp.example.org": {{Target: "xmpp.example.org", Port: 5222, Priority: 0, Weight: 5}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r := s.Resolver()

	_, srvs, err := r.LookupSRV(ctx, "xmpp-client", "tcp", "Example.org")
	if err != nil {
		t.Fatal(err)
	}
	if len(srvs) != 1 || srvs[0].Target != "xmpp.example.org." || srvs[0].Port != 5222 || srvs[0].Weight != 5 {
		t.Errorf("SRV: %+v", srvs)
	}

	ips, err := r.LookupIPAddr(ctx, "xmpp.example.org")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ip := range ips {
		got = append(got, ip.IP.String())
	}
	slices.Sort(got)
	if want := []string{"192.0.2.7", "2001:db8::7"}; !slices.Equal(got, want) {
		t.Errorf("A/AAAA: %q, want %q", got, want)
	}

	// A name with an A record only: no error, one address.
	if ips, err := r.LookupIPAddr(ctx, "v4.example.org"); err != nil || len(ips) != 1 {
		t.Errorf("v4.example.org: %v, %v", ips, err)
	}

	// Unknown names are not found (NXDOMAIN).
	for _, lookup := range []func() error{
		func() error { _, err := r.LookupIPAddr(ctx, "nowhere.example.org"); return err },
		func() error { _, _, err := r.LookupSRV(ctx, "xmpp-server", "tcp", "example.org"); return err },
	} {
		var dnsErr *net.DNSError
		if err := lookup(); !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
			t.Errorf("unknown name: %v, want a not-found DNS error", err)
		}
	}
	if s.Queries() == 0 {
		t.Error("the server counted no queries")
	}
}
