package storagetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/treff-im/treff/storage"
)

// fastTests run only for stores that implement storage.FastTokens.
var fastTests = []test{
	{name: "RoundTrip", fn: testFastRoundTrip},
	{name: "ListAndDelete", fn: testFastList},
	{name: "CancelledContext", fn: cancelled(fastCalls)},
	{name: "EmptyJID", fn: emptyJID(fastCalls)},
	{name: "EmptyAgent", fn: testFastEmptyAgent},
}

func newFastDevice(agent string) storage.FastDevice {
	return storage.FastDevice{
		Agent:    agent,
		Software: "Gajim ✓",
		Device:   "Laptop <home>",
		LastUsed: t1,
		Current: storage.FastToken{
			ID: []byte{0, 1, 2, 0xff}, Mechanism: "HT-SHA-256-NONE",
			Issued: t1, Expires: t2, MinCount: 7,
		},
		Next: storage.FastToken{
			ID: []byte("next-id"), Mechanism: "HT-SHA-256-EXPR",
			Issued: t2, Expires: t3, MinCount: 1<<63 + 5,
		},
	}
}

// diffFastDevice describes how got differs from want, or returns "".
func diffFastDevice(got, want storage.FastDevice) string {
	if got.Agent != want.Agent || got.Software != want.Software || got.Device != want.Device || !sameTime(got.LastUsed, want.LastUsed) {
		return fmt.Sprintf("got %+v, want %+v", got, want)
	}
	for i, p := range [][2]storage.FastToken{{got.Current, want.Current}, {got.Next, want.Next}} {
		g, w := p[0], p[1]
		if !sameBytes(g.ID, w.ID) || g.Mechanism != w.Mechanism || !sameTime(g.Issued, w.Issued) ||
			!sameTime(g.Expires, w.Expires) || g.MinCount != w.MinCount {
			return fmt.Sprintf("token slot %d: got %+v, want %+v", i, g, w)
		}
	}
	for _, tm := range []time.Time{got.LastUsed, got.Current.Issued, got.Current.Expires, got.Next.Issued, got.Next.Expires} {
		if !tm.IsZero() && tm.Location() != time.UTC {
			return fmt.Sprintf("time %v is not in UTC", tm)
		}
	}
	return ""
}

func testFastRoundTrip(t *testing.T, ctx context.Context, s storage.Store) {
	f := as[storage.FastTokens](t, s)
	if _, err := f.FastDevice(ctx, alice, "agent-1"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("FastDevice before any: %v, want ErrNotFound", err)
	}
	d := newFastDevice("agent-1")
	must(t, f.PutFastDevice(ctx, alice, d), "PutFastDevice")
	got, err := f.FastDevice(ctx, alice, "agent-1")
	must(t, err, "FastDevice")
	if diff := diffFastDevice(got, d); diff != "" {
		t.Errorf("FastDevice: %s", diff)
	}
	// The store keeps its own copy, both ways.
	got.Current.ID[0] = 0x55
	d.Next.ID[0] = 'X'
	again, err := f.FastDevice(ctx, alice, "agent-1")
	must(t, err, "FastDevice again")
	if diff := diffFastDevice(again, newFastDevice("agent-1")); diff != "" {
		t.Errorf("changing a passed or returned device changed the stored one: %s", diff)
	}
	// Replacing, with an empty slot and times in another zone.
	zone := time.FixedZone("x", -5*3600)
	d2 := storage.FastDevice{Agent: "agent-1", LastUsed: t3.In(zone),
		Current: storage.FastToken{ID: []byte("c2"), Mechanism: "HT-SHA-256-NONE", Issued: t2.In(zone), Expires: t3.In(zone)}}
	must(t, f.PutFastDevice(ctx, alice, d2), "PutFastDevice replacing")
	got, err = f.FastDevice(ctx, alice, "agent-1")
	must(t, err, "FastDevice after replacing")
	want := d2
	want.LastUsed, want.Current.Issued, want.Current.Expires = t3, t2, t3
	if diff := diffFastDevice(got, want); diff != "" {
		t.Errorf("after replacing: %s", diff)
	}
	if len(got.Next.ID) != 0 || got.Next.Mechanism != "" {
		t.Errorf("empty slot came back as %+v", got.Next)
	}
	// Other users and agents see nothing.
	for _, u := range []string{bob, aliceP, alice + "x"} {
		if _, err := f.FastDevice(ctx, u, "agent-1"); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("FastDevice(%q) of alice's agent: %v, want ErrNotFound", u, err)
		}
	}
	if _, err := f.FastDevice(ctx, alice, "agent-2"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("FastDevice of another agent: %v, want ErrNotFound", err)
	}
}

