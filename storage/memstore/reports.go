package memstore

import (
	"context"
	"fmt"
	"slices"
	"strconv"

	"github.com/treff-im/treff/storage"
)

var _ storage.Reports = (*Store)(nil)

// AddReport implements storage.Reports.
func (s *Store) AddReport(ctx context.Context, r storage.Report) (string, error) {
	if err := s.lock(ctx, "add report"); err != nil {
		return "", err
	}
	defer s.mu.Unlock()
	s.reportSeq++
	r.ID = fmt.Sprintf("%016d", s.reportSeq)
	r.Time = r.Time.UTC()
	r.MessageIDs = slices.Clone(r.MessageIDs)
	s.reports = append(s.reports, r)
	return r.ID, nil
}

// ListReports implements storage.Reports.
func (s *Store) ListReports(ctx context.Context) ([]storage.Report, error) {
	if err := s.rlock(ctx, "list reports"); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	out := make([]storage.Report, len(s.reports))
	for i, r := range s.reports {
		r.MessageIDs = slices.Clone(r.MessageIDs)
		out[i] = r
	}
	return out, nil
}

// DeleteReport implements storage.Reports.
func (s *Store) DeleteReport(ctx context.Context, id string) error {
	if err := s.lock(ctx, "delete report"); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if _, err := strconv.ParseUint(id, 10, 64); err == nil {
		for i, r := range s.reports {
			if r.ID == id {
				s.reports = slices.Delete(s.reports, i, i+1)
				return nil
			}
		}
	}
	return fmt.Errorf("memstore: delete report %q: %w", id, storage.ErrNotFound)
}
