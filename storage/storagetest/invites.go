package storagetest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/treff-im/treff/storage"
)

// inviteTests run only for stores that implement storage.Invites.
var inviteTests = []test{
	{name: "CreateUseList", fn: testInvites},
	{name: "UseOnce", fn: testInviteUseOnce},
	{name: "CancelledContext", fn: cancelled(inviteCalls)},
}

func invites(t *testing.T, s storage.Store) storage.Invites {
	inv, ok := s.(storage.Invites)
	if !ok {
		t.Skip("store does not implement storage.Invites")
	}
	return inv
}

func testInvites(t *testing.T, ctx context.Context, s storage.Store) {
	is := invites(t, s)
	now := time.Now().Round(time.Millisecond)
	a := storage.Invite{Token: "tok-a", Domain: "example.org", Creator: alice, Created: now, Expires: now.Add(time.Hour)}
	b := storage.Invite{Token: "tok-b", Domain: "example.org", Created: now.Add(time.Second), Expires: now.Add(2 * time.Hour)}
	old := storage.Invite{Token: "tok-old", Domain: "example.org", Created: now.Add(-time.Hour), Expires: now.Add(-time.Minute)}
	for _, inv := range []storage.Invite{b, a, old} {
		must(t, is.CreateInvite(ctx, inv), "CreateInvite "+inv.Token)
	}
	if err := is.CreateInvite(ctx, a); !errors.Is(err, storage.ErrExists) {
		t.Errorf("CreateInvite with a taken token: %v, want ErrExists", err)
	}
	got, err := is.Invite(ctx, "tok-a")
	must(t, err, "Invite")
	if got != a && !(got.Token == a.Token && got.Domain == a.Domain && got.Creator == a.Creator && got.Created.Equal(a.Created) && got.Expires.Equal(a.Expires)) {
		t.Errorf("Invite = %+v, want %+v", got, a)
	}
	if got.Expires.Location() != time.UTC {
		t.Errorf("Expires not in UTC: %v", got.Expires)
	}
	if _, err := is.Invite(ctx, "tok-old"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("expired Invite: %v, want ErrNotFound", err)
	}
	list, err := is.ListInvites(ctx)
	must(t, err, "ListInvites")
	if len(list) != 2 || list[0].Token != "tok-a" || list[1].Token != "tok-b" {
		t.Errorf("ListInvites = %+v, want tok-a, tok-b", list)
	}
	if _, err := is.UseInvite(ctx, "tok-old"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("UseInvite of an expired invite: %v, want ErrNotFound", err)
	}
	used, err := is.UseInvite(ctx, "tok-a")
	must(t, err, "UseInvite")
	if used.Creator != alice || used.Domain != "example.org" {
		t.Errorf("UseInvite = %+v", used)
	}
	if _, err := is.UseInvite(ctx, "tok-a"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("UseInvite twice: %v, want ErrNotFound", err)
	}
	must(t, is.DeleteInvite(ctx, "tok-b"), "DeleteInvite")
	must(t, is.DeleteInvite(ctx, "tok-b"), "DeleteInvite of a missing invite")
	if list, _ := is.ListInvites(ctx); len(list) != 0 {
		t.Errorf("invites left: %+v", list)
	}
}

// Many goroutines racing for one token: exactly one wins.
func testInviteUseOnce(t *testing.T, ctx context.Context, s storage.Store) {
	is := invites(t, s)
	now := time.Now()
	must(t, is.CreateInvite(ctx, storage.Invite{Token: "race", Domain: "example.org", Created: now, Expires: now.Add(time.Hour)}), "CreateInvite")
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := is.UseInvite(ctx, "race"); err == nil {
				mu.Lock()
				wins++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if wins != 1 {
		t.Errorf("%d goroutines used the same invite, want 1", wins)
	}
}
