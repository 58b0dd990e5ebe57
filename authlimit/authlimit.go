// Package authlimit slows down password guessing on a Treff server: it
// limits failed logins per client address and, as a slow ceiling, per
// account, and holds the answers to repeated failures back for longer and
// longer. Client addresses are kept in memory only, never written or
// logged.
//
// An address that failed Module.PerAddress.N times within
// PerAddress.Period is locked: its further attempts are refused at once
// with <temporary-auth-failure/> and a text saying when to try again,
// before any credential is looked at, so that a guess gets the same answer
// whether it is right or wrong; one attempt comes back every Period/N.
// IPv6 addresses count per /64, the block one subscriber usually has.
//
// An account that failed PerAccount.N times within PerAccount.Period (a
// guessing attack spread over many addresses) stops accepting logins from
// the addresses that failed on any account recently; they get
// <not-authorized/>, as for a wrong password, so that the ceiling does not
// tell them when a guess was right. The account's owner, logging in from
// an address without failures, is not locked out by someone else's
// guesses.
//
// From the second failure of an address on, its failure answers are held
// back: Delay, then twice as long each time, at most MaxDelay.
package authlimit

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/saslmech"
)

// Rate is N events per Period.
type Rate struct {
	N      int
	Period time.Duration
}

func (r Rate) String() string { return fmt.Sprintf("%d/%s", r.N, r.Period) }

// Defaults.
var (
	// DefaultPerAddress is ejabberd mod_fail2ban's default: 20 failed
	// logins an hour from one address.
	DefaultPerAddress = Rate{N: 20, Period: time.Hour}
	// DefaultPerAccount is the ceiling per account.
	DefaultPerAccount = Rate{N: 100, Period: time.Hour}
)

const (
	// DefaultDelay is the hold-back of an address's second failure.
	DefaultDelay = time.Second
	// DefaultMaxDelay caps the hold-back.
	DefaultMaxDelay = 8 * time.Second
	// DefaultMaxTracked is how many addresses and accounts are tracked at
	// most each; beyond it, those whose limits have refilled are
	// forgotten first, then the oldest.
	DefaultMaxTracked = 100000
)

// Module limits failed logins. The zero value uses the defaults.
type Module struct {
	// PerAddress limits failed logins per client address (per /64 for
	// IPv6). Zero means DefaultPerAddress; N < 0 disables it.
	PerAddress Rate
	// PerAccount is the ceiling per account. Zero means
	// DefaultPerAccount; N < 0 disables it.
	PerAccount Rate
	// Delay is the hold-back of an address's second failure, doubled for
	// each further one up to MaxDelay. 0 means DefaultDelay; negative
	// disables delays.
	Delay time.Duration
	// MaxDelay caps the hold-back. 0 means DefaultMaxDelay.
	MaxDelay time.Duration
	// MaxTracked bounds the addresses and the accounts tracked, each. 0
	// means DefaultMaxTracked.
	MaxTracked int
	// Now returns the current time. nil means time.Now.
	Now func() time.Time
	// Shared, if set, shares the failures with the other servers that
	// serve the same users (the nodes of a cluster; *cluster.Node is
	// one), so that the limits hold for all of them together. nil means
	// this server counts alone.
	Shared Sharer

	mu       sync.Mutex
	addrs    map[string]*bucket // by addrKey
	publish  func([]byte)
	accounts map[string]*bucket
	failures atomic.Uint64
	refused  atomic.Uint64
}

var (
	_ treff.Module     = (*Module)(nil)
	_ treff.LoginGuard = (*Module)(nil)
)

// Sharer shares counts with other servers: each server counts a failure
// in its own memory and publishes it; the others add it to theirs. A
// server that cannot reach the others counts alone meanwhile. The module
// publishes "KEY\nACCOUNT" per failure, where KEY is the client address
// (its /64 for IPv6) hashed with HashKey, and ACCOUNT the bare JID tried
// (either may be empty). Its state is "=a TOKENS AT KEY" per address and
// "=u TOKENS AT ACCOUNT" per account that failed recently (AT in Unix
// nanoseconds), which a server merges by keeping the fewer tokens.
type Sharer interface {
	// Share subscribes recv to the events the other servers publish on
	// topic and returns the function that publishes this server's
	// events to them (not to itself). recv must not block. A server
	// that starts (or meets another) gets the others' state, from their
	// state function, through recv too.
	Share(topic string, recv func(data []byte), state func() [][]byte) (publish func(data []byte), err error)
	// HashKey returns a keyed hash of s that is the same on every server
	// and cannot be reversed without the key, so that client addresses
	// never leave the server that saw them.
	HashKey(s string) string
}

// ShareTopic is the topic the module shares failures on.
const ShareTopic = "authlimit"

// Name implements treff.Module.
func (m *Module) Name() string { return "authlimit" }

