// Package vcard implements XEP-0054: vcard-temp (version 1.2), the
// server side of XEP-0153: vCard-Based Avatars (version 1.1), and
// XEP-0398: User Avatar to vCard-Based Avatars Conversion (version 0.2.1)
// for a Treff server.
//
// A user stores their vCard with an IQ set to their own account and
// anyone reads it with an IQ get to the user's bare JID; the server
// answers for the account (RFC 6120 10.3.3). The vCard is kept through the
// optional storage.PrivateXML under the key Key, as the client sent it,
// and removed with the account. A user who has no vCard gets an empty
// <vCard xmlns='vcard-temp'/>; others asking for it get
// <service-unavailable/>, the answer for an account that does not exist.
// Sets by others are <forbidden/>; a vCard larger than MaxSize is refused
// with <not-acceptable/>.
//
// XEP-0153: the module knows the SHA-1 of each online user's avatar (the
// vCard's PHOTO BINVAL) and adds <x xmlns='vcard-temp:x:update'><photo>
// HASH</photo></x> to the user's available presence, broadcast or
// directed, unless the client put a <photo/> there itself (an <x/>
// without <photo/> is replaced, as XEP-0398 section 4 says). Users
// without an avatar cost one cache lookup per presence.
//
// XEP-0398: with Module.PEP set, a vCard set with a photo also publishes
// it as a XEP-0084 avatar (data, then metadata, with the open access
// model), a vCard get whose vCard has no PHOTO returns the XEP-0084 avatar
// as its PHOTO, and the presence hash falls back to the PEP avatar's id.
// The account advertises urn:xmpp:pep-vcard-conversion:0.
package vcard

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"image"
	_ "image/gif" // avatar formats for image.DecodeConfig
	_ "image/jpeg"
	_ "image/png"
	"strconv"
	"strings"
	"sync"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/stanza"
	"github.com/treff-im/treff/storage"
)

// Namespaces.
const (
	// NS is the vcard-temp namespace (XEP-0054).
	NS = "vcard-temp"
	// NSUpdate qualifies the avatar hash in presence (XEP-0153).
	NSUpdate = "vcard-temp:x:update"
	// NSConversion is the feature of XEP-0398.
	NSConversion = "urn:xmpp:pep-vcard-conversion:0"
	// NodeAvatarData and NodeAvatarMetadata are the PEP nodes of
	// XEP-0084 (and the namespaces of their payloads).
	NodeAvatarData     = "urn:xmpp:avatar:data"
	NodeAvatarMetadata = "urn:xmpp:avatar:metadata"
)

// Key is the storage.PrivateXML key of a user's vCard.
const Key = "vcard-temp"

// DefaultMaxSize is the default limit of a stored vCard, in bytes.
const DefaultMaxSize = 256 << 10

// AvatarPEP is the part of a personal eventing (XEP-0163) service that
// the XEP-0398 conversion uses.
type AvatarPEP interface {
	// LastItem returns the ID and the serialised payload of the last item
	// the owner published to node; an error wrapping storage.ErrNotFound
	// (or an empty payload) means there is none.
	LastItem(ctx context.Context, owner jid.JID, node string) (id string, payload []byte, err error)
	// PublishItem publishes payload (one serialised element) as the item
	// id of the owner's node, creating the node with the given access
	// model (XEP-0060, e.g. "open") if it does not exist, and notifies
	// its subscribers.
	PublishItem(ctx context.Context, owner jid.JID, node, id string, payload []byte, accessModel string) error
}

// Module answers vcard-temp requests and stamps presence with the avatar
// hash.
//
// List it before the roster module in Server.Modules: then the hash is
// added once to the presence a client sends, before the roster module
// broadcasts and remembers it. Listed after, each copy is stamped on its
// way out (OnAccountOutbound), which costs a copy per contact, and the
// user's own resources see the presence without the hash.
type Module struct {
	// Store keeps the vCards. nil means the server's Storage, which must
	// then implement storage.PrivateXML.
	Store storage.PrivateXML
	// MaxSize is the largest vCard accepted, in bytes. 0 means
	// DefaultMaxSize.
	MaxSize int
	// PEP, if set, turns on the XEP-0398 conversion between vCard photos
	// and XEP-0084 avatars.
	PEP AvatarPEP

	srv    *treff.Server
	hashes hashCache
}

