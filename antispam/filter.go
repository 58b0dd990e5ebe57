package antispam

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/adhoc"
	"github.com/treff-im/treff/storage"
)

// Mode says what happens to messages and subscription requests from
// strangers.
type Mode string

// Filter modes.
const (
	// Off lets everything through.
	Off Mode = "no"
	// Drop drops them silently: a spammer learns nothing.
	Drop Mode = "drop"
	// Quarantine keeps them for the user to review (Filter.Quarantined,
	// and the ad-hoc command NodeQuarantine), the newest
	// Filter.MaxQuarantine at most; the sender learns nothing either.
	Quarantine Mode = "quarantine"
)

// ParseMode parses "no" (or "off"), "drop" or "quarantine".
func ParseMode(s string) (Mode, error) {
	switch m := Mode(strings.ToLower(strings.TrimSpace(s))); m {
	case Off, "off":
		return Off, nil
	case Drop, Quarantine:
		return m, nil
	}
	return "", fmt.Errorf("antispam: %q is not no, drop or quarantine", s)
}

// Blocklist says which senders the server distrusts (a list of spam
// domains, a real-time block list). It must be safe for concurrent use
// and fast: it is asked about every message to a user who filters.
type Blocklist interface {
	// Blocked reports whether stanzas from j are unwanted.
	Blocked(j jid.JID) bool
}

// Domains is a Blocklist of domains, each with its subdomains, fixed
// when made.
type Domains map[string]struct{}

// NewDomains returns a Blocklist of the given domains.
func NewDomains(domains ...string) Domains {
	d := make(Domains, len(domains))
	for _, s := range domains {
		d[strings.ToLower(strings.TrimSpace(s))] = struct{}{}
	}
	return d
}

// Blocked implements Blocklist: j's domain or a domain it is a subdomain
// of is listed.
func (d Domains) Blocked(j jid.JID) bool {
	for s := j.Domainpart(); s != ""; {
		if _, ok := d[s]; ok {
			return true
		}
		i := strings.IndexByte(s, '.')
		if i < 0 {
			break
		}
		s = s[i+1:]
	}
	return false
}

// Ad-hoc command nodes of the filter (XEP-0050), for the users
// themselves.
const (
	NodeFilter     = "urn:treff:antispam#filter"
	NodeQuarantine = "urn:treff:antispam#quarantine"
)

// Keys of the filter's documents in the users' storage.PrivateXML (no
// '{', so that no XEP-0049 element can take them).
const (
	keyMode       = "antispam:filter"
	keyQuarantine = "antispam:quarantine"
)

// DefaultMaxQuarantine is the default of Filter.MaxQuarantine.
const DefaultMaxQuarantine = 50

// maxQuarantined is the largest stanza kept in quarantine, in bytes;
// larger ones are dropped.
const maxQuarantined = 8 << 10

// Filter is the module that keeps messages and presence subscription
// requests from strangers away from users who want that. A stranger is
// a sender not in the user's roster (in any state: the user put it
// there), on another account than the user's own, that the user did not
// write to since the server started. Group chat traffic passes: messages
// of type groupchat, and private messages and invitations carrying the
// <x xmlns='http://jabber.org/protocol/muc#user'/> element. So do
// errors, IQs, other presence, and stanzas from servers and services (no
// localpart) or from subdomains of the server's hosts (its own group
// chat and other services).
//
// Senders on the Blocklist that are not in the user's roster are
// filtered too, with the user's mode, or dropped if the user filters
// nothing.
type Filter struct {
	// Default is the mode of users who chose none. "" means Off.
	Default Mode
	// Blocklist, if not nil, names distrusted senders.
	Blocklist Blocklist
	// AdHoc, if not nil, gets the users' commands NodeFilter (choose the
	// mode) and NodeQuarantine (review what was kept).
	AdHoc *adhoc.Module
	// MaxQuarantine is the most stanzas kept per user. 0 means
	// DefaultMaxQuarantine.
	MaxQuarantine int
	// Store keeps each user's mode and quarantine. nil means the
	// server's Storage, which must then implement storage.PrivateXML.
	Store storage.PrivateXML
	// Rosters tells contacts from strangers. nil means the server's
	// Storage.
	Rosters storage.Rosters

	srv     *treff.Server
	modes   modeCache
	written writtenTo
	locks   [32]sync.Mutex // serialise quarantine updates per user (by hash)
}

var _ treff.Module = (*Filter)(nil)

// Name implements treff.Module.
func (f *Filter) Name() string { return "antispam" }

