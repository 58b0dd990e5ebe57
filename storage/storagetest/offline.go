package storagetest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/treff-im/treff/storage"
)

var offlineTests = []test{
	{name: "Empty", fn: testOfflineEmpty},
	{name: "PushInOrder", fn: testOfflinePushInOrder},
	{name: "ReceivedRoundTrip", fn: testOfflineReceived},
	{name: "EmptyStanza", fn: testOfflineEmptyStanza},
	{name: "Limit", fn: testOfflineLimit},
	{name: "LimitConcurrent", fn: testOfflineLimitConcurrent},
	{name: "DeleteMessages", fn: testOfflineDeleteMessages},
	{name: "DeleteAll", fn: testOfflineDeleteAll},
	{name: "IDsIncreaseAfterDelete", fn: testOfflineIDsIncrease},
	{name: "CopiesIn", fn: testOfflineCopiesIn},
	{name: "CopiesOut", fn: testOfflineCopiesOut},
	{name: "CancelledContext", fn: cancelled(offlineCalls)},
	{name: "EmptyJID", fn: emptyJID(offlineCalls)},
}

// stanza returns a distinct message stanza.
func stanza(to string, n int) []byte {
	return fmt.Appendf(nil, "<message to='%s' type='chat'><body>message %d</body></message>", to, n)
}

// push calls PushOffline without limit, fails t fatally on error and returns
// the message as stored.
func push(t *testing.T, ctx context.Context, s storage.Store, user string, n int) storage.OfflineMessage {
	t.Helper()
	msg := storage.OfflineMessage{
		ID:       math.MaxUint64, // must be ignored
		Received: t1.Add(time.Duration(n) * time.Second),
		Stanza:   stanza(user, n),
	}
	id, err := s.PushOffline(ctx, user, msg, 0)
	must(t, err, "PushOffline("+user+")")
	msg.ID = id
	return msg
}

// checkOffline fails t unless user's offline store holds exactly want, in
// that order, and CountOffline agrees.
func checkOffline(t *testing.T, ctx context.Context, s storage.Store, user string, want []storage.OfflineMessage) {
	t.Helper()
	got, err := s.OfflineMessages(ctx, user)
	if err != nil {
		t.Errorf("OfflineMessages(%q): %v", user, err)
		return
	}
	if len(got) != len(want) {
		t.Errorf("OfflineMessages(%q) = %d messages %v, want %d %v", user, len(got), ids(got), len(want), ids(want))
	} else {
		for i := range got {
			if d := DiffOfflineMessage(got[i], want[i]); d != "" {
				t.Errorf("OfflineMessages(%q)[%d]: %s", user, i, d)
			}
			checkUTC(t, got[i].Received, "OfflineMessage.Received")
		}
	}
	n, err := s.CountOffline(ctx, user)
	if err != nil {
		t.Errorf("CountOffline(%q): %v", user, err)
	} else if n != len(want) {
		t.Errorf("CountOffline(%q) = %d, want %d", user, n, len(want))
	}
}

// ids returns the IDs of msgs.
func ids(msgs []storage.OfflineMessage) []uint64 {
	out := make([]uint64, len(msgs))
	for i, m := range msgs {
		out[i] = m.ID
	}
	return out
}

func testOfflineEmpty(t *testing.T, ctx context.Context, s storage.Store) {
	checkOffline(t, ctx, s, alice, nil)
	must(t, s.DeleteOfflineMessages(ctx, alice, []uint64{1, 2, 3}), "DeleteOfflineMessages of a user without messages")
	must(t, s.DeleteOffline(ctx, alice), "DeleteOffline of a user without messages")
	checkOffline(t, ctx, s, alice, nil)
}

func testOfflinePushInOrder(t *testing.T, ctx context.Context, s storage.Store) {
	// More than 256 messages, so that IDs and any byte-wise key order
	// derived from them cross a byte boundary.
	var want []storage.OfflineMessage
	for n := range 300 {
		m := push(t, ctx, s, alice, n)
		if n > 0 && m.ID <= want[n-1].ID {
			t.Errorf("PushOffline #%d returned ID %d, not greater than the previous %d", n, m.ID, want[n-1].ID)
		}
		want = append(want, m)
	}
	checkOffline(t, ctx, s, alice, want)
}

