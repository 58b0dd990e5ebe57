package pep

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"io"
	"slices"
	"strconv"
	"strings"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/dataform"
	"github.com/treff-im/treff/stanza"
	"github.com/treff-im/treff/storage"
)

// pubsubError is a stanza error with an application-specific condition
// in the pubsub#errors namespace (XEP-0060 sections 7 and 8), e.g.
// "precondition-not-met".
func pubsubError(c stanza.Condition, app string) stanza.Error {
	return stanza.Error{Condition: c, App: "<" + app + " xmlns='" + NSErrors + "'/>"}
}

func unsupported(feature string) error {
	app := []byte("<unsupported xmlns='" + NSErrors + "' feature='")
	app = treff.AppendEscaped(app, feature)
	return stanza.Error{Condition: stanza.FeatureNotImplemented, App: string(append(app, "'/>"...))}
}

var (
	errNodeRequired = pubsubError(stanza.BadRequest, "nodeid-required")
	errItemRequired = pubsubError(stanza.BadRequest, "item-required")
	errBadPayload   = pubsubError(stanza.BadRequest, "invalid-payload")
	errTooManyItems = pubsubError(stanza.BadRequest, "invalid-payload")
)

// Request structure shared by the pubsub and pubsub#owner namespaces
// (element names do not clash).
type (
	nodeEl struct {
		Node string `xml:"node,attr"`
	}
	itemEl struct {
		ID    string `xml:"id,attr"`
		Inner string `xml:",innerxml"`
	}
	// subEl is <subscribe/>, <unsubscribe/> or <subscription/>.
	subEl struct {
		Node         string `xml:"node,attr"`
		JID          string `xml:"jid,attr"`
		Subscription string `xml:"subscription,attr"`
	}
	// rsmSet is a XEP-0059 <set/> in a request.
	rsmSet struct {
		Max    *string `xml:"max"`
		After  *string `xml:"after"`
		Before *string `xml:"before"`
		Index  *string `xml:"index"`
	}
	request struct {
		Create    *nodeEl `xml:"create"`
		Configure *struct {
			Node string              `xml:"node,attr"`
			Form *dataform.Submitted `xml:"jabber:x:data x"`
		} `xml:"configure"`
		Publish *struct {
			Node  string   `xml:"node,attr"`
			Items []itemEl `xml:"item"`
		} `xml:"publish"`
		PublishOptions *struct {
			Form *dataform.Submitted `xml:"jabber:x:data x"`
		} `xml:"publish-options"`
		Items *struct {
			Node     string   `xml:"node,attr"`
			MaxItems string   `xml:"max_items,attr"`
			Items    []itemEl `xml:"item"`
		} `xml:"items"`
		Retract *struct {
			Node   string   `xml:"node,attr"`
			Notify string   `xml:"notify,attr"`
			Items  []itemEl `xml:"item"`
		} `xml:"retract"`
		Delete       *nodeEl `xml:"delete"`
		Purge        *nodeEl `xml:"purge"`
		Default      *nodeEl `xml:"default"`
		Affiliations *struct {
			Node  string `xml:"node,attr"`
			Items []struct {
				JID         string `xml:"jid,attr"`
				Affiliation string `xml:"affiliation,attr"`
			} `xml:"affiliation"`
		} `xml:"affiliations"`
		Subscribe     *subEl `xml:"subscribe"`
		Unsubscribe   *subEl `xml:"unsubscribe"`
		Subscriptions *struct {
			Node  string  `xml:"node,attr"`
			Items []subEl `xml:"subscription"`
		} `xml:"subscriptions"`
		Options *nodeEl `xml:"options"`
		Set     *rsmSet `xml:"http://jabber.org/protocol/rsm set"`
	}
)

// NSRSM is the namespace of XEP-0059: Result Set Management, which pages
// item retrieval.
const NSRSM = "http://jabber.org/protocol/rsm"

