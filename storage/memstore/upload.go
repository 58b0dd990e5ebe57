package memstore

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/treff-im/treff/storage"
)

var _ storage.Uploads = (*Store)(nil)

// CreateUpload implements storage.Uploads.
func (s *Store) CreateUpload(ctx context.Context, u storage.Upload, quota int64) error {
	if u.ID == "" {
		return fmt.Errorf("memstore: create upload: empty ID")
	}
	if u.Owner == "" {
		return fmt.Errorf("memstore: create upload: %w", errEmptyJID)
	}
	if err := s.lock(ctx, "create upload"); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if _, ok := s.uploads[u.ID]; ok {
		return fmt.Errorf("memstore: create upload: %w", storage.ErrExists)
	}
	if quota > 0 && s.usage(u.Owner)+u.Size > quota {
		return fmt.Errorf("memstore: create upload: %w", storage.ErrQuotaExceeded)
	}
	if s.uploads == nil {
		s.uploads = make(map[string]storage.Upload)
	}
	u.Created = u.Created.UTC()
	s.uploads[u.ID] = u
	return nil
}

// usage sums the sizes of the owner's records; the caller holds s.mu.
func (s *Store) usage(owner string) int64 {
	var n int64
	for _, u := range s.uploads {
		if u.Owner == owner {
			n += u.Size
		}
	}
	return n
}

// Upload implements storage.Uploads.
func (s *Store) Upload(ctx context.Context, id string) (storage.Upload, error) {
	if err := s.rlock(ctx, "upload"); err != nil {
		return storage.Upload{}, err
	}
	defer s.mu.RUnlock()
	u, ok := s.uploads[id]
	if !ok {
		return storage.Upload{}, fmt.Errorf("memstore: upload: %w", storage.ErrNotFound)
	}
	return u, nil
}

// MarkUploaded implements storage.Uploads.
func (s *Store) MarkUploaded(ctx context.Context, id string) error {
	if err := s.lock(ctx, "mark uploaded"); err != nil {
		return err
	}
	defer s.mu.Unlock()
	u, ok := s.uploads[id]
	if !ok {
		return fmt.Errorf("memstore: mark uploaded: %w", storage.ErrNotFound)
	}
	if u.Uploaded {
		return fmt.Errorf("memstore: mark uploaded: %w", storage.ErrExists)
	}
	u.Uploaded = true
	s.uploads[id] = u
	return nil
}

// UploadUsage implements storage.Uploads.
func (s *Store) UploadUsage(ctx context.Context, owner string) (int64, error) {
	if err := s.rlock(ctx, "upload usage", owner); err != nil {
		return 0, err
	}
	defer s.mu.RUnlock()
	return s.usage(owner), nil
}

// ListUploads implements storage.Uploads.
func (s *Store) ListUploads(ctx context.Context, owner string) ([]storage.Upload, error) {
	if err := s.rlock(ctx, "list uploads", owner); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	out := []storage.Upload{}
	for _, u := range s.uploads {
		if u.Owner == owner {
			out = append(out, u)
		}
	}
	slices.SortFunc(out, func(a, b storage.Upload) int {
		return cmp.Or(a.Created.Compare(b.Created), strings.Compare(a.ID, b.ID))
	})
	return out, nil
}

// ExpiredUploads implements storage.Uploads.
func (s *Store) ExpiredUploads(ctx context.Context, uploadedBefore, pendingBefore time.Time) ([]storage.Upload, error) {
	if err := s.rlock(ctx, "expired uploads"); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	var out []storage.Upload
	for _, u := range s.uploads {
		if (u.Uploaded && u.Created.Before(uploadedBefore)) || (!u.Uploaded && u.Created.Before(pendingBefore)) {
			out = append(out, u)
		}
	}
	return out, nil
}

// DeleteUpload implements storage.Uploads.
func (s *Store) DeleteUpload(ctx context.Context, id string) error {
	if err := s.lock(ctx, "delete upload"); err != nil {
		return err
	}
	defer s.mu.Unlock()
	delete(s.uploads, id)
	return nil
}

// DeleteUploads implements storage.Uploads.
func (s *Store) DeleteUploads(ctx context.Context, owner string) error {
	if err := s.lock(ctx, "delete uploads", owner); err != nil {
		return err
	}
	defer s.mu.Unlock()
	for id, u := range s.uploads {
		if u.Owner == owner {
			delete(s.uploads, id)
		}
	}
	return nil
}
