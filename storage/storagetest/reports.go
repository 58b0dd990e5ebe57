package storagetest

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/treff-im/treff/storage"
)

// reportTests run only for stores that implement storage.Reports.
var reportTests = []test{
	{name: "AddListDelete", fn: testReports},
	{name: "CancelledContext", fn: cancelled(reportCalls)},
}

func testReports(t *testing.T, ctx context.Context, s storage.Store) {
	rs, ok := s.(storage.Reports)
	if !ok {
		t.Skip("store does not implement storage.Reports")
	}
	list, err := rs.ListReports(ctx)
	must(t, err, "ListReports of none")
	if len(list) != 0 {
		t.Fatalf("ListReports of none = %+v", list)
	}
	at := time.Date(2026, 12, 1, 10, 0, 0, 123, time.FixedZone("x", 3600))
	want := []storage.Report{
		{Time: at, Reporter: alice, Reported: "spam@spam.example", Reason: "urn:xmpp:reporting:spam", Text: "pills", MessageIDs: []string{alice + " id-1", alice + " id-2"}},
		{Time: at.Add(time.Minute), Reporter: bob, Reported: "rude.example", Reason: "urn:xmpp:reporting:abuse"},
		{Time: at.Add(2 * time.Minute), Reporter: alice, Reported: "x@y.example", Reason: "urn:xmpp:reporting:spam", Text: "ünïcode ✓"},
	}
	for i := range want {
		in := want[i]
		in.MessageIDs = slices.Clone(want[i].MessageIDs)
		id, err := rs.AddReport(ctx, in)
		must(t, err, "AddReport")
		if id == "" {
			t.Fatal("AddReport returned an empty ID")
		}
		// The store keeps its own copy.
		if len(in.MessageIDs) > 0 {
			in.MessageIDs[0] = "changed"
		}
		want[i].ID = id
	}
	check := func(want []storage.Report) {
		t.Helper()
		got, err := rs.ListReports(ctx)
		must(t, err, "ListReports")
		if len(got) != len(want) {
			t.Fatalf("ListReports: %d reports, want %d: %+v", len(got), len(want), got)
		}
		for i, g := range got {
			w := want[i]
			if g.ID != w.ID || !g.Time.Equal(w.Time) || g.Time.Location() != time.UTC || g.Reporter != w.Reporter || g.Reported != w.Reported ||
				g.Reason != w.Reason || g.Text != w.Text || !slices.Equal(g.MessageIDs, w.MessageIDs) {
				t.Errorf("report %d = %+v, want %+v (time in UTC)", i, g, w)
			}
		}
		if len(got) > 0 {
			got[0].MessageIDs = append(got[0].MessageIDs, "x")
		}
	}
	check(want)
	check(want) // a caller's change to the returned slices is not stored
	must(t, rs.DeleteReport(ctx, want[1].ID), "DeleteReport")
	check([]storage.Report{want[0], want[2]})
	if err := rs.DeleteReport(ctx, want[1].ID); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("DeleteReport twice: %v, want ErrNotFound", err)
	}
	if err := rs.DeleteReport(ctx, "no-such-id"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("DeleteReport of a made-up id: %v, want ErrNotFound", err)
	}
	// IDs keep growing after a delete: a new report sorts last.
	id, err := rs.AddReport(ctx, storage.Report{Time: at, Reporter: bob, Reported: "z.example", Reason: "urn:xmpp:reporting:spam"})
	must(t, err, "AddReport after DeleteReport")
	got, _ := rs.ListReports(ctx)
	if len(got) != 3 || got[2].ID != id || id == want[1].ID {
		t.Errorf("after a new report: %+v (new id %q)", got, id)
	}
}

func reportCalls(t *testing.T, ctx context.Context, s storage.Store) []call {
	rs := as[storage.Reports](t, s)
	id, err := rs.AddReport(ctx, storage.Report{Time: time.Now(), Reporter: alice, Reported: bob, Reason: "urn:xmpp:reporting:spam"})
	must(t, err, "AddReport")
	return []call{
		{"AddReport", "", func(ctx context.Context, _ string) error {
			_, err := rs.AddReport(ctx, storage.Report{Time: time.Now(), Reporter: alice, Reported: bob})
			return err
		}},
		{"ListReports", "", func(ctx context.Context, _ string) error { _, err := rs.ListReports(ctx); return err }},
		{"DeleteReport", "", func(ctx context.Context, _ string) error { return rs.DeleteReport(ctx, id) }},
	}
}
