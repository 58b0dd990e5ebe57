package e2e

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/treff-im/treff/internal/pgtest"
)

// The tests in this file run the example server binary with -store
// postgres (storage/pgstore) on a throwaway PostgreSQL that
// internal/pgtest starts (or TREFF_PGSQL_DSN), one database per test,
// and drive it with slixmpp.

const (
	pgAlicePW = "alice pg pässword"
	pgBobPW   = "bob pg password"
)

// pgFlags returns bin with the flags of a server on the PostgreSQL
// database dsn.
func pgFlags(t *testing.T, bin, dsn string, more ...string) string {
	t.Helper()
	return withFlags(t, bin, append([]string{"-store", "postgres", "-pg-dsn", dsn}, more...)...)
}

// TestPostgresStore: the example server on PostgreSQL. alice is made
// with the adduser command (on PostgreSQL, no server running), bob
// registers in band (XEP-0077) with slixmpp; they chat with archiving on;
// alice sends bob, now offline, a message and waits for the server's
// answer to an IQ sent after it (acknowledged), and the server is killed
// with SIGKILL once an archive query has made the archive commit what
// waited. Restarted on the same database, bob gets the message with a
// delay stamp, and alice's archive query (XEP-0313, paged with RSM)
// returns the chat and the offline message. Nothing of
// it is in a bbolt file: the data folder holds no treff.db.
func TestPostgresStore(t *testing.T) {
	needSlixmpp(t)
	pg := pgtest.Start(t)
	dsn := pg.Database(t)
	admin := pgFlags(t, buildCommunity(t), dsn)
	bin := withFlags(t, admin, "-registration", "open", "-archive", "yes")
	data := t.TempDir()
	runCommunity(t, admin, "adduser", "-data", data, "-password", pgAlicePW, "alice@localhost")

	p := startCommunity(t, bin, data)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server output:\n%s", p.logs)
		}
	})
	s := p.clients()
	es := s.reg(t, "register", "--jid", "bob@localhost", "--password", pgBobPW, "--login")
	if rs := regReplies(t, es, "r1"); len(rs) != 1 || rs[0].Type != "result" {
		t.Fatalf("bob's registration: %+v", rs)
	}
	if got := strings.Fields(runCommunity(t, admin, "users", "-data", data)); !slices.Equal(got, []string{"alice@localhost", "bob@localhost"}) {
		t.Errorf("community users: %q", got)
	}

	const n = 6
	chat := converse(t, s, "alice@localhost", pgAlicePW, "bob@localhost", pgBobPW, "pg-chat", n)

	// bob is offline; alice's message is answered by the IQ round trip
	// that follows it (slix.py send), then the server dies.
	body := uniqueBody("pg-offline")
	es = s.slix(t, "send", "--jid", "alice@localhost", "--password", pgAlicePW, "--to", "bob@localhost", "--body", body)
	if got := es.of("message", "alice"); len(got) != 0 {
		t.Errorf("alice got %+v, want nothing (no error for a stored message)", got)
	}
	// The archive commits its copies in groups (at most 250 ms later, as
	// on bbolt: docs/benchmarks.md, "What is fsynced when"); a query
	// commits what waits, so that the copies are on disk before the kill.
	s.mam(t, "retrieve", "--jid", "alice@localhost", "--password", pgAlicePW, "--max", "1")
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.done
	if _, err := os.Stat(filepath.Join(data, dbFileName)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the data folder holds %s with -store postgres (%v)", dbFileName, err)
	}

	p = startCommunity(t, bin, data)
	s = p.clients()
	es = s.im(t, "offline_login", "--jid", "bob@localhost", "--password", pgBobPW, "--wait", "5", "--expect", "1")
	msgs := es.of("message", "bob")
	if len(msgs) != 1 || msgs[0].Body != body || !strings.HasPrefix(msgs[0].From, "alice@localhost/") {
		t.Fatalf("bob after the restart got %+v, want alice's message %q", msgs, body)
	}
	if len(es.of("delay", "bob")) != 1 {
		t.Errorf("the stored message came without a <delay/>")
	}

	// alice's archive: the chat and the offline message, three a page.
	es = s.mam(t, "retrieve", "--jid", "alice@localhost", "--password", pgAlicePW, "--max", "3")
	var bodies []string
	ids := map[string]bool{}
	for _, e := range es.of("page", "alice") {
		var pg mamPage
		e.decode(t, &pg)
		if pg.Count != fmt.Sprint(n+1) {
			t.Errorf("page count %q, want %d", pg.Count, n+1)
		}
		for _, r := range pg.Results {
			bodies = append(bodies, r.Body)
			ids[r.ID] = true
		}
	}
	want := []string{}
	for _, x := range chat {
		want = append(want, x.Body)
	}
	want = append(want, body)
	if !slices.Equal(bodies, want) {
		t.Errorf("alice's archive %q, want %q", bodies, want)
	}
	// The stanza-ids the recipients saw are the archive's IDs (alice's
	// own for the messages she received).
	for _, x := range chat {
		for _, sid := range x.StanzaIDs {
			if sid.By == "alice@localhost" && !ids[sid.ID] {
				t.Errorf("stanza-id %s of %q is not in alice's archive", sid.ID, x.Body)
			}
		}
	}
	p.stop(t)
}

// dbFileName is the example server's bbolt file in its data folder.
const dbFileName = "treff.db"

