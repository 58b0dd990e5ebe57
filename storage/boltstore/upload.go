package boltstore

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/treff-im/treff/storage"
)

var _ storage.Uploads = (*Store)(nil)

// bucketUploads holds one nested bucket per owner, named by bare JID, with
// key = upload ID and value = the encoded record (encodeUpload). Empty
// owner buckets are removed.
//
// bucketUploadIDs maps each upload ID to its owner's bare JID, to find a
// record by ID alone.
var (
	bucketUploads   = []byte("uploads")
	bucketUploadIDs = []byte("upload-ids")
)

// encodeUpload: format byte 1, a flags byte (1 = uploaded), size
// (uvarint), created (8-byte big-endian Unix nanoseconds), then filename
// and content type, each a uvarint length and the bytes. The ID and the
// owner are the keys.
func encodeUpload(u storage.Upload) []byte {
	b := make([]byte, 0, 2+binary.MaxVarintLen64+8+len(u.Filename)+len(u.ContentType)+4)
	var flags byte
	if u.Uploaded {
		flags = 1
	}
	b = append(b, 1, flags)
	b = binary.AppendUvarint(b, uint64(u.Size))
	b = binary.BigEndian.AppendUint64(b, uint64(u.Created.UnixNano()))
	b = binary.AppendUvarint(b, uint64(len(u.Filename)))
	b = append(b, u.Filename...)
	b = binary.AppendUvarint(b, uint64(len(u.ContentType)))
	return append(b, u.ContentType...)
}

func decodeUpload(id, owner string, v []byte) (storage.Upload, error) {
	bad := fmt.Errorf("upload record: %w", errCorrupt)
	if len(v) < 2 || v[0] != 1 {
		return storage.Upload{}, bad
	}
	u := storage.Upload{ID: id, Owner: owner, Uploaded: v[1]&1 != 0}
	v = v[2:]
	size, k := binary.Uvarint(v)
	if k <= 0 || len(v) < k+8 {
		return storage.Upload{}, bad
	}
	u.Size = int64(size)
	u.Created = time.Unix(0, int64(binary.BigEndian.Uint64(v[k:k+8]))).UTC()
	v = v[k+8:]
	str := func() (string, bool) {
		n, k := binary.Uvarint(v)
		if k <= 0 || uint64(len(v)-k) < n {
			return "", false
		}
		s := string(v[k : k+int(n)])
		v = v[k+int(n):]
		return s, true
	}
	var ok1, ok2 bool
	u.Filename, ok1 = str()
	u.ContentType, ok2 = str()
	if !ok1 || !ok2 || len(v) != 0 {
		return storage.Upload{}, bad
	}
	return u, nil
}

// ownerUsage sums the sizes of the records in an owner's bucket.
func ownerUsage(ob *bolt.Bucket, owner string) (int64, error) {
	var n int64
	if ob == nil {
		return 0, nil
	}
	err := ob.ForEach(func(k, v []byte) error {
		u, err := decodeUpload(string(k), owner, v)
		if err != nil {
			return err
		}
		n += u.Size
		return nil
	})
	return n, err
}

// CreateUpload implements storage.Uploads.
func (s *Store) CreateUpload(ctx context.Context, u storage.Upload, quota int64) error {
	if u.ID == "" {
		return fail(errors.New("empty ID"), "create upload")
	}
	if u.Owner == "" {
		return fail(errEmptyJID, "create upload")
	}
	err := s.update(ctx, func(tx *bolt.Tx) error {
		ids, err := tx.CreateBucketIfNotExists(bucketUploadIDs)
		if err != nil {
			return err
		}
		if ids.Get([]byte(u.ID)) != nil {
			return storage.ErrExists
		}
		b, err := tx.CreateBucketIfNotExists(bucketUploads)
		if err != nil {
			return err
		}
		if quota > 0 {
			used, err := ownerUsage(b.Bucket([]byte(u.Owner)), u.Owner)
			if err != nil {
				return err
			}
			if used+u.Size > quota {
				return storage.ErrQuotaExceeded
			}
		}
		ob, err := b.CreateBucketIfNotExists([]byte(u.Owner))
		if err != nil {
			return err
		}
		if err := ids.Put([]byte(u.ID), []byte(u.Owner)); err != nil {
			return err
		}
		return ob.Put([]byte(u.ID), encodeUpload(u))
	})
	if err != nil {
		return fail(err, "create upload")
	}
	return nil
}

// uploadBucket returns the owner bucket that holds id, and the owner;
// ErrNotFound if there is no record.
func uploadBucket(tx *bolt.Tx, id string) (*bolt.Bucket, string, error) {
	ids := tx.Bucket(bucketUploadIDs)
	if ids == nil {
		return nil, "", storage.ErrNotFound
	}
	owner := ids.Get([]byte(id))
	if owner == nil {
		return nil, "", storage.ErrNotFound
	}
	var ob *bolt.Bucket
	if b := tx.Bucket(bucketUploads); b != nil {
		ob = b.Bucket(owner)
	}
	if ob == nil || ob.Get([]byte(id)) == nil {
		return nil, "", fmt.Errorf("upload index: %w", errCorrupt)
	}
	return ob, string(owner), nil
}

