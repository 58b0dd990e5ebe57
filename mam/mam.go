// Package mam implements XEP-0313: Message Archive Management (version
// 1.1.3) for the users of a Treff server, with the archive IDs of XEP-0359:
// Unique and Stable Stanza IDs (version 0.7.0), the paging of XEP-0059:
// Result Set Management (version 1.0.0) and the preferences of XEP-0441:
// Message Archive Management Preferences (version 0.2.0).
//
// Each user's archive lives at their bare JID. It keeps the messages of
// type chat or normal that they send and receive which carry content: a
// <body/>, an OMEMO <encrypted/> payload, or a XEP-0334 <store/> hint.
// Errors, headlines, group chat messages (a group chat has its own
// archive) and messages with a <no-store/> or <no-permanent-store/> hint
// are not archived; neither are chat states, receipts and other
// content-less messages.
//
// An incoming message is archived before it is delivered, and the server
// adds <stanza-id xmlns='urn:xmpp:sid:0' by='user@host' id='...'/> with its
// archive ID, so that the user's sessions, offline storage and carbon
// copies all carry it; a stanza-id claiming to be by the user that the
// sender put there is removed first. An outgoing message is archived in
// the sender's archive when it leaves the account. A message between two
// local users is so archived once on each side; one to oneself once.
//
// Archiving is part of delivery: a message that is to be archived and
// cannot be is not delivered, and its sender gets an error (ArchiveError):
// <resource-constraint/> when the store is full for now (storage.ErrFull,
// e.g. boltstore's bounded write queue in front of a full disk), else
// <internal-server-error/>, both of type wait. The hooks run in the
// sender's read loop before the stanza counts as handled, so the error
// reaches the sender before its XEP-0198 acknowledgement, and the message
// reaches nobody: the sender's copy is archived (outbound) before carbons
// copy it, and a store that queues writes refuses outgoing copies before
// incoming ones (boltstore from 7/8 of its bound), so that the
// recipient's copy finds room once the sender's did. A store that queues
// writes (boltstore) acknowledges an append before its commit: if the
// commit fails later, the message was delivered all the same with its
// stanza-id, and the store keeps retrying it (within its bound) until the
// disk has room; only if the server stops first is that archive copy
// lost, which the store reports when it closes. Such failures are logged
// once a minute, without addresses or content.
//
// Only the owner of an archive may query it (others get <forbidden/>).
// Queries support the 'with', 'start' and 'end' fields, the extended
// fields 'before-id', 'after-id' and 'ids', flipped pages, the archive
// metadata query, and RSM paging with <max/>, <after/> and <before/>
// (also empty, for the last page); pages are capped at MaxPage messages
// and about 256 KiB. RSM <index/> is not supported
// (<feature-not-implemented/>).
//
// Retention deletes messages older than Module.Retention once an hour;
// deleting an account deletes its archive. The store must implement
// storage.Archive.
//
// Archiver holds the query, paging, result and retention code for any
// archive of the store: Module answers its users with one, and the muc
// module answers queries to a group chat room's archive (kept under the
// room's bare JID) with another.
package mam

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unsafe"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/internal/logevery"
	"github.com/treff-im/treff/stanza"
	"github.com/treff-im/treff/storage"
)

// Namespaces.
const (
	// NS is the namespace of queries, results and preferences, and the
	// account feature of XEP-0313.
	NS = "urn:xmpp:mam:2"
	// NSExtended is the feature of the extended query fields, flipped
	// pages and the metadata query.
	NSExtended = "urn:xmpp:mam:2#extended"
	// NSSID is the namespace of XEP-0359 stanza IDs.
	NSSID = "urn:xmpp:sid:0"
	// NSRSM is the namespace of XEP-0059 result set management.
	NSRSM = "http://jabber.org/protocol/rsm"
	// NSForward is the namespace of XEP-0297 forwarded stanzas.
	NSForward = "urn:xmpp:forward:0"
	// NSDelay is the namespace of XEP-0203 delayed delivery stamps.
	NSDelay = "urn:xmpp:delay"

	nsHints   = "urn:xmpp:hints"
	nsOMEMO   = "eu.siacs.conversations.axolotl"
	nsOMEMO2  = "urn:xmpp:omemo:2"
	nsClient  = "jabber:client"
	stampForm = "2006-01-02T15:04:05.000Z"
)

