package authlimit_test

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/authlimit"
	"github.com/treff-im/treff/im"
	"github.com/treff-im/treff/saslmech"
	"github.com/treff-im/treff/trefftest"
)

func condition(err error) string {
	var se *saslmech.Error
	if errors.As(err, &se) {
		return se.Condition
	}
	if err != nil {
		return err.Error()
	}
	return ""
}

func attempt(addr, user string) treff.LoginAttempt {
	a := treff.LoginAttempt{Addr: netip.MustParseAddr(addr), Mechanism: "PLAIN", Condition: "not-authorized"}
	if user != "" {
		a.User = jid.MustParse(user)
	}
	return a
}

// An address is locked after N failures, refused before its credentials
// are looked at, and gets one attempt back every Period/N.
func TestPerAddress(t *testing.T) {
	clock := trefftest.NewClock(time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC))
	m := &authlimit.Module{PerAddress: authlimit.Rate{N: 3, Period: time.Hour}, Now: clock.Now}
	ctx := context.Background()
	a := attempt("192.0.2.7", "alice@example.org")
	for i := 0; i < 3; i++ {
		if err := m.Start(ctx, a); err != nil {
			t.Fatalf("attempt %d refused: %v", i, err)
		}
		m.Failed(ctx, a)
	}
	err := m.Start(ctx, a)
	var se *saslmech.Error
	if !errors.As(err, &se) || se.Condition != "temporary-auth-failure" || se.Text != "Too many failed logins from your address; try again in 20 minutes." {
		t.Fatalf("fourth attempt: %#v", err)
	}
	// Another address, and the same one's neighbours in IPv4, are free.
	if err := m.Start(ctx, attempt("192.0.2.8", "")); err != nil {
		t.Errorf("another address refused: %v", err)
	}
	clock.Add(20 * time.Minute)
	if err := m.Start(ctx, a); err != nil {
		t.Errorf("after Period/N: %v", err)
	}
	m.Failed(ctx, a)
	if condition(m.Start(ctx, a)) != "temporary-auth-failure" {
		t.Error("a failure after the lock's end did not lock again")
	}
	if m.Failures() != 4 || m.Refused() != 2 {
		t.Errorf("Failures, Refused = %d, %d; want 4, 2", m.Failures(), m.Refused())
	}
}

// IPv6 addresses count per /64.
func TestIPv6Prefix(t *testing.T) {
	m := &authlimit.Module{PerAddress: authlimit.Rate{N: 2, Period: time.Hour}}
	ctx := context.Background()
	m.Failed(ctx, attempt("2001:db8:1:2::1", ""))
	m.Failed(ctx, attempt("2001:db8:1:2:ffff::9", ""))
	if condition(m.Start(ctx, attempt("2001:db8:1:2::77", ""))) != "temporary-auth-failure" {
		t.Error("the same /64 is not locked")
	}
	if err := m.Start(ctx, attempt("2001:db8:1:3::1", "")); err != nil {
		t.Errorf("another /64 refused: %v", err)
	}
}

// The account ceiling refuses logins from addresses that failed, with
// the same answer as a wrong password, and never the owner's own.
func TestPerAccount(t *testing.T) {
	m := &authlimit.Module{PerAddress: authlimit.Rate{N: 100, Period: time.Hour}, PerAccount: authlimit.Rate{N: 5, Period: time.Hour}}
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		m.Failed(ctx, attempt(netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}).String(), "alice@example.org"))
	}
	if got := condition(m.Allow(ctx, attempt("198.51.100.3", "alice@example.org"))); got != "not-authorized" {
		t.Errorf("a guessing address with the right password: %q, want not-authorized", got)
	}
	if err := m.Allow(ctx, attempt("203.0.113.9", "alice@example.org")); err != nil {
		t.Errorf("the owner's address was refused: %v", err)
	}
	if err := m.Allow(ctx, attempt("198.51.100.3", "bob@example.org")); err != nil {
		t.Errorf("another account was refused: %v", err)
	}
}

// Failure answers are held back from an address's second failure on,
// doubling up to the cap.
func TestDelays(t *testing.T) {
	m := &authlimit.Module{Delay: time.Second, MaxDelay: 5 * time.Second}
	ctx := context.Background()
	a := attempt("192.0.2.1", "")
	var got []time.Duration
	for i := 0; i < 6; i++ {
		got = append(got, m.Failed(ctx, a))
	}
	want := []time.Duration{0, time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("delays %v, want %v", got, want)
		}
	}
	if d := (&authlimit.Module{Delay: -1}).Failed(ctx, a); d != 0 {
		t.Errorf("with delays off: %v", d)
	}
}

