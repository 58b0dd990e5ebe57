package treff

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff/saslmech"
)

// A LoginGuard is asked about every authentication attempt on a client
// stream, whatever the protocol (RFC 6120 SASL or XEP-0388 SASL2) and
// mechanism: it can refuse a login whose credentials were right (a
// suspended account; an address that guessed too often) and hold back the
// answer to a failed one (password guessing). Modules register guards
// with Registry.GuardLogins; the server has none of its own besides
// Server.MaxAuthFailures per stream.
type LoginGuard interface {
	// Start is asked before an exchange begins, with the client's
	// address and the mechanism (a.User is zero). An error refuses the
	// attempt at once, without looking at the credentials, so that an
	// address that guessed too often gets the same answer whatever it
	// sends: a *saslmech.Error with its condition and text, anything
	// else "temporary-auth-failure". A refused start counts as a failed
	// attempt (Failed is told, with the error's condition).
	Start(ctx context.Context, a LoginAttempt) error
	// Allow is asked when the client proved it is a.User, before the
	// stream counts as authenticated. An error refuses the login with a
	// SASL failure: a *saslmech.Error with its condition and text (e.g.
	// "account-disabled"), anything else "temporary-auth-failure". A
	// refused login counts against Server.MaxAuthFailures like a failed
	// one, but is not passed to Failed.
	Allow(ctx context.Context, a LoginAttempt) error
	// Failed is told of an attempt that failed (wrong credentials,
	// unknown account, a malformed exchange), not of a SCRAM -PLUS
	// attempt refused for a channel-binding type the stream does not
	// offer (no credential was tried). It returns how long the
	// server holds the failure's answer back, to slow down guessing; 0
	// for not at all.
	Failed(ctx context.Context, a LoginAttempt) time.Duration
}

// A LoginAttempt describes one authentication attempt to a LoginGuard.
type LoginAttempt struct {
	// Addr is the client's IP address as the transport sees it (behind a
	// reverse proxy, the proxy's), or the zero Addr if unknown. The
	// server never stores or logs it; a guard must keep it in memory
	// only.
	Addr netip.Addr
	// User is the account's bare JID: for Allow the one that
	// authenticated; for Failed the one the client tried, if the
	// mechanism says (saslmech.Identified), else the zero JID.
	User jid.JID
	// Mechanism is the SASL mechanism's name.
	Mechanism string
	// Condition is the SASL failure condition the client gets (Failed
	// only), e.g. "not-authorized".
	Condition string
}

// GuardLogins adds g to the guards asked about every authentication
// attempt on client streams (see LoginGuard). With several guards, a
// login is allowed when every guard allows it, and a failure's answer is
// held back for the longest of their delays.
func (r *Registry) GuardLogins(g LoginGuard) {
	r.m.guards = append(r.m.guards, newHook(r, g))
}

// maxLoginDelay caps a guard's delay: a stream's negotiation deadline
// ends it anyway.
const maxLoginDelay = 30 * time.Second

// remoteAddr is the client's IP address for LoginAttempt.Addr.
func (c *conn) remoteAddr() netip.Addr {
	if c.nc == nil {
		return netip.Addr{}
	}
	switch a := c.nc.RemoteAddr().(type) {
	case *net.TCPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	case nil:
		return netip.Addr{}
	default:
		ap, err := netip.ParseAddrPort(a.String())
		if err != nil {
			return netip.Addr{}
		}
		return ap.Addr().Unmap()
	}
}

// startLogin asks the guards whether an exchange of mechanism may begin.
func (c *conn) startLogin(mechanism string) *saslmech.Error {
	srv := c.srv
	c.tryMech, c.tryUser = mechanism, jid.JID{}
	if len(srv.mods.guards) == 0 {
		return nil
	}
	a := LoginAttempt{Addr: c.remoteAddr(), Mechanism: mechanism}
	for _, g := range srv.mods.guards {
		if err := srv.guardStart(c.ctx, g, a); err != nil {
			return c.guardError(g, err)
		}
	}
	return nil
}

// guardError is the *saslmech.Error for a guard's refusal.
func (c *conn) guardError(g hook[LoginGuard], err error) *saslmech.Error {
	var se *saslmech.Error
	if errors.As(err, &se) {
		return se
	}
	if !errors.Is(err, errPanicked) {
		c.srv.logger().Error("login guard failed", "module", g.module, "err", err)
	}
	return &saslmech.Error{Condition: "temporary-auth-failure"}
}

// allowLogin asks the guards whether user may log in; the error is a
// *saslmech.Error for the client.
func (c *conn) allowLogin(user jid.JID, mechanism string) error {
	srv := c.srv
	if len(srv.mods.guards) == 0 {
		return nil
	}
	a := LoginAttempt{Addr: c.remoteAddr(), User: user.Bare(), Mechanism: mechanism}
	for _, g := range srv.mods.guards {
		if err := srv.guardAllow(c.ctx, g, a); err != nil {
			return c.guardError(g, err)
		}
	}
	return nil
}

// loginFailed tells the guards of a failed attempt and waits for the
// longest delay they ask for (or the end of the negotiation).
func (c *conn) loginFailed(cond string) {
	srv := c.srv
	if len(srv.mods.guards) == 0 {
		return
	}
	a := LoginAttempt{Addr: c.remoteAddr(), User: c.tryUser, Mechanism: c.tryMech, Condition: cond}
	var wait time.Duration
	for _, g := range srv.mods.guards {
		wait = max(wait, srv.guardFailed(c.ctx, g, a))
	}
	if wait <= 0 {
		return
	}
	t := time.NewTimer(min(wait, maxLoginDelay))
	defer t.Stop()
	select {
	case <-t.C:
	case <-c.ctx.Done():
	}
}

// noteTry records which account an exchange tries (saslmech.Identified),
// for the guards.
func (c *conn) noteTry(mechanism string, x saslmech.Exchange) {
	c.tryMech, c.tryUser = mechanism, jid.JID{}
	if id, ok := x.(saslmech.Identified); ok {
		if u := id.Username(); u != "" {
			if j, err := jid.New(u, c.host, ""); err == nil {
				c.tryUser = j
			}
		}
	}
}
