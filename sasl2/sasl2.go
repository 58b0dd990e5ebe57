// Package sasl2 implements XEP-0388: Extensible SASL Profile (version
// 1.0.4) for a Treff server: authentication in one exchange that also
// carries the client's user agent and inline requests (XEP-0386 Bind 2,
// XEP-0198 resumption, XEP-0484 FAST), with no stream restart.
//
// On a TLS-protected stream that has not authenticated, the server
// offers
//
//	<authentication xmlns='urn:xmpp:sasl:2'>
//	  <mechanism>SCRAM-SHA-256</mechanism>...
//	  <inline>...</inline>
//	</authentication>
//
// with the mechanisms the stream offers for RFC 6120 SASL (which keeps
// working beside it) and what each Inline lists. The client sends
// <authenticate mechanism=...> with an optional <initial-response/>, a
// <user-agent id=.../> and inline requests; challenges and responses
// follow; the exchange ends with <failure/> (an RFC 6120 condition and
// optional <text/>) or <success/> (<additional-data/>,
// <authorization-identifier/> and the inline results), followed by the
// stream features of the authenticated stream. <abort/> ends it with
// <aborted/>. Failed attempts count against Server.MaxAuthFailures as
// with RFC 6120 SASL.
//
// Mechanisms run through treff.Negotiation.Step, with the Auth in the
// context (FromContext), so that a mechanism can read the user agent and
// the inline requests. Tasks (<continue/>) are not offered.
package sasl2

import (
	"context"
	"encoding/base64"
	"errors"
	"log/slog"
	"strings"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/saslmech"
	"github.com/treff-im/treff/stanza"
)

// NS is the XEP-0388 namespace.
const NS = "urn:xmpp:sasl:2"

// nsSASL is RFC 6120's SASL namespace, of the conditions in <failure/>.
const nsSASL = "urn:ietf:params:xml:ns:xmpp-sasl"

// maxSteps bounds the challenges of one exchange.
const maxSteps = 6

// UserAgent is the client's <user-agent id='...'><software/><device/></user-agent>
// (XEP-0388). ID is what ties FAST tokens and Bind2 resources to a device.
//
// ID is empty unless the client sent a UUID (the XEP requires version 4;
// any version is accepted), so that what builds on it never sees an
// arbitrary string. Software and Device are at most 256 bytes each (longer
// ones are cut on a character boundary); the server never shows them to
// other entities.
type UserAgent struct{ ID, Software, Device string }

// Auth is one <authenticate/> being processed.
type Auth struct {
	N         *treff.Negotiation
	Mechanism string
	UserAgent UserAgent
	User      jid.JID        // the account, once the SASL exchange succeeded
	Session   *treff.Session // once an inline step bound or resumed a session
	el        *treff.Nonza   // the <authenticate/> element
}

// Child returns the first child element of <authenticate/> with that
// namespace and local name.
func (a *Auth) Child(space, local string) (*treff.Nonza, bool) { return a.el.Child(space, local) }

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
	// and text, anything else <temporary-auth-failure/> (sasl2 logs it).
	// A session an earlier Inline bound or resumed is then given up.
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

	srv *treff.Server
}

var _ treff.Module = (*Module)(nil)

// Name implements treff.Module.
func (*Module) Name() string { return "sasl2" }

// Setup implements treff.Module.
func (m *Module) Setup(ctx context.Context, r *treff.Registry) error {
	m.srv = r.Server()
	r.AddStreamFeature(treff.StreamFeature{Phase: treff.BeforeAuth, Offer: m.feature})
	r.HandleNegotiation(NS, treff.NegotiationHandlerFunc(m.handle))
	return nil
}

