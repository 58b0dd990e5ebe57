package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/treff-im/treff/storage"
	"github.com/treff-im/treff/storage/storagetest"
)

// openTemp opens a store in a new temporary directory and returns it with
// its path. The store is not closed automatically.
func openTemp(t testing.TB, opts *Options) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "treff.db")
	s, err := Open(path, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s, path
}

// conformance runs the storagetest suite with opts. After each subtest has
// closed its store, the file is reopened and checked for consistency.
func conformance(t *testing.T, opts *Options) {
	storagetest.Run(t, func(t *testing.T) storage.Store {
		s, path := openTemp(t, opts)
		t.Cleanup(func() { checkFile(t, path) })
		return s
	})
}

func TestConformance(t *testing.T) {
	conformance(t, nil)
}

func TestConformanceNoBatch(t *testing.T) {
	conformance(t, &Options{BatchDelay: -1, NoSync: true})
}

// checkFile opens the closed database at path read-only and checks the
// invariants the store relies on: every record decodes, every offline
// bucket's count matches its keys and is not zero, and no ID or roster
// version exceeds its counter.
func checkFile(t *testing.T, path string) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Errorf("reopening %s for the consistency check: %v", path, err)
		return
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		if err := initSchemaReadOnly(tx); err != nil {
			return err
		}
		if err := tx.Bucket(bucketAccounts).ForEach(func(k, v []byte) error {
			_, err := decodeAccount(string(k), v)
			return err
		}); err != nil {
			return err
		}

		rosters := tx.Bucket(bucketRosters)
		if err := rosters.ForEachBucket(func(user []byte) error {
			rb := rosters.Bucket(user)
			if rb.Sequence() == 0 || rb.Sequence() > rosters.Sequence() {
				return fmt.Errorf("roster of %q has version %d, counter is %d", user, rb.Sequence(), rosters.Sequence())
			}
			return rb.ForEach(func(k, v []byte) error {
				_, err := decodeRosterItem(string(k), v)
				return err
			})
		}); err != nil {
			return err
		}

		offline := tx.Bucket(bucketOffline)
		return offline.ForEachBucket(func(user []byte) error {
			ub := offline.Bucket(user)
			var n uint64
			if err := ub.ForEach(func(k, v []byte) error {
				m, err := decodeOffline(k, v)
				if err != nil {
					return err
				}
				if m.ID == 0 || m.ID > offline.Sequence() {
					return fmt.Errorf("offline message of %q has ID %d, counter is %d", user, m.ID, offline.Sequence())
				}
				n++
				return nil
			}); err != nil {
				return err
			}
			if n == 0 {
				return fmt.Errorf("empty offline bucket for %q left behind", user)
			}
			if n != ub.Sequence() {
				return fmt.Errorf("offline bucket of %q holds %d messages but counts %d", user, n, ub.Sequence())
			}
			return nil
		})
	})
	if err != nil {
		t.Errorf("consistency check of %s: %v", path, err)
	}
}

// initSchemaReadOnly checks the schema and buckets without creating any.
func initSchemaReadOnly(tx *bolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		return errors.New("no meta bucket")
	}
	if v := meta.Get(keySchema); len(v) != 8 || binary.BigEndian.Uint64(v) != SchemaVersion {
		return fmt.Errorf("schema version %x, want %d", v, SchemaVersion)
	}
	for _, name := range [][]byte{bucketAccounts, bucketRosters, bucketOffline} {
		if tx.Bucket(name) == nil {
			return fmt.Errorf("no %s bucket", name)
		}
	}
	return nil
}

