//go:build !linux

package main

import "os"

// isTerminal reports whether f may be a terminal.
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// noEcho would turn off echoing; it is implemented on Linux only (the
// module has no golang.org/x/term).
func noEcho(f *os.File) (restore func(), ok bool) { return nil, false }
