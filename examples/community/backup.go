package main

// Backups: community backup -o FILE, community restore FILE, and the
// server's daily backup (keys backup_daily, backup_keep, backup_recipient).
//
// A backup is a gzip-compressed tar archive of the data folder:
//
//	treff-backup.json  what wrote it: {"format":1,"created":...,"version":...,"domains":[...]}
//	treff.db           a consistent copy of the database (boltstore.Store.Backup)
//	uploads/...        the uploaded files (XEP-0363)
//	...                every other regular file of the data folder, in
//	                   particular fast-secret, s2s-secret, cert.pem, key.pem
//
// Left out: admin.sock (a socket), files and folders whose names start with
// '.' (temporary files: uploads being written, snapshots being taken),
// symbolic links and other special files (reported on stderr), the backup
// being written and the backup_daily folder if they lie in the data
// folder. A certificate configured with cert and key outside the data
// folder is not in it.
//
// With -passphrase-file or -recipient the archive is encrypted with age
// (https://age-encryption.org/v1), so "age -d" decrypts it too.
//
// While a server runs, the database copy is taken by the server: the
// command makes an empty file .backup-*.db in the data folder and asks on
// the admin socket
//
//	{"cmd":"backup","file":".backup-123.db"}   answer: {"ok":true,"size":N}
//
// for the server to write the copy into it (one read transaction; writes
// go on meanwhile), then archives it with the other files and removes it.
// Without a server, the command holds the database lock while it works.

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"filippo.io/age"
	"filippo.io/age/armor"

	"github.com/treff-im/treff/storage"
	"github.com/treff-im/treff/storage/boltstore"
	"github.com/treff-im/treff/storage/pgstore"
)

const (
	// backupManifestName is the archive's first entry.
	backupManifestName = "treff-backup.json"
	// backupFormat is the version of the archive's layout.
	backupFormat = 1
	// backupSnapshotPrefix starts the names of database copies in the
	// data folder.
	backupSnapshotPrefix = ".backup-"
	// backupTimeout bounds the server's copy of the database, asked on
	// the admin socket.
	backupTimeout = time.Hour
	// dailyPrefix and dailySuffix frame the names of daily backups;
	// encrypted ones end in dailySuffix+ageSuffix.
	dailyPrefix, dailySuffix, ageSuffix = "treff-backup-", ".tar.gz", ".age"
	// dailyLayout is the time in the names of daily backups (UTC).
	dailyLayout = "20060102T150405Z"
	// uploadsDir is the folder of uploaded files in the data folder.
	uploadsDir = "uploads"
)

// scryptWorkFactor is age's scrypt work factor for passphrases; 0 means
// age's default (18: about a second). Tests lower it.
var scryptWorkFactor = 0

// backupManifest is the archive's first entry.
type backupManifest struct {
	Format  int       `json:"format"`
	Created time.Time `json:"created"`
	// Version is the module version and VCS revision of the writer.
	Version string   `json:"version,omitempty"`
	Domains []string `json:"domains,omitempty"`
}

// backupStats says what a backup or a restore held.
type backupStats struct {
	DBSize  int64
	Uploads int      // files under uploads/
	Other   []string // the other files, as named in the archive
	Skipped []string // backup: special files left out
	// accounts is, for a restore, the number of accounts on the
	// backup's domains.
	accounts int
}

func (s backupStats) String() string {
	others := "no other files"
	if len(s.Other) > 0 {
		others = strings.Join(s.Other, ", ")
	}
	return fmt.Sprintf("database %s, %d uploaded files, %s", byteSize(s.DBSize), s.Uploads, others)
}

func byteSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}

// softwareVersion is the module version and VCS revision of this binary.
func softwareVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	v := bi.Main.Version
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" {
			v += " " + s.Value
		}
	}
	return v
}

// snapshotFunc writes a consistent copy of the database to f and returns
// its size.
type snapshotFunc func(ctx context.Context, f *os.File) (int64, error)

