package pep

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/dataform"
	"github.com/treff-im/treff/discoinfo"
	"github.com/treff-im/treff/stanza"
	"github.com/treff-im/treff/storage"
)

// Defaults of the Service fields.
const (
	// DefaultServiceMaxItems bounds the items of a service's node.
	DefaultServiceMaxItems = 1000
	// DefaultServiceNodeItems is the pubsub#max_items of a node created
	// without one.
	DefaultServiceNodeItems = 10
	// DefaultServiceMaxNodes bounds the nodes of one service domain.
	DefaultServiceMaxNodes = 1000
	// DefaultMaxNodesPerUser bounds the nodes one user owns on a service.
	DefaultMaxNodesPerUser = 100
)

const (
	nsDiscoItems = "http://jabber.org/protocol/disco#items"
	nsMetaData   = NS + "#meta-data"
)

// serviceFeatures are the disco features of a Service (with subFeatures
// when explicit subscriptions are kept).
var serviceFeatures = []string{
	NS,
	NS + "#access-open",
	NS + "#access-whitelist",
	NS + "#auto-create",
	NS + "#config-node",
	NS + "#create-and-configure",
	NS + "#create-nodes",
	NS + "#delete-items",
	NS + "#delete-nodes",
	NS + "#instant-nodes",
	NS + "#item-ids",
	NS + "#manage-affiliations",
	NS + "#member-affiliation",
	NS + "#modify-affiliations",
	NS + "#multi-items",
	NS + "#outcast-affiliation",
	NS + "#persistent-items",
	NS + "#publish",
	NS + "#publish-options",
	NS + "#publisher-affiliation",
	NS + "#purge-nodes",
	NS + "#retract-items",
	NS + "#retrieve-affiliations",
	NS + "#retrieve-default",
	NS + "#retrieve-items",
	NS + "#rsm",
}

// Service is a publish-subscribe service (XEP-0060: Publish-Subscribe,
// version 1.26) on a subdomain of each host, pubsub.DOMAIN by default:
// nodes that users create, publish to and subscribe to, such as
// real-time block lists (items named by domain, subscribed to by other
// servers over s2s), push application servers' nodes or Movim
// communities. It shares the node store (storage.PEP, keyed by the
// service's JID instead of an account's) and the protocol code with
// Module.
//
// Who created a node owns it; owners, publishers (and, with the
// publish model 'subscribers', members and subscribers; with 'open',
// anyone but outcasts) publish; the open (default) or whitelist access
// model decides who retrieves and subscribes, and outcasts never do.
// Subscribers, local or remote, get each notification as a headline
// message from the service.
type Service struct {
	// Subdomain is the label put before each host's domain to name its
	// service. "" means "pubsub".
	Subdomain string
	// Store keeps nodes and items. nil means the server's Storage, which
	// must then implement storage.PEP.
	Store storage.PEP
	// Subscriptions keeps subscriptions. nil means the server's Storage
	// if it implements storage.PEPSubscriptions; without either,
	// subscriptions are not offered.
	Subscriptions storage.PEPSubscriptions
	// MaxItems is the most items a node keeps ("max" means this). 0
	// means DefaultServiceMaxItems.
	MaxItems int
	// MaxNodes is the most nodes of one service. 0 means
	// DefaultServiceMaxNodes.
	MaxNodes int
	// MaxNodesPerUser is the most nodes one user owns on a service. 0
	// means DefaultMaxNodesPerUser.
	MaxNodesPerUser int
	// MaxSubscribers is the most subscriptions per node. 0 means
	// DefaultMaxSubscribers.
	MaxSubscribers int
	// Creators, if not nil, lists the bare JIDs (or whole domains) that
	// may create nodes; nil means every user of the server's hosts.
	Creators []string

	engine   Module
	services map[string]bool
}

var (
	_ treff.Module  = (*Service)(nil)
	_ treff.Stopper = (*Service)(nil)
)

