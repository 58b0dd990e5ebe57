package storagetest

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/treff-im/treff/storage"
)

// archiveTests run only for stores that implement storage.Archive.
var archiveTests = []test{
	{name: "Empty", fn: testArchiveEmpty},
	{name: "AppendRoundTrip", fn: testArchiveRoundTrip},
	{name: "PageForward", fn: testArchivePageForward},
	{name: "PageBackward", fn: testArchivePageBackward},
	{name: "FilterWith", fn: testArchiveWith},
	{name: "FilterTime", fn: testArchiveTime},
	{name: "FilterIDs", fn: testArchiveIDs},
	{name: "PageEdges", fn: testArchivePageEdges},
	{name: "FilterCount", fn: testArchiveFilterCount},
	{name: "UnknownIDs", fn: testArchiveUnknownIDs},
	{name: "UnknownIDsEmptyResult", fn: testArchiveUnknownIDsEmpty},
	{name: "TimeNeverDecreases", fn: testArchiveClock},
	{name: "DeleteBefore", fn: testArchiveDeleteBefore},
	{name: "DeleteArchive", fn: testArchiveDelete},
	{name: "Prefs", fn: testArchivePrefs},
	{name: "Copies", fn: testArchiveCopies},
	{name: "Concurrent", fn: testArchiveConcurrent},
	{name: "CancelledContext", fn: cancelled(archiveCalls)},
	{name: "EmptyJID", fn: emptyJID(archiveCalls)},
	// storage.ArchiveEditor, where implemented (archiveedit.go).
	{name: "Replace", fn: testArchiveReplace},
	{name: "ReplaceUnknown", fn: testArchiveReplaceUnknown},
	{name: "ReplaceCancelledContext", fn: cancelled(archiveEditCalls)},
	{name: "ReplaceEmptyJID", fn: emptyJID(archiveEditCalls)},
}

const (
	archAlice = "alice@example.org"
	archBob   = "bob@example.org"
	archCarol = "carol@example.net"
)

func archiveOf(t *testing.T, s storage.Store) storage.Archive {
	t.Helper()
	a, ok := s.(storage.Archive)
	if !ok {
		t.Skip("store does not implement storage.Archive")
	}
	return a
}

// archMsg is the n-th test message: with bob (resource "phone" for even n)
// for n%3 != 2, with carol otherwise; outgoing for odd n; n seconds after
// t1.
func archMsg(n int) storage.ArchivedMessage {
	m := storage.ArchivedMessage{
		ID:       "ignored",
		Time:     t1.Add(time.Duration(n) * time.Second),
		With:     archBob,
		Outgoing: n%2 == 1,
		Stanza:   fmt.Appendf(nil, "<message type='chat'><body>message %d &amp; ü</body></message>", n),
	}
	if n%2 == 0 {
		m.WithResource = "phone"
	}
	if n%3 == 2 {
		m.With, m.WithResource = archCarol, ""
	}
	return m
}

// appendArch appends archMsg(0) ... archMsg(n-1) to user's archive and
// returns them as stored.
func appendArch(t *testing.T, ctx context.Context, a storage.Archive, user string, n int) []storage.ArchivedMessage {
	t.Helper()
	var out []storage.ArchivedMessage
	for i := range n {
		m := archMsg(i)
		id, err := a.AppendArchive(ctx, user, m)
		must(t, err, "AppendArchive")
		if id == "" || id == "ignored" {
			t.Fatalf("AppendArchive returned ID %q", id)
		}
		m.ID = id
		out = append(out, m)
	}
	return out
}

func diffArchived(got, want storage.ArchivedMessage) string {
	if got.ID != want.ID || !got.Time.Equal(want.Time) || got.With != want.With || got.WithResource != want.WithResource ||
		got.Outgoing != want.Outgoing || !sameBytes(got.Stanza, want.Stanza) {
		return fmt.Sprintf("got {%s %v %s/%s out:%v %q}, want {%s %v %s/%s out:%v %q}",
			got.ID, got.Time, got.With, got.WithResource, got.Outgoing, got.Stanza,
			want.ID, want.Time, want.With, want.WithResource, want.Outgoing, want.Stanza)
	}
	if got.Time.Location() != time.UTC {
		return fmt.Sprintf("time %v not in UTC", got.Time)
	}
	return ""
}

// query runs q and fails t fatally on error.
func query(t *testing.T, ctx context.Context, a storage.Archive, user string, q storage.ArchiveQuery) storage.ArchivePage {
	t.Helper()
	p, err := a.QueryArchive(ctx, user, q)
	must(t, err, fmt.Sprintf("QueryArchive(%s, %+v)", user, q))
	return p
}

