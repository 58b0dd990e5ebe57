package pep

import (
	"container/list"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"hash"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/storage"
)

// Entity capabilities (XEP-0115 version 1.6) as PEP uses them: which
// nodes an available entity wants notifications for (NODE+notify
// features).
const (
	nsCaps      = "http://jabber.org/protocol/caps"
	nsDiscoInfo = "http://jabber.org/protocol/disco#info"
	notifySufx  = "+notify"
	// capsTimeout bounds one disco#info lookup.
	capsTimeout = 10 * time.Second
	// maxLookups bounds the lookups in flight; entities beyond it get no
	// notifications until their next presence.
	maxLookups = 64
)

// watcher is an available resource (of the owner or of a contact) that
// sent the owner's account presence.
type watcher struct {
	bare string
	caps string // cache key of its capabilities, "" without caps
	span string // the caps element as it was in the last presence
}

// waiter is an entity waiting for a capabilities lookup.
type waiter struct{ owner, full string }

// capsCache maps capability keys to the nodes they want notifications
// for, keeping the most recently used entries.
type capsCache struct {
	mu    sync.Mutex
	size  int
	order *list.List // of *capsEntry, most recently used first
	byKey map[string]*list.Element
}

type capsEntry struct {
	key   string
	nodes []string // sorted
}

func newCapsCache(size int) *capsCache {
	return &capsCache{size: size, order: list.New(), byKey: make(map[string]*list.Element)}
}

// get returns the nodes for key and whether key is cached.
func (c *capsCache) get(key string) ([]string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.byKey[key]
	if !ok {
		return nil, false
	}
	c.order.MoveToFront(e)
	return e.Value.(*capsEntry).nodes, true
}

// put stores nodes for key, evicting the least recently used entry if the
// cache is full.
func (c *capsCache) put(key string, nodes []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.byKey[key]; ok {
		e.Value.(*capsEntry).nodes = nodes
		c.order.MoveToFront(e)
		return
	}
	c.byKey[key] = c.order.PushFront(&capsEntry{key: key, nodes: nodes})
	if c.order.Len() > c.size {
		old := c.order.Back()
		c.order.Remove(old)
		delete(c.byKey, old.Value.(*capsEntry).key)
	}
}

func (c *capsCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}

// capsOf is the <c/> element of a presence.
type capsOf struct {
	Hash string `xml:"hash,attr"`
	Node string `xml:"node,attr"`
	Ver  string `xml:"ver,attr"`
}

// presenceCaps returns the caps element of a presence, if any.
func presenceCaps(st *treff.Stanza) (capsOf, bool) {
	if !strings.Contains(st.Inner(), nsCaps) {
		return capsOf{}, false
	}
	for c := range st.Children() {
		if c.Name.Space == nsCaps && c.Name.Local == "c" {
			hash, _ := c.Attr("hash")
			node, _ := c.Attr("node")
			ver, _ := c.Attr("ver")
			if ver == "" || node == "" {
				return capsOf{}, false
			}
			return capsOf{Hash: hash, Node: node, Ver: ver}, true
		}
	}
	return capsOf{}, false
}

// capsSpan returns the bytes of the caps element in a presence's content
// (from the '<' before the caps namespace to the next '>'), or "".
func capsSpan(inner string) string {
	i := strings.Index(inner, nsCaps)
	if i < 0 {
		return ""
	}
	start := strings.LastIndexByte(inner[:i], '<')
	end := strings.IndexByte(inner[i:], '>')
	if start < 0 || end < 0 {
		return ""
	}
	return inner[start : i+end+1]
}

// capsKey is the cache key of verified capabilities.
func capsKey(c capsOf) string { return c.Hash + " " + c.Ver }

// unverifiedKey is the cache key of capabilities that do not match their
// hash (or use the legacy format without one): valid for one resource.
func unverifiedKey(full, key string) string { return full + " " + key }

// ownPresence tracks the owner's own resources from the presence they
// broadcast.
func (m *Module) ownPresence(ctx context.Context, st *treff.Stanza) bool {
	if st.Kind != treff.KindPresence || !st.To.Equal(jid.JID{}) || (st.Type != "" && st.Type != "unavailable") {
		return false
	}
	owner := st.From.Bare()
	m.presence(ctx, owner.String(), st.From, owner.String(), st)
	return false
}

// contactPresence tracks the resources of others that send presence to a
// local account.
func (m *Module) contactPresence(ctx context.Context, st *treff.Stanza) bool {
	if st.Kind != treff.KindPresence || (st.Type != "" && st.Type != "unavailable" && st.Type != "error") {
		return false
	}
	if st.From.Resourcepart() == "" {
		return false
	}
	owner := st.To.Bare().String()
	bare := st.From.Bare().String()
	if bare == owner {
		return false // own resources are tracked from what they send
	}
	m.presence(ctx, owner, st.From, bare, st)
	return false
}

