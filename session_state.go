package treff

import "sync"

// SessionState is a module's typed slot on every session, for state a
// module keeps per session (whether the client asked for the roster, its
// carbons setting, ...). A value lives as long as its session: it
// survives stream resumption (XEP-0198), is still readable in
// OnSessionClosed hooks, and is dropped when the session has ended, so a
// module needs no clean-up hook and no map keyed by *Session.
//
// Make one with NewSessionState at package or module level and use it
// from any goroutine:
//
//	var interested = treff.NewSessionState[bool]()
//
//	interested.Set(s, true)
//	if v, _ := interested.Get(s); v { ... }
type SessionState[T any] struct {
	_ byte // a distinct address per state: the key
}

// NewSessionState returns a new, empty slot.
func NewSessionState[T any]() *SessionState[T] { return new(SessionState[T]) }

// sessionValues holds a session's module state; the zero value is empty.
// A session has a handful of values at most, so a slice searched in
// order costs less memory than a map (an idle session is what a server
// holds most of) and no more time.
type sessionValues struct {
	mu sync.Mutex
	kv []sessionValue
}

type sessionValue struct {
	k any // *SessionState[T]
	v any // T
}

func (sv *sessionValues) find(k any) int {
	for i := range sv.kv {
		if sv.kv[i].k == k {
			return i
		}
	}
	return -1
}

func (sv *sessionValues) set(k, v any) {
	if i := sv.find(k); i >= 0 {
		sv.kv[i].v = v
		return
	}
	sv.kv = append(sv.kv, sessionValue{k, v})
}

// Get returns the session's value and whether it was set.
func (k *SessionState[T]) Get(s *Session) (v T, ok bool) {
	s.values.mu.Lock()
	i := s.values.find(k)
	if i >= 0 {
		v, ok = s.values.kv[i].v.(T), true
	}
	s.values.mu.Unlock()
	return v, ok
}

// Set sets the session's value. It does nothing once the session has
// ended: its state is gone.
func (k *SessionState[T]) Set(s *Session, v T) {
	s.values.mu.Lock()
	if !s.valuesGone {
		s.values.set(k, v)
	}
	s.values.mu.Unlock()
}

// Update sets the session's value to f(old, ok) atomically: no other
// Set or Update of the session's state runs meanwhile, so f must not use
// the session's state itself. It returns the new value (the zero value,
// without calling f, once the session has ended).
func (k *SessionState[T]) Update(s *Session, f func(old T, ok bool) T) T {
	s.values.mu.Lock()
	defer s.values.mu.Unlock()
	var zero T
	if s.valuesGone {
		return zero
	}
	var o T
	i := s.values.find(k)
	if i >= 0 {
		o = s.values.kv[i].v.(T)
	}
	v := f(o, i >= 0)
	s.values.set(k, v)
	return v
}

// Delete removes the session's value.
func (k *SessionState[T]) Delete(s *Session) {
	s.values.mu.Lock()
	if i := s.values.find(k); i >= 0 {
		kv := s.values.kv
		copy(kv[i:], kv[i+1:])
		kv[len(kv)-1] = sessionValue{} // no stale reference
		s.values.kv = kv[:len(kv)-1]
	}
	s.values.mu.Unlock()
}

// dropValues frees the session's module state, after the session-closed
// hooks ran.
func (s *Session) dropValues() {
	s.values.mu.Lock()
	s.values.kv = nil
	s.valuesGone = true
	s.values.mu.Unlock()
}