// checkPage fails t unless p holds want (in order) with the given count,
// index and completeness.
func checkPage(t *testing.T, what string, p storage.ArchivePage, want []storage.ArchivedMessage, count, index int, complete bool) {
	t.Helper()
	if len(want) == 0 {
		index = 0 // the documented Index of an empty page
	}
	if p.Count != count || p.Complete != complete || p.Index != index {
		t.Errorf("%s: Count %d, Index %d, Complete %v; want %d, %d, %v", what, p.Count, p.Index, p.Complete, count, index, complete)
	}
	if len(p.Messages) != len(want) {
		t.Errorf("%s: %d messages %v, want %d %v", what, len(p.Messages), archIDs(p.Messages), len(want), archIDs(want))
		return
	}
	for i := range want {
		if d := diffArchived(p.Messages[i], want[i]); d != "" {
			t.Errorf("%s: message %d: %s", what, i, d)
		}
	}
}

func archIDs(ms []storage.ArchivedMessage) []string {
	var ids []string
	for _, m := range ms {
		ids = append(ids, m.ID)
	}
	return ids
}

func pick(ms []storage.ArchivedMessage, keep func(i int, m storage.ArchivedMessage) bool) []storage.ArchivedMessage {
	var out []storage.ArchivedMessage
	for i, m := range ms {
		if keep(i, m) {
			out = append(out, m)
		}
	}
	return out
}

func testArchiveEmpty(t *testing.T, ctx context.Context, s storage.Store) {
	a := archiveOf(t, s)
	p := query(t, ctx, a, archAlice, storage.ArchiveQuery{Limit: 10})
	checkPage(t, "empty archive", p, nil, 0, 0, true)
	if n, err := a.CountArchive(ctx, archAlice); err != nil || n != 0 {
		t.Errorf("CountArchive = %d, %v; want 0, nil", n, err)
	}
	if p, err := a.ArchivePrefs(ctx, archAlice); err != nil || p.Default != "" || len(p.Always)+len(p.Never) != 0 {
		t.Errorf("ArchivePrefs = %+v, %v; want the zero value", p, err)
	}
	must(t, a.DeleteArchive(ctx, archAlice), "DeleteArchive of an empty archive")
	n, err := a.DeleteArchiveBefore(ctx, t3)
	must(t, err, "DeleteArchiveBefore with no archives")
	if n != 0 {
		t.Errorf("DeleteArchiveBefore removed %d", n)
	}
	_, err = a.QueryArchive(ctx, archAlice, storage.ArchiveQuery{After: "AAAAAAAAAAAAAAAAAAAAAA", Limit: 10})
	wantErr(t, err, storage.ErrNotFound, "After with an unknown ID in an empty archive")
}

func testArchiveRoundTrip(t *testing.T, ctx context.Context, s storage.Store) {
	a := archiveOf(t, s)
	msgs := appendArch(t, ctx, a, archAlice, 10)
	ids := map[string]bool{}
	for _, m := range msgs {
		if ids[m.ID] {
			t.Errorf("ID %q handed out twice", m.ID)
		}
		ids[m.ID] = true
	}
	p := query(t, ctx, a, archAlice, storage.ArchiveQuery{Limit: 100})
	checkPage(t, "whole archive", p, msgs, 10, 0, true)
	if n, err := a.CountArchive(ctx, archAlice); err != nil || n != 10 {
		t.Errorf("CountArchive = %d, %v; want 10, nil", n, err)
	}
	// A zone other than UTC comes back as the same instant in UTC.
	m := archMsg(20)
	m.Time = m.Time.In(time.FixedZone("x", 7200))
	id, err := a.AppendArchive(ctx, archBob, m)
	must(t, err, "AppendArchive")
	m.ID, m.Time = id, m.Time.UTC()
	checkPage(t, "bob's archive", query(t, ctx, a, archBob, storage.ArchiveQuery{Limit: 1}), []storage.ArchivedMessage{m}, 1, 0, true)
}