func (m *Module) sessionClosed(ctx context.Context, s *treff.Session) {
	full := s.JID()
	m.forget(full.Bare().String(), full.String())
}

// forget stops tracking a resource.
func (m *Module) forget(owner, full string) {
	m.mu.Lock()
	if ws := m.watchers[owner]; ws != nil {
		delete(ws, full)
		if len(ws) == 0 {
			delete(m.watchers, owner)
		}
	}
	m.mu.Unlock()
}

// presence updates what is known of the resource from (whose bare JID is
// bare) for owner.
func (m *Module) presence(ctx context.Context, owner string, from jid.JID, bare string, st *treff.Stanza) {
	full := from.String()
	if st.Type != "" {
		m.forget(owner, full)
		return
	}
	// Most presence repeats what the server knows (a status change, the
	// same caps): compare the caps element's bytes before parsing.
	span := capsSpan(st.Inner())
	m.mu.Lock()
	w, known := m.watchers[owner][full]
	m.mu.Unlock()
	if known && w.span == span || !known && span == "" {
		return // nothing new, or nothing to notify it of
	}
	c, hasCaps := presenceCaps(st)
	key := ""
	if hasCaps {
		key = capsKey(c)
	}
	if !known && bare != owner && !m.inRoster(ctx, owner, bare) {
		return
	}
	var old []string
	if known {
		old, _ = m.nodesOf(full, w.caps)
	}
	m.mu.Lock()
	ws := m.watchers[owner]
	if ws == nil {
		ws = make(map[string]*watcher)
		m.watchers[owner] = ws
	}
	if _, ok := ws[full]; !ok && len(ws) >= orDefault(m.MaxWatchers, DefaultMaxWatchers) {
		m.mu.Unlock()
		return
	}
	ws[full] = &watcher{bare: bare, caps: key, span: strings.Clone(span)} // not a slice of the stanza
	m.mu.Unlock()
	if key == "" {
		return
	}
	if nodes, ok := m.nodesOf(full, key); ok {
		m.sendLast(ctx, owner, full, bare, without(nodes, old))
		return
	}
	m.lookup(owner, from, c, key)
}

// inRoster reports whether the owner has a subscription with bare in
// either direction. Resources of such contacts are tracked; whether they
// get notifications is decided when there is something to send ('from'
// or 'both'), since the owner may approve a contact after the contact's
// presence arrived. Strangers' directed presence is not tracked.
func (m *Module) inRoster(ctx context.Context, owner, bare string) bool {
	if m.rosters == nil {
		return false
	}
	it, err := m.rosters.RosterItem(ctx, owner, bare)
	return err == nil && it.Subscription != storage.SubNone && it.Subscription != ""
}

// nodesOf returns the notification nodes of a resource's capabilities.
func (m *Module) nodesOf(full, key string) ([]string, bool) {
	if key == "" {
		return nil, true
	}
	if nodes, ok := m.caps.get(key); ok {
		return nodes, true
	}
	return m.caps.get(unverifiedKey(full, key))
}

// without returns the elements of a not in b.
func without(a, b []string) []string {
	var out []string
	for _, s := range a {
		if !slices.Contains(b, s) {
			out = append(out, s)
		}
	}
	return out
}

// lookup starts resolving capabilities with a disco#info query to the
// resource, unless a query for the same key is in flight.
func (m *Module) lookup(owner string, to jid.JID, c capsOf, key string) {
	m.mu.Lock()
	ws, inFlight := m.pending[key]
	if !inFlight && len(m.pending) >= maxLookups {
		m.mu.Unlock()
		return
	}
	if len(ws) < DefaultMaxWatchers {
		m.pending[key] = append(ws, waiter{owner, to.String()})
	}
	m.mu.Unlock()
	if inFlight {
		return
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.resolve(owner, to, c, key)
	}()
}

// discoInfo is a disco#info result.
type discoInfo struct {
	Identities []struct {
		Category string `xml:"category,attr"`
		Type     string `xml:"type,attr"`
		Lang     string `xml:"http://www.w3.org/XML/1998/namespace lang,attr"`
		Name     string `xml:"name,attr"`
	} `xml:"identity"`
	Features []struct {
		Var string `xml:"var,attr"`
	} `xml:"feature"`
	Forms []struct {
		Fields []struct {
			Var    string   `xml:"var,attr"`
			Type   string   `xml:"type,attr"`
			Values []string `xml:"value"`
		} `xml:"field"`
	} `xml:"jabber:x:data x"`
}

