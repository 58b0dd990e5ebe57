// Package pie implements XEP-0227: Portable Import/Export Format for
// XMPP-IM Servers (version 1.1), the file format in which Prosody
// (prosody-migrator's xep0227 store) and ejabberd (ejabberdctl
// export_piefxis) export their users, and in which Treff exports and
// imports its own.
//
// Export writes a whole server, or one account, from a storage.Store to
// a writer. Decode reads such a file (following XInclude references, as
// ejabberd writes one file per host) and hands each user and room to a
// function; Apply stores one of them, and Import does both.
//
// What is carried, per user (the store's optional interfaces decide what
// a backend can take): SCRAM credentials (<scram-credentials/> of version
// 1.1: SCRAM-SHA-1, SCRAM-SHA-256, SCRAM-SHA-512), or a plain password
// attribute, which Apply hashes into SCRAM credentials and never stores;
// the roster with subscription states, pending requests both ways and
// groups; when the account was created, last used, suspended or approved
// (attributes in Treff's namespace NSAccount); the vCard (vcard-temp); private XML (jabber:iq:private); PEP
// nodes with their configuration and items; offline messages. Rooms
// (XEP-0045) with their configuration and affiliations travel in an
// element of Treff's own namespace (NSRoom) under the host of the group
// chat service, as neither the XEP nor Prosody's and ejabberd's exports
// have them. Message archives (urn:xmpp:pie:0#mam) and privacy lists
// are read over and counted as skipped.
//
// Import is idempotent: an account that exists keeps its credentials and
// gets only the data it lacks (roster contacts it does not have, a vCard
// if it has none, private documents and PEP nodes and items by key and
// ID, offline messages not stored already); a room that exists is kept
// as it is. The Summary says what was imported and what was skipped.
package pie

import (
	"fmt"
	"strings"
	"time"

	"github.com/treff-im/treff/storage"
)

// Namespaces of the format.
const (
	// NS is the namespace of XEP-0227's elements (server-data, host,
	// user, offline-messages).
	NS = "urn:xmpp:pie:0"
	// NSSCRAM qualifies <scram-credentials/> (XEP-0227 1.1).
	NSSCRAM = "urn:xmpp:pie:0#scram"
	// NSArchive qualifies a user's message archive (XEP-0227 1.1).
	NSArchive = "urn:xmpp:pie:0#mam"
	// NSRoom is Treff's namespace for a group chat room (configuration
	// and affiliations) under the host of its service.
	NSRoom = "urn:xmpp:treff:pie:room:0"
	// NSAccount qualifies Treff's attributes of <user/>: when the account
	// was created, last logged in, was suspended (and why) or approved
	// (storage.Account). Other servers ignore them.
	NSAccount = "urn:xmpp:treff:pie:account:0"
	// NSXInclude is the namespace of <xi:include/>.
	NSXInclude = "http://www.w3.org/2001/XInclude"
)

// Namespaces of the carried data.
const (
	nsRoster      = "jabber:iq:roster"
	nsPrivate     = "jabber:iq:private"
	nsVCard       = "vcard-temp"
	nsClient      = "jabber:client"
	nsPubsub      = "http://jabber.org/protocol/pubsub"
	nsPubsubOwner = "http://jabber.org/protocol/pubsub#owner"
	nsDataForm    = "jabber:x:data"
	nsDelay       = "urn:xmpp:delay"
	nsPrivacy     = "jabber:iq:privacy"
)

// vcardKey is the storage.PrivateXML key of a user's vCard (as in package
// vcard).
const vcardKey = "vcard-temp"

// User is one account as the file has it.
type User struct {
	// JID is the account's normalised bare JID.
	JID string
	// Password is a plain password from the file (ejabberd exports them
	// when it keeps them in clear). Apply hashes it into Credentials and
	// forgets it; Export never writes one.
	Password string
	// Credentials are the SCRAM credentials from the file.
	Credentials []storage.Credential
	// Account holds what the file says of the account besides its JID
	// and credentials (Treff's NSAccount attributes): Created, LastLogin,
	// Suspended, SuspendReason, Approved; zero where it says nothing.
	Account storage.Account
	// Roster holds the contacts, pending inbound requests included
	// (PendingIn).
	Roster []storage.RosterItem
	// VCard is the vcard-temp element, or nil.
	VCard []byte
	// Private holds the private XML documents (XEP-0049).
	Private []PrivateDoc
	// PEP holds the personal eventing nodes.
	PEP []PEPNode
	// Offline holds the offline messages, oldest first.
	Offline []storage.OfflineMessage
	// Skipped names what the file had for the user and Treff does not
	// import ("archive", "privacy lists", an unknown element).
	Skipped []string
}