// feature renders the stream feature for a stream before authentication.
func (m *Module) feature(n *treff.Negotiation) string {
	mechs := n.SASL().Mechanisms
	if len(mechs) == 0 {
		return "" // XEP-0388 2.1: never without a mechanism
	}
	var b strings.Builder
	b.WriteString("<authentication xmlns='" + NS + "'>")
	for _, name := range mechs {
		b.WriteString("<mechanism>")
		b.Write(stanza.AppendEscaped(nil, name))
		b.WriteString("</mechanism>")
	}
	var inline strings.Builder
	for _, in := range m.Inline {
		inline.WriteString(in.Inline(n))
	}
	if inline.Len() > 0 {
		b.WriteString("<inline>" + inline.String() + "</inline>")
	}
	b.WriteString("</authentication>")
	return b.String()
}

// handle handles the XEP-0388 elements a client sends before binding.
func (m *Module) handle(ctx context.Context, n *treff.Negotiation, el *treff.Nonza) error {
	if el.Name.Local != "authenticate" || n.User().Localpart() != "" {
		// <response/> or <abort/> outside an exchange, or a second
		// authentication.
		return &treff.StreamError{Condition: "policy-violation", Text: "no SASL2 exchange in progress"}
	}
	name, _ := el.Attr("mechanism")
	a := &Auth{N: n, Mechanism: name, el: el, UserAgent: userAgent(el)}
	ctx = context.WithValue(ctx, authKey{}, a)

	mech, ok := n.Mechanism(name)
	for i := 0; !ok && i < len(m.Inline); i++ {
		if ms, isMs := m.Inline[i].(Mechanisms); isMs {
			mech, ok = ms.Mechanism(a, name)
		}
	}
	if !ok || name == "" {
		return n.Write(failure("invalid-mechanism", ""))
	}
	if err := n.Begin(name); err != nil {
		// A LoginGuard refused the attempt (an address that guessed too
		// often).
		f := &Failure{Condition: "temporary-auth-failure"}
		var se *saslmech.Error
		if errors.As(err, &se) {
			f.Condition, f.Text = se.Condition, se.Text
		}
		return m.fail(n, f)
	}
	var in []byte
	if ir, ok := el.Child(NS, "initial-response"); ok {
		var err error
		if in, err = decode(ir.Text()); err != nil {
			return m.fail(n, &Failure{Condition: "incorrect-encoding"})
		}
	}
	x, err := m.start(ctx, mech, n)
	if err != nil {
		return m.fail(n, &Failure{Condition: "temporary-auth-failure"})
	}
	for i := 0; ; i++ {
		out, user, cond, err := n.Step(ctx, mech, x, in)
		if err != nil {
			f := &Failure{Condition: cond}
			var se *saslmech.Error
			if errors.As(err, &se) {
				f.Text = se.Text
			}
			return m.fail(n, f)
		}
		if !user.Equal(jid.JID{}) {
			return m.success(ctx, a, user, out)
		}
		if i >= maxSteps {
			return m.fail(n, &Failure{Condition: "malformed-request", Text: "too many steps"})
		}
		if err := n.Write([]byte("<challenge xmlns='" + NS + "'>" + base64.StdEncoding.EncodeToString(out) + "</challenge>")); err != nil {
			return err
		}
		resp, err := n.Next()
		if err != nil {
			return err
		}
		switch {
		case resp.Name.Space == NS && resp.Name.Local == "response":
			if in, err = decode(resp.Text()); err != nil {
				return m.fail(n, &Failure{Condition: "incorrect-encoding"})
			}
			if in == nil {
				in = []byte{} // <response/> is an empty response
			}
		case resp.Name.Space == NS && resp.Name.Local == "abort":
			return n.Write(failure("aborted", ""))
		default:
			// XEP-0388 2.5: nothing else while authentication is in
			// progress.
			return &treff.StreamError{Condition: "policy-violation", Text: "SASL2 exchange in progress"}
		}
	}
}

// start begins the mechanism's exchange; a panic is a failure.
func (m *Module) start(ctx context.Context, mech saslmech.Mechanism, n *treff.Negotiation) (x saslmech.Exchange, err error) {
	defer func() {
		if r := recover(); r != nil {
			m.log().Error("SASL mechanism panicked", "mechanism", mech.Name(), "panic", r)
			err = errors.New("sasl2: mechanism panicked")
		}
	}()
	return mech.Start(ctx, n.SASL()), nil
}

