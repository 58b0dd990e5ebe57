package pgstore_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/treff-im/treff/internal/pgtest"
	"github.com/treff-im/treff/storage"
	"github.com/treff-im/treff/storage/pgstore"
)

// benchStanza is a chat message of a usual size.
var benchStanza = []byte("<message type='chat' id='m1' from='alice@example.org/phone' to='bob@example.org'><body>Shall we meet at the station at nine tomorrow morning?</body></message>")

// BenchmarkWrites measures the two writes on the path of a chat message,
// AppendArchive and PushOffline, committed durably (a PostgreSQL with
// fsync on), from one goroutine and from 16 per core, for 100 users:
// comparable with boltstore's BenchmarkAppendArchive.
func BenchmarkWrites(b *testing.B) {
	srv := pgtest.StartWith(b, pgtest.Options{Durable: true})
	ctx := context.Background()
	users := make([]string, 100)
	for i := range users {
		users[i] = fmt.Sprintf("user%03d@example.org", i)
	}
	ops := map[string]func(s *pgstore.Store, user string) error{
		"AppendArchive": func(s *pgstore.Store, user string) error {
			_, err := s.AppendArchive(ctx, user, storage.ArchivedMessage{Time: time.Now().UTC(), With: "bob@example.org", WithResource: "phone", Stanza: benchStanza})
			return err
		},
		"PushOffline": func(s *pgstore.Store, user string) error {
			_, err := s.PushOffline(ctx, user, storage.OfflineMessage{Received: time.Now().UTC(), Stanza: benchStanza}, 0)
			return err
		},
	}
	for _, name := range []string{"AppendArchive", "PushOffline"} {
		op := ops[name]
		b.Run(name+"/Serial", func(b *testing.B) {
			s, err := pgstore.Open(ctx, srv.Schema(b))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			b.SetBytes(int64(len(benchStanza)))
			i := 0
			for b.Loop() {
				if err := op(s, users[i%len(users)]); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
		b.Run(name+"/Parallel", func(b *testing.B) {
			s, err := pgstore.Open(ctx, srv.Schema(b))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			b.SetBytes(int64(len(benchStanza)))
			b.SetParallelism(16)
			var next atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := op(s, users[next.Add(1)%int64(len(users))]); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkQueryArchive measures the common XEP-0313 queries on an
// archive of 10,000 messages (as boltstore's benchmark of the name).
func BenchmarkQueryArchive(b *testing.B) {
	srv := pgtest.Start(b)
	ctx := context.Background()
	s, err := pgstore.Open(ctx, srv.Schema(b))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const user, n = "alice@example.org", 10000
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	msgs := make([]storage.ArchivedMessage, n)
	ids := make([]string, n)
	for i := range n {
		with := "bob@example.org"
		if i%10 == 0 {
			with = "carol@example.net"
		}
		ids[i] = fmt.Sprintf("id%05d", i)
		msgs[i] = storage.ArchivedMessage{ID: ids[i], Time: t0.Add(time.Duration(i) * time.Second),
			With: with, Stanza: fmt.Appendf(nil, "<message type='chat'><body>message %d</body></message>", i)}
	}
	if err := s.ImportArchived(ctx, user, msgs); err != nil {
		b.Fatal(err)
	}
	if _, err := s.Pool().Exec(ctx, "VACUUM ANALYZE archive"); err != nil {
		b.Fatal(err)
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
