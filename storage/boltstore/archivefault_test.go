//go:build linux

package boltstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/treff-im/treff/internal/diskfault"
	"github.com/treff-im/treff/storage"
	"github.com/treff-im/treff/trefftest"
)

// fakeTimers replaces the archive queue's timers: the test fires them.
type fakeTimers struct {
	mu     sync.Mutex
	due    []func()
	delays []time.Duration
}

func (ft *fakeTimers) afterFunc(d time.Duration, f func()) func() bool {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	ft.delays = append(ft.delays, d)
	i := len(ft.due)
	ft.due = append(ft.due, f)
	return func() bool {
		ft.mu.Lock()
		defer ft.mu.Unlock()
		live := ft.due[i] != nil
		ft.due[i] = nil
		return live
	}
}

// fire runs the timers scheduled and not stopped, and reports how many.
func (ft *fakeTimers) fire() int {
	ft.mu.Lock()
	var fs []func()
	for i, f := range ft.due {
		if f != nil {
			fs = append(fs, f)
			ft.due[i] = nil
		}
	}
	ft.mu.Unlock()
	for _, f := range fs {
		f()
	}
	return len(fs)
}

func (ft *fakeTimers) lastDelay() time.Duration {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	return ft.delays[len(ft.delays)-1]
}

// openFaulty opens a store at a new path whose file can be filled, with
// the queue bounded to limit bytes, fake timers, a clock and a log.
func openFaulty(t *testing.T, limit int) (*Store, string, *diskfault.File, *fakeTimers, *trefftest.Clock, *trefftest.LogBuffer) {
	t.Helper()
	logs := &trefftest.LogBuffer{}
	opts := &Options{ArchiveQueueBytes: limit, Logger: slog.New(slog.NewTextHandler(logs, nil))}
	s, path := openTemp(t, opts)
	// The archive's cipher and buckets, written before the fault.
	if _, err := s.AppendArchive(context.Background(), "alice@example.org", storage.ArchivedMessage{With: "bob@example.org"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// bbolt must not map more of the file while its writes fail.
	if err := diskfault.Grow(path, 16<<20); err != nil {
		t.Fatal(err)
	}
	s, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	ft := &fakeTimers{}
	clock := trefftest.NewClock(time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC))
	s.archive.afterFunc, s.archive.now, s.archive.smallBatch = ft.afterFunc, clock.Now, 0
	disk, err := diskfault.Find(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { disk.Close(); s.Close() })
	return s, path, disk, ft, clock, logs
}

func chat(i int, outgoing bool) storage.ArchivedMessage {
	return storage.ArchivedMessage{With: "bob@example.org", Outgoing: outgoing,
		Stanza: fmt.Appendf(nil, "<message type='chat'><body>message %d %s</body></message>", i, strings.Repeat("x", 200))}
}

// TestArchiveFullDisk fills the disk under the archive queue: failed
// commits stay queued and are retried with a doubling delay, the queue
// stays within its bound and then refuses appends with storage.ErrFull
// (outgoing ones first), reads fail rather than miss messages, the
// failure is logged once per interval, and once the disk has room the
// next retry writes everything and appends succeed again; the file is
// consistent afterwards.
func TestArchiveFullDisk(t *testing.T) {
	ctx := context.Background()
	const limit = 32 << 10
	s, path, disk, ft, clock, logs := openFaulty(t, limit)
	const user = "alice@example.org"
	if err := disk.Fill(); err != nil {
		t.Fatal(err)
	}
	var ids []string
	if id, err := s.AppendArchive(ctx, user, chat(0, false)); err != nil {
		t.Fatal(err)
	} else {
		ids = append(ids, id)
	}
	if ft.fire() != 1 {
		t.Fatal("no flush was scheduled")
	}
	if s.archive.failures != 1 || ft.lastDelay() != archiveRetryFirst {
		t.Fatalf("after a failed commit: %d failures, retry in %v", s.archive.failures, ft.lastDelay())
	}
	// Retries double their delay up to the most.
	want := archiveRetryFirst
	for range 10 {
		want = min(2*want, archiveRetryMax)
		if ft.fire() != 1 {
			t.Fatal("no retry was scheduled")
		}
		if got := ft.lastDelay(); got != want {
			t.Fatalf("retry delay %v, want %v", got, want)
		}
	}
	// Reads fail rather than answer without the queued message.
	if _, err := s.CountArchive(ctx, user); err == nil {
		t.Error("CountArchive succeeded with a message that could not be written")
	}
	// Appends are queued while there is room: outgoing ones to 7/8 of
	// the bound, incoming ones to the bound.
	var outFull, inFull bool
	for i := 1; !inFull; i++ {
		outgoing := !outFull
		id, err := s.AppendArchive(ctx, user, chat(i, outgoing))
		switch {
		case errors.Is(err, storage.ErrFull):
			if outgoing {
				outFull = true
				if q := s.ArchiveQueued(); q < limit*7/8-500 || q > limit*7/8 {
					t.Errorf("outgoing refused with %d bytes queued, bound %d", q, limit)
				}
			} else {
				inFull = true
			}
			if strings.Contains(err.Error(), user) || strings.Contains(err.Error(), "bob@") {
				t.Errorf("the error names a user: %v", err)
			}
		case err != nil:
			t.Fatal(err)
		default:
			ids = append(ids, id)
		}
		if q := s.ArchiveQueued(); q > limit {
			t.Fatalf("%d bytes queued, bound %d", q, limit)
		}
		if i > 10000 {
			t.Fatal("the queue never filled")
		}
	}
	if q := s.ArchiveQueued(); q < limit-500 {
		t.Errorf("incoming refused with %d bytes queued, bound %d", q, limit)
	}
	if ft.fire() != 1 {
		t.Fatal("no retry was scheduled")
	}
	if n := strings.Count(logs.String(), "writing archived messages failed"); n != 1 {
		t.Errorf("%d lines about the failure within a minute, want 1:\n%s", n, logs)
	}
	clock.Add(time.Minute)
	ft.fire()
	if n := strings.Count(logs.String(), "writing archived messages failed"); n != 2 || !strings.Contains(logs.String(), "similar_lines_suppressed=") {
		t.Errorf("%d lines about the failure after a minute, want 2 with a count:\n%s", n, logs)
	}
	for _, c := range []string{user, "bob@", "message 1"} {
		if strings.Contains(logs.String(), c) {
			t.Errorf("the log holds %q:\n%s", c, logs)
		}
	}

	// Room on the disk again: the next retry writes it all.
	if err := disk.Free(); err != nil {
		t.Fatal(err)
	}
	if ft.fire() != 1 {
		t.Fatal("no retry was scheduled")
	}
	if q := s.ArchiveQueued(); q != 0 {
		t.Errorf("%d bytes queued after the disk recovered", q)
	}
	if !strings.Contains(logs.String(), "archived messages are written again") {
		t.Errorf("no line about the recovery:\n%s", logs)
	}
	if _, err := s.AppendArchive(ctx, user, chat(-1, true)); err != nil {
		t.Fatalf("append after the recovery: %v", err)
	}
	p, err := s.QueryArchive(ctx, user, storage.ArchiveQuery{IDs: ids, Limit: len(ids)})
	if err != nil || len(p.Messages) != len(ids) {
		t.Fatalf("%d of the %d accepted messages found, %v", len(p.Messages), len(ids), err)
	}
	if n, err := s.CountArchive(ctx, user); err != nil || n != len(ids)+2 {
		t.Errorf("CountArchive = %d, %v; want %d", n, err, len(ids)+2)
	}
	disk.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	checkFile(t, path)
}

// TestFullDiskWrites checks that bbolt stays usable after commits that
// failed for want of space: the other writes of the store fail while the
// disk is full, succeed afterwards, and nothing committed before is lost.
func TestFullDiskWrites(t *testing.T) {
	ctx := context.Background()
	s, path, disk, _, _, _ := openFaulty(t, 0)
	if _, err := s.PushOffline(ctx, "bob@example.org", storage.OfflineMessage{Stanza: []byte("<message>before</message>")}, 0); err != nil {
		t.Fatal(err)
	}
	if err := disk.Fill(); err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("y"), 64<<10) // grows the file: a failed resize
	for i, msg := range [][]byte{[]byte("<message>during</message>"), big} {
		if _, err := s.PushOffline(ctx, "bob@example.org", storage.OfflineMessage{Stanza: msg}, 0); err == nil {
			t.Fatalf("push %d succeeded on a full disk", i)
		}
	}
	if err := s.CreateAccount(ctx, storage.Account{JID: "carol@example.org"}); err == nil {
		t.Fatal("CreateAccount succeeded on a full disk")
	}
	if n, err := s.CountOffline(ctx, "bob@example.org"); err != nil || n != 1 {
		t.Fatalf("during the fault: CountOffline = %d, %v; want 1", n, err)
	}
	if err := disk.Free(); err != nil {
		t.Fatal(err)
	}
	for _, msg := range [][]byte{[]byte("<message>after</message>"), big} {
		if _, err := s.PushOffline(ctx, "bob@example.org", storage.OfflineMessage{Stanza: msg}, 0); err != nil {
			t.Fatalf("push after the fault: %v", err)
		}
	}
	if err := s.CreateAccount(ctx, storage.Account{JID: "carol@example.org"}); err != nil {
		t.Fatalf("CreateAccount after the fault: %v", err)
	}
	msgs, err := s.OfflineMessages(ctx, "bob@example.org")
	if err != nil || len(msgs) != 3 || string(msgs[0].Stanza) != "<message>before</message>" || string(msgs[1].Stanza) != "<message>after</message>" {
		t.Fatalf("offline messages after the fault: %d, %v", len(msgs), err)
	}
	disk.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	checkFile(t, path)
}

// TestArchiveCloseFullDisk closes a store whose queued archive records
// cannot be written: Close says how much was lost, and the file holds
// what was committed before.
func TestArchiveCloseFullDisk(t *testing.T) {
	ctx := context.Background()
	s, path, disk, _, _, _ := openFaulty(t, 0)
	if err := disk.Fill(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AppendArchive(ctx, "alice@example.org", chat(1, false)); err != nil {
		t.Fatal(err)
	}
	err := s.Close()
	if err == nil || !strings.Contains(err.Error(), "bytes of archived messages could not be written") {
		t.Fatalf("Close on a full disk: %v", err)
	}
	disk.Forget()
	checkFile(t, path)
	s, err = Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if n, err := s.CountArchive(ctx, "alice@example.org"); err != nil || n != 1 {
		t.Errorf("after reopening: CountArchive = %d, %v; want the 1 committed before", n, err)
	}
}
