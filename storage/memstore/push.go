package memstore

import (
	"cmp"
	"context"
	"slices"

	"github.com/treff-im/treff/storage"
)

var _ storage.PushRegistrations = (*Store)(nil)

// pushKey identifies a push registration within a user's.
type pushKey struct{ service, node string }

// PushRegistrations implements storage.PushRegistrations.
func (s *Store) PushRegistrations(ctx context.Context, user string) ([]storage.PushRegistration, error) {
	if err := s.rlock(ctx, "push registrations", user); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	var out []storage.PushRegistration
	for k, form := range s.push[user] {
		out = append(out, storage.PushRegistration{Service: k.service, Node: k.node, Form: slices.Clone(form)})
	}
	slices.SortFunc(out, func(a, b storage.PushRegistration) int {
		return cmp.Or(cmp.Compare(a.Service, b.Service), cmp.Compare(a.Node, b.Node))
	})
	return out, nil
}

// PutPushRegistration implements storage.PushRegistrations.
func (s *Store) PutPushRegistration(ctx context.Context, user string, r storage.PushRegistration) error {
	if err := s.lock(ctx, "put push registration", user, r.Service); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if s.push == nil {
		s.push = make(map[string]map[pushKey][]byte)
	}
	regs := s.push[user]
	if regs == nil {
		regs = make(map[pushKey][]byte)
		s.push[user] = regs
	}
	regs[pushKey{r.Service, r.Node}] = slices.Clone(r.Form)
	return nil
}

// DeletePushRegistrations implements storage.PushRegistrations.
func (s *Store) DeletePushRegistrations(ctx context.Context, user, service, node string) error {
	if err := s.lock(ctx, "delete push registrations", user, service); err != nil {
		return err
	}
	defer s.mu.Unlock()
	regs := s.push[user]
	for k := range regs {
		if k.service == service && (node == "" || k.node == node) {
			delete(regs, k)
		}
	}
	if len(regs) == 0 {
		delete(s.push, user)
	}
	return nil
}

// DeleteAllPushRegistrations implements storage.PushRegistrations.
func (s *Store) DeleteAllPushRegistrations(ctx context.Context, user string) error {
	if err := s.lock(ctx, "delete all push registrations", user); err != nil {
		return err
	}
	defer s.mu.Unlock()
	delete(s.push, user)
	return nil
}