// TestMigrateStoreToPostgres: a server on bbolt is filled by slixmpp
// (archived chat, roster both ways with a name and group, vCard, private
// XML, PEP, an offline message, a persistent room), stopped, copied
// with community migrate-store into an empty PostgreSQL database and
// started on it with the same data folder: the users log in with their
// old passwords and find their contacts, vCard, private data, PEP items,
// the offline message, the room with its owner, and their archive with
// the same stanza-ids. A second migrate-store refuses the non-empty
// database.
func TestMigrateStoreToPostgres(t *testing.T) {
	needSlixmpp(t)
	const domain = "localhost"
	pg := pgtest.Start(t)
	dsn := pg.Database(t)
	bin := buildCommunity(t)
	data := t.TempDir()
	for _, u := range migUsers {
		runCommunity(t, bin, "adduser", "-data", data, "-password", u[1], u[0]+"@"+domain)
	}
	p := startCommunity(t, withFlags(t, bin, "-archive", "yes"), data)
	// bob and carol chat first: a client of alice's would answer carol's
	// subscription request of populate (slixmpp authorises by default).
	const n = 4
	chat := converse(t, p.clients(), "bob@"+domain, migUsers[1][1], "carol@"+domain, migUsers[2][1], "migrated-chat", n)
	migClient(t, p.addr, p.cert, domain, "populate", append(offlineArgs(domain), "--pep")...)
	const room, roomName = "keep@" + mucService, "Käffchen & Co's <room>"
	roomArgs := []string{"--jid", "alice@" + domain, "--password", migUsers[0][1], "--peer", "bob@" + domain,
		"--peer-password", migUsers[1][1], "--third", "carol@" + domain, "--third-password", migUsers[2][1],
		"--room", "keep", "--room-name", roomName}
	es := p.clients().muc(t, "persist_create", roomArgs...)
	checkJoined(t, es, "alice", room, "alice", 110, 201)
	p.stop(t)

	out := runCommunity(t, bin, "migrate-store", "-data", data, "-pg-dsn", dsn)
	if !strings.Contains(out, "4 accounts, 1 rooms, 1 offline messages") {
		t.Errorf("migrate-store printed %q", out)
	}
	if _, stderr, err := runCommunityErr(bin, "migrate-store", "-data", data, "-pg-dsn", dsn); err == nil || !strings.Contains(stderr, "already holds data") {
		t.Errorf("second migrate-store: %v, %q; want a refusal", err, stderr)
	}

	pgbin := pgFlags(t, bin, dsn, "-archive", "yes")
	p = startCommunity(t, pgbin, data)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server output:\n%s", p.logs)
		}
	})
	es = migClient(t, p.addr, p.cert, domain, "check", append(offlineArgs(domain), "--pep")...)
	checkMigrated(t, es, domain)
	checkOffline(t, es, domain)
	checkPEP(t, es)
	es = p.clients().muc(t, "persist_check", roomArgs...)
	checkRoomInfo(t, discoInfo(t, es, "bob"), roomName, "muc_persistent", "muc_public")
	checkJoined(t, es, "alice", room, "alice", 110)

	// bob's archive on PostgreSQL: the chat, with the stanza-ids bob saw
	// on bbolt.
	es = p.clients().mam(t, "retrieve", "--jid", "bob@"+domain, "--password", migUsers[1][1], "--max", "10")
	got := map[string]string{} // body -> archive ID
	for _, e := range es.of("page", "alice") {
		var pg mamPage
		e.decode(t, &pg)
		for _, r := range pg.Results {
			got[r.Body] = r.ID
		}
	}
	for _, x := range chat {
		id, ok := got[x.Body]
		if !ok {
			t.Errorf("message %q is not in bob's archive after the move", x.Body)
			continue
		}
		if x.Receiver != "bob@"+domain {
			continue
		}
		for _, sid := range x.StanzaIDs {
			if sid.By == "bob@"+domain && sid.ID != id {
				t.Errorf("message %q: stanza-id %s before the move, archive ID %s after", x.Body, sid.ID, id)
			}
		}
	}
	p.stop(t)
}

// TestPostgresCrashKeepsAcknowledged is TestCrashKeepsAcknowledged on
// PostgreSQL: bob's resumable session hibernates, alice sends 300
// messages with stream management, the server is killed with SIGKILL once
// a random number of them were acknowledged, and after the restart bob
// gets every acknowledged one exactly once, from PostgreSQL.
func TestPostgresCrashKeepsAcknowledged(t *testing.T) {
	pg := pgtest.Start(t)
	admin := pgFlags(t, buildCommunity(t), pg.Database(t))
	data := t.TempDir()
	for _, a := range [][2]string{{"alice", "alicepw"}, {"bob", "bobpw"}} {
		runCommunity(t, admin, "adduser", "-data", data, "-password", a[1], a[0]+"@localhost")
	}
	bin := withFlags(t, admin, "-offline-limit", "5000", "-limit-messages", "none")
	seed := rand.Uint64()
	rng := rand.New(rand.NewPCG(seed, 1))
	const total = 300
	killAt := 1 + rng.IntN(total)
	acked := crashRound(t, bin, data, 1, total, killAt)
	t.Logf("seed %d: killed once %d messages were acknowledged; %d were by then", seed, killAt, acked)
}