// TestReopen checks that everything survives closing and reopening the
// file, and that IDs and roster versions keep increasing afterwards.
func TestReopen(t *testing.T) {
	ctx := context.Background()
	s, path := openTemp(t, nil)

	acc := storage.Account{
		JID:         "alice@example.org",
		Credentials: []storage.Credential{{Mechanism: "SCRAM-SHA-256", Salt: []byte("salt"), Iterations: 4096, StoredKey: []byte("sk"), ServerKey: []byte("svk")}},
		Created:     time.Date(2024, 1, 2, 3, 4, 5, 6, time.UTC),
		LastLogin:   time.Date(2025, 6, 7, 0, 0, 0, 0, time.UTC),
	}
	item := storage.RosterItem{JID: "bob@example.org", Name: "Bob", Groups: []string{"Friends"}, Subscription: storage.SubBoth, Approved: true}
	if err := s.CreateAccount(ctx, acc); err != nil {
		t.Fatal(err)
	}
	ver, err := s.PutRosterItem(ctx, acc.JID, item)
	if err != nil {
		t.Fatal(err)
	}
	var msgs []storage.OfflineMessage
	for i := range 5 {
		m := storage.OfflineMessage{
			Received: time.Date(2026, 1, 1, 12, 0, i, 999, time.UTC),
			Stanza:   fmt.Appendf(nil, "<message to='alice@example.org'><body>%d</body></message>", i),
		}
		if m.ID, err = s.PushOffline(ctx, acc.JID, m, 10); err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, m)
	}
	if err := s.DeleteOfflineMessages(ctx, acc.JID, []uint64{msgs[4].ID}); err != nil {
		t.Fatal(err)
	}
	msgs = msgs[:4]
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = Open(path, nil)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()

	got, err := s.Account(ctx, acc.JID)
	if err != nil {
		t.Fatal(err)
	}
	if d := storagetest.DiffAccount(got, acc); d != "" {
		t.Errorf("account after reopen: %s", d)
	}
	items, gotVer, err := s.Roster(ctx, acc.JID)
	if err != nil {
		t.Fatal(err)
	}
	if gotVer != ver || len(items) != 1 || storagetest.DiffRosterItem(items[0], item) != "" {
		t.Errorf("roster after reopen = %+v at version %q, want [%+v] at %q", items, gotVer, item, ver)
	}
	gotMsgs, err := s.OfflineMessages(ctx, acc.JID)
	if err != nil {
		t.Fatal(err)
	}
	if len(gotMsgs) != len(msgs) {
		t.Fatalf("%d offline messages after reopen, want %d", len(gotMsgs), len(msgs))
	}
	for i := range msgs {
		if d := storagetest.DiffOfflineMessage(gotMsgs[i], msgs[i]); d != "" {
			t.Errorf("offline message %d after reopen: %s", i, d)
		}
	}
	if n, err := s.CountOffline(ctx, acc.JID); err != nil || n != len(msgs) {
		t.Errorf("CountOffline after reopen = %d, %v; want %d", n, err, len(msgs))
	}

	// Counters continue where they were, including past the deleted ID.
	id, err := s.PushOffline(ctx, acc.JID, storage.OfflineMessage{Stanza: []byte("<message/>")}, 10)
	if err != nil {
		t.Fatal(err)
	}
	if id <= 5 {
		t.Errorf("first ID after reopen is %d, want more than the 5 handed out before", id)
	}
	newVer, err := s.PutRosterItem(ctx, acc.JID, item)
	if err != nil {
		t.Fatal(err)
	}
	if newVer == ver {
		t.Errorf("roster version after reopen and put is still %q", ver)
	}
}

// TestLocked checks that a second Open of a file in use fails promptly with
// ErrLocked, and succeeds once the first store is closed.
func TestLocked(t *testing.T) {
	s, path := openTemp(t, nil)
	start := time.Now()
	s2, err := Open(path, nil)
	elapsed := time.Since(start)
	if err == nil {
		s2.Close()
		s.Close()
		t.Fatal("second Open of a database in use succeeded")
	}
	if !errors.Is(err, ErrLocked) {
		t.Errorf("second Open: got %v, want an error wrapping ErrLocked", err)
	}
	if !strings.HasPrefix(err.Error(), "boltstore: ") || !strings.Contains(err.Error(), path) {
		t.Errorf("error %q should start with the package name and name the file", err)
	}
	if elapsed > 2*time.Second {
		t.Errorf("second Open took %v to fail, want about DefaultTimeout (%v)", elapsed, DefaultTimeout)
	}

	// A shorter timeout is honoured.
	start = time.Now()
	if _, err := Open(path, &Options{Timeout: 100 * time.Millisecond}); !errors.Is(err, ErrLocked) {
		t.Errorf("Open with a short timeout: got %v, want ErrLocked", err)
	}
	if elapsed := time.Since(start); elapsed > time.Second {
		t.Errorf("Open with a 100ms timeout took %v", elapsed)
	}

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err = Open(path, nil)
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	s2.Close()
}