// IsResult reports whether st is a result of an archive query, sent to
// the session that asked (an OnUnacked hook: such a result is not
// delivered again to the account's other sessions).
func IsResult(ctx context.Context, st *treff.Stanza) bool {
	return st.Kind == treff.KindMessage && st.Payload.Space == NS
}

// DefaultMaxPage is the page size cap when Module.MaxPage is zero.
const DefaultMaxPage = 100

// Retention job timing: the first run a minute after start (so that a
// server that was down for long catches up soon), then hourly.
const (
	retentionFirst = time.Minute
	retentionEvery = time.Hour
)

// Module keeps the users' message archives and answers their queries.
type Module struct {
	// Store keeps the archives. nil means the server's Storage, which must
	// then implement storage.Archive.
	Store storage.Archive
	// Retention is how long messages are kept; older ones are deleted
	// hourly. Zero keeps them forever.
	Retention time.Duration
	// MaxPage is the most messages one query returns; a client asking for
	// more (or not saying) gets that many. Zero means DefaultMaxPage.
	MaxPage int
	// Default is what is archived for users who have not set their own
	// preference: storage.ArchiveAlways (also when empty), ArchiveRoster
	// (conversations with contacts only) or ArchiveNever.
	Default storage.ArchiveDefault

	srv  *treff.Server
	now  func() time.Time
	arch *Archiver // answers queries and runs the retention job

	// Storage errors hit by every message are logged once a minute.
	logWrites, logPrefs logevery.Limiter
}

var (
	_ treff.Module  = (*Module)(nil)
	_ treff.Stopper = (*Module)(nil)
)

// Name implements treff.Module.
func (m *Module) Name() string { return "mam" }

// Setup implements treff.Module.
func (m *Module) Setup(ctx context.Context, r *treff.Registry) error {
	m.srv = r.Server()
	var err error
	if m.Store, err = storage.Require(m.Store, m.srv.Storage, "mam"); err != nil {
		return err
	}
	switch m.Default {
	case "", storage.ArchiveAlways, storage.ArchiveNever, storage.ArchiveRoster:
	default:
		return errors.New("mam: Default must be always, never or roster, not " + string(m.Default))
	}
	if m.Retention < 0 {
		return errors.New("mam: Retention must not be negative")
	}
	if m.now == nil {
		m.now = time.Now
	}
	m.arch = &Archiver{Store: m.Store, MaxPage: m.MaxPage, Retention: m.Retention, Now: m.now}
	r.AddAccountFeature(NS)
	r.AddAccountFeature(NSExtended)
	r.AddAccountFeature(NSSID)
	r.HandleAccountIQ(NS, treff.IQHandlerFunc(m.handleIQ))
	// Stanza-ids are stamped before message carbons copy the message.
	r.InPhase(treff.PhaseFilter).OnClientStanza(m.fromClient)
	r.InPhase(treff.PhaseStamp).OnAccountStanza(m.inbound)
	r.InPhase(treff.PhaseStamp).OnAccountOutbound(m.outbound)
	r.OnUnacked(IsResult)
	r.OnAccountDeleted(func(ctx context.Context, user jid.JID) error {
		if err := m.Store.DeleteArchive(ctx, user.String()); err != nil {
			return fmt.Errorf("mam: deleting the archive: %w", err)
		}
		return nil
	})
	m.arch.StartRetention(m.srv)
	return nil
}