// Setup implements treff.Module.
func (m *Module) Setup(ctx context.Context, r *treff.Registry) error {
	if m.Shared != nil {
		pub, err := m.Shared.Share(ShareTopic, m.failedElsewhere, m.state)
		if err != nil {
			return fmt.Errorf("authlimit: sharing the limits: %w", err)
		}
		m.publish = pub
	}
	r.GuardLogins(m)
	return nil
}

// addrKey is what an address prefix counts under: the prefix, hashed
// with Shared.HashKey if the counts are shared.
func (m *Module) addrKey(p netip.Prefix) string {
	if m.Shared != nil {
		return m.Shared.HashKey(p.String())
	}
	return p.String()
}

// failedElsewhere counts a failure another server published, or merges
// a bucket of its state.
func (m *Module) failedElsewhere(data []byte) {
	if len(data) > 0 && data[0] == '=' {
		m.merge(string(data[1:]))
		return
	}
	key, account, ok := strings.Cut(string(data), "\n")
	if !ok {
		return
	}
	m.count(key, account, m.now())
}

// merge takes a bucket of another server's state ("a TOKENS AT KEY" or
// "u TOKENS AT ACCOUNT") if it has fewer tokens than this server's (the
// same failures may have come as events too).
func (m *Module) merge(entry string) {
	f := strings.SplitN(entry, " ", 4)
	if len(f) != 4 || f[3] == "" {
		return
	}
	tokens, err1 := strconv.ParseFloat(f[1], 64)
	at, err2 := strconv.ParseInt(f[2], 10, 64)
	if err1 != nil || err2 != nil {
		return
	}
	var mp map[string]*bucket
	var r Rate
	m.mu.Lock()
	defer m.mu.Unlock()
	switch f[0] {
	case "a":
		if r = m.perAddress(); r.N < 0 {
			return
		}
		if m.addrs == nil {
			m.addrs = make(map[string]*bucket)
		}
		mp = m.addrs
	case "u":
		if r = m.perAccount(); r.N < 0 {
			return
		}
		if m.accounts == nil {
			m.accounts = make(map[string]*bucket)
		}
		mp = m.accounts
	default:
		return
	}
	t := m.now()
	in := &bucket{tokens: max(min(tokens, float64(r.N)), -float64(r.N)), at: time.Unix(0, at)}
	if in.at.After(t) {
		in.at = t
	}
	if in.level(r, t) >= float64(r.N) {
		return // refilled: nothing to remember
	}
	b := mp[f[3]]
	if b == nil {
		if len(mp) >= m.maxTracked() {
			evict(mp, r, t)
		}
		mp[f[3]] = in
		return
	}
	if in.tokens < b.level(r, t) {
		b.tokens = in.tokens
	}
}

// state returns the buckets that have not refilled, for a server that
// starts (Sharer).
func (m *Module) state() [][]byte {
	t := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	var out [][]byte
	add := func(kind string, mp map[string]*bucket, r Rate) {
		if r.N < 0 {
			return
		}
		for k, b := range mp {
			if k != "" && b.level(r, t) < float64(r.N) {
				out = append(out, fmt.Appendf(nil, "=%s %g %d %s", kind, b.tokens, b.at.UnixNano(), k))
			}
		}
	}
	add("a", m.addrs, m.perAddress())
	add("u", m.accounts, m.perAccount())
	return out
}

// count counts a failure against the address key and the account (each
// if not empty) and returns the address's recent failures.
func (m *Module) count(key, account string, t time.Time) (fails int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r := m.perAddress(); r.N >= 0 && key != "" {
		if m.addrs == nil {
			m.addrs = make(map[string]*bucket)
		}
		b := take(m.addrs, key, r, t, m.maxTracked())
		fails = int(float64(r.N) - b.tokens + 0.5)
	}
	if r := m.perAccount(); r.N >= 0 && account != "" {
		if m.accounts == nil {
			m.accounts = make(map[string]*bucket)
		}
		take(m.accounts, account, r, t, m.maxTracked())
	}
	return fails
}

// Failures returns how many failed logins the module was told of since
// the start (for metrics).
func (m *Module) Failures() uint64 { return m.failures.Load() }

// Refused returns how many attempts it refused since the start.
func (m *Module) Refused() uint64 { return m.refused.Load() }

// bucket is a token bucket of failures: full is no recent failure.
type bucket struct {
	tokens float64
	at     time.Time // when tokens was last brought up to date
}

// level brings b up to t and returns its tokens.
func (b *bucket) level(r Rate, t time.Time) float64 {
	if d := t.Sub(b.at); d > 0 {
		b.tokens = min(float64(r.N), b.tokens+d.Seconds()*float64(r.N)/r.Period.Seconds())
		b.at = t
	}
	return b.tokens
}

func (m *Module) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

func orRate(r, def Rate) Rate {
	if r.N == 0 || r.Period <= 0 {
		return def
	}
	return r
}

