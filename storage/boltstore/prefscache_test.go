package boltstore_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"

	"github.com/treff-im/treff/storage"
	"github.com/treff-im/treff/storage/boltstore"
)

// TestArchivePrefsCached checks that the preferences the store keeps in
// memory follow every write: a change, a deletion of the archive, a
// caller changing what it was given, and writes racing with reads.
func TestArchivePrefsCached(t *testing.T) {
	ctx := context.Background()
	s, err := boltstore.Open(filepath.Join(t.TempDir(), "db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const u = "alice@example.org"
	get := func() storage.ArchivePrefs {
		t.Helper()
		p, err := s.ArchivePrefs(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	if p := get(); p.Default != "" || p.Always != nil {
		t.Fatalf("new user: %+v", p)
	}
	want := storage.ArchivePrefs{Default: storage.ArchiveRoster, Always: []string{"bob@example.org"}}
	if err := s.SetArchivePrefs(ctx, u, want); err != nil {
		t.Fatal(err)
	}
	p := get()
	if p.Default != storage.ArchiveRoster || len(p.Always) != 1 || p.Always[0] != "bob@example.org" {
		t.Fatalf("after set: %+v", p)
	}
	p.Always[0] = "mallory@example.org" // the caller's copy
	if p := get(); p.Always[0] != "bob@example.org" {
		t.Fatalf("a caller's change reached the store: %+v", p)
	}
	if err := s.DeleteArchive(ctx, u); err != nil {
		t.Fatal(err)
	}
	if p := get(); p.Default != "" || len(p.Always) != 0 {
		t.Fatalf("after deleting the archive: %+v", p)
	}

	// Readers racing with a writer end with the last value written.
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				if _, err := s.ArchivePrefs(ctx, u); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	defaults := []storage.ArchiveDefault{storage.ArchiveAlways, storage.ArchiveNever, storage.ArchiveRoster}
	for i := range 60 {
		if err := s.SetArchivePrefs(ctx, u, storage.ArchivePrefs{Default: defaults[i%3]}); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	if p := get(); p.Default != defaults[59%3] {
		t.Fatalf("after racing writes: %+v, want default %q", p, defaults[59%3])
	}
}
