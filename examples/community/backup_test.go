package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	"filippo.io/age/armor"

	"github.com/treff-im/treff/auth"
	"github.com/treff-im/treff/storage"
	"github.com/treff-im/treff/storage/boltstore"
)

func init() {
	// A quick passphrase key derivation for the tests (age's default
	// takes a second and 256 MiB).
	scryptWorkFactor = 10
}

// runCLI runs the command line args in this process and returns the exit
// code, stdout and stderr.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, strings.NewReader(""), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func mustCLI(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errOut := runCLI(t, args...)
	if code != 0 {
		t.Fatalf("%q: exit %d\nstdout: %s\nstderr: %s", args, code, out, errOut)
	}
	return out
}

// failCLI runs args, expecting exit code code and msg on stderr.
func failCLI(t *testing.T, code int, msg string, args ...string) {
	t.Helper()
	c, out, errOut := runCLI(t, args...)
	if c != code || !strings.Contains(errOut, msg) {
		t.Errorf("%q: exit %d, stderr %q (stdout %q); want exit %d and %q", args, c, errOut, out, code, msg)
	}
}

func writeTestFile(t *testing.T, name, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// fillData makes a data folder with alice's account (offline adduser), an
// uploaded file, the secrets and the certificate, plus what a backup
// leaves out: an upload being written and a symbolic link.
func fillData(t *testing.T) string {
	t.Helper()
	data := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(data, 0o700); err != nil {
		t.Fatal(err)
	}
	mustCLI(t, "adduser", "-data", data, "-password", "alice pw 1", "alice@localhost")
	for name, content := range map[string]string{
		"uploads/Slot-1_a": "the photo's bytes",
		"fast-secret":      "fast secret bytes",
		"s2s-secret":       "s2s secret bytes",
		"cert.pem":         "-----BEGIN CERTIFICATE-----\n",
		"key.pem":          "-----BEGIN PRIVATE KEY-----\n",
		"uploads/.put-123": "half a file",
	} {
		writeTestFile(t, filepath.Join(data, name), content)
	}
	if err := os.Symlink("/etc/hostname", filepath.Join(data, "link")); err != nil {
		t.Fatal(err)
	}
	return data
}

// archiveNames lists the entries of an unencrypted backup.
func archiveNames(t *testing.T, file string) []string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
	}
}

// TestBackupRestore: a backup without a server holds the manifest first,
// the database, the uploads, secrets and certificate, and leaves out
// temporary files and the symbolic link (saying so); restored into a new
// folder, the files are the same and alice's account is there; a
// non-empty folder is refused and left alone.
func TestBackupRestore(t *testing.T) {
	data := fillData(t)
	out := filepath.Join(t.TempDir(), "b.tar.gz")
	code, stdout, stderr := runCLI(t, "backup", "-data", data, "-o", out)
	if code != 0 {
		t.Fatalf("backup: exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "1 uploaded files") || !strings.Contains(stderr, "link left out") {
		t.Errorf("backup: stdout %q, stderr %q", stdout, stderr)
	}
	checkMode(t, out, 0o600)
	names := archiveNames(t, out)
	if len(names) < 2 || names[0] != backupManifestName || names[1] != dbFile {
		t.Fatalf("archive starts with %q, want the manifest and the database", names)
	}
	want := []string{backupManifestName, dbFile, "cert.pem", "fast-secret", "key.pem", "s2s-secret", "uploads/", "uploads/Slot-1_a"}
	got := slices.Clone(names)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("archive holds %q, want %q", got, want)
	}

	dst := filepath.Join(t.TempDir(), "restored")
	stdout = mustCLI(t, "restore", "-data", dst, out)
	if !strings.Contains(stdout, "1 accounts (localhost)") {
		t.Errorf("restore said %q", stdout)
	}
	for _, name := range want {
		if name == "uploads/" || name == dbFile || name == backupManifestName {
			continue
		}
		a, _ := os.ReadFile(filepath.Join(data, name))
		b, err := os.ReadFile(filepath.Join(dst, name))
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("restored %s: %q, %v; want %q", name, b, err, a)
		}
	}
	a, _ := os.Stat(filepath.Join(data, "uploads", "Slot-1_a"))
	if b, err := os.Stat(filepath.Join(dst, "uploads", "Slot-1_a")); err != nil || !b.ModTime().Truncate(time.Second).Equal(a.ModTime().Truncate(time.Second)) {
		t.Errorf("the upload's time: %v, want %v", b, a.ModTime())
	}
	checkMode(t, dst, 0o700)
	checkMode(t, filepath.Join(dst, "fast-secret"), 0o600)
	if users := mustCLI(t, "users", "-data", dst); users != "alice@localhost\n" {
		t.Errorf("users of the restored folder: %q", users)
	}
	// The password still works.
	store, err := boltstore.Open(filepath.Join(dst, dbFile), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := (&auth.Store{Accounts: store}).CheckPassword(context.Background(), "alice@localhost", "alice pw 1"); err != nil {
		t.Errorf("alice's password after restore: %v", err)
	}
	store.Close()

	failCLI(t, 1, "is not empty", "restore", "-data", dst, out)
	failCLI(t, 1, "is not empty", "restore", "-data", data, out)
	if _, err := os.Stat(filepath.Join(data, "uploads", ".put-123")); err != nil {
		t.Errorf("a refused restore touched the folder: %v", err)
	}
	empty := t.TempDir()
	mustCLI(t, "restore", "-data", empty, out)
	if _, err := os.Stat(filepath.Join(empty, dbFile)); err != nil {
		t.Errorf("restore into an empty folder: %v", err)
	}
}