// TestFileMode checks that a new database file is private to its owner.
func TestFileMode(t *testing.T) {
	s, path := openTemp(t, nil)
	defer s.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("database file mode = %v, want 0600", perm)
	}
	if s.Path() != path {
		t.Errorf("Path() = %q, want %q", s.Path(), path)
	}
}

// TestSchemaTooNew checks that a file written by a newer schema is refused
// with a clear error and left unchanged.
func TestSchemaTooNew(t *testing.T) {
	s, path := openTemp(t, nil)
	if err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keySchema, binary.BigEndian.AppendUint64(nil, SchemaVersion+1))
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	_, err := Open(path, nil)
	if !errors.Is(err, ErrSchemaTooNew) {
		t.Fatalf("Open of a newer schema: got %v, want ErrSchemaTooNew", err)
	}
	for _, want := range []string{"boltstore: ", path, fmt.Sprint(SchemaVersion + 1)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}

	// The refusal released the lock and did not touch the version.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatalf("file still locked after refused Open: %v", err)
	}
	defer db.Close()
	if err := db.View(func(tx *bolt.Tx) error {
		if v := binary.BigEndian.Uint64(tx.Bucket(bucketMeta).Get(keySchema)); v != SchemaVersion+1 {
			return fmt.Errorf("schema version changed to %d", v)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
}

// TestForeignFile checks that Open refuses files that are not Treff
// databases instead of adding buckets to them.
func TestForeignFile(t *testing.T) {
	dir := t.TempDir()

	other := filepath.Join(dir, "other.db")
	db, err := bolt.Open(other, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucket([]byte("something-else"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if s, err := Open(other, nil); err == nil {
		s.Close()
		t.Error("Open of a bbolt file of another application succeeded")
	} else if !strings.HasPrefix(err.Error(), "boltstore: ") {
		t.Errorf("error %q does not start with the package name", err)
	}

	text := filepath.Join(dir, "text.db")
	if err := os.WriteFile(text, bytes.Repeat([]byte("not a database\n"), 1000), 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err := Open(text, nil); err == nil {
		s.Close()
		t.Error("Open of a text file succeeded")
	}
}

// TestCanceledContext checks that operations give up on a done context
// before touching the database.
func TestCanceledContext(t *testing.T) {
	s, _ := openTemp(t, nil)
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	const user = "alice@example.org"
	_, pushErr := s.PushOffline(ctx, user, storage.OfflineMessage{}, 0)
	_, _, rosterErr := s.Roster(ctx, user)
	for name, err := range map[string]error{
		"CreateAccount": s.CreateAccount(ctx, storage.Account{JID: user}),
		"PushOffline":   pushErr,
		"Roster":        rosterErr,
		"DeleteOffline": s.DeleteOffline(ctx, user),
	} {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a canceled context: got %v, want context.Canceled", name, err)
		}
	}
	if _, err := s.Account(context.Background(), user); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Account after canceled CreateAccount: got %v, want ErrNotFound", err)
	}
}

// TestCloseTwice checks that a second Close reports ErrClosed.
func TestCloseTwice(t *testing.T) {
	s, _ := openTemp(t, nil)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); !errors.Is(err, storage.ErrClosed) {
		t.Errorf("second Close: got %v, want ErrClosed", err)
	}
}

// TestEmptyJID checks that writes keyed by an empty JID are refused with a
// clear error instead of bbolt's "key required".
func TestEmptyJID(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t, nil)
	defer s.Close()
	_, putErr := s.PutRosterItem(ctx, "alice@example.org", storage.RosterItem{})
	_, pushErr := s.PushOffline(ctx, "", storage.OfflineMessage{}, 0)
	for name, err := range map[string]error{
		"CreateAccount": s.CreateAccount(ctx, storage.Account{}),
		"PutRosterItem": putErr,
		"PushOffline":   pushErr,
	} {
		if !errors.Is(err, errEmptyJID) {
			t.Errorf("%s with an empty JID: got %v, want errEmptyJID", name, err)
		}
	}
}

// TestCorruptRecord checks that a damaged value is reported as an error,
// not a panic or garbage.
func TestCorruptRecord(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t, nil)
	defer s.Close()
	if err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketAccounts).Put([]byte("alice@example.org"), []byte{accountV1, 0x80})
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Account(ctx, "alice@example.org"); !errors.Is(err, errCorrupt) {
		t.Errorf("Account of a corrupt record: got %v, want errCorrupt", err)
	}
	if _, err := s.ListAccounts(ctx, ""); !errors.Is(err, errCorrupt) {
		t.Errorf("ListAccounts with a corrupt record: got %v, want errCorrupt", err)
	}
}

