// Package storagetest checks that a storage backend behaves as the
// interfaces in package storage document, in the manner of testing/fstest
// and testing/slogtest.
//
// A backend author calls Run from one test of the backend's package, with a
// function that makes a new, empty store:
//
//	func TestConformance(t *testing.T) {
//		storagetest.Run(t, func(t *testing.T) storage.Store {
//			s, err := mybackend.Open(filepath.Join(t.TempDir(), "treff.db"))
//			if err != nil {
//				t.Fatal(err)
//			}
//			return s
//		})
//	}
//
// Run runs one subtest per documented behaviour (named like
// "Rosters/VersionChanges", so "go test -run 'Conformance/Offline'" selects a
// group) and calls the factory once per subtest, so subtests never see each
// other's data. Run closes every store it is given when the subtest ends; the
// factory must not close it. Subtests run one after another; each is bounded
// by a context that expires after SubtestTimeout, and the concurrent subtests
// additionally stop waiting for their goroutines after that time, so a
// deadlocked backend fails its subtest instead of hanging.
//
// Where package storage leaves room, the suite reads it as follows, and
// Treff's callers rely on these readings:
//
//   - Reading data that was never written is not an error: Roster returns no
//     items, OfflineMessages none and CountOffline 0. DeleteOffline and
//     DeleteOfflineMessages of a user without messages succeed, like
//     DeleteRoster.
//   - ListAccounts compares domain with the whole domainpart of each JID
//     (the part after the '@'), so "example.org" matches neither
//     "bexample.org" nor "x.example.org".
//   - Offline message IDs of a user keep increasing for as long as the store
//     exists, also across DeleteOfflineMessages and DeleteOffline.
//   - Times passed in UTC come back in UTC.
//   - Every modification of a roster, including putting an identical item and
//     DeleteRoster of a non-empty roster, changes its version; nothing else
//     does, in particular not changes to other users' rosters.
//
// Each interface's group also checks the two conventions package storage
// states for every method: "CancelledContext" calls every method with a
// cancelled context (after storing some data with a live one) and wants an
// error wrapping context.Canceled; "EmptyJID" passes "" wherever a method
// takes a JID and wants an error.
//
// Run does not test what it cannot observe through storage.Store: that data
// survives a restart, or how the backend handles other invalid input.
// Backends test those themselves.
//
// The concurrent subtests are most useful under the race detector:
//
//	go test -race -run Conformance ./...
package storagetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/treff-im/treff/storage"
)

// SubtestTimeout bounds the running time of one subtest of Run: it is the
// deadline of the context passed to the store, and the longest the
// concurrent subtests wait for their goroutines.
const SubtestTimeout = time.Minute

// test is one conformance check.
type test struct {
	name string
	fn   func(t *testing.T, ctx context.Context, s storage.Store)
	// closes reports that fn closes the store itself, so that the Close
	// at the end of the subtest is a second one.
	closes bool
}

// group is a named set of tests, run as one level of subtests.
type group struct {
	name  string
	tests []test
}

// groups lists every check Run performs.
var groups = []group{
	{"Accounts", accountTests},
	{"Rosters", rosterTests},
	{"Offline", offlineTests},
	{"LastActivity", lastTests},
	{"HeldNames", heldTests},
	{"Invites", inviteTests},
	{"Rooms", roomTests},
	{"PrivateXML", privateTests},
	{"Blocklists", blocklistTests},
	{"PEP", pepTests},
	{"PushRegistrations", pushTests},
	{"Archive", archiveTests},
	{"Uploads", uploadTests},
	{"FastTokens", fastTests},
	{"Reports", reportTests},
	{"Secrets", secretTests},
	{"Isolation", isolationTests},
	{"Concurrency", concurrencyTests},
	{"Close", closeTests},
}

// Run tests the store returned by newStore against the documented behaviour
// of storage.Store. newStore is called once per subtest, with the subtest's
// *testing.T, and must return a new, empty store; it may call t.Fatal if it
// cannot. Run closes each store at the end of its subtest.
func Run(t *testing.T, newStore func(t *testing.T) storage.Store) {
	t.Helper()
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			for _, tc := range g.tests {
				t.Run(tc.name, func(t *testing.T) {
					runOne(t, tc, newStore)
				})
			}
		})
	}
}

// runOne runs tc on a fresh store.
func runOne(t *testing.T, tc test, newStore func(t *testing.T) storage.Store) {
	s := newStore(t)
	if s == nil {
		t.Fatal("newStore returned nil")
	}
	t.Cleanup(func() {
		err := s.Close()
		if !tc.closes && err != nil {
			t.Errorf("Close at end of subtest: %v", err)
		}
		// A test that closes the store itself may have stopped before
		// doing so; what a second Close returns is not specified.
	})
	ctx, cancel := context.WithTimeout(t.Context(), SubtestTimeout)
	defer cancel()
	tc.fn(t, ctx, s)
}

// Fixed instants with sub-second precision, to check that times survive a
// round trip exactly.
var (
	t1 = time.Date(2024, time.March, 9, 14, 30, 15, 123456789, time.UTC)
	t2 = time.Date(2025, time.November, 30, 0, 0, 0, 0, time.UTC)
	t3 = time.Date(2026, time.January, 2, 3, 4, 5, 6, time.UTC)
)

