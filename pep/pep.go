// Package pep implements XEP-0163: Personal Eventing Protocol (version
// 1.2.2) for a Treff server: every account's bare JID is a small
// publish-subscribe service (XEP-0060: Publish-Subscribe, the subset that
// XEP-0163, XEP-0223 and XEP-0384 need), enough for OMEMO device lists and
// bundles, user avatars (XEP-0084), user nicknames (XEP-0172) and
// bookmarks (XEP-0402, with XEP-0411 conversion of legacy bookmarks).
//
// The owner publishes (nodes are created on first publish, with
// publish-options checked as preconditions, XEP-0060 section 7.1.5),
// retracts, purges, deletes and configures nodes; anyone the node's access
// model allows (open, presence, roster, whitelist) retrieves items.
// Notifications go, as headline messages from the owner's bare JID, to the
// owner's available resources and to contacts with a presence subscription
// ('from' or 'both') whose entity capabilities (XEP-0115) include
// NODE+notify and whom the access model allows. Capabilities are learnt
// from the presence the owner's account receives and resolved with one
// disco#info query per verification string, checked against its hash and
// kept in a bounded cache. An entity that becomes available gets the last
// item of each node it is interested in (XEP-0163 section 6.2). Explicit
// subscriptions (XEP-0060 section 6.1) are offered when a
// storage.PEPSubscriptions keeps them; subscribers get every notification
// the access model lets them see.
//
// Service is a publish-subscribe service (XEP-0060 version 1.26) on
// pubsub.DOMAIN that runs the same engine on the same node store.
//
// Items of nodes with pubsub#persist_items false are not stored: the last
// one is kept in memory (lost on restart) for retrieval and for the
// last-item-on-presence delivery.
package pep

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"sync"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/discoinfo"
	"github.com/treff-im/treff/stanza"
	"github.com/treff-im/treff/storage"
)

// Namespaces and features.
const (
	NS        = "http://jabber.org/protocol/pubsub"
	NSOwner   = "http://jabber.org/protocol/pubsub#owner"
	NSEvent   = "http://jabber.org/protocol/pubsub#event"
	NSErrors  = "http://jabber.org/protocol/pubsub#errors"
	NSConfig  = "http://jabber.org/protocol/pubsub#node_config"
	NSOptions = "http://jabber.org/protocol/pubsub#publish-options"
	// NSBookmarks is the XEP-0402 bookmarks node and payload namespace.
	NSBookmarks = "urn:xmpp:bookmarks:1"
	// NSLegacyBookmarks is the XEP-0048 private XML storage namespace.
	NSLegacyBookmarks = "storage:bookmarks"
)

// features are the account disco features the module adds (with
// subFeatures when explicit subscriptions are kept).
var features = []string{
	NS,
	NS + "#access-open",
	NS + "#access-presence",
	NS + "#access-roster",
	NS + "#access-whitelist",
	NS + "#auto-create",
	NS + "#auto-subscribe",
	NS + "#config-node",
	NS + "#create-and-configure",
	NS + "#create-nodes",
	NS + "#delete-items",
	NS + "#delete-nodes",
	NS + "#filtered-notifications",
	NS + "#item-ids",
	NS + "#last-published",
	NS + "#manage-affiliations",
	NS + "#member-affiliation",
	NS + "#modify-affiliations",
	NS + "#multi-items",
	NS + "#outcast-affiliation",
	NS + "#persistent-items",
	NS + "#publish",
	NS + "#publish-options",
	NS + "#purge-nodes",
	NS + "#retract-items",
	NS + "#retrieve-affiliations",
	NS + "#publisher-affiliation",
	NS + "#retrieve-default",
	NS + "#retrieve-items",
	NS + "#rsm",
	NSBookmarks + "#compat",
}

// subFeatures are the features of explicit subscriptions.
var subFeatures = []string{
	NS + "#manage-subscriptions",
	NS + "#retrieve-subscriptions",
	NS + "#subscribe",
}

// Defaults of the Module fields.
const (
	DefaultMaxItems      = 256
	DefaultMaxNodes      = 100
	DefaultCapsCacheSize = 1000
	DefaultMaxWatchers   = 1000
	// DefaultMaxSubscribers bounds the explicit subscriptions of a node.
	DefaultMaxSubscribers = 1000
)