// TestCodecTruncated checks that every truncation of a valid record, and the
// record with a byte appended, fails to decode.
func TestCodecTruncated(t *testing.T) {
	acc := encodeAccount(storage.Account{
		JID:         "alice@example.org",
		Credentials: []storage.Credential{{Mechanism: "SCRAM-SHA-1", Salt: []byte("s"), Iterations: 4096, StoredKey: []byte("k"), ServerKey: []byte("v")}},
		Created:     time.Unix(1700000000, 5).UTC(),
	})
	item := encodeRosterItem(storage.RosterItem{JID: "bob@example.org", Name: "Bob", Groups: []string{"A", "B"}, Subscription: storage.SubTo, PendingIn: true})
	for i := range len(acc) {
		if _, err := decodeAccount("a", acc[:i]); !errors.Is(err, errCorrupt) {
			t.Errorf("account truncated to %d of %d bytes: got %v, want errCorrupt", i, len(acc), err)
		}
	}
	if _, err := decodeAccount("a", append(acc, 0)); !errors.Is(err, errCorrupt) {
		t.Errorf("account with a trailing byte: got %v, want errCorrupt", err)
	}
	for i := range len(item) {
		if _, err := decodeRosterItem("b", item[:i]); !errors.Is(err, errCorrupt) {
			t.Errorf("roster item truncated to %d of %d bytes: got %v, want errCorrupt", i, len(item), err)
		}
	}
	if _, err := decodeRosterItem("b", append(item, 0)); !errors.Is(err, errCorrupt) {
		t.Errorf("roster item with a trailing byte: got %v, want errCorrupt", err)
	}
	off := encodeOffline(time.Unix(1700000000, 5), []byte("<message/>"))
	for i := range offlineHeader {
		if _, err := decodeOffline(offlineKey(1), off[:i]); !errors.Is(err, errCorrupt) {
			t.Errorf("offline message truncated to %d bytes: got %v, want errCorrupt", i, err)
		}
	}
	if _, err := decodeOffline([]byte{1, 2, 3}, off); !errors.Is(err, errCorrupt) {
		t.Errorf("offline message with a short key: got %v, want errCorrupt", err)
	}
}

// FuzzDecode checks that no input makes the decoders panic, and that what
// decodes survives another encode and decode unchanged.
func FuzzDecode(f *testing.F) {
	f.Add(encodeAccount(storage.Account{Credentials: []storage.Credential{{Mechanism: "M", Salt: []byte{1}}}}))
	f.Add(encodeRosterItem(storage.RosterItem{Name: "n", Groups: []string{"g"}, Subscription: storage.SubBoth, Approved: true}))
	f.Add(encodeOffline(time.Unix(1, 2), []byte("x")))
	f.Fuzz(func(t *testing.T, v []byte) {
		if a, err := decodeAccount("a", v); err == nil {
			if again, err := decodeAccount("a", encodeAccount(a)); err != nil || !reflect.DeepEqual(again, a) {
				t.Errorf("account %x: %+v does not round-trip: %+v, %v", v, a, again, err)
			}
		}
		if it, err := decodeRosterItem("b", v); err == nil {
			if again, err := decodeRosterItem("b", encodeRosterItem(it)); err != nil || !reflect.DeepEqual(again, it) {
				t.Errorf("roster item %x: %+v does not round-trip: %+v, %v", v, it, again, err)
			}
		}
		if m, err := decodeOffline(offlineKey(1), v); err == nil {
			if again, err := decodeOffline(offlineKey(1), encodeOffline(m.Received, m.Stanza)); err != nil || !reflect.DeepEqual(again, m) {
				t.Errorf("offline message %x: %+v does not round-trip: %+v, %v", v, m, again, err)
			}
		}
	})
}

