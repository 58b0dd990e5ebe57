package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"log/slog"
	"math/big"
	"testing"
	"time"

	"github.com/treff-im/treff/storage/memstore"
)

// sharedManager returns an ACME manager of a node on st, with its own
// (empty) acme folder and clock.
func sharedManager(t *testing.T, st *memstore.Store, now *time.Time) *acmeManager {
	m := &acmeManager{dir: t.TempDir(), names: []string{"example.org"}, log: slog.New(slog.DiscardHandler),
		now: func() time.Time { return *now }, poll: acmeSharedPoll}
	m.share(st)
	m.src = newCertSource(selfSigned(t, "example.org"))
	return m
}

// issue makes a certificate for example.org with a new key.
func issue(t *testing.T, serial int64) ([][]byte, *ecdsa.PrivateKey) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), DNSNames: []string{"example.org"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(90 * 24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return [][]byte{der}, key
}

// TestACMESharedLease: of two nodes, one orders at a time; the lease
// passes on when released or expired.
func TestACMESharedLease(t *testing.T) {
	st := memstore.New()
	defer st.Close()
	now := time.Now()
	a, b := sharedManager(t, st, &now), sharedManager(t, st, &now)
	ctx := t.Context()
	take := func(m *acmeManager, want bool, what string) {
		t.Helper()
		ok, err := m.takeLease(ctx)
		if err != nil || ok != want {
			t.Fatalf("%s: takeLease = %v, %v; want %v", what, ok, err, want)
		}
	}
	take(a, true, "first node")
	take(b, false, "second node while the first holds the lease")
	take(a, true, "the holder again")
	a.releaseLease(ctx)
	take(b, true, "second node after the release")
	b.releaseLease(ctx)
	take(a, true, "first node again")
	now = now.Add(acmeLease + time.Second) // a died while ordering
	take(b, true, "second node after the lease expired")
	take(a, false, "first node while the second holds the lease")
}

// TestACMESharedCertificate: what one node obtains, another loads from
// the store (refresh), once; the account key is the same for both.
func TestACMESharedCertificate(t *testing.T) {
	st := memstore.New()
	defer st.Close()
	now := time.Now()
	a, b := sharedManager(t, st, &now), sharedManager(t, st, &now)
	if b.refresh() {
		t.Fatal("refresh with no certificate in the store reported a new one")
	}
	der, key := issue(t, 7)
	if err := a.saveShared(t.Context(), der, key); err != nil {
		t.Fatal(err)
	}
	if !b.refresh() {
		t.Fatal("refresh did not pick up the other node's certificate")
	}
	if got := b.src.cert.Load(); !bytes.Equal(got.Certificate[0], der[0]) {
		t.Error("node B does not present node A's certificate")
	}
	if b.refresh() {
		t.Error("a second refresh reported the same certificate as new")
	}
	if b.renewAt().Before(now) {
		t.Errorf("node B plans a renewal at %v although the certificate is fresh", b.renewAt())
	}
	der2, key2 := issue(t, 8)
	if err := a.saveShared(t.Context(), der2, key2); err != nil {
		t.Fatal(err)
	}
	if !b.refresh() || b.leaf.SerialNumber.Int64() != 8 {
		t.Error("node B did not pick up the renewal")
	}
	ka, err := a.sharedAccountKey(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	kb, err := b.sharedAccountKey(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !ka.(*ecdsa.PrivateKey).Equal(kb) {
		t.Error("the nodes have different ACME account keys")
	}
}

// TestACMESharedTakesFiles: a node whose acme folder holds a certificate
// (a server moved from bbolt) puts it into an empty store, once.
func TestACMESharedTakesFiles(t *testing.T) {
	st := memstore.New()
	defer st.Close()
	now := time.Now()
	a := sharedManager(t, st, &now)
	der, key := issue(t, 5)
	if err := a.save(der, key); err != nil { // into a's acme folder
		t.Fatal(err)
	}
	c, err := a.loadCert()
	if err != nil || !bytes.Equal(c.Certificate[0], der[0]) {
		t.Fatalf("loadCert = %v; want the folder's certificate", err)
	}
	b := sharedManager(t, st, &now)
	if c, err := b.loadCert(); err != nil || !bytes.Equal(c.Certificate[0], der[0]) {
		t.Fatalf("another node's loadCert = %v; want the certificate taken from the folder", err)
	}
}
