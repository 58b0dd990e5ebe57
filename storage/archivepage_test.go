package storage_test

import (
	"context"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/treff-im/treff/storage"
)

// sliceIndex is a storage.ArchiveIndex over a slice whose keys are 8-byte
// big-endian positions, like memstore's. Storagetest checks PageArchive's
// results through both backends; these tests check how it uses an index.
type sliceIndex struct {
	msgs    []storage.ArchivedMessage
	onScan  func(n int) // called before each yield with the number yielded so far
	keyErr  error
	loaded  int
	scanned int
}

func (ix *sliceIndex) pos(k []byte) int {
	i := int(binary.BigEndian.Uint64(k))
	if len(k) > 8 {
		i++
	}
	return i
}

func (ix *sliceIndex) Key(_ context.Context, id string) ([]byte, error) {
	if ix.keyErr != nil {
		return nil, ix.keyErr
	}
	for i, m := range ix.msgs {
		if m.ID == id {
			return binary.BigEndian.AppendUint64(nil, uint64(i)), nil
		}
	}
	return nil, nil
}

func (ix *sliceIndex) TimeKey(_ context.Context, t time.Time) ([]byte, error) {
	i := 0
	for i < len(ix.msgs) && ix.msgs[i].Time.Before(t) {
		i++
	}
	return binary.BigEndian.AppendUint64(nil, uint64(i)), nil
}

func (ix *sliceIndex) Scan(_ context.Context, from, to []byte, with storage.ArchiveWith, yield func([]byte) bool) error {
	lo, hi := 0, len(ix.msgs)
	if from != nil {
		lo = ix.pos(from)
	}
	if to != nil {
		hi = min(hi, ix.pos(to))
	}
	var buf [8]byte
	for i := lo; i < hi; i++ {
		if !with.Matches(ix.msgs[i].With, ix.msgs[i].WithResource) {
			continue
		}
		if ix.onScan != nil {
			ix.onScan(ix.scanned)
		}
		ix.scanned++
		binary.BigEndian.PutUint64(buf[:], uint64(i))
		if !yield(buf[:]) {
			break
		}
	}
	return nil
}

func (ix *sliceIndex) Messages(_ context.Context, dst []storage.ArchivedMessage, keys [][]byte) ([]storage.ArchivedMessage, error) {
	for _, k := range keys {
		ix.loaded++
		dst = append(dst, ix.msgs[ix.pos(k)])
	}
	return dst, nil
}

func newSliceIndex(n int) *sliceIndex {
	ix := &sliceIndex{}
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for i := range n {
		ix.msgs = append(ix.msgs, storage.ArchivedMessage{ID: string(binary.BigEndian.AppendUint32(nil, uint32(i))),
			Time: t0.Add(time.Duration(i) * time.Second), With: "bob@example.org"})
	}
	return ix
}

// TestPageArchiveLoadsOnlyThePage checks that only the page's messages are
// loaded, also when a backward page rings over a long scan.
func TestPageArchiveLoadsOnlyThePage(t *testing.T) {
	ix := newSliceIndex(1000)
	p, err := storage.PageArchive(context.Background(), ix, storage.ArchiveQuery{Backward: true, Limit: 7})
	if err != nil {
		t.Fatal(err)
	}
	if ix.loaded != 7 || len(p.Messages) != 7 || p.Messages[0].ID != ix.msgs[993].ID || p.Messages[6].ID != ix.msgs[999].ID {
		t.Errorf("loaded %d, page %d messages from index %d", ix.loaded, len(p.Messages), p.Index)
	}
	ix.loaded = 0
	if p, err = storage.PageArchive(context.Background(), ix, storage.ArchiveQuery{}); err != nil || p.Count != 1000 || ix.loaded != 0 {
		t.Errorf("limit 0: %+v, %v, %d loaded", p, err, ix.loaded)
	}
}

// TestPageArchiveContext checks that a scan stops soon after its context
// is cancelled, with an error wrapping context.Canceled.
func TestPageArchiveContext(t *testing.T) {
	ix := newSliceIndex(100000)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ix.onScan = func(n int) {
		if n == 10 {
			cancel()
		}
	}
	_, err := storage.PageArchive(ctx, ix, storage.ArchiveQuery{Limit: 10})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("PageArchive with a context cancelled during the scan: %v", err)
	}
	if ix.scanned > 10+2048 {
		t.Errorf("scanned %d messages after the context ended", ix.scanned-10)
	}
}

// TestPageArchiveKeyError checks that an index's error is returned and an
// unknown ID is ErrNotFound.
func TestPageArchiveKeyError(t *testing.T) {
	ix := newSliceIndex(3)
	if _, err := storage.PageArchive(context.Background(), ix, storage.ArchiveQuery{After: "nope", Limit: 1}); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("unknown ID: %v, want ErrNotFound", err)
	}
	boom := errors.New("boom")
	ix.keyErr = boom
	if _, err := storage.PageArchive(context.Background(), ix, storage.ArchiveQuery{IDs: []string{"x"}, Limit: 1}); !errors.Is(err, boom) {
		t.Errorf("failing Key: %v, want boom", err)
	}
}

func TestArchiveWith(t *testing.T) {
	for _, c := range []struct {
		with, jid, res string
		want           bool
	}{
		{"", "bob@example.org", "phone", true},
		{"bob@example.org", "bob@example.org", "phone", true},
		{"bob@example.org", "bob@example.org", "", true},
		{"bob@example.org", "bobby@example.org", "", false},
		{"bob@example.org/phone", "bob@example.org", "phone", true},
		{"bob@example.org/phone", "bob@example.org", "", false},
		{"bob@example.org/", "bob@example.org", "", true},
		{"bob@example.org/", "bob@example.org", "phone", false},
	} {
		if got := storage.ParseArchiveWith(c.with).Matches(c.jid, c.res); got != c.want {
			t.Errorf("With %q matches %q/%q = %v, want %v", c.with, c.jid, c.res, got, c.want)
		}
	}
}