// Affiliations (XEP-0060 section 4.1).
const (
	affOwner     = "owner"
	affPublisher = "publisher"
	affMember    = "member"
	affOutcast   = "outcast"
	affNone      = "none"
)

// affiliationOf returns who's affiliation with a node of the owner key
// (an account's bare JID, or a Service's JID, which no requester has).
func affiliationOf(owner string, cfg storage.PEPNodeConfig, who string) string {
	switch {
	case who == owner || slices.Contains(cfg.Owners, who):
		return affOwner
	case slices.Contains(cfg.Outcasts, who):
		return affOutcast
	case slices.Contains(cfg.Publishers, who):
		return affPublisher
	case slices.Contains(cfg.Whitelist, who):
		return affMember
	}
	return affNone
}

// handleIQ answers pubsub and pubsub#owner requests to an account (or to
// a Service).
func (m *Module) handleIQ(ctx context.Context, iq *treff.Stanza) ([]byte, error) {
	owner := iq.To.Bare()
	if iq.To.Equal(jid.JID{}) {
		owner = iq.From.Bare()
	}
	var req request
	if err := iq.DecodePayload(&req); err != nil {
		return nil, stanza.BadRequest
	}
	var payload []byte
	var err error
	if iq.Payload.Space == NSOwner {
		payload, err = m.ownerRequest(ctx, iq, owner.String(), &req)
	} else {
		payload, err = m.userRequest(ctx, iq, owner.String(), &req)
	}
	if err == nil {
		return payload, nil
	}
	if _, ok := stanza.FromError(err); ok {
		return nil, err
	}
	if errors.Is(err, storage.ErrNotFound) {
		return nil, stanza.ItemNotFound
	}
	m.srv.Log().Error("pep: request failed", "service", owner.String(), "err", err)
	return nil, err
}

var errForbidden = stanza.Forbidden

func wrapPubsub(ns string, inner []byte) []byte {
	b := append([]byte("<pubsub xmlns='"), ns...)
	b = append(b, "'>"...)
	b = append(b, inner...)
	return append(b, "</pubsub>"...)
}

// mayCreate reports whether who may create nodes: on an account its
// owner, on a Service whom Service.Creators allows.
func (m *Module) mayCreate(owner, who string) bool {
	if m.svc != nil {
		return m.svc.mayCreate(who)
	}
	return who == owner
}

func (m *Module) userRequest(ctx context.Context, iq *treff.Stanza, owner string, req *request) ([]byte, error) {
	who := iq.From.Bare().String()
	switch {
	case iq.Type == "set" && req.Publish != nil:
		return m.handlePublish(ctx, iq, owner, req)
	case iq.Type == "set" && req.Create != nil:
		return m.handleCreate(ctx, owner, who, req)
	case iq.Type == "get" && req.Items != nil:
		return m.handleItems(ctx, iq, owner, req)
	case iq.Type == "set" && req.Retract != nil:
		r := req.Retract
		if r.Node == "" {
			return nil, errNodeRequired
		}
		if m.svc == nil && who != owner {
			return nil, errForbidden
		}
		if len(r.Items) != 1 || r.Items[0].ID == "" {
			return nil, pubsubError(stanza.BadRequest, "item-required")
		}
		cfg, err := m.Store.PEPNodeConfig(ctx, owner, r.Node)
		if err != nil {
			return nil, err
		}
		if a := affiliationOf(owner, cfg, who); a != affOwner && a != affPublisher {
			return nil, errForbidden
		}
		notify, _ := parseBool(r.Notify)
		return nil, m.retract(ctx, owner, r.Node, r.Items[0].ID, notify)
	case iq.Type == "get" && req.Subscriptions != nil:
		return m.userSubscriptions(ctx, iq, owner, req.Subscriptions.Node)
	case iq.Type == "get" && req.Affiliations != nil:
		nodes, err := m.Store.PEPNodes(ctx, owner)
		if err != nil {
			return nil, err
		}
		b := []byte("<affiliations>")
		for _, n := range nodes {
			if req.Affiliations.Node != "" && n != req.Affiliations.Node {
				continue
			}
			a := affOwner
			if who != owner {
				cfg, err := m.Store.PEPNodeConfig(ctx, owner, n)
				if err != nil {
					continue // deleted meanwhile
				}
				if a = affiliationOf(owner, cfg, who); a == affNone {
					continue
				}
			}
			b = append(b, "<affiliation node='"...)
			b = treff.AppendEscaped(b, n)
			b = append(b, "' affiliation='"+a+"'/>"...)
		}
		return wrapPubsub(NS, append(b, "</affiliations>"...)), nil
	case iq.Type == "set" && req.Subscribe != nil:
		return m.subscribe(ctx, iq, owner, req.Subscribe)
	case iq.Type == "set" && req.Unsubscribe != nil:
		return nil, m.unsubscribe(ctx, iq, owner, req.Unsubscribe)
	case req.Options != nil:
		return nil, unsupported("subscription-options")
	}
	return nil, stanza.FeatureNotImplemented
}