// BenchmarkPushOffline measures the hot path of storing a message for an
// offline user, with and without batching, from one goroutine and from many,
// on a synced file. A push is a typical 300-byte chat message to one of 100
// users with a quota of 10000.
func BenchmarkPushOffline(b *testing.B) {
	stanza := bytes.Repeat([]byte("x"), 300)
	for _, bc := range []struct {
		name string
		opts Options
	}{
		{"Batch", Options{}},
		{"NoBatch", Options{BatchDelay: -1}},
		{"NoSync", Options{BatchDelay: -1, NoSync: true}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ctx := context.Background()
			users := make([]string, 100)
			for i := range users {
				users[i] = fmt.Sprintf("user%03d@example.org", i)
			}
			b.Run("Serial", func(b *testing.B) {
				s, _ := openTemp(b, &bc.opts)
				defer s.Close()
				b.SetBytes(int64(len(stanza)))
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					msg := storage.OfflineMessage{Received: time.Now().UTC(), Stanza: stanza}
					if _, err := s.PushOffline(ctx, users[i%len(users)], msg, 10000); err != nil {
						b.Fatal(err)
					}
					i++
				}
			})
			b.Run("Parallel", func(b *testing.B) {
				s, _ := openTemp(b, &bc.opts)
				defer s.Close()
				b.SetBytes(int64(len(stanza)))
				b.ReportAllocs()
				b.SetParallelism(16)
				b.RunParallel(func(pb *testing.PB) {
					i := 0
					for pb.Next() {
						msg := storage.OfflineMessage{Received: time.Now().UTC(), Stanza: stanza}
						if _, err := s.PushOffline(ctx, users[i%len(users)], msg, 10000); err != nil {
							b.Error(err)
							return
						}
						i++
					}
				})
			})
		})
	}
}

// BenchmarkCountOffline measures CountOffline on a user with many messages,
// which reads a counter instead of the messages.
func BenchmarkCountOffline(b *testing.B) {
	ctx := context.Background()
	s, _ := openTemp(b, &Options{NoSync: true})
	defer s.Close()
	const user = "alice@example.org"
	for range 1000 {
		if _, err := s.PushOffline(ctx, user, storage.OfflineMessage{Stanza: make([]byte, 500)}, 0); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if n, err := s.CountOffline(ctx, user); err != nil || n != 1000 {
			b.Fatalf("CountOffline = %d, %v", n, err)
		}
	}
}

// TestPEPConfigFormats: a node configuration without the pubsub service's
// fields is still written in format 1 (readable by earlier versions), one
// with them in format 2; both read back as written, and an unknown format
// is corrupt.
func TestPEPConfigFormats(t *testing.T) {
	pepOnly := storage.PEPNodeConfig{AccessModel: storage.AccessPresence, PersistItems: true, MaxItems: 1, Whitelist: []string{"bob@example.org"}}
	service := pepOnly
	service.PublishModel = storage.PublishOpen
	service.Owners = []string{"alice@example.org"}
	service.Outcasts = []string{"mallory@example.org"}
	for _, tc := range []struct {
		cfg    storage.PEPNodeConfig
		format byte
	}{{pepOnly, pepConfigV1}, {service, pepConfigV2}} {
		b := encodePEPConfig(tc.cfg)
		if b[0] != tc.format {
			t.Errorf("%+v written in format %d, want %d", tc.cfg, b[0], tc.format)
		}
		got, err := decodePEPConfig(b)
		if err != nil || !reflect.DeepEqual(got, tc.cfg) {
			t.Errorf("decoded %+v, %v; want %+v", got, err, tc.cfg)
		}
	}
	b := encodePEPConfig(service)
	b[0] = 3
	if _, err := decodePEPConfig(b); !errors.Is(err, errCorrupt) {
		t.Errorf("format 3: %v, want errCorrupt", err)
	}
}
