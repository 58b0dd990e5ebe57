//go:build unix

package main

import (
	"os"
	"syscall"
)

// giveToOwnerOf makes f belong to the owner of dir, when this process
// runs as root and dir belongs to another user: a command run as root
// makes a file that the server, running as the data folder's owner, must
// write (see serverSnapshot).
func giveToOwnerOf(f *os.File, dir string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || st.Uid == 0 {
		return nil
	}
	return f.Chown(int(st.Uid), int(st.Gid))
}