func testOfflineReceived(t *testing.T, ctx context.Context, s storage.Store) {
	times := []time.Time{
		t1,
		time.Date(2024, time.February, 29, 23, 59, 59, 999999999, time.UTC),
		time.Date(1999, time.December, 31, 23, 59, 59, 1, time.UTC),
		time.Date(2200, time.January, 1, 0, 0, 0, 0, time.UTC),
		time.Unix(1700000000, 42).UTC(),
		time.Now().UTC(), // with a monotonic reading stripped by UTC
		{},               // zero
	}
	var want []storage.OfflineMessage
	for i, tm := range times {
		msg := storage.OfflineMessage{Received: tm, Stanza: stanza(alice, i)}
		id, err := s.PushOffline(ctx, alice, msg, 0)
		must(t, err, "PushOffline")
		msg.ID = id
		want = append(want, msg)
	}
	checkOffline(t, ctx, s, alice, want)
}

func testOfflineEmptyStanza(t *testing.T, ctx context.Context, s storage.Store) {
	var want []storage.OfflineMessage
	for _, st := range [][]byte{nil, {}, []byte("<message/>"), {0}} {
		msg := storage.OfflineMessage{Received: t1, Stanza: st}
		id, err := s.PushOffline(ctx, alice, msg, 0)
		must(t, err, "PushOffline")
		msg.ID = id
		want = append(want, msg)
	}
	checkOffline(t, ctx, s, alice, want)
}

func testOfflineLimit(t *testing.T, ctx context.Context, s storage.Store) {
	const limit = 3
	var want []storage.OfflineMessage
	for n := range limit {
		msg := storage.OfflineMessage{Received: t1, Stanza: stanza(alice, n)}
		id, err := s.PushOffline(ctx, alice, msg, limit)
		must(t, err, fmt.Sprintf("PushOffline #%d with limit %d", n, limit))
		msg.ID = id
		want = append(want, msg)
	}
	_, err := s.PushOffline(ctx, alice, storage.OfflineMessage{Received: t1, Stanza: stanza(alice, 99)}, limit)
	wantErr(t, err, storage.ErrQuotaExceeded, "PushOffline beyond the limit")
	// A lower limit than what is stored also refuses.
	_, err = s.PushOffline(ctx, alice, storage.OfflineMessage{Received: t1, Stanza: stanza(alice, 98)}, 1)
	wantErr(t, err, storage.ErrQuotaExceeded, "PushOffline with a limit below the stored count")
	checkOffline(t, ctx, s, alice, want)

	// Another user is not affected by alice's quota.
	if _, err := s.PushOffline(ctx, bob, storage.OfflineMessage{Received: t1}, limit); err != nil {
		t.Errorf("PushOffline for bob while alice is at her limit: %v", err)
	}
	if _, err := s.PushOffline(ctx, aliceP, storage.OfflineMessage{Received: t1}, 1); err != nil {
		t.Errorf("PushOffline for a user whose JID is a prefix of alice's: %v", err)
	}

	// Deleting a message makes room for one.
	must(t, s.DeleteOfflineMessages(ctx, alice, []uint64{want[0].ID}), "DeleteOfflineMessages")
	want = want[1:]
	msg := storage.OfflineMessage{Received: t2, Stanza: stanza(alice, 3)}
	id, err := s.PushOffline(ctx, alice, msg, limit)
	must(t, err, "PushOffline after making room")
	msg.ID = id
	want = append(want, msg)
	_, err = s.PushOffline(ctx, alice, storage.OfflineMessage{Received: t1}, limit)
	wantErr(t, err, storage.ErrQuotaExceeded, "PushOffline beyond the limit again")
	checkOffline(t, ctx, s, alice, want)

	// A limit of zero or less means no limit.
	for i, l := range []int{0, -1, math.MinInt} {
		msg := storage.OfflineMessage{Received: t3, Stanza: stanza(alice, 100+i)}
		id, err := s.PushOffline(ctx, alice, msg, l)
		if err != nil {
			t.Errorf("PushOffline with limit %d: %v", l, err)
			continue
		}
		msg.ID = id
		want = append(want, msg)
	}
	checkOffline(t, ctx, s, alice, want)
}

