package main

// Secrets that every node of a cluster must share. With store = bbolt
// they stay files in the data folder, as they always were (a copy of
// treff.db alone lets nobody log in). With store = postgres, where
// several nodes may share one database, they live in the store
// (storage.Secrets): the first node to start creates each one, taking
// the data folder's file if it has one (a server moved from bbolt with
// migrate-store keeps its keys, so FAST tokens and dialback keys handed
// out before stay valid), and every node after it uses the same value.

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/storage"
	"github.com/treff-im/treff/upload"
)

// Names of the values in storage.Secrets.
const (
	secretDialback    = "s2s/dialback-secret" // XEP-0185 key of dialback keys
	secretFAST        = "fast/secret"         // key FAST tokens are derived from
	secretUpload      = "upload/url-key"      // key that signs upload PUT URLs
	secretACMEAccount = "acme/account-key"    // PEM, the ACME account's key
	secretACMECert    = "acme/certificate"    // PEM, the private key then the chain
	secretACMELease   = "acme/lease"          // who orders now, until when
)

// secretSize is the size of a new random secret, and the least a file
// must hold to be taken over.
const secretSize = 32

// secretTimeout bounds the store calls that read or create one secret at
// start.
const secretTimeout = 30 * time.Second

// sharedSecret returns the secret name of st, creating it on first use:
// from file when the data folder has one (file may be ""), else random.
// Nodes starting together agree: the store's compare-and-set lets one
// create it, and the others read what it created.
func sharedSecret(ctx context.Context, st storage.Secrets, name, file string) ([]byte, error) {
	return sharedValue(ctx, st, name, func() ([]byte, error) {
		if file != "" {
			b, err := os.ReadFile(file)
			if err == nil && len(b) >= secretSize {
				return b, nil
			}
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				return nil, err
			}
		}
		b := make([]byte, secretSize)
		rand.Read(b)
		return b, nil
	})
}

// sharedValue returns the value name of st, storing the one create returns
// if there is none yet (at most one of several nodes' values is stored;
// all return that one).
func sharedValue(ctx context.Context, st storage.Secrets, name string, create func() ([]byte, error)) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, secretTimeout)
	defer cancel()
	// Two rounds suffice: a lost swap means another node stored it.
	for range 2 {
		b, err := st.Secret(ctx, name)
		if err == nil {
			return b, nil
		}
		if !errors.Is(err, storage.ErrNotFound) {
			return nil, fmt.Errorf("secret %s: %w", name, err)
		}
		v, err := create()
		if err != nil {
			return nil, fmt.Errorf("secret %s: %w", name, err)
		}
		ok, err := st.SwapSecret(ctx, name, nil, v)
		if err != nil {
			return nil, fmt.Errorf("secret %s: %w", name, err)
		}
		if ok {
			return bytes.Clone(v), nil
		}
	}
	return nil, fmt.Errorf("secret %s: neither stored nor readable", name)
}

// loadSecrets gives srv's modules their secrets: from the data folder's
// files with bbolt, from st with PostgreSQL (see the top of this file).
func loadSecrets(ctx context.Context, cfg Config, srv *treff.Server, st storage.Secrets, log *slog.Logger) error {
	shared := cfg.Store == storePostgres
	load := func(name, file string) ([]byte, error) {
		if !shared {
			return loadSecret(filepath.Join(cfg.Data, file))
		}
		return sharedSecret(ctx, st, name, filepath.Join(cfg.Data, file))
	}
	var err error
	if fed := s2sModule(srv); fed != nil {
		if fed.Secret, err = load(secretDialback, s2sSecretFile); err != nil {
			return err
		}
	}
	if tokens := fastModule(srv); tokens != nil {
		if tokens.Secret, err = load(secretFAST, fastSecretFile); err != nil {
			return err
		}
	}
	// The upload URL key is random per start on a single node (a slot
	// handed out before a restart is asked for again); nodes behind one
	// load balancer must accept each other's URLs.
	if up := uploadModule(srv); up != nil && shared {
		if up.Secret, err = sharedSecret(ctx, st, secretUpload, ""); err != nil {
			return err
		}
	}
	if shared {
		log.Debug("secrets shared through the store", "store", cfg.Store)
	}
	return nil
}

// uploadModule returns the server's upload module, or nil.
func uploadModule(srv *treff.Server) *upload.Module {
	for _, m := range srv.Modules {
		if u, ok := m.(*upload.Module); ok {
			return u
		}
	}
	return nil
}
