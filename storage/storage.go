// Package storage defines the small, per-concern interfaces through which
// Treff and its modules keep data, and the errors they share.
//
// A backend implements some or all of these interfaces. Store composes the
// ones the server core needs; modules declare the narrower interface they
// consume (for example only Rosters) and find it by type assertion, so a
// backend can grow one concern at a time.
//
// Backends shipped with Treff are storage/memstore (in memory, for tests and
// embedding), storage/boltstore (bbolt, the default) and storage/pgstore
// (PostgreSQL). Any backend,
// including a plugin author's, checks itself with storagetest.Run.
//
// A backend of Archive need not write XEP-0313 filtering and XEP-0059
// paging itself: it implements ArchiveIndex, a key-ordered view of one
// user's archive (look up an ID, find a time, scan a key range, load
// messages), and answers QueryArchive with PageArchive.
//
// Conventions for every interface in this package:
//   - Every method takes a context.Context first and is safe for concurrent
//     use.
//   - Users and contacts are identified by their normalised bare JID as a
//     string ("alice@example.org"); callers normalise (PRECIS) before calling,
//     backends compare bytes.
//   - Missing records are reported with ErrNotFound, duplicates with
//     ErrExists, wrapped with %w where context helps; callers test with
//     errors.Is.
//   - Values passed in and returned are copies: a caller may keep or modify
//     what it got back without affecting the store.
//   - Reading data a user does not have (an empty roster, no offline
//     messages) gives an empty result, not ErrNotFound; deleting it is not
//     an error either.
//   - Times are returned in UTC.
//   - Empty JIDs are refused with an error: a method given "" for a JID (a
//     user, owner or contact, or a JID in a record or list it stores or
//     looks up) fails, reads and deletes included. An invitation's empty
//     Creator (the operator) is not a JID.
//   - A done context makes a method return an error wrapping ctx.Err(), so
//     that errors.Is(err, context.Canceled) holds for a cancelled one.
//     After Close, methods return ErrClosed.
package storage

import (
	"context"
	"errors"
	"io"
	"time"
)

// Errors shared by all backends.
var (
	// ErrNotFound reports that the requested record does not exist.
	ErrNotFound = errors.New("storage: not found")
	// ErrExists reports that a record to be created exists already.
	ErrExists = errors.New("storage: already exists")
	// ErrQuotaExceeded reports that a per-user limit would be exceeded.
	ErrQuotaExceeded = errors.New("storage: quota exceeded")
	// ErrClosed reports use of a store after Close.
	ErrClosed = errors.New("storage: store closed")
	// ErrFull reports a write refused because the store cannot take more
	// for now: a queue bounded in bytes in front of it is full, typically
	// because its disk is full or too slow. Nothing was written. Callers
	// tell the sender <resource-constraint/> (a wait error: try again
	// later); the store takes writes again once it has caught up.
	ErrFull = errors.New("storage: full, try again later")
)

// Store is the composition of the stores the server core needs. Later
// features (group chat, archives, ...) define their own interfaces that a
// backend may implement in addition.
type Store interface {
	Accounts
	Rosters
	Offline
	io.Closer
}

// Credential is one set of SCRAM salted credentials (RFC 5802) for one hash
// function. It never contains the password or anything from which the
// password itself can be recovered; StoredKey and ServerKey are what a server
// needs to verify a SCRAM proof and to prove itself to the client.
type Credential struct {
	// Mechanism is the SASL mechanism name, e.g. "SCRAM-SHA-256".
	Mechanism string
	// Salt is the per-user random salt.
	Salt []byte
	// Iterations is the PBKDF2 iteration count.
	Iterations int
	// StoredKey is H(HMAC(SaltedPassword, "Client Key")).
	StoredKey []byte
	// ServerKey is HMAC(SaltedPassword, "Server Key").
	ServerKey []byte
}

