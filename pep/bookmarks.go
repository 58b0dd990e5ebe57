package pep

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/storage"
)

// Bookmarks (XEP-0402: PEP Native Bookmarks) live on the node urn:xmpp:bookmarks:1,
// one item per room with the room's JID as item ID. XEP-0411 (bookmarks
// conversion) clients still read and write them as XEP-0048 private XML
// (jabber:iq:private, storage:bookmarks): the private storage module calls
// LegacyBookmarks and SetLegacyBookmarks, which convert between the two.

// bookmark is the content of a conference in either format.
type bookmark struct {
	Name     string `xml:"name,attr"`
	Autojoin string `xml:"autojoin,attr"`
	JID      string `xml:"jid,attr"` // legacy format only
	Nick     string `xml:"nick"`
	Password string `xml:"password"`
	// Extensions (XEP-0402 only) are kept as they are.
	Extensions *struct {
		Inner string `xml:",innerxml"`
	} `xml:"extensions"`
}

func (b *bookmark) autojoin() bool {
	v, _ := parseBool(b.Autojoin)
	return v
}

// same reports whether two bookmarks say the same in the legacy format.
func (b *bookmark) same(o *bookmark) bool {
	return b.Name == o.Name && b.autojoin() == o.autojoin() && b.Nick == o.Nick && b.Password == o.Password
}

// appendBookmarkChildren appends the <nick/> and <password/> of b.
func appendBookmarkChildren(dst []byte, b *bookmark) []byte {
	if b.Nick != "" {
		dst = append(dst, "<nick>"...)
		dst = treff.AppendEscaped(dst, b.Nick)
		dst = append(dst, "</nick>"...)
	}
	if b.Password != "" {
		dst = append(dst, "<password>"...)
		dst = treff.AppendEscaped(dst, b.Password)
		dst = append(dst, "</password>"...)
	}
	return dst
}

// bookmarksConfig are the publish options XEP-0402 requires.
var bookmarksConfig = map[string]string{
	fieldAccess:   storage.AccessWhitelist,
	fieldPersist:  "true",
	fieldMaxItems: "max",
}

// LegacyBookmarks returns the owner's XEP-0402 bookmarks as a XEP-0048
// <storage xmlns='storage:bookmarks'/> element (empty if there are none),
// for XEP-0411 clients that read private XML storage.
func (m *Module) LegacyBookmarks(ctx context.Context, owner jid.JID) ([]byte, error) {
	o, err := m.checkOwner(owner)
	if err != nil {
		return nil, err
	}
	items, _, err := m.items(ctx, o, NSBookmarks, nil, 0)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return nil, fmt.Errorf("pep: legacy bookmarks: %w", err)
	}
	out := []byte("<storage xmlns='" + NSLegacyBookmarks + "'>")
	for _, it := range items {
		var b bookmark
		if xml.Unmarshal(it.Payload, &b) != nil {
			continue
		}
		if _, err := jid.Parse(it.ID); err != nil {
			continue
		}
		out = append(out, "<conference jid='"...)
		out = treff.AppendEscaped(out, it.ID)
		if b.Name != "" {
			out = append(out, "' name='"...)
			out = treff.AppendEscaped(out, b.Name)
		}
		out = append(out, "' autojoin='"...)
		if b.autojoin() {
			out = append(out, "true'>"...)
		} else {
			out = append(out, "false'>"...)
		}
		out = appendBookmarkChildren(out, &b)
		out = append(out, "</conference>"...)
	}
	return append(out, "</storage>"...), nil
}

// SetLegacyBookmarks replaces the owner's XEP-0402 bookmarks with the
// conferences of a XEP-0048 <storage xmlns='storage:bookmarks'/> element
// that a XEP-0411 client wrote to private XML storage: new and changed
// rooms are published, rooms no longer listed retracted, with
// notifications. Extensions of existing bookmarks are kept; URL bookmarks
// have no XEP-0402 equivalent and are dropped.
func (m *Module) SetLegacyBookmarks(ctx context.Context, owner jid.JID, storageXML []byte) error {
	o, err := m.checkOwner(owner)
	if err != nil {
		return err
	}
	var st struct {
		XMLName     xml.Name   `xml:"storage:bookmarks storage"`
		Conferences []bookmark `xml:"conference"`
	}
	if err := xml.Unmarshal(storageXML, &st); err != nil {
		return fmt.Errorf("pep: legacy bookmarks: %w", err)
	}
	existing, _, err := m.items(ctx, o, NSBookmarks, nil, 0)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("pep: legacy bookmarks: %w", err)
	}
	old := make(map[string]*bookmark, len(existing))
	for _, it := range existing {
		var b bookmark
		if xml.Unmarshal(it.Payload, &b) == nil {
			old[it.ID] = &b
		}
	}
	keep := make(map[string]bool, len(st.Conferences))
	for i := range st.Conferences {
		b := &st.Conferences[i]
		room, err := jid.Parse(b.JID)
		if err != nil || room.Localpart() == "" {
			continue
		}
		id := room.Bare().String()
		if keep[id] {
			continue // the first of duplicates wins
		}
		keep[id] = true
		prev := old[id]
		if prev != nil && prev.same(b) {
			continue
		}
		p := []byte("<conference xmlns='" + NSBookmarks + "'")
		if b.Name != "" {
			p = append(p, " name='"...)
			p = treff.AppendEscaped(p, b.Name)
			p = append(p, '\'')
		}
		if b.autojoin() {
			p = append(p, " autojoin='true'"...)
		}
		p = append(p, '>')
		p = appendBookmarkChildren(p, b)
		if prev != nil && prev.Extensions != nil {
			p = append(p, "<extensions>"...)
			p = append(p, bytes.TrimSpace([]byte(prev.Extensions.Inner))...)
			p = append(p, "</extensions>"...)
		}
		p = append(p, "</conference>"...)
		if _, err := m.publish(ctx, o, NSBookmarks, storage.PEPItem{ID: id, Payload: p}, bookmarksConfig, false, o); err != nil {
			return fmt.Errorf("pep: legacy bookmarks: %w", err)
		}
	}
	for _, it := range existing {
		if keep[it.ID] {
			continue
		}
		if err := m.retract(ctx, o, NSBookmarks, it.ID, true); err != nil && !errors.Is(err, storage.ErrNotFound) {
			return fmt.Errorf("pep: legacy bookmarks: %w", err)
		}
	}
	return nil
}
