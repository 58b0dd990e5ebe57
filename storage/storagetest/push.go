package storagetest

import (
	"context"
	"reflect"
	"testing"

	"github.com/treff-im/treff/storage"
)

// pushTests run only for stores that implement storage.PushRegistrations.
var pushTests = []test{
	{name: "PutListDelete", fn: testPushRegistrations},
	{name: "DeleteByService", fn: testPushDeleteByService},
	{name: "DeleteAll", fn: testPushDeleteAll},
	{name: "CancelledContext", fn: cancelled(pushCalls)},
	{name: "EmptyJID", fn: emptyJID(pushCalls)},
}

const (
	pushApp   = "push.example.net"
	pushOther = "other-push.example.net"
)

func listPush(t *testing.T, ctx context.Context, p storage.PushRegistrations, user string) []storage.PushRegistration {
	t.Helper()
	got, err := p.PushRegistrations(ctx, user)
	must(t, err, "PushRegistrations")
	return got
}

func testPushRegistrations(t *testing.T, ctx context.Context, s storage.Store) {
	p := as[storage.PushRegistrations](t, s)
	if got := listPush(t, ctx, p, alice); len(got) != 0 {
		t.Fatalf("PushRegistrations before any: %v, want none", got)
	}
	form := []byte("<x xmlns='jabber:x:data' type='submit'><field var='secret'><value>s3</value></field></x>")
	must(t, p.PutPushRegistration(ctx, alice, storage.PushRegistration{Service: pushOther, Node: "n1"}), "Put other")
	must(t, p.PutPushRegistration(ctx, alice, storage.PushRegistration{Service: pushApp, Node: "phone", Form: form}), "Put phone")
	must(t, p.PutPushRegistration(ctx, alice, storage.PushRegistration{Service: pushApp, Node: "tablet"}), "Put tablet")
	must(t, p.PutPushRegistration(ctx, bob, storage.PushRegistration{Service: pushApp, Node: "bob"}), "Put bob")
	// Ordered by Service, then Node.
	want := []storage.PushRegistration{
		{Service: pushOther, Node: "n1"},
		{Service: pushApp, Node: "phone", Form: form},
		{Service: pushApp, Node: "tablet"},
	}
	got := listPush(t, ctx, p, alice)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("PushRegistrations = %q, want %q", got, want)
	}
	// A copy: changing it changes nothing stored.
	got[1].Form[0] = 'X'
	if again := listPush(t, ctx, p, alice); string(again[1].Form) != string(form) {
		t.Errorf("stored form changed through a returned copy: %q", again[1].Form)
	}
	// Enabling again replaces the form.
	must(t, p.PutPushRegistration(ctx, alice, storage.PushRegistration{Service: pushApp, Node: "phone"}), "Put phone again")
	if got := listPush(t, ctx, p, alice); len(got) != 3 || got[1].Node != "phone" || len(got[1].Form) != 0 {
		t.Errorf("after enabling again without a form: %q", got)
	}
	must(t, p.DeletePushRegistrations(ctx, alice, pushApp, "phone"), "Delete phone")
	must(t, p.DeletePushRegistrations(ctx, alice, pushApp, "phone"), "Delete phone again")
	must(t, p.DeletePushRegistrations(ctx, carol, pushApp, "phone"), "Delete of a user without any")
	want = []storage.PushRegistration{{Service: pushOther, Node: "n1"}, {Service: pushApp, Node: "tablet"}}
	if got := listPush(t, ctx, p, alice); !reflect.DeepEqual(got, want) {
		t.Errorf("after deleting phone: %q, want %q", got, want)
	}
	if got := listPush(t, ctx, p, bob); len(got) != 1 || got[0].Node != "bob" {
		t.Errorf("other user's registrations: %q", got)
	}
}

func testPushDeleteByService(t *testing.T, ctx context.Context, s storage.Store) {
	p := as[storage.PushRegistrations](t, s)
	for _, n := range []string{"a", "b"} {
		must(t, p.PutPushRegistration(ctx, alice, storage.PushRegistration{Service: pushApp, Node: n}), "Put "+n)
	}
	// A service whose JID begins with the other's.
	must(t, p.PutPushRegistration(ctx, alice, storage.PushRegistration{Service: pushApp + "x", Node: "a"}), "Put longer service")
	must(t, p.PutPushRegistration(ctx, alice, storage.PushRegistration{Service: pushOther, Node: "a"}), "Put other")
	must(t, p.DeletePushRegistrations(ctx, alice, pushApp, ""), "Delete all of a service")
	want := []storage.PushRegistration{{Service: pushOther, Node: "a"}, {Service: pushApp + "x", Node: "a"}}
	if got := listPush(t, ctx, p, alice); !reflect.DeepEqual(got, want) {
		t.Errorf("after deleting every node of %s: %q, want %q", pushApp, got, want)
	}
}

func testPushDeleteAll(t *testing.T, ctx context.Context, s storage.Store) {
	p := as[storage.PushRegistrations](t, s)
	must(t, p.PutPushRegistration(ctx, alice, storage.PushRegistration{Service: pushApp, Node: "a"}), "Put alice")
	must(t, p.PutPushRegistration(ctx, bob, storage.PushRegistration{Service: pushApp, Node: "b"}), "Put bob")
	must(t, p.DeleteAllPushRegistrations(ctx, alice), "DeleteAllPushRegistrations")
	must(t, p.DeleteAllPushRegistrations(ctx, alice), "DeleteAllPushRegistrations again")
	if got := listPush(t, ctx, p, alice); len(got) != 0 {
		t.Errorf("after DeleteAllPushRegistrations: %q", got)
	}
	if got := listPush(t, ctx, p, bob); len(got) != 1 {
		t.Errorf("other user's after DeleteAllPushRegistrations: %q", got)
	}
}

func pushCalls(t *testing.T, ctx context.Context, s storage.Store) []call {
	p := as[storage.PushRegistrations](t, s)
	must(t, p.PutPushRegistration(ctx, alice, storage.PushRegistration{Service: pushApp, Node: "a"}), "PutPushRegistration")
	return []call{
		{"PushRegistrations", alice, func(ctx context.Context, j string) error { _, err := p.PushRegistrations(ctx, j); return err }},
		{"PutPushRegistration(user)", alice, func(ctx context.Context, j string) error {
			return p.PutPushRegistration(ctx, j, storage.PushRegistration{Service: pushApp, Node: "b"})
		}},
		{"PutPushRegistration(Service)", pushApp, func(ctx context.Context, j string) error {
			return p.PutPushRegistration(ctx, alice, storage.PushRegistration{Service: j, Node: "b"})
		}},
		{"DeletePushRegistrations(user)", alice, func(ctx context.Context, j string) error {
			return p.DeletePushRegistrations(ctx, j, pushApp, "a")
		}},
		{"DeletePushRegistrations(service)", pushApp, func(ctx context.Context, j string) error {
			return p.DeletePushRegistrations(ctx, alice, j, "a")
		}},
		{"DeleteAllPushRegistrations", alice, func(ctx context.Context, j string) error { return p.DeleteAllPushRegistrations(ctx, j) }},
	}
}
