package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/treff-im/treff/auth"
	"github.com/treff-im/treff/storage"
	"github.com/treff-im/treff/storage/memstore"
)

// startAdmin serves the admin protocol on a memstore in a temporary
// folder; it returns the socket path and the server.
func startAdmin(t *testing.T) (string, *adminServer, *memstore.Store) {
	t.Helper()
	dir, err := os.MkdirTemp("", "adm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, adminSocket)
	l, err := listenAdmin(path)
	if err != nil {
		t.Fatal(err)
	}
	store := memstore.New()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := Default()
	cfg.Domains = []string{"localhost", "example.org"}
	authn := &auth.Store{Accounts: store}
	srv := newServer(cfg, store, authn, log, nil)
	t.Cleanup(func() { srv.Close() })
	a := &adminServer{l: l, log: log, acct: &accounts{store: store, auth: authn,
		domains: cfg.Domains, log: log, srv: srv}}
	done := make(chan error, 1)
	go func() { done <- a.serve() }()
	t.Cleanup(func() {
		a.close()
		if err := <-done; err != nil {
			t.Error(err)
		}
		store.Close()
	})
	return path, a, store
}

func TestAdminProtocol(t *testing.T) {
	path, _, store := startAdmin(t)
	call := adminCaller(t, path)
	for _, u := range []string{"bob@example.org", "alice@localhost", "carol@localhost"} {
		if _, e := call(adminRequest{Cmd: "adduser", JID: u, Password: "pw-" + u}); e != "" {
			t.Fatal(e)
		}
	}
	// Roster and offline messages go with the account.
	ctx := context.Background()
	store.PutRosterItem(ctx, "carol@localhost", storage.RosterItem{JID: "alice@localhost", Subscription: storage.SubBoth})
	store.PushOffline(ctx, "carol@localhost", storage.OfflineMessage{Received: time.Now(), Stanza: []byte("<message/>")}, 0)
	if _, e := call(adminRequest{Cmd: "deluser", JID: "carol@localhost"}); e != "" {
		t.Fatal(e)
	}
	if items, _, _ := store.Roster(ctx, "carol@localhost"); len(items) != 0 {
		t.Errorf("roster left: %v", items)
	}
	if n, _ := store.CountOffline(ctx, "carol@localhost"); n != 0 {
		t.Errorf("%d offline messages left", n)
	}
	resp, e := call(adminRequest{Cmd: "users"})
	if want := []string{"alice@localhost", "bob@example.org"}; e != "" || !reflect.DeepEqual(resp.Users, want) {
		t.Errorf("users: %v %q, want %q", resp.Users, e, want)
	}
	if _, e := call(adminRequest{Cmd: "passwd", JID: "alice@localhost", Password: "new"}); e != "" {
		t.Fatal(e)
	}
	a := &auth.Store{Accounts: store}
	if err := a.CheckPassword(ctx, "alice@localhost", "new"); err != nil {
		t.Errorf("new password: %v", err)
	}

	for _, tc := range []struct {
		req  adminRequest
		want string
	}{
		{adminRequest{Cmd: "adduser", JID: "alice@localhost", Password: "x"}, "exists: account alice@localhost exists already"},
		{adminRequest{Cmd: "adduser", JID: "dave@elsewhere.net", Password: "x"}, "usage: dave@elsewhere.net is not on a configured domain"},
		{adminRequest{Cmd: "adduser", JID: "dave@localhost"}, "usage: empty password"},
		{adminRequest{Cmd: "passwd", JID: "nobody@localhost", Password: "x"}, "notfound: no account nobody@localhost"},
		{adminRequest{Cmd: "deluser", JID: "nobody@localhost"}, "notfound: no account nobody@localhost"},
		{adminRequest{Cmd: "deluser", JID: "localhost"}, "usage: \"localhost\" is not a user's bare JID"},
		{adminRequest{Cmd: "deluser", JID: "a@b@c"}, "usage: \"a@b@c\" is not a valid JID"},
		{adminRequest{Cmd: "reboot"}, "usage: unknown command \"reboot\""},
	} {
		if _, e := call(tc.req); !strings.HasPrefix(e, tc.want) {
			t.Errorf("%+v: got %q, want %q...", tc.req, e, tc.want)
		}
	}
}

func TestAdminMalformed(t *testing.T) {
	path, _, _ := startAdmin(t)
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	for _, line := range []string{"not json\n", `{"cmd":"users","extra":1}` + "\n", "{\"cmd\":\"users\"}\n"} {
		if _, err := io.WriteString(c, line); err != nil {
			t.Fatal(err)
		}
		b, err := r.ReadBytes('\n')
		if err != nil {
			t.Fatal(err)
		}
		var resp adminResponse
		if err := json.Unmarshal(b, &resp); err != nil {
			t.Fatal(err)
		}
		if wantOK := strings.Contains(line, `"users"}`); resp.OK != wantOK {
			t.Errorf("%q: got %+v", line, resp)
		}
	}
	// Too long a line ends the connection.
	io.WriteString(c, strings.Repeat("x", adminMaxLine+10)+"\n")
	b, _ := r.ReadBytes('\n')
	if !strings.Contains(string(b), "too long") {
		t.Errorf("long line: got %q", b)
	}
}

// close does not wait for idle clients.
func TestAdminCloseWithIdleClient(t *testing.T) {
	path, a, _ := startAdmin(t)
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := callAdmin(path, adminRequest{Cmd: "users"}); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { a.close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("close waits for an idle client")
	}
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("socket file after close: %v", err)
	}
	if _, err := callAdmin(path, adminRequest{Cmd: "users"}); err != errNoServer {
		t.Errorf("after close: %v, want errNoServer", err)
	}
}