func testOfflineLimitConcurrent(t *testing.T, ctx context.Context, s storage.Store) {
	const (
		workers = 64
		limit   = 10
	)
	// Bob already has a message; it counts towards his limit.
	pre := push(t, ctx, s, bob, 0)

	var (
		errs   errorList
		okIDs  = make(chan uint64, 2*workers)
		quotas = make(chan struct{}, 2*workers)
	)
	parallel(t, ctx, workers, func(i int) {
		for _, user := range []string{alice, bob} {
			id, err := s.PushOffline(ctx, user, storage.OfflineMessage{Received: t1, Stanza: stanza(user, i)}, limit)
			switch {
			case err == nil:
				if user == alice {
					okIDs <- id
				}
			case errors.Is(err, storage.ErrQuotaExceeded):
				if user == alice {
					quotas <- struct{}{}
				}
			default:
				errs.add("PushOffline(%q) in goroutine %d: %v", user, i, err)
			}
		}
	})
	if !errs.report(t) {
		return
	}
	close(okIDs)
	close(quotas)
	if len(okIDs) != limit || len(quotas) != workers-limit {
		t.Errorf("%d concurrent pushes with limit %d: %d stored and %d refused, want %d and %d",
			workers, limit, len(okIDs), len(quotas), limit, workers-limit)
	}
	stored := make(map[uint64]bool)
	for id := range okIDs {
		if stored[id] {
			t.Errorf("PushOffline returned ID %d twice", id)
		}
		stored[id] = true
	}

	msgs, err := s.OfflineMessages(ctx, alice)
	must(t, err, "OfflineMessages")
	if len(msgs) != limit {
		t.Errorf("OfflineMessages after concurrent pushes = %d messages, want %d", len(msgs), limit)
	}
	for i, m := range msgs {
		if !stored[m.ID] {
			t.Errorf("stored message has ID %d, which no successful PushOffline returned", m.ID)
		}
		if i > 0 && m.ID <= msgs[i-1].ID {
			t.Errorf("OfflineMessages not in increasing ID order: %v", ids(msgs))
		}
	}
	if n, err := s.CountOffline(ctx, alice); err != nil || n != limit {
		t.Errorf("CountOffline(alice) = %d, %v; want %d", n, err, limit)
	}
	if n, err := s.CountOffline(ctx, bob); err != nil || n != limit {
		t.Errorf("CountOffline(bob) = %d, %v; want %d", n, err, limit)
	}
	bobs, err := s.OfflineMessages(ctx, bob)
	must(t, err, "OfflineMessages(bob)")
	if len(bobs) == 0 || DiffOfflineMessage(bobs[0], pre) != "" {
		t.Errorf("bob's first message is not the one stored before the concurrent pushes")
	}
}

func testOfflineDeleteMessages(t *testing.T, ctx context.Context, s storage.Store) {
	var all []storage.OfflineMessage
	for n := range 8 {
		all = append(all, push(t, ctx, s, alice, n))
	}
	var maxID uint64
	for _, m := range all {
		maxID = max(maxID, m.ID)
	}

	// Nil and empty ID lists delete nothing.
	must(t, s.DeleteOfflineMessages(ctx, alice, nil), "DeleteOfflineMessages(nil)")
	must(t, s.DeleteOfflineMessages(ctx, alice, []uint64{}), "DeleteOfflineMessages(empty)")
	checkOffline(t, ctx, s, alice, all)

	// Only unknown IDs.
	must(t, s.DeleteOfflineMessages(ctx, alice, []uint64{0, maxID + 1, maxID + 1000, math.MaxUint64}),
		"DeleteOfflineMessages of unknown IDs")
	checkOffline(t, ctx, s, alice, all)

	// A mix of known, unknown and repeated IDs, out of order.
	must(t, s.DeleteOfflineMessages(ctx, alice, []uint64{all[5].ID, maxID + 7, all[0].ID, all[5].ID, all[2].ID}),
		"DeleteOfflineMessages")
	want := []storage.OfflineMessage{all[1], all[3], all[4], all[6], all[7]}
	checkOffline(t, ctx, s, alice, want)

	// Deleting already deleted IDs is ignored too.
	must(t, s.DeleteOfflineMessages(ctx, alice, []uint64{all[0].ID, all[7].ID}), "DeleteOfflineMessages")
	want = want[:len(want)-1]
	checkOffline(t, ctx, s, alice, want)

	// The ID slice passed in may be reused by the caller afterwards.
	del := []uint64{all[1].ID}
	must(t, s.DeleteOfflineMessages(ctx, alice, del), "DeleteOfflineMessages")
	del[0] = all[3].ID
	want = want[1:]
	checkOffline(t, ctx, s, alice, want)

	// Deleting everything one by one leaves an empty, usable store.
	must(t, s.DeleteOfflineMessages(ctx, alice, ids(want)), "DeleteOfflineMessages of all remaining")
	checkOffline(t, ctx, s, alice, nil)
	m := push(t, ctx, s, alice, 100)
	checkOffline(t, ctx, s, alice, []storage.OfflineMessage{m})
}

