package upload

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// BlobStore keeps the bytes of uploaded files, each under a key (the
// slot ID: letters, digits, '-' and '_'). Methods are called
// concurrently, but never twice at once for one key.
type BlobStore interface {
	// Put stores exactly size bytes read from r under key. If r ends
	// early, fails or has more, Put stores nothing and returns an error
	// (wrapping ErrSize for a wrong length).
	Put(ctx context.Context, key string, r io.Reader, size int64) error
	// Open returns the bytes stored under key; an error wrapping
	// fs.ErrNotExist if there are none.
	Open(ctx context.Context, key string) (io.ReadSeekCloser, error)
	// Delete removes what is stored under key; a missing key is not an
	// error.
	Delete(ctx context.Context, key string) error
}

// ErrSize reports a file whose length is not the slot's size.
var ErrSize = errors.New("upload: the file's length is not the slot's size")

// DirStore is a BlobStore keeping each file in a folder, named by its
// key. A file is written to a temporary name, synced and renamed, so a
// reader never sees half a file. The folder is created (mode 0700) when
// the first file is stored.
type DirStore struct {
	// Dir is the folder.
	Dir string
}

var _ BlobStore = DirStore{}

func (d DirStore) path(key string) (string, error) {
	if !validKey(key) {
		return "", fmt.Errorf("upload: invalid blob key %q", key)
	}
	return filepath.Join(d.Dir, key), nil
}

func validKey(key string) bool {
	if key == "" || len(key) > 128 {
		return false
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// Put implements BlobStore.
func (d DirStore) Put(ctx context.Context, key string, r io.Reader, size int64) (err error) {
	p, err := d.path(key)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("upload: put: %w", err)
	}
	if err := os.MkdirAll(d.Dir, 0o700); err != nil {
		return fmt.Errorf("upload: put: %w", err)
	}
	f, err := os.CreateTemp(d.Dir, ".put-*")
	if err != nil {
		return fmt.Errorf("upload: put: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	n, err := io.Copy(f, io.LimitReader(r, size+1))
	if err != nil {
		return fmt.Errorf("upload: put: %w", err)
	}
	if n != size {
		return fmt.Errorf("upload: put: got %d bytes, want %d: %w", n, size, ErrSize)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("upload: put: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("upload: put: %w", err)
	}
	if err := os.Rename(f.Name(), p); err != nil {
		return fmt.Errorf("upload: put: %w", err)
	}
	return nil
}

// Open implements BlobStore.
func (d DirStore) Open(ctx context.Context, key string) (io.ReadSeekCloser, error) {
	p, err := d.path(key)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", err, fs.ErrNotExist)
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("upload: open: %w", err)
	}
	return f, nil
}

// Delete implements BlobStore.
func (d DirStore) Delete(ctx context.Context, key string) error {
	p, err := d.path(key)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("upload: delete: %w", err)
	}
	return nil
}
