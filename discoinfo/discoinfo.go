// Package discoinfo holds the values of XEP-0030: Service Discovery that
// modules register with a treff.Registry (identities, items, nodes) and
// that the disco module answers with. It is a leaf package, so that the
// root package and every module can use it.
package discoinfo

import (
	"context"

	"mellium.im/xmpp/jid"
)

// Identity is a service discovery identity (XEP-0030 3.1), such as
// {Category: "conference", Type: "text", Name: "Chatrooms"}.
type Identity struct {
	Category, Type, Name string
}

// Item is a service discovery item (XEP-0030 4.1), such as a group chat
// service of the server's hosts.
type Item struct {
	JID, Node, Name string
}

// Node answers service discovery requests for one node of the server's
// hosts, such as the list of ad-hoc commands (XEP-0050). Both methods get
// the requester, so a node can show each what it may use.
type Node interface {
	DiscoItems(ctx context.Context, from jid.JID) []Item
	DiscoInfo(ctx context.Context, from jid.JID) ([]Identity, []string)
}
