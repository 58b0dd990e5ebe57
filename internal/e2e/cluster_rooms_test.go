package e2e

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/treff-im/treff/storage/pgstore"
)

// TestClusterRooms: group chat on three example-server processes
// (127.0.0.12-14, -cluster yes with embedded NATS, -store postgres on one
// throwaway PostgreSQL database), with slixmpp clients
// (clients/clusterrooms.py). alice creates a persistent members-only
// room through node 0, which owns it; bob on node 1 and carol on node 2
// join through their nodes: everyone sees everyone's presence and
// messages, each message once. Node 0 is then killed with SIGKILL: bob
// and carol get an unavailable presence with status 332, rejoin, and a
// surviving node has taken the room over from PostgreSQL (logged, and
// its ownership record names it) with its configuration, affiliations
// and recent history (stored by -muc-save-history before the kill): bob
// and carol's rejoins get the three messages as history; dave, no
// member, is refused; alice, back on node 2, is still the owner.
func TestClusterRooms(t *testing.T) {
	needSlixmpp(t)
	const carolPW, davePW = "carol pässwörd", "dave-pw"
	c := startProcCluster(t, procClusterSpec{ip: 12, prefix: "rnode", noHAProxy: true,
		accounts: [][2]string{{"alice@localhost", alicePW}, {"bob@localhost", bobPW}, {"carol@localhost", carolPW}, {"dave@localhost", davePW}},
		flags:    []string{"-muc-save-history", "100ms"}})
	nodes, dsn, certFile, dir := c.nodes, c.dsn, c.certFile, c.dir

	const roomLocal = "clusterroom"
	const roomJID = roomLocal + "@conference.localhost"
	st, err := pgstore.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	owner := func() string {
		b, err := st.Secret(context.Background(), "muc/owner/"+roomJID)
		if err != nil {
			t.Fatalf("the room's ownership record: %v", err)
		}
		name, _, _ := strings.Cut(string(b), "\n")
		return name
	}

	script, err := filepath.Abs(filepath.Join("clients", "clusterrooms.py"))
	if err != nil {
		t.Fatal(err)
	}
	var addrs []string
	for _, n := range nodes {
		addrs = append(addrs, n.addr)
	}
	body := uniqueBody("cluster-rooms")
	gate := filepath.Join(dir, "gate")
	done := make(chan events, 1)
	go func() {
		// runClient fails the test with Goexit: done hears of it then too.
		var es events
		defer func() { done <- es }()
		es = runClient(t, "clusterrooms.py kill_owner", pythonEnv(), python, script, "--cert", certFile,
			"--timeout", "28", "--wait", "10", "--addr", addrs[0], "--addrs", strings.Join(addrs, ","),
			"kill_owner", "--jid", "alice@localhost/a", "--password", alicePW,
			"--peer", "bob@localhost/b", "--peer-password", bobPW,
			"--third", "carol@localhost/c", "--third-password", carolPW,
			"--fourth", "dave@localhost/d", "--fourth-password", davePW,
			"--room", roomLocal, "--body", body, "--gate", gate)
	}()
	ended := func(es events) {
		if es == nil {
			t.FailNow() // runClient said why
		}
	}
	ready := false
	for range 600 {
		if _, err := os.Stat(gate + ".ready"); err == nil {
			ready = true
			break
		}
		select {
		case es := <-done:
			ended(es)
			t.Fatalf("the script ended before the kill: %+v", es)
		case <-time.After(50 * time.Millisecond):
		}
	}
	if !ready {
		t.Fatal("the script did not get ready")
	}
	// The room's recent history is in the store (muc_save_history).
	stored := 0
	for range 200 {
		r, err := st.Room(context.Background(), roomJID)
		if err == nil {
			if stored = len(r.History); stored == 3 {
				break
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if stored != 3 {
		t.Fatalf("the room's stored history has %d messages, want 3", stored)
	}
	if got := owner(); got != "rnode0" {
		t.Fatalf("the room's owner is %q, want rnode0 (alice created it there)", got)
	}
	if err := nodes[0].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-nodes[0].done
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var es events
	select {
	case es = <-done:
		ended(es)
	case <-time.After(clientTimeout + 5*time.Second):
		t.Fatal("the script did not end")
	}

	want := []string{body + " from alice", body + " from bob", body + " from carol"}
	for _, c := range []string{"alice", "bob", "carol"} {
		var seen struct {
			Bodies        []string       `json:"bodies"`
			PresenceFrom  []string       `json:"presence_from"`
			PresenceCount map[string]int `json:"presence_count"`
		}
		es.one(t, "seen", c).decode(t, &seen)
		if len(seen.PresenceFrom) != 3 {
			t.Errorf("%s got presence from %q, want the three occupants", c, seen.PresenceFrom)
		}
		if !slices.Equal(seen.Bodies, want) {
			t.Errorf("%s got %q, want each of %q once", c, seen.Bodies, want)
		}
		for _, nick := range []string{"alice", "bob", "carol"} {
			if n := seen.PresenceCount[roomJID+"/"+nick]; n != 1 {
				t.Errorf("%s got %s's presence %d times, want once (got %v)", c, nick, n, seen.PresenceCount)
			}
		}
	}
	for _, c := range []string{"bob", "carol", "alice2"} {
		var after struct {
			Bodies      []string `json:"bodies"`
			Codes       []int    `json:"codes"`
			Affiliation string   `json:"affiliation"`
			Removed332  int      `json:"removed_332"`
		}
		es.one(t, "after", c).decode(t, &after)
		if len(after.Bodies) != 1 {
			t.Errorf("%s got the message after the take-over %d times, want once", c, len(after.Bodies))
		}
		wantAff, want332 := "member", 1
		if c == "alice2" {
			wantAff, want332 = "owner", 0
		}
		if after.Affiliation != wantAff {
			t.Errorf("%s rejoined as %q, want %q", c, after.Affiliation, wantAff)
		}
		if after.Removed332 != want332 {
			t.Errorf("%s got %d removals with status 332, want %d", c, after.Removed332, want332)
		}
	}
	// The rejoins get the history the new owner loaded.
	for _, c := range []string{"bob", "carol"} {
		var j struct {
			History []string `json:"history"`
		}
		joins := es.of("joined", c)
		if len(joins) != 2 {
			t.Fatalf("%s joined %d times, want 2", c, len(joins))
		}
		joins[1].decode(t, &j)
		slices.Sort(j.History) // the three were sent at once: any order
		if !slices.Equal(j.History, want) {
			t.Errorf("%s's rejoin got the history %q, want %q", c, j.History, want)
		}
	}
	var refused struct {
		Error struct {
			Conditions []string `json:"conditions"`
		} `json:"error"`
	}
	es.one(t, "join_error", "dave").decode(t, &refused)
	if !slices.Equal(refused.Error.Conditions, []string{"registration-required"}) {
		t.Errorf("dave's join: %+v, want registration-required (members-only)", refused)
	}
	now := owner()
	if now != "rnode1" && now != "rnode2" {
		t.Errorf("after the kill the room's owner is %q, want a surviving node", now)
	}
	for _, n := range nodes[1:] {
		if n.name == now {
			waitLogLine(t, n.communityProc, "cluster: room taken over", "room="+roomJID, "from=rnode0")
		}
		waitLogLine(t, n.communityProc, "cluster: room owner gone, occupants here told (332)", "room="+roomJID)
	}
}
