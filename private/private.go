// Package private implements XEP-0049: Private XML Storage (version 1.2)
// for a Treff server.
//
// A user stores any XML element qualified by its own namespace on the
// server with an IQ set to their own account, and reads it back with an
// IQ get naming the element and namespace. Documents are kept per user
// through the optional storage.PrivateXML, under the key
// "{namespace}name", and removed with the account.
//
// Rules (XEP-0049 section 2.3): only the user may read or write their
// data (others get <forbidden/>); a get must name exactly one element and
// a set must hold at least one (otherwise <bad-request/>); elements in a
// reserved namespace (those beginning with "jabber:" or
// "http://jabber.org/", "vcard-temp", or none at all) are refused with
// <not-acceptable/>; a document larger than MaxSize is refused with
// <not-acceptable/> and a text saying so.
//
// For XEP-0411 (Bookmarks Conversion), legacy bookmarks (the <storage/>
// element in the storage:bookmarks namespace) go through the optional
// Module.Bookmarks instead of the store, so that a PEP service can keep
// them in sync with XEP-0402 bookmarks.
package private

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"strings"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/stanza"
	"github.com/treff-im/treff/storage"
)

// NS is the namespace of private XML storage.
const NS = "jabber:iq:private"

// NSBookmarks is the namespace of legacy bookmarks (XEP-0048), stored in
// a <storage/> element.
const NSBookmarks = "storage:bookmarks"

// DefaultMaxSize is the default limit of one stored document, in bytes.
const DefaultMaxSize = 64 << 10

// BookmarkStore keeps a user's legacy bookmarks, so that a PEP service
// can convert them to and from XEP-0402 bookmarks (XEP-0411). The
// serialised form is the whole <storage xmlns='storage:bookmarks'>
// element.
type BookmarkStore interface {
	// LegacyBookmarks returns the owner's bookmarks as a serialised
	// <storage xmlns='storage:bookmarks'> element, or nil (or an error
	// wrapping storage.ErrNotFound) if there are none. A
	// stanza.Error is sent to the client as is.
	LegacyBookmarks(ctx context.Context, owner jid.JID) ([]byte, error)
	// SetLegacyBookmarks replaces the owner's bookmarks with storageXML,
	// a serialised <storage xmlns='storage:bookmarks'> element as the
	// client sent it. A stanza.Error is sent to the client as is.
	SetLegacyBookmarks(ctx context.Context, owner jid.JID, storageXML []byte) error
}

// Module answers private XML storage requests.
type Module struct {
	// Store keeps the documents. nil means the server's Storage, which
	// must then implement storage.PrivateXML.
	Store storage.PrivateXML
	// MaxSize is the largest document accepted, in bytes. 0 means
	// DefaultMaxSize.
	MaxSize int
	// Bookmarks, if set, keeps the <storage xmlns='storage:bookmarks'/>
	// element instead of Store (XEP-0411).
	Bookmarks BookmarkStore

	srv *treff.Server
}

var _ treff.Module = (*Module)(nil)

// Name implements treff.Module.
func (m *Module) Name() string { return "private" }

// Setup implements treff.Module.
func (m *Module) Setup(ctx context.Context, r *treff.Registry) error {
	m.srv = r.Server()
	var err error
	if m.Store, err = storage.Require(m.Store, m.srv.Storage, "private"); err != nil {
		return err
	}
	if m.MaxSize <= 0 {
		m.MaxSize = DefaultMaxSize
	}
	r.HandleAccountIQ(NS, treff.IQHandlerFunc(m.handleIQ))
	r.AddAccountFeature(NS)
	// Clients look for it on the server too (poezio warns "No remote
	// bookmark storage available" without it; Prosody lists it there).
	r.AddFeature(NS)
	r.OnAccountDeleted(func(ctx context.Context, user jid.JID) error {
		if err := m.Store.DeleteAllPrivateXML(ctx, user.String()); err != nil {
			return fmt.Errorf("private: deleting private XML: %w", err)
		}
		return nil
	})
	return nil
}

// Key returns the storage key of the element with the given name and
// namespace.
func Key(name, ns string) string { return "{" + ns + "}" + name }

// reserved reports a namespace that XEP-0049 reserves.
func reserved(ns string) bool {
	return ns == "" || ns == "vcard-temp" || strings.HasPrefix(ns, "jabber:") || strings.HasPrefix(ns, "http://jabber.org/")
}