func TestListenAdminReplacesStaleSocket(t *testing.T) {
	dir, err := os.MkdirTemp("", "adm")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, adminSocket)
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close()
	if _, err := callAdmin(path, adminRequest{Cmd: "users"}); err != errNoServer {
		t.Errorf("stale socket: %v, want errNoServer", err)
	}
	l, err := listenAdmin(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode: %v %v", fi.Mode(), err)
	}
	l.Close()

	// Not a socket: left alone.
	os.WriteFile(path, []byte("keep me"), 0o600)
	if _, err := listenAdmin(path); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("regular file: %v", err)
	}
	if _, err := listenAdmin(filepath.Join(dir, strings.Repeat("d", 120), adminSocket)); err == nil || !strings.Contains(err.Error(), "too long") {
		t.Errorf("long path: %v", err)
	}
}

// TestAdminDevices lists a user's FAST devices through the admin protocol,
// logs one out, and checks that a password change ends the others.
func TestAdminDevices(t *testing.T) {
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
	if _, e := call(adminRequest{Cmd: "adduser", JID: "alice@localhost", Password: "alicepw"}); e != "" {
		t.Fatal(e)
	}
	used := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tok := storage.FastToken{ID: []byte("0123456789abcdef"), Mechanism: "HT-SHA-256-NONE", Issued: used, Expires: used.Add(time.Hour)}
	for _, d := range []storage.FastDevice{
		{Agent: "phone-1", Software: "Conversations", Device: "Pixel", LastUsed: used, Current: tok},
		{Agent: "laptop-1", Software: "Gajim", LastUsed: used.Add(time.Hour), Next: tok},
	} {
		if err := store.PutFastDevice(ctx, "alice@localhost", d); err != nil {
			t.Fatal(err)
		}
	}
	resp, e := call(adminRequest{Cmd: "devices", JID: "alice@localhost"})
	want := []string{
		"laptop-1 (Gajim), last used 2026-03-01 13:00:00 UTC",
		"phone-1 (Conversations on Pixel), last used 2026-03-01 12:00:00 UTC",
	}
	if e != "" || !reflect.DeepEqual(resp.Users, want) {
		t.Errorf("devices: %q %q, want %q", resp.Users, e, want)
	}
	if _, e := call(adminRequest{Cmd: "devices", JID: "alice@localhost", Agent: "phone-1"}); e != "" {
		t.Fatal(e)
	}
	if _, err := store.FastDevice(ctx, "alice@localhost", "phone-1"); err == nil {
		t.Error("phone-1 still has its tokens after -revoke")
	}
	for _, tc := range []struct {
		req  adminRequest
		want string
	}{
		{adminRequest{Cmd: "devices", JID: "alice@localhost", Agent: "phone-1"}, `notfound: alice@localhost has no device "phone-1"`},
		{adminRequest{Cmd: "devices", JID: "alice@elsewhere.net"}, "usage: alice@elsewhere.net is not on a configured domain"},
	} {
		if _, e := call(tc.req); !strings.HasPrefix(e, tc.want) {
			t.Errorf("%+v: got %q, want %q...", tc.req, e, tc.want)
		}
	}
	// A password change logs out every device.
	if _, e := call(adminRequest{Cmd: "passwd", JID: "alice@localhost", Password: "newpw"}); e != "" {
		t.Fatal(e)
	}
	if resp, e := call(adminRequest{Cmd: "devices", JID: "alice@localhost"}); e != "" || len(resp.Users) != 0 {
		t.Errorf("devices after a password change: %q %q", resp.Users, e)
	}
}