// Stop implements treff.Stopper: it ends the retention job.
func (m *Module) Stop(ctx context.Context) error {
	if m.arch == nil {
		return nil
	}
	return m.arch.StopRetention(ctx)
}

// expire deletes the messages older than the retention period before now
// and returns how many.
func (m *Module) expire(ctx context.Context, now time.Time) int {
	return m.arch.expire(ctx, m.srv, now)
}

// inbound archives a message to a local account in its archive and stamps
// it with its archive ID.
func (m *Module) inbound(ctx context.Context, st *treff.Stanza) bool {
	if st.Kind != treff.KindMessage {
		return false
	}
	raw := st.Raw()
	spoofable := bytes.Contains(raw, []byte(NSSID))
	content := archivableType(st.Type) && mayHaveContent(raw)
	if !spoofable && !content {
		return false
	}
	owner := st.To.Bare()
	if !content && !mayClaim(raw, owner) && !(spoofable && st.From.Localpart() != "" && m.srv.IsLocal(st.From.Domainpart())) {
		// The common case for group chat deliveries: the only stanza-id
		// is the room's, so the message need not be parsed.
		return false
	}
	// Besides any stanza-id claiming to be by the owner, the sender's
	// (a local account's, which outbound stamped for the sender's own
	// copies: carbons, archive) goes: a delivered message carries the
	// recipient's alone (XEP-0313 3.3). Rooms' stanza-ids stay.
	user := owner.String()
	ins := inspect(raw, owner, user, m.srv.IsLocal)
	// The stanza without those is what is archived; st gets it, with the
	// owner's stanza-id if it is archived, in one rewrite (each parses
	// the whole stanza again).
	kept := raw
	if len(ins.spoofed) > 0 {
		kept = without(raw, ins.spoofed)
	}
	rewrite := func() {
		if len(ins.spoofed) > 0 {
			if err := st.EditChildren(at(ins.spoofed), nil); err != nil {
				m.srv.Log().Error("mam: removing a spoofed stanza-id failed", "err", err)
			}
		}
	}
	if !content || !ins.archivable || st.From.Equal(jid.JID{}) {
		rewrite()
		return false
	}
	with := st.From.Bare().String()
	if !m.wanted(ctx, user, st.From, with) {
		rewrite()
		return false
	}
	id, err := m.Store.AppendArchive(ctx, user, storage.ArchivedMessage{
		Time:         m.stamp(),
		With:         with,
		WithResource: st.From.Resourcepart(),
		Stanza:       kept,
	})
	if err != nil {
		rewrite()
		m.refuse(ctx, st, err)
		return true
	}
	sid := AppendStanzaID(make([]byte, 0, 64+len(user)+len(id)), user, id)
	if err := st.EditChildren(at(ins.spoofed), sid); err != nil {
		m.srv.Log().Error("mam: adding the stanza-id failed", "user", user, "err", err)
	}
	return false
}

// at returns a function reporting whether a child of the stanza the
// byte ranges cut were taken from starts one of them, for
// Stanza.EditChildren (nil if cut is empty).
func at(cut [][2]int64) func(stanza.Child) bool {
	if len(cut) == 0 {
		return nil
	}
	return func(c stanza.Child) bool {
		for _, r := range cut {
			if int64(c.Offset()) == r[0] {
				return true
			}
		}
		return false
	}
}

// fromClient removes the stanza-ids a client put on its message that
// claim to be by this server, one of its accounts or services (XEP-0359
// section 5): only the server says what its archives hold.
func (m *Module) fromClient(ctx context.Context, st *treff.Stanza) bool {
	if st.Kind != treff.KindMessage {
		return false
	}
	raw := st.Raw()
	if !bytes.Contains(raw, []byte(NSSID)) {
		return false
	}
	var cut [][2]int64
	for c := range st.Children() {
		if c.Name != (xml.Name{Space: NSSID, Local: "stanza-id"}) {
			continue
		}
		by, _ := c.Attr("by")
		j, err := jid.Parse(by)
		if err != nil || m.srv.Serves(j.Domainpart()) {
			// A malformed claim goes too: nobody can vouch for it.
			cut = append(cut, [2]int64{int64(c.Offset()), int64(c.Offset() + len(c.Raw()))})
		}
	}
	if len(cut) > 0 {
		if err := st.EditChildren(at(cut), nil); err != nil {
			m.srv.Log().Error("mam: removing a client's stanza-id failed", "err", err)
		}
	}
	return false
}