// element is one child of the query as the client sent it.
type element struct {
	name xml.Name
	raw  []byte
	// selfContained: raw declares the prefixes it uses
	selfContained bool
}

func (m *Module) handleIQ(ctx context.Context, iq *treff.Stanza) ([]byte, error) {
	owner := iq.From.Bare()
	if !iq.To.Equal(jid.JID{}) && !iq.To.Equal(owner) {
		return nil, stanza.Forbidden
	}
	if iq.Payload.Local != "query" {
		return nil, stanza.BadRequest
	}
	els := children(iq)
	if iq.Type == "get" && len(els) != 1 {
		return nil, stanza.BadRequest.WithText("a get names exactly one element")
	}
	if len(els) == 0 {
		return nil, stanza.BadRequest.WithText("the query holds no element")
	}
	for _, el := range els {
		if reserved(el.name.Space) {
			return nil, stanza.NotAcceptable.WithText("the namespace is reserved")
		}
	}
	if iq.Type == "get" {
		doc, err := m.get(ctx, owner, els[0].name)
		if err != nil {
			return nil, err
		}
		return wrap(doc), nil
	}
	for _, el := range els {
		if len(el.raw) > m.MaxSize {
			return nil, stanza.Errorf(stanza.NotAcceptable, "an element may have at most %d bytes", m.MaxSize)
		}
		if !el.selfContained {
			return nil, stanza.BadRequest.WithText("each element must declare its own namespace and prefixes")
		}
	}
	for _, el := range els {
		if err := m.put(ctx, owner, el); err != nil {
			return nil, err
		}
	}
	return nil, nil
}

// isBookmarks reports whether name goes through Bookmarks.
func (m *Module) isBookmarks(name xml.Name) bool {
	return m.Bookmarks != nil && name.Space == NSBookmarks && name.Local == "storage"
}

// get returns the stored element, or the empty element if there is none.
func (m *Module) get(ctx context.Context, owner jid.JID, name xml.Name) ([]byte, error) {
	var doc []byte
	var err error
	if m.isBookmarks(name) {
		doc, err = m.Bookmarks.LegacyBookmarks(ctx, owner)
	} else {
		doc, err = m.Store.PrivateXML(ctx, owner.String(), Key(name.Local, name.Space))
	}
	se, isStanzaErr := stanza.FromError(err)
	switch {
	case isStanzaErr:
		return nil, se
	case errors.Is(err, storage.ErrNotFound) || err == nil && len(doc) == 0:
		return emptyElement(name), nil
	case err != nil:
		return nil, fmt.Errorf("private: read %s of %s: %w", Key(name.Local, name.Space), owner, err)
	}
	return doc, nil
}

func (m *Module) put(ctx context.Context, owner jid.JID, el element) error {
	var err error
	if m.isBookmarks(el.name) {
		err = m.Bookmarks.SetLegacyBookmarks(ctx, owner, el.raw)
	} else {
		err = m.Store.PutPrivateXML(ctx, owner.String(), Key(el.name.Local, el.name.Space), el.raw)
	}
	if se, ok := stanza.FromError(err); ok {
		return se
	}
	if err != nil {
		return fmt.Errorf("private: store %s of %s: %w", Key(el.name.Local, el.name.Space), owner, err)
	}
	return nil
}

// emptyElement serialises <name xmlns='ns'/>.
func emptyElement(name xml.Name) []byte {
	b := append([]byte{'<'}, name.Local...)
	b = append(b, " xmlns='"...)
	b = treff.AppendEscaped(b, name.Space)
	return append(b, "'/>"...)
}

// wrap puts doc in a private storage query.
func wrap(doc []byte) []byte {
	b := make([]byte, 0, len(doc)+48)
	b = append(b, "<query xmlns='"+NS+"'>"...)
	b = append(b, doc...)
	return append(b, "</query>"...)
}

// children returns the child elements of the stanza's payload element,
// each as the bytes the client sent.
func children(iq *treff.Stanza) []element {
	var out []element
	for q := range iq.Children() {
		for c := range q.Children() {
			out = append(out, element{name: c.Name, raw: []byte(c.Raw()), selfContained: c.SelfContained()})
		}
		break // only the payload
	}
	return out
}