func testArchivePageForward(t *testing.T, ctx context.Context, s storage.Store) {
	a := archiveOf(t, s)
	msgs := appendArch(t, ctx, a, archAlice, 10)
	p := query(t, ctx, a, archAlice, storage.ArchiveQuery{Limit: 3})
	checkPage(t, "first page", p, msgs[:3], 10, 0, false)
	got := slices.Clone(p.Messages)
	for i := 0; i < 5 && !p.Complete; i++ {
		p = query(t, ctx, a, archAlice, storage.ArchiveQuery{Limit: 3, After: got[len(got)-1].ID})
		if len(p.Messages) > 0 && p.Index != len(got) {
			t.Errorf("page after %d messages has Index %d", len(got), p.Index)
		}
		got = append(got, p.Messages...)
	}
	if !p.Complete {
		t.Error("last page not complete")
	}
	checkPage(t, "all pages", storage.ArchivePage{Messages: got, Count: 10, Complete: true}, msgs, 10, 0, true)
	// A page that ends exactly at the end of the archive is complete.
	checkPage(t, "exact last page", query(t, ctx, a, archAlice, storage.ArchiveQuery{Limit: 2, After: msgs[7].ID}), msgs[8:], 10, 8, true)
	// After the last message: empty and complete.
	checkPage(t, "after the last", query(t, ctx, a, archAlice, storage.ArchiveQuery{Limit: 2, After: msgs[9].ID}), nil, 10, 0, true)
	// Limit 0 counts only.
	checkPage(t, "limit 0", query(t, ctx, a, archAlice, storage.ArchiveQuery{}), nil, 10, 0, false)
	// After and Before together: the window between them.
	checkPage(t, "between", query(t, ctx, a, archAlice, storage.ArchiveQuery{Limit: 10, After: msgs[2].ID, Before: msgs[6].ID}),
		msgs[3:6], 10, 3, true)
}

func testArchivePageBackward(t *testing.T, ctx context.Context, s storage.Store) {
	a := archiveOf(t, s)
	msgs := appendArch(t, ctx, a, archAlice, 10)
	p := query(t, ctx, a, archAlice, storage.ArchiveQuery{Limit: 3, Backward: true})
	checkPage(t, "last page", p, msgs[7:], 10, 7, false)
	got := slices.Clone(p.Messages)
	for i := 0; i < 5 && !p.Complete; i++ {
		p = query(t, ctx, a, archAlice, storage.ArchiveQuery{Limit: 3, Backward: true, Before: got[0].ID})
		if len(p.Messages) > 0 && p.Index != 10-len(got)-len(p.Messages) {
			t.Errorf("page before %d messages has Index %d", len(got), p.Index)
		}
		got = append(slices.Clone(p.Messages), got...)
	}
	if !p.Complete {
		t.Error("first page not complete")
	}
	checkPage(t, "all pages", storage.ArchivePage{Messages: got, Count: 10, Complete: true}, msgs, 10, 0, true)
	checkPage(t, "before the first", query(t, ctx, a, archAlice, storage.ArchiveQuery{Limit: 3, Backward: true, Before: msgs[0].ID}),
		nil, 10, 0, true)
	checkPage(t, "all backward", query(t, ctx, a, archAlice, storage.ArchiveQuery{Limit: 20, Backward: true}), msgs, 10, 0, true)
}

func testArchiveWith(t *testing.T, ctx context.Context, s storage.Store) {
	a := archiveOf(t, s)
	msgs := appendArch(t, ctx, a, archAlice, 12)
	bob := pick(msgs, func(_ int, m storage.ArchivedMessage) bool { return m.With == archBob })
	phone := pick(msgs, func(_ int, m storage.ArchivedMessage) bool { return m.With == archBob && m.WithResource == "phone" })
	carol := pick(msgs, func(_ int, m storage.ArchivedMessage) bool { return m.With == archCarol })
	checkPage(t, "with bob", query(t, ctx, a, archAlice, storage.ArchiveQuery{With: archBob, Limit: 100}), bob, len(bob), 0, true)
	checkPage(t, "with bob/phone", query(t, ctx, a, archAlice, storage.ArchiveQuery{With: archBob + "/phone", Limit: 100}), phone, len(phone), 0, true)
	checkPage(t, "with carol", query(t, ctx, a, archAlice, storage.ArchiveQuery{With: archCarol, Limit: 100}), carol, len(carol), 0, true)
	checkPage(t, "with carol/x", query(t, ctx, a, archAlice, storage.ArchiveQuery{With: archCarol + "/x", Limit: 100}), nil, 0, 0, true)
	checkPage(t, "with a stranger", query(t, ctx, a, archAlice, storage.ArchiveQuery{With: "dave@example.org", Limit: 100}), nil, 0, 0, true)
	// Paging within a filter: Count and Index count matching messages.
	p := query(t, ctx, a, archAlice, storage.ArchiveQuery{With: archBob, Limit: 2, After: bob[2].ID})
	checkPage(t, "with bob after its third", p, bob[3:5], len(bob), 3, false)
	// The page position may be a message outside the result set.
	p = query(t, ctx, a, archAlice, storage.ArchiveQuery{With: archCarol, Limit: 100, After: msgs[3].ID})
	checkPage(t, "with carol after message 3", p, pick(carol, func(_ int, m storage.ArchivedMessage) bool { return m.Time.After(msgs[3].Time) }), len(carol), 1, true)
	p = query(t, ctx, a, archAlice, storage.ArchiveQuery{With: archBob, Limit: 2, Backward: true})
	checkPage(t, "with bob, last page", p, bob[len(bob)-2:], len(bob), len(bob)-2, false)
}

