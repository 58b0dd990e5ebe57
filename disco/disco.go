// Package disco implements XEP-0030: Service Discovery for a Treff server,
// and advertises XEP-0115: Entity Capabilities in the stream features.
//
// The server's hosts answer disco#info with the identities and features
// every module registered, and disco#items with the registered items (group
// chat, upload services, ...). Queries to an account's bare JID are answered
// on behalf of the account (RFC 6120 10.3.3), to the account itself and to
// contacts with a presence subscription ('from' or 'both'); others get
// <service-unavailable/>, so that disco does not reveal which accounts
// exist.
package disco

import (
	"context"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/dataform"
	"github.com/treff-im/treff/discoinfo"
	"github.com/treff-im/treff/stanza"
	"github.com/treff-im/treff/storage"
)

// Namespaces.
const (
	NSInfo  = "http://jabber.org/protocol/disco#info"
	NSItems = "http://jabber.org/protocol/disco#items"
	NSCaps  = "http://jabber.org/protocol/caps"
)

// CapsNode is the node advertised in entity capabilities.
const CapsNode = "https://github.com/treff-im/treff"

// ServerInfo is the FORM_TYPE of the server's contact addresses
// (XEP-0157).
const ServerInfo = "http://jabber.org/network/serverinfo"

// ContactKinds are the kinds of contact address XEP-0157 defines; a
// Contacts key is one of them.
var ContactKinds = []string{"abuse", "admin", "feedback", "sales", "security", "status", "support"}

// Module is the service discovery module.
type Module struct {
	// ServerName is the name in the server's identity; "" means "Treff".
	ServerName string
	// Contacts are the server's contact addresses (XEP-0157) by kind
	// ("abuse", "admin", "security", "support", ...; see ContactKinds):
	// URIs such as xmpp:abuse@example.org, mailto:abuse@example.org or
	// https://example.org/contact. They are published in the server's
	// disco#info as a http://jabber.org/network/serverinfo form (and so
	// in its entity capabilities hash). The JabberSPAM manifesto asks
	// servers for an abuse address.
	Contacts map[string][]string

	srv     *treff.Server
	once    sync.Once
	info    []byte // host disco#info payload content
	ver     string
	rosters storage.Rosters
}

var _ treff.Module = (*Module)(nil)

// Name implements treff.Module.
func (m *Module) Name() string { return "disco" }

// Setup implements treff.Module.
func (m *Module) Setup(ctx context.Context, r *treff.Registry) error {
	for kind, uris := range m.Contacts {
		if !slices.Contains(ContactKinds, kind) {
			return fmt.Errorf("disco: %q is not a XEP-0157 contact kind (%s)", kind, strings.Join(ContactKinds, ", "))
		}
		for _, u := range uris {
			if err := CheckContactURI(u); err != nil {
				return fmt.Errorf("disco: %s address: %w", kind, err)
			}
		}
	}
	m.srv = r.Server()
	if m.srv.Storage != nil {
		m.rosters = m.srv.Storage
	}
	r.AddFeature(NSInfo)
	r.AddFeature(NSItems)
	r.AddAccountFeature(NSInfo)
	r.AddAccountFeature(NSItems)
	r.HandleIQ(NSInfo, treff.IQHandlerFunc(m.hostInfo))
	r.HandleIQ(NSItems, treff.IQHandlerFunc(m.hostItems))
	r.HandleAccountIQ(NSInfo, treff.IQHandlerFunc(m.accountInfo))
	r.HandleAccountIQ(NSItems, treff.IQHandlerFunc(m.accountItems))
	r.AddStreamFeature(treff.StreamFeature{Phase: treff.BeforeAuth, Render: m.capsFeature})
	r.AddStreamFeature(treff.StreamFeature{Phase: treff.AfterAuth, Render: m.capsFeature})
	return nil
}