// Name implements treff.Module.
func (s *Service) Name() string { return "pubsub" }

// Setup implements treff.Module: it registers a service domain per host
// and lists it in the host's disco#items.
func (s *Service) Setup(ctx context.Context, r *treff.Registry) error {
	s.engine = Module{
		Store:          s.Store,
		Subscriptions:  s.Subscriptions,
		MaxItems:       orDefault(s.MaxItems, DefaultServiceMaxItems),
		MaxNodes:       orDefault(s.MaxNodes, DefaultServiceMaxNodes),
		MaxSubscribers: s.MaxSubscribers,
		svc:            s,
	}
	if err := s.engine.init(ctx, r.Server(), "pubsub"); err != nil {
		return err
	}
	sub := s.Subdomain
	if sub == "" {
		sub = "pubsub"
	}
	s.services = make(map[string]bool)
	for _, h := range s.engine.srv.Hosts {
		d := sub + "." + h.Domain
		s.services[d] = true
		r.HandleDomain(d, treff.StanzaHandlerFunc(s.handle))
		r.AddItem(discoinfo.Item{JID: d, Name: "Publish-Subscribe"})
	}
	r.OnAccountDeleted(s.accountDeleted)
	return nil
}

// accountDeleted removes a deleted account from the affiliations and
// subscriptions of every node of the services, so that a later account
// of the same name inherits nothing, and deletes the nodes it was the
// only owner of.
func (s *Service) accountDeleted(ctx context.Context, user jid.JID) error {
	bare := user.Bare().String()
	for service := range s.services {
		nodes, err := s.engine.Store.PEPNodes(ctx, service)
		if err != nil {
			return fmt.Errorf("pubsub: deleting the account's affiliations: %w", err)
		}
		for _, node := range nodes {
			if err := s.forget(ctx, service, node, bare); err != nil && !errors.Is(err, storage.ErrNotFound) {
				return fmt.Errorf("pubsub: deleting the account's affiliations: %w", err)
			}
		}
	}
	return nil
}

// forget removes bare's affiliation and subscriptions from one node.
func (s *Service) forget(ctx context.Context, service, node, bare string) error {
	m := &s.engine
	if subs := m.subscribers(ctx, service, node); len(subs) > 0 {
		for _, sub := range subs {
			if j, err := jid.Parse(sub); err == nil && j.Bare().String() == bare {
				if err := m.Subscriptions.UnsubscribePEPNode(ctx, service, node, sub); err != nil && !errors.Is(err, storage.ErrNotFound) {
					return err
				}
			}
		}
	}
	unlock := m.lock(service)
	cfg, err := m.Store.PEPNodeConfig(ctx, service, node)
	if err != nil {
		unlock()
		return err
	}
	if affiliationOf(service, cfg, bare) == affNone {
		unlock()
		return nil
	}
	not := func(v string) bool { return v == bare }
	cfg.Owners = slices.DeleteFunc(cfg.Owners, not)
	cfg.Publishers = slices.DeleteFunc(cfg.Publishers, not)
	cfg.Whitelist = slices.DeleteFunc(cfg.Whitelist, not)
	cfg.Outcasts = slices.DeleteFunc(cfg.Outcasts, not)
	if len(cfg.Owners) > 0 {
		err = m.Store.SetPEPNodeConfig(ctx, service, node, cfg)
		unlock()
		return err
	}
	unlock()
	return m.deleteNode(ctx, service, node)
}

// Stop implements treff.Stopper.
func (s *Service) Stop(ctx context.Context) error { return s.engine.Stop(ctx) }

// mayCreate reports whether the bare JID who may create nodes.
func (s *Service) mayCreate(who string) bool {
	j, err := jid.Parse(who)
	if err != nil {
		return false
	}
	if s.Creators != nil {
		return slices.Contains(s.Creators, who) || slices.Contains(s.Creators, j.Domainpart())
	}
	return j.Localpart() != "" && s.engine.srv.IsLocal(j.Domainpart())
}