// Setup implements treff.Module.
func (f *Filter) Setup(ctx context.Context, r *treff.Registry) error {
	f.srv = r.Server()
	if f.Default == "" {
		f.Default = Off
	}
	var err error
	if f.Default, err = ParseMode(string(f.Default)); err != nil {
		return err
	}
	if f.Store, err = storage.Require(f.Store, f.srv.Storage, "antispam"); err != nil {
		return err
	}
	if f.Rosters == nil && f.srv.Storage != nil {
		f.Rosters = f.srv.Storage
	}
	r.InPhase(treff.PhaseFilter).OnAccountStanza(f.inbound)
	r.OnClientStanza(f.outbound)
	r.OnAccountDeleted(func(ctx context.Context, user jid.JID) error {
		f.modes.forget(user)
		f.written.forget(user)
		return nil // the documents go with the user's private XML
	})
	if f.AdHoc != nil {
		f.AdHoc.Add(f.modeCommand(), f.quarantineCommand())
	}
	return nil
}

func (f *Filter) maxQuarantine() int {
	if f.MaxQuarantine <= 0 {
		return DefaultMaxQuarantine
	}
	return f.MaxQuarantine
}

// Mode returns the user's own mode, "" if the user chose none.
func (f *Filter) Mode(ctx context.Context, user jid.JID) (Mode, error) {
	if m, ok := f.modes.get(user); ok {
		return m, nil
	}
	doc, err := f.Store.PrivateXML(ctx, user.Bare().String(), keyMode)
	var m Mode
	switch {
	case errors.Is(err, storage.ErrNotFound):
	case err != nil:
		return "", fmt.Errorf("antispam: reading the filter mode of %s: %w", user.Bare(), err)
	default:
		m, _ = ParseMode(string(doc))
	}
	f.modes.put(user, m)
	return m, nil
}

// SetMode sets the user's own mode; "" returns the user to the server's
// default.
func (f *Filter) SetMode(ctx context.Context, user jid.JID, m Mode) error {
	var err error
	if m == "" {
		err = f.Store.DeletePrivateXML(ctx, user.Bare().String(), keyMode)
	} else {
		if m, err = ParseMode(string(m)); err != nil {
			return err
		}
		err = f.Store.PutPrivateXML(ctx, user.Bare().String(), keyMode, []byte(m))
	}
	if err != nil {
		return fmt.Errorf("antispam: setting the filter mode of %s: %w", user.Bare(), err)
	}
	f.modes.put(user, m)
	return nil
}

// effective returns the mode that applies to user.
func (f *Filter) effective(ctx context.Context, user jid.JID) Mode {
	m, err := f.Mode(ctx, user)
	if err != nil {
		f.srv.Log().Error("antispam: reading a filter mode failed", "err", err)
	}
	if m == "" {
		return f.Default
	}
	return m
}

// passKey marks a context whose stanzas the filter lets through
// (quarantined stanzas the user releases).
type passKey struct{}

// inbound is the OnAccountStanza hook.
func (f *Filter) inbound(ctx context.Context, st *treff.Stanza) bool {
	switch st.Kind {
	case treff.KindMessage:
		if st.Type == "error" || st.Type == "groupchat" {
			return false
		}
	case treff.KindPresence:
		if st.Type != "subscribe" {
			return false
		}
	default:
		return false
	}
	from, user := st.From, st.To
	if from.Localpart() == "" || from.Localpart() == user.Localpart() && from.Domainpart() == user.Domainpart() {
		return false
	}
	mode := f.effective(ctx, user)
	blocked := f.Blocklist != nil && f.Blocklist.Blocked(from)
	if mode == Off && !blocked || ctx.Value(passKey{}) != nil || f.localService(from) {
		return false
	}
	if st.Kind == treff.KindMessage && mucUser(st) {
		return false
	}
	if f.written.has(user, from) || f.inRoster(ctx, user, from) {
		return false
	}
	if mode == Quarantine {
		if err := f.quarantine(ctx, user, st); err != nil {
			f.srv.Log().Error("antispam: quarantining failed", "user", user.Bare().String(), "err", err)
		}
	}
	f.srv.Log().Debug("stanza from a stranger filtered", "to", user.Bare().String(), "mode", string(mode), "blocklisted", blocked)
	return true
}

// localService reports a sender on a subdomain of one of the server's
// hosts, such as its group chat service.
func (f *Filter) localService(from jid.JID) bool {
	d := from.Domainpart()
	for _, h := range f.srv.Hosts {
		if strings.HasSuffix(d, "."+h.Domain) {
			return true
		}
	}
	return false
}

