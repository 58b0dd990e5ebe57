// Package sasl2 implements XEP-0388: Extensible SASL Profile.
//
// This file holds only the declarations of /work/shared/contracts/sasl2-api.md,
// so that package fast (XEP-0484) compiles against them on its own branch.
// It has no behaviour: the real package sasl2 replaces this file when the
// branches merge.
package sasl2

import (
	"context"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/saslmech"
)

// NS is the XEP-0388 namespace.
const NS = "urn:xmpp:sasl:2"

// UserAgent is the client's <user-agent id='...'><software/><device/></user-agent>
// (XEP-0388). ID is what ties FAST tokens and Bind2 resources to a device.
type UserAgent struct{ ID, Software, Device string }

// Auth is one <authenticate/> being processed.
type Auth struct {
	N         *treff.Negotiation
	Mechanism string
	UserAgent UserAgent
	User      jid.JID        // the account, once the SASL exchange succeeded
	Session   *treff.Session // once an inline step bound or resumed a session

	el *treff.Nonza // the <authenticate/> element
}

// Child returns the first child element of <authenticate/> with that
// namespace and local name. (Declaration only: the real package finds it
// in the element.)
func (a *Auth) Child(space, local string) (*treff.Nonza, bool) { return nil, false }

type authKey struct{}

// FromContext returns the Auth in progress; the context handed to a SASL
// mechanism's Start and Exchange.Step during SASL2 carries it (FAST's HT-*
// mechanisms read the user agent and the <fast xmlns='urn:xmpp:fast:0'/> child).
func FromContext(ctx context.Context) (*Auth, bool) {
	a, ok := ctx.Value(authKey{}).(*Auth)
	return a, ok
}

// Inline is an extension carried in SASL2 (XEP-0388 inline features).
type Inline interface {
	// Inline returns the element to list inside <inline/> of the
	// <authentication xmlns='urn:xmpp:sasl:2'/> stream feature on this
	// stream, or "" for none.
	Inline(n *treff.Negotiation) string
	// Success runs after the SASL exchange succeeded, in the order of
	// Module.Inline, before <success/> is written. It returns XML to put
	// in <success/> after <authorization-identifier/> (may be ""). An
	// error makes the outcome <failure/>: a *Failure gives its condition
	// and text, anything else <aborted/> (sasl2 logs it).
	Success(ctx context.Context, a *Auth) (string, error)
}

// Mechanisms is optional on an Inline: SASL mechanisms usable only through
// it (FAST's HT-*), looked up when the client names a mechanism the stream
// does not offer among its ordinary ones.
type Mechanisms interface {
	Mechanism(a *Auth, name string) (saslmech.Mechanism, bool)
}

// Failure is a SASL2 <failure/> condition (RFC 6120 6.5 names, e.g.
// "not-authorized", "credentials-expired") with an optional text.
type Failure struct{ Condition, Text string }

func (f *Failure) Error() string { return "sasl2: " + f.Condition }

// Module offers SASL2.
type Module struct {
	// Inline are the inline extensions in the order their Success runs:
	// stream management's resumption first, then Bind2, then FAST.
	Inline []Inline
}
