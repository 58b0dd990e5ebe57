package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/treff-im/treff/storage"
)

// adminCaller returns a function that sends a request to the admin
// socket at path and returns the answer and, for an error, its kind and
// text ("" for none).
func adminCaller(t *testing.T, path string) func(adminRequest) (adminResponse, string) {
	return func(req adminRequest) (adminResponse, string) {
		t.Helper()
		resp, err := callAdmin(path, req)
		if err != nil {
			return resp, errorKind(err) + ": " + err.Error()
		}
		return resp, ""
	}
}

// TestAdminSuspendBan suspends, lists, unsuspends and bans an account
// through the admin protocol.
func TestAdminSuspendBan(t *testing.T) {
	path, a, store := startAdmin(t)
	if err := a.acct.srv.Setup(); err != nil {
		t.Fatal(err)
	}
	call := adminCaller(t, path)
	ctx := context.Background()
	for _, u := range []string{"alice@localhost", "bob@localhost"} {
		if _, e := call(adminRequest{Cmd: "adduser", JID: u, Password: "password-1"}); e != "" {
			t.Fatal(e)
		}
	}
	if _, e := call(adminRequest{Cmd: "suspend", JID: "alice@localhost", Reason: "spam"}); e != "" {
		t.Fatal(e)
	}
	ac, err := store.Account(ctx, "alice@localhost")
	if err != nil || ac.Suspended.IsZero() || ac.SuspendReason != "spam" {
		t.Fatalf("after suspend: %+v %v", ac, err)
	}
	resp, e := call(adminRequest{Cmd: "recent", Before: time.Now().Add(-time.Hour)})
	if e != "" || len(resp.Users) != 2 || !strings.HasPrefix(resp.Users[0], "bob@localhost created ") && !strings.HasPrefix(resp.Users[1], "bob@localhost created ") {
		t.Fatalf("recent: %q %q", resp.Users, e)
	}
	var line string
	for _, l := range resp.Users {
		if strings.HasPrefix(l, "alice@localhost ") {
			line = l
		}
	}
	if !strings.Contains(line, ", never logged in, suspended ") || !strings.HasSuffix(line, " (spam)") {
		t.Errorf("recent line of alice: %q", line)
	}
	if resp, e := call(adminRequest{Cmd: "recent", Before: time.Now().Add(time.Hour)}); e != "" || len(resp.Users) != 0 {
		t.Errorf("recent since the future: %q %q", resp.Users, e)
	}
	if _, e := call(adminRequest{Cmd: "unsuspend", JID: "alice@localhost"}); e != "" {
		t.Fatal(e)
	}
	if ac, _ := store.Account(ctx, "alice@localhost"); !ac.Suspended.IsZero() || ac.SuspendReason != "" {
		t.Errorf("after unsuspend: %+v", ac)
	}
	if _, e := call(adminRequest{Cmd: "ban", JID: "bob@localhost"}); e != "" {
		t.Fatal(e)
	}
	if _, err := store.Account(ctx, "bob@localhost"); err == nil {
		t.Error("bob exists after ban")
	}
	if until, err := store.NameHeldUntil(ctx, "bob@localhost"); err != nil || until.Year() < 2120 {
		t.Errorf("bob's name held until %v, %v", until, err)
	}
	for _, tc := range []struct {
		req  adminRequest
		want string
	}{
		{adminRequest{Cmd: "suspend", JID: "nobody@localhost"}, "notfound: no account nobody@localhost"},
		{adminRequest{Cmd: "ban", JID: "bob@localhost"}, "notfound: no account bob@localhost"},
		{adminRequest{Cmd: "unsuspend", JID: "x@elsewhere.net"}, "usage: x@elsewhere.net is not on a configured domain"},
	} {
		if _, e := call(tc.req); !strings.HasPrefix(e, tc.want) {
			t.Errorf("%+v: got %q, want %q...", tc.req, e, tc.want)
		}
	}
}

// TestAdminBlockReports blocks and unblocks server-wide and lists and
// deletes reports through the admin protocol.
func TestAdminBlockReports(t *testing.T) {
	path, a, store := startAdmin(t)
	if err := a.acct.srv.Setup(); err != nil {
		t.Fatal(err)
	}
	call := adminCaller(t, path)
	if _, e := call(adminRequest{Cmd: "block", Entries: []string{"spam.example", "troll@other.example"}}); e != "" {
		t.Fatal(e)
	}
	if _, e := call(adminRequest{Cmd: "block", Entries: []string{"x@localhost"}}); !strings.HasPrefix(e, "usage: x@localhost is served here") {
		t.Errorf("blocking a local JID: %q", e)
	}
	if _, e := call(adminRequest{Cmd: "unblock", Entries: []string{"troll@other.example"}}); e != "" {
		t.Fatal(e)
	}
	resp, e := call(adminRequest{Cmd: "block"})
	if e != "" || strings.Join(resp.Users, " ") != "spam.example" {
		t.Errorf("block list: %q %q", resp.Users, e)
	}
	ctx := context.Background()
	id, err := store.AddReport(ctx, storage.Report{Time: time.Date(2026, 12, 1, 9, 30, 0, 0, time.UTC), Reporter: "alice@localhost",
		Reported: "spam@spam.example", Reason: "urn:xmpp:reporting:spam", Text: "pills", MessageIDs: []string{"alice@localhost abc"}})
	if err != nil {
		t.Fatal(err)
	}
	resp, e = call(adminRequest{Cmd: "reports"})
	want := id + " 2026-12-01 09:30 UTC alice@localhost reported spam@spam.example (spam), 1 message id(s): alice@localhost abc: pills"
	if e != "" || len(resp.Users) != 1 || resp.Users[0] != want {
		t.Errorf("reports: %q %q, want %q", resp.Users, e, want)
	}
	if _, e := call(adminRequest{Cmd: "reports", Agent: id}); e != "" {
		t.Fatal(e)
	}
	if _, e := call(adminRequest{Cmd: "reports", Agent: id}); !strings.HasPrefix(e, "notfound: no report") {
		t.Errorf("deleting twice: %q", e)
	}
}

// TestAdminApprove approves an account through the admin protocol.
func TestAdminApprove(t *testing.T) {
	path, a, store := startAdmin(t)
	if err := a.acct.srv.Setup(); err != nil {
		t.Fatal(err)
	}
	call := adminCaller(t, path)
	if _, e := call(adminRequest{Cmd: "adduser", JID: "new@localhost", Password: "password-1"}); e != "" {
		t.Fatal(e)
	}
	if _, e := call(adminRequest{Cmd: "approve", JID: "new@localhost"}); e != "" {
		t.Fatal(e)
	}
	if ac, err := store.Account(context.Background(), "new@localhost"); err != nil || ac.Approved.IsZero() {
		t.Errorf("after approve: %+v %v", ac, err)
	}
	resp, e := call(adminRequest{Cmd: "recent", Before: time.Now().Add(-time.Hour)})
	if e != "" || len(resp.Users) != 1 || !strings.Contains(resp.Users[0], ", approved") {
		t.Errorf("recent: %q %q", resp.Users, e)
	}
	if _, e := call(adminRequest{Cmd: "approve", JID: "nobody@localhost"}); !strings.HasPrefix(e, "notfound:") {
		t.Errorf("approving nobody: %q", e)
	}
}