// checkUserNodes refuses a new node to a creator who owns
// MaxNodesPerUser of the service's nodes already.
func (s *Service) checkUserNodes(ctx context.Context, service string, nodes []string, creator string) error {
	limit := orDefault(s.MaxNodesPerUser, DefaultMaxNodesPerUser)
	n := 0
	for _, node := range nodes {
		cfg, err := s.engine.Store.PEPNodeConfig(ctx, service, node)
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if slices.Contains(cfg.Owners, creator) {
			n++
		}
	}
	if n >= limit {
		return stanza.PolicyViolation.WithText("you own too many nodes")
	}
	return nil
}

// Publish publishes payload (one namespaced XML element) as item id (""
// for a random ID) on a node of the service at the given JID, on behalf
// of the service itself, and notifies the subscribers; for plugins that
// feed a node (a block list from a file, for example). A missing node is
// created with the default configuration and no owner but the server.
// It returns the item ID.
func (s *Service) Publish(ctx context.Context, service jid.JID, node, id string, payload []byte) (string, error) {
	if s.services == nil || !s.services[service.String()] {
		return "", fmt.Errorf("pubsub: %s is not a service of this server", service)
	}
	if _, err := singleElement(string(payload)); err != nil {
		return "", fmt.Errorf("pubsub: publish on %q: %w", node, err)
	}
	if id == "" {
		id = newID()
	}
	return s.engine.publish(ctx, service.String(), node, storage.PEPItem{ID: id, Payload: payload}, nil, false, service.String())
}

// handle receives every stanza for a service domain.
func (s *Service) handle(ctx context.Context, st *treff.Stanza) {
	if st.Kind != treff.KindIQ {
		if st.Kind == treff.KindMessage && st.Type != "error" {
			s.fail(ctx, st, stanza.ServiceUnavailable)
		}
		return
	}
	if st.Type != "get" && st.Type != "set" {
		return
	}
	if st.To.Localpart() != "" || st.To.Resourcepart() != "" {
		s.fail(ctx, st, stanza.ServiceUnavailable)
		return
	}
	var payload []byte
	var err error
	switch ns := st.Payload.Space; {
	case st.Type == "get" && ns == nsDiscoInfo && st.Payload.Local == "query":
		payload, err = s.discoInfo(ctx, st)
	case st.Type == "get" && ns == nsDiscoItems && st.Payload.Local == "query":
		payload, err = s.discoItems(ctx, st)
	case (ns == NS || ns == NSOwner) && st.Payload.Local == "pubsub":
		payload, err = s.engine.handleIQ(ctx, st)
	default:
		err = stanza.ServiceUnavailable
	}
	if err != nil {
		if _, ok := stanza.FromError(err); !ok {
			if errors.Is(err, storage.ErrNotFound) {
				err = stanza.ItemNotFound
			} else {
				s.engine.srv.Log().Error("pubsub: request failed", "service", st.To.String(), "err", err)
				err = stanza.InternalServerError
			}
		}
		s.fail(ctx, st, err)
		return
	}
	s.send(ctx, treff.AppendResult(nil, st, payload))
}

func (s *Service) send(ctx context.Context, raw []byte) {
	st, err := treff.NewStanza(raw)
	if err != nil {
		s.engine.srv.Log().Error("pubsub: built a bad stanza", "err", err)
		return
	}
	s.engine.srv.Route(ctx, st)
}

func (s *Service) fail(ctx context.Context, st *treff.Stanza, e error) {
	if st.From.Equal(jid.JID{}) {
		return
	}
	s.send(ctx, treff.AppendError(nil, st, e))
}

// queryNode returns the node attribute of a disco query.
func queryNode(st *treff.Stanza) (string, error) {
	var q struct {
		Node string `xml:"node,attr"`
	}
	if err := st.DecodePayload(&q); err != nil {
		return "", stanza.BadRequest
	}
	return q.Node, nil
}