// TestBackupUsage: the mistakes an operator can make.
func TestBackupUsage(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope")
	failCLI(t, 1, "no data folder "+missing, "backup", "-data", missing, "-o", filepath.Join(t.TempDir(), "x"))
	mustNotExist(t, missing)
	failCLI(t, 2, "needs -o FILE", "backup", "-data", t.TempDir())
	failCLI(t, 2, "not an age public key", "backup", "-o", "x", "-recipient", "age1nothing")
	id, _ := age.GenerateX25519Identity()
	pf := filepath.Join(t.TempDir(), "pass")
	writeTestFile(t, pf, "s3cret\n")
	failCLI(t, 2, "do not go together", "backup", "-o", "x", "-recipient", id.Recipient().String(), "-passphrase-file", pf)
	failCLI(t, 2, "exactly one FILE", "restore", "-data", t.TempDir())
	writeTestFile(t, pf, "\n")
	failCLI(t, 2, "is empty", "backup", "-data", t.TempDir(), "-o", "x", "-passphrase-file", pf)

	notBackup := filepath.Join(t.TempDir(), "x.xml")
	writeTestFile(t, notBackup, "<server-data/>")
	dst := filepath.Join(t.TempDir(), "d")
	failCLI(t, 1, "not a Treff backup", "restore", "-data", dst, notBackup)
	mustNotExist(t, dst)
}