// Module is the personal eventing service of every account.
type Module struct {
	// Store keeps nodes and items. nil means the server's Storage, which
	// must then implement storage.PEP.
	Store storage.PEP
	// MaxItems is the most items a node keeps, whatever its
	// pubsub#max_items says ("max" means this). 0 means DefaultMaxItems.
	MaxItems int
	// MaxNodes is the most nodes per account. 0 means DefaultMaxNodes.
	MaxNodes int
	// CapsCacheSize bounds the cache of entity capabilities (one entry per
	// verification string). 0 means DefaultCapsCacheSize.
	CapsCacheSize int
	// MaxWatchers bounds the available resources (own and contacts')
	// tracked per account for notifications. 0 means DefaultMaxWatchers.
	MaxWatchers int
	// Subscriptions keeps explicit subscriptions (XEP-0060 section 6.1).
	// nil means the server's Storage if it implements
	// storage.PEPSubscriptions; without either, explicit subscriptions are
	// not offered.
	Subscriptions storage.PEPSubscriptions
	// MaxSubscribers is the most explicit subscriptions per node. 0 means
	// DefaultMaxSubscribers.
	MaxSubscribers int
	// OnPublish, if set, is called after an item was published to one of
	// an owner's nodes, for modules that derive something from it (the
	// vCard module's avatar hash from urn:xmpp:avatar:metadata).
	OnPublish func(ctx context.Context, owner jid.JID, node string)

	srv     *treff.Server
	svc     *Service // set when the module is the engine of a Service
	rosters storage.Rosters
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	seed    maphash.Seed
	locks   [64]sync.Mutex

	mu        sync.Mutex
	transient map[nodeKey]storage.PEPItem // last item of non-persistent nodes
	watchers  map[string]map[string]*watcher
	caps      *capsCache
	pending   map[string][]waiter // caps key -> entities waiting for its lookup
}

type nodeKey struct{ owner, node string }

var (
	_ treff.Module  = (*Module)(nil)
	_ treff.Stopper = (*Module)(nil)
)

// Name implements treff.Module.
func (m *Module) Name() string { return "pep" }

// Setup implements treff.Module.
func (m *Module) Setup(ctx context.Context, r *treff.Registry) error {
	if err := m.init(ctx, r.Server(), "pep"); err != nil {
		return err
	}
	for _, f := range features {
		r.AddAccountFeature(f)
	}
	if m.Subscriptions != nil {
		for _, f := range subFeatures {
			r.AddAccountFeature(f)
		}
	}
	// XEP-0163 4: the account is a PEP service (clients such as
	// Conversations look for this identity).
	r.AddAccountIdentity(discoinfo.Identity{Category: "pubsub", Type: "pep"})
	r.HandleAccountIQ(NS, treff.IQHandlerFunc(m.handleIQ))
	r.HandleAccountIQ(NSOwner, treff.IQHandlerFunc(m.handleIQ))
	r.OnClientStanza(m.ownPresence)
	r.OnAccountStanza(m.contactPresence)
	r.OnSessionClosed(m.sessionClosed)
	r.OnAccountDeleted(m.accountDeleted)
	return nil
}

// init sets the module up as the engine of srv, with the store required
// under the name what.
func (m *Module) init(ctx context.Context, srv *treff.Server, what string) error {
	m.srv = srv
	var err error
	if m.Store, err = storage.Require(m.Store, m.srv.Storage, what); err != nil {
		return err
	}
	if m.Subscriptions == nil {
		m.Subscriptions, _ = m.srv.Storage.(storage.PEPSubscriptions)
	}
	if m.srv.Storage != nil {
		m.rosters = m.srv.Storage
	}
	m.ctx, m.cancel = context.WithCancel(ctx) // the server's: ends when it stops
	m.seed = maphash.MakeSeed()
	m.transient = make(map[nodeKey]storage.PEPItem)
	m.watchers = make(map[string]map[string]*watcher)
	m.pending = make(map[string][]waiter)
	m.caps = newCapsCache(orDefault(m.CapsCacheSize, DefaultCapsCacheSize))
	return nil
}

// Stop implements treff.Stopper: it ends the capability lookups in flight.
func (m *Module) Stop(ctx context.Context) error {
	if m.cancel == nil {
		return nil
	}
	m.cancel()
	done := make(chan struct{})
	go func() {
		m.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("pep: stop: %w", ctx.Err())
	}
}

func orDefault(v, def int) int {
	if v <= 0 {
		return def
	}
	return v
}

// lock serialises the writes of one owner.
func (m *Module) lock(owner string) func() {
	mu := &m.locks[maphash.String(m.seed, owner)%uint64(len(m.locks))]
	mu.Lock()
	return mu.Unlock
}