// discoInfo answers disco#info about the service or one of its nodes
// (XEP-0060 sections 5.1 and 5.3, with the meta-data form of 5.4).
func (s *Service) discoInfo(ctx context.Context, st *treff.Stanza) ([]byte, error) {
	node, err := queryNode(st)
	if err != nil {
		return nil, err
	}
	b := []byte("<query xmlns='" + nsDiscoInfo + "'")
	if node == "" {
		b = append(b, "><identity category='pubsub' type='service' name='Publish-Subscribe'/>"+
			"<feature var='"+nsDiscoInfo+"'/><feature var='"+nsDiscoItems+"'/>"...)
		fs := serviceFeatures
		if s.engine.Subscriptions != nil {
			fs = append(slices.Clone(fs), subFeatures...)
		}
		for _, f := range fs {
			b = append(b, "<feature var='"+f+"'/>"...)
		}
		return append(b, "</query>"...), nil
	}
	service := st.To.String()
	cfg, err := s.engine.Store.PEPNodeConfig(ctx, service, node)
	if err != nil {
		return nil, err
	}
	b = append(b, " node='"...)
	b = treff.AppendEscaped(b, node)
	b = append(b, "'><identity category='pubsub' type='leaf'/><feature var='"+NS+"'/>"...)
	f := dataform.Form{Fields: []dataform.Field{
		dataform.FormType(nsMetaData),
		{Var: fieldTitle, Values: []string{cfg.Title}},
		{Var: fieldAccess, Values: []string{cfg.AccessModel}},
		{Var: fieldPublishModel, Values: []string{publishModel(cfg)}},
		{Var: "pubsub#owner", Type: "jid-multi", Values: cfg.Owners},
		{Var: fieldMaxItems, Values: []string{formatMax(cfg.MaxItems)}},
	}}
	b = f.Append(b, "result")
	return append(b, "</query>"...), nil
}

// discoItems lists the service's nodes that the requester may see, or a
// node's items (XEP-0060 sections 5.2 and 5.5).
func (s *Service) discoItems(ctx context.Context, st *treff.Stanza) ([]byte, error) {
	node, err := queryNode(st)
	if err != nil {
		return nil, err
	}
	service := st.To.String()
	who := st.From.Bare().String()
	b := []byte("<query xmlns='" + nsDiscoItems + "'")
	if node == "" {
		b = append(b, '>')
		nodes, err := s.engine.Store.PEPNodes(ctx, service)
		if err != nil {
			return nil, err
		}
		for _, n := range nodes {
			cfg, err := s.engine.Store.PEPNodeConfig(ctx, service, n)
			if err != nil || s.engine.mayRetrieve(ctx, service, who, cfg) != nil {
				continue
			}
			b = append(b, "<item jid='"...)
			b = treff.AppendEscaped(b, service)
			b = append(b, "' node='"...)
			b = treff.AppendEscaped(b, n)
			if cfg.Title != "" {
				b = append(b, "' name='"...)
				b = treff.AppendEscaped(b, cfg.Title)
			}
			b = append(b, "'/>"...)
		}
		return append(b, "</query>"...), nil
	}
	items, cfg, err := s.engine.items(ctx, service, node, nil, 0)
	if err != nil {
		return nil, err
	}
	if err := s.engine.mayRetrieve(ctx, service, who, cfg); err != nil {
		return nil, err
	}
	b = append(b, " node='"...)
	b = treff.AppendEscaped(b, node)
	b = append(b, "'>"...)
	for _, it := range items {
		b = append(b, "<item jid='"...)
		b = treff.AppendEscaped(b, service)
		b = append(b, "' name='"...)
		b = treff.AppendEscaped(b, it.ID)
		b = append(b, "'/>"...)
	}
	return append(b, "</query>"...), nil
}