// Account is a user account on one virtual host.
type Account struct {
	// JID is the normalised bare JID of the account, e.g. "alice@example.org".
	JID string
	// Credentials holds one entry per SCRAM mechanism. It may be empty for
	// accounts whose passwords an external authenticator checks.
	Credentials []Credential
	// Created is when the account was created (UTC).
	Created time.Time
	// LastLogin is the time of the last successful login (UTC), truncated to
	// the day by the server; zero if the user never logged in.
	LastLogin time.Time
	// Suspended is when an admin suspended the account (UTC); zero if it
	// is not suspended. A suspended account cannot log in and keeps its
	// data.
	Suspended time.Time
	// SuspendReason is the admin's reason, shown to the user when a login
	// is refused; may be empty.
	SuspendReason string
	// Approved is when an admin approved the account (UTC), lifting the
	// limits a new account starts with before it is old enough; zero if
	// no admin did.
	Approved time.Time
}

// Accounts stores user accounts.
type Accounts interface {
	// CreateAccount stores a new account. It returns ErrExists if an account
	// with the same JID exists.
	CreateAccount(ctx context.Context, a Account) error
	// Account returns the account with the given bare JID, or ErrNotFound.
	Account(ctx context.Context, jid string) (Account, error)
	// UpdateAccount replaces all fields of an existing account (callers
	// read, modify and write back). It returns ErrNotFound if the account
	// does not exist.
	UpdateAccount(ctx context.Context, a Account) error
	// DeleteAccount removes the account and returns ErrNotFound if it did
	// not exist. Data of other concerns (roster, offline messages) is removed
	// by the caller through their own interfaces.
	DeleteAccount(ctx context.Context, jid string) error
	// ListAccounts returns the accounts of one domain, or of all domains if
	// domain is empty, sorted by JID.
	ListAccounts(ctx context.Context, domain string) ([]Account, error)
	// SetLastLogin sets the account's LastLogin to t truncated to the day
	// (UTC) and changes nothing else, atomically (a concurrent password
	// change is not lost). It returns ErrNotFound if the account does not
	// exist.
	SetLastLogin(ctx context.Context, jid string, t time.Time) error
}