// effectiveMax is the number of items a node with cfg keeps.
func (m *Module) effectiveMax(cfg storage.PEPNodeConfig) int {
	limit := orDefault(m.MaxItems, DefaultMaxItems)
	if cfg.MaxItems == storage.PEPMaxItemsMax || cfg.MaxItems <= 0 || cfg.MaxItems > limit {
		return limit
	}
	return cfg.MaxItems
}

// defaultConfig is the configuration of a node created without one: on
// a Service, open with DefaultServiceNodeItems items; on an account,
// presence with one item.
func (m *Module) defaultConfig() storage.PEPNodeConfig {
	if m.svc != nil {
		return storage.PEPNodeConfig{
			AccessModel:   storage.AccessOpen,
			PublishModel:  storage.PublishPublishers,
			PersistItems:  true,
			MaxItems:      DefaultServiceNodeItems,
			NotifyRetract: true,
			NotifyDelete:  true,
		}
	}
	return storage.PEPNodeConfig{
		AccessModel:   storage.AccessPresence,
		PersistItems:  true,
		MaxItems:      1,
		NotifyRetract: true,
		NotifyDelete:  true,
	}
}

// checkConfig refuses what a node of this kind does not offer: a
// Service has no rosters, so only the open and whitelist access models.
func (m *Module) checkConfig(cfg storage.PEPNodeConfig) error {
	if m.svc != nil && cfg.AccessModel != storage.AccessOpen && cfg.AccessModel != storage.AccessWhitelist {
		return stanza.NotAcceptable.WithText("unsupported access model")
	}
	return nil
}

func (m *Module) accountDeleted(ctx context.Context, user jid.JID) error {
	owner := user.Bare().String()
	m.mu.Lock()
	for k := range m.transient {
		if k.owner == owner {
			delete(m.transient, k)
		}
	}
	delete(m.watchers, owner)
	m.mu.Unlock()
	if err := m.Store.DeletePEPOwner(ctx, owner); err != nil {
		return fmt.Errorf("pep: deleting the account's nodes: %w", err)
	}
	return nil
}

// newID returns a random item ID.
func newID() string { return rand.Text()[:16] }

// errNoOwner is returned by the exported methods for a JID that is not a
// local account's.
var errNoOwner = errors.New("pep: not a local account")

func (m *Module) checkOwner(owner jid.JID) (string, error) {
	if m.srv == nil {
		return "", errors.New("pep: module not set up")
	}
	if owner.Localpart() == "" || !m.srv.IsLocal(owner.Domainpart()) {
		return "", errNoOwner
	}
	return owner.Bare().String(), nil
}

// LastItem returns the newest item of the owner's node, whoever may see
// it, for other modules (such as vCard-based avatars). It returns an error
// wrapping storage.ErrNotFound if the node does not exist or has no item.
func (m *Module) LastItem(ctx context.Context, owner jid.JID, node string) (id string, payload []byte, err error) {
	o, err := m.checkOwner(owner)
	if err != nil {
		return "", nil, err
	}
	items, _, err := m.items(ctx, o, node, nil, 1)
	if err != nil {
		return "", nil, err
	}
	if len(items) == 0 {
		return "", nil, fmt.Errorf("pep: node %q of %s has no item: %w", node, o, storage.ErrNotFound)
	}
	it := items[len(items)-1]
	return it.ID, it.Payload, nil
}

// PublishItem publishes payload as item id ("" for a new random ID) on
// the owner's node on the owner's behalf, and notifies as a publication by
// the owner would. A missing node is created with the default
// configuration and accessModel ("" means presence); an existing node
// keeps its configuration.
func (m *Module) PublishItem(ctx context.Context, owner jid.JID, node, id string, payload []byte, accessModel string) error {
	o, err := m.checkOwner(owner)
	if err != nil {
		return err
	}
	if _, err := singleElement(string(payload)); err != nil {
		return fmt.Errorf("pep: publish on %q: %w", node, err)
	}
	var opts map[string]string
	if accessModel != "" {
		opts = map[string]string{"pubsub#access_model": accessModel}
	}
	if id == "" {
		id = newID()
	}
	_, err = m.publish(ctx, o, node, storage.PEPItem{ID: id, Payload: payload}, opts, false, o)
	return err
}

