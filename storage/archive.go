package storage

import (
	"context"
	"time"
)

// ArchivedMessage is one message in a user's message archive (XEP-0313).
type ArchivedMessage struct {
	// ID is the message's archive ID (the XEP-0359 stanza-id), assigned by
	// the backend on append (the value passed in is ignored). It is an
	// opaque string, unique within the store, never reused (not even after
	// the message or the whole archive was deleted), and it reveals nothing
	// (neither order nor archive size) to whoever sees it.
	ID string
	// Time is when the server received (incoming) or sent (outgoing) the
	// message, in UTC.
	Time time.Time
	// With is the bare JID of the other party: the sender of an incoming
	// message, the addressee of an outgoing one.
	With string
	// WithResource is the resource of that party's address as it was on
	// the message, "" if it was a bare JID.
	WithResource string
	// Outgoing reports a message the user sent, as opposed to one the user
	// received.
	Outgoing bool
	// Stanza is the serialised <message/> element.
	Stanza []byte
}

// ArchiveQuery selects messages of one user's archive. The zero value
// selects every message; Limit decides how many come back.
//
// The messages that match Start, End, With, AfterID, BeforeID and IDs form
// the query's result set, in archive order. After and Before then place
// a page in it (XEP-0059 paging): the page is the first Limit messages of
// the result set after After (or from its start), or, if Backward is set,
// the last Limit messages before Before (or up to its end).
type ArchiveQuery struct {
	// Start and End, if not zero, keep only messages whose Time is at or
	// after Start and at or before End.
	Start, End time.Time
	// With, if not empty, keeps only messages with one party: a bare JID
	// matches ArchivedMessage.With whatever the resource, a full JID
	// ("bob@example.org/phone") matches With and WithResource exactly.
	With string
	// AfterID and BeforeID, if not empty, keep only messages after
	// (before) the message with that ID, which is not included.
	AfterID, BeforeID string
	// IDs, if not empty, keeps only the messages with these IDs.
	IDs []string
	// After and Before, if not empty, place the page after (before) the
	// message with that ID, which need not be in the result set.
	After, Before string
	// Backward takes the page from the end of the result set (or from
	// just before Before) instead of from its start.
	Backward bool
	// Limit is the most messages in the page. Zero or negative returns an
	// empty page, with Count set.
	Limit int
}

// ArchivePage is the answer to an ArchiveQuery.
type ArchivePage struct {
	// Messages are the page's messages in archive order (oldest first),
	// also when the query pages backward.
	Messages []ArchivedMessage
	// Complete reports that the page reaches the end of the result set in
	// the direction of the query: no message of the result set comes after
	// the page (or, for a Backward query, before it). It is false when
	// Limit cut the page short, also for a Limit of zero.
	Complete bool
	// Count is the number of messages in the result set.
	Count int
	// Index is the position of the page's first message in the result set
	// (0 for the first message); 0 for an empty page.
	Index int
}

// ArchiveDefault is what a user's archive keeps of conversations with
// JIDs that are in neither list of their preferences (XEP-0441).
type ArchiveDefault string

// Archiving defaults.
const (
	// ArchiveAlways archives every conversation.
	ArchiveAlways ArchiveDefault = "always"
	// ArchiveNever archives none.
	ArchiveNever ArchiveDefault = "never"
	// ArchiveRoster archives conversations with contacts in the roster.
	ArchiveRoster ArchiveDefault = "roster"
)

// ArchivePrefs are a user's archiving preferences (XEP-0441).
type ArchivePrefs struct {
	// Default applies to JIDs in neither list; "" means the user has set
	// none and the server's default applies.
	Default ArchiveDefault
	// Always and Never list the JIDs (normally bare) whose conversations
	// are always or never archived.
	Always, Never []string
}

// Archive stores each user's message archive (XEP-0313) and archiving
// preferences (XEP-0441). Optional: the archive module needs it.
//
// A user's archive is ordered by arrival. Its times never decrease:
// AppendArchive stores a Time earlier than that of the user's latest
// message as that latest time, so that time order and archive order agree
// even if the clock goes back.
type Archive interface {
	// AppendArchive appends msg to the user's archive and returns the ID
	// it assigned (msg.ID is ignored).
	AppendArchive(ctx context.Context, user string, msg ArchivedMessage) (id string, err error)
	// QueryArchive returns a page of the user's archive. An ID given in
	// AfterID, BeforeID, IDs, After or Before that is not in the user's
	// archive (unknown, malformed, deleted or another user's) makes it
	// return ErrNotFound. PageArchive implements it on top of an
	// ArchiveIndex.
	QueryArchive(ctx context.Context, user string, q ArchiveQuery) (ArchivePage, error)
	// CountArchive returns the number of messages in the user's archive.
	CountArchive(ctx context.Context, user string) (int, error)
	// DeleteArchiveBefore removes, from every user's archive, the messages
	// whose Time is before t, and returns how many it removed.
	DeleteArchiveBefore(ctx context.Context, t time.Time) (int, error)
	// DeleteArchive removes the user's whole archive and preferences
	// (account removal).
	DeleteArchive(ctx context.Context, user string) error
	// ArchivePrefs returns the user's preferences; the zero value if the
	// user has set none.
	ArchivePrefs(ctx context.Context, user string) (ArchivePrefs, error)
	// SetArchivePrefs replaces the user's preferences.
	SetArchivePrefs(ctx context.Context, user string, p ArchivePrefs) error
}