func (m *Module) build() {
	m.once.Do(func() {
		name := m.ServerName
		if name == "" {
			name = "Treff"
		}
		ids := append([]discoinfo.Identity{{Category: "server", Type: "im", Name: name}}, m.srv.Identities(false)...)
		sort.Slice(ids, func(i, j int) bool {
			a, b := ids[i], ids[j]
			if a.Category != b.Category {
				return a.Category < b.Category
			}
			if a.Type != b.Type {
				return a.Type < b.Type
			}
			return a.Name < b.Name
		})
		feats := m.srv.Features(false)
		sort.Strings(feats)
		var b []byte
		var s strings.Builder
		for _, id := range ids {
			b = appendIdentity(b, id)
			s.WriteString(id.Category + "/" + id.Type + "//" + id.Name + "<")
		}
		for _, f := range feats {
			b = append(b, "<feature var='"...)
			b = treff.AppendEscaped(b, f)
			b = append(b, "'/>"...)
			s.WriteString(f + "<")
		}
		if form, ok := m.contactForm(); ok {
			b = form.Append(b, "result")
			// XEP-0115 5.1: FORM_TYPE, then each field (sorted by
			// var) with its values (sorted).
			s.WriteString(ServerInfo + "<")
			for _, f := range form.Fields[1:] {
				s.WriteString(f.Var + "<")
				vs := slices.Clone(f.Values)
				sort.Strings(vs)
				for _, v := range vs {
					s.WriteString(v + "<")
				}
			}
		}
		m.info = b
		sum := sha1.Sum([]byte(s.String()))
		m.ver = base64.StdEncoding.EncodeToString(sum[:])
	})
}

// Ver returns the XEP-0115 verification string of the server's hosts.
func (m *Module) Ver() string {
	m.build()
	return m.ver
}

func (m *Module) capsFeature() string {
	m.build()
	return "<c xmlns='" + NSCaps + "' hash='sha-1' node='" + CapsNode + "' ver='" + m.ver + "'/>"
}

type query struct {
	Query struct {
		Node string `xml:"node,attr"`
	} `xml:"query"`
}

func node(iq *treff.Stanza) (string, error) {
	var q query
	if err := iq.Decoder().Decode(&q); err != nil {
		return "", stanza.BadRequest
	}
	return q.Query.Node, nil
}

func wrap(ns, node string, inner []byte) []byte {
	b := append([]byte(nil), "<query xmlns='"+ns+"'"...)
	if node != "" {
		b = append(b, " node='"...)
		b = treff.AppendEscaped(b, node)
		b = append(b, '\'')
	}
	b = append(b, '>')
	b = append(b, inner...)
	return append(b, "</query>"...)
}

func (m *Module) hostInfo(ctx context.Context, iq *treff.Stanza) ([]byte, error) {
	if iq.Type != "get" {
		return nil, stanza.BadRequest
	}
	n, err := node(iq)
	if err != nil {
		return nil, err
	}
	m.build()
	if n != "" && n != CapsNode+"#"+m.ver {
		h, ok := m.srv.DiscoNode(n)
		if !ok {
			return nil, stanza.ItemNotFound
		}
		ids, feats := h.DiscoInfo(ctx, iq.From)
		var b []byte
		for _, id := range ids {
			b = appendIdentity(b, id)
		}
		for _, f := range feats {
			b = append(b, "<feature var='"...)
			b = treff.AppendEscaped(b, f)
			b = append(b, "'/>"...)
		}
		return wrap(NSInfo, n, b), nil
	}
	return wrap(NSInfo, n, m.info), nil
}

func (m *Module) hostItems(ctx context.Context, iq *treff.Stanza) ([]byte, error) {
	if iq.Type != "get" {
		return nil, stanza.BadRequest
	}
	n, err := node(iq)
	if err != nil {
		return nil, err
	}
	items := m.srv.Items()
	if n != "" {
		h, ok := m.srv.DiscoNode(n)
		if !ok {
			return nil, stanza.ItemNotFound
		}
		items = h.DiscoItems(ctx, iq.From)
	}
	var b []byte
	for _, it := range items {
		b = append(b, "<item jid='"...)
		b = treff.AppendEscaped(b, it.JID)
		if it.Node != "" {
			b = append(b, "' node='"...)
			b = treff.AppendEscaped(b, it.Node)
		}
		if it.Name != "" {
			b = append(b, "' name='"...)
			b = treff.AppendEscaped(b, it.Name)
		}
		b = append(b, "'/>"...)
	}
	return wrap(NSItems, n, b), nil
}