// items returns items of a node (ids or the last ones, as
// storage.PEP.PEPItems) with the node's configuration.
func (m *Module) items(ctx context.Context, owner, node string, ids []string, last int) ([]storage.PEPItem, storage.PEPNodeConfig, error) {
	cfg, err := m.Store.PEPNodeConfig(ctx, owner, node)
	if err != nil {
		return nil, cfg, err
	}
	if cfg.PersistItems {
		items, err := m.Store.PEPItems(ctx, owner, node, ids, last)
		return items, cfg, err
	}
	m.mu.Lock()
	it, ok := m.transient[nodeKey{owner, node}]
	m.mu.Unlock()
	if !ok || len(ids) > 0 && !slices.Contains(ids, it.ID) {
		return nil, cfg, nil
	}
	return []storage.PEPItem{it}, cfg, nil
}

// publish stores it on the owner's node, creating the node with opts (or
// checking opts as preconditions if it exists, when precond is set) with
// creator as its owner, and notifies. It returns the item ID.
func (m *Module) publish(ctx context.Context, owner, node string, it storage.PEPItem, opts map[string]string, precond bool, creator string) (string, error) {
	unlock := m.lock(owner)
	cfg, err := m.ensureNode(ctx, owner, node, opts, precond, creator)
	if err != nil {
		unlock()
		return "", err
	}
	if cfg.PersistItems {
		err = m.Store.PublishPEPItem(ctx, owner, node, it, m.effectiveMax(cfg))
	} else {
		m.mu.Lock()
		m.transient[nodeKey{owner, node}] = it
		m.mu.Unlock()
	}
	unlock()
	if err != nil {
		return "", err
	}
	m.notify(ctx, owner, node, cfg, appendItems(nil, node, []storage.PEPItem{it}))
	if m.OnPublish != nil {
		if o, err := jid.Parse(owner); err == nil {
			m.OnPublish(ctx, o, node)
		}
	}
	return it.ID, nil
}

