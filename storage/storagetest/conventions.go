package storagetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/treff-im/treff/storage"
)

// The conventions package storage states for every interface, checked
// once per interface by two subtests in its group:
//
//   - CancelledContext: with a cancelled context, every method returns an
//     error wrapping context.Canceled, also when it would have had
//     something to do (each interface's calls first store some data of
//     alice's with a live context).
//   - EmptyJID: every method given "" for a JID (the user, owner, contact
//     or a JID in a record or list) returns an error, reads and deletes
//     included.

// call is one method call of an interface for the convention checks.
type call struct {
	// name labels the call in failures: the method and the argument that
	// arg stands for.
	name string
	// arg is the JID the method normally gets in the position under test;
	// "" means the method takes no JID, so EmptyJID skips it.
	arg string
	// fn calls the method with ctx and jid in that position.
	fn func(ctx context.Context, jid string) error
}

// calls stores some data through ctx (failing t if it cannot) and returns
// the calls of one interface. It skips t if s lacks the interface.
type calls func(t *testing.T, ctx context.Context, s storage.Store) []call

// cancelled returns the CancelledContext check of the interface whose
// calls cs makes.
func cancelled(cs calls) func(t *testing.T, ctx context.Context, s storage.Store) {
	return func(t *testing.T, ctx context.Context, s storage.Store) {
		list := cs(t, ctx, s)
		done, cancel := context.WithCancel(ctx)
		cancel()
		for _, c := range list {
			if err := c.fn(done, c.arg); !errors.Is(err, context.Canceled) {
				t.Errorf("%s with a cancelled context: got error %v, want one wrapping context.Canceled", c.name, err)
			}
		}
		// The store still works after refusing.
		for _, c := range list {
			if c.arg != "" {
				if err := c.fn(ctx, c.arg); errors.Is(err, context.Canceled) {
					t.Errorf("%s with a live context after the cancelled calls: %v", c.name, err)
				}
				break
			}
		}
	}
}

// emptyJID returns the EmptyJID check of the interface whose calls cs
// makes.
func emptyJID(cs calls) func(t *testing.T, ctx context.Context, s storage.Store) {
	return func(t *testing.T, ctx context.Context, s storage.Store) {
		for _, c := range cs(t, ctx, s) {
			if c.arg == "" {
				continue
			}
			if err := c.fn(ctx, ""); err == nil {
				t.Errorf("%s with an empty JID: no error", c.name)
			}
		}
	}
}

// as returns s as a T, skipping t if s does not implement it.
func as[T any](t *testing.T, s storage.Store) T {
	t.Helper()
	v, ok := s.(T)
	if !ok {
		t.Skipf("store does not implement %v", reflect.TypeFor[T]())
	}
	return v
}

// carol is a JID no check stores data of before its call.
const carol = "carol@example.net"

func accountCalls(t *testing.T, ctx context.Context, s storage.Store) []call {
	must(t, s.CreateAccount(ctx, storage.Account{JID: alice, Created: t1}), "CreateAccount")
	return []call{
		{"CreateAccount(JID)", carol, func(ctx context.Context, j string) error {
			return s.CreateAccount(ctx, storage.Account{JID: j, Created: t1})
		}},
		{"Account", alice, func(ctx context.Context, j string) error { _, err := s.Account(ctx, j); return err }},
		{"UpdateAccount(JID)", alice, func(ctx context.Context, j string) error {
			return s.UpdateAccount(ctx, storage.Account{JID: j, Created: t2})
		}},
		{"SetLastLogin", alice, func(ctx context.Context, j string) error { return s.SetLastLogin(ctx, j, t2) }},
		{"ListAccounts", "", func(ctx context.Context, _ string) error { _, err := s.ListAccounts(ctx, "example.org"); return err }},
		{"DeleteAccount", alice, func(ctx context.Context, j string) error { return s.DeleteAccount(ctx, j) }},
	}
}