// handleCreate creates a node (XEP-0060 section 8.1); on a Service, a
// request without a node name creates an instant node.
func (m *Module) handleCreate(ctx context.Context, owner, who string, req *request) ([]byte, error) {
	if !m.mayCreate(owner, who) {
		return nil, errForbidden
	}
	node := req.Create.Node
	instant := false
	if node == "" {
		if m.svc == nil {
			return nil, pubsubError(stanza.NotAcceptable, "nodeid-required")
		}
		node, instant = newID(), true
	}
	cfg := m.defaultConfig()
	if req.Configure != nil {
		if err := applyForm(&cfg, req.Configure.Form); err != nil {
			return nil, err
		}
	}
	if err := m.checkConfig(cfg); err != nil {
		return nil, err
	}
	if m.svc != nil {
		cfg.Owners = []string{who}
	}
	unlock := m.lock(owner)
	err := m.createNode(ctx, owner, node, cfg)
	unlock()
	if err != nil || !instant {
		return nil, err
	}
	b := []byte("<create node='")
	b = treff.AppendEscaped(b, node)
	return wrapPubsub(NS, append(b, "'/>"...)), nil
}

func (m *Module) handlePublish(ctx context.Context, iq *treff.Stanza, owner string, req *request) ([]byte, error) {
	who := iq.From.Bare().String()
	p := req.Publish
	if m.svc == nil && who != owner {
		// On an account, others may publish only to existing nodes
		// where they are publishers.
		if p.Node == "" {
			return nil, errForbidden
		}
		cfg, err := m.Store.PEPNodeConfig(ctx, owner, p.Node)
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return nil, err
		}
		if err != nil || m.mayPublish(ctx, owner, p.Node, cfg, iq.From) != nil {
			return nil, errForbidden
		}
	}
	if p.Node == "" {
		return nil, errNodeRequired
	}
	if len(p.Items) == 0 {
		return nil, errItemRequired
	}
	if len(p.Items) > 1 {
		return nil, errTooManyItems
	}
	payload, err := singleElement(p.Items[0].Inner)
	if err != nil {
		return nil, errBadPayload
	}
	if m.svc != nil {
		cfg, err := m.Store.PEPNodeConfig(ctx, owner, p.Node)
		switch {
		case errors.Is(err, storage.ErrNotFound):
			if !m.mayCreate(owner, who) {
				return nil, stanza.ItemNotFound
			}
		case err != nil:
			return nil, err
		default:
			if err := m.mayPublish(ctx, owner, p.Node, cfg, iq.From); err != nil {
				return nil, err
			}
		}
	}
	id := p.Items[0].ID
	if id == "" {
		id = newID()
	}
	var opts map[string]string
	if req.PublishOptions != nil {
		opts = optionsOf(req.PublishOptions.Form)
	}
	if _, err := m.publish(ctx, owner, p.Node, storage.PEPItem{ID: id, Payload: []byte(payload)}, opts, true, who); err != nil {
		return nil, err
	}
	b := []byte("<publish node='")
	b = treff.AppendEscaped(b, p.Node)
	b = append(b, "'><item id='"...)
	b = treff.AppendEscaped(b, id)
	b = append(b, "'/></publish>"...)
	return wrapPubsub(NS, b), nil
}

