// Package bind2 implements XEP-0386: Bind 2 (version 1.1.0) for a Treff
// server: resource binding inside a XEP-0388 (package sasl2)
// authentication, with the session's features enabled in the same step.
//
// The Module is a sasl2.Inline: put it in sasl2.Module.Inline after
// stream management's resumption. It lists
//
//	<bind xmlns='urn:xmpp:bind:0'><inline><feature var='...'/>...</inline></bind>
//
// among SASL2's inline features, with the namespace of each Feature. When
// the client's <authenticate/> carries <bind/> and authentication
// succeeds (and no session was resumed inline), it binds a resource, lets
// each Feature handle its child of <bind/> (<enable xmlns='urn:xmpp:sm:3'/>,
// <enable xmlns='urn:xmpp:carbons:2'/>, <inactive xmlns='urn:xmpp:csi:0'/>)
// and answers <bound/> with their results inside <success/>.
//
// # Resources
//
// The resource is the client's <tag/> (cut to 32 characters; left out
// if it is no valid resource) and a server-generated part, joined by
// '/' as the XEP recommends ("Conversations/3f2a9c0d1b7e"). When the
// client sent a user-agent id, that part is a short hash of the account
// and the id, so a device keeps its resource across connections, and a
// new connection of the same device replaces the old one (the XEP's
// "terminate any earlier sessions from the same client"); the id itself
// cannot be read from it. Without an id the part is random.
//
// # Features
//
// A Feature is anything with the two methods of the interface; packages
// carbons, csi and sm implement it without importing this package (their
// methods use only the treff API), so the dependency stays one-way.
//
// Not done: the XEP's clearing of offline messages on bind (it expects
// the client to fetch them from its archive, which this server does not
// require) and the archive <metadata/> in <bound/>.
package bind2

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strings"
	"unicode/utf8"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/sasl2"
	"github.com/treff-im/treff/stanza"
)

// NS is the XEP-0386 namespace.
const NS = "urn:xmpp:bind:0"

// maxTag is the most characters of the client's tag kept in a resource.
const maxTag = 32

// Feature is a session feature a client may enable inline in Bind 2.
type Feature interface {
	// Bind2Feature returns the feature's namespace, listed as
	// <feature var='...'/> in the bind feature's <inline/>, and whose
	// children of the client's <bind/> go to Bind2.
	Bind2Feature() string
	// Bind2 enables the feature on the new session s as el (a child of
	// <bind/> in the feature's namespace) asks, before the session is
	// routable and before <success/> is sent. It returns XML for
	// <bound/> (XEP-0198's <enabled/>) or "". An error fails the
	// authentication (see sasl2.Inline.Success).
	Bind2(ctx context.Context, s *treff.Session, el *treff.Nonza) (string, error)
}

// Module is Bind 2, an inline extension of SASL2.
type Module struct {
	// Features are the session features clients may enable inline.
	Features []Feature
}

var _ sasl2.Inline = (*Module)(nil)

// Inline implements sasl2.Inline.
func (m *Module) Inline(n *treff.Negotiation) string {
	var b strings.Builder
	b.WriteString("<bind xmlns='" + NS + "'>")
	if len(m.Features) > 0 {
		b.WriteString("<inline>")
		for _, f := range m.Features {
			b.WriteString("<feature var='")
			b.Write(stanza.AppendEscaped(nil, f.Bind2Feature()))
			b.WriteString("'/>")
		}
		b.WriteString("</inline>")
	}
	b.WriteString("</bind>")
	return b.String()
}

// Success implements sasl2.Inline: it binds a resource if the client
// asked for it and no session was resumed.
func (m *Module) Success(ctx context.Context, a *sasl2.Auth) (string, error) {
	req, ok := a.Child(NS, "bind")
	if !ok || a.Session != nil {
		return "", nil // not asked, or resumed (XEP-0386 3.2: skip the bind)
	}
	var tag string
	if t, ok := req.Child(NS, "tag"); ok {
		tag = t.Text()
	}
	s, err := a.N.Bind(Resource(a.User, tag, a.UserAgent.ID))
	if err != nil {
		return "", err
	}
	a.Session = s
	var b strings.Builder
	b.WriteString("<bound xmlns='" + NS + "'>")
	var done []string
	for c := range req.Children() {
		if c.Name.Space == NS || slices.Contains(done, c.Name.Space) {
			continue // one request per feature
		}
		for _, f := range m.Features {
			if f.Bind2Feature() != c.Name.Space {
				continue
			}
			done = append(done, c.Name.Space)
			el, _ := req.Child(c.Name.Space, c.Name.Local)
			x, err := f.Bind2(ctx, s, el)
			if err != nil {
				return "", err
			}
			b.WriteString(x)
			break
		}
	}
	b.WriteString("</bound>")
	return b.String(), nil
}

// Resource returns the resource Bind 2 binds for account user with the
// client's tag and user-agent id (see the package documentation): the
// same for the same three, random without an id.
func Resource(user jid.JID, tag, id string) string {
	var gen string
	if id != "" {
		sum := sha256.Sum256([]byte(NS + "\x00" + user.Bare().String() + "\x00" + id))
		gen = hex.EncodeToString(sum[:6])
	} else {
		var r [6]byte
		rand.Read(r[:])
		gen = hex.EncodeToString(r[:])
	}
	tag = strings.TrimSpace(tag)
	if utf8.RuneCountInString(tag) > maxTag {
		tag = string([]rune(tag)[:maxTag])
	}
	if tag != "" {
		if _, err := jid.New(user.Localpart(), user.Domainpart(), tag+"/"+gen); err == nil {
			return tag + "/" + gen
		}
	}
	return gen
}