// ArchiveError is the error to send the sender of a message that was not
// delivered because archiving it failed with err: <resource-constraint/>
// if the store is full for now (storage.ErrFull), <internal-server-error/>
// otherwise; both of type wait.
func ArchiveError(err error) stanza.Error {
	if errors.Is(err, storage.ErrFull) {
		return stanza.Error{Type: stanza.Wait, Condition: stanza.ResourceConstraint,
			Text: "the server cannot store messages now; this one was not delivered, try again later"}
	}
	return stanza.Error{Type: stanza.Wait, Condition: stanza.InternalServerError,
		Text: "the message could not be archived and was not delivered"}
}

// refuse answers a message whose archiving failed with err: the message
// goes no further, its sender gets ArchiveError(err), and the failure is
// logged at most once per interval, without addresses or content.
func (m *Module) refuse(ctx context.Context, st *treff.Stanza, err error) {
	reply := treff.AppendError(nil, st, ArchiveError(err))
	if s := m.srv.Session(st.From); s != nil {
		s.Send(reply) // the usual case: a local client sent it
	} else if r, rerr := treff.NewStanza(reply); rerr == nil {
		m.srv.Route(ctx, r)
	}
	if ok, n := m.logWrites.Allow(m.now()); ok {
		m.srv.Log().Error("mam: archiving failed; messages are refused with an error to their senders", "err", err, "refused", n+1)
	}
}

// stampID adds <stanza-id by='user' id='id'/> (XEP-0359) to st.
func (m *Module) stampID(st *treff.Stanza, user, id string) {
	sid := AppendStanzaID(make([]byte, 0, 64+len(user)+len(id)), user, id)
	if err := st.AddChild(sid); err != nil {
		m.srv.Log().Error("mam: adding the stanza-id failed", "user", user, "err", err)
	}
}

// outbound archives a message a local account sends in its archive and
// stamps it with its archive ID, so that the sender's other devices find
// it in their <sent/> carbons (XEP-0313 requires the ID there; the
// carbons module must come after this one). Messages to the account
// itself are archived once, by inbound.
func (m *Module) outbound(ctx context.Context, st *treff.Stanza) bool {
	if st.Kind != treff.KindMessage || !archivableType(st.Type) || st.To.Equal(jid.JID{}) {
		return false
	}
	raw := st.Raw()
	if !mayHaveContent(raw) {
		return false
	}
	owner, peer := st.From.Bare(), st.To.Bare()
	if peer.Equal(owner) {
		return false
	}
	user := owner.String()
	ins := inspect(raw, owner, user, nil)
	if len(ins.spoofed) > 0 {
		// Only this server says what is in the sender's archive.
		if err := st.EditChildren(at(ins.spoofed), nil); err != nil {
			m.srv.Log().Error("mam: removing a spoofed stanza-id failed", "err", err)
		}
		raw = st.Raw()
	}
	if !ins.archivable {
		return false
	}
	with := peer.String()
	if !m.wanted(ctx, user, st.To, with) {
		return false
	}
	id, err := m.Store.AppendArchive(ctx, user, storage.ArchivedMessage{
		Time:         m.stamp(),
		With:         with,
		WithResource: st.To.Resourcepart(),
		Outgoing:     true,
		Stanza:       raw,
	})
	if err != nil {
		m.refuse(ctx, st, err)
		return true
	}
	m.stampID(st, user, id)
	return false
}