func testArchiveTime(t *testing.T, ctx context.Context, s storage.Store) {
	a := archiveOf(t, s)
	msgs := appendArch(t, ctx, a, archAlice, 10)
	// Start and End are inclusive.
	p := query(t, ctx, a, archAlice, storage.ArchiveQuery{Start: msgs[2].Time, End: msgs[5].Time, Limit: 100})
	checkPage(t, "start..end", p, msgs[2:6], 4, 0, true)
	p = query(t, ctx, a, archAlice, storage.ArchiveQuery{Start: msgs[2].Time.Add(time.Nanosecond), Limit: 100})
	checkPage(t, "start just after message 2", p, msgs[3:], 7, 0, true)
	p = query(t, ctx, a, archAlice, storage.ArchiveQuery{End: msgs[2].Time.Add(-time.Nanosecond), Limit: 100})
	checkPage(t, "end just before message 2", p, msgs[:2], 2, 0, true)
	p = query(t, ctx, a, archAlice, storage.ArchiveQuery{Start: msgs[9].Time.Add(time.Hour), Limit: 100})
	checkPage(t, "start after everything", p, nil, 0, 0, true)
	// AfterID and BeforeID are filters: they change Count.
	p = query(t, ctx, a, archAlice, storage.ArchiveQuery{AfterID: msgs[1].ID, BeforeID: msgs[8].ID, Limit: 3})
	checkPage(t, "after-id..before-id", p, msgs[2:5], 6, 0, false)
	p = query(t, ctx, a, archAlice, storage.ArchiveQuery{AfterID: msgs[1].ID, BeforeID: msgs[8].ID, Limit: 3, After: p.Messages[2].ID})
	checkPage(t, "after-id..before-id, page 2", p, msgs[5:8], 6, 3, true)
	p = query(t, ctx, a, archAlice, storage.ArchiveQuery{Start: msgs[3].Time, AfterID: msgs[1].ID, With: archBob, Limit: 100})
	want := pick(msgs, func(i int, m storage.ArchivedMessage) bool { return i >= 3 && m.With == archBob })
	checkPage(t, "start, after-id and with", p, want, len(want), 0, true)
}

func testArchiveIDs(t *testing.T, ctx context.Context, s storage.Store) {
	a := archiveOf(t, s)
	msgs := appendArch(t, ctx, a, archAlice, 10)
	p := query(t, ctx, a, archAlice, storage.ArchiveQuery{IDs: []string{msgs[7].ID, msgs[2].ID, msgs[7].ID}, Limit: 10})
	checkPage(t, "ids 7, 2, 7", p, []storage.ArchivedMessage{msgs[2], msgs[7]}, 2, 0, true)
	p = query(t, ctx, a, archAlice, storage.ArchiveQuery{IDs: []string{msgs[4].ID}, Limit: 1})
	checkPage(t, "one id", p, msgs[4:5], 1, 0, true)
	// Combined with other filters, IDs only narrow the result.
	p = query(t, ctx, a, archAlice, storage.ArchiveQuery{IDs: []string{msgs[1].ID, msgs[2].ID}, With: archCarol, Limit: 10})
	checkPage(t, "ids with carol", p, msgs[2:3], 1, 0, true)
}