var _ treff.Module = (*Module)(nil)

// Name implements treff.Module.
func (m *Module) Name() string { return "vcard" }

// Setup implements treff.Module.
func (m *Module) Setup(ctx context.Context, r *treff.Registry) error {
	m.srv = r.Server()
	var err error
	if m.Store, err = storage.Require(m.Store, m.srv.Storage, "vcard"); err != nil {
		return err
	}
	if m.MaxSize <= 0 {
		m.MaxSize = DefaultMaxSize
	}
	r.HandleAccountIQ(NS, treff.IQHandlerFunc(m.handleIQ))
	r.AddFeature(NS)
	r.AddAccountFeature(NS)
	if m.PEP != nil {
		r.AddAccountFeature(NSConversion)
	}
	// The hash is stamped before the roster module broadcasts the
	// presence (it handles presence in the default phase).
	r.InPhase(treff.PhaseStamp).OnClientStanza(m.stampClient)
	r.InPhase(treff.PhaseStamp).OnAccountOutbound(m.stampOutbound)
	r.OnSessionClosed(func(ctx context.Context, s *treff.Session) {
		if user := s.JID().Bare(); len(m.srv.Sessions(user)) == 0 {
			m.hashes.forget(user.String())
		}
	})
	r.OnAccountDeleted(func(ctx context.Context, user jid.JID) error {
		defer m.hashes.forget(user.String())
		if err := m.Store.DeletePrivateXML(ctx, user.String(), Key); err != nil {
			return fmt.Errorf("vcard: deleting the vCard: %w", err)
		}
		return nil
	})
	return nil
}

// InvalidateAvatar makes the module forget the avatar hash it knows for
// owner, so that the next presence looks it up again. A PEP service calls
// it when the owner publishes a new XEP-0084 avatar.
func (m *Module) InvalidateAvatar(owner jid.JID) { m.hashes.forget(owner.Bare().String()) }

// hashCache holds the avatar hash of users, "" for a user without one.
type hashCache struct {
	mu  sync.RWMutex
	m   map[string]string
	gen uint64 // changes with every update, so a slow load cannot undo one
}

func (c *hashCache) get(user string) (hash string, ok bool, gen uint64) {
	c.mu.RLock()
	hash, ok = c.m[user]
	gen = c.gen
	c.mu.RUnlock()
	return hash, ok, gen
}

// add stores a loaded hash unless the cache changed since gen.
func (c *hashCache) add(user, hash string, gen uint64) {
	c.mu.Lock()
	if c.gen == gen {
		if c.m == nil {
			c.m = make(map[string]string)
		}
		c.m[user] = hash
	}
	c.mu.Unlock()
}

func (c *hashCache) set(user, hash string) {
	c.mu.Lock()
	c.gen++
	if c.m == nil {
		c.m = make(map[string]string)
	}
	c.m[user] = hash
	c.mu.Unlock()
}

func (c *hashCache) forget(user string) {
	c.mu.Lock()
	c.gen++
	delete(c.m, user)
	c.mu.Unlock()
}

// avatarHash returns the user's avatar hash, from the cache or loaded.
func (m *Module) avatarHash(ctx context.Context, user jid.JID) string {
	key := user.String()
	hash, ok, gen := m.hashes.get(key)
	if ok {
		return hash
	}
	doc, err := m.Store.PrivateXML(ctx, key, Key)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		m.srv.Log().Error("vcard: read failed", "user", key, "err", err)
		return ""
	}
	if p := photoOf(doc); p != nil {
		hash = p.hash
	} else if m.PEP != nil {
		hash, _ = m.pepMetadata(ctx, user)
	}
	m.hashes.add(key, hash, gen)
	return hash
}