// wantErr fails t unless err matches target with errors.Is.
func wantErr(t *testing.T, err, target error, what string) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("%s: got error %v, want one matching %v", what, err, target)
	}
}

// must fails t fatally if err is not nil.
func must(t *testing.T, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: unexpected error: %v", what, err)
	}
}

// checkUTC fails t if tm is not zero and not in UTC. The storage package
// documents all times as UTC, and Run only ever passes UTC times.
func checkUTC(t *testing.T, tm time.Time, what string) {
	t.Helper()
	if !tm.IsZero() && tm.Location() != time.UTC {
		t.Errorf("%s: time %v has location %v, want UTC", what, tm, tm.Location())
	}
}

// sameTime reports whether a and b are the same instant, treating all zero
// times as equal.
func sameTime(a, b time.Time) bool {
	if a.IsZero() || b.IsZero() {
		return a.IsZero() && b.IsZero()
	}
	return a.Equal(b)
}

// sameBytes reports whether a and b have the same contents; nil and empty
// are equal.
func sameBytes(a, b []byte) bool {
	return string(a) == string(b)
}

// sameStrings reports whether a and b have the same elements in the same
// order; nil and empty are equal.
func sameStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// DiffAccount describes how got differs from want, or returns "" if they are
// equal as far as the storage contract is concerned: times are compared with
// time.Time.Equal and nil byte slices equal empty ones.
func DiffAccount(got, want storage.Account) string {
	if got.JID != want.JID {
		return fmt.Sprintf("JID = %q, want %q", got.JID, want.JID)
	}
	if !sameTime(got.Created, want.Created) {
		return fmt.Sprintf("Created = %v, want %v", got.Created, want.Created)
	}
	if !sameTime(got.LastLogin, want.LastLogin) {
		return fmt.Sprintf("LastLogin = %v, want %v", got.LastLogin, want.LastLogin)
	}
	if !sameTime(got.Suspended, want.Suspended) || got.SuspendReason != want.SuspendReason {
		return fmt.Sprintf("Suspended = %v %q, want %v %q", got.Suspended, got.SuspendReason, want.Suspended, want.SuspendReason)
	}
	if !sameTime(got.Approved, want.Approved) {
		return fmt.Sprintf("Approved = %v, want %v", got.Approved, want.Approved)
	}
	if len(got.Credentials) != len(want.Credentials) {
		return fmt.Sprintf("%d credentials, want %d", len(got.Credentials), len(want.Credentials))
	}
	for i, g := range got.Credentials {
		w := want.Credentials[i]
		if g.Mechanism != w.Mechanism || g.Iterations != w.Iterations ||
			!sameBytes(g.Salt, w.Salt) || !sameBytes(g.StoredKey, w.StoredKey) || !sameBytes(g.ServerKey, w.ServerKey) {
			return fmt.Sprintf("Credentials[%d] = %+v, want %+v", i, g, w)
		}
	}
	return ""
}

// DiffRosterItem describes how got differs from want, or returns "" if they
// are equal; nil Groups equal empty ones.
func DiffRosterItem(got, want storage.RosterItem) string {
	g, w := got, want
	g.Groups, w.Groups = nil, nil
	if !reflect.DeepEqual(g, w) || !sameStrings(got.Groups, want.Groups) {
		return fmt.Sprintf("got %+v, want %+v", got, want)
	}
	return ""
}

// DiffOfflineMessage describes how got differs from want, or returns "" if
// they are equal: Received is compared with time.Time.Equal and a nil Stanza
// equals an empty one.
func DiffOfflineMessage(got, want storage.OfflineMessage) string {
	if got.ID != want.ID || !sameTime(got.Received, want.Received) || !sameBytes(got.Stanza, want.Stanza) {
		return fmt.Sprintf("got {ID:%d Received:%v Stanza:%q}, want {ID:%d Received:%v Stanza:%q}",
			got.ID, got.Received, got.Stanza, want.ID, want.Received, want.Stanza)
	}
	return ""
}

// errorList collects errors from goroutines. Unlike t.Errorf it may be used
// after the test has given up waiting for them.
type errorList struct {
	mu   sync.Mutex
	errs []string
	n    int
}

// add records one failure.
func (l *errorList) add(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n++
	if len(l.errs) < 10 {
		l.errs = append(l.errs, fmt.Sprintf(format, args...))
	}
}

// report fails t with the recorded failures, if any, and reports whether
// there were none.
func (l *errorList) report(t *testing.T) bool {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.errs {
		t.Error(e)
	}
	if l.n > len(l.errs) {
		t.Errorf("... and %d more errors", l.n-len(l.errs))
	}
	return l.n == 0
}

// parallel runs fn(0) ... fn(n-1) in n goroutines that start together and
// waits for them until ctx is done. It fails t fatally on timeout.
func parallel(t *testing.T, ctx context.Context, n int, fn func(i int)) {
	t.Helper()
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			fn(i)
		}()
	}
	close(start)
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatalf("goroutines did not finish within the subtest timeout (deadlock?): %v", ctx.Err())
	}
}