// Upload implements storage.Uploads.
func (s *Store) Upload(ctx context.Context, id string) (storage.Upload, error) {
	var u storage.Upload
	err := s.view(ctx, func(tx *bolt.Tx) error {
		ob, owner, err := uploadBucket(tx, id)
		if err != nil {
			return err
		}
		u, err = decodeUpload(id, owner, ob.Get([]byte(id)))
		return err
	})
	if err != nil {
		return storage.Upload{}, fail(err, "upload")
	}
	return u, nil
}

// MarkUploaded implements storage.Uploads.
func (s *Store) MarkUploaded(ctx context.Context, id string) error {
	err := s.update(ctx, func(tx *bolt.Tx) error {
		ob, owner, err := uploadBucket(tx, id)
		if err != nil {
			return err
		}
		u, err := decodeUpload(id, owner, ob.Get([]byte(id)))
		if err != nil {
			return err
		}
		if u.Uploaded {
			return storage.ErrExists
		}
		u.Uploaded = true
		return ob.Put([]byte(id), encodeUpload(u))
	})
	if err != nil {
		return fail(err, "mark uploaded")
	}
	return nil
}

// UploadUsage implements storage.Uploads.
func (s *Store) UploadUsage(ctx context.Context, owner string) (int64, error) {
	if owner == "" {
		return 0, fail(errEmptyJID, "upload usage")
	}
	var n int64
	err := s.view(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketUploads)
		if b == nil {
			return nil
		}
		var err error
		n, err = ownerUsage(b.Bucket([]byte(owner)), owner)
		return err
	})
	if err != nil {
		return 0, fail(err, "upload usage of %q", owner)
	}
	return n, nil
}

// ListUploads implements storage.Uploads.
func (s *Store) ListUploads(ctx context.Context, owner string) ([]storage.Upload, error) {
	if owner == "" {
		return nil, fail(errEmptyJID, "list uploads")
	}
	out := []storage.Upload{}
	err := s.view(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketUploads)
		if b == nil {
			return nil
		}
		ob := b.Bucket([]byte(owner))
		if ob == nil {
			return nil
		}
		return ob.ForEach(func(k, v []byte) error {
			u, err := decodeUpload(string(k), owner, v)
			if err != nil {
				return err
			}
			out = append(out, u)
			return nil
		})
	})
	if err != nil {
		return nil, fail(err, "list uploads of %q", owner)
	}
	slices.SortFunc(out, func(a, b storage.Upload) int {
		return cmp.Or(a.Created.Compare(b.Created), strings.Compare(a.ID, b.ID))
	})
	return out, nil
}

// ExpiredUploads implements storage.Uploads. It reads every record: the
// upload module calls it about once an hour.
func (s *Store) ExpiredUploads(ctx context.Context, uploadedBefore, pendingBefore time.Time) ([]storage.Upload, error) {
	var out []storage.Upload
	err := s.view(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketUploads)
		if b == nil {
			return nil
		}
		return b.ForEachBucket(func(owner []byte) error {
			return b.Bucket(owner).ForEach(func(k, v []byte) error {
				u, err := decodeUpload(string(k), string(owner), v)
				if err != nil {
					return err
				}
				if (u.Uploaded && u.Created.Before(uploadedBefore)) || (!u.Uploaded && u.Created.Before(pendingBefore)) {
					out = append(out, u)
				}
				return nil
			})
		})
	})
	if err != nil {
		return nil, fail(err, "expired uploads")
	}
	return out, nil
}

// DeleteUpload implements storage.Uploads.
func (s *Store) DeleteUpload(ctx context.Context, id string) error {
	err := s.update(ctx, func(tx *bolt.Tx) error {
		ob, owner, err := uploadBucket(tx, id)
		if errors.Is(err, storage.ErrNotFound) {
			return nil
		}
		if err != nil && !errors.Is(err, errCorrupt) {
			return err
		}
		if ids := tx.Bucket(bucketUploadIDs); ids != nil {
			if err := ids.Delete([]byte(id)); err != nil {
				return err
			}
		}
		if ob == nil {
			return nil
		}
		if err := ob.Delete([]byte(id)); err != nil {
			return err
		}
		if k, _ := ob.Cursor().First(); k == nil {
			return tx.Bucket(bucketUploads).DeleteBucket([]byte(owner))
		}
		return nil
	})
	if err != nil {
		return fail(err, "delete upload")
	}
	return nil
}

// DeleteUploads implements storage.Uploads.
func (s *Store) DeleteUploads(ctx context.Context, owner string) error {
	if owner == "" {
		return fail(errEmptyJID, "delete uploads")
	}
	err := s.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketUploads)
		if b == nil {
			return nil
		}
		ob := b.Bucket([]byte(owner))
		if ob == nil {
			return nil
		}
		if ids := tx.Bucket(bucketUploadIDs); ids != nil {
			var keys [][]byte
			if err := ob.ForEach(func(k, _ []byte) error {
				keys = append(keys, bytes.Clone(k))
				return nil
			}); err != nil {
				return err
			}
			for _, k := range keys {
				if err := ids.Delete(k); err != nil {
					return err
				}
			}
		}
		return b.DeleteBucket([]byte(owner))
	})
	if err != nil {
		return fail(err, "delete uploads of %q", owner)
	}
	return nil
}
