package pgstore

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/treff-im/treff/internal/pgtest"
	"github.com/treff-im/treff/storage"
)

// benchStanza is a chat message of a usual size.
var benchStanza = []byte("<message type='chat' id='m1' from='alice@example.org/phone' to='bob@example.org'><body>Shall we meet at the station at nine tomorrow morning?</body></message>")

// BenchmarkWrites measures the two writes on the path of a chat message,
// AppendArchive (batched, and each on its own for comparison) and
// PushOffline, committed durably (a PostgreSQL with
// fsync on), from one goroutine and from 16 per core, for 100 users:
// comparable with boltstore's BenchmarkAppendArchive.
func BenchmarkWrites(b *testing.B) {
	srv := pgtest.StartWith(b, pgtest.Options{Durable: true})
	ctx := context.Background()
	users := make([]string, 100)
	for i := range users {
		users[i] = fmt.Sprintf("user%03d@example.org", i)
	}
	ops := map[string]func(s *Store, user string) error{
		"AppendArchive": func(s *Store, user string) error {
			_, err := s.AppendArchive(ctx, user, storage.ArchivedMessage{Time: time.Now().UTC(), With: "bob@example.org", WithResource: "phone", Stanza: benchStanza})
			return err
		},
		// The same append committed on its own (as without batching),
		// for comparison.
		"AppendArchiveUnbatched": func(s *Store, user string) error {
			_, err := s.appendOne(ctx, user, newArchiveID(), storage.ArchivedMessage{Time: time.Now().UTC(), With: "bob@example.org", WithResource: "phone", Stanza: benchStanza})
			return err
		},
		"PushOffline": func(s *Store, user string) error {
			_, err := s.PushOffline(ctx, user, storage.OfflineMessage{Received: time.Now().UTC(), Stanza: benchStanza}, 0)
			return err
		},
	}
	for _, name := range []string{"AppendArchive", "AppendArchiveUnbatched", "PushOffline"} {
		op := ops[name]
		b.Run(name+"/Serial", func(b *testing.B) {
			s, err := Open(ctx, srv.Schema(b))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			b.SetBytes(int64(len(benchStanza)))
			cpu := serverCPU(srv.PID)
			i := 0
			for b.Loop() {
				if err := op(s, users[i%len(users)]); err != nil {
					b.Fatal(err)
				}
				i++
			}
			reportServerCPU(b, srv.PID, cpu)
		})
		b.Run(name+"/Parallel", func(b *testing.B) {
			s, err := Open(ctx, srv.Schema(b))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			b.SetBytes(int64(len(benchStanza)))
			b.SetParallelism(16)
			cpu := serverCPU(srv.PID)
			defer reportServerCPU(b, srv.PID, cpu)
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
	s, err := Open(ctx, srv.Schema(b))
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

// serverCPU returns the CPU time (user and system, in clock ticks) used
// so far by the PostgreSQL server pid and its child processes (the
// backends), or -1 if it cannot be read (no local server).
func serverCPU(pid int) int64 {
	if pid == 0 {
		return -1
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return -1
	}
	var total int64
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// Fields after the command name (which is in parentheses).
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) < 13 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		if self, _ := strconv.Atoi(e.Name()); self != pid && ppid != pid {
			continue
		}
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		total += ut + st
	}
	return total
}

// reportServerCPU reports the server's CPU time per operation since
// before (clock ticks of 10 ms), as "server-µs/op": the database's cost,
// which the machine's load does not inflate as it does wall time.
func reportServerCPU(b *testing.B, pid int, before int64) {
	if before < 0 || b.N == 0 {
		return
	}
	after := serverCPU(pid)
	b.ReportMetric(float64(after-before)*1e4/float64(b.N), "server-µs/op")
}
