package roster_test

import (
	"testing"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/roster"
	"github.com/treff-im/treff/router"
	"github.com/treff-im/treff/trefftest"
)

// updaterTable is an in-process table that says it is cluster-wide
// (router.Updater), as package cluster's is: the server is Clustered.
type updaterTable struct{ router.Local }

func (*updaterTable) Update(router.Entry) {}

// sharedDirected checks the session's published directed presence
// recipients. The module handles a client's presence before the server
// answers the client's next IQ, so after Sync it is set.
func sharedDirected(t *testing.T, ts *trefftest.Server, full, want string) {
	t.Helper()
	s := ts.Session(jid.MustParse(full))
	if s == nil {
		t.Fatalf("no session %s", full)
	}
	if got := s.Shared(treff.SharedDirected); got != want {
		t.Errorf("%s publishes directed presence recipients %q, want %q", full, got, want)
	}
}

// In a cluster, a session's directed presence recipients (RFC 6121 4.6)
// that do not get its broadcasts are published with its row, sorted, at
// most MaxSharedDirected, and cleared when it goes unavailable; so that
// another node can tell them if the session's node dies.
func TestDirectedPresenceShared(t *testing.T) {
	ts := trefftest.NewServer(t, func(s *treff.Server) {
		s.Modules = []treff.Module{&roster.Module{MaxSharedDirected: 2}}
		s.Table = &updaterTable{}
	})
	ts.AddUser(t, "alice", "pw")
	a := ts.Login(t, "alice", "pw", "r")
	a.Send("<presence/>")
	a.Send("<presence to='z@remote.test/1'/>")
	a.Send("<presence to='carol@remote.test/x'/>")
	a.Sync()
	sharedDirected(t, ts, "alice@localhost/r", "carol@remote.test/x\nz@remote.test/1")
	// A third is remembered but not published (the limit is 2); the
	// first in order goes when it gets unavailable presence.
	a.Send("<presence to='m@remote.test'/>")
	a.Send("<presence to='carol@remote.test/x' type='unavailable'/>")
	a.Sync()
	sharedDirected(t, ts, "alice@localhost/r", "m@remote.test\nz@remote.test/1")
	a.Send("<presence to='a@remote.test'/>")
	a.Sync()
	sharedDirected(t, ts, "alice@localhost/r", "a@remote.test\nm@remote.test")
	// Unavailable broadcast presence tells them all and forgets them.
	a.Send("<presence type='unavailable'/>")
	a.Sync()
	sharedDirected(t, ts, "alice@localhost/r", "")
}

// On one node nothing is published: the recipients stay the module's own.
func TestDirectedPresenceNotSharedAlone(t *testing.T) {
	ts := trefftest.NewServer(t, func(s *treff.Server) { s.Modules = []treff.Module{&roster.Module{}} })
	ts.AddUser(t, "alice", "pw")
	a := ts.Login(t, "alice", "pw", "r")
	a.Send("<presence/>")
	a.Send("<presence to='carol@remote.test/x'/>")
	a.Sync()
	if got := ts.Session(jid.MustParse("alice@localhost/r")).Shared(treff.SharedDirected); got != "" {
		t.Errorf("published %q without a cluster", got)
	}
}
