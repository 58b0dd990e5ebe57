package main

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestAdminSuspendBan suspends, lists, unsuspends and bans an account
// through the admin protocol.
func TestAdminSuspendBan(t *testing.T) {
	path, a, store := startAdmin(t)
	if err := a.acct.srv.Setup(); err != nil {
		t.Fatal(err)
	}
	call := func(req adminRequest) (adminResponse, string) {
		t.Helper()
		resp, err := callAdmin(path, req)
		if err != nil {
			return resp, errorKind(err) + ": " + err.Error()
		}
		return resp, ""
	}
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