// TestRestoreRefusesEscapes: an archive with a name outside the data
// folder, or a symbolic link, is refused and nothing stays behind.
func TestRestoreRefusesEscapes(t *testing.T) {
	for _, bad := range []tar.Header{
		{Name: "../evil", Typeflag: tar.TypeReg, Mode: 0o600, Size: 1},
		{Name: "/etc/evil", Typeflag: tar.TypeReg, Mode: 0o600, Size: 1},
		{Name: "uploads/x", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"},
	} {
		var buf bytes.Buffer
		gz := gzip.NewWriter(&buf)
		tw := tar.NewWriter(gz)
		man := []byte(`{"format":1}`)
		tw.WriteHeader(&tar.Header{Name: backupManifestName, Typeflag: tar.TypeReg, Mode: 0o600, Size: int64(len(man))})
		tw.Write(man)
		tw.WriteHeader(&bad)
		if bad.Size > 0 {
			tw.Write([]byte("x"))
		}
		tw.Close()
		gz.Close()
		file := filepath.Join(t.TempDir(), "bad.tar.gz")
		writeTestFile(t, file, buf.String())
		dst := filepath.Join(t.TempDir(), "d")
		failCLI(t, 1, "nothing was restored", "restore", "-data", dst, file)
		mustNotExist(t, dst)
		mustNotExist(t, filepath.Join(filepath.Dir(dst), "evil"))
	}
}

// TestBackupEncrypted: a backup encrypted with a passphrase from a file,
// or for an age public key, is an age file (readable with the age
// library, so with the age CLI); restore needs the key, says clearly
// when it is missing or wrong, and restores with the right one.
func TestBackupEncrypted(t *testing.T) {
	data := fillData(t)
	dir := t.TempDir()
	pass, wrongPass := filepath.Join(dir, "pass"), filepath.Join(dir, "wrong")
	writeTestFile(t, pass, "correct horse battery staple\n")
	writeTestFile(t, wrongPass, "incorrect horse\n")
	id, _ := age.GenerateX25519Identity()
	other, _ := age.GenerateX25519Identity()
	idFile, otherFile := filepath.Join(dir, "id.txt"), filepath.Join(dir, "other.txt")
	writeTestFile(t, idFile, "# created: today\n"+id.String()+"\n")
	writeTestFile(t, otherFile, other.String()+"\n")

	byPass, byKey := filepath.Join(dir, "p.age"), filepath.Join(dir, "k.age")
	mustCLI(t, "backup", "-data", data, "-o", byPass, "-passphrase-file", pass)
	mustCLI(t, "backup", "-data", data, "-o", byKey, "-recipient", id.Recipient().String())

	// The age library alone decrypts them into the archive.
	sid, _ := age.NewScryptIdentity("correct horse battery staple")
	for file, ident := range map[string]age.Identity{byPass: sid, byKey: id} {
		f, _ := os.Open(file)
		r, err := age.Decrypt(f, ident)
		if err != nil {
			t.Fatalf("age.Decrypt %s: %v", file, err)
		}
		gz, err := gzip.NewReader(r)
		if err != nil {
			t.Fatalf("%s decrypted is not gzip: %v", file, err)
		}
		h, err := tar.NewReader(gz).Next()
		if err != nil || h.Name != backupManifestName {
			t.Errorf("%s: first entry %v, %v", file, h, err)
		}
		f.Close()
	}

	for _, tc := range []struct {
		file, msg string
		code      int
		args      []string
	}{
		{byPass, "encrypted (age): give -identity FILE or -passphrase-file FILE", 2, nil},
		{byKey, "encrypted (age): give -identity FILE or -passphrase-file FILE", 2, nil},
		{byPass, "encrypted with a passphrase, and " + wrongPass + " does not hold it", 1, []string{"-passphrase-file", wrongPass}},
		{byKey, "encrypted for other keys: no identity in " + otherFile + " matches", 1, []string{"-identity", otherFile}},
		{byPass, "encrypted with a passphrase", 1, []string{"-identity", idFile}},
		{byKey, "encrypted for other keys", 1, []string{"-passphrase-file", pass}},
	} {
		dst := filepath.Join(t.TempDir(), "d")
		failCLI(t, tc.code, tc.msg, append(append([]string{"restore", "-data", dst}, tc.args...), tc.file)...)
		mustNotExist(t, dst)
	}
	// An armored copy (age -a) restores too.
	armored := filepath.Join(dir, "k.age.asc")
	{
		in, err := os.Open(byKey)
		if err != nil {
			t.Fatal(err)
		}
		r, err := age.Decrypt(in, id)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		aw := armor.NewWriter(&buf)
		w, err := age.Encrypt(aw, id.Recipient())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(w, r); err != nil {
			t.Fatal(err)
		}
		w.Close()
		aw.Close()
		in.Close()
		writeTestFile(t, armored, buf.String())
	}
	for file, args := range map[string][]string{byPass: {"-passphrase-file", pass}, byKey: {"-identity", idFile}, armored: {"-identity", idFile}} {
		dst := filepath.Join(t.TempDir(), "d")
		out := mustCLI(t, append(append([]string{"restore", "-data", dst}, args...), file)...)
		if !strings.Contains(out, "1 accounts") {
			t.Errorf("restore of %s: %q", file, out)
		}
		if b, _ := os.ReadFile(filepath.Join(dst, "uploads", "Slot-1_a")); string(b) != "the photo's bytes" {
			t.Errorf("restore of %s: upload %q", file, b)
		}
	}
}

// TestBackupWhileServing: with a server answering on the admin socket,
// the database copy comes from it (the command does not open the locked
// database) while accounts are being created; the restored copy holds a
// prefix of them, and no snapshot file stays in the data folder.
func TestBackupWhileServing(t *testing.T) {
	data, err := os.MkdirTemp("", "bk")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(data) })
	store, err := boltstore.Open(filepath.Join(data, dbFile), &boltstore.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	writeTestFile(t, filepath.Join(data, "uploads", "k1"), "upload")
	l, err := listenAdmin(filepath.Join(data, adminSocket))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	a := &adminServer{l: l, log: log, data: data, acct: &accounts{store: store, domains: []string{"localhost"}, log: log}}
	done := make(chan error, 1)
	go func() { done <- a.serve() }()
	defer func() {
		a.close()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	ctx := context.Background()
	const n = 300
	first := make(chan struct{})
	writes := make(chan error, 1)
	go func() {
		for i := range n {
			if err := store.CreateAccount(ctx, storage.Account{JID: fmt.Sprintf("u%03d@localhost", i), Created: time.Now()}); err != nil {
				writes <- err
				return
			}
			if i == 0 {
				close(first)
			}
		}
		writes <- nil
	}()
	<-first
	out := filepath.Join(t.TempDir(), "b.tar.gz")
	code, stdout, stderr := runCLI(t, "backup", "-data", data, "-o", out)
	if err := <-writes; err != nil {
		t.Fatal(err)
	}
	// Had the command opened the database itself, bbolt's lock, held by
	// this process's store, would have failed it.
	if code != 0 {
		t.Fatalf("backup while serving: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if left, _ := filepath.Glob(filepath.Join(data, backupSnapshotPrefix+"*")); len(left) > 0 {
		t.Errorf("snapshot files left in the data folder: %q", left)
	}
	dst := filepath.Join(t.TempDir(), "d")
	mustCLI(t, "restore", "-data", dst, out)
	r, err := boltstore.Open(filepath.Join(dst, dbFile), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	accts, _ := r.ListAccounts(ctx, "localhost")
	if len(accts) == 0 {
		t.Fatal("no account in the backup")
	}
	for i, acct := range accts {
		if want := fmt.Sprintf("u%03d@localhost", i); acct.JID != want {
			t.Fatalf("account %d of %d in the backup is %s, want %s: not a consistent copy", i, len(accts), acct.JID, want)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "uploads", "k1")); string(b) != "upload" {
		t.Errorf("the upload restored: %q", b)
	}

	// The socket only writes into snapshot files of the data folder.
	for _, name := range []string{"../x.db", "treff.db", ".backup-../../x.db", ".backup-none.db"} {
		if _, err := a.backupSnapshot(ctx, name); err == nil || errorKind(err) != kindUsage {
			t.Errorf("backup request for %q: %v, want a usage error", name, err)
		}
	}
}

// TestBackupDaily: the daily backups go to their folder (made if needed),
// named by time, and only the newest backup_keep stay; other files there
// are kept; the next is due a day after the newest. With
// backup_recipient they are encrypted for those keys.
func TestBackupDaily(t *testing.T) {
	data := fillData(t)
	cfg := Default()
	cfg.Data = data
	cfg.BackupDaily = filepath.Join(data, "backups") // inside: left out of the backups
	cfg.BackupKeep = 2
	store, err := boltstore.Open(filepath.Join(data, dbFile), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ctx := context.Background()
	now := time.Now()
	if due := dailyDue(cfg.BackupDaily, now); !due.Equal(now) {
		t.Errorf("first backup due at %v, want now", due)
	}
	writeTestFile(t, filepath.Join(cfg.BackupDaily, "notes.txt"), "mine")
	t0 := time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)
	var all []string
	for i := range 4 {
		name, st, removed, err := writeDaily(ctx, cfg, store, t0.Add(time.Duration(i)*24*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, filepath.Base(name))
		if st.Uploads != 1 {
			t.Errorf("daily backup %d: %+v", i, st)
		}
		if want := max(0, i+1-cfg.BackupKeep); len(removed) != min(1, want) {
			t.Errorf("daily backup %d removed %q", i, removed)
		}
		for _, n := range archiveNames(t, name) {
			if strings.HasPrefix(n, "backups") {
				t.Errorf("daily backup %d holds %s, from the backup folder", i, n)
			}
		}
	}
	if got := dailyBackups(cfg.BackupDaily); !slices.Equal(got, all[2:]) {
		t.Errorf("backups kept: %q, want %q", got, all[2:])
	}
	if all[0] != "treff-backup-20261201T030000Z.tar.gz" {
		t.Errorf("name %q", all[0])
	}
	if _, err := os.Stat(filepath.Join(cfg.BackupDaily, "notes.txt")); err != nil {
		t.Errorf("another file in the backup folder: %v", err)
	}
	checkMode(t, cfg.BackupDaily, 0o700)
	if due := dailyDue(cfg.BackupDaily, now); !due.Equal(t0.Add(4 * 24 * time.Hour)) {
		t.Errorf("next due %v", due)
	}
	if _, err := os.Lstat(filepath.Join(data, "treff.db")); errors.Is(err, fs.ErrNotExist) {
		t.Error("no database")
	}

	// With backup_recipient, encrypted for that key, named .age, counted
	// with the others.
	id, _ := age.GenerateX25519Identity()
	cfg.BackupRecipients = []string{id.Recipient().String()}
	name, _, removed, err := writeDaily(ctx, cfg, store, t0.Add(4*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(name) != "treff-backup-20261205T030000Z.tar.gz.age" || len(removed) != 1 || removed[0] != all[2] {
		t.Errorf("encrypted daily backup %s, removed %q", name, removed)
	}
	if got := dailyBackups(cfg.BackupDaily); !slices.Equal(got, []string{all[3], filepath.Base(name)}) {
		t.Errorf("backups kept: %q", got)
	}
	if due := dailyDue(cfg.BackupDaily, now); !due.Equal(t0.Add(5 * 24 * time.Hour)) {
		t.Errorf("next due %v", due)
	}
	idFile := filepath.Join(t.TempDir(), "id")
	writeTestFile(t, idFile, id.String()+"\n")
	failCLI(t, 2, "is encrypted (age)", "restore", "-data", filepath.Join(t.TempDir(), "x"), name)
	if out := mustCLI(t, "restore", "-data", filepath.Join(t.TempDir(), "r"), "-identity", idFile, name); !strings.Contains(out, "1 accounts") {
		t.Errorf("restore of the encrypted daily backup: %q", out)
	}
}