// success completes an exchange that authenticated user: the inline
// extensions run, then <success/> and the stream features go out.
func (m *Module) success(ctx context.Context, a *Auth, user jid.JID, data []byte) error {
	n := a.N
	if err := n.Authenticated(user); err != nil {
		var se *saslmech.Error
		if errors.As(err, &se) {
			// A LoginGuard refused the login (a suspended account, an
			// address that guessed too often).
			return m.fail(n, &Failure{Condition: se.Condition, Text: se.Text})
		}
		m.log().Error("SASL mechanism authenticated a JID that is no account of the stream's host", "mechanism", a.Mechanism)
		return m.fail(n, &Failure{Condition: "temporary-auth-failure"})
	}
	a.User = user
	var parts strings.Builder
	for _, in := range m.Inline {
		x, err := in.Success(ctx, a)
		if err != nil {
			var f *Failure
			if !errors.As(err, &f) {
				m.log().Error("SASL2 inline extension failed", "err", err)
				f = &Failure{Condition: "temporary-auth-failure"}
			}
			return m.fail(n, f)
		}
		parts.WriteString(x)
	}
	var b []byte
	b = append(b, "<success xmlns='"+NS+"'>"...)
	if len(data) > 0 {
		b = append(b, "<additional-data>"...)
		b = base64.StdEncoding.AppendEncode(b, data)
		b = append(b, "</additional-data>"...)
	}
	id := user
	if a.Session != nil {
		id = a.Session.JID()
	}
	b = append(b, "<authorization-identifier>"...)
	b = stanza.AppendEscaped(b, id.String())
	b = append(b, "</authorization-identifier>"...)
	b = append(b, parts.String()...)
	b = append(b, "</success>"...)
	// No restart (XEP-0388 2.6.1): the features of the authenticated
	// stream follow at once.
	b = append(b, n.Features()...)
	m.log().Debug("SASL2 authenticated", "user", user.String(), "mechanism", a.Mechanism, "jid", id.String())
	if a.Session != nil {
		// After <success/>, before any stanza (Negotiation.Bind).
		return a.Session.SendNonza(b)
	}
	return n.Write(b)
}

// fail answers <failure/> and counts the failed attempt.
func (m *Module) fail(n *treff.Negotiation, f *Failure) error {
	err := n.Failed()
	if werr := n.Write(failure(f.Condition, f.Text)); werr != nil {
		return werr
	}
	return err
}

func (m *Module) log() *slog.Logger { return m.srv.Log() }

func failure(cond, text string) []byte {
	b := []byte("<failure xmlns='" + NS + "'><" + cond + " xmlns='" + nsSASL + "'/>")
	if text != "" {
		b = append(b, "<text>"...)
		b = stanza.AppendEscaped(b, text)
		b = append(b, "</text>"...)
	}
	return append(b, "</failure>"...)
}

// decode decodes base64 SASL data; empty text is an empty message.
func decode(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return []byte{}, nil
	}
	return base64.StdEncoding.DecodeString(s)
}

const maxUserAgentField = 256

// userAgent reads <user-agent/> from <authenticate/>.
func userAgent(el *treff.Nonza) UserAgent {
	var ua UserAgent
	u, ok := el.Child(NS, "user-agent")
	if !ok {
		return ua
	}
	if id, _ := u.Attr("id"); isUUID(id) {
		ua.ID = strings.ToLower(id)
	}
	for c := range u.Children() {
		if c.Name.Space != NS {
			continue
		}
		switch c.Name.Local {
		case "software":
			ua.Software = cut(strings.TrimSpace(c.Text()), maxUserAgentField)
		case "device":
			ua.Device = cut(strings.TrimSpace(c.Text()), maxUserAgentField)
		}
	}
	return ua
}

// isUUID reports whether s is a UUID in its textual form (RFC 9562 4).
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// cut shortens s to at most n bytes on a character boundary.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}
