package storage

import "context"

// Blocklists stores each user's block list (XEP-0191): the addresses the
// user does not want to communicate with. Entries are normalised JID
// strings of any form a block list allows: "user@domain/resource",
// "user@domain", "domain/resource" or "domain"; the store compares bytes
// and does not interpret them. Optional: the blocking module finds it by
// type assertion.
type Blocklists interface {
	// Blocklist returns the user's blocked JIDs, sorted; none if the user
	// blocks nobody.
	Blocklist(ctx context.Context, user string) ([]string, error)
	// Block adds jids to the user's list; JIDs already on it stay once.
	// An empty user or JID is refused with an error and nothing is added.
	Block(ctx context.Context, user string, jids []string) error
	// Unblock removes jids from the user's list; JIDs not on it are
	// ignored.
	Unblock(ctx context.Context, user string, jids []string) error
	// UnblockAll empties the user's list (unblock all, account removal).
	UnblockAll(ctx context.Context, user string) error
	// IsBlocked reports whether jid is on the user's list, as given (no
	// matching of other JID forms).
	IsBlocked(ctx context.Context, user, jid string) (bool, error)
}