// Through a server: after the failures an address may have, even the
// right password is refused with temporary-auth-failure, over RFC 6120
// SASL; another account's owner from elsewhere is not affected (the
// tests' clients all come from 127.0.0.1, so that is checked by unit
// tests above).
func TestServer(t *testing.T) {
	m := &authlimit.Module{PerAddress: authlimit.Rate{N: 2, Period: time.Hour}, Delay: -1}
	ts := trefftest.NewServer(t, func(s *treff.Server) {
		s.Modules = append(im.Modules(), m)
	})
	ts.AddUser(t, "alice", "alicepw")
	c := ts.DialTLS(t)
	c.Send(trefftest.Header("localhost"))
	c.Expect(`</stream:features>`)
	for i := 0; i < 2; i++ {
		c.Send(trefftest.PlainAuth("alice", "wrong"))
		c.Expect(`<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>`)
	}
	d := ts.DialTLS(t)
	d.Send(trefftest.Header("localhost"))
	d.Expect(`</stream:features>`)
	d.Send(trefftest.PlainAuth("alice", "alicepw"))
	d.Expect(`<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><temporary-auth-failure/><text xml:lang='en'>Too many failed logins from your address; try again in 30 minutes.</text></failure>`)
	// The refused attempt counts as a failure too: guessing on keeps the
	// lock.
	if m.Failures() != 3 || m.Refused() != 1 {
		t.Errorf("Failures, Refused = %d, %d; want 3, 1", m.Failures(), m.Refused())
	}
}

// pairSharer is one end of an in-process link between two servers'
// modules: what one publishes, the other receives at once.
type pairSharer struct {
	peer  *pairSharer
	recv  func([]byte)
	state func() [][]byte
	mu    sync.Mutex
	sent  []string
}

func (p *pairSharer) Share(topic string, recv func([]byte), state func() [][]byte) (func([]byte), error) {
	p.mu.Lock()
	p.recv, p.state = recv, state
	p.mu.Unlock()
	// A server that starts gets the other's state (as cluster.Node asks
	// for it).
	p.peer.mu.Lock()
	peerState := p.peer.state
	p.peer.mu.Unlock()
	if peerState != nil {
		for _, e := range peerState() {
			recv(e)
		}
	}
	return func(b []byte) {
		p.mu.Lock()
		p.sent = append(p.sent, string(b))
		p.mu.Unlock()
		p.peer.mu.Lock()
		recv := p.peer.recv
		p.peer.mu.Unlock()
		if recv != nil {
			recv(b)
		}
	}, nil
}

func (p *pairSharer) HashKey(s string) string { return "hash(" + strings.ReplaceAll(s, ".", "-") + ")" }

// TestShared: two servers whose modules share their failures
// (Module.Shared): failures on one lock the address on the other, and
// what travels is the hashed address and the account.
func TestShared(t *testing.T) {
	s0, s1 := &pairSharer{}, &pairSharer{}
	s0.peer, s1.peer = s1, s0
	var ts []*trefftest.Server
	for _, s := range []*pairSharer{s0, s1} {
		m := &authlimit.Module{PerAddress: authlimit.Rate{N: 2, Period: time.Hour}, Delay: -1, Shared: s}
		ts = append(ts, trefftest.NewServer(t, func(srv *treff.Server) { srv.Modules = append(im.Modules(), m) }))
	}
	ts[1].AddUser(t, "alice", "alicepw")
	c := ts[0].DialTLS(t)
	c.Send(trefftest.Header("localhost"))
	c.Expect(`</stream:features>`)
	for range 2 {
		c.Send(trefftest.PlainAuth("alice", "wrong"))
		c.Expect(`<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>`)
	}
	d := ts[1].DialTLS(t)
	d.Send(trefftest.Header("localhost"))
	d.Expect(`</stream:features>`)
	d.Send(trefftest.PlainAuth("alice", "alicepw"))
	d.Expect(`<temporary-auth-failure/><text xml:lang='en'>Too many failed logins from your address; try again in 30 minutes.</text>`)
	want := "hash(127-0-0-1/32)\nalice@localhost"
	s0.mu.Lock()
	defer s0.mu.Unlock()
	if len(s0.sent) != 2 || s0.sent[0] != want || s0.sent[1] != want {
		t.Errorf("published %q, want %q twice", s0.sent, want)
	}
}

// TestSharedState: a server that starts after another has counted
// failures gets them (the other's state) and locks the address too.
func TestSharedState(t *testing.T) {
	s0, s1 := &pairSharer{}, &pairSharer{}
	s0.peer, s1.peer = s1, s0
	newTS := func(s *pairSharer) *trefftest.Server {
		m := &authlimit.Module{PerAddress: authlimit.Rate{N: 2, Period: time.Hour}, Delay: -1, Shared: s}
		return trefftest.NewServer(t, func(srv *treff.Server) { srv.Modules = append(im.Modules(), m) })
	}
	ts0 := newTS(s0)
	c := ts0.DialTLS(t)
	c.Send(trefftest.Header("localhost"))
	c.Expect(`</stream:features>`)
	for range 2 {
		c.Send(trefftest.PlainAuth("alice", "wrong"))
		c.Expect(`<not-authorized/>`)
	}
	ts1 := newTS(s1)
	ts1.AddUser(t, "alice", "alicepw")
	d := ts1.DialTLS(t)
	d.Send(trefftest.Header("localhost"))
	d.Expect(`</stream:features>`)
	d.Send(trefftest.PlainAuth("alice", "alicepw"))
	d.Expect(`<temporary-auth-failure/>`)
}