// stampClient adds the hash to available presence from a client.
func (m *Module) stampClient(ctx context.Context, st *treff.Stanza) bool {
	if st.Kind != treff.KindPresence || st.Type != "" {
		return false
	}
	m.stamp(ctx, st)
	return false
}

// stampOutbound adds the hash to available presence leaving an account,
// unless stampClient already did.
func (m *Module) stampOutbound(ctx context.Context, st *treff.Stanza) bool {
	if st.Kind != treff.KindPresence || st.Type != "" {
		return false
	}
	m.stamp(ctx, st)
	return false
}

func (m *Module) stamp(ctx context.Context, st *treff.Stanza) {
	inner := st.Inner()
	has := strings.Contains(inner, NSUpdate)
	if has && (strings.Contains(inner, "<photo") || strings.Contains(inner, ":photo") && hasPhoto(st)) {
		return // the client's own <photo/> stays (XEP-0398 section 4)
	}
	hash := m.avatarHash(ctx, st.From.Bare())
	if hash == "" {
		return
	}
	x := "<x xmlns='" + NSUpdate + "'><photo>" + hash + "</photo></x>"
	var err error
	if has {
		err = replaceUpdate(st, x)
	} else {
		err = st.AddChild([]byte(x))
	}
	if err != nil {
		m.srv.Log().Error("vcard: stamping presence failed", "user", st.From.Bare().String(), "err", err)
	}
}

// updateSpan finds the vcard-temp:x:update element among the children of
// the stanza and reports where it is in its Raw and whether it has a
// <photo/>.
func updateSpan(st *treff.Stanza) (start, end int, photo, found bool) {
	for c := range st.Children() {
		if c.Name.Space != NSUpdate || c.Name.Local != "x" {
			continue
		}
		for p := range c.Children() {
			if p.Name.Local == "photo" {
				photo = true
			}
		}
		return c.Offset(), c.Offset() + len(c.Raw()), photo, true
	}
	return 0, 0, false, false
}

func hasPhoto(st *treff.Stanza) bool {
	_, _, photo, found := updateSpan(st)
	return found && photo
}

// replaceUpdate replaces the stanza's empty update element by x.
func replaceUpdate(st *treff.Stanza, x string) error {
	raw := st.Raw()
	start, end, _, found := updateSpan(st)
	if !found {
		return st.AddChild([]byte(x))
	}
	b := make([]byte, 0, len(raw)+len(x))
	b = append(b, raw[:start]...)
	b = append(b, x...)
	b = append(b, raw[end:]...)
	return st.Rewrite(b)
}

// photo is the avatar of a vCard.
type photo struct {
	typ  string
	data []byte
	hash string // hex SHA-1 of data
}

// photoOf returns the PHOTO of a serialised vCard, or nil if it has none
// with valid base64 data.
func photoOf(doc []byte) *photo {
	if len(doc) == 0 || !bytes.Contains(doc, []byte("BINVAL")) {
		return nil
	}
	var v struct {
		Photo struct {
			Type   string `xml:"TYPE"`
			Binval string `xml:"BINVAL"`
		} `xml:"PHOTO"`
	}
	if xml.Unmarshal(doc, &v) != nil || v.Photo.Binval == "" {
		return nil
	}
	data, err := base64.StdEncoding.DecodeString(strings.Map(func(r rune) rune {
		if r == ' ' || r == '\t' || r == '\n' || r == '\r' {
			return -1
		}
		return r
	}, v.Photo.Binval))
	if err != nil || len(data) == 0 {
		return nil
	}
	sum := sha1.Sum(data)
	return &photo{typ: strings.TrimSpace(v.Photo.Type), data: data, hash: hex.EncodeToString(sum[:])}
}