// resolve runs one lookup and then serves the entities that waited for it.
func (m *Module) resolve(owner string, to jid.JID, c capsOf, key string) {
	ctx, cancel := context.WithTimeout(m.ctx, capsTimeout)
	defer cancel()
	nodes, verified, err := m.query(ctx, owner, to, c)
	m.mu.Lock()
	waiters := m.pending[key]
	delete(m.pending, key)
	m.mu.Unlock()
	if err != nil {
		m.srv.Log().Debug("pep: capabilities lookup failed", "to", to.String(), "err", err)
		return
	}
	if verified {
		m.caps.put(key, nodes)
	} else {
		m.caps.put(unverifiedKey(to.String(), key), nodes)
	}
	for _, w := range waiters {
		m.mu.Lock()
		cur := m.watchers[w.owner][w.full]
		var bare string
		still := cur != nil && cur.caps == key
		if still {
			bare = cur.bare
		}
		m.mu.Unlock()
		if !still {
			continue
		}
		got, ok := m.nodesOf(w.full, key)
		if !ok {
			// Unverified capabilities of another resource: ask it itself.
			if j, err := jid.Parse(w.full); err == nil {
				m.lookup(w.owner, j, c, key)
			}
			continue
		}
		m.sendLast(ctx, w.owner, w.full, bare, got)
	}
}

// query asks the resource for the features behind its capabilities and
// returns the nodes it wants notifications for, and whether the answer
// matches the verification string.
func (m *Module) query(ctx context.Context, owner string, to jid.JID, c capsOf) ([]string, bool, error) {
	ownerJID, err := jid.Parse(owner)
	if err != nil {
		return nil, false, err
	}
	b := []byte("<iq type='get' id='pep-caps-")
	b = append(b, newID()...)
	b = append(b, "' from='"...)
	b = treff.AppendEscaped(b, ownerJID.Domainpart())
	b = append(b, "' to='"...)
	b = treff.AppendEscaped(b, to.String())
	b = append(b, "'><query xmlns='"+nsDiscoInfo+"' node='"...)
	b = treff.AppendEscaped(b, c.Node+"#"+c.Ver)
	b = append(b, "'/></iq>"...)
	iq, err := treff.NewStanza(b)
	if err != nil {
		return nil, false, err
	}
	resp, err := m.srv.SendIQ(ctx, iq)
	if err != nil {
		return nil, false, err
	}
	if resp.Type != "result" {
		return nil, false, errors.New("error response")
	}
	var info discoInfo
	if err := resp.DecodePayload(&info); err != nil {
		return nil, false, err
	}
	var nodes []string
	for _, f := range info.Features {
		if n, ok := strings.CutSuffix(f.Var, notifySufx); ok && n != "" {
			nodes = append(nodes, n)
		}
	}
	sort.Strings(nodes)
	nodes = slices.Compact(nodes)
	return nodes, verifyCaps(c, &info), nil
}

// verifyCaps checks the verification string of XEP-0115 section 5.1
// against a disco#info result.
func verifyCaps(c capsOf, info *discoInfo) bool {
	var h hash.Hash
	switch c.Hash {
	case "sha-1":
		h = sha1.New()
	case "sha-256":
		h = sha256.New()
	case "sha-512":
		h = sha512.New()
	default:
		return false
	}
	var ids []string
	for _, id := range info.Identities {
		ids = append(ids, id.Category+"/"+id.Type+"/"+id.Lang+"/"+id.Name)
	}
	var feats []string
	for _, f := range info.Features {
		feats = append(feats, f.Var)
	}
	type form struct {
		typ string
		s   string
	}
	var forms []form
	for _, f := range info.Forms {
		typ, ok := "", false
		var fields []string
		for _, fl := range f.Fields {
			if fl.Var == "FORM_TYPE" {
				if ok || len(fl.Values) != 1 {
					return false
				}
				typ, ok = fl.Values[0], true
				continue
			}
			vs := slices.Clone(fl.Values)
			sort.Strings(vs)
			fields = append(fields, fl.Var+"<"+strings.Join(append(vs, ""), "<"))
		}
		if !ok {
			continue // forms without FORM_TYPE are ignored
		}
		sort.Strings(fields)
		forms = append(forms, form{typ, typ + "<" + strings.Join(fields, "")})
	}
	sort.Strings(ids)
	sort.Strings(feats)
	sort.Slice(forms, func(i, j int) bool { return forms[i].typ < forms[j].typ })
	// Duplicates make the string ambiguous (XEP-0115 5.4).
	if len(slices.Compact(slices.Clone(ids))) != len(ids) || len(slices.Compact(slices.Clone(feats))) != len(feats) {
		return false
	}
	for i := 1; i < len(forms); i++ {
		if forms[i].typ == forms[i-1].typ {
			return false
		}
	}
	var s strings.Builder
	for _, id := range ids {
		s.WriteString(id + "<")
	}
	for _, f := range feats {
		s.WriteString(f + "<")
	}
	for _, f := range forms {
		s.WriteString(f.s)
	}
	h.Write([]byte(s.String()))
	return base64.StdEncoding.EncodeToString(h.Sum(nil)) == c.Ver
}