// mayPublish applies the node's affiliations and publish model (XEP-0060
// section 7.1.3.1) to the publisher from.
func (m *Module) mayPublish(ctx context.Context, owner, node string, cfg storage.PEPNodeConfig, from jid.JID) error {
	switch affiliationOf(owner, cfg, from.Bare().String()) {
	case affOwner, affPublisher:
		return nil
	case affOutcast:
		return errForbidden
	case affMember:
		if cfg.PublishModel == storage.PublishSubscribers {
			return nil
		}
	}
	switch cfg.PublishModel {
	case storage.PublishOpen:
		return nil
	case storage.PublishSubscribers:
		if m.Subscriptions != nil {
			subs, err := m.Subscriptions.PEPSubscribers(ctx, owner, node)
			if err != nil {
				return err
			}
			if slices.Contains(subs, from.Bare().String()) || slices.Contains(subs, from.String()) {
				return nil
			}
		}
	}
	return errForbidden
}

func (m *Module) handleItems(ctx context.Context, iq *treff.Stanza, owner string, req *request) ([]byte, error) {
	r := req.Items
	if r.Node == "" {
		return nil, errNodeRequired
	}
	var ids []string
	for _, it := range r.Items {
		if it.ID != "" {
			ids = append(ids, it.ID)
		}
	}
	last := 0
	if r.MaxItems != "" {
		n, err := strconv.Atoi(r.MaxItems)
		if err != nil || n < 0 {
			return nil, stanza.BadRequest
		}
		last = n
	}
	cfg, err := m.Store.PEPNodeConfig(ctx, owner, r.Node)
	if err != nil {
		return nil, err
	}
	if err := m.mayRetrieve(ctx, owner, iq.From.Bare().String(), cfg); err != nil {
		return nil, err
	}
	var items []storage.PEPItem
	if r.MaxItems == "" || last > 0 {
		items, _, err = m.items(ctx, owner, r.Node, ids, last)
		if err != nil {
			return nil, err
		}
	}
	if req.Set == nil || len(ids) > 0 {
		return wrapPubsub(NS, appendItems(nil, r.Node, items)), nil
	}
	page, set, err := rsmPage(items, req.Set)
	if err != nil {
		return nil, err
	}
	return wrapPubsub(NS, append(appendItems(nil, r.Node, page), set...)), nil
}

// rsmPage returns the page of items (oldest first) that a XEP-0059
// request asks for, and the <set/> to answer with. Item IDs are the
// UIDs of <after/> and <before/>; <index/> is not supported.
func rsmPage(items []storage.PEPItem, set *rsmSet) ([]storage.PEPItem, []byte, error) {
	if set.Index != nil {
		return nil, nil, unsupported("rsm-index")
	}
	limit := -1
	if set.Max != nil {
		n, err := strconv.Atoi(strings.TrimSpace(*set.Max))
		if err != nil || n < 0 {
			return nil, nil, stanza.BadRequest.WithText("bad <max/> in the result set request")
		}
		limit = n
	}
	find := func(id string) (int, error) {
		i := slices.IndexFunc(items, func(it storage.PEPItem) bool { return it.ID == id })
		if i < 0 {
			return 0, stanza.ItemNotFound.WithText("no item with that ID in the result set")
		}
		return i, nil
	}
	start, end := 0, len(items)
	switch {
	case set.Before != nil:
		if id := strings.TrimSpace(*set.Before); id != "" {
			i, err := find(id)
			if err != nil {
				return nil, nil, err
			}
			end = i
		}
		if limit >= 0 && end-start > limit {
			start = end - limit
		}
	default:
		if set.After != nil {
			i, err := find(strings.TrimSpace(*set.After))
			if err != nil {
				return nil, nil, err
			}
			start = i + 1
		}
		if limit >= 0 && end-start > limit {
			end = start + limit
		}
	}
	page := items[start:end]
	b := []byte("<set xmlns='" + NSRSM + "'>")
	if len(page) > 0 {
		b = append(b, "<first index='"...)
		b = strconv.AppendInt(b, int64(start), 10)
		b = append(b, "'>"...)
		b = treff.AppendEscaped(b, page[0].ID)
		b = append(b, "</first><last>"...)
		b = treff.AppendEscaped(b, page[len(page)-1].ID)
		b = append(b, "</last>"...)
	}
	b = append(b, "<count>"...)
	b = strconv.AppendInt(b, int64(len(items)), 10)
	return page, append(b, "</count></set>"...), nil
}