// hasPhotoElement reports whether a serialised vCard has a PHOTO at all.
func hasPhotoElement(doc []byte) bool {
	if !bytes.Contains(doc, []byte("PHOTO")) {
		return false
	}
	for c := range stanza.Children(string(doc), NS) {
		if c.Name.Local == "PHOTO" {
			return true
		}
	}
	return false
}

func (m *Module) handleIQ(ctx context.Context, iq *treff.Stanza) ([]byte, error) {
	requester := iq.From.Bare()
	owner := requester
	if !iq.To.Equal(jid.JID{}) {
		owner = iq.To.Bare()
	}
	if iq.Payload.Local != "vCard" {
		return nil, stanza.BadRequest
	}
	if iq.Type == "set" {
		if !owner.Equal(requester) {
			return nil, stanza.Forbidden
		}
		return nil, m.set(ctx, owner, iq)
	}
	doc, err := m.Store.PrivateXML(ctx, owner.String(), Key)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return nil, fmt.Errorf("vcard: read %s: %w", owner, err)
	}
	if m.PEP != nil && !hasPhotoElement(doc) {
		doc = m.withPEPAvatar(ctx, owner, doc)
	}
	if len(doc) == 0 {
		if !owner.Equal(requester) {
			return nil, stanza.ServiceUnavailable
		}
		return []byte("<vCard xmlns='" + NS + "'/>"), nil
	}
	return doc, nil
}

func (m *Module) set(ctx context.Context, owner jid.JID, iq *treff.Stanza) error {
	var payload stanza.Child
	for c := range iq.Children() {
		payload = c
		break
	}
	if payload.Name.Local == "" {
		return stanza.BadRequest
	}
	doc := []byte(payload.Raw())
	if len(doc) > m.MaxSize {
		return stanza.Errorf(stanza.NotAcceptable, "a vCard may have at most %d bytes", m.MaxSize)
	}
	if !payload.SelfContained() {
		return stanza.BadRequest.WithText("the vCard must declare its own namespace and prefixes")
	}
	if err := m.Store.PutPrivateXML(ctx, owner.String(), Key, doc); err != nil {
		return fmt.Errorf("vcard: store %s: %w", owner, err)
	}
	p := photoOf(doc)
	hash := ""
	if p != nil {
		hash = p.hash
	} else if m.PEP != nil {
		hash, _ = m.pepMetadata(ctx, owner)
	}
	m.hashes.set(owner.String(), hash)
	if p != nil && m.PEP != nil {
		m.publishAvatar(ctx, owner, p)
	}
	return nil
}

// publishAvatar publishes the vCard photo as the owner's XEP-0084 avatar
// (XEP-0398 section 3.2), unless it is already.
func (m *Module) publishAvatar(ctx context.Context, owner jid.JID, p *photo) {
	if id, _ := m.pepMetadata(ctx, owner); id == p.hash {
		return
	}
	typ := p.typ
	cfg, format, err := image.DecodeConfig(bytes.NewReader(p.data))
	if typ == "" && err == nil {
		typ = "image/" + format
	}
	data := make([]byte, 0, base64.StdEncoding.EncodedLen(len(p.data))+48)
	data = append(data, "<data xmlns='"+NodeAvatarData+"'>"...)
	data = base64.StdEncoding.AppendEncode(data, p.data)
	data = append(data, "</data>"...)
	if err := m.PEP.PublishItem(ctx, owner, NodeAvatarData, p.hash, data, "open"); err != nil {
		m.srv.Log().Error("vcard: publishing the avatar data failed", "user", owner.String(), "err", err)
		return
	}
	meta := []byte("<metadata xmlns='" + NodeAvatarMetadata + "'><info bytes='" + strconv.Itoa(len(p.data)) + "' id='" + p.hash + "'")
	if typ != "" {
		meta = append(meta, " type='"...)
		meta = treff.AppendEscaped(meta, typ)
		meta = append(meta, '\'')
	}
	if err == nil && cfg.Width > 0 && cfg.Height > 0 {
		meta = append(meta, " width='"+strconv.Itoa(cfg.Width)+"' height='"+strconv.Itoa(cfg.Height)+"'"...)
	}
	meta = append(meta, "/></metadata>"...)
	if err := m.PEP.PublishItem(ctx, owner, NodeAvatarMetadata, p.hash, meta, "open"); err != nil {
		m.srv.Log().Error("vcard: publishing the avatar metadata failed", "user", owner.String(), "err", err)
	}
}