// stamp is the time a message is archived with (see Archiver.Stamp).
func (m *Module) stamp() time.Time { return m.arch.Stamp() }

// wanted reports whether the user's preferences (or the server's default)
// archive a conversation with peer, whose bare JID is bare.
func (m *Module) wanted(ctx context.Context, user string, peer jid.JID, bare string) bool {
	p, err := m.Store.ArchivePrefs(ctx, user)
	if err != nil {
		if ok, n := m.logPrefs.Allow(m.now()); ok {
			m.srv.Log().Error("mam: reading archiving preferences failed; the server's default applies", "err", err, "failures", n+1)
		}
	}
	if len(p.Never) > 0 || len(p.Always) > 0 {
		full := peer.String()
		if slices.Contains(p.Never, bare) || slices.Contains(p.Never, full) {
			return false
		}
		if slices.Contains(p.Always, bare) || slices.Contains(p.Always, full) {
			return true
		}
	}
	switch m.defaultFor(p) {
	case storage.ArchiveNever:
		return false
	case storage.ArchiveRoster:
		if bare == user {
			return true
		}
		if m.srv.Storage == nil {
			return false
		}
		_, err := m.srv.Storage.RosterItem(ctx, user, bare)
		return err == nil
	}
	return true
}

// defaultFor returns the default in force for preferences p.
func (m *Module) defaultFor(p storage.ArchivePrefs) storage.ArchiveDefault {
	if p.Default != "" {
		return p.Default
	}
	if m.Default != "" {
		return m.Default
	}
	return storage.ArchiveAlways
}

// archivableType reports whether messages of type typ may be archived:
// normal and chat (XEP-0313 5.1.1).
func archivableType(typ string) bool {
	return typ == "" || typ == "chat" || typ == "normal"
}

// mayHaveContent is a quick test that rules out most messages without
// archivable content (chat states, receipts) before they are parsed.
func mayHaveContent(raw []byte) bool {
	return bytes.Contains(raw, []byte("body")) || bytes.Contains(raw, []byte("encrypted")) ||
		bytes.Contains(raw, []byte(nsHints))
}

// inspection is what inspect finds among a message's child elements.
type inspection struct {
	// archivable reports content to archive (a body, an OMEMO payload or
	// a <store/> hint) and no hint against storing it.
	archivable bool
	// spoofed are the byte ranges of <stanza-id/> elements claiming to be
	// by the archive's owner.
	spoofed [][2]int64
}

// inspect looks at the child elements of a message, serialised in raw
// (which it does not keep: the walk reads it in place); owner is the bare JID
// whose stanza-ids are to be found (ownerStr its string, or ""), and with
// local set, those of every account of the server's hosts too.
func inspect(raw []byte, owner jid.JID, ownerStr string, local func(string) bool) inspection {
	var ins inspection
	var content, noStore, store bool
	// A known iterator, inlined: the loop's variables stay on the stack.
	for c := range stanza.Children(unsafe.String(unsafe.SliceData(raw), len(raw)), nsClient) {
		switch c.Name {
		case xml.Name{Space: nsClient, Local: "body"},
			xml.Name{Space: nsOMEMO, Local: "encrypted"}, xml.Name{Space: nsOMEMO2, Local: "encrypted"}:
			content = true
		case xml.Name{Space: nsHints, Local: "no-store"}, xml.Name{Space: nsHints, Local: "no-permanent-store"}:
			noStore = true
		case xml.Name{Space: nsHints, Local: "store"}:
			store = true
		case xml.Name{Space: NSSID, Local: "stanza-id"}:
			if by, _ := c.Attr("by"); by != "" && claims(by, owner, ownerStr, local) {
				ins.spoofed = append(ins.spoofed, [2]int64{int64(c.Offset()), int64(c.Offset() + len(c.Raw()))})
			}
		}
	}
	ins.archivable = (content || store) && !noStore
	return ins
}

