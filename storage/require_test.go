package storage_test

import (
	"strings"
	"testing"

	"github.com/treff-im/treff/storage"
	"github.com/treff-im/treff/storage/memstore"
)

func TestRequire(t *testing.T) {
	m := memstore.New()
	defer m.Close()
	got, err := storage.Require[storage.Rooms](nil, m, "muc")
	if err != nil || got == nil {
		t.Fatalf("memstore as Rooms: %v, %v", got, err)
	}
	own := memstore.New()
	defer own.Close()
	if got, _ := storage.Require[storage.Rooms](own, m, "muc"); got != storage.Rooms(own) {
		t.Error("a module's own store was replaced")
	}
	_, err = storage.Require[storage.Rooms](nil, struct{}{}, "muc")
	if err == nil || !strings.Contains(err.Error(), "muc: the server's storage does not implement storage.Rooms") {
		t.Errorf("error: %v", err)
	}
}