// pepMetadata returns the id and type of the owner's XEP-0084 avatar (the
// first info without a URL), or "" if there is none.
func (m *Module) pepMetadata(ctx context.Context, owner jid.JID) (id, typ string) {
	_, payload, err := m.PEP.LastItem(ctx, owner, NodeAvatarMetadata)
	if err != nil {
		if !errors.Is(err, storage.ErrNotFound) {
			m.srv.Log().Error("vcard: reading the avatar metadata failed", "user", owner.String(), "err", err)
		}
		return "", ""
	}
	var md struct {
		XMLName xml.Name `xml:"urn:xmpp:avatar:metadata metadata"`
		Info    []struct {
			ID   string `xml:"id,attr"`
			Type string `xml:"type,attr"`
			URL  string `xml:"url,attr"`
		} `xml:"info"`
	}
	if len(payload) == 0 || xml.Unmarshal(payload, &md) != nil {
		return "", ""
	}
	for _, in := range md.Info {
		if in.URL == "" && in.ID != "" {
			return strings.ToLower(in.ID), in.Type
		}
	}
	return "", ""
}

// withPEPAvatar returns doc (a vCard without PHOTO, or nothing) with the
// owner's XEP-0084 avatar as its PHOTO (XEP-0398 section 3.1), or doc as
// it is if there is no avatar or the vCard cannot take one.
func (m *Module) withPEPAvatar(ctx context.Context, owner jid.JID, doc []byte) []byte {
	id, typ := m.pepMetadata(ctx, owner)
	if id == "" {
		return doc
	}
	_, payload, err := m.PEP.LastItem(ctx, owner, NodeAvatarData)
	if err != nil {
		if !errors.Is(err, storage.ErrNotFound) {
			m.srv.Log().Error("vcard: reading the avatar data failed", "user", owner.String(), "err", err)
		}
		return doc
	}
	var data struct {
		XMLName xml.Name `xml:"urn:xmpp:avatar:data data"`
		Text    string   `xml:",chardata"`
	}
	if xml.Unmarshal(payload, &data) != nil {
		return doc
	}
	b64 := strings.Join(strings.Fields(data.Text), "")
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return doc
	}
	// The item must be the image the metadata describes (XEP-0398 3.1).
	if sum := sha1.Sum(raw); hex.EncodeToString(sum[:]) != id {
		return doc
	}
	ph := []byte("<PHOTO>")
	if typ != "" {
		ph = append(ph, "<TYPE>"...)
		ph = treff.AppendEscaped(ph, typ)
		ph = append(ph, "</TYPE>"...)
	}
	ph = append(ph, "<BINVAL>"...)
	ph = append(ph, b64...)
	ph = append(ph, "</BINVAL></PHOTO>"...)
	if len(doc) == 0 {
		return append(append([]byte("<vCard xmlns='"+NS+"'>"), ph...), "</vCard>"...)
	}
	if !bytes.HasPrefix(doc, []byte("<vCard")) {
		return doc // a prefixed vCard: PHOTO would land in the wrong namespace
	}
	out := make([]byte, 0, len(doc)+len(ph)+8)
	if bytes.HasSuffix(doc, []byte("/>")) {
		out = append(out, doc[:len(doc)-2]...)
		out = append(out, '>')
		out = append(out, ph...)
		return append(out, "</vCard>"...)
	}
	i := bytes.LastIndex(doc, []byte("</"))
	out = append(out, doc[:i]...)
	out = append(out, ph...)
	return append(out, doc[i:]...)
}