// mayRetrieve checks the node's affiliations and access model for
// requester (XEP-0060 section 6.5.9 for the errors; also those of a
// subscription, section 6.1.3).
func (m *Module) mayRetrieve(ctx context.Context, owner, requester string, cfg storage.PEPNodeConfig) error {
	switch affiliationOf(owner, cfg, requester) {
	case affOwner, affPublisher, affMember:
		return nil
	case affOutcast:
		return errForbidden
	}
	var it *storage.RosterItem
	if m.svc == nil && cfg.AccessModel != storage.AccessOpen && cfg.AccessModel != storage.AccessWhitelist && m.rosters != nil {
		r, err := m.rosters.RosterItem(ctx, owner, requester)
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return err
		}
		if err == nil {
			it = &r
		}
	}
	if allowed(cfg, requester, it) {
		return nil
	}
	switch cfg.AccessModel {
	case storage.AccessWhitelist:
		return pubsubError(stanza.NotAllowed, "closed-node")
	case storage.AccessRoster:
		return pubsubError(stanza.NotAuthorized, "not-in-roster-group")
	}
	return pubsubError(stanza.NotAuthorized, "presence-subscription-required")
}

// allowed applies the affiliations and the access model to a requester
// other than the account's owner, given the owner's roster item for it
// (nil if none).
func allowed(cfg storage.PEPNodeConfig, requester string, it *storage.RosterItem) bool {
	switch {
	case slices.Contains(cfg.Outcasts, requester):
		return false
	case slices.Contains(cfg.Owners, requester), slices.Contains(cfg.Publishers, requester), slices.Contains(cfg.Whitelist, requester):
		return true
	}
	switch cfg.AccessModel {
	case storage.AccessOpen:
		return true
	case storage.AccessWhitelist:
		return false
	case storage.AccessRoster:
		if it == nil {
			return false
		}
		for _, g := range it.Groups {
			if slices.Contains(cfg.RosterGroups, g) {
				return true
			}
		}
		return false
	}
	return it != nil && (it.Subscription == storage.SubFrom || it.Subscription == storage.SubBoth)
}

// subscriber checks the jid attribute of a (un)subscription request: it
// must be the requester's bare or full JID (XEP-0060 section 6.1.3.1).
func subscriber(iq *treff.Stanza, s *subEl) (jid.JID, error) {
	j, err := jid.Parse(s.JID)
	if err != nil || !j.Bare().Equal(iq.From.Bare()) {
		return jid.JID{}, pubsubError(stanza.BadRequest, "invalid-jid")
	}
	return j, nil
}