// writeBackup writes the archive of the data folder data to w: the
// manifest, the database copy made by snap, and the folder's other files
// but those excluded (absolute paths, files or folders).
func writeBackup(ctx context.Context, w io.Writer, data string, domains []string, snap snapshotFunc, exclude []string) (backupStats, error) {
	var st backupStats
	data, err := filepath.Abs(data)
	if err != nil {
		return st, err
	}
	tmp, err := os.CreateTemp(data, backupSnapshotPrefix+"*.db")
	if err != nil {
		return st, fmt.Errorf("backup: a file for the database copy: %w", err)
	}
	defer func() {
		tmp.Close()
		os.Remove(tmp.Name())
	}()
	if st.DBSize, err = snap(ctx, tmp); err != nil {
		return st, err
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return st, err
	}

	gz, _ := gzip.NewWriterLevel(w, gzip.BestSpeed)
	tw := tar.NewWriter(gz)
	now := time.Now().UTC().Truncate(time.Second)
	man, _ := json.MarshalIndent(backupManifest{Format: backupFormat, Created: now, Version: softwareVersion(), Domains: domains}, "", "  ")
	man = append(man, '\n')
	if err := tw.WriteHeader(&tar.Header{Name: backupManifestName, Mode: 0o600, Size: int64(len(man)), ModTime: now, Typeflag: tar.TypeReg}); err != nil {
		return st, err
	}
	if _, err := tw.Write(man); err != nil {
		return st, err
	}
	if err := tw.WriteHeader(&tar.Header{Name: dbFile, Mode: 0o600, Size: st.DBSize, ModTime: now, Typeflag: tar.TypeReg}); err != nil {
		return st, err
	}
	if _, err := io.CopyN(tw, tmp, st.DBSize); err != nil {
		return st, fmt.Errorf("backup: copying the database: %w", err)
	}

	err = filepath.WalkDir(data, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && path != data {
				return nil // removed meanwhile (an expired upload)
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if path == data {
			return nil
		}
		rel, _ := filepath.Rel(data, path)
		name := filepath.ToSlash(rel)
		switch {
		case strings.HasPrefix(d.Name(), "."), slices.Contains(exclude, path):
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		case name == dbFile, name == adminSocket:
			return nil
		case d.IsDir():
			return tw.WriteHeader(&tar.Header{Name: name + "/", Mode: 0o700, ModTime: now, Typeflag: tar.TypeDir})
		case !d.Type().IsRegular():
			st.Skipped = append(st.Skipped, name)
			return nil
		}
		f, err := os.Open(path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: fi.Size(), ModTime: fi.ModTime().Truncate(time.Second), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		if _, err := io.CopyN(tw, f, fi.Size()); err != nil {
			return fmt.Errorf("backup: %s: %w", name, err)
		}
		if strings.HasPrefix(name, uploadsDir+"/") {
			st.Uploads++
		} else {
			st.Other = append(st.Other, name)
		}
		return nil
	})
	if err != nil {
		return st, err
	}
	if err := tw.Close(); err != nil {
		return st, err
	}
	return st, gz.Close()
}

// storeSnapshot is the snapshotFunc of an open store.
func storeSnapshot(store storage.Store) snapshotFunc {
	return func(ctx context.Context, f *os.File) (int64, error) {
		b, ok := store.(interface {
			Backup(context.Context, io.Writer) (int64, error)
		})
		if _, pg := store.(*pgstore.Store); pg {
			return 0, errors.New("backup: with store = postgres, back up the database with PostgreSQL's own tools (pg_dump) and the data folder's files with any file backup; community backup copies a bbolt data folder")
		}
		if !ok {
			return 0, errors.New("backup: the store cannot copy itself")
		}
		bw := bufio.NewWriterSize(f, 1<<20)
		n, err := b.Backup(ctx, bw)
		if err == nil {
			err = bw.Flush()
		}
		return n, err
	}
}

// serverSnapshot is the snapshotFunc of a running server: it asks on the
// admin socket for the copy to be written into f. It returns errNoServer
// if no server answers.
func serverSnapshot(cfg Config) snapshotFunc {
	return func(ctx context.Context, f *os.File) (int64, error) {
		c, err := net.DialTimeout("unix", filepath.Join(cfg.Data, adminSocket), adminDial)
		if err != nil {
			return 0, errNoServer
		}
		defer c.Close()
		if err := giveToOwnerOf(f, cfg.Data); err != nil {
			return 0, fmt.Errorf("backup: %w", err)
		}
		c.SetDeadline(time.Now().Add(backupTimeout))
		b, _ := json.Marshal(adminRequest{Cmd: "backup", File: filepath.Base(f.Name())})
		if _, err := c.Write(append(b, '\n')); err != nil {
			return 0, fmt.Errorf("admin socket: %w", err)
		}
		line, err := readLine(bufio.NewReader(c), adminMaxLine)
		if err != nil {
			return 0, fmt.Errorf("admin socket: the server did not answer: %w", err)
		}
		var resp adminResponse
		if err := json.Unmarshal(line, &resp); err != nil {
			return 0, fmt.Errorf("admin socket: bad answer: %w", err)
		}
		if !resp.OK {
			return 0, &cmdError{kind: kindError, msg: resp.Error}
		}
		return resp.Size, nil
	}
}

// backupSnapshot writes, for the admin socket's backup request, a copy of
// the database into the file name in the data folder, which the command
// made (empty) for it. It returns the copy's size.
func (a *adminServer) backupSnapshot(ctx context.Context, name string) (int64, error) {
	if a.data == "" || name != filepath.Base(name) || !strings.HasPrefix(name, backupSnapshotPrefix) || !strings.HasSuffix(name, ".db") {
		return 0, usageErrorf("backup needs the name of a %s*.db file in the data folder", backupSnapshotPrefix)
	}
	path := filepath.Join(a.data, name)
	fi, err := os.Lstat(path)
	if err != nil {
		return 0, usageErrorf("backup: %v", err)
	}
	if !fi.Mode().IsRegular() {
		return 0, usageErrorf("backup: %s is not a regular file", name)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return 0, err
	}
	n, err := storeSnapshot(a.acct.store)(ctx, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		a.log.Info("database copied for a backup", "bytes", n)
	}
	return n, err
}

// parseRecipientList checks a comma-separated list of age public keys
// and returns them, spaces removed.
func parseRecipientList(v string) ([]string, error) {
	var keys []string
	for _, k := range strings.Split(v, ",") {
		if k = strings.TrimSpace(k); k == "" {
			continue
		}
		if _, err := age.ParseRecipients(strings.NewReader(k)); err != nil {
			return nil, fmt.Errorf("%q is not an age public key", k)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// ageRecipients parses keys checked by parseRecipientList.
func ageRecipients(keys []string) ([]age.Recipient, error) {
	var rs []age.Recipient
	for _, k := range keys {
		r, err := age.ParseRecipients(strings.NewReader(k))
		if err != nil {
			return nil, err
		}
		rs = append(rs, r...)
	}
	return rs, nil
}

// backupEncrypter wraps w to encrypt what is written for recipients (none:
// w as it is).
func backupEncrypter(w io.Writer, recipients []age.Recipient) (io.WriteCloser, error) {
	if len(recipients) == 0 {
		return nopCloser{w}, nil
	}
	return age.Encrypt(w, recipients...)
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// readPassphrase reads the passphrase in the first line of file.
func readPassphrase(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("passphrase file: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	line = strings.TrimSuffix(line, "\r")
	if line == "" {
		return "", usageErrorf("the passphrase file %s is empty (the passphrase is its first line)", file)
	}
	return line, nil
}

// cmdBackup writes a backup of the data folder to a file.
func cmdBackup(args []string, stdout, stderr io.Writer) error {
	f := newFlags("community backup", stderr, "data", "domain")
	var out, passFile string
	var recipients []age.Recipient
	f.fs.StringVar(&out, "o", "", "write the backup to this `file` (- : standard output)")
	f.fs.StringVar(&passFile, "passphrase-file", "", "encrypt with the passphrase in the first line of this `file` (age, scrypt)")
	f.fs.Func("recipient", "encrypt for this age public `key` (age1...; may be repeated)", func(v string) error {
		rs, err := age.ParseRecipients(strings.NewReader(v))
		if err != nil {
			return fmt.Errorf("not an age public key: %v", err)
		}
		recipients = append(recipients, rs...)
		return nil
	})
	f.usage("Usage: community backup [flags] -o FILE [-passphrase-file F | -recipient AGE_PUBKEY]\n")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) != 0:
		return usageErrorf("backup takes no arguments; the file is given with -o")
	case out == "":
		return usageErrorf("backup needs -o FILE (community backup -o FILE)")
	case passFile != "" && len(recipients) > 0:
		return usageErrorf("-passphrase-file and -recipient do not go together (age encrypts to a passphrase alone)")
	}
	cfg, err := f.config()
	if err != nil {
		return err
	}
	if passFile != "" {
		pass, err := readPassphrase(passFile)
		if err != nil {
			return err
		}
		r, err := age.NewScryptRecipient(pass)
		if err != nil {
			return err
		}
		if scryptWorkFactor > 0 {
			r.SetWorkFactor(scryptWorkFactor)
		}
		recipients = []age.Recipient{r}
	}
	if cfg.Store == storePostgres {
		return errors.New("backup: with store = postgres, back up the database with PostgreSQL's own tools (pg_dump) and the data folder's files with any file backup; community backup copies a bbolt data folder")
	}
	// Never a new data folder (withStore, without a server, also wants
	// its database).
	if fi, err := os.Stat(cfg.Data); err != nil || !fi.IsDir() {
		if _, err := existingDatabase(cfg, false); err != nil {
			return err
		}
		return fmt.Errorf("the data folder %s is not usable", cfg.Data)
	}
	var exclude []string
	if out != "-" {
		abs, err := filepath.Abs(out)
		if err != nil {
			return err
		}
		exclude = append(exclude, abs)
	}
	if cfg.BackupDaily != "" {
		if abs, err := filepath.Abs(cfg.BackupDaily); err == nil {
			exclude = append(exclude, abs)
		}
	}
	w, commit, err := createOutput(out, stdout)
	if err != nil {
		return err
	}
	defer commit(false)
	bw := bufio.NewWriterSize(w, 1<<20)
	enc, err := backupEncrypter(bw, recipients)
	if err != nil {
		return err
	}
	ctx := context.Background()
	st, err := writeBackup(ctx, enc, cfg.Data, cfg.Domains, serverSnapshot(cfg), exclude)
	if errors.Is(err, errNoServer) {
		// No server: the database lock keeps one from starting meanwhile.
		err = withStore(cfg, "backup", func(store storage.Store) error {
			st, err = writeBackup(ctx, enc, cfg.Data, cfg.Domains, storeSnapshot(store), exclude)
			return err
		})
	}
	if err == nil {
		err = enc.Close()
	}
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = commit(true)
	}
	if err != nil {
		return err
	}
	for _, s := range st.Skipped {
		fmt.Fprintf(stderr, "community: backup: %s left out: not a regular file\n", s)
	}
	report := stdout
	if out == "-" {
		report = stderr
	}
	how := ""
	if len(recipients) > 0 {
		how = " (encrypted with age)"
	}
	fmt.Fprintf(report, "backup: %s written%s: %s\n", out, how, st)
	return nil
}

// ageMagic starts every age file; ageArmor an armored one.
var (
	ageMagic = []byte("age-encryption.org/")
	ageArmor = []byte(armor.Header)
)

// openBackup returns the tar stream of the backup read from r, decrypting
// it with ids if it is encrypted.
func openBackup(r io.Reader, ids []age.Identity, idSource string) (io.Reader, error) {
	br := bufio.NewReader(r)
	head, _ := br.Peek(len(ageArmor))
	var src io.Reader = br
	switch {
	case bytes.HasPrefix(head, ageArmor):
		src = armor.NewReader(br)
		fallthrough
	case bytes.HasPrefix(head, ageMagic):
		if len(ids) == 0 {
			return nil, usageErrorf("the backup is encrypted (age): give -identity FILE or -passphrase-file FILE")
		}
		dec, err := age.Decrypt(src, ids...)
		var nm *age.NoIdentityMatchError
		switch {
		case errors.As(err, &nm) && slices.Contains(nm.StanzaTypes, "scrypt"):
			return nil, fmt.Errorf("the backup is encrypted with a passphrase, and %s does not hold it (wrong passphrase, or give -passphrase-file)", idSource)
		case errors.As(err, &nm):
			return nil, fmt.Errorf("the backup is encrypted for other keys: no identity in %s matches it", idSource)
		case err != nil:
			return nil, fmt.Errorf("decrypting the backup: %w", err)
		}
		src = dec
	}
	gz, err := gzip.NewReader(bufio.NewReader(src))
	if err != nil {
		return nil, errors.New("not a Treff backup (neither a gzip-compressed archive nor an age-encrypted one)")
	}
	return gz, nil
}

// readBackup unpacks the backup's tar stream r into the folder dir, which
// is empty, and returns what it held.
func readBackup(r io.Reader, dir string) (backupManifest, backupStats, error) {
	var man backupManifest
	var st backupStats
	tr := tar.NewReader(r)
	hdr, err := tr.Next()
	if err != nil || hdr.Name != backupManifestName {
		return man, st, fmt.Errorf("not a Treff backup: it does not start with %s", backupManifestName)
	}
	if err := json.NewDecoder(io.LimitReader(tr, 1<<20)).Decode(&man); err != nil {
		return man, st, fmt.Errorf("not a Treff backup: %s: %w", backupManifestName, err)
	}
	if man.Format < 1 || man.Format > backupFormat {
		return man, st, fmt.Errorf("the backup has format %d; this build reads format %d: use a newer Treff", man.Format, backupFormat)
	}
	haveDB := false
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return man, st, fmt.Errorf("reading the backup: %w", err)
		}
		name := strings.TrimSuffix(hdr.Name, "/")
		if !filepath.IsLocal(filepath.FromSlash(name)) || strings.Contains(name, "\\") {
			return man, st, fmt.Errorf("the backup holds a file %q outside the data folder", hdr.Name)
		}
		path := filepath.Join(dir, filepath.FromSlash(name))
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(path, 0o700); err != nil {
				return man, st, err
			}
			continue
		case tar.TypeReg:
		default:
			return man, st, fmt.Errorf("the backup holds %q, which is not a file or a folder", hdr.Name)
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return man, st, err
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return man, st, err
		}
		_, err = io.Copy(f, tr)
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil && !hdr.ModTime.IsZero() {
			err = os.Chtimes(path, hdr.ModTime, hdr.ModTime)
		}
		if err != nil {
			return man, st, fmt.Errorf("restoring %s: %w", name, err)
		}
		switch {
		case name == dbFile:
			haveDB, st.DBSize = true, hdr.Size
		case strings.HasPrefix(name, uploadsDir+"/"):
			st.Uploads++
		default:
			st.Other = append(st.Other, name)
		}
	}
	// The rest of the stream: the gzip checksum is checked at its end.
	if _, err := io.Copy(io.Discard, r); err != nil {
		return man, st, fmt.Errorf("reading the backup: %w", err)
	}
	if !haveDB {
		return man, st, fmt.Errorf("the backup holds no %s", dbFile)
	}
	return man, st, nil
}

