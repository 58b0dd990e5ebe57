//go:build linux

package treff

import (
	"sync"
	"syscall"
)

// On Linux a parked session holds no goroutine at all: its socket is
// registered with one epoll instance shared by all servers of the process,
// whose single goroutine starts a session's read loop again when its
// client sends something (or hangs up). Registrations are one-shot and
// re-armed at each park, so a stale event (a session woken another way,
// or a descriptor closed and reused) finds a session that is not parked
// and is ignored.
var poller struct {
	once sync.Once
	epfd int
	err  error
	mu   sync.Mutex
	fds  map[int32]*Session
}

func startPoller() error {
	poller.once.Do(func() {
		poller.epfd, poller.err = syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
		if poller.err != nil {
			return
		}
		poller.fds = make(map[int32]*Session)
		go pollLoop()
	})
	return poller.err
}

func pollLoop() {
	events := make([]syscall.EpollEvent, 256)
	ready := make([]*Session, 0, 256)
	for {
		n, err := syscall.EpollWait(poller.epfd, events, -1)
		if err != nil {
			continue // EINTR; no other error can occur with valid arguments
		}
		poller.mu.Lock()
		for _, ev := range events[:n] {
			if s := poller.fds[ev.Fd]; s != nil {
				ready = append(ready, s)
			}
		}
		poller.mu.Unlock()
		for i, s := range ready {
			s.unpark(nil)
			ready[i] = nil
		}
		ready = ready[:0]
	}
}

// watch registers the session's socket for its next readable event and
// reports whether it could.
func (s *Session) watch() bool {
	sc, ok := s.conn().nc.(syscall.Conn)
	if !ok || startPoller() != nil {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	ok = false
	rc.Control(func(fd uintptr) {
		poller.mu.Lock()
		poller.fds[int32(fd)] = s
		s.fd = int32(fd)
		poller.mu.Unlock()
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT, Fd: int32(fd)}
		err := syscall.EpollCtl(poller.epfd, syscall.EPOLL_CTL_MOD, int(fd), &ev)
		if err == syscall.ENOENT {
			err = syscall.EpollCtl(poller.epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev)
		}
		ok = err == nil
	})
	return ok
}

// unwatch forgets the session's socket (when the session ends).
func (s *Session) unwatch() {
	poller.mu.Lock()
	if s.fd >= 0 && poller.fds[s.fd] == s {
		delete(poller.fds, s.fd)
	}
	poller.mu.Unlock()
}