// Day truncates t to the start of its day in UTC, the granularity of
// Account.LastLogin.
func Day(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// Subscription is the subscription state of a roster item (RFC 6121 2.1.2.5).
type Subscription string

// Subscription states.
const (
	SubNone Subscription = "none"
	SubTo   Subscription = "to"
	SubFrom Subscription = "from"
	SubBoth Subscription = "both"
)

// RosterItem is one contact in a user's roster (RFC 6121 section 2).
type RosterItem struct {
	// JID is the contact's normalised bare JID.
	JID string
	// Name is the user-assigned handle, possibly empty.
	Name string
	// Groups are the roster groups the item is in, in the order given.
	Groups []string
	// Subscription is the subscription state.
	Subscription Subscription
	// PendingOut reports an outbound subscription request awaiting an answer
	// (shown to clients as ask='subscribe').
	PendingOut bool
	// PendingIn reports an inbound subscription request the user has not
	// answered yet.
	PendingIn bool
	// Approved reports a subscription pre-approval (RFC 6121 3.4).
	Approved bool
}

// Rosters stores each user's contact list with a version (XEP-0237) that
// changes on every modification. Versions are never empty and never repeat
// for a user, not even after DeleteRoster (a re-created account must not
// match a version an old client cached).
type Rosters interface {
	// Roster returns all items of the user's roster, sorted by JID, and the
	// current roster version. An empty roster has an empty slice and a
	// version that is still valid for comparison.
	Roster(ctx context.Context, user string) (items []RosterItem, ver string, err error)
	// RosterItem returns one item, or ErrNotFound.
	RosterItem(ctx context.Context, user, contact string) (RosterItem, error)
	// PutRosterItem creates or replaces an item and returns the new roster
	// version.
	PutRosterItem(ctx context.Context, user string, item RosterItem) (ver string, err error)
	// DeleteRosterItem removes an item and returns the new roster version, or
	// ErrNotFound if the item did not exist.
	DeleteRosterItem(ctx context.Context, user, contact string) (ver string, err error)
	// DeleteRoster removes the whole roster of a user (for account removal).
	// Deleting a roster that does not exist is not an error.
	DeleteRoster(ctx context.Context, user string) error
}

// OfflineMessage is a message stored for a user who had no available
// resource when it arrived (XEP-0160).
type OfflineMessage struct {
	// ID identifies the message within the user's offline store; assigned by
	// the backend on push (the value passed in is ignored), never 0, and
	// increasing in arrival order, also across deletions.
	ID uint64
	// Received is the arrival time, set by the caller and used for the
	// XEP-0203 delay stamp.
	Received time.Time
	// Stanza is the serialised <message/> element as it would have been
	// delivered.
	Stanza []byte
}

// Offline stores messages for users without an available resource.
type Offline interface {
	// PushOffline appends a message to the user's offline store, setting its
	// ID. If the user already has limit or more messages stored it stores
	// nothing and returns ErrQuotaExceeded; limit <= 0 means no limit. The
	// check and the append are atomic.
	PushOffline(ctx context.Context, user string, msg OfflineMessage, limit int) (id uint64, err error)
	// OfflineMessages returns the user's stored messages in arrival order.
	OfflineMessages(ctx context.Context, user string) ([]OfflineMessage, error)
	// DeleteOfflineMessages removes the messages with the given IDs; IDs that
	// do not exist are ignored.
	DeleteOfflineMessages(ctx context.Context, user string, ids []uint64) error
	// CountOffline returns the number of stored messages for the user.
	CountOffline(ctx context.Context, user string) (int, error)
	// DeleteOffline removes all stored messages of the user.
	DeleteOffline(ctx context.Context, user string) error
}

// LastActivity records when each user was last seen, for XEP-0012 queries
// about users who are offline. It is optional: the server core does not
// need it, modules find it by type assertion.
type LastActivity interface {
	// SetLastActivity records that the user's last session ended at t with
	// the given status text of its last unavailable presence ("" if none).
	SetLastActivity(ctx context.Context, user string, t time.Time, status string) error
	// LastActivity returns what SetLastActivity recorded, or ErrNotFound.
	LastActivity(ctx context.Context, user string) (t time.Time, status string, err error)
	// DeleteLastActivity forgets the user's record (account removal); a
	// missing record is not an error.
	DeleteLastActivity(ctx context.Context, user string) error
}

// HeldNames keeps the names of deleted accounts from being registered again
// for a while, so that nobody inherits a dead account's contacts. It keeps
// the bare JID and a time, nothing else of the account. Optional: in-band
// registration uses it when the store implements it.
type HeldNames interface {
	// HoldName holds jid until the given time (replacing an earlier hold),
	// and may forget holds that have passed.
	HoldName(ctx context.Context, jid string, until time.Time) error
	// NameHeldUntil returns until when jid is held, or the zero time if it
	// is not held (or the hold has passed).
	NameHeldUntil(ctx context.Context, jid string) (time.Time, error)
}

// Invite is an invitation to register one account (XEP-0401), handed out
// as a link with its token: xmpp:example.org?register;preauth=TOKEN.
type Invite struct {
	// Token is the secret in the link, unique per store.
	Token string
	// Domain is the host the account may be created on.
	Domain string
	// Creator is the bare JID of the user who created it, or "" for the
	// operator.
	Creator string
	// Created and Expires are when it was created and until when it can be
	// used (UTC).
	Created, Expires time.Time
}

// Invites stores invitations. Optional: the invite-only registration
// policy needs it.
type Invites interface {
	// CreateInvite stores inv; ErrExists if its token is taken.
	CreateInvite(ctx context.Context, inv Invite) error
	// Invite returns the invitation with token, or ErrNotFound if there is
	// none or it has expired.
	Invite(ctx context.Context, token string) (Invite, error)
	// UseInvite removes the invitation with token and returns it, in one
	// step, so that one token creates at most one account. ErrNotFound if
	// there is none or it expired (expired ones are removed).
	UseInvite(ctx context.Context, token string) (Invite, error)
	// ListInvites returns the invitations that have not expired, sorted
	// by Created.
	ListInvites(ctx context.Context) ([]Invite, error)
	// DeleteInvite removes an invitation; a missing one is not an error.
	DeleteInvite(ctx context.Context, token string) error
}

// Affiliation is a user's long-lived relation to a group chat room
// (XEP-0045 section 5.2).
type Affiliation string

// Room affiliations. "none" is not stored: a user without an entry has it.
const (
	AffOwner   Affiliation = "owner"
	AffAdmin   Affiliation = "admin"
	AffMember  Affiliation = "member"
	AffOutcast Affiliation = "outcast"
)

// Room is the stored state of a group chat room (XEP-0045): its
// configuration, subject and affiliations, and, for a room kept over a
// restart of the service, its recent history. Occupants are not stored.
type Room struct {
	// JID is the room's normalised bare JID, e.g. "lobby@conference.example.org".
	JID string
	// Name and Description are shown in room lists.
	Name, Description string
	// Lang is the language of the room's discussions (a language tag,
	// e.g. "de"); "" if not said.
	Lang string
	// Subject is the room's subject and SubjectBy the nickname that set it.
	Subject, SubjectBy string
	// Public rooms are listed in service discovery.
	Public bool
	// MembersOnly rooms admit only owners, admins and members.
	MembersOnly bool
	// Moderated rooms give new occupants no voice.
	Moderated bool
	// NonAnonymous rooms show every occupant's real JID to all.
	NonAnonymous bool
	// Persistent rooms outlive their last occupant.
	Persistent bool
	// Password, if not empty, must be given to enter.
	Password string
	// MaxOccupants is the most occupants at once; 0 means the service's
	// limit.
	MaxOccupants int
	// MaxHistory is how many messages a new occupant gets; 0 means the
	// service's default.
	MaxHistory int
	// OccupantsChangeSubject lets participants, not only moderators,
	// change the subject.
	OccupantsChangeSubject bool
	// OccupantsInvite lets participants invite others to a members-only
	// room.
	OccupantsInvite bool
	// Affiliations maps bare JIDs to their affiliation.
	Affiliations map[string]Affiliation
	// Created is when the room was created (UTC).
	Created time.Time
	// OccupantIDKey is the room's secret for its XEP-0421 occupant
	// identifiers (stable per user, kept so they survive restarts).
	OccupantIDKey []byte
	// History is the room's recent discussion history (oldest first),
	// kept when the service stops so that it outlives a restart.
	History []RoomMessage
	// KeepUntil, if not zero, marks a temporary (not Persistent) room that
	// had occupants when the service stopped: it is kept until then for
	// them to come back, and ends if nobody has entered it by then.
	KeepUntil time.Time
}

// RoomMessage is one message of a room's stored history.
type RoomMessage struct {
	// Nick is the sender's nickname in the room.
	Nick string
	// Content is the message's content (the children of <message/>) as
	// the occupants received it.
	Content string
	// At is when the room received it (UTC).
	At time.Time
}

// Rooms stores persistent group chat rooms. Optional: a group chat
// service without it keeps rooms in memory only.
type Rooms interface {
	// PutRoom stores the room, replacing a stored one with the same JID.
	PutRoom(ctx context.Context, r Room) error
	// Room returns the room with the given bare JID, or ErrNotFound.
	Room(ctx context.Context, jid string) (Room, error)
	// DeleteRoom removes a room; a missing one is not an error.
	DeleteRoom(ctx context.Context, jid string) error
	// ListRooms returns the rooms of one service domain (the part after
	// '@'), sorted by JID.
	ListRooms(ctx context.Context, service string) ([]Room, error)
}
