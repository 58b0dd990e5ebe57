//go:build unix

package main

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestGiveToOwnerOf: run as root, the snapshot file made for the server
// belongs to the data folder's owner, so that a server running as that
// user can write it.
func TestGiveToOwnerOf(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a file away")
	}
	const uid, gid = 65534, 65534 // nobody, nogroup
	dir := t.TempDir()
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(dir, ".backup-1.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := giveToOwnerOf(f, dir); err != nil {
		t.Fatal(err)
	}
	fi, _ := f.Stat()
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != uid || st.Gid != gid {
		t.Errorf("file owned by %d:%d, want %d:%d", st.Uid, st.Gid, uid, gid)
	}
}