func testArchivePageEdges(t *testing.T, ctx context.Context, s storage.Store) {
	a := archiveOf(t, s)
	msgs := appendArch(t, ctx, a, archAlice, 10)
	// Before near the start: a short backward page that reaches the start.
	checkPage(t, "backward before message 2, max 3", query(t, ctx, a, archAlice, storage.ArchiveQuery{Limit: 3, Backward: true, Before: msgs[2].ID}),
		msgs[:2], 10, 0, true)
	checkPage(t, "backward before message 3, max 3", query(t, ctx, a, archAlice, storage.ArchiveQuery{Limit: 3, Backward: true, Before: msgs[3].ID}),
		msgs[:3], 10, 0, true)
	checkPage(t, "backward before message 4, max 3", query(t, ctx, a, archAlice, storage.ArchiveQuery{Limit: 3, Backward: true, Before: msgs[4].ID}),
		msgs[1:4], 10, 1, false)
	// Before without Backward: the first messages of the window.
	checkPage(t, "forward before message 5, max 3", query(t, ctx, a, archAlice, storage.ArchiveQuery{Limit: 3, Before: msgs[5].ID}),
		msgs[:3], 10, 0, false)
	// After the last message, backward: empty and complete.
	checkPage(t, "backward after the last", query(t, ctx, a, archAlice, storage.ArchiveQuery{Limit: 3, Backward: true, After: msgs[9].ID}),
		nil, 10, 0, true)
	// After together with Backward: the last messages after After.
	checkPage(t, "backward after message 4, max 2", query(t, ctx, a, archAlice, storage.ArchiveQuery{Limit: 2, Backward: true, After: msgs[4].ID}),
		msgs[8:], 10, 8, false)
	// After at or past Before: an empty window.
	checkPage(t, "after 6, before 6", query(t, ctx, a, archAlice, storage.ArchiveQuery{Limit: 3, After: msgs[6].ID, Before: msgs[6].ID}),
		nil, 10, 0, true)
	checkPage(t, "after 7, before 3", query(t, ctx, a, archAlice, storage.ArchiveQuery{Limit: 3, After: msgs[7].ID, Before: msgs[3].ID, Backward: true}),
		nil, 10, 0, true)
	// Limit zero or negative, backward too: counts only, not complete.
	for _, l := range []int{0, -1} {
		checkPage(t, fmt.Sprintf("backward limit %d", l), query(t, ctx, a, archAlice, storage.ArchiveQuery{Limit: l, Backward: true}), nil, 10, 0, false)
		checkPage(t, fmt.Sprintf("limit %d after the last", l), query(t, ctx, a, archAlice, storage.ArchiveQuery{Limit: l, After: msgs[9].ID}), nil, 10, 0, true)
	}
	// The page position may lie outside the result set's ID range.
	p := query(t, ctx, a, archAlice, storage.ArchiveQuery{AfterID: msgs[4].ID, After: msgs[1].ID, Limit: 2})
	checkPage(t, "after-id 4, after 1", p, msgs[5:7], 5, 0, false)
	p = query(t, ctx, a, archAlice, storage.ArchiveQuery{BeforeID: msgs[4].ID, Before: msgs[8].ID, Backward: true, Limit: 2})
	checkPage(t, "before-id 4, before 8", p, msgs[2:4], 4, 2, false)
	// Start after End: nothing.
	checkPage(t, "start after end", query(t, ctx, a, archAlice, storage.ArchiveQuery{Start: msgs[6].Time, End: msgs[3].Time, Limit: 10}), nil, 0, 0, true)
	// AfterID at or past BeforeID: nothing.
	checkPage(t, "after-id 5, before-id 5", query(t, ctx, a, archAlice, storage.ArchiveQuery{AfterID: msgs[5].ID, BeforeID: msgs[5].ID, Limit: 10}), nil, 0, 0, true)
	checkPage(t, "after-id 5, before-id 6", query(t, ctx, a, archAlice, storage.ArchiveQuery{AfterID: msgs[5].ID, BeforeID: msgs[6].ID, Limit: 10}), nil, 0, 0, true)
}

// testArchiveFilterCount checks Count and Index under combined filters.
func testArchiveFilterCount(t *testing.T, ctx context.Context, s storage.Store) {
	a := archiveOf(t, s)
	msgs := appendArch(t, ctx, a, archAlice, 12)
	// Messages with bob from message 3 to message 10: 3, 4, 6, 7, 9, 10.
	bob := pick(msgs, func(i int, m storage.ArchivedMessage) bool { return i >= 3 && i <= 10 && m.With == archBob })
	q := storage.ArchiveQuery{With: archBob, Start: msgs[3].Time, End: msgs[10].Time, Limit: 2}
	checkPage(t, "with bob, start..end, first page", query(t, ctx, a, archAlice, q), bob[:2], len(bob), 0, false)
	q.After = bob[1].ID
	checkPage(t, "with bob, start..end, second page", query(t, ctx, a, archAlice, q), bob[2:4], len(bob), 2, false)
	q.After, q.Backward = "", true
	checkPage(t, "with bob, start..end, last page", query(t, ctx, a, archAlice, q), bob[len(bob)-2:], len(bob), len(bob)-2, false)
	// A Before outside the result set (a message with carol).
	q.Before = msgs[8].ID
	want := pick(bob, func(_ int, m storage.ArchivedMessage) bool { return m.Time.Before(msgs[8].Time) })
	checkPage(t, "with bob, start..end, before carol's 8", query(t, ctx, a, archAlice, q), want[len(want)-2:], len(bob), len(want)-2, false)
	// Limit 0 with filters: the count alone.
	checkPage(t, "with bob, start..end, limit 0", query(t, ctx, a, archAlice, storage.ArchiveQuery{With: archBob, Start: msgs[3].Time, End: msgs[10].Time}),
		nil, len(bob), 0, false)
	// IDs that the time range or With excludes do not count.
	p := query(t, ctx, a, archAlice, storage.ArchiveQuery{IDs: []string{msgs[1].ID, msgs[5].ID, msgs[8].ID, msgs[11].ID}, End: msgs[9].Time, Limit: 10})
	checkPage(t, "ids 1, 5, 8, 11 up to 9", p, []storage.ArchivedMessage{msgs[1], msgs[5], msgs[8]}, 3, 0, true)
	p = query(t, ctx, a, archAlice, storage.ArchiveQuery{IDs: []string{msgs[1].ID, msgs[5].ID, msgs[8].ID, msgs[11].ID}, With: archCarol, AfterID: msgs[2].ID, Limit: 1})
	checkPage(t, "ids 1, 5, 8, 11 with carol after 2, max 1", p, msgs[5:6], 3, 0, false)
	p = query(t, ctx, a, archAlice, storage.ArchiveQuery{IDs: []string{msgs[1].ID, msgs[5].ID, msgs[8].ID, msgs[11].ID}, Backward: true, Limit: 1})
	checkPage(t, "ids 1, 5, 8, 11 backward, max 1", p, msgs[11:12], 4, 3, false)
}