// ensureNode returns the node's configuration, creating the node from
// the defaults and opts (and creator as its owner on a Service) if it
// does not exist. With precond, opts of an existing node must match its
// configuration. The owner's lock is held.
func (m *Module) ensureNode(ctx context.Context, owner, node string, opts map[string]string, precond bool, creator string) (storage.PEPNodeConfig, error) {
	cfg, err := m.Store.PEPNodeConfig(ctx, owner, node)
	if err == nil {
		if precond {
			if err := preconditions(cfg, opts); err != nil {
				return cfg, err
			}
		}
		return cfg, nil
	}
	if !errors.Is(err, storage.ErrNotFound) {
		return cfg, err
	}
	cfg = m.defaultConfig()
	if err := applyOptions(&cfg, opts); err != nil {
		return cfg, err
	}
	if err := m.checkConfig(cfg); err != nil {
		return cfg, err
	}
	if m.svc != nil {
		cfg.Owners = []string{creator}
	}
	if err := m.createNode(ctx, owner, node, cfg); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// createNode creates a node within the per-account limit. The owner's
// lock is held.
func (m *Module) createNode(ctx context.Context, owner, node string, cfg storage.PEPNodeConfig) error {
	nodes, err := m.Store.PEPNodes(ctx, owner)
	if err != nil {
		return err
	}
	if len(nodes) >= orDefault(m.MaxNodes, DefaultMaxNodes) {
		return stanza.PolicyViolation.WithText("too many nodes")
	}
	if m.svc != nil && len(cfg.Owners) > 0 && !slices.Contains(nodes, node) {
		if err := m.svc.checkUserNodes(ctx, owner, nodes, cfg.Owners[0]); err != nil {
			return err
		}
	}
	if err := m.Store.CreatePEPNode(ctx, owner, node, cfg); err != nil {
		if errors.Is(err, storage.ErrExists) {
			return stanza.Conflict
		}
		return err
	}
	return nil
}

// retract removes an item and notifies if the node says so or notify is
// set.
func (m *Module) retract(ctx context.Context, owner, node, id string, notify bool) error {
	unlock := m.lock(owner)
	cfg, err := m.Store.PEPNodeConfig(ctx, owner, node)
	if err != nil {
		unlock()
		return err
	}
	if cfg.PersistItems {
		err = m.Store.RetractPEPItem(ctx, owner, node, id)
	} else {
		k := nodeKey{owner, node}
		m.mu.Lock()
		if it, ok := m.transient[k]; ok && it.ID == id {
			delete(m.transient, k)
		} else {
			err = storage.ErrNotFound
		}
		m.mu.Unlock()
	}
	unlock()
	if err != nil {
		return err
	}
	if notify || cfg.NotifyRetract {
		b := append([]byte("<items node='"), treff.AppendEscaped(nil, node)...)
		b = append(b, "'><retract id='"...)
		b = treff.AppendEscaped(b, id)
		b = append(b, "'/></items>"...)
		m.notify(ctx, owner, node, cfg, b)
	}
	return nil
}

// deleteNode removes a node and notifies its watchers.
func (m *Module) deleteNode(ctx context.Context, owner, node string) error {
	return m.clear(ctx, owner, node, "delete", m.Store.DeletePEPNode)
}

// purge removes a node's items and notifies its watchers.
func (m *Module) purge(ctx context.Context, owner, node string) error {
	return m.clear(ctx, owner, node, "purge", m.Store.PurgePEPNode)
}

// clear deletes or purges a node with op, forgets its transient item and,
// if the node says so, sends its watchers <delete/> or <purge/> (event).
func (m *Module) clear(ctx context.Context, owner, node, event string, op func(ctx context.Context, owner, node string) error) error {
	unlock := m.lock(owner)
	cfg, err := m.Store.PEPNodeConfig(ctx, owner, node)
	var subs []string
	if err == nil {
		subs = m.subscribers(ctx, owner, node) // a deletion removes them
		err = op(ctx, owner, node)
	}
	m.mu.Lock()
	delete(m.transient, nodeKey{owner, node})
	m.mu.Unlock()
	unlock()
	if err != nil {
		return err
	}
	if cfg.NotifyDelete {
		b := append([]byte("<"+event+" node='"), treff.AppendEscaped(nil, node)...)
		m.notifyTo(ctx, owner, node, cfg, append(b, "'/>"...), subs)
	}
	return nil
}

// setConfig replaces a node's configuration, trimming its items to the
// new limit and moving them out of storage if they no longer persist.
func (m *Module) setConfig(ctx context.Context, owner, node string, cfg storage.PEPNodeConfig) error {
	unlock := m.lock(owner)
	defer unlock()
	old, err := m.Store.PEPNodeConfig(ctx, owner, node)
	if err != nil {
		return err
	}
	if err := m.Store.SetPEPNodeConfig(ctx, owner, node, cfg); err != nil {
		return err
	}
	k := nodeKey{owner, node}
	switch {
	case old.PersistItems && !cfg.PersistItems:
		items, err := m.Store.PEPItems(ctx, owner, node, nil, 1)
		if err != nil {
			return err
		}
		if len(items) > 0 {
			m.mu.Lock()
			m.transient[k] = items[0]
			m.mu.Unlock()
		}
		return m.Store.PurgePEPNode(ctx, owner, node)
	case !old.PersistItems && cfg.PersistItems:
		m.mu.Lock()
		it, ok := m.transient[k]
		delete(m.transient, k)
		m.mu.Unlock()
		if ok {
			return m.Store.PublishPEPItem(ctx, owner, node, it, m.effectiveMax(cfg))
		}
	case cfg.PersistItems:
		items, err := m.Store.PEPItems(ctx, owner, node, nil, 0)
		if err != nil {
			return err
		}
		for _, it := range items[:max(0, len(items)-m.effectiveMax(cfg))] {
			if err := m.Store.RetractPEPItem(ctx, owner, node, it.ID); err != nil {
				return err
			}
		}
	}
	return nil
}

// appendItems appends <items node='...'><item id='...'>payload</item>...</items>.
func appendItems(b []byte, node string, items []storage.PEPItem) []byte {
	b = append(b, "<items node='"...)
	b = treff.AppendEscaped(b, node)
	b = append(b, "'>"...)
	for _, it := range items {
		b = append(b, "<item id='"...)
		b = treff.AppendEscaped(b, it.ID)
		b = append(b, "'>"...)
		b = append(b, it.Payload...)
		b = append(b, "</item>"...)
	}
	return append(b, "</items>"...)
}

// sendEvent sends a notification with the given <event/> content from
// the owner's bare JID to a full JID.
func (m *Module) sendEvent(ctx context.Context, owner, to string, inner []byte) {
	b := make([]byte, 0, len(inner)+len(owner)+len(to)+128)
	b = append(b, "<message from='"...)
	b = treff.AppendEscaped(b, owner)
	b = append(b, "' to='"...)
	b = treff.AppendEscaped(b, to)
	b = append(b, "' type='headline'><event xmlns='"+NSEvent+"'>"...)
	b = append(b, inner...)
	b = append(b, "</event></message>"...)
	st, err := treff.NewStanza(b)
	if err != nil {
		m.srv.Log().Error("pep: bad notification built", "err", err)
		return
	}
	m.srv.Route(ctx, st)
}