// claims reports whether a stanza-id by 'by' claims to be by owner (whose
// string is ownerStr; "" to parse every 'by') or, with local set, by an account of the
// server's hosts.
func claims(by string, owner jid.JID, ownerStr string, local func(string) bool) bool {
	if ownerStr != "" {
		if by == ownerStr {
			return true
		}
		if _, d, ok := plainBareJID(by); ok {
			// by is a bare JID as jid.Parse gives it back, so not owner's
			// (whose string differs).
			return local != nil && local(d)
		}
	}
	j, err := jid.Parse(by)
	return err == nil && (j.Equal(owner) || local != nil && j.Localpart() != "" && j.Resourcepart() == "" && local(j.Domainpart()))
}

// plainBareJID splits s, if it is a bare JID with a localpart that
// jid.Parse leaves as it is (lower-case ASCII letters, digits, '.', '_'
// and '-'; a domain of such labels, none an IDNA "xn--" one, none
// beginning or ending with '-'), into its localpart and domainpart: the
// server's own accounts, which need no parsing. ok is false for anything
// else, which the caller must parse.
func plainBareJID(s string) (local, domain string, ok bool) {
	at := strings.IndexByte(s, '@')
	if at <= 0 || at > 1023 || len(s)-at-1 > 1023 {
		return "", "", false
	}
	local, domain = s[:at], s[at+1:]
	for i := 0; i < len(local); i++ {
		if c := local[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return "", "", false
		}
	}
	for label := range strings.SplitSeq(domain, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' || strings.HasPrefix(label, "xn--") {
			return "", "", false
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return "", "", false
			}
		}
	}
	return local, domain, true
}

// without returns raw without the byte ranges cut (in increasing order).
func without(raw []byte, cut [][2]int64) []byte {
	out := make([]byte, 0, len(raw))
	last := int64(0)
	for _, c := range cut {
		out = append(out, raw[last:c[0]]...)
		last = c[1]
	}
	return append(out, raw[last:]...)
}

// mayClaim reports whether a <stanza-id/> in raw may claim to be by owner,
// looking only at the by attributes of the start tags named stanza-id: it
// returns false only when none can be owner (so a caller may skip parsing
// the message), true if one is, or if a tag is too odd to tell.
func mayClaim(raw []byte, owner jid.JID) bool {
	ownerStr := owner.String()
	for rest := raw; ; {
		i := bytes.Index(rest, []byte("stanza-id"))
		if i < 0 {
			return false
		}
		rest = rest[i+len("stanza-id"):]
		end := bytes.IndexByte(rest, '>')
		if end < 0 {
			return true
		}
		tag := rest[:end]
		rest = rest[end:]
		by, ok := attrValue(tag, "by")
		if !ok {
			continue // a stanza-id without 'by' claims nobody
		}
		if strings.IndexByte(string(by), '&') >= 0 {
			return true // a reference: too odd to tell here
		}
		v := string(by)
		if strings.EqualFold(v, ownerStr) {
			return true
		}
		if !isASCII(v) {
			// PRECIS may map it to owner: compare properly.
			if j, err := jid.Parse(v); err != nil || j.Equal(owner) {
				return true
			}
		}
	}
}

// attrValue finds name='...' or name="..." in a start tag's bytes.
func attrValue(tag []byte, name string) (string, bool) {
	for i := 0; ; {
		j := bytes.Index(tag[i:], []byte(name+"="))
		if j < 0 {
			return "", false
		}
		j += i
		k := j + len(name) + 1
		if (j == 0 || tag[j-1] == ' ' || tag[j-1] == '\t' || tag[j-1] == '\n' || tag[j-1] == '\r') && k < len(tag) && (tag[k] == '\'' || tag[k] == '"') {
			q := tag[k]
			if e := bytes.IndexByte(tag[k+1:], q); e >= 0 {
				return string(tag[k+1 : k+1+e]), true
			}
			return "", false
		}
		i = k
	}
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
