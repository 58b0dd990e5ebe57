package boltstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/treff-im/treff/storage"
)

// TestBackup: a copy taken while another goroutine creates accounts one
// after the other opens as a Treff database and holds a prefix of them
// (never a later account without an earlier one), plus everything written
// before Backup, including an archived message still queued.
func TestBackup(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t, &Options{NoSync: true})
	defer s.Close()
	if err := s.CreateAccount(ctx, storage.Account{JID: "before@example.org", Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	id, err := s.AppendArchive(ctx, "before@example.org", storage.ArchivedMessage{Time: time.Now(), With: "bob@example.org", Stanza: []byte("<message/>")})
	if err != nil {
		t.Fatal(err)
	}

	const n = 200
	started := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		for i := range n {
			if err := s.CreateAccount(ctx, storage.Account{JID: fmt.Sprintf("u%03d@example.org", i), Created: time.Now()}); err != nil {
				done <- err
				return
			}
			if i == 0 {
				close(started)
			}
		}
		done <- nil
	}()
	<-started
	path := filepath.Join(t.TempDir(), "copy.db")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	size, err := s.Backup(ctx, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Size() != size {
		t.Errorf("Backup returned %d, the file has %d bytes", size, fi.Size())
	}
	checkFile(t, path)

	c, err := Open(path, nil)
	if err != nil {
		t.Fatalf("opening the copy: %v", err)
	}
	defer c.Close()
	accts, err := c.ListAccounts(ctx, "example.org")
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, a := range accts {
		have[a.JID] = true
	}
	if !have["before@example.org"] || !have["u000@example.org"] {
		t.Fatalf("the copy lacks accounts written before Backup: %d accounts", len(accts))
	}
	k := len(accts) - 1 // the u accounts in the copy
	for i := range k {
		if u := fmt.Sprintf("u%03d@example.org", i); !have[u] {
			t.Errorf("the copy has %d of the accounts created in order but not %s: not a consistent snapshot", k, u)
		}
	}
	p, err := c.QueryArchive(ctx, "before@example.org", storage.ArchiveQuery{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Messages) != 1 || p.Messages[0].ID != id {
		t.Errorf("the queued archived message is not in the copy: %+v", p.Messages)
	}
}

func TestBackupClosed(t *testing.T) {
	s, _ := openTemp(t, nil)
	s.Close()
	if _, err := s.Backup(context.Background(), io.Discard); !errors.Is(err, storage.ErrClosed) {
		t.Errorf("Backup of a closed store: %v, want ErrClosed", err)
	}
}
