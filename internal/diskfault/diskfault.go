//go:build linux

// Package diskfault makes the writes to a file that this process has
// open fail as on a full disk, for tests of what a store does when its
// disk fills up, without filling a disk.
//
// Fill puts /dev/full behind the file's descriptor (dup3), so that
// writing it fails with ENOSPC, and growing or syncing it with EINVAL,
// while a memory map of it (bbolt reads through one) keeps working; Free
// puts the file back. The store under test notices nothing but failing
// writes. A store that maps its file must not need to map more of it
// while the fault lasts: bbolt does when its file grows past the map, so
// tests give the file room first (Grow, before opening it).
package diskfault

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
)

// File is a file this process has open, whose writes can be made to fail.
type File struct {
	mu      sync.Mutex
	fd      int      // the descriptor the store writes through
	saved   int      // a duplicate of it, put back by Free
	full    *os.File // /dev/full
	failing bool
}

// Find finds the one descriptor of this process that has the file at
// path open.
func Find(path string) (*File, error) {
	want, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	if want, err = filepath.EvalSymlinks(want); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil, err
	}
	fd := -1
	for _, e := range ents {
		target, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil || target != want {
			continue
		}
		if fd >= 0 {
			return nil, fmt.Errorf("diskfault: %s is open more than once", path)
		}
		if fd, err = strconv.Atoi(e.Name()); err != nil {
			return nil, err
		}
	}
	if fd < 0 {
		return nil, fmt.Errorf("diskfault: %s is not open", path)
	}
	saved, err := syscall.Dup(fd)
	if err != nil {
		return nil, fmt.Errorf("diskfault: %w", err)
	}
	syscall.CloseOnExec(saved)
	full, err := os.OpenFile("/dev/full", os.O_RDWR, 0)
	if err != nil {
		syscall.Close(saved)
		return nil, fmt.Errorf("diskfault: %w", err)
	}
	return &File{fd: fd, saved: saved, full: full}, nil
}

// Fill makes the file's writes fail with ENOSPC until Free.
func (f *File) Fill() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.full == nil {
		return errors.New("diskfault: closed")
	}
	if err := syscall.Dup3(int(f.full.Fd()), f.fd, syscall.O_CLOEXEC); err != nil {
		return fmt.Errorf("diskfault: fill: %w", err)
	}
	f.failing = true
	return nil
}

// Free makes the file's writes succeed again.
func (f *File) Free() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.failing {
		return nil
	}
	if err := syscall.Dup3(f.saved, f.fd, syscall.O_CLOEXEC); err != nil {
		return fmt.Errorf("diskfault: free: %w", err)
	}
	f.failing = false
	return nil
}

// Close frees the file and releases what Find took. Call it before the
// store closes its file (after, call Forget); later calls do nothing.
func (f *File) Close() error {
	err := f.Free()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.full != nil {
		f.full.Close()
		syscall.Close(f.saved)
		f.full = nil
	}
	return err
}

// Forget releases what Find took without touching the descriptor, for a
// store that closed its file while it was filled (Free would then write
// over a descriptor number that may be reused). It closes the duplicate,
// which releases the file's locks.
func (f *File) Forget() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.full != nil {
		f.full.Close()
		syscall.Close(f.saved)
		f.full = nil
	}
	f.failing = false
}

// Grow extends the file at path to at least size bytes (a sparse
// extension, which costs no disk space), so that a store that maps its
// file whole when it opens it need not map more while writes fail.
func Grow(path string, size int64) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.Size() >= size {
		return nil
	}
	return os.Truncate(path, size)
}
