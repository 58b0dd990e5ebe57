package storage

import "context"

// PEP access models (XEP-0060 section 4.5), the values of
// PEPNodeConfig.AccessModel.
const (
	// AccessOpen lets anyone retrieve items.
	AccessOpen = "open"
	// AccessPresence lets the owner and contacts with a presence
	// subscription ('from' or 'both') retrieve items; the PEP default.
	AccessPresence = "presence"
	// AccessRoster lets the owner and contacts in the roster groups of
	// PEPNodeConfig.RosterGroups retrieve items.
	AccessRoster = "roster"
	// AccessWhitelist lets the owner and the bare JIDs of
	// PEPNodeConfig.Whitelist retrieve items.
	AccessWhitelist = "whitelist"
)

// Publish models (XEP-0060 section 16.4.4, pubsub#publish_model), the
// values of PEPNodeConfig.PublishModel.
const (
	// PublishPublishers lets owners and publishers publish; the default
	// ("" means it too).
	PublishPublishers = "publishers"
	// PublishSubscribers also lets subscribers and members publish.
	PublishSubscribers = "subscribers"
	// PublishOpen lets anyone who is not an outcast publish.
	PublishOpen = "open"
)

// PEPMaxItemsMax is the value of PEPNodeConfig.MaxItems that stands for
// pubsub#max_items "max": as many items as the service allows.
const PEPMaxItemsMax = -1

// PEPNodeConfig is the configuration of one personal eventing node
// (XEP-0163) as stored. The module that uses it gives the fields their
// meaning; the store keeps them as they are.
type PEPNodeConfig struct {
	// AccessModel is one of the Access* constants.
	AccessModel string
	// PersistItems says whether published items are kept in the store
	// (pubsub#persist_items).
	PersistItems bool
	// MaxItems is the most items kept (pubsub#max_items), or
	// PEPMaxItemsMax for the service's limit.
	MaxItems int
	// Whitelist holds the bare JIDs allowed by AccessWhitelist: the
	// member affiliation (XEP-0060 section 4.1).
	Whitelist []string
	// RosterGroups are the groups allowed by AccessRoster.
	RosterGroups []string
	// NotifyRetract says whether retractions are notified
	// (pubsub#notify_retract).
	NotifyRetract bool
	// NotifyDelete says whether deleting or purging the node is notified
	// (pubsub#notify_delete).
	NotifyDelete bool
	// Title is a human-readable name (pubsub#title).
	Title string
	// PublishModel is one of the Publish* constants; "" means
	// PublishPublishers.
	PublishModel string
	// Owners holds the bare JIDs with the owner affiliation besides the
	// node's owner key (on a pubsub service, whose key is the service's
	// JID, the node's creator).
	Owners []string
	// Publishers holds the bare JIDs with the publisher affiliation.
	Publishers []string
	// Outcasts holds the bare JIDs with the outcast affiliation, who may
	// neither retrieve, subscribe nor publish.
	Outcasts []string
}

// PEPItem is one item published on a personal eventing node.
type PEPItem struct {
	// ID is the item ID, unique within its node.
	ID string
	// Payload is the serialised payload element.
	Payload []byte
}

// PEP stores the personal eventing (XEP-0163) nodes of each account,
// identified by the owner's bare JID and the node name, with their
// configuration and published items. Optional: the PEP module needs it.
//
// Items of a node are kept in publication order; publishing an item whose
// ID exists replaces it and makes it the newest.
type PEP interface {
	// CreatePEPNode creates a node with cfg; ErrExists if the owner has a
	// node of that name.
	CreatePEPNode(ctx context.Context, owner, node string, cfg PEPNodeConfig) error
	// PEPNodeConfig returns a node's configuration, or ErrNotFound.
	PEPNodeConfig(ctx context.Context, owner, node string) (PEPNodeConfig, error)
	// SetPEPNodeConfig replaces a node's configuration, or returns
	// ErrNotFound. It keeps the items as they are.
	SetPEPNodeConfig(ctx context.Context, owner, node string, cfg PEPNodeConfig) error
	// DeletePEPNode removes a node with its items, or returns ErrNotFound.
	DeletePEPNode(ctx context.Context, owner, node string) error
	// PEPNodes returns the names of the owner's nodes, sorted.
	PEPNodes(ctx context.Context, owner string) ([]string, error)
	// PublishPEPItem adds it to the node as its newest item, replacing an
	// item with the same ID, and then removes the oldest items beyond max
	// (max <= 0: no limit). ErrNotFound if the node does not exist.
	PublishPEPItem(ctx context.Context, owner, node string, it PEPItem, max int) error
	// PEPItems returns items of a node, oldest first: those with the given
	// IDs if ids is not empty (IDs without an item are skipped), else the
	// newest last ones if last > 0, else all. ErrNotFound if the node does
	// not exist.
	PEPItems(ctx context.Context, owner, node string, ids []string, last int) ([]PEPItem, error)
	// RetractPEPItem removes one item; ErrNotFound if the node or the item
	// does not exist.
	RetractPEPItem(ctx context.Context, owner, node, id string) error
	// PurgePEPNode removes all items of a node and keeps the node;
	// ErrNotFound if the node does not exist.
	PurgePEPNode(ctx context.Context, owner, node string) error
	// DeletePEPOwner removes all nodes of the owner (account removal); an
	// owner without nodes is not an error.
	DeletePEPOwner(ctx context.Context, owner string) error
}

// PEPSubscriptions stores explicit subscriptions (XEP-0060 section 6.1)
// to the nodes that storage.PEP keeps: one subscription per subscriber
// JID (bare or full, as given) and node. Optional: the PEP and pubsub
// modules offer explicit subscriptions with it. Deleting a node
// (DeletePEPNode) or an owner (DeletePEPOwner) removes its
// subscriptions; purging a node keeps them.
type PEPSubscriptions interface {
	// SubscribePEPNode subscribes jid to a node; ErrNotFound if the node
	// does not exist. Subscribing again is not an error.
	SubscribePEPNode(ctx context.Context, owner, node, jid string) error
	// UnsubscribePEPNode removes jid's subscription; ErrNotFound if the
	// node or the subscription does not exist.
	UnsubscribePEPNode(ctx context.Context, owner, node, jid string) error
	// PEPSubscribers returns the subscribed JIDs of a node, sorted;
	// ErrNotFound if the node does not exist.
	PEPSubscribers(ctx context.Context, owner, node string) ([]string, error)
	// PEPSubscriptionsOf returns the names of the owner's nodes that jid
	// is subscribed to, sorted (none is not an error).
	PEPSubscriptionsOf(ctx context.Context, owner, jid string) ([]string, error)
}
