package muc

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/storage"
	"github.com/treff-im/treff/storage/memstore"
)

// countingRooms counts the room lookups per room; lookups of gated wait
// until gate is closed, and say on entered that they started.
type countingRooms struct {
	storage.Rooms
	gated   string
	gate    chan struct{}
	entered chan struct{}
	mu      sync.Mutex
	calls   map[string]int
}

func (c *countingRooms) Room(ctx context.Context, j string) (storage.Room, error) {
	c.mu.Lock()
	c.calls[j]++
	c.mu.Unlock()
	if j == c.gated {
		c.entered <- struct{}{}
		<-c.gate
	}
	return c.Rooms.Room(ctx, j)
}

func (c *countingRooms) count(j string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[j]
}

// waitingCtx says on asked when someone waits for it to end: a lookup
// that waits for another one's call to the store.
type waitingCtx struct {
	context.Context
	asked chan<- struct{}
	once  sync.Once
}

func (c *waitingCtx) Done() <-chan struct{} {
	c.once.Do(func() { c.asked <- struct{}{} })
	return c.Context.Done()
}

// recv waits for ch; the watchdog only turns a hang into a failure.
func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("%s never happened", what)
		panic("unreachable")
	}
}

// Concurrent lookups of a room the store lacks make one call to the store
// while lookups of other rooms go on; the answer is kept until the room
// is created (issue 14).
func TestLookupsOfAMissingRoomShareOneCall(t *testing.T) {
	ghost := jid.MustParse("ghost@conference.localhost")
	store := &countingRooms{Rooms: memstore.New(), gated: ghost.String(), gate: make(chan struct{}),
		entered: make(chan struct{}, 1), calls: map[string]int{}}
	t.Cleanup(func() {
		select {
		case <-store.gate:
		default:
			close(store.gate)
		}
	})
	m := &Module{Store: store}
	m.init()
	ctx := t.Context()

	type result struct {
		r   *room
		err error
	}
	const n = 8
	results := make(chan result, n)
	go func() {
		r, err := m.room(ctx, ghost)
		results <- result{r, err}
	}()
	recv(t, store.entered, "the first lookup")
	asked := make(chan struct{}, n)
	for range n - 1 {
		go func() {
			r, err := m.room(&waitingCtx{Context: ctx, asked: asked}, ghost)
			results <- result{r, err}
		}()
	}
	for range n - 1 {
		recv(t, asked, "a lookup waiting for the first")
	}
	// Meanwhile another room is looked up, and created.
	other := jid.MustParse("other@conference.localhost")
	if r, err := m.room(ctx, other); r != nil || err != nil {
		t.Fatalf("other room: %v, %v", r, err)
	}
	if _, created, err := m.create(ctx, other, jid.MustParse("alice@localhost/r")); !created || err != nil {
		t.Fatalf("other room not created: %v", err)
	}

	close(store.gate)
	for range n {
		if res := recv(t, results, "an answer"); res.r != nil || res.err != nil {
			t.Errorf("got %v, %v; want no room, no error", res.r, res.err)
		}
	}
	if c := store.count(ghost.String()); c != 1 {
		t.Errorf("%d lookups in the store, want 1", c)
	}
	// Remembered: no more calls.
	if r, err := m.room(ctx, ghost); r != nil || err != nil || store.count(ghost.String()) != 1 {
		t.Errorf("again: %v, %v after %d lookups", r, err, store.count(ghost.String()))
	}

	// Created, the room is no longer missing; once it ends (a temporary
	// room left by its last occupant), the store is asked again.
	r, created, err := m.create(ctx, ghost, jid.MustParse("alice@localhost/r"))
	if !created || err != nil {
		t.Fatalf("not created: %v", err)
	}
	if got, err := m.room(ctx, ghost); got != r || err != nil {
		t.Errorf("created room: got %v, %v", got, err)
	}
	m.forget(ctx, r, false)
	if r, err := m.room(ctx, ghost); r != nil || err != nil {
		t.Errorf("after its end: %v, %v", r, err)
	}
	if c := store.count(ghost.String()); c != 2 {
		t.Errorf("%d lookups in the store after the room's creation and end, want 2", c)
	}
}

// A store that fails is not taken for "no such room": the caller hears
// of the error (and does not create the room), and nothing is
// remembered.
func TestLookupErrorIsNotMissing(t *testing.T) {
	store := &failingRooms{}
	m := &Module{Store: store, srv: &treff.Server{Logger: slog.New(slog.DiscardHandler)}}
	m.init()
	ghost := jid.MustParse("ghost@conference.localhost")
	for i := range 2 {
		r, err := m.room(t.Context(), ghost)
		if r != nil || !errors.Is(err, errDiskOnFire) {
			t.Errorf("lookup %d: %v, %v", i, r, err)
		}
	}
	if store.calls.Load() != 2 {
		t.Errorf("%d lookups in the store, want 2", store.calls.Load())
	}
}

var errDiskOnFire = errors.New("disk on fire")

type failingRooms struct {
	storage.Rooms
	calls atomic.Int32
}

func (f *failingRooms) Room(context.Context, string) (storage.Room, error) {
	f.calls.Add(1)
	return storage.Room{}, errDiskOnFire
}