func rosterCalls(t *testing.T, ctx context.Context, s storage.Store) []call {
	_, err := s.PutRosterItem(ctx, alice, storage.RosterItem{JID: bob, Subscription: storage.SubBoth})
	must(t, err, "PutRosterItem")
	return []call{
		{"Roster", alice, func(ctx context.Context, j string) error { _, _, err := s.Roster(ctx, j); return err }},
		{"RosterItem(user)", alice, func(ctx context.Context, j string) error { _, err := s.RosterItem(ctx, j, bob); return err }},
		{"RosterItem(contact)", bob, func(ctx context.Context, j string) error { _, err := s.RosterItem(ctx, alice, j); return err }},
		{"PutRosterItem(user)", alice, func(ctx context.Context, j string) error {
			_, err := s.PutRosterItem(ctx, j, storage.RosterItem{JID: carol, Subscription: storage.SubNone})
			return err
		}},
		{"PutRosterItem(item.JID)", carol, func(ctx context.Context, j string) error {
			_, err := s.PutRosterItem(ctx, alice, storage.RosterItem{JID: j, Subscription: storage.SubNone})
			return err
		}},
		{"DeleteRosterItem(user)", alice, func(ctx context.Context, j string) error { _, err := s.DeleteRosterItem(ctx, j, bob); return err }},
		{"DeleteRosterItem(contact)", bob, func(ctx context.Context, j string) error { _, err := s.DeleteRosterItem(ctx, alice, j); return err }},
		{"DeleteRoster", alice, func(ctx context.Context, j string) error { return s.DeleteRoster(ctx, j) }},
	}
}

func offlineCalls(t *testing.T, ctx context.Context, s storage.Store) []call {
	msg := storage.OfflineMessage{Received: t1, Stanza: []byte("<message><body>hi</body></message>")}
	id, err := s.PushOffline(ctx, alice, msg, 0)
	must(t, err, "PushOffline")
	return []call{
		{"PushOffline", alice, func(ctx context.Context, j string) error { _, err := s.PushOffline(ctx, j, msg, 0); return err }},
		{"OfflineMessages", alice, func(ctx context.Context, j string) error { _, err := s.OfflineMessages(ctx, j); return err }},
		{"CountOffline", alice, func(ctx context.Context, j string) error { _, err := s.CountOffline(ctx, j); return err }},
		{"DeleteOfflineMessages", alice, func(ctx context.Context, j string) error { return s.DeleteOfflineMessages(ctx, j, []uint64{id}) }},
		{"DeleteOffline", alice, func(ctx context.Context, j string) error { return s.DeleteOffline(ctx, j) }},
	}
}

func lastCalls(t *testing.T, ctx context.Context, s storage.Store) []call {
	l := as[storage.LastActivity](t, s)
	must(t, l.SetLastActivity(ctx, alice, t1, "gone"), "SetLastActivity")
	return []call{
		{"SetLastActivity", alice, func(ctx context.Context, j string) error { return l.SetLastActivity(ctx, j, t2, "") }},
		{"LastActivity", alice, func(ctx context.Context, j string) error { _, _, err := l.LastActivity(ctx, j); return err }},
		{"DeleteLastActivity", alice, func(ctx context.Context, j string) error { return l.DeleteLastActivity(ctx, j) }},
	}
}

func heldCalls(t *testing.T, ctx context.Context, s storage.Store) []call {
	h := as[storage.HeldNames](t, s)
	until := time.Now().Add(time.Hour).UTC()
	must(t, h.HoldName(ctx, alice, until), "HoldName")
	return []call{
		{"HoldName", carol, func(ctx context.Context, j string) error { return h.HoldName(ctx, j, until) }},
		{"NameHeldUntil", alice, func(ctx context.Context, j string) error { _, err := h.NameHeldUntil(ctx, j); return err }},
	}
}

// inviteCalls has no JID arguments (an invitation's Creator is "" for the
// operator), so Invites has no EmptyJID check.
func inviteCalls(t *testing.T, ctx context.Context, s storage.Store) []call {
	is := as[storage.Invites](t, s)
	now := time.Now().UTC()
	inv := storage.Invite{Token: "tok-a", Domain: "example.org", Creator: alice, Created: now, Expires: now.Add(time.Hour)}
	must(t, is.CreateInvite(ctx, inv), "CreateInvite")
	inv2 := inv
	inv2.Token = "tok-b"
	return []call{
		{"CreateInvite", "", func(ctx context.Context, _ string) error { return is.CreateInvite(ctx, inv2) }},
		{"Invite", "", func(ctx context.Context, _ string) error { _, err := is.Invite(ctx, inv.Token); return err }},
		{"ListInvites", "", func(ctx context.Context, _ string) error { _, err := is.ListInvites(ctx); return err }},
		{"UseInvite", "", func(ctx context.Context, _ string) error { _, err := is.UseInvite(ctx, inv.Token); return err }},
		{"DeleteInvite", "", func(ctx context.Context, _ string) error { return is.DeleteInvite(ctx, inv.Token) }},
	}
}

