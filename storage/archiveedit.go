package storage

import "context"

// ArchiveEditor is an optional extension of Archive: it replaces the
// stanza of an archived message in place, keeping its ID, time, parties
// and position. Message retraction (XEP-0424) and moderation (XEP-0425)
// use it to leave a tombstone where a retracted message was, so that a
// later query shows that the message existed and was retracted, without
// its content. Modules find it by type assertion on the Archive.
type ArchiveEditor interface {
	// ReplaceArchived replaces the stanza of the message with ID id in
	// the user's archive by stanza. It returns ErrNotFound if the user's
	// archive has no message with that ID (unknown, malformed, deleted or
	// another user's).
	ReplaceArchived(ctx context.Context, user, id string, stanza []byte) error
}