// PrivateDoc is one private XML document: its storage key
// ("{namespace}name", as package private keeps them) and the element.
type PrivateDoc struct {
	Key string
	Doc []byte
}

// PEPNode is one personal eventing node with its items, oldest first.
// Config is nil when the file has no configuration for it (the default
// configuration is used then).
type PEPNode struct {
	Name   string
	Config *storage.PEPNodeConfig
	Items  []storage.PEPItem
}

// Entry is what Decode finds: a user or a room.
type Entry struct {
	User *User
	Room *storage.Room
}

// Summary counts what an import did. Imported counts are of records
// stored; Skipped counts are of records the store had already (or that
// Treff does not import), which Notes explain.
type Summary struct {
	Accounts, AccountsSkipped int
	Contacts, ContactsSkipped int
	VCards, VCardsSkipped     int
	Private, PrivateSkipped   int
	PEPNodes, PEPItems        int
	PEPSkipped                int
	Offline, OfflineSkipped   int
	Rooms, RoomsSkipped       int
	// SHA1Only counts the accounts created with SCRAM-SHA-1 keys only
	// (Prosody 0.12 keeps no others): a client that chooses SCRAM-SHA-256
	// cannot log in to them until their password is set again.
	SHA1Only int
	// Notes say what was skipped and why, one line each, at most
	// MaxNotes (Add keeps the first).
	Notes []string
}

// MaxNotes bounds Summary.Notes.
const MaxNotes = 200

// Add adds o's counts and notes to s.
func (s *Summary) Add(o Summary) {
	s.Accounts += o.Accounts
	s.AccountsSkipped += o.AccountsSkipped
	s.Contacts += o.Contacts
	s.ContactsSkipped += o.ContactsSkipped
	s.VCards += o.VCards
	s.VCardsSkipped += o.VCardsSkipped
	s.Private += o.Private
	s.PrivateSkipped += o.PrivateSkipped
	s.PEPNodes += o.PEPNodes
	s.PEPItems += o.PEPItems
	s.PEPSkipped += o.PEPSkipped
	s.Offline += o.Offline
	s.OfflineSkipped += o.OfflineSkipped
	s.Rooms += o.Rooms
	s.RoomsSkipped += o.RoomsSkipped
	s.SHA1Only += o.SHA1Only
	for _, n := range o.Notes {
		s.note("%s", n)
	}
}

func (s *Summary) note(format string, args ...any) {
	switch {
	case len(s.Notes) < MaxNotes:
		s.Notes = append(s.Notes, fmt.Sprintf(format, args...))
	case len(s.Notes) == MaxNotes:
		s.Notes = append(s.Notes, "(more skipped; notes end here)")
	}
}

// String describes the summary in a few lines: the counts, then the
// notes.
func (s Summary) String() string {
	var b strings.Builder
	row := func(what string, n, skipped int) {
		fmt.Fprintf(&b, "%-16s %d imported, %d skipped\n", what+":", n, skipped)
	}
	row("accounts", s.Accounts, s.AccountsSkipped)
	row("roster contacts", s.Contacts, s.ContactsSkipped)
	row("vCards", s.VCards, s.VCardsSkipped)
	row("private XML", s.Private, s.PrivateSkipped)
	fmt.Fprintf(&b, "%-16s %d nodes and %d items imported, %d skipped\n", "PEP:", s.PEPNodes, s.PEPItems, s.PEPSkipped)
	row("offline msgs", s.Offline, s.OfflineSkipped)
	row("rooms", s.Rooms, s.RoomsSkipped)
	if s.SHA1Only > 0 {
		fmt.Fprintf(&b, "note: %d accounts came with SCRAM-SHA-1 keys only: they log in with SCRAM-SHA-1 or PLAIN; a client that chooses SCRAM-SHA-256 cannot log in to them until their password is set again\n", s.SHA1Only)
	}
	for _, n := range s.Notes {
		b.WriteString("skipped: " + n + "\n")
	}
	return b.String()
}

// nowUTC is the creation time of imported accounts (the format has none).
func nowUTC() time.Time { return time.Now().UTC() }