// allowed reports whether the requester may discover the account: the
// account itself, or a contact the account shares its presence with.
func (m *Module) allowed(ctx context.Context, iq *treff.Stanza) (account string, ok bool) {
	requester := iq.From.Bare().String()
	account = requester
	if iq.To.Localpart() != "" {
		account = iq.To.Bare().String()
	}
	if account == requester {
		return account, true
	}
	if m.rosters == nil {
		return account, false
	}
	it, err := m.rosters.RosterItem(ctx, account, requester)
	if err != nil {
		// not found, or the store failed: reveal nothing
		return account, false
	}
	return account, it.Subscription == storage.SubFrom || it.Subscription == storage.SubBoth
}

func (m *Module) accountInfo(ctx context.Context, iq *treff.Stanza) ([]byte, error) {
	if iq.Type != "get" {
		return nil, stanza.BadRequest
	}
	n, err := node(iq)
	if err != nil {
		return nil, err
	}
	if _, ok := m.allowed(ctx, iq); !ok {
		return nil, stanza.ServiceUnavailable
	}
	if n != "" {
		return nil, stanza.ItemNotFound
	}
	b := []byte("<identity category='account' type='registered'/>")
	for _, id := range m.srv.Identities(true) {
		b = appendIdentity(b, id)
	}
	feats := m.srv.Features(true)
	sort.Strings(feats)
	for _, f := range feats {
		b = append(b, "<feature var='"...)
		b = treff.AppendEscaped(b, f)
		b = append(b, "'/>"...)
	}
	return wrap(NSInfo, "", b), nil
}

func (m *Module) accountItems(ctx context.Context, iq *treff.Stanza) ([]byte, error) {
	if iq.Type != "get" {
		return nil, stanza.BadRequest
	}
	if _, ok := m.allowed(ctx, iq); !ok {
		return nil, stanza.ServiceUnavailable
	}
	if _, err := node(iq); err != nil {
		return nil, err
	}
	return wrap(NSItems, "", nil), nil
}

func appendIdentity(b []byte, id discoinfo.Identity) []byte {
	b = append(b, "<identity category='"...)
	b = treff.AppendEscaped(b, id.Category)
	b = append(b, "' type='"...)
	b = treff.AppendEscaped(b, id.Type)
	if id.Name != "" {
		b = append(b, "' name='"...)
		b = treff.AppendEscaped(b, id.Name)
	}
	return append(b, "'/>"...)
}

// contactForm returns the XEP-0157 form: FORM_TYPE, then one field per
// kind with addresses, sorted by var.
func (m *Module) contactForm() (dataform.Form, bool) {
	var kinds []string
	for kind, uris := range m.Contacts {
		if len(uris) > 0 {
			kinds = append(kinds, kind)
		}
	}
	if len(kinds) == 0 {
		return dataform.Form{}, false
	}
	sort.Strings(kinds)
	form := dataform.Form{Fields: []dataform.Field{dataform.FormType(ServerInfo)}}
	for _, kind := range kinds {
		form.Fields = append(form.Fields, dataform.Field{Var: kind + "-addresses", Type: "list-multi", Values: m.Contacts[kind]})
	}
	return form, true
}

// CheckContactURI accepts the URIs a contact address may be: xmpp:,
// mailto:, https:, http: and tel:.
func CheckContactURI(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%q is not a URI: %w", s, err)
	}
	switch u.Scheme {
	case "xmpp", "mailto", "tel":
		if u.Opaque == "" && u.Path == "" {
			return fmt.Errorf("%q: no address", s)
		}
	case "https", "http":
		if u.Host == "" {
			return fmt.Errorf("%q: no host", s)
		}
	default:
		return fmt.Errorf("%q: not an xmpp:, mailto:, https:, http: or tel: URI", s)
	}
	return nil
}
