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
		Subscribe     *nodeEl `xml:"subscribe"`
		Unsubscribe   *nodeEl `xml:"unsubscribe"`
		Subscriptions *nodeEl `xml:"subscriptions"`
		Options       *nodeEl `xml:"options"`
	}
)

// handleIQ answers pubsub and pubsub#owner requests to an account.
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
	m.srv.Log().Error("pep: request failed", "user", owner.String(), "err", err)
	return nil, err
}

func isOwner(iq *treff.Stanza, owner string) bool { return iq.From.Bare().String() == owner }

var errForbidden = stanza.Forbidden

func wrapPubsub(ns string, inner []byte) []byte {
	b := append([]byte("<pubsub xmlns='"), ns...)
	b = append(b, "'>"...)
	b = append(b, inner...)
	return append(b, "</pubsub>"...)
}

func (m *Module) userRequest(ctx context.Context, iq *treff.Stanza, owner string, req *request) ([]byte, error) {
	switch {
	case iq.Type == "set" && req.Publish != nil:
		return m.handlePublish(ctx, iq, owner, req)
	case iq.Type == "set" && req.Create != nil:
		if !isOwner(iq, owner) {
			return nil, errForbidden
		}
		node := req.Create.Node
		if node == "" {
			return nil, pubsubError(stanza.NotAcceptable, "nodeid-required")
		}
		cfg := defaultConfig()
		if req.Configure != nil {
			if err := applyForm(&cfg, req.Configure.Form); err != nil {
				return nil, err
			}
		}
		unlock := m.lock(owner)
		err := m.createNode(ctx, owner, node, cfg)
		unlock()
		return nil, err
	case iq.Type == "get" && req.Items != nil:
		return m.handleItems(ctx, iq, owner, req)
	case iq.Type == "set" && req.Retract != nil:
		if !isOwner(iq, owner) {
			return nil, errForbidden
		}
		r := req.Retract
		if r.Node == "" {
			return nil, errNodeRequired
		}
		if len(r.Items) != 1 || r.Items[0].ID == "" {
			return nil, pubsubError(stanza.BadRequest, "item-required")
		}
		notify, _ := parseBool(r.Notify)
		return nil, m.retract(ctx, owner, r.Node, r.Items[0].ID, notify)
	case iq.Type == "get" && req.Subscriptions != nil:
		// Explicit subscriptions are not offered, so there are none.
		if !isOwner(iq, owner) {
			return nil, errForbidden
		}
		return wrapPubsub(NS, []byte("<subscriptions/>")), nil
	case iq.Type == "get" && req.Affiliations != nil:
		if !isOwner(iq, owner) {
			return nil, errForbidden
		}
		nodes, err := m.Store.PEPNodes(ctx, owner)
		if err != nil {
			return nil, err
		}
		b := []byte("<affiliations>")
		for _, n := range nodes {
			if req.Affiliations.Node != "" && n != req.Affiliations.Node {
				continue
			}
			b = append(b, "<affiliation node='"...)
			b = treff.AppendEscaped(b, n)
			b = append(b, "' affiliation='owner'/>"...)
		}
		return wrapPubsub(NS, append(b, "</affiliations>"...)), nil
	case req.Subscribe != nil, req.Unsubscribe != nil:
		return nil, unsupported("subscribe")
	case req.Options != nil:
		return nil, unsupported("subscription-options")
	}
	return nil, stanza.FeatureNotImplemented
}

func (m *Module) handlePublish(ctx context.Context, iq *treff.Stanza, owner string, req *request) ([]byte, error) {
	if !isOwner(iq, owner) {
		return nil, errForbidden
	}
	p := req.Publish
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
	id := p.Items[0].ID
	if id == "" {
		id = newID()
	}
	var opts map[string]string
	if req.PublishOptions != nil {
		opts = optionsOf(req.PublishOptions.Form)
	}
	if _, err := m.publish(ctx, owner, p.Node, storage.PEPItem{ID: id, Payload: []byte(payload)}, opts, true); err != nil {
		return nil, err
	}
	b := []byte("<publish node='")
	b = treff.AppendEscaped(b, p.Node)
	b = append(b, "'><item id='"...)
	b = treff.AppendEscaped(b, id)
	b = append(b, "'/></publish>"...)
	return wrapPubsub(NS, b), nil
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
	return wrapPubsub(NS, appendItems(nil, r.Node, items)), nil
}