func testArchiveUnknownIDs(t *testing.T, ctx context.Context, s storage.Store) {
	a := archiveOf(t, s)
	alice := appendArch(t, ctx, a, archAlice, 3)
	bob := appendArch(t, ctx, a, archBob, 3)
	for _, id := range []string{"nope", "AAAAAAAAAAAAAAAAAAAAAA", bob[0].ID, alice[0].ID + "x", "%%%%"} {
		for name, q := range map[string]storage.ArchiveQuery{
			"After": {After: id, Limit: 1}, "Before": {Before: id, Backward: true, Limit: 1},
			"AfterID": {AfterID: id, Limit: 1}, "BeforeID": {BeforeID: id, Limit: 1},
			"IDs": {IDs: []string{alice[1].ID, id}, Limit: 1},
		} {
			_, err := a.QueryArchive(ctx, archAlice, q)
			wantErr(t, err, storage.ErrNotFound, fmt.Sprintf("%s %q in alice's archive", name, id))
		}
	}
}

// testArchiveUnknownIDsEmpty checks that an unknown ID is an error also
// where the result would be empty: in an archive that does not exist and
// under filters that match nothing.
func testArchiveUnknownIDsEmpty(t *testing.T, ctx context.Context, s storage.Store) {
	a := archiveOf(t, s)
	alice := appendArch(t, ctx, a, archAlice, 3)
	const unknown = "AAAAAAAAAAAAAAAAAAAAAA"
	for name, q := range map[string]storage.ArchiveQuery{
		"After": {After: unknown, Limit: 1}, "Before": {Before: unknown, Backward: true, Limit: 1},
		"AfterID": {AfterID: unknown, Limit: 1}, "BeforeID": {BeforeID: unknown, Limit: 1},
		"IDs": {IDs: []string{unknown}, Limit: 1},
	} {
		_, err := a.QueryArchive(ctx, archBob, q)
		wantErr(t, err, storage.ErrNotFound, name+" in an archive that does not exist")
		_, err = a.QueryArchive(ctx, archBob, storage.ArchiveQuery{After: q.After, Before: q.Before, AfterID: q.AfterID, BeforeID: q.BeforeID, IDs: []string{alice[0].ID}})
		wantErr(t, err, storage.ErrNotFound, name+" with alice's ID in bob's archive that does not exist")
		q.Start = t3.Add(time.Hour)
		_, err = a.QueryArchive(ctx, archAlice, q)
		wantErr(t, err, storage.ErrNotFound, name+" with a Start after every message")
		q.Start, q.With = time.Time{}, "dave@example.org"
		_, err = a.QueryArchive(ctx, archAlice, q)
		wantErr(t, err, storage.ErrNotFound, name+" with a With no message has")
		q.With, q.Limit = "", 0
		_, err = a.QueryArchive(ctx, archAlice, q)
		wantErr(t, err, storage.ErrNotFound, name+" with limit 0")
	}
}