// mucUser reports a message with the XEP-0045 muc#user element: a
// private message from an occupant or an invitation.
func mucUser(st *treff.Stanza) bool {
	for c := range st.Children() {
		if c.Name == (xml.Name{Space: nsMUC + "#user", Local: "x"}) {
			return true
		}
	}
	return false
}

func (f *Filter) inRoster(ctx context.Context, user, from jid.JID) bool {
	if f.Rosters == nil {
		return false
	}
	_, err := f.Rosters.RosterItem(ctx, user.Bare().String(), from.Bare().String())
	switch {
	case err == nil:
		return true
	case errors.Is(err, storage.ErrNotFound):
		return false
	}
	f.srv.Log().Error("antispam: reading a roster failed", "user", user.Bare().String(), "err", err)
	return true // a failing store must not hide messages
}

// outbound is the OnClientStanza hook: whom a user writes to (a message
// or a subscription request) is no stranger to that user from then on.
func (f *Filter) outbound(ctx context.Context, st *treff.Stanza) bool {
	if st.To.Localpart() == "" || st.Type == "error" || st.Type == "groupchat" {
		return false
	}
	if st.Kind == treff.KindMessage || st.Kind == treff.KindPresence && st.Type == "subscribe" {
		if !f.written.has(st.From, st.To) {
			f.written.add(st.From, st.To)
		}
	}
	return false
}

// Quarantined is one stanza kept from a stranger.
type Quarantined struct {
	// ID identifies it among the user's, for Release and Discard.
	ID uint64
	// Received is when it arrived.
	Received time.Time
	// From is the sender.
	From jid.JID
	// Stanza is the serialised message or subscription request.
	Stanza []byte
}

// quarantineDoc is the stored list, oldest first.
type quarantineDoc struct {
	XMLName xml.Name         `xml:"quarantine"`
	Next    uint64           `xml:"next,attr"`
	Items   []quarantineItem `xml:"item"`
}

type quarantineItem struct {
	ID       uint64    `xml:"id,attr"`
	Received time.Time `xml:"received,attr"`
	From     string    `xml:"from,attr"`
	Stanza   string    `xml:",chardata"`
}

func (f *Filter) lock(user jid.JID) func() {
	var h uint32
	for _, c := range []byte(user.Bare().String()) {
		h = h*31 + uint32(c)
	}
	mu := &f.locks[h%uint32(len(f.locks))]
	mu.Lock()
	return mu.Unlock
}

func (f *Filter) load(ctx context.Context, user jid.JID) (quarantineDoc, error) {
	var d quarantineDoc
	b, err := f.Store.PrivateXML(ctx, user.Bare().String(), keyQuarantine)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return d, nil
	case err != nil:
		return d, fmt.Errorf("antispam: reading the quarantine of %s: %w", user.Bare(), err)
	}
	if err := xml.Unmarshal(b, &d); err != nil {
		return quarantineDoc{}, fmt.Errorf("antispam: the quarantine of %s does not decode: %w", user.Bare(), err)
	}
	return d, nil
}

func (f *Filter) save(ctx context.Context, user jid.JID, d quarantineDoc) error {
	if len(d.Items) == 0 {
		return f.Store.DeletePrivateXML(ctx, user.Bare().String(), keyQuarantine)
	}
	b, err := xml.Marshal(d)
	if err != nil {
		return err
	}
	return f.Store.PutPrivateXML(ctx, user.Bare().String(), keyQuarantine, b)
}

// quarantine keeps st for user, dropping the oldest beyond MaxQuarantine.
func (f *Filter) quarantine(ctx context.Context, user jid.JID, st *treff.Stanza) error {
	if len(st.Raw()) > maxQuarantined {
		return nil
	}
	defer f.lock(user)()
	d, err := f.load(ctx, user)
	if err != nil {
		return err
	}
	d.Next++
	d.Items = append(d.Items, quarantineItem{ID: d.Next, Received: time.Now().UTC(), From: st.From.String(), Stanza: string(st.Raw())})
	if n := len(d.Items) - f.maxQuarantine(); n > 0 {
		d.Items = d.Items[n:]
	}
	return f.save(ctx, user, d)
}

// Quarantined returns what is kept for user, oldest first.
func (f *Filter) Quarantined(ctx context.Context, user jid.JID) ([]Quarantined, error) {
	d, err := f.load(ctx, user)
	if err != nil {
		return nil, err
	}
	out := make([]Quarantined, 0, len(d.Items))
	for _, it := range d.Items {
		from, _ := jid.Parse(it.From)
		out = append(out, Quarantined{ID: it.ID, Received: it.Received, From: from, Stanza: []byte(it.Stanza)})
	}
	return out, nil
}