func roomCalls(t *testing.T, ctx context.Context, s storage.Store) []call {
	rs := as[storage.Rooms](t, s)
	const lobby, other = "lobby@conference.example.org", "other@conference.example.org"
	must(t, rs.PutRoom(ctx, storage.Room{JID: lobby, Persistent: true, Created: t1}), "PutRoom")
	return []call{
		{"PutRoom(JID)", other, func(ctx context.Context, j string) error {
			return rs.PutRoom(ctx, storage.Room{JID: j, Persistent: true, Created: t1})
		}},
		{"Room", lobby, func(ctx context.Context, j string) error { _, err := rs.Room(ctx, j); return err }},
		{"ListRooms", "", func(ctx context.Context, _ string) error {
			_, err := rs.ListRooms(ctx, "conference.example.org")
			return err
		}},
		{"DeleteRoom", lobby, func(ctx context.Context, j string) error { return rs.DeleteRoom(ctx, j) }},
	}
}

func privateCalls(t *testing.T, ctx context.Context, s storage.Store) []call {
	p := as[storage.PrivateXML](t, s)
	const key = "storage:bookmarks"
	doc := []byte("<storage xmlns='storage:bookmarks'/>")
	must(t, p.PutPrivateXML(ctx, alice, key, doc), "PutPrivateXML")
	calls := []call{
		{"PrivateXML", alice, func(ctx context.Context, j string) error { _, err := p.PrivateXML(ctx, j, key); return err }},
		{"PutPrivateXML", alice, func(ctx context.Context, j string) error { return p.PutPrivateXML(ctx, j, "other", doc) }},
		{"DeletePrivateXML", alice, func(ctx context.Context, j string) error { return p.DeletePrivateXML(ctx, j, key) }},
		{"DeleteAllPrivateXML", alice, func(ctx context.Context, j string) error { return p.DeleteAllPrivateXML(ctx, j) }},
	}
	if k, ok := s.(storage.PrivateXMLKeys); ok {
		calls = append(calls, call{"PrivateXMLKeys", alice, func(ctx context.Context, j string) error { _, err := k.PrivateXMLKeys(ctx, j); return err }})
	}
	return calls
}

func blocklistCalls(t *testing.T, ctx context.Context, s storage.Store) []call {
	b := as[storage.Blocklists](t, s)
	must(t, b.Block(ctx, alice, []string{bob}), "Block")
	return []call{
		{"Blocklist", alice, func(ctx context.Context, j string) error { _, err := b.Blocklist(ctx, j); return err }},
		{"Block(user)", alice, func(ctx context.Context, j string) error { return b.Block(ctx, j, []string{carol}) }},
		{"Block(jids)", carol, func(ctx context.Context, j string) error { return b.Block(ctx, alice, []string{carol, j}) }},
		{"IsBlocked(user)", alice, func(ctx context.Context, j string) error { _, err := b.IsBlocked(ctx, j, bob); return err }},
		{"IsBlocked(jid)", bob, func(ctx context.Context, j string) error { _, err := b.IsBlocked(ctx, alice, j); return err }},
		{"Unblock(user)", alice, func(ctx context.Context, j string) error { return b.Unblock(ctx, j, []string{bob}) }},
		{"Unblock(jids)", bob, func(ctx context.Context, j string) error { return b.Unblock(ctx, alice, []string{j}) }},
		{"UnblockAll", alice, func(ctx context.Context, j string) error { return b.UnblockAll(ctx, j) }},
	}
}