// subscribe subscribes the requester to a node (XEP-0060 section 6.1).
func (m *Module) subscribe(ctx context.Context, iq *treff.Stanza, owner string, s *subEl) ([]byte, error) {
	if m.Subscriptions == nil {
		return nil, unsupported("subscribe")
	}
	if s.Node == "" {
		return nil, errNodeRequired
	}
	j, err := subscriber(iq, s)
	if err != nil {
		return nil, err
	}
	cfg, err := m.Store.PEPNodeConfig(ctx, owner, s.Node)
	if err != nil {
		return nil, err
	}
	if err := m.mayRetrieve(ctx, owner, j.Bare().String(), cfg); err != nil {
		return nil, err
	}
	unlock := m.lock(owner)
	subs, err := m.Subscriptions.PEPSubscribers(ctx, owner, s.Node)
	if err == nil && len(subs) >= orDefault(m.MaxSubscribers, DefaultMaxSubscribers) && !slices.Contains(subs, j.String()) {
		err = stanza.PolicyViolation.WithText("too many subscriptions to this node")
	}
	if err == nil {
		err = m.Subscriptions.SubscribePEPNode(ctx, owner, s.Node, j.String())
	}
	unlock()
	if err != nil {
		return nil, err
	}
	return wrapPubsub(NS, appendSubscription(nil, s.Node, j.String(), "subscribed")), nil
}

// unsubscribe ends the requester's subscription (XEP-0060 section 6.2).
func (m *Module) unsubscribe(ctx context.Context, iq *treff.Stanza, owner string, s *subEl) error {
	if m.Subscriptions == nil {
		return unsupported("subscribe")
	}
	if s.Node == "" {
		return errNodeRequired
	}
	j, err := subscriber(iq, s)
	if err != nil {
		return err
	}
	if _, err := m.Store.PEPNodeConfig(ctx, owner, s.Node); err != nil {
		return err
	}
	err = m.Subscriptions.UnsubscribePEPNode(ctx, owner, s.Node, j.String())
	if errors.Is(err, storage.ErrNotFound) {
		return pubsubError(stanza.UnexpectedRequest, "not-subscribed")
	}
	return err
}

func appendSubscription(b []byte, node, j, state string) []byte {
	b = append(b, "<subscription"...)
	if node != "" {
		b = append(b, " node='"...)
		b = treff.AppendEscaped(b, node)
		b = append(b, '\'')
	}
	b = append(b, " jid='"...)
	b = treff.AppendEscaped(b, j)
	return append(b, "' subscription='"+state+"'/>"...)
}

// userSubscriptions lists the requester's subscriptions, of its bare
// and of its full JID (XEP-0060 section 5.6).
func (m *Module) userSubscriptions(ctx context.Context, iq *treff.Stanza, owner, node string) ([]byte, error) {
	b := []byte("<subscriptions")
	if node != "" {
		b = append(b, " node='"...)
		b = treff.AppendEscaped(b, node)
		b = append(b, '\'')
	}
	b = append(b, '>')
	if m.Subscriptions != nil {
		for _, j := range []string{iq.From.Bare().String(), iq.From.String()} {
			nodes, err := m.Subscriptions.PEPSubscriptionsOf(ctx, owner, j)
			if err != nil {
				return nil, err
			}
			for _, n := range nodes {
				if node == "" || n == node {
					b = appendSubscription(b, n, j, "subscribed")
				}
			}
			if iq.From.Resourcepart() == "" {
				break
			}
		}
	}
	return wrapPubsub(NS, append(b, "</subscriptions>"...)), nil
}

