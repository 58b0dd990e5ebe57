package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
)

// The backup tests (community backup and restore, examples/community
// backup.go): a Treff filled by slixmpp clients (accounts, roster, vCard,
// PEP, an offline message, a persistent room, an uploaded file) is backed
// up while two clients chat, restored into a new folder, and the example
// binary started there serves it all to the same clients with their old
// passwords.

// runCommunityErr runs a subcommand of the binary (at most 60s) and
// returns its exit error, stdout and stderr; it never fails the test, so
// that it can run outside the test's goroutine.
func runCommunityErr(bin string, args ...string) (string, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = communityEnv()
	cmd.Stdin = strings.NewReader("")
	cmd.WaitDelay = 2 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("did not finish within 60s: %w", ctx.Err())
	}
	return stdout.String(), stderr.String(), err
}

// waitFile waits until name exists (at most d), or done is closed.
func waitFile(name string, d time.Duration, done <-chan struct{}) error {
	deadline := time.Now().Add(d)
	for {
		if _, err := os.Stat(name); err == nil {
			return nil
		}
		select {
		case <-done:
			return errors.New("the client ended first")
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not appear within %v", name, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// downloadFrom fetches the path of the upload URL u from the https
// listener addr, trusting certFile.
func downloadFrom(t *testing.T, u, addr, certFile string) (int, []byte) {
	t.Helper()
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	pem, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "localhost"},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		}}}
	resp, err := hc.Get("https://localhost" + pu.EscapedPath())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