func testFastList(t *testing.T, ctx context.Context, s storage.Store) {
	f := as[storage.FastTokens](t, s)
	list, err := f.FastDevices(ctx, alice)
	must(t, err, "FastDevices of a user without devices")
	if len(list) != 0 {
		t.Fatalf("FastDevices before any: %d devices", len(list))
	}
	for _, a := range []string{"c", "a", "b"} {
		must(t, f.PutFastDevice(ctx, alice, newFastDevice(a)), "PutFastDevice "+a)
	}
	must(t, f.PutFastDevice(ctx, bob, newFastDevice("z")), "PutFastDevice bob")
	list, err = f.FastDevices(ctx, alice)
	must(t, err, "FastDevices")
	if len(list) != 3 {
		t.Fatalf("FastDevices = %d devices, want 3", len(list))
	}
	for i, a := range []string{"a", "b", "c"} {
		if diff := diffFastDevice(list[i], newFastDevice(a)); diff != "" {
			t.Errorf("FastDevices[%d]: %s", i, diff)
		}
	}
	must(t, f.DeleteFastDevice(ctx, alice, "b"), "DeleteFastDevice")
	must(t, f.DeleteFastDevice(ctx, alice, "b"), "DeleteFastDevice of a missing device")
	must(t, f.DeleteFastDevice(ctx, "nobody@example.org", "b"), "DeleteFastDevice of a user without devices")
	if _, err := f.FastDevice(ctx, alice, "b"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("deleted device: %v, want ErrNotFound", err)
	}
	if list, _ := f.FastDevices(ctx, alice); len(list) != 2 || list[0].Agent != "a" || list[1].Agent != "c" {
		t.Errorf("FastDevices after deleting b: %v", list)
	}
	must(t, f.DeleteFastDevices(ctx, alice), "DeleteFastDevices")
	must(t, f.DeleteFastDevices(ctx, alice), "DeleteFastDevices again")
	if list, err := f.FastDevices(ctx, alice); err != nil || len(list) != 0 {
		t.Errorf("FastDevices after DeleteFastDevices: %v, %v", list, err)
	}
	if _, err := f.FastDevice(ctx, alice, "a"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("device after DeleteFastDevices: %v, want ErrNotFound", err)
	}
	if list, err := f.FastDevices(ctx, bob); err != nil || len(list) != 1 || list[0].Agent != "z" {
		t.Errorf("other user's devices after DeleteFastDevices: %v, %v", list, err)
	}
	must(t, f.PutFastDevice(ctx, alice, newFastDevice("a")), "PutFastDevice after DeleteFastDevices")
	if _, err := f.FastDevice(ctx, alice, "a"); err != nil {
		t.Errorf("device stored after DeleteFastDevices: %v", err)
	}
}

// testFastEmptyAgent checks that an empty user agent id is refused like an
// empty JID.
func testFastEmptyAgent(t *testing.T, ctx context.Context, s storage.Store) {
	f := as[storage.FastTokens](t, s)
	if err := f.PutFastDevice(ctx, alice, newFastDevice("")); err == nil {
		t.Error("PutFastDevice with an empty agent: no error")
	}
	if _, err := f.FastDevice(ctx, alice, ""); err == nil {
		t.Error("FastDevice with an empty agent: no error")
	}
	if err := f.DeleteFastDevice(ctx, alice, ""); err == nil {
		t.Error("DeleteFastDevice with an empty agent: no error")
	}
}

func fastCalls(t *testing.T, ctx context.Context, s storage.Store) []call {
	f := as[storage.FastTokens](t, s)
	must(t, f.PutFastDevice(ctx, alice, newFastDevice("agent-1")), "PutFastDevice")
	return []call{
		{"FastDevice", alice, func(ctx context.Context, j string) error { _, err := f.FastDevice(ctx, j, "agent-1"); return err }},
		{"PutFastDevice", alice, func(ctx context.Context, j string) error { return f.PutFastDevice(ctx, j, newFastDevice("agent-2")) }},
		{"DeleteFastDevice", alice, func(ctx context.Context, j string) error { return f.DeleteFastDevice(ctx, j, "agent-1") }},
		{"FastDevices", alice, func(ctx context.Context, j string) error { _, err := f.FastDevices(ctx, j); return err }},
		{"DeleteFastDevices", alice, func(ctx context.Context, j string) error { return f.DeleteFastDevices(ctx, j) }},
	}
}