func (m *Module) ownerRequest(ctx context.Context, iq *treff.Stanza, owner string, req *request) ([]byte, error) {
	who := iq.From.Bare().String()
	if m.svc == nil && who != owner {
		return nil, errForbidden
	}
	if iq.Type == "get" && req.Default != nil {
		b := []byte("<default>")
		b = appendConfigForm(b, m.defaultConfig())
		return wrapPubsub(NSOwner, append(b, "</default>"...)), nil
	}
	var node string
	switch {
	case req.Configure != nil:
		node = req.Configure.Node
	case iq.Type == "set" && req.Delete != nil:
		node = req.Delete.Node
	case iq.Type == "set" && req.Purge != nil:
		node = req.Purge.Node
	case req.Affiliations != nil:
		node = req.Affiliations.Node
	case req.Subscriptions != nil:
		if m.Subscriptions == nil {
			return nil, unsupported("manage-subscriptions")
		}
		node = req.Subscriptions.Node
	default:
		return nil, stanza.FeatureNotImplemented
	}
	if node == "" {
		return nil, errNodeRequired
	}
	cfg, err := m.Store.PEPNodeConfig(ctx, owner, node)
	if err != nil {
		return nil, err
	}
	if affiliationOf(owner, cfg, who) != affOwner {
		return nil, errForbidden
	}
	switch {
	case req.Configure != nil:
		if iq.Type == "get" {
			b := []byte("<configure node='")
			b = treff.AppendEscaped(b, node)
			b = append(b, "'>"...)
			b = appendConfigForm(b, cfg)
			return wrapPubsub(NSOwner, append(b, "</configure>"...)), nil
		}
		f := req.Configure.Form
		if f == nil {
			return nil, stanza.BadRequest
		}
		if f.Type == "cancel" {
			return nil, nil
		}
		if err := applyForm(&cfg, f); err != nil {
			return nil, err
		}
		if err := m.checkConfig(cfg); err != nil {
			return nil, err
		}
		return nil, m.setConfig(ctx, owner, node, cfg)
	case req.Delete != nil:
		return nil, m.deleteNode(ctx, owner, node)
	case req.Purge != nil:
		return nil, m.purge(ctx, owner, node)
	case req.Affiliations != nil:
		return m.affiliations(ctx, iq, owner, req)
	}
	return m.manageSubscriptions(ctx, iq, owner, req)
}

// manageSubscriptions lists and changes a node's subscriptions
// (XEP-0060 section 8.8): 'subscribed' adds one, 'none' removes it.
func (m *Module) manageSubscriptions(ctx context.Context, iq *treff.Stanza, owner string, req *request) ([]byte, error) {
	node := req.Subscriptions.Node
	if iq.Type == "get" {
		subs, err := m.Subscriptions.PEPSubscribers(ctx, owner, node)
		if err != nil {
			return nil, err
		}
		b := []byte("<subscriptions node='")
		b = treff.AppendEscaped(b, node)
		b = append(b, "'>"...)
		for _, j := range subs {
			b = appendSubscription(b, "", j, "subscribed")
		}
		return wrapPubsub(NSOwner, append(b, "</subscriptions>"...)), nil
	}
	for _, s := range req.Subscriptions.Items {
		j, err := jid.Parse(s.JID)
		if err != nil {
			return nil, stanza.JIDMalformed
		}
		switch s.Subscription {
		case "subscribed":
			var subs []string
			if subs, err = m.Subscriptions.PEPSubscribers(ctx, owner, node); err == nil && len(subs) >= orDefault(m.MaxSubscribers, DefaultMaxSubscribers) && !slices.Contains(subs, j.String()) {
				err = stanza.PolicyViolation.WithText("too many subscriptions to this node")
			}
			if err == nil {
				err = m.Subscriptions.SubscribePEPNode(ctx, owner, node, j.String())
			}
		case "none":
			if err = m.Subscriptions.UnsubscribePEPNode(ctx, owner, node, j.String()); errors.Is(err, storage.ErrNotFound) {
				err = nil
			}
		default:
			err = errNotAcceptable
		}
		if err != nil {
			return nil, err
		}
	}
	return nil, nil
}