// TestBackupRestoreCommunity: accounts filled on the example server by
// slixmpp (clients/migrate.py populate: roster, vCard, private XML, PEP,
// an offline message; a persistent room; a photo uploaded with XEP-0363)
// are backed up with community backup while alice and bob chat
// (clients/backup.py chat: the backup starts after their first exchange
// and they go on until it is written, every message delivered once). The
// backup is restored into a new folder, where the example server serves
// everything to the same clients logging in with their old passwords,
// the room, and the photo byte for byte. That server also writes a daily
// backup (-backup-daily), encrypted for an age key (-backup-recipient). Backups encrypted with a passphrase file and
// for an age X25519 recipient (generated here with the age library)
// round-trip, also through the age CLI when it is installed (it decrypts
// Treff's backup; Treff restores what it encrypted); a wrong identity
// fails clearly and restores nothing.
func TestBackupRestoreCommunity(t *testing.T) {
	needSlixmpp(t)
	const domain = "localhost"
	bin := buildCommunity(t)
	src := t.TempDir()
	for _, u := range migUsers {
		runCommunity(t, bin, "adduser", "-data", src, "-password", u[1], u[0]+"@"+domain)
	}
	w := startWebCommunity(t, bin, src, "-upload-max-size", "4000")
	migClient(t, w.addr, w.cert, domain, "populate", append(offlineArgs(domain), "--pep")...)
	const room, roomName = "keep@" + mucService, "Backup & <restore>"
	roomArgs := []string{"--jid", "alice@" + domain, "--password", migUsers[0][1], "--peer", "bob@" + domain,
		"--peer-password", migUsers[1][1], "--third", "carol@" + domain, "--third-password", migUsers[2][1],
		"--room", "keep", "--room-name", roomName}
	es := w.clients().muc(t, "persist_create", roomArgs...)
	checkJoined(t, es, "alice", room, "alice", 110, 201)

	dir := t.TempDir()
	photo := make([]byte, 3000)
	rand.Read(photo)
	photoFile := filepath.Join(dir, "photo.png")
	if err := os.WriteFile(photoFile, photo, 0o600); err != nil {
		t.Fatal(err)
	}
	script, err := filepath.Abs(filepath.Join("clients", "upload.py"))
	if err != nil {
		t.Fatal(err)
	}
	es = runClient(t, "upload.py", append(pythonEnv(), "SSL_CERT_FILE="+w.cert), python, script,
		"--cert", w.cert, "--timeout", fmt.Sprint(scriptTimeout.Seconds()), "--addr", w.addr,
		"upload", "--jid", "alice@localhost", "--password", migUsers[0][1], "--file", photoFile)
	var up uploadResult
	es.one(t, "uploaded", "alice").decode(t, &up)
	if up.URL == "" {
		t.Fatalf("upload: %+v", up)
	}

	// The backup, while alice and bob chat.
	started, stop := filepath.Join(dir, "started"), filepath.Join(dir, "stop")
	plain := filepath.Join(dir, "treff.tar.gz")
	type result struct {
		stdout, stderr string
		err            error
	}
	backupDone := make(chan result, 1)
	chatDone := make(chan struct{})
	go func() {
		var r result
		if r.err = waitFile(started, 20*time.Second, chatDone); r.err == nil {
			r.stdout, r.stderr, r.err = runCommunityErr(bin, "backup", "-data", src, "-o", plain)
		}
		os.WriteFile(stop, nil, 0o600) // the chat ends in any case
		backupDone <- r
	}()
	chatArgs := []string{"--jid", "alice@" + domain + "/chat", "--password", migUsers[0][1],
		"--peer", "bob@" + domain + "/chat", "--peer-password", migUsers[1][1], "--started", started, "--stop", stop}
	es = w.clients().client(t, "backup.py", "chat", chatArgs...)
	close(chatDone)
	r := <-backupDone
	if r.err != nil {
		t.Fatalf("backup while chatting: %v\nstdout: %s\nstderr: %s\nserver:\n%s", r.err, r.stdout, r.stderr, w.logs)
	}
	var chatted struct{ Rounds int }
	es.one(t, "chatted", "").decode(t, &chatted)
	if chatted.Rounds < 2 {
		t.Errorf("only %d exchanges: the backup did not run during the chat", chatted.Rounds)
	}
	if !strings.Contains(r.stdout, "1 uploaded files") {
		t.Errorf("backup said %q", r.stdout)
	}
	if !strings.Contains(w.logs.String(), "database copied for a backup") {
		t.Errorf("the running server did not copy the database:\n%s", w.logs)
	}
	w.stop(t)

	// Restored into a new folder, served by a new server.
	dst := filepath.Join(t.TempDir(), "restored")
	out := runCommunity(t, bin, "restore", "-data", dst, plain)
	if !strings.Contains(out, "4 accounts (localhost)") || !strings.Contains(out, "1 uploaded files") {
		t.Errorf("restore said %q", out)
	}
	if _, stderr, err := runCommunityErr(bin, "restore", "-data", dst, plain); err == nil || !strings.Contains(stderr, "is not empty") {
		t.Errorf("restore into the restored folder again: %v, %q; want a refusal", err, stderr)
	}
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	wrong, _ := age.GenerateX25519Identity()
	idFile, wrongFile := filepath.Join(dir, "key.txt"), filepath.Join(dir, "wrong.txt")
	for f, k := range map[string]*age.X25519Identity{idFile: id, wrongFile: wrong} {
		if err := os.WriteFile(f, []byte(k.String()+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	daily := filepath.Join(t.TempDir(), "daily")
	w2 := startWebCommunity(t, bin, dst, "-upload-max-size", "4000", "-backup-daily", daily, "-backup-keep", "3",
		"-backup-recipient", id.Recipient().String())
	es = migClient(t, w2.addr, w2.cert, domain, "check", append(offlineArgs(domain), "--pep")...)
	checkMigrated(t, es, domain)
	checkOffline(t, es, domain)
	checkPEP(t, es)
	es = w2.clients().muc(t, "persist_check", roomArgs...)
	checkRoomInfo(t, discoInfo(t, es, "bob"), roomName, "muc_persistent", "muc_public")
	checkJoined(t, es, "alice", room, "alice", 110)
	if code, body := downloadFrom(t, up.URL, w2.https, w2.cert); code != 200 || !bytes.Equal(body, photo) {
		t.Errorf("the photo from the restored server: %d, %d bytes; want 200 and the %d bytes uploaded", code, len(body), len(photo))
	}
	// The daily backup is written at start (none in the folder yet).
	if err := waitFile(daily, 20*time.Second, nil); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(w2.logs.String(), "daily backup written") {
		if time.Now().After(deadline) || strings.Contains(w2.logs.String(), "daily backup failed") {
			t.Fatalf("no daily backup within 30s:\n%s", w2.logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	w2.stop(t)
	dailies, _ := filepath.Glob(filepath.Join(daily, "treff-backup-*.tar.gz.age"))
	if len(dailies) != 1 {
		t.Fatalf("daily backups: %q, want one", dailies)
	}

	// Encrypted backups (the server stopped: the command opens the
	// database itself) round-trip; a wrong key restores nothing.
	pass := filepath.Join(dir, "passphrase")
	if err := os.WriteFile(pass, []byte("a long passphrase for the backups\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	byPass, byKey := filepath.Join(dir, "p.tar.gz.age"), filepath.Join(dir, "k.tar.gz.age")
	runCommunity(t, bin, "backup", "-data", dst, "-o", byPass, "-passphrase-file", pass)
	runCommunity(t, bin, "backup", "-data", dst, "-o", byKey, "-recipient", id.Recipient().String())
	for _, f := range []string{byPass, byKey} {
		if b, _ := os.ReadFile(f); !bytes.HasPrefix(b, []byte("age-encryption.org/v1\n")) {
			t.Errorf("%s is not an age file", f)
		}
	}
	// The age CLI (an independent implementation, if installed: Debian's
	// age) opens Treff's backups, and Treff restores what it encrypts.
	restores := []struct {
		file string
		args []string
	}{
		{byPass, []string{"-passphrase-file", pass}},
		{byKey, []string{"-identity", idFile}},
		{dailies[0], []string{"-identity", idFile}},
	}
	if agePath, err := exec.LookPath("age"); err == nil {
		fromCLI, byCLI := filepath.Join(dir, "from-cli.tar.gz"), filepath.Join(dir, "by-cli.age")
		for _, args := range [][]string{
			{"-d", "-i", idFile, "-o", fromCLI, byKey},
			{"-r", id.Recipient().String(), "-o", byCLI, plain},
		} {
			if out, err := exec.Command(agePath, args...).CombinedOutput(); err != nil {
				t.Fatalf("age %q: %v\n%s", args, err, out)
			}
		}
		restores = append(restores, struct {
			file string
			args []string
		}{fromCLI, nil}, struct {
			file string
			args []string
		}{byCLI, []string{"-identity", idFile}})
	} else {
		t.Log("no age CLI: interoperability with it not checked")
	}
	bad := filepath.Join(t.TempDir(), "bad")
	if _, stderr, err := runCommunityErr(bin, "restore", "-data", bad, "-identity", wrongFile, byKey); err == nil ||
		!strings.Contains(stderr, "encrypted for other keys: no identity in "+wrongFile+" matches") {
		t.Errorf("restore with a wrong identity: %v, %q", err, stderr)
	}
	if _, err := os.Stat(bad); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed restore left %s: %v", bad, err)
	}
	for _, tc := range restores {
		to := filepath.Join(t.TempDir(), "d")
		out := runCommunity(t, bin, append(append([]string{"restore", "-data", to}, tc.args...), tc.file)...)
		if !strings.Contains(out, "4 accounts (localhost)") || !strings.Contains(out, "1 uploaded files") {
			t.Errorf("restore of %s said %q", filepath.Base(tc.file), out)
		}
		users := runCommunity(t, bin, "users", "-data", to)
		for _, u := range migUsers {
			if !strings.Contains(users, u[0]+"@"+domain+"\n") {
				t.Errorf("restore of %s: users %q lacks %s", filepath.Base(tc.file), users, u[0])
			}
		}
	}
}
