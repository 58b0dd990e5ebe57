package mam

import (
	"context"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/storage/boltstore"
	"github.com/treff-im/treff/trefftest"
)

// BenchmarkArchiveChat measures what the archive adds to a chat message
// between two local users, with the bbolt store: the sender's copy (the
// outbound hook) and the recipient's (the inbound hook, which replaces
// the sender's stanza-id with the recipient's), each with its
// preferences read, its append queued and its stanza-id added; the
// parse of the message (treff.NewStanza) is part of each op too. The
// store's commits run behind, as in the server: synced ("sync"), or not
// ("nosync": the hooks' own cost with less of the disk's noise). Besides
// ns/op it reports cpu-ns/op, the process's CPU time per message (user
// and system, getrusage), commits included.
func BenchmarkArchiveChat(b *testing.B) {
	for _, noSync := range []bool{false, true} {
		name := "sync"
		if noSync {
			name = "nosync"
		}
		b.Run(name, func(b *testing.B) { benchmarkArchiveChat(b, noSync) })
	}
}

func benchmarkArchiveChat(b *testing.B, noSync bool) {
	store, err := boltstore.Open(filepath.Join(b.TempDir(), "treff.db"), &boltstore.Options{NoSync: noSync})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	m := &Module{Store: store}
	ts := trefftest.NewServer(b, func(s *treff.Server) { s.Modules = []treff.Module{m} })
	if err := ts.Setup(); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	from, to := jid.MustParse("alice@localhost/phone"), jid.MustParse("bob@localhost/laptop")
	raw := []byte("<message type='chat' id='m1' from='alice@localhost/phone' to='bob@localhost'><body>Shall we meet at the station at nine tomorrow morning?</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>")
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	cpu0 := cpuTime()
	for b.Loop() {
		st, err := treff.NewStanza(raw)
		if err != nil {
			b.Fatal(err)
		}
		st.From, st.To = from, to.Bare()
		if m.outbound(ctx, st) || m.inbound(ctx, st) {
			b.Fatal("the message was consumed")
		}
	}
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
}

// cpuTime returns the process's user and system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