func testArchiveClock(t *testing.T, ctx context.Context, s storage.Store) {
	a := archiveOf(t, s)
	m1, m2, m3 := archMsg(0), archMsg(1), archMsg(2)
	m1.Time, m2.Time, m3.Time = t2, t1, t3 // the clock went back for m2
	var want []storage.ArchivedMessage
	for _, m := range []storage.ArchivedMessage{m1, m2, m3} {
		id, err := a.AppendArchive(ctx, archAlice, m)
		must(t, err, "AppendArchive")
		m.ID = id
		want = append(want, m)
	}
	want[1].Time = t2 // raised to the latest time
	checkPage(t, "after the clock went back", query(t, ctx, a, archAlice, storage.ArchiveQuery{Limit: 10}), want, 3, 0, true)
	checkPage(t, "from t2", query(t, ctx, a, archAlice, storage.ArchiveQuery{Start: t2, End: t2, Limit: 10}), want[:2], 2, 0, true)
	// Another user's archive has its own latest time.
	m := archMsg(3)
	m.Time = t1
	id, err := a.AppendArchive(ctx, archBob, m)
	must(t, err, "AppendArchive for bob")
	m.ID = id
	checkPage(t, "bob's archive", query(t, ctx, a, archBob, storage.ArchiveQuery{Limit: 10}), []storage.ArchivedMessage{m}, 1, 0, true)
}

func testArchiveDeleteBefore(t *testing.T, ctx context.Context, s storage.Store) {
	a := archiveOf(t, s)
	alice := appendArch(t, ctx, a, archAlice, 10)
	bob := appendArch(t, ctx, a, archBob, 4)
	n, err := a.DeleteArchiveBefore(ctx, alice[6].Time)
	must(t, err, "DeleteArchiveBefore")
	if n != 6+4 {
		t.Errorf("DeleteArchiveBefore removed %d, want 10 (6 of alice's, all 4 of bob's)", n)
	}
	checkPage(t, "alice's archive", query(t, ctx, a, archAlice, storage.ArchiveQuery{Limit: 100}), alice[6:], 4, 0, true)
	checkPage(t, "bob's archive", query(t, ctx, a, archBob, storage.ArchiveQuery{Limit: 100}), nil, 0, 0, true)
	if c, _ := a.CountArchive(ctx, archAlice); c != 4 {
		t.Errorf("CountArchive(alice) = %d, want 4", c)
	}
	if c, _ := a.CountArchive(ctx, archBob); c != 0 {
		t.Errorf("CountArchive(bob) = %d, want 0", c)
	}
	_, err = a.QueryArchive(ctx, archAlice, storage.ArchiveQuery{After: alice[0].ID, Limit: 1})
	wantErr(t, err, storage.ErrNotFound, "After a deleted message")
	_, err = a.QueryArchive(ctx, archBob, storage.ArchiveQuery{IDs: []string{bob[3].ID}, Limit: 1})
	wantErr(t, err, storage.ErrNotFound, "IDs with a deleted message")
	// IDs are not reused, and new messages come after the old.
	again := appendArch(t, ctx, a, archBob, 4)
	old := map[string]bool{}
	for _, m := range append(alice, bob...) {
		old[m.ID] = true
	}
	for _, m := range again {
		if old[m.ID] {
			t.Errorf("ID %q reused after DeleteArchiveBefore", m.ID)
		}
	}
	checkPage(t, "bob's new archive", query(t, ctx, a, archBob, storage.ArchiveQuery{Limit: 100}), again, 4, 0, true)
	n, err = a.DeleteArchiveBefore(ctx, t1)
	must(t, err, "DeleteArchiveBefore with nothing that old")
	if n != 0 {
		t.Errorf("DeleteArchiveBefore(t1) removed %d, want 0", n)
	}
}

func testArchiveDelete(t *testing.T, ctx context.Context, s storage.Store) {
	a := archiveOf(t, s)
	alice := appendArch(t, ctx, a, archAlice, 5)
	bob := appendArch(t, ctx, a, archBob, 2)
	prefs := storage.ArchivePrefs{Default: storage.ArchiveRoster, Never: []string{archCarol}}
	must(t, a.SetArchivePrefs(ctx, archAlice, prefs), "SetArchivePrefs")
	must(t, a.SetArchivePrefs(ctx, archBob, prefs), "SetArchivePrefs")
	must(t, a.DeleteArchive(ctx, archAlice), "DeleteArchive")
	checkPage(t, "alice's archive", query(t, ctx, a, archAlice, storage.ArchiveQuery{Limit: 100}), nil, 0, 0, true)
	if p, _ := a.ArchivePrefs(ctx, archAlice); p.Default != "" || len(p.Never) != 0 {
		t.Errorf("alice's prefs after DeleteArchive: %+v", p)
	}
	checkPage(t, "bob's archive", query(t, ctx, a, archBob, storage.ArchiveQuery{Limit: 100}), bob, 2, 0, true)
	if p, _ := a.ArchivePrefs(ctx, archBob); p.Default != storage.ArchiveRoster {
		t.Errorf("bob's prefs after deleting alice's archive: %+v", p)
	}
	again := appendArch(t, ctx, a, archAlice, 5)
	for i := range again {
		if again[i].ID == alice[i].ID {
			t.Errorf("ID %q reused after DeleteArchive", again[i].ID)
		}
	}
	_, err := a.QueryArchive(ctx, archAlice, storage.ArchiveQuery{After: alice[0].ID, Limit: 1})
	wantErr(t, err, storage.ErrNotFound, "After a message of the deleted archive")
}

