package storagetest

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/treff-im/treff/storage"
)

// roomTests run only for stores that implement storage.Rooms.
var roomTests = []test{
	{name: "PutGetListDelete", fn: testRooms},
	{name: "CancelledContext", fn: cancelled(roomCalls)},
	{name: "EmptyJID", fn: emptyJID(roomCalls)},
}

func testRooms(t *testing.T, ctx context.Context, s storage.Store) {
	rs, ok := s.(storage.Rooms)
	if !ok {
		t.Skip("store does not implement storage.Rooms")
	}
	if _, err := rs.Room(ctx, "lobby@conference.example.org"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Room before any: %v, want ErrNotFound", err)
	}
	lobby := storage.Room{
		JID: "lobby@conference.example.org", Name: "Lobby ✓", Description: "Say <hello>",
		Subject: "Welcome", SubjectBy: "alice", Public: true, MembersOnly: true, Moderated: true,
		NonAnonymous: true, Persistent: true, Password: "pw", MaxOccupants: 50, MaxHistory: 20,
		OccupantsChangeSubject: true, OccupantsInvite: true,
		Affiliations:  map[string]storage.Affiliation{alice: storage.AffOwner, bob: storage.AffMember, "eve@example.net": storage.AffOutcast},
		Created:       time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 3600)),
		OccupantIDKey: []byte{0, 1, 2, 0xff},
		History: []storage.RoomMessage{{Nick: "alice", Content: "<body>a &lt; b ✓</body>", At: time.Date(2026, 1, 2, 3, 4, 6, 0, time.UTC)},
			{Nick: "bob", Content: "<body>hi</body>", At: time.Date(2026, 1, 2, 3, 4, 7, 0, time.UTC)}},
		KeepUntil: time.Date(2026, 1, 3, 0, 0, 0, 0, time.UTC),
	}
	other := storage.Room{JID: "attic@conference.example.org", Created: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	elsewhere := storage.Room{JID: "lobby@muc.example.net", Created: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	for _, r := range []storage.Room{lobby, other, elsewhere} {
		must(t, rs.PutRoom(ctx, r), "PutRoom "+r.JID)
	}
	got, err := rs.Room(ctx, lobby.JID)
	must(t, err, "Room")
	if !sameRoom(got, lobby) || got.Created.Location() != time.UTC {
		t.Errorf("Room = %+v\nwant %+v (Created in UTC)", got, lobby)
	}
	// The store keeps its own copy.
	got.Affiliations[bob] = storage.AffOutcast
	if again, _ := rs.Room(ctx, lobby.JID); again.Affiliations[bob] != storage.AffMember {
		t.Error("changing a returned room changed the stored one")
	}
	list, err := rs.ListRooms(ctx, "conference.example.org")
	must(t, err, "ListRooms")
	if len(list) != 2 || list[0].JID != other.JID || list[1].JID != lobby.JID {
		t.Errorf("ListRooms = %v, want attic, lobby", roomJIDs(list))
	}
	lobby.Subject, lobby.Affiliations = "Changed", map[string]storage.Affiliation{alice: storage.AffOwner}
	must(t, rs.PutRoom(ctx, lobby), "PutRoom again")
	if got, _ := rs.Room(ctx, lobby.JID); !sameRoom(got, lobby) {
		t.Errorf("after replacing: %+v", got)
	}
	must(t, rs.DeleteRoom(ctx, lobby.JID), "DeleteRoom")
	must(t, rs.DeleteRoom(ctx, lobby.JID), "DeleteRoom of a missing room")
	if _, err := rs.Room(ctx, lobby.JID); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("deleted room: %v, want ErrNotFound", err)
	}
	if list, _ := rs.ListRooms(ctx, "muc.example.net"); len(list) != 1 {
		t.Errorf("other service's rooms: %v", roomJIDs(list))
	}
}

func sameRoom(a, b storage.Room) bool {
	if len(a.Affiliations) != len(b.Affiliations) || !a.Created.Equal(b.Created) ||
		!bytes.Equal(a.OccupantIDKey, b.OccupantIDKey) || !a.KeepUntil.Equal(b.KeepUntil) || len(a.History) != len(b.History) {
		return false
	}
	for i, m := range b.History {
		if a.History[i].Nick != m.Nick || a.History[i].Content != m.Content || !a.History[i].At.Equal(m.At) {
			return false
		}
	}
	for k, v := range b.Affiliations {
		if a.Affiliations[k] != v {
			return false
		}
	}
	return a.JID == b.JID && a.Name == b.Name && a.Description == b.Description && a.Subject == b.Subject &&
		a.SubjectBy == b.SubjectBy && a.Public == b.Public && a.MembersOnly == b.MembersOnly && a.Moderated == b.Moderated &&
		a.NonAnonymous == b.NonAnonymous && a.Persistent == b.Persistent && a.Password == b.Password &&
		a.MaxOccupants == b.MaxOccupants && a.MaxHistory == b.MaxHistory &&
		a.OccupantsChangeSubject == b.OccupantsChangeSubject && a.OccupantsInvite == b.OccupantsInvite
}

func roomJIDs(rs []storage.Room) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.JID)
	}
	return out
}
