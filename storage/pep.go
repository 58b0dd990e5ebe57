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
	// Whitelist holds the bare JIDs allowed by AccessWhitelist.
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
