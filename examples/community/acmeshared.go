package main

// The ACME client of nodes sharing a store (store = postgres): the
// account key and the certificate (its key, then the chain, as PEM in one
// value, so that a node never reads a chain with another key) live in
// storage.Secrets instead of the data folder's acme folder. One node at a
// time orders: it takes the lease secretACMELease (holder and expiry,
// with compare-and-set) for acmeLease, longer than an order may last; the
// others wait, and every node re-reads the store every acmeSharedPoll
// (and on SIGHUP), so that a certificate another node obtained is
// presented on new connections without a restart.

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/treff-im/treff/storage"
)

// acmeSharedPoll is how often a node sharing a store re-reads the
// certificate from it (one small read).
const acmeSharedPoll = time.Minute

// acmeLease is how long the lease of the node that orders holds: longer
// than an order (acmeOrderTimeout), so that it never ends during one, and
// short enough that another node takes over soon after the holder died.
const acmeLease = acmeOrderTimeout + time.Minute

// newNodeID returns an identifier of this process for leases.
func newNodeID() string {
	host, _ := os.Hostname()
	var b [6]byte
	rand.Read(b[:])
	return fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// share makes m keep its account and certificate in st, taking over the
// data folder's (a server moved from bbolt) when st has none yet.
func (m *acmeManager) share(st storage.Secrets) {
	m.shared = st
	m.node = newNodeID()
	m.reload = make(chan struct{}, 1)
}

// loadShared reads the certificate from the store: fs.ErrNotExist when
// there is none. The first node finding none there but one in its acme
// folder puts that one there.
func (m *acmeManager) loadShared() (tls.Certificate, error) {
	ctx, cancel := context.WithTimeout(context.Background(), secretTimeout)
	defer cancel()
	b, err := m.shared.Secret(ctx, secretACMECert)
	if errors.Is(err, storage.ErrNotFound) {
		key, kerr := os.ReadFile(filepath.Join(m.dir, acmeKeyFile))
		chain, cerr := os.ReadFile(filepath.Join(m.dir, acmeCertFile))
		if kerr != nil || cerr != nil {
			return tls.Certificate{}, fs.ErrNotExist
		}
		if _, err := tls.X509KeyPair(chain, key); err != nil {
			return tls.Certificate{}, err
		}
		v := append(key, chain...)
		if _, err := m.shared.SwapSecret(ctx, secretACMECert, nil, v); err != nil {
			return tls.Certificate{}, err
		}
		if b, err = m.shared.Secret(ctx, secretACMECert); err != nil {
			return tls.Certificate{}, err
		}
	} else if err != nil {
		return tls.Certificate{}, err
	}
	// One PEM value: X509KeyPair takes the CERTIFICATE blocks of the
	// first argument and the PRIVATE KEY block of the second.
	return tls.X509KeyPair(b, b)
}

// saveShared stores the chain and its key, replacing the certificate
// every node presents.
func (m *acmeManager) saveShared(ctx context.Context, der [][]byte, key *ecdsa.PrivateKey) error {
	k, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	v := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: k})
	for _, b := range der {
		v = append(v, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: b})...)
	}
	return m.shared.PutSecret(ctx, secretACMECert, v)
}

// sharedAccountKey returns the ACME account key of every node: the
// store's, or the one it creates (the data folder's, if there is one).
func (m *acmeManager) sharedAccountKey(ctx context.Context) (crypto.Signer, error) {
	b, err := sharedValue(ctx, m.shared, secretACMEAccount, func() ([]byte, error) {
		if b, err := os.ReadFile(filepath.Join(m.dir, acmeAccountFile)); err == nil {
			return b, nil
		}
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			return nil, err
		}
		return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
	})
	if err != nil {
		return nil, err
	}
	p, _ := pem.Decode(b)
	if p == nil {
		return nil, fmt.Errorf("%s: no PEM block", secretACMEAccount)
	}
	return x509.ParseECPrivateKey(p.Bytes)
}

// refresh re-reads the certificate from the store and presents it if it
// is not the current one; it reports whether it did.
func (m *acmeManager) refresh() bool {
	c, err := m.loadShared()
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			m.log.Warn("the certificate in the store does not load", "err", err)
		}
		return false
	}
	if m.leaf != nil && bytes.Equal(m.leaf.Raw, c.Leaf.Raw) {
		return false
	}
	m.leaf = c.Leaf
	m.src.set(c)
	m.log.Info("certificate loaded from the store", "serial", serialOf(c), "not_after", notAfterOf(c))
	return true
}

// takeLease makes this node the one that orders for acmeLease, unless
// another node holds an unexpired lease; it reports whether it did.
func (m *acmeManager) takeLease(ctx context.Context) (bool, error) {
	cur, err := m.shared.Secret(ctx, secretACMELease)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return false, err
	}
	if cur != nil {
		holder, until := parseLease(cur)
		if holder != m.node && m.now().Before(until) {
			return false, nil
		}
	}
	return m.shared.SwapSecret(ctx, secretACMELease, cur, leaseValue(m.node, m.now().Add(acmeLease)))
}

// releaseLease ends this node's lease (if it still holds it).
func (m *acmeManager) releaseLease(ctx context.Context) {
	cur, err := m.shared.Secret(ctx, secretACMELease)
	if err != nil {
		return
	}
	if holder, _ := parseLease(cur); holder == m.node {
		if _, err := m.shared.SwapSecret(ctx, secretACMELease, cur, leaseValue("-", time.Unix(0, 0))); err != nil {
			m.log.Warn("could not release the ACME lease; it expires by itself", "err", err)
		}
	}
}

// leaseValue encodes a lease: "UNIXNANO HOLDER".
func leaseValue(holder string, until time.Time) []byte {
	return []byte(strconv.FormatInt(until.UnixNano(), 10) + " " + holder)
}

// parseLease decodes a lease; a malformed one is expired.
func parseLease(b []byte) (holder string, until time.Time) {
	ns, holder, ok := strings.Cut(string(b), " ")
	n, err := strconv.ParseInt(ns, 10, 64)
	if !ok || err != nil {
		return "", time.Time{}
	}
	return holder, time.Unix(0, n)
}

// shareACME makes am keep its account and certificate in st and presents
// the certificate the store holds (another node's) at once, if any.
func shareACME(am *acmeManager, st storage.Secrets, src *certSource, log *slog.Logger) {
	am.share(st)
	c, err := am.loadCert()
	switch {
	case err == nil:
		src.set(c)
		log.Info("certificate loaded from the store", "serial", serialOf(c), "not_after", notAfterOf(c))
	case !errors.Is(err, fs.ErrNotExist):
		log.Warn("the certificate in the store does not load; asking for a new one", "err", err)
	}
}
