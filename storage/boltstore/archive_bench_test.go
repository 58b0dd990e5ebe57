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

// BenchmarkAppendArchive measures AppendArchive, the archive's part of
// every archived chat message: the caller's cost (the commit happens
// behind it), from one goroutine and from many, for 100 users.
func BenchmarkAppendArchive(b *testing.B) {
	ctx := context.Background()
	stanza := []byte("<message type='chat' id='m1' from='alice@example.org/phone' to='bob@example.org'><body>Shall we meet at the station at nine tomorrow morning?</body></message>")
	users := make([]string, 100)
	for i := range users {
		users[i] = fmt.Sprintf("user%03d@example.org", i)
	}
	b.Run("Serial", func(b *testing.B) {
		s, _ := openTemp(b, nil)
		defer s.Close()
		b.SetBytes(int64(len(stanza)))
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			msg := storage.ArchivedMessage{Time: time.Now().UTC(), With: "bob@example.org", WithResource: "phone", Stanza: stanza}
			if _, err := s.AppendArchive(ctx, users[i%len(users)], msg); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("Parallel", func(b *testing.B) {
		s, _ := openTemp(b, nil)
		defer s.Close()
		b.SetBytes(int64(len(stanza)))
		b.ReportAllocs()
		b.SetParallelism(16)
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				msg := storage.ArchivedMessage{Time: time.Now().UTC(), With: "bob@example.org", WithResource: "phone", Stanza: stanza}
				if _, err := s.AppendArchive(ctx, users[i%len(users)], msg); err != nil {
					b.Error(err)
					return
				}
				i++
			}
		})
	})
}

// BenchmarkArchiveFlush measures the commits behind AppendArchive at a
// community server's rate: each op is one scheduled flush of 12 records
// for 200 users (a 25 ms batch at 240 records a second: 120 messages
// between local users), folds included when due; without fsync, whose
// cost is the disk's. Per op: the CPU and garbage of a flush, which the
// benchmark of AppendArchive (the caller's part) does not see.
func BenchmarkArchiveFlush(b *testing.B) {
	ctx := context.Background()
	stanza := []byte("<message type='chat' id='m1' from='alice@example.org/phone' to='bob@example.org'><body>Shall we meet at the station at nine tomorrow morning?</body></message>")
	users := make([]string, 200)
	for i := range users {
		users[i] = fmt.Sprintf("user%03d@example.org", i)
	}
	s, _ := openTemp(b, &Options{NoSync: true})
	defer s.Close()
	s.archive.afterFunc = func(time.Duration, func()) func() bool { return func() bool { return true } }
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		for range 12 {
			msg := storage.ArchivedMessage{Time: time.Now().UTC(), With: "bob@example.org", WithResource: "phone", Stanza: stanza}
			if _, err := s.AppendArchive(ctx, users[i%len(users)], msg); err != nil {
				b.Fatal(err)
			}
			i += 7
		}
		if err := s.flush(flushTimer); err != nil {
			b.Fatal(err)
		}
	}
}
