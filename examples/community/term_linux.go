//go:build linux

package main

import (
	"os"
	"syscall"
	"unsafe"
)

func getTermios(f *os.File) (syscall.Termios, bool) {
	var t syscall.Termios
	_, _, e := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), syscall.TCGETS, uintptr(unsafe.Pointer(&t)))
	return t, e == 0
}

func setTermios(f *os.File, t *syscall.Termios) bool {
	_, _, e := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), syscall.TCSETS, uintptr(unsafe.Pointer(t)))
	return e == 0
}

// isTerminal reports whether f is a terminal.
func isTerminal(f *os.File) bool {
	_, ok := getTermios(f)
	return ok
}

// noEcho turns off echoing on the terminal f (line editing stays on) and
// returns a function that restores the previous state.
func noEcho(f *os.File) (restore func(), ok bool) {
	old, ok := getTermios(f)
	if !ok {
		return nil, false
	}
	t := old
	t.Lflag &^= syscall.ECHO
	t.Lflag |= syscall.ICANON | syscall.ECHONL
	if !setTermios(f, &t) {
		return nil, false
	}
	return func() { setTermios(f, &old) }, true
}
