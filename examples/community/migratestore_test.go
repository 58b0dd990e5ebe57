package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/treff-im/treff/internal/pgtest"
	"github.com/treff-im/treff/storage"
	"github.com/treff-im/treff/storage/boltstore"
	"github.com/treff-im/treff/storage/pgstore"
)

// runHere runs the command line in this process and returns its exit
// code, standard output and standard error.
func runHere(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(context.Background(), args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

// TestMigrateStore fills a bbolt data folder with one of every kind of
// record, copies it with migrate-store into PostgreSQL and compares what
// the PostgreSQL store returns; a second run refuses the non-empty
// target; adduser and users with -store postgres work on the copy.
func TestMigrateStore(t *testing.T) {
	srv := pgtest.Start(t)
	dsn := srv.Schema(t)
	dir := t.TempDir()
	ctx := t.Context()
	if code, _, stderr := runHere("adduser", "-data", dir, "-password", "alicepw1", "alice@localhost"); code != 0 {
		t.Fatalf("adduser: %s", stderr)
	}
	src, err := boltstore.Open(filepath.Join(dir, dbFile), nil)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	const a = "alice@localhost"
	_, err = src.PutRosterItem(ctx, a, storage.RosterItem{JID: "bob@localhost", Name: "Bob", Groups: []string{"Friends"}, Subscription: storage.SubBoth})
	must(err)
	_, err = src.PushOffline(ctx, a, storage.OfflineMessage{Received: at, Stanza: []byte("<message><body>offline</body></message>")}, 0)
	must(err)
	var ids []string
	for i := range 2500 { // more than one batch
		id, err := src.AppendArchive(ctx, a, storage.ArchivedMessage{Time: at.Add(time.Duration(i) * time.Second), With: "bob@localhost", WithResource: "phone", Stanza: []byte("<message/>")})
		must(err)
		ids = append(ids, id)
	}
	must(src.SetArchivePrefs(ctx, a, storage.ArchivePrefs{Default: storage.ArchiveRoster, Never: []string{"spam@example.org"}}))
	must(src.SetLastActivity(ctx, a, at, "gone"))
	must(src.PutPrivateXML(ctx, a, "vcard-temp", []byte("<vCard xmlns='vcard-temp'/>")))
	must(src.Block(ctx, a, []string{"spam@example.org"}))
	must(src.CreatePEPNode(ctx, a, "urn:xmpp:avatar:data", storage.PEPNodeConfig{AccessModel: storage.AccessOpen, MaxItems: 1}))
	must(src.PublishPEPItem(ctx, a, "urn:xmpp:avatar:data", storage.PEPItem{ID: "av1", Payload: []byte("<data/>")}, 1))
	must(src.CreatePEPNode(ctx, "pubsub.localhost", "news", storage.PEPNodeConfig{AccessModel: storage.AccessOpen}))
	must(src.SubscribePEPNode(ctx, "pubsub.localhost", "news", a))
	must(src.PutPushRegistration(ctx, a, storage.PushRegistration{Service: "push.example.org", Node: "n1"}))
	must(src.PutFastDevice(ctx, a, storage.FastDevice{Agent: "agent-1", Software: "Conversations", LastUsed: at, Current: storage.FastToken{ID: []byte{1, 2}, Mechanism: "HT-SHA-256-NONE", Issued: at, Expires: at.Add(time.Hour)}}))
	must(src.CreateUpload(ctx, storage.Upload{ID: "up1", Owner: a, Filename: "a.png", Size: 10, Created: at, Uploaded: true}, 0))
	must(src.PutRoom(ctx, storage.Room{JID: "lobby@conference.localhost", Name: "Lobby", Persistent: true, Affiliations: map[string]storage.Affiliation{a: storage.AffOwner}, Created: at}))
	_, err = src.AppendArchive(ctx, "lobby@conference.localhost", storage.ArchivedMessage{Time: at, With: "lobby@conference.localhost", WithResource: "alice", Stanza: []byte("<message type='groupchat'/>")})
	must(err)
	held := time.Now().Add(24 * time.Hour).UTC()
	must(src.HoldName(ctx, "gone@localhost", held))
	must(src.CreateInvite(ctx, storage.Invite{Token: "tok", Domain: "localhost", Created: at, Expires: time.Now().Add(time.Hour)}))
	_, err = src.AddReport(ctx, storage.Report{Time: at, Reporter: a, Reported: "spam@example.org", Reason: "urn:xmpp:reporting:spam"})
	must(err)
	want, err := src.Account(ctx, a)
	must(err)
	must(src.Close())

	code, stdout, stderr := runHere("migrate-store", "-data", dir, "-pg-dsn", dsn)
	if code != 0 {
		t.Fatalf("migrate-store: exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "1 accounts, 1 rooms, 1 offline messages, 2501 archived messages, 2 PEP nodes, 1 uploads, 1 invitations, 1 reports") {
		t.Errorf("migrate-store said %q", stdout)
	}

	dst, err := pgstore.Open(ctx, dsn)
	must(err)
	defer dst.Close()
	got, err := dst.Account(ctx, a)
	must(err)
	if len(got.Credentials) == 0 || len(got.Credentials) != len(want.Credentials) || !bytes.Equal(got.Credentials[0].StoredKey, want.Credentials[0].StoredKey) || !got.Created.Equal(want.Created) {
		t.Errorf("account: got %+v, want %+v", got, want)
	}
	items, _, err := dst.Roster(ctx, a)
	if err != nil || len(items) != 1 || items[0].Name != "Bob" || items[0].Subscription != storage.SubBoth || len(items[0].Groups) != 1 {
		t.Errorf("roster: %+v, %v", items, err)
	}
	if msgs, err := dst.OfflineMessages(ctx, a); err != nil || len(msgs) != 1 || !msgs[0].Received.Equal(at) {
		t.Errorf("offline: %+v, %v", msgs, err)
	}
	page, err := dst.QueryArchive(ctx, a, storage.ArchiveQuery{Limit: 3000})
	if err != nil || len(page.Messages) != len(ids) {
		t.Fatalf("archive: %d messages, %v", len(page.Messages), err)
	}
	for i, m := range page.Messages {
		if m.ID != ids[i] || !m.Time.Equal(at.Add(time.Duration(i)*time.Second)) || m.WithResource != "phone" {
			t.Fatalf("archived message %d: %+v, want ID %s", i, m, ids[i])
		}
	}
	// An ID a client holds pages in the copy as it did in the original.
	if p, err := dst.QueryArchive(ctx, a, storage.ArchiveQuery{After: ids[1000], Limit: 1}); err != nil || len(p.Messages) != 1 || p.Messages[0].ID != ids[1001] || p.Index != 1001 {
		t.Errorf("paging after a copied ID: %+v, %v", p, err)
	}
	if p, err := dst.ArchivePrefs(ctx, a); err != nil || p.Default != storage.ArchiveRoster || len(p.Never) != 1 {
		t.Errorf("archive prefs: %+v, %v", p, err)
	}
	if n, err := dst.CountArchive(ctx, "lobby@conference.localhost"); err != nil || n != 1 {
		t.Errorf("room archive: %d, %v", n, err)
	}
	if tm, status, err := dst.LastActivity(ctx, a); err != nil || !tm.Equal(at) || status != "gone" {
		t.Errorf("last activity: %v %q %v", tm, status, err)
	}
	if doc, err := dst.PrivateXML(ctx, a, "vcard-temp"); err != nil || string(doc) != "<vCard xmlns='vcard-temp'/>" {
		t.Errorf("vcard: %q, %v", doc, err)
	}
	if b, err := dst.IsBlocked(ctx, a, "spam@example.org"); err != nil || !b {
		t.Errorf("block list: %v, %v", b, err)
	}
	if its, err := dst.PEPItems(ctx, a, "urn:xmpp:avatar:data", nil, 0); err != nil || len(its) != 1 || its[0].ID != "av1" {
		t.Errorf("PEP items: %+v, %v", its, err)
	}
	if subs, err := dst.PEPSubscribers(ctx, "pubsub.localhost", "news"); err != nil || len(subs) != 1 {
		t.Errorf("pubsub subscribers: %v, %v", subs, err)
	}
	if regs, err := dst.PushRegistrations(ctx, a); err != nil || len(regs) != 1 || regs[0].Node != "n1" {
		t.Errorf("push: %+v, %v", regs, err)
	}
	if d, err := dst.FastDevice(ctx, a, "agent-1"); err != nil || !bytes.Equal(d.Current.ID, []byte{1, 2}) || !d.Current.Expires.Equal(at.Add(time.Hour)) {
		t.Errorf("FAST device: %+v, %v", d, err)
	}
	if u, err := dst.Upload(ctx, "up1"); err != nil || !u.Uploaded || u.Owner != a {
		t.Errorf("upload: %+v, %v", u, err)
	}
	if r, err := dst.Room(ctx, "lobby@conference.localhost"); err != nil || r.Name != "Lobby" || r.Affiliations[a] != storage.AffOwner {
		t.Errorf("room: %+v, %v", r, err)
	}
	if until, err := dst.NameHeldUntil(ctx, "gone@localhost"); err != nil || !until.Equal(held) {
		t.Errorf("held name: %v, %v; want %v", until, err, held)
	}
	if inv, err := dst.Invite(ctx, "tok"); err != nil || inv.Domain != "localhost" {
		t.Errorf("invite: %+v, %v", inv, err)
	}
	if reps, err := dst.ListReports(ctx); err != nil || len(reps) != 1 || reps[0].Reported != "spam@example.org" {
		t.Errorf("reports: %+v, %v", reps, err)
	}

	// Once more into the same database: refused, nothing doubled.
	code, _, stderr = runHere("migrate-store", "-data", dir, "-pg-dsn", dsn)
	if code == 0 || !strings.Contains(stderr, "already holds data") {
		t.Errorf("second migrate-store: exit %d, %q; want a refusal", code, stderr)
	}
	if n, err := dst.CountArchive(ctx, a); err != nil || n != len(ids) {
		t.Errorf("after the refused run: %d archived, %v", n, err)
	}

	// Admin commands on the PostgreSQL store.
	if code, _, stderr := runHere("adduser", "-data", dir, "-store", "postgres", "-pg-dsn", dsn, "-password", "carolpw1", "carol@localhost"); code != 0 {
		t.Fatalf("adduser -store postgres: %s", stderr)
	}
	code, stdout, stderr = runHere("users", "-data", dir, "-store", "postgres", "-pg-dsn", dsn)
	if code != 0 || stdout != "alice@localhost\ncarol@localhost\n" {
		t.Errorf("users -store postgres: exit %d, %q, %s", code, stdout, stderr)
	}
	if code, _, stderr := runHere("backup", "-data", dir, "-store", "postgres", "-pg-dsn", dsn, "-o", filepath.Join(t.TempDir(), "b.tar.gz")); code == 0 || !strings.Contains(stderr, "pg_dump") {
		t.Errorf("backup -store postgres: exit %d, %q; want a pointer to pg_dump", code, stderr)
	}
	if code, _, stderr := runHere("users", "-data", dir, "-store", "postgres"); code == 0 || !strings.Contains(stderr, "pg_dsn") {
		t.Errorf("-store postgres without -pg-dsn: exit %d, %q", code, stderr)
	}
}
