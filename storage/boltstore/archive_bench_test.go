package boltstore

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/treff-im/treff/storage"
)

// BenchmarkQueryArchive measures the common MAM queries on an archive of
// 10,000 messages: the last page (what a client asks first), a page of
// one conversation, a forward page from the middle and a lookup by IDs.
func BenchmarkQueryArchive(b *testing.B) {
	ctx := context.Background()
	s, err := Open(filepath.Join(b.TempDir(), "treff.db"), &Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const user, n = "alice@example.org", 10000
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ids := make([]string, n)
	for i := range n {
		with := "bob@example.org"
		if i%10 == 0 {
			with = "carol@example.net"
		}
		ids[i], err = s.AppendArchive(ctx, user, storage.ArchivedMessage{Time: t0.Add(time.Duration(i) * time.Second),
			With: with, Stanza: fmt.Appendf(nil, "<message type='chat'><body>message %d</body></message>", i)})
		if err != nil {
			b.Fatal(err)
		}
	}
	for _, bc := range []struct {
		name string
		q    storage.ArchiveQuery
	}{
		{"LastPage", storage.ArchiveQuery{Limit: 50, Backward: true}},
		{"LastPageWith", storage.ArchiveQuery{Limit: 50, Backward: true, With: "carol@example.net"}},
		{"PageAfter", storage.ArchiveQuery{Limit: 50, After: ids[n/2]}},
		{"StartEnd", storage.ArchiveQuery{Limit: 50, Start: t0.Add(n / 4 * time.Second), End: t0.Add(n / 2 * time.Second)}},
		{"IDs", storage.ArchiveQuery{Limit: 50, IDs: ids[n/2 : n/2+20]}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				p, err := s.QueryArchive(ctx, user, bc.q)
				if err != nil || len(p.Messages) == 0 {
					b.Fatalf("%+v, %v", p, err)
				}
			}
		})
	}
}
