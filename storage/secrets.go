package storage

import "context"

// Secrets keeps small named values that every node of a cluster sharing
// one store must agree on, and that a single node keeps across restarts:
// the dialback secret (XEP-0185), the key FAST tokens are derived from,
// the ACME account key and certificate, and lease records that let one
// node at a time do a job (such as ordering a certificate). Optional: the
// example server needs it when several nodes share a store.
//
// Names are chosen by the caller (e.g. "s2s/dialback"); an empty name is
// refused. Values are opaque bytes of at most a few kilobytes; an empty
// value is refused, so that "absent" and "stored" never look alike. The
// store keeps its own copy of what it is given and returns a copy.
type Secrets interface {
	// Secret returns the value stored under name, or ErrNotFound.
	Secret(ctx context.Context, name string) ([]byte, error)
	// PutSecret stores value under name, replacing what was there.
	PutSecret(ctx context.Context, name string, value []byte) error
	// SwapSecret stores value under name only if the value stored now
	// equals old, where an empty old means that nothing is stored, and
	// reports whether it did (compare-and-set: of two callers swapping
	// from the same old value, at most one succeeds, also when they are
	// nodes sharing the store).
	SwapSecret(ctx context.Context, name string, old, value []byte) (bool, error)
}