// cmdRestore unpacks a backup into an empty or new data folder.
func cmdRestore(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	f := newFlags("community restore", stderr, "data", "domain")
	var idFile, passFile string
	f.fs.StringVar(&idFile, "identity", "", "decrypt with the age identities (AGE-SECRET-KEY-...) in this `file`")
	f.fs.StringVar(&passFile, "passphrase-file", "", "decrypt with the passphrase in the first line of this `file`")
	f.usage("Usage: community restore [flags] [-identity F | -passphrase-file F] FILE   (FILE -: standard input)\n")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) != 1:
		return usageErrorf("restore needs exactly one FILE (community restore [-identity F | -passphrase-file F] FILE)")
	case idFile != "" && passFile != "":
		return usageErrorf("give -identity or -passphrase-file, not both")
	}
	cfg, err := f.config()
	if err != nil {
		return err
	}
	var ids []age.Identity
	var idSource string
	switch {
	case idFile != "":
		b, err := os.ReadFile(idFile)
		if err != nil {
			return fmt.Errorf("identity file: %w", err)
		}
		if ids, err = age.ParseIdentities(bytes.NewReader(b)); err != nil {
			return usageErrorf("identity file %s: %v", idFile, err)
		}
		idSource = idFile
	case passFile != "":
		pass, err := readPassphrase(passFile)
		if err != nil {
			return err
		}
		id, err := age.NewScryptIdentity(pass)
		if err != nil {
			return err
		}
		ids, idSource = []age.Identity{id}, passFile
	}

	dir, err := filepath.Abs(cfg.Data)
	if err != nil {
		return err
	}
	created := false
	switch entries, err := os.ReadDir(dir); {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		created = true
	case err != nil:
		return fmt.Errorf("the data folder %s: %w", dir, err)
	case len(entries) > 0:
		return fmt.Errorf("the data folder %s is not empty (%d entries): restore only into an empty or new folder, so that nothing is overwritten; move it aside or give another -data", dir, len(entries))
	}
	undo := func() {
		if created {
			os.RemoveAll(dir)
			return
		}
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			os.RemoveAll(filepath.Join(dir, e.Name()))
		}
	}

	var in io.Reader = stdin
	if pos[0] != "-" {
		fh, err := os.Open(pos[0])
		if err != nil {
			undo()
			return err
		}
		defer fh.Close()
		in = fh
	}
	src, err := openBackup(in, ids, idSource)
	if err != nil {
		undo()
		return err
	}
	man, st, err := readBackup(src, dir)
	if err == nil {
		err = checkRestored(dir, man, &st)
	}
	if err != nil {
		undo()
		return fmt.Errorf("%w (nothing was restored)", err)
	}
	fmt.Fprintf(stdout, "restore: %s into %s: %s, %d accounts (%s), backup of %s\n",
		pos[0], dir, st, st.accounts, strings.Join(man.Domains, ", "), man.Created.Format(time.RFC3339))
	if missing := slicesMissing(man.Domains, cfg.Domains); len(missing) > 0 {
		fmt.Fprintf(stderr, "community: restore: the backup's accounts are on %s; serve that domain (domain = %s) to use them\n",
			strings.Join(missing, ", "), strings.Join(man.Domains, ", "))
	}
	return nil
}