func testArchivePrefs(t *testing.T, ctx context.Context, s storage.Store) {
	a := archiveOf(t, s)
	p := storage.ArchivePrefs{Default: storage.ArchiveNever, Always: []string{archBob, "x@example.com"}, Never: []string{archCarol}}
	must(t, a.SetArchivePrefs(ctx, archAlice, p), "SetArchivePrefs")
	got, err := a.ArchivePrefs(ctx, archAlice)
	must(t, err, "ArchivePrefs")
	if got.Default != p.Default || !sameStrings(got.Always, p.Always) || !sameStrings(got.Never, p.Never) {
		t.Errorf("ArchivePrefs = %+v, want %+v", got, p)
	}
	got.Always[0] = "changed@example.org"
	p.Never[0] = "changed@example.org"
	if again, _ := a.ArchivePrefs(ctx, archAlice); again.Always[0] != archBob || again.Never[0] != archCarol {
		t.Errorf("changing a returned or passed value changed the stored prefs: %+v", again)
	}
	p = storage.ArchivePrefs{Default: storage.ArchiveAlways}
	must(t, a.SetArchivePrefs(ctx, archAlice, p), "SetArchivePrefs again")
	if got, _ := a.ArchivePrefs(ctx, archAlice); got.Default != storage.ArchiveAlways || len(got.Always)+len(got.Never) != 0 {
		t.Errorf("after replacing: %+v", got)
	}
	if got, _ := a.ArchivePrefs(ctx, archBob); got.Default != "" {
		t.Errorf("bob's prefs: %+v, want none", got)
	}
}

func testArchiveCopies(t *testing.T, ctx context.Context, s storage.Store) {
	a := archiveOf(t, s)
	m := archMsg(0)
	orig := slices.Clone(m.Stanza)
	_, err := a.AppendArchive(ctx, archAlice, m)
	must(t, err, "AppendArchive")
	m.Stanza[1] = 'X'
	p := query(t, ctx, a, archAlice, storage.ArchiveQuery{Limit: 1})
	if len(p.Messages) != 1 || string(p.Messages[0].Stanza) != string(orig) {
		t.Fatalf("changing the appended stanza changed the stored one: %v", p.Messages)
	}
	p.Messages[0].Stanza[1] = 'Y'
	p = query(t, ctx, a, archAlice, storage.ArchiveQuery{Limit: 1})
	if string(p.Messages[0].Stanza) != string(orig) {
		t.Errorf("changing a returned stanza changed the stored one: %q", p.Messages[0].Stanza)
	}
}

func testArchiveConcurrent(t *testing.T, ctx context.Context, s storage.Store) {
	a := archiveOf(t, s)
	const writers, each = 8, 20
	var errs errorList
	ids := make([][]string, writers)
	parallel(t, ctx, writers, func(w int) {
		user := archAlice
		if w%2 == 1 {
			user = archBob
		}
		for i := range each {
			id, err := a.AppendArchive(ctx, user, archMsg(w*each+i))
			if err != nil {
				errs.add("AppendArchive: %v", err)
				return
			}
			ids[w] = append(ids[w], id)
		}
	})
	if !errs.report(t) {
		return
	}
	seen := map[string]bool{}
	for _, l := range ids {
		for _, id := range l {
			if seen[id] {
				t.Errorf("ID %q handed out twice", id)
			}
			seen[id] = true
		}
	}
	for _, user := range []string{archAlice, archBob} {
		p := query(t, ctx, a, user, storage.ArchiveQuery{Limit: writers * each})
		if p.Count != writers/2*each || len(p.Messages) != p.Count {
			t.Errorf("%s: Count %d, %d messages; want %d", user, p.Count, len(p.Messages), writers/2*each)
		}
		// Each writer's messages keep their order.
		pos := map[string]int{}
		for i, m := range p.Messages {
			pos[m.ID] = i
		}
		for _, l := range ids {
			for i := 1; i < len(l); i++ {
				if pi, ok := pos[l[i]]; ok && pi < pos[l[i-1]] {
					t.Errorf("%s: a writer's messages out of order", user)
				}
			}
		}
	}
}