func testOfflineDeleteAll(t *testing.T, ctx context.Context, s storage.Store) {
	for n := range 5 {
		push(t, ctx, s, alice, n)
	}
	bobs := []storage.OfflineMessage{push(t, ctx, s, bob, 0), push(t, ctx, s, bob, 1)}

	must(t, s.DeleteOffline(ctx, alice), "DeleteOffline")
	checkOffline(t, ctx, s, alice, nil)
	checkOffline(t, ctx, s, bob, bobs)
	must(t, s.DeleteOffline(ctx, alice), "second DeleteOffline")

	// The store is usable again, including the limit.
	m := push(t, ctx, s, alice, 10)
	_, err := s.PushOffline(ctx, alice, storage.OfflineMessage{Received: t1}, 1)
	wantErr(t, err, storage.ErrQuotaExceeded, "PushOffline beyond the limit after DeleteOffline")
	checkOffline(t, ctx, s, alice, []storage.OfflineMessage{m})
}

func testOfflineIDsIncrease(t *testing.T, ctx context.Context, s storage.Store) {
	// IDs increase in arrival order: a later message never gets a smaller
	// or equal ID than an earlier one of the same user, even if the earlier
	// one has been deleted in the meantime.
	var last uint64
	next := func(what string, n int) storage.OfflineMessage {
		t.Helper()
		m := push(t, ctx, s, alice, n)
		if m.ID <= last {
			t.Errorf("%s: ID %d is not greater than the earlier %d", what, m.ID, last)
		}
		last = m.ID
		return m
	}
	a := next("first push", 0)
	b := next("second push", 1)
	c := next("third push", 2)

	must(t, s.DeleteOfflineMessages(ctx, alice, []uint64{c.ID}), "DeleteOfflineMessages of the newest")
	d := next("push after deleting the newest message", 3)
	checkOffline(t, ctx, s, alice, []storage.OfflineMessage{a, b, d})

	must(t, s.DeleteOfflineMessages(ctx, alice, ids([]storage.OfflineMessage{a, b, d})), "DeleteOfflineMessages of all")
	next("push after deleting all messages one by one", 4)

	must(t, s.DeleteOffline(ctx, alice), "DeleteOffline")
	e := next("push after DeleteOffline", 5)
	checkOffline(t, ctx, s, alice, []storage.OfflineMessage{e})
}

func testOfflineCopiesIn(t *testing.T, ctx context.Context, s storage.Store) {
	st := []byte("<message><body>original</body></message>")
	msg := storage.OfflineMessage{Received: t1, Stanza: st}
	id, err := s.PushOffline(ctx, alice, msg, 0)
	must(t, err, "PushOffline")
	want := storage.OfflineMessage{ID: id, Received: t1, Stanza: []byte("<message><body>original</body></message>")}

	copy(st, "XXXXXXXXX")
	msg.Received = t3
	checkOffline(t, ctx, s, alice, []storage.OfflineMessage{want})
}

func testOfflineCopiesOut(t *testing.T, ctx context.Context, s storage.Store) {
	// Enough data that a backend cannot keep it inline in some small
	// structure that happens to be copied on every read anyway.
	const n = 40
	var want []storage.OfflineMessage
	for i := range n {
		m := push(t, ctx, s, alice, i)
		// A private copy of what the store must still hold.
		want = append(want, storage.OfflineMessage{ID: m.ID, Received: m.Received, Stanza: stanza(alice, i)})
	}

	got, err := s.OfflineMessages(ctx, alice)
	must(t, err, "OfflineMessages")
	if len(got) != n {
		t.Fatalf("OfflineMessages = %d messages, want %d", len(got), n)
	}
	for i := range got {
		for j := range got[i].Stanza {
			got[i].Stanza[j] = 'X'
		}
		got[i].ID++
	}
	got[0] = storage.OfflineMessage{}
	checkOffline(t, ctx, s, alice, want)
}
