package main

// The server's store: the bbolt file treff.db in the data folder (the
// default) or a PostgreSQL database (store = postgres, pg_dsn = DSN).
// With PostgreSQL the data folder still holds what are files: the TLS
// certificate and key, the uploaded files and the admin socket; the
// secrets every node of a cluster must share (dialback, FAST, the upload
// URL key, the ACME account and certificate) move into the store (see
// secrets.go).

import (
	"context"
	"fmt"
	"time"

	"github.com/treff-im/treff/storage"
	"github.com/treff-im/treff/storage/boltstore"
	"github.com/treff-im/treff/storage/pgstore"
)

// The values of the store key.
const (
	storeBolt     = "bbolt"
	storePostgres = "postgres"
)

// pgOpenTimeout bounds connecting to PostgreSQL and migrating its schema
// at start.
const pgOpenTimeout = time.Minute

// fullStore is every storage interface the community server's modules
// use. Both backends implement all of them; the server hands the modules
// one value (see timedStore), so each finds its interface by assertion.
type fullStore interface {
	storage.Store
	storage.LastActivity
	storage.HeldNames
	storage.Invites
	storage.Rooms
	storage.PrivateXML
	storage.PrivateXMLKeys
	storage.Blocklists
	storage.PEP
	storage.PEPSubscriptions
	storage.PushRegistrations
	storage.Archive
	storage.ArchiveEditor
	storage.Uploads
	storage.FastTokens
	storage.Reports
	storage.Secrets
}

var (
	_ fullStore = (*boltstore.Store)(nil)
	_ fullStore = (*pgstore.Store)(nil)
)

// pgArchiveDelay is how long an archived message may wait in memory
// before a server on PostgreSQL commits it with others (pgstore's
// SetArchiveDelay): the bbolt store's flush wait.
const pgArchiveDelay = 250 * time.Millisecond

// openPostgres opens the PostgreSQL store of cfg.
func openPostgres(cfg Config) (*pgstore.Store, error) {
	if cfg.PGDSN == "" {
		return nil, usageErrorf("store = postgres needs pg_dsn (-pg-dsn postgres://USER@HOST/DATABASE)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), pgOpenTimeout)
	defer cancel()
	s, err := pgstore.Open(ctx, cfg.PGDSN)
	if err != nil {
		return nil, fmt.Errorf("opening the PostgreSQL store (pg_dsn): %w", err)
	}
	return s, nil
}

// openDB opens the store of cfg for an admin command working without a
// server: PostgreSQL, or the data folder's bbolt file (see
// existingDatabase for when it may be created).
func openDB(cfg Config, create bool) (fullStore, error) {
	if cfg.Store == storePostgres {
		return openPostgres(cfg)
	}
	path, err := existingDatabase(cfg, create)
	if err != nil {
		return nil, err
	}
	return openStore(path, "another admin command, or a server whose admin socket does not answer; try again", nil)
}
