package storage

import (
	"context"
	"time"
)

// Upload is the record of one file of HTTP File Upload (XEP-0363): a slot
// handed out to a user and, once the user has PUT the file, the file
// served at the slot's GET URL. The file's bytes are kept elsewhere (in a
// blob store, under the record's ID); the record holds what is needed to
// serve them, to count the owner's quota and to expire them.
type Upload struct {
	// ID is the slot's secret, unguessable identifier, unique per store;
	// it is part of the file's URL and the key of its bytes.
	ID string
	// Owner is the bare JID of the user who requested the slot.
	Owner string
	// Filename is the file name the user gave (part of the URL and of
	// the Content-Disposition header).
	Filename string
	// Size is the file's size in bytes, as requested.
	Size int64
	// ContentType is the file's media type, as requested.
	ContentType string
	// Created is when the slot was handed out (UTC).
	Created time.Time
	// Uploaded reports that the file was PUT completely.
	Uploaded bool
}

// Uploads stores the records of uploaded files and of slots not used
// yet. Optional: the upload module finds it by type assertion.
type Uploads interface {
	// CreateUpload stores a new record (u.Uploaded is stored as given).
	// It returns ErrExists if the ID is taken, and ErrQuotaExceeded,
	// storing nothing, if the sizes of the owner's records (uploaded or
	// not) plus u.Size would exceed quota; quota <= 0 means no limit.
	// The check and the write are atomic.
	CreateUpload(ctx context.Context, u Upload, quota int64) error
	// Upload returns the record with the given ID, or ErrNotFound.
	Upload(ctx context.Context, id string) (Upload, error)
	// MarkUploaded sets the record's Uploaded flag, atomically: it returns
	// ErrNotFound if there is no record and ErrExists if the flag was set
	// already, so that one slot takes one file.
	MarkUploaded(ctx context.Context, id string) error
	// UploadUsage returns the sum of the sizes of the owner's records.
	UploadUsage(ctx context.Context, owner string) (int64, error)
	// ListUploads returns the owner's records, sorted by Created, then ID.
	ListUploads(ctx context.Context, owner string) ([]Upload, error)
	// ExpiredUploads returns, in no particular order, the uploaded records
	// created before uploadedBefore and the records not uploaded created
	// before pendingBefore (slots whose PUT URL is no longer valid).
	ExpiredUploads(ctx context.Context, uploadedBefore, pendingBefore time.Time) ([]Upload, error)
	// DeleteUpload removes a record; a missing one is not an error.
	DeleteUpload(ctx context.Context, id string) error
	// DeleteUploads removes all records of the owner (account removal).
	DeleteUploads(ctx context.Context, owner string) error
}
