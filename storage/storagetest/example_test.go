package storagetest_test

import (
	"testing"

	"github.com/treff-im/treff/storage"
	"github.com/treff-im/treff/storage/memstore"
	"github.com/treff-im/treff/storage/storagetest"
)

// A backend's conformance test calls Run with a function that opens a new,
// empty store for each subtest (a file backend opens one in t.TempDir()).
// Run needs the test's *testing.T, so this example is compiled but not
// run; memstore's and boltstore's tests run exactly this.
func ExampleRun() {
	testConformance := func(t *testing.T) { // func TestConformance(t *testing.T) in a _test.go file
		storagetest.Run(t, func(t *testing.T) storage.Store {
			return memstore.New() // e.g. mybackend.Open(filepath.Join(t.TempDir(), "treff.db"))
		})
	}
	_ = testConformance
}