// slicesMissing returns the elements of want that have is lacks.
func slicesMissing(want, have []string) []string {
	var m []string
	for _, w := range want {
		if !slices.Contains(have, w) {
			m = append(m, w)
		}
	}
	return m
}

// checkRestored opens the restored database (its schema must be one this
// build knows) and counts the accounts on the backup's domains.
func checkRestored(dir string, man backupManifest, st *backupStats) error {
	store, err := boltstore.Open(filepath.Join(dir, dbFile), &boltstore.Options{Timeout: lockTimeout, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return fmt.Errorf("the restored database: %w", err)
	}
	for _, d := range man.Domains {
		accts, lerr := store.ListAccounts(context.Background(), d)
		if lerr != nil {
			err = fmt.Errorf("the restored database: %w", lerr)
			break
		}
		st.accounts += len(accts)
	}
	if cerr := store.Close(); err == nil {
		err = cerr
	}
	return err
}

// backupDaily writes a backup into cfg.BackupDaily at once if the newest
// there is a day old (or there is none), then once a day, keeping the
// newest cfg.BackupKeep; after a failure it tries again an hour later. It
// returns when ctx is done.
func backupDaily(ctx context.Context, cfg Config, store storage.Store, log *slog.Logger) {
	var failed time.Time
	for {
		next := dailyDue(cfg.BackupDaily, time.Now())
		if retry := failed.Add(time.Hour); next.Before(retry) {
			next = retry
		}
		t := time.NewTimer(time.Until(next))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		name, st, removed, err := writeDaily(ctx, cfg, store, time.Now())
		if err != nil {
			if ctx.Err() == nil {
				log.Error("daily backup failed; trying again in an hour", "dir", cfg.BackupDaily, "err", err)
			}
			failed = time.Now()
			continue
		}
		failed = time.Time{}
		log.Info("daily backup written", "file", name, "database_bytes", st.DBSize, "uploads", st.Uploads, "removed", len(removed))
	}
}

// dailyDue returns when the next daily backup in dir is due: a day after
// the newest, or now if there is none.
func dailyDue(dir string, now time.Time) time.Time {
	names := dailyBackups(dir)
	if len(names) == 0 {
		return now
	}
	t, _ := dailyTime(names[len(names)-1])
	return t.Add(24 * time.Hour)
}

// dailyTime returns the time in the name of a daily backup.
func dailyTime(name string) (time.Time, bool) {
	rest, ok := strings.CutPrefix(name, dailyPrefix)
	if !ok {
		return time.Time{}, false
	}
	rest = strings.TrimSuffix(rest, ageSuffix)
	if rest, ok = strings.CutSuffix(rest, dailySuffix); !ok {
		return time.Time{}, false
	}
	t, err := time.Parse(dailyLayout, rest)
	return t, err == nil
}

// dailyBackups returns the names of the daily backups in dir, oldest
// first; other files are not listed.
func dailyBackups(dir string) []string {
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		if _, ok := dailyTime(e.Name()); ok && e.Type().IsRegular() {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names) // the time's layout sorts as text, and comes first
	return names
}

// writeDaily writes one daily backup, named for now, into cfg.BackupDaily
// and removes the oldest beyond cfg.BackupKeep. It returns the new file's
// name, what it holds and the names of the removed backups.
func writeDaily(ctx context.Context, cfg Config, store storage.Store, now time.Time) (string, backupStats, []string, error) {
	dir, err := filepath.Abs(cfg.BackupDaily)
	if err != nil {
		return "", backupStats{}, nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", backupStats{}, nil, err
	}
	recipients, err := ageRecipients(cfg.BackupRecipients)
	if err != nil {
		return "", backupStats{}, nil, err
	}
	name := filepath.Join(dir, dailyPrefix+now.UTC().Format(dailyLayout)+dailySuffix)
	if len(recipients) > 0 {
		name += ageSuffix
	}
	w, commit, err := createOutput(name, nil)
	if err != nil {
		return "", backupStats{}, nil, err
	}
	defer commit(false)
	bw := bufio.NewWriterSize(w, 1<<20)
	enc, err := backupEncrypter(bw, recipients)
	if err != nil {
		return "", backupStats{}, nil, err
	}
	st, err := writeBackup(ctx, enc, cfg.Data, cfg.Domains, storeSnapshot(store), []string{dir})
	if err == nil {
		err = enc.Close()
	}
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = commit(true)
	}
	if err != nil {
		return "", st, nil, err
	}
	var removed []string
	names := dailyBackups(dir)
	keep := max(cfg.BackupKeep, 1)
	for len(names) > keep {
		if err := os.Remove(filepath.Join(dir, names[0])); err != nil {
			return name, st, removed, err
		}
		removed, names = append(removed, names[0]), names[1:]
	}
	return name, st, removed, nil
}