// mayRetrieve checks the node's access model for requester (XEP-0060
// section 6.5.9 for the errors).
func (m *Module) mayRetrieve(ctx context.Context, owner, requester string, cfg storage.PEPNodeConfig) error {
	if requester == owner {
		return nil
	}
	var it *storage.RosterItem
	if cfg.AccessModel != storage.AccessOpen && cfg.AccessModel != storage.AccessWhitelist && m.rosters != nil {
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

// allowed applies the access model to a requester other than the owner,
// given the owner's roster item for it (nil if none).
func allowed(cfg storage.PEPNodeConfig, requester string, it *storage.RosterItem) bool {
	switch cfg.AccessModel {
	case storage.AccessOpen:
		return true
	case storage.AccessWhitelist:
		return slices.Contains(cfg.Whitelist, requester)
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

func (m *Module) ownerRequest(ctx context.Context, iq *treff.Stanza, owner string, req *request) ([]byte, error) {
	if !isOwner(iq, owner) {
		return nil, errForbidden
	}
	switch {
	case req.Configure != nil:
		node := req.Configure.Node
		if node == "" {
			return nil, errNodeRequired
		}
		cfg, err := m.Store.PEPNodeConfig(ctx, owner, node)
		if err != nil {
			return nil, err
		}
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
		return nil, m.setConfig(ctx, owner, node, cfg)
	case iq.Type == "get" && req.Default != nil:
		b := []byte("<default>")
		b = appendConfigForm(b, defaultConfig())
		return wrapPubsub(NSOwner, append(b, "</default>"...)), nil
	case iq.Type == "set" && req.Delete != nil:
		if req.Delete.Node == "" {
			return nil, errNodeRequired
		}
		return nil, m.deleteNode(ctx, owner, req.Delete.Node)
	case iq.Type == "set" && req.Purge != nil:
		if req.Purge.Node == "" {
			return nil, errNodeRequired
		}
		return nil, m.purge(ctx, owner, req.Purge.Node)
	case req.Affiliations != nil:
		return m.affiliations(ctx, iq, owner, req)
	case req.Subscriptions != nil:
		return nil, unsupported("manage-subscriptions")
	}
	return nil, stanza.FeatureNotImplemented
}

// affiliations lists and changes a node's affiliations: the owner and the
// members of its whitelist (XEP-0060 section 8.9).
func (m *Module) affiliations(ctx context.Context, iq *treff.Stanza, owner string, req *request) ([]byte, error) {
	node := req.Affiliations.Node
	if node == "" {
		return nil, errNodeRequired
	}
	if iq.Type == "get" {
		cfg, err := m.Store.PEPNodeConfig(ctx, owner, node)
		if err != nil {
			return nil, err
		}
		b := []byte("<affiliations node='")
		b = treff.AppendEscaped(b, node)
		b = append(b, "'><affiliation jid='"...)
		b = treff.AppendEscaped(b, owner)
		b = append(b, "' affiliation='owner'/>"...)
		for _, j := range cfg.Whitelist {
			b = append(b, "<affiliation jid='"...)
			b = treff.AppendEscaped(b, j)
			b = append(b, "' affiliation='member'/>"...)
		}
		return wrapPubsub(NSOwner, append(b, "</affiliations>"...)), nil
	}
	unlock := m.lock(owner)
	defer unlock()
	cfg, err := m.Store.PEPNodeConfig(ctx, owner, node)
	if err != nil {
		return nil, err
	}
	for _, a := range req.Affiliations.Items {
		j, err := jid.Parse(a.JID)
		if err != nil {
			return nil, stanza.JIDMalformed
		}
		bare := j.Bare().String()
		if bare == owner {
			if a.Affiliation != "owner" {
				return nil, errNotAcceptable
			}
			continue
		}
		cfg.Whitelist = slices.DeleteFunc(cfg.Whitelist, func(s string) bool { return s == bare })
		switch a.Affiliation {
		case "member", "publisher", "publish-only":
			cfg.Whitelist = append(cfg.Whitelist, bare)
		case "none", "outcast":
		default:
			return nil, errNotAcceptable
		}
	}
	return nil, m.Store.SetPEPNodeConfig(ctx, owner, node, cfg)
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
