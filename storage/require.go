package storage

import (
	"fmt"
	"reflect"
)

// Require is for a module's Setup: it returns have if it is set (the
// module was given a store of its own), else store (the server's Storage)
// as the interface T, or an error naming the module and T if store does
// not implement it.
//
//	m.Store, err = storage.Require(m.Store, srv.Storage, "blocking")
func Require[T any](have T, store any, module string) (T, error) {
	if any(have) != nil {
		return have, nil
	}
	if t, ok := store.(T); ok {
		return t, nil
	}
	var zero T
	return zero, fmt.Errorf("%s: the server's storage does not implement %v", module, reflect.TypeFor[T]())
}