// sendLast sends the resource the last item of each of the owner's nodes
// in nodes that it may see (XEP-0163 section 6.2).
func (m *Module) sendLast(ctx context.Context, owner, full, bare string, nodes []string) {
	if len(nodes) == 0 {
		return
	}
	var it *storage.RosterItem
	if bare != owner && m.rosters != nil {
		r, err := m.rosters.RosterItem(ctx, owner, bare)
		if err != nil || (r.Subscription != storage.SubFrom && r.Subscription != storage.SubBoth) {
			return
		}
		it = &r
	}
	for _, node := range nodes {
		items, cfg, err := m.items(ctx, owner, node, nil, 1)
		if err != nil || len(items) == 0 {
			continue
		}
		if bare != owner && !allowed(cfg, bare, it) {
			continue
		}
		m.sendEvent(ctx, owner, full, appendItems(nil, node, items))
	}
}

// notify sends an event about the owner's node to every tracked resource
// that wants it and to every explicit subscriber, if it may see it.
func (m *Module) notify(ctx context.Context, owner, node string, cfg storage.PEPNodeConfig, inner []byte) {
	m.notifyTo(ctx, owner, node, cfg, inner, m.subscribers(ctx, owner, node))
}

// subscribers returns the explicit subscribers of a node (none without
// a subscription store).
func (m *Module) subscribers(ctx context.Context, owner, node string) []string {
	if m.Subscriptions == nil {
		return nil
	}
	subs, err := m.Subscriptions.PEPSubscribers(ctx, owner, node)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		m.srv.Log().Error("pep: subscribers read failed", "owner", owner, "node", node, "err", err)
	}
	return subs
}

// notifyTo sends an event about the owner's node to the tracked
// resources that want it (on an account: implicit, presence-based
// subscriptions, XEP-0163 section 4.3) and to the explicit subscribers
// subs, each once, if the access model lets them see it.
func (m *Module) notifyTo(ctx context.Context, owner, node string, cfg storage.PEPNodeConfig, inner []byte, subs []string) {
	var roster map[string]storage.RosterItem
	rosterOK := true
	// rosterItem returns the owner's roster item for bare (nil if none),
	// reading the roster once; false if it cannot be read.
	rosterItem := func(bare string) (*storage.RosterItem, bool) {
		if m.svc != nil || m.rosters == nil {
			return nil, true
		}
		if roster == nil && rosterOK {
			roster = map[string]storage.RosterItem{}
			items, _, err := m.rosters.Roster(ctx, owner)
			if err != nil {
				m.srv.Log().Error("pep: roster read failed", "user", owner, "err", err)
				rosterOK = false
			}
			for _, it := range items {
				roster[it.JID] = it
			}
		}
		if !rosterOK {
			return nil, false
		}
		if it, ok := roster[bare]; ok {
			return &it, true
		}
		return nil, true
	}
	sentBare := map[string]bool{}
	sentFull := map[string]bool{}
	if m.svc == nil {
		type target struct{ full, bare, caps string }
		var targets []target
		m.mu.Lock()
		for full, w := range m.watchers[owner] {
			targets = append(targets, target{full, w.bare, w.caps})
		}
		m.mu.Unlock()
		for _, t := range targets {
			nodes, ok := m.nodesOf(t.full, t.caps)
			if !ok || !slices.Contains(nodes, node) {
				continue
			}
			if t.bare != owner {
				it, ok := rosterItem(t.bare)
				if !ok {
					return
				}
				if it == nil || (it.Subscription != storage.SubFrom && it.Subscription != storage.SubBoth) || !allowed(cfg, t.bare, it) {
					continue
				}
			}
			sentBare[t.bare], sentFull[t.full] = true, true
			m.sendEvent(ctx, owner, t.full, inner)
		}
	}
	for _, s := range subs {
		j, err := jid.Parse(s)
		if err != nil {
			continue
		}
		bare := j.Bare().String()
		if sentFull[s] || (j.Resourcepart() == "" && sentBare[bare]) {
			continue
		}
		if bare != owner {
			it, ok := rosterItem(bare)
			if !ok {
				return
			}
			if !allowed(cfg, bare, it) {
				continue
			}
		}
		sentFull[s] = true
		m.sendEvent(ctx, owner, s, inner)
	}
}
