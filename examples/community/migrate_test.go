package main

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runIn runs the binary in the folder dir (at most 30 seconds).
func runIn(t *testing.T, bin, dir string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = childEnv()
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%q: %v", args, err)
	}
	return result{stdout.String(), stderr.String(), code}
}

func mustNotExist(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s exists (%v): an admin command created it", path, err)
	}
}

// Admin commands never create a data folder, nor a database beside other
// files: run from another folder or with a mistyped -data they fail and
// name the folder they looked in; without a server they say which
// database they used.
func TestAdminNeverCreates(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	elsewhere := t.TempDir()
	want := filepath.Join(elsewhere, "treff-data")
	if err := os.WriteFile(filepath.Join(elsewhere, "in.xml"), []byte("<server-data xmlns='urn:xmpp:pie:0'/>"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"adduser", "-password", "alicepw", "alice@localhost"},
		{"users"},
		{"import", "in.xml"},
		{"export", "x.xml"},
	} {
		r := runIn(t, bin, elsewhere, args...)
		if r.code != 1 || !strings.Contains(r.stderr, "no data folder "+want) {
			t.Errorf("%q in another folder: exit %d, stderr %q; want exit 1 naming %s", args, r.code, r.stderr, want)
		}
	}
	mustNotExist(t, want)
	if left, _ := os.ReadDir(elsewhere); len(left) != 1 {
		t.Errorf("files left in the folder: %v", left)
	}

	typo := filepath.Join(elsewhere, "treff-dta")
	expectFail(t, bin, 1, "no data folder "+typo, "users", "-data", typo)
	expectFail(t, bin, 1, "no data folder "+typo, "adduser", "-data", typo, "-password", "pw", "alice@localhost")
	mustNotExist(t, typo)

	// A folder with other files and no database: not a data folder.
	notData := t.TempDir()
	if err := os.WriteFile(filepath.Join(notData, "notes.txt"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	expectFail(t, bin, 1, "no database "+filepath.Join(notData, dbFile), "adduser", "-data", notData, "-password", "pw", "alice@localhost")
	mustNotExist(t, filepath.Join(notData, dbFile))

	// An empty folder made for a new server: reading commands find no
	// database; adduser creates it and says so; then it is named.
	fresh := t.TempDir()
	db := filepath.Join(fresh, dbFile)
	expectFail(t, bin, 1, "no database "+db, "users", "-data", fresh)
	r := runCmd(t, bin, "", "adduser", "-data", fresh, "-password", "alicepw", "alice@localhost")
	if r.code != 0 || !strings.Contains(r.stderr, "creating the database "+db) {
		t.Errorf("adduser in an empty folder: exit %d, stderr %q", r.code, r.stderr)
	}
	r = runCmd(t, bin, "", "users", "-data", fresh)
	if r.code != 0 || r.stdout != "alice@localhost\n" || !strings.Contains(r.stderr, "using the database "+db) {
		t.Errorf("users: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}

// export and import through the running server's admin socket and on
// the database: a whole server, one user, a second import that skips
// everything, and logins with the old passwords after the move.
func TestMigrateCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	src := t.TempDir()
	mustRun(t, bin, "", "adduser", "-data", src, "-password", "alice-old-pw", "alice@localhost")
	mustRun(t, bin, "", "adduser", "-data", src, "-password", "bob-old-pw", "bob@localhost")
	out := t.TempDir()
	all, one := filepath.Join(out, "all.xml"), filepath.Join(out, "bob.xml")

	// Without a server, on the database.
	mustRun(t, bin, "", "export", "-data", src, all)
	// Through the running server.
	srv := startServer(t, bin, src)
	mustRun(t, bin, "", "export", "-data", src, "-user", "bob@localhost", one)
	expectFail(t, bin, 1, "no account nobody@localhost", "export", "-data", src, "-user", "nobody@localhost", filepath.Join(out, "x.xml"))
	mustNotExist(t, filepath.Join(out, "x.xml"))
	viaSocket := mustRun(t, bin, "", "export", "-data", src, "-")
	srv.stop(t, syscall.SIGTERM)

	b, err := os.ReadFile(all)
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(all); fi.Mode().Perm() != 0o600 {
		t.Errorf("export file mode %v, want 0600 (it holds credentials)", fi.Mode().Perm())
	}
	for _, s := range []string{"<server-data xmlns='urn:xmpp:pie:0'>", "<host jid='localhost'>", "<user name='alice' ", "<user name='bob' ", "mechanism='SCRAM-SHA-256'"} {
		if !strings.Contains(string(b), s) || !strings.Contains(viaSocket, s) {
			t.Errorf("the exports lack %s", s)
		}
	}
	if strings.Contains(string(b), "old-pw") {
		t.Error("the export holds a password")
	}
	if bob, _ := os.ReadFile(one); !strings.Contains(string(bob), "<user name='bob' ") || strings.Contains(string(bob), "alice") {
		t.Errorf("one user's export:\n%s", bob)
	}

	// Into an empty folder, without a server; again: all skipped.
	dst := t.TempDir()
	if got := mustRun(t, bin, "", "import", "-data", dst, all); !strings.Contains(got, "accounts:        2 imported, 0 skipped") {
		t.Errorf("import:\n%s", got)
	}
	got := mustRun(t, bin, "", "import", "-data", dst, all)
	if !strings.Contains(got, "accounts:        0 imported, 2 skipped") || !strings.Contains(got, "skipped: alice@localhost: account exists; kept its password") {
		t.Errorf("second import:\n%s", got)
	}
	srv = startServer(t, bin, dst)
	srv.mustLogin(t, "alice@localhost", "alice-old-pw", false)
	srv.mustNotLogin(t, "alice@localhost", "wrong")
	srv.stop(t, syscall.SIGTERM)

	// Into a running server, through its admin socket.
	live := t.TempDir()
	srv = startServer(t, bin, live)
	if got := mustRun(t, bin, "", "import", "-data", live, one); !strings.Contains(got, "accounts:        1 imported") {
		t.Errorf("import through the socket:\n%s", got)
	}
	srv.mustLogin(t, "bob@localhost", "bob-old-pw", true)
	if got := mustRun(t, bin, "", "users", "-data", live); got != "bob@localhost\n" {
		t.Errorf("users after the import: %q", got)
	}
	expectFail(t, bin, 1, "not-there.xml", "import", "-data", live, filepath.Join(out, "not-there.xml"))
	srv.stop(t, syscall.SIGTERM)
}

// On a terminal, import shows how far it got on stderr (util-linux's
// script gives the command one); elsewhere it shows nothing.
func TestImportProgress(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	scriptBin, err := exec.LookPath("script")
	if err != nil {
		t.Skip("no script(1) to run the command on a terminal")
	}
	bin := buildBinary(t)
	src := t.TempDir()
	mustRun(t, bin, "", "adduser", "-data", src, "-password", "pw-1", "alice@localhost")
	mustRun(t, bin, "", "adduser", "-data", src, "-password", "pw-2", "bob@localhost")
	file := filepath.Join(t.TempDir(), "all.xml")
	mustRun(t, bin, "", "export", "-data", src, file)

	// Not a terminal: the summary only.
	r := runCmd(t, bin, "", "import", "-data", t.TempDir(), file)
	if r.code != 0 || strings.Contains(r.stderr, "MiB read") {
		t.Errorf("import without a terminal: exit %d, stderr %q", r.code, r.stderr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	quote := func(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
	cmd := exec.CommandContext(ctx, scriptBin, "-qec", quote(bin)+" import -data "+quote(t.TempDir())+" "+quote(file), "/dev/null")
	cmd.Env = childEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("import on a terminal: %v\n%s", err, out)
	}
	if !regexp.MustCompile(`\rimport: [0-9.]+ of [0-9.]+ MiB read, [12] users and rooms`).Match(out) || !strings.Contains(string(out), "accounts:        2 imported") {
		t.Errorf("import on a terminal showed no progress:\n%q", out)
	}
}
