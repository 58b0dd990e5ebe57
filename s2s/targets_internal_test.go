package s2s

import (
	"context"
	"errors"
	"net"
	"testing"
)

type fakeResolver map[string][]*net.SRV

func (f fakeResolver) LookupSRV(ctx context.Context, service, proto, name string) (string, []*net.SRV, error) {
	if recs, ok := f["_"+service+"._"+proto+"."+name]; ok {
		return "", recs, nil
	}
	return "", nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

func TestTargets(t *testing.T) {
	m := &Module{Resolver: fakeResolver{
		"_xmpps-server._tcp.a.example":   {{Target: "tls.a.example.", Port: 5270, Priority: 10}},
		"_xmpp-server._tcp.a.example":    {{Target: "xmpp.a.example.", Port: 5269, Priority: 10}, {Target: "first.a.example.", Port: 5269, Priority: 5}},
		"_xmpp-server._tcp.none.example": {{Target: ".", Port: 0}},
	}, Resolve: map[string]string{"static.example": "127.0.0.9:1234"}}
	ctx := context.Background()
	got, err := m.targets(ctx, "a.example")
	if err != nil {
		t.Fatal(err)
	}
	want := []target{{"first.a.example:5269", false}, {"tls.a.example:5270", true}, {"xmpp.a.example:5269", false}}
	if len(got) != len(want) {
		t.Fatalf("targets %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("target %d: %v, want %v", i, got[i], want[i])
		}
	}
	// No records: the domain itself on 5269 (RFC 6120 3.2.2).
	if got, err := m.targets(ctx, "plain.example"); err != nil || len(got) != 1 || got[0] != (target{"plain.example:5269", false}) {
		t.Errorf("fallback: %v %v", got, err)
	}
	// A target of "." says the domain offers no service.
	if _, err := m.targets(ctx, "none.example"); err == nil {
		t.Error("a '.' SRV target gave addresses")
	}
	// Static routes win over DNS.
	if got, _ := m.targets(ctx, "static.example"); len(got) != 1 || got[0].addr != "127.0.0.9:1234" {
		t.Errorf("static route: %v", got)
	}
}

func TestDescribeHasNoAddresses(t *testing.T) {
	_, err := net.Dial("tcp", "127.0.0.1:1")
	if d := describe(err); d != "connection refused" {
		t.Errorf("describe(%v) = %q", err, d)
	}
	if d := describe(&net.DNSError{Err: "no such host", Name: "x.example", IsNotFound: true}); d != "the domain does not exist" {
		t.Errorf("DNS: %q", d)
	}
	if d := describe(errors.New("dial tcp 192.0.2.1:5269: weird")); d != "connection failed" {
		t.Errorf("other: %q", d)
	}
}

func TestStreamLimit(t *testing.T) {
	m := &Module{MaxStreams: 1, ConnectTimeout: 1}
	m.st = &state{outs: map[pair]*out{{"a.example", "b.example"}: {}}}
	if o, err := m.stream(pair{"a.example", "b.example"}); o == nil || err != nil {
		t.Errorf("the existing stream: %v %v", o, err)
	}
	if _, err := m.stream(pair{"a.example", "c.example"}); err != errTooManyStreams {
		t.Errorf("past MaxStreams: %v", err)
	}
}
