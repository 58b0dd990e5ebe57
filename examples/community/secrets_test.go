package main

import (
	"bytes"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/treff-im/treff/internal/pgtest"
	"github.com/treff-im/treff/storage/memstore"
	"github.com/treff-im/treff/storage/pgstore"
)

// TestSharedSecretTakesFileOnce checks that the first node puts the data
// folder's secret into the store and that later nodes, whatever their
// folder holds, get the stored one.
func TestSharedSecretTakesFileOnce(t *testing.T) {
	st := memstore.New()
	defer st.Close()
	dir := t.TempDir()
	file := filepath.Join(dir, s2sSecretFile)
	old := bytes.Repeat([]byte{7}, 40)
	if err := os.WriteFile(file, old, 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := sharedSecret(t.Context(), st, secretDialback, file)
	if err != nil || !bytes.Equal(got, old) {
		t.Fatalf("first node: %x, %v; want the file's %x", got, err, old)
	}
	// Another node whose folder holds another secret gets the stored one.
	other := filepath.Join(t.TempDir(), s2sSecretFile)
	if err := os.WriteFile(other, bytes.Repeat([]byte{9}, 40), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := sharedSecret(t.Context(), st, secretDialback, other); err != nil || !bytes.Equal(got, old) {
		t.Fatalf("second node: %x, %v; want the stored %x", got, err, old)
	}
	// Without a file, a random secret of secretSize bytes, stored.
	fresh, err := sharedSecret(t.Context(), st, secretFAST, filepath.Join(dir, "none"))
	if err != nil || len(fresh) != secretSize {
		t.Fatalf("fresh secret: %x, %v", fresh, err)
	}
	if stored, _ := st.Secret(t.Context(), secretFAST); !bytes.Equal(stored, fresh) {
		t.Errorf("stored %x, returned %x", stored, fresh)
	}
}

// TestSharedSecretNodesAgree starts "nodes" together on one PostgreSQL
// database: each makes its own random secret, and all end up with the
// same one.
func TestSharedSecretNodesAgree(t *testing.T) {
	dsn := pgtest.Start(t).Schema(t)
	const nodes = 8
	got := make([][]byte, nodes)
	errs := make([]error, nodes)
	var wg sync.WaitGroup
	for i := range nodes {
		wg.Go(func() {
			s, err := pgstore.Open(t.Context(), dsn)
			if err != nil {
				errs[i] = err
				return
			}
			defer s.Close()
			got[i], errs[i] = sharedSecret(t.Context(), s, secretDialback, "")
		})
	}
	wg.Wait()
	for i := range nodes {
		if errs[i] != nil {
			t.Fatalf("node %d: %v", i, errs[i])
		}
		if !bytes.Equal(got[i], got[0]) || len(got[i]) != secretSize {
			t.Errorf("node %d has %x, node 0 %x", i, got[i], got[0])
		}
	}
}

// TestCopySecrets: migrate-store puts the data folder's secrets and ACME
// state into the store, where the nodes find them; a second run (or a
// store that has them already) changes nothing.
func TestCopySecrets(t *testing.T) {
	st := memstore.New()
	defer st.Close()
	data := t.TempDir()
	dialback, fastKey := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 48)
	for file, b := range map[string][]byte{s2sSecretFile: dialback, fastSecretFile: fastKey} {
		if err := os.WriteFile(filepath.Join(data, file), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	m := &acmeManager{dir: filepath.Join(data, acmeDir), names: []string{"example.org"}}
	if err := os.MkdirAll(m.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	der, key := issue(t, 3)
	if err := m.save(der, key); err != nil {
		t.Fatal(err)
	}
	if _, err := loadOrCreateKey(filepath.Join(m.dir, acmeAccountFile)); err != nil {
		t.Fatal(err)
	}
	n, err := copySecrets(t.Context(), data, st)
	if err != nil || n != 4 {
		t.Fatalf("copySecrets = %d, %v; want 4", n, err)
	}
	for name, want := range map[string][]byte{secretDialback: dialback, secretFAST: fastKey} {
		if got, err := sharedSecret(t.Context(), st, name, ""); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s = %x, %v; want the file's", name, got, err)
		}
	}
	node := &acmeManager{dir: t.TempDir()} // another node's empty folder
	node.share(st)
	if c, err := node.loadCert(); err != nil || !bytes.Equal(c.Certificate[0], der[0]) {
		t.Errorf("a node's loadCert = %v; want the copied certificate", err)
	}
	if n, err := copySecrets(t.Context(), data, st); err != nil || n != 0 {
		t.Errorf("second copySecrets = %d, %v; want 0", n, err)
	}
}