func pepCalls(t *testing.T, ctx context.Context, s storage.Store) []call {
	p := pepStore(t, s)
	const node = "urn:example:node"
	cfg := storage.PEPNodeConfig{AccessModel: storage.AccessPresence, PersistItems: true, MaxItems: 10}
	must(t, p.CreatePEPNode(ctx, alice, node, cfg), "CreatePEPNode")
	must(t, p.PublishPEPItem(ctx, alice, node, pepItem("1"), 10), "PublishPEPItem")
	return []call{
		{"CreatePEPNode", alice, func(ctx context.Context, j string) error { return p.CreatePEPNode(ctx, j, "urn:example:other", cfg) }},
		{"PEPNodeConfig", alice, func(ctx context.Context, j string) error { _, err := p.PEPNodeConfig(ctx, j, node); return err }},
		{"SetPEPNodeConfig", alice, func(ctx context.Context, j string) error { return p.SetPEPNodeConfig(ctx, j, node, cfg) }},
		{"PEPNodes", alice, func(ctx context.Context, j string) error { _, err := p.PEPNodes(ctx, j); return err }},
		{"PublishPEPItem", alice, func(ctx context.Context, j string) error { return p.PublishPEPItem(ctx, j, node, pepItem("2"), 10) }},
		{"PEPItems", alice, func(ctx context.Context, j string) error { _, err := p.PEPItems(ctx, j, node, nil, 0); return err }},
		{"RetractPEPItem", alice, func(ctx context.Context, j string) error { return p.RetractPEPItem(ctx, j, node, "1") }},
		{"PurgePEPNode", alice, func(ctx context.Context, j string) error { return p.PurgePEPNode(ctx, j, node) }},
		{"DeletePEPNode", alice, func(ctx context.Context, j string) error { return p.DeletePEPNode(ctx, j, node) }},
		{"DeletePEPOwner", alice, func(ctx context.Context, j string) error { return p.DeletePEPOwner(ctx, j) }},
	}
}

func archiveCalls(t *testing.T, ctx context.Context, s storage.Store) []call {
	a := archiveOf(t, s)
	id, err := a.AppendArchive(ctx, alice, archMsg(0))
	must(t, err, "AppendArchive")
	prefs := storage.ArchivePrefs{Default: storage.ArchiveRoster, Never: []string{carol}}
	return []call{
		{"AppendArchive", alice, func(ctx context.Context, j string) error { _, err := a.AppendArchive(ctx, j, archMsg(1)); return err }},
		{"QueryArchive", alice, func(ctx context.Context, j string) error {
			_, err := a.QueryArchive(ctx, j, storage.ArchiveQuery{Limit: 10})
			return err
		}},
		{"QueryArchive(After)", alice, func(ctx context.Context, j string) error {
			_, err := a.QueryArchive(ctx, j, storage.ArchiveQuery{After: id, Limit: 10})
			return err
		}},
		{"CountArchive", alice, func(ctx context.Context, j string) error { _, err := a.CountArchive(ctx, j); return err }},
		{"SetArchivePrefs", alice, func(ctx context.Context, j string) error { return a.SetArchivePrefs(ctx, j, prefs) }},
		{"ArchivePrefs", alice, func(ctx context.Context, j string) error { _, err := a.ArchivePrefs(ctx, j); return err }},
		{"DeleteArchiveBefore", "", func(ctx context.Context, _ string) error { _, err := a.DeleteArchiveBefore(ctx, t3); return err }},
		{"DeleteArchive", alice, func(ctx context.Context, j string) error { return a.DeleteArchive(ctx, j) }},
	}
}

func uploadCalls(t *testing.T, ctx context.Context, s storage.Store) []call {
	us := uploads(t, s)
	must(t, us.CreateUpload(ctx, storage.Upload{ID: "id-a", Owner: alice, Filename: "a.txt", Size: 10, Created: t1}, 0), "CreateUpload")
	n := 0
	return []call{
		{"CreateUpload(Owner)", alice, func(ctx context.Context, j string) error {
			n++
			return us.CreateUpload(ctx, storage.Upload{ID: fmt.Sprint("id-new-", n), Owner: j, Filename: "b.txt", Size: 10, Created: t1}, 0)
		}},
		{"Upload", "", func(ctx context.Context, _ string) error { _, err := us.Upload(ctx, "id-a"); return err }},
		{"UploadUsage", alice, func(ctx context.Context, j string) error { _, err := us.UploadUsage(ctx, j); return err }},
		{"ListUploads", alice, func(ctx context.Context, j string) error { _, err := us.ListUploads(ctx, j); return err }},
		{"ExpiredUploads", "", func(ctx context.Context, _ string) error { _, err := us.ExpiredUploads(ctx, t3, t3); return err }},
		{"MarkUploaded", "", func(ctx context.Context, _ string) error { return us.MarkUploaded(ctx, "id-a") }},
		{"DeleteUpload", "", func(ctx context.Context, _ string) error { return us.DeleteUpload(ctx, "id-a") }},
		{"DeleteUploads", alice, func(ctx context.Context, j string) error { return us.DeleteUploads(ctx, j) }},
	}
}