// affiliations lists and changes a node's affiliations (XEP-0060 section
// 8.9): owners (on a Service; an account's node has its one owner),
// publishers, members (the whitelist) and outcasts, whose subscriptions
// end.
func (m *Module) affiliations(ctx context.Context, iq *treff.Stanza, owner string, req *request) ([]byte, error) {
	node := req.Affiliations.Node
	if iq.Type == "get" {
		cfg, err := m.Store.PEPNodeConfig(ctx, owner, node)
		if err != nil {
			return nil, err
		}
		b := []byte("<affiliations node='")
		b = treff.AppendEscaped(b, node)
		b = append(b, "'>"...)
		add := func(j, a string) {
			b = append(b, "<affiliation jid='"...)
			b = treff.AppendEscaped(b, j)
			b = append(b, "' affiliation='"+a+"'/>"...)
		}
		if m.svc == nil {
			add(owner, affOwner)
		}
		for _, l := range []struct {
			jids []string
			aff  string
		}{{cfg.Owners, affOwner}, {cfg.Publishers, affPublisher}, {cfg.Whitelist, affMember}, {cfg.Outcasts, affOutcast}} {
			for _, j := range l.jids {
				add(j, l.aff)
			}
		}
		return wrapPubsub(NSOwner, append(b, "</affiliations>"...)), nil
	}
	unlock := m.lock(owner)
	cfg, err := m.Store.PEPNodeConfig(ctx, owner, node)
	if err != nil {
		unlock()
		return nil, err
	}
	var outcasts []string
	for _, a := range req.Affiliations.Items {
		j, err := jid.Parse(a.JID)
		if err != nil {
			unlock()
			return nil, stanza.JIDMalformed
		}
		bare := j.Bare().String()
		if bare == owner {
			if a.Affiliation != affOwner {
				unlock()
				return nil, errNotAcceptable
			}
			continue
		}
		not := func(s string) bool { return s == bare }
		cfg.Owners = slices.DeleteFunc(cfg.Owners, not)
		cfg.Publishers = slices.DeleteFunc(cfg.Publishers, not)
		cfg.Whitelist = slices.DeleteFunc(cfg.Whitelist, not)
		cfg.Outcasts = slices.DeleteFunc(cfg.Outcasts, not)
		switch a.Affiliation {
		case affOwner:
			if m.svc == nil {
				unlock()
				return nil, errNotAcceptable
			}
			cfg.Owners = append(cfg.Owners, bare)
		case affPublisher, "publish-only":
			cfg.Publishers = append(cfg.Publishers, bare)
		case affMember:
			cfg.Whitelist = append(cfg.Whitelist, bare)
		case affOutcast:
			cfg.Outcasts = append(cfg.Outcasts, bare)
			outcasts = append(outcasts, bare)
		case affNone:
		default:
			unlock()
			return nil, errNotAcceptable
		}
	}
	if m.svc != nil && len(cfg.Owners) == 0 {
		unlock()
		return nil, errNotAcceptable.WithText("a node keeps at least one owner")
	}
	err = m.Store.SetPEPNodeConfig(ctx, owner, node, cfg)
	unlock()
	if err != nil || len(outcasts) == 0 || m.Subscriptions == nil {
		return nil, err
	}
	// An outcast's subscriptions end (XEP-0060 section 4.1).
	subs, err := m.Subscriptions.PEPSubscribers(ctx, owner, node)
	if err != nil {
		return nil, err
	}
	for _, s := range subs {
		j, err := jid.Parse(s)
		if err != nil || !slices.Contains(outcasts, j.Bare().String()) {
			continue
		}
		if err := m.Subscriptions.UnsubscribePEPNode(ctx, owner, node, s); err != nil && !errors.Is(err, storage.ErrNotFound) {
			return nil, err
		}
	}
	return nil, nil
}

// singleElement checks that s is one XML element (with surrounding
// whitespace) in a namespace, and returns it trimmed.
func singleElement(s string) (string, error) {
	s = strings.TrimSpace(s)
	d := xml.NewDecoder(strings.NewReader(s))
	depth, elements := 0, 0
	// Each iteration consumes a token of a finite input.
	for {
		tok, err := d.RawToken()
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if depth == 0 {
				elements++
				ns := t.Name.Space != ""
				for _, a := range t.Attr {
					if a.Name.Space == "" && a.Name.Local == "xmlns" && a.Value != "" {
						ns = true
					}
				}
				if !ns {
					return "", errors.New("payload without a namespace")
				}
			}
			depth++
		case xml.EndElement:
			depth--
		case xml.CharData:
			if depth == 0 && len(bytes.TrimSpace(t)) > 0 {
				return "", errors.New("text beside the payload")
			}
		}
	}
	if elements != 1 || depth != 0 {
		return "", errors.New("not exactly one payload element")
	}
	return s, nil
}