func (m *Module) perAddress() Rate { return orRate(m.PerAddress, DefaultPerAddress) }
func (m *Module) perAccount() Rate { return orRate(m.PerAccount, DefaultPerAccount) }

// prefix is the unit an address counts in: the address itself, or its
// /64 for IPv6.
func prefix(a netip.Addr) (netip.Prefix, bool) {
	if !a.IsValid() {
		return netip.Prefix{}, false
	}
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p, true
	}
	return netip.PrefixFrom(a, 32), true
}

// Start implements treff.LoginGuard: a locked address is refused.
func (m *Module) Start(ctx context.Context, a treff.LoginAttempt) error {
	r := m.perAddress()
	p, ok := prefix(a.Addr)
	if r.N < 0 || !ok {
		return nil
	}
	t := m.now()
	key := m.addrKey(p)
	m.mu.Lock()
	b := m.addrs[key]
	var tokens float64
	if b != nil {
		tokens = b.level(r, t)
	}
	m.mu.Unlock()
	if b == nil || tokens >= 1 {
		return nil
	}
	m.refused.Add(1)
	wait := time.Duration((1 - tokens) * float64(r.Period) / float64(r.N))
	return &saslmech.Error{Condition: "temporary-auth-failure",
		Text: "Too many failed logins from your address; try again in " + roundUp(wait) + "."}
}

// roundUp says d in whole minutes (or seconds, under a minute).
func roundUp(d time.Duration) string {
	if d < time.Minute {
		s := int((d + time.Second - 1) / time.Second)
		if s <= 1 {
			return "a second"
		}
		return fmt.Sprintf("%d seconds", s)
	}
	n := int((d + time.Minute - 1) / time.Minute)
	if n == 1 {
		return "a minute"
	}
	return fmt.Sprintf("%d minutes", n)
}

// Allow implements treff.LoginGuard: an account over its ceiling refuses
// logins from addresses that failed recently.
func (m *Module) Allow(ctx context.Context, a treff.LoginAttempt) error {
	r := m.perAccount()
	if r.N < 0 {
		return nil
	}
	t := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	b := m.accounts[a.User.String()]
	if b == nil || b.level(r, t) >= 1 {
		return nil
	}
	// The account is over its ceiling: only addresses without recent
	// failures get in.
	if p, ok := prefix(a.Addr); ok {
		if ab := m.addrs[m.addrKey(p)]; ab == nil || ab.level(m.perAddress(), t) >= float64(m.perAddress().N) {
			return nil
		}
	}
	m.refused.Add(1)
	return &saslmech.Error{Condition: "not-authorized"}
}

// Failed implements treff.LoginGuard: it counts the failure against the
// address and the account and returns the hold-back.
func (m *Module) Failed(ctx context.Context, a treff.LoginAttempt) time.Duration {
	m.failures.Add(1)
	var key, account string
	if p, ok := prefix(a.Addr); ok {
		key = m.addrKey(p)
	}
	if a.User.Localpart() != "" {
		account = a.User.String()
	}
	fails := m.count(key, account, m.now())
	if m.publish != nil {
		m.publish([]byte(key + "\n" + account))
	}
	return m.delay(fails)
}

// take counts one failure in the bucket of k, made full if new; a bucket
// goes down to -N, so that guessing on keeps a lock for up to two
// periods.
func take[K comparable](mp map[K]*bucket, k K, r Rate, t time.Time, maxTracked int) *bucket {
	b := mp[k]
	if b == nil {
		if len(mp) >= maxTracked {
			evict(mp, r, t)
		}
		b = &bucket{tokens: float64(r.N), at: t}
		mp[k] = b
	}
	b.level(r, t)
	b.tokens = max(b.tokens-1, -float64(r.N))
	return b
}

// evict forgets the buckets that have refilled, or if none has, the
// longest untouched tenth.
func evict[K comparable](mp map[K]*bucket, r Rate, t time.Time) {
	n := len(mp)
	for k, b := range mp {
		if b.level(r, t) >= float64(r.N) {
			delete(mp, k)
		}
	}
	if len(mp) < n {
		return
	}
	var oldest time.Time
	for _, b := range mp {
		if oldest.IsZero() || b.at.Before(oldest) {
			oldest = b.at
		}
	}
	cut := oldest.Add(t.Sub(oldest) / 10)
	for k, b := range mp {
		if !b.at.After(cut) {
			delete(mp, k)
		}
	}
}

func (m *Module) maxTracked() int {
	if m.MaxTracked > 0 {
		return m.MaxTracked
	}
	return DefaultMaxTracked
}

// delay is the hold-back after an address's fails-th recent failure.
func (m *Module) delay(fails int) time.Duration {
	if m.Delay < 0 || fails < 2 {
		return 0
	}
	d := m.Delay
	if d == 0 {
		d = DefaultDelay
	}
	limit := m.MaxDelay
	if limit <= 0 {
		limit = DefaultMaxDelay
	}
	for i := 2; i < fails && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}