// Release delivers the kept stanzas with the given IDs to user now (past
// the filter) and removes them; Discard removes them only. Both return
// how many they found.
func (f *Filter) Release(ctx context.Context, user jid.JID, ids ...uint64) (int, error) {
	return f.take(ctx, user, ids, true)
}

// Discard removes the kept stanzas with the given IDs, or all of them if
// none is given.
func (f *Filter) Discard(ctx context.Context, user jid.JID, ids ...uint64) (int, error) {
	return f.take(ctx, user, ids, false)
}

func (f *Filter) take(ctx context.Context, user jid.JID, ids []uint64, deliver bool) (int, error) {
	unlock := f.lock(user)
	d, err := f.load(ctx, user)
	if err != nil {
		unlock()
		return 0, err
	}
	var taken []quarantineItem
	kept := d.Items[:0:0]
	for _, it := range d.Items {
		if len(ids) == 0 && !deliver || containsID(ids, it.ID) {
			taken = append(taken, it)
		} else {
			kept = append(kept, it)
		}
	}
	d.Items = kept
	if len(taken) > 0 {
		err = f.save(ctx, user, d)
	}
	unlock()
	if err != nil {
		return 0, fmt.Errorf("antispam: updating the quarantine of %s: %w", user.Bare(), err)
	}
	if deliver {
		pass := context.WithValue(ctx, passKey{}, true)
		for _, it := range taken {
			st, err := treff.NewStanza([]byte(it.Stanza))
			if err != nil {
				f.srv.Log().Error("antispam: a quarantined stanza does not parse", "err", err)
				continue
			}
			// Delivered late: say when it came (XEP-0203).
			if st.Kind == treff.KindMessage {
				stamp := "<delay xmlns='urn:xmpp:delay' from='" + user.Domainpart() + "' stamp='" + it.Received.UTC().Format("2006-01-02T15:04:05Z") + "'/>"
				if err := st.AddChild([]byte(stamp)); err != nil {
					f.srv.Log().Error("antispam: stamping a quarantined message failed", "err", err)
				}
			}
			f.srv.Route(pass, st)
		}
	}
	return len(taken), nil
}

func containsID(ids []uint64, id uint64) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

// modeCache holds the modes of users seen recently ("" for those who
// chose none).
type modeCache struct {
	mu sync.RWMutex
	m  map[userKey]Mode
}

// maxCached bounds the caches; past it they start afresh.
const maxCached = 100_000

func (c *modeCache) get(user jid.JID) (Mode, bool) {
	c.mu.RLock()
	m, ok := c.m[userKey{user.Localpart(), user.Domainpart()}]
	c.mu.RUnlock()
	return m, ok
}

func (c *modeCache) put(user jid.JID, m Mode) {
	k := userKey{strings.Clone(user.Localpart()), strings.Clone(user.Domainpart())}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxCached {
		c.m = make(map[userKey]Mode)
	}
	c.m[k] = m
	c.mu.Unlock()
}

func (c *modeCache) forget(user jid.JID) {
	c.mu.Lock()
	delete(c.m, userKey{user.Localpart(), user.Domainpart()})
	c.mu.Unlock()
}

// writtenTo remembers, in memory, whom each user wrote to.
type writtenTo struct {
	mu sync.RWMutex
	m  map[pairKey]struct{}
}

type pairKey struct{ user, peer userKey }

func pair(user, peer jid.JID) pairKey {
	return pairKey{userKey{user.Localpart(), user.Domainpart()}, userKey{peer.Localpart(), peer.Domainpart()}}
}

func (w *writtenTo) has(user, peer jid.JID) bool {
	w.mu.RLock()
	_, ok := w.m[pair(user, peer)]
	w.mu.RUnlock()
	return ok
}

func (w *writtenTo) add(user, peer jid.JID) {
	k := pair(user, peer)
	k.user.local, k.user.domain = strings.Clone(k.user.local), strings.Clone(k.user.domain)
	k.peer.local, k.peer.domain = strings.Clone(k.peer.local), strings.Clone(k.peer.domain)
	w.mu.Lock()
	if w.m == nil || len(w.m) >= maxCached {
		w.m = make(map[pairKey]struct{})
	}
	w.m[k] = struct{}{}
	w.mu.Unlock()
}

func (w *writtenTo) forget(user jid.JID) {
	u := userKey{user.Localpart(), user.Domainpart()}
	w.mu.Lock()
	for k := range w.m {
		if k.user == u {
			delete(w.m, k)
		}
	}
	w.mu.Unlock()
}
