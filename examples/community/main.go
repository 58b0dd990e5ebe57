// Community is a runnable XMPP server built on Treff, with admin commands
// for its accounts.
//
// Usage:
//
//	community [serve] [flags]         run the server
//	community adduser [flags] JID     create an account
//	community passwd [flags] JID      change an account's password
//	community deluser [flags] JID     delete an account and its data
//	community users [flags]           list the accounts, one JID per line
//	community devices [flags] JID     list the devices that log in with tokens
//	community devices -revoke ID JID  log one device out (its tokens end)
//	community export [-user JID] FILE write accounts and rooms (XEP-0227)
//	community import FILE|FOLDER      add accounts from a XEP-0227 export
//	community check                   check DNS, certificates, listeners, settings
//	community version                 print the version (also: -version)
//	community backup -o FILE          back up the data folder (backup.go)
//	community restore FILE            unpack a backup into a new data folder
//	community migrate-store -pg-dsn DSN  copy the bbolt database into PostgreSQL
//
// adduser, passwd and deluser with -batch read many accounts from standard
// input, one per line: "JID PASSWORD" (the password is the rest of the
// line) or, for deluser, the JID alone. Every line is checked before the
// first is carried out; the command stops at the first that fails.
//
// Without flags the server serves the domain localhost with STARTTLS on
// 127.0.0.1:5222 and direct TLS on 127.0.0.1:5223, and keeps its data in
// ./treff-data: the bbolt database treff.db, a self-signed certificate
// (cert.pem, key.pem) made on first start, and the admin socket admin.sock.
// Every setting can come from a config file (-config FILE; see
// treff.conf.sample) and from a flag of the same name, which wins.
//
// adduser and passwd take the password from -password or, without it, read
// one line from standard input (without echo on a Linux terminal); note that
// other local users can see a -password in the process list. The admin
// commands talk to the running
// server through admin.sock, so they work while it runs; when no server
// answers there, they open the database themselves. Admin commands accept
// -config, -data and -domain, before or after the JID.
//
// SIGINT or SIGTERM shuts the server down gracefully (at most 10 seconds).
// Exit status: 0 on success, 1 on a runtime error, 2 on a usage error.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/treff-im/treff/auth"
	"github.com/treff-im/treff/storage/boltstore"
)

// Exit codes.
const (
	exitOK      = 0
	exitError   = 1
	exitUsage   = 2
	dbFile      = "treff.db"
	lockTimeout = time.Second
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

const usageText = `Usage:
  community [serve] [flags]         run the server
  community adduser [flags] JID     create an account (password: -password or one line on stdin)
  community adduser -batch < FILE   create accounts from "JID PASSWORD" lines
  community passwd [flags] JID      change an account's password
  community deluser [flags] JID     delete an account, its roster and offline messages
  community deluser -batch < FILE   delete the accounts listed one JID per line
  community users [flags]           list the accounts (-count: their number;
                                    -recent: those created in the last 7 days
                                    (-days N), with their state)
  community suspend [-reason R] JID the account keeps its data but cannot
                                    log in; its sessions end
  community unsuspend JID           lift a suspension
  community approve JID             the limits for new accounts no longer
                                    apply to the account
  community ban JID                 delete the account and hold its name
                                    for good
  community block [DOMAIN|JID ...]  block domains or JIDs server-wide (no
                                    arguments: list the block list)
  community unblock DOMAIN|JID ...  lift such blocks
  community reports [-delete ID]    list the users' spam reports (XEP-0377)
  community devices [flags] JID     list the devices that log in with FAST
                                    tokens: user agent id, software, device,
                                    last use
  community devices -revoke ID JID  end that device's tokens and its
                                    sessions (it needs the password again)
  community announce [-subject S] TEXT
                                    send a message to everyone online
  community drain                   stop taking clients and send those
                                    online to other nodes (rolling
                                    upgrades; /health says draining)
  community expire [-delete]        list (or delete) accounts unused for
                                    expire_after (default 365d)
  community registration [open|closed|invite]
                                    show or switch the running server's
                                    in-band registration policy
  community invite [-valid 7d]      make an invitation link for one account
  community invite -list            list the links not used yet
  community export [-user JID] FILE write all accounts (or one) and rooms
                                    to FILE in XEP-0227 format (- : stdout)
  community import FILE|FOLDER      add the accounts and their data from a
                                    XEP-0227 export (Prosody, ejabberd,
                                    Treff); existing ones are kept
  community check [-resolver ADDR]  check DNS records, certificates,
                                    listeners and settings; one line per
                                    check (OK, WARN, FAIL); exit 1 on FAIL
  community version                 print the version and the git revision
                                    it was built from (also: -version)
  community backup -o FILE [-passphrase-file F | -recipient AGE_PUBKEY]
                                    write a backup of the data folder
                                    (database, uploads, secrets), also
                                    while the server runs (- : stdout)
  community restore [-identity F | -passphrase-file F] FILE
                                    unpack a backup into an empty or new
                                    data folder (-data)
  community migrate-store -pg-dsn DSN
                                    copy the data folder's bbolt database
                                    (everything it holds) into an empty
                                    PostgreSQL database; then serve with
                                    -store postgres -pg-dsn DSN

Admin commands accept -config FILE, -data DIR and -domain LIST (and
adduser/passwd -password), and -store postgres -pg-dsn DSN for a server
on PostgreSQL; they work while the server runs.
Run 'community -h' for the server's flags.
`

// run runs the command line args and returns the exit code. The server
// stops when ctx is done or at SIGINT or SIGTERM.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && (args[0] == "-version" || args[0] == "--version") {
		cmd, args = "version", args[1:]
	}
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "serve":
		err = cmdServe(ctx, args, stderr)
	case "adduser", "passwd", "deluser", "users":
		err = cmdAdmin(cmd, args, stdin, stdout, stderr)
	case "suspend", "unsuspend", "ban", "approve":
		err = cmdSuspend(cmd, args, stdout, stderr)
	case "block", "unblock":
		err = cmdBlock(cmd, args, stdout, stderr)
	case "reports":
		err = cmdReports(args, stdout, stderr)
	case "registration":
		err = cmdRegistration(args, stdout, stderr)
	case "expire":
		err = cmdExpire(args, stdout, stderr)
	case "invite":
		err = cmdInvite(args, stdout, stderr)
	case "announce":
		err = cmdAnnounce(args, stdin, stdout, stderr)
	case "drain":
		err = cmdDrain(args, stdout, stderr)
	case "devices":
		err = cmdDevices(args, stdout, stderr)
	case "export":
		err = cmdExport(args, stdout, stderr)
	case "import":
		err = cmdImport(args, stdout, stderr)
	case "version":
		err = cmdVersion(args, stdout)
	case "check":
		err = cmdCheck(ctx, args, stdout, stderr)
	case "backup":
		err = cmdBackup(args, stdout, stderr)
	case "migrate-store":
		err = cmdMigrateStore(args, stdout, stderr)
	case "restore":
		err = cmdRestore(args, stdin, stdout, stderr)
	case "help":
		fmt.Fprint(stdout, usageText)
		return exitOK
	default:
		fmt.Fprintf(stderr, "community: unknown command %q\n%s", cmd, usageText)
		return exitUsage
	}
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	}
	fmt.Fprintf(stderr, "community: %v\n", err)
	if errorKind(err) == kindUsage {
		return exitUsage
	}
	return exitError
}

// flags holds a command's flag set and what it collected.
type flags struct {
	fs         *flag.FlagSet
	stderr     io.Writer
	help       string // the head of the -h output
	configFile string
	settings   []setting
}

// newFlags returns a flag set with -config and a flag for each of the
// given config keys (all keys if none are given).
func newFlags(name string, stderr io.Writer, keys ...string) *flags {
	f := &flags{fs: flag.NewFlagSet(name, flag.ContinueOnError), stderr: stderr}
	// Parse errors are reported by run, as "community: ..."; only -h
	// prints (see usage).
	f.fs.SetOutput(io.Discard)
	f.fs.Usage = func() {}
	f.fs.StringVar(&f.configFile, "config", "", "config `file` (see treff.conf.sample); flags override it")
	if slices.Contains(keys, "data") {
		// Every command that opens the data folder's database can open
		// the PostgreSQL one instead.
		keys = append(keys, "store", "pg_dsn")
	}
	for _, o := range options {
		if len(keys) > 0 && !slices.Contains(keys, o.key) {
			continue
		}
		key := o.key
		f.fs.Func(flagName(key), o.usage, func(v string) error {
			var scratch Config
			if err := scratch.Set(key, v); err != nil {
				return errors.New(strings.TrimPrefix(err.Error(), key+": "))
			}
			f.settings = append(f.settings, setting{key, v})
			return nil
		})
	}
	return f
}

// parse parses args, allowing flags after positional arguments, and returns
// the positional arguments.
func (f *flags) parse(args []string) ([]string, error) {
	var pos []string
	for {
		if err := f.fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fmt.Fprint(f.stderr, f.help)
				f.fs.SetOutput(f.stderr)
				f.fs.PrintDefaults()
				return nil, err
			}
			return nil, usageErrorf("%v (see %s -h)", err, f.fs.Name())
		}
		rest := f.fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// usage sets the -h output: head, then the flags.
func (f *flags) usage(head string) { f.help = head }

// config returns the effective configuration.
func (f *flags) config() (Config, error) {
	c, err := loadConfig(f.configFile, f.settings)
	if err != nil {
		return Config{}, usageErrorf("%v", err)
	}
	return c, nil
}

func cmdServe(ctx context.Context, args []string, stderr io.Writer) error {
	f := newFlags("community", stderr)
	f.usage(usageText + "\nServer flags:\n")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErrorf("unexpected argument %q", pos[0])
	}
	cfg, err := f.config()
	if err != nil {
		return err
	}
	return serve(ctx, cfg, stderr)
}

func cmdAdmin(cmd string, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	f := newFlags("community "+cmd, stderr, "data", "domain")
	var password string
	var batch bool
	withUser := cmd != "users"
	withPassword := cmd == "adduser" || cmd == "passwd"
	var count, recent bool
	var days int
	if cmd == "users" {
		f.fs.BoolVar(&count, "count", false, "print only the number of accounts")
		f.fs.BoolVar(&recent, "recent", false, "list the accounts created in the last -days days, newest first, with creation, last login, approval and suspension")
		f.fs.IntVar(&days, "days", 7, "with -recent: how many `days` back")
	}
	if withPassword {
		f.fs.StringVar(&password, "password", "", "the `password` (default: read one line from standard input)")
	}
	if withUser {
		f.fs.BoolVar(&batch, "batch", false, batchHelp(withPassword))
		f.usage(fmt.Sprintf("Usage: community %s [flags] JID\n       community %s [flags] -batch < FILE\n", cmd, cmd))
	} else {
		f.usage(fmt.Sprintf("Usage: community %s [flags]\n", cmd))
	}
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	switch {
	case batch && (len(pos) != 0 || flagSet(f.fs, "password")):
		return usageErrorf("%s -batch takes its JIDs and passwords from standard input only", cmd)
	case withUser && !batch && len(pos) != 1:
		return usageErrorf("%s needs exactly one JID (community %s [flags] JID)", cmd, cmd)
	case !withUser && len(pos) != 0:
		return usageErrorf("%s takes no arguments", cmd)
	}
	cfg, err := f.config()
	if err != nil {
		return err
	}
	if batch {
		return adminBatch(cfg, cmd, withPassword, stdin, stdout)
	}
	req := adminRequest{Cmd: cmd}
	if recent {
		if days < 1 {
			return usageErrorf("-days must be at least 1")
		}
		req.Cmd, req.Before = "recent", time.Now().Add(-time.Duration(days)*24*time.Hour)
	}
	if withUser {
		j, err := parseUser(pos[0])
		if err != nil {
			return err
		}
		req.JID = j.String()
	}
	if withPassword {
		if !flagSet(f.fs, "password") {
			if password, err = readPassword(stdin, stderr, req.JID); err != nil {
				return err
			}
		}
		if err := checkPassword(password); err != nil {
			return err
		}
		req.Password = password
	}
	resp, err := admin(cfg, req)
	if err != nil {
		return err
	}
	if count {
		fmt.Fprintln(stdout, len(resp.Users))
		return nil
	}
	for _, u := range resp.Users {
		fmt.Fprintln(stdout, u)
	}
	return nil
}

// cmdDevices lists the devices of a user that log in with FAST tokens
// (XEP-0484), or revokes one device's tokens.
func cmdDevices(args []string, stdout, stderr io.Writer) error {
	f := newFlags("community devices", stderr, "data", "domain")
	var revoke string
	f.fs.StringVar(&revoke, "revoke", "", "log out the device with this user agent `id`")
	f.usage("Usage: community devices [flags] JID\n       community devices -revoke ID JID\n")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErrorf("devices needs exactly one JID (community devices [-revoke ID] JID)")
	}
	if flagSet(f.fs, "revoke") && revoke == "" {
		return usageErrorf("-revoke needs a user agent id (see community devices JID)")
	}
	cfg, err := f.config()
	if err != nil {
		return err
	}
	j, err := parseUser(pos[0])
	if err != nil {
		return err
	}
	resp, err := admin(cfg, adminRequest{Cmd: "devices", JID: j.String(), Agent: revoke})
	if err != nil {
		return err
	}
	if revoke != "" {
		fmt.Fprintf(stdout, "devices: %s of %s logged out\n", revoke, j)
		return nil
	}
	for _, u := range resp.Users {
		fmt.Fprintln(stdout, u)
	}
	return nil
}

// cmdAnnounce sends a headline message to everyone online on the
// configured domains of the running server.
func cmdAnnounce(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	f := newFlags("community announce", stderr, "data", "domain")
	var subject string
	f.fs.StringVar(&subject, "subject", "", "the `subject` of the message")
	f.usage("Usage: community announce [flags] TEXT...   (no TEXT: read it from standard input)\n")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	cfg, err := f.config()
	if err != nil {
		return err
	}
	text := strings.Join(pos, " ")
	if len(pos) == 0 {
		b, err := io.ReadAll(io.LimitReader(stdin, 64<<10))
		if err != nil {
			return fmt.Errorf("reading the announcement: %w", err)
		}
		text = strings.TrimRight(string(b), "\n")
	}
	if strings.TrimSpace(text) == "" {
		return usageErrorf("the announcement is empty")
	}
	resp, err := callAdmin(filepath.Join(cfg.Data, adminSocket), adminRequest{Cmd: "announce", Subject: subject, Body: text})
	if errors.Is(err, errNoServer) {
		return fmt.Errorf("no server runs with the data folder %s, so nobody is online", cfg.Data)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "announce: sent to %d sessions\n", resp.Sent)
	return nil
}

// cmdDrain asks the running server to drain (drain.go).
func cmdDrain(args []string, stdout, stderr io.Writer) error {
	f := newFlags("community drain", stderr, "data")
	f.usage("Usage: community drain [flags]   (the node stops taking clients and sends its clients elsewhere; stop it afterwards)\n")
	if _, err := f.parse(args); err != nil {
		return err
	}
	cfg, err := f.config()
	if err != nil {
		return err
	}
	resp, err := callAdmin(filepath.Join(cfg.Data, adminSocket), adminRequest{Cmd: "drain"})
	if errors.Is(err, errNoServer) {
		return fmt.Errorf("no server runs with the data folder %s", cfg.Data)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "drain: %d client streams closed; /health says draining\n", resp.Sent)
	return nil
}

func batchHelp(withPassword bool) string {
	if withPassword {
		return "read \"JID PASSWORD\" lines from standard input (the password is the rest of the line; blank lines and lines starting with # are skipped)"
	}
	return "read one JID per line from standard input (blank lines and lines starting with # are skipped)"
}

// admin carries out req through the running server's admin socket or, if
// no server runs, on the database file.
func admin(cfg Config, req adminRequest) (adminResponse, error) {
	resp, err := callAdmin(filepath.Join(cfg.Data, adminSocket), req)
	if errors.Is(err, errNoServer) {
		resp, err = adminDirect(cfg, req)
	}
	return resp, err
}

// adminBatch carries out cmd for every line of stdin. All lines are checked
// before the first is carried out; it stops at the first line that fails
// and says how many were done.
func adminBatch(cfg Config, cmd string, withPassword bool, stdin io.Reader, stdout io.Writer) error {
	var reqs []adminRequest
	var lines []int
	sc := bufio.NewScanner(stdin)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		who, pw, _ := strings.Cut(line, " ")
		j, err := parseUser(who)
		if err != nil {
			return fmt.Errorf("line %d: %w", n, err)
		}
		req := adminRequest{Cmd: cmd, JID: j.String()}
		switch {
		case withPassword:
			if err := checkPassword(pw); err != nil {
				return fmt.Errorf("line %d: %w", n, err)
			}
			req.Password = pw
		case pw != "":
			return usageErrorf("line %d: expected a JID alone", n)
		}
		reqs = append(reqs, req)
		lines = append(lines, n)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading standard input: %w", err)
	}
	for i, req := range reqs {
		if _, err := admin(cfg, req); err != nil {
			return fmt.Errorf("line %d (%s): %w; %d of %d done", lines[i], req.JID, err, i, len(reqs))
		}
	}
	fmt.Fprintf(stdout, "%s: %d done\n", cmd, len(reqs))
	return nil
}

// cmdInvite makes an invitation link (registration with the invite
// policy, or with any policy but closed), or lists those not used.
func cmdInvite(args []string, stdout, stderr io.Writer) error {
	f := newFlags("community invite", stderr, "data", "domain")
	var valid time.Duration
	var list bool
	var forDomain string
	f.fs.Func("valid", "how long the link can be used (`duration`, \"d\" counts days; default 7d)", func(v string) error {
		return setDays(&valid, v)
	})
	f.fs.BoolVar(&list, "list", false, "list the invitations not used and not expired")
	f.fs.StringVar(&forDomain, "for", "", "the `domain` the account will be on (default: the first configured domain)")
	f.usage("Usage: community invite [flags]\n")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usageErrorf("invite takes no arguments")
	}
	cfg, err := f.config()
	if err != nil {
		return err
	}
	if valid == 0 {
		valid = 7 * 24 * time.Hour
	}
	resp, err := admin(cfg, adminRequest{Cmd: "invite", Domain: forDomain, Valid: valid.String(), List: list})
	if err != nil {
		return err
	}
	for _, u := range resp.Users {
		fmt.Fprintln(stdout, u)
	}
	return nil
}

// cmdExpire lists the accounts unused for expire_after, or deletes them
// with -delete.
func cmdExpire(args []string, stdout, stderr io.Writer) error {
	f := newFlags("community expire", stderr, "data", "domain", "expire_after")
	var del bool
	f.fs.BoolVar(&del, "delete", false, "delete the accounts listed (without it, only list them)")
	f.usage("Usage: community expire [flags]\n")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usageErrorf("expire takes no arguments")
	}
	cfg, err := f.config()
	if err != nil {
		return err
	}
	req := adminRequest{Cmd: "expire", Before: time.Now().Add(-cfg.ExpireAfter).UTC(), Delete: del}
	resp, err := admin(cfg, req)
	for _, u := range resp.Users {
		fmt.Fprintln(stdout, u)
	}
	if err != nil {
		return err
	}
	switch {
	case del:
		fmt.Fprintf(stdout, "expire: %d accounts deleted\n", len(resp.Users))
	case len(resp.Users) > 0:
		fmt.Fprintf(stdout, "expire: %d accounts unused since %s; run with -delete to delete them\n", len(resp.Users), req.Before.Format(time.DateOnly))
	default:
		fmt.Fprintf(stdout, "expire: no account unused since %s\n", req.Before.Format(time.DateOnly))
	}
	return nil
}

// cmdRegistration shows or switches the registration policy of the
// running server. The switch lasts until the server stops; the config
// file's registration key gives the policy at start.
func cmdRegistration(args []string, stdout, stderr io.Writer) error {
	f := newFlags("community registration", stderr, "data")
	f.usage("Usage: community registration [flags] [open|closed|invite]\n")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		return usageErrorf("registration takes at most one argument, open, closed or invite")
	}
	cfg, err := f.config()
	if err != nil {
		return err
	}
	req := adminRequest{Cmd: "registration"}
	if len(pos) == 1 {
		req.Policy = pos[0]
	}
	resp, err := callAdmin(filepath.Join(cfg.Data, adminSocket), req)
	if errors.Is(err, errNoServer) {
		return fmt.Errorf("no server runs with the data folder %s; the registration key of the config file sets the policy at start", cfg.Data)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "registration: %s\n", resp.Policy)
	return nil
}

func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			set = true
		}
	})
	return set
}

// readPassword reads one line from stdin. If stdin is a terminal, it
// prompts on stderr and turns off echoing while the password is typed
// (where it can: see noEcho).
func readPassword(stdin io.Reader, stderr io.Writer, user string) (string, error) {
	if f, ok := stdin.(*os.File); ok && isTerminal(f) {
		if restore, ok := noEcho(f); ok {
			fmt.Fprintf(stderr, "Password for %s: ", user)
			// Give the terminal back its echo if interrupted.
			sigs := make(chan os.Signal, 1)
			signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
			done := make(chan struct{})
			go func() {
				select {
				case <-sigs:
					restore()
					fmt.Fprintln(stderr)
					os.Exit(130)
				case <-done:
				}
			}()
			defer func() {
				close(done)
				signal.Stop(sigs)
				restore()
			}()
		} else {
			fmt.Fprintf(stderr, "Password for %s (shown as you type): ", user)
		}
	}
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !(errors.Is(err, io.EOF) && line != "") {
		if errors.Is(err, io.EOF) {
			return "", usageErrorf("no password: give -password or one line on standard input")
		}
		return "", fmt.Errorf("reading the password: %w", err)
	}
	return strings.TrimRight(line, "\r\n"), nil
}

// adminDirect carries out req on the database file itself, when no server
// runs.
func adminDirect(cfg Config, req adminRequest) (adminResponse, error) {
	if req.JID != "" {
		// Usage errors first, before looking at the files.
		a := &accounts{domains: cfg.Domains}
		if _, err := a.user(req.JID); err != nil {
			return adminResponse{}, err
		}
	}
	// Never a new data folder, nor a database that would hide the real
	// one (see existingDatabase).
	store, err := openDB(cfg, req.Cmd == "adduser" || req.Cmd == "invite" && !req.List)
	if err != nil {
		return adminResponse{}, err
	}
	authn := &auth.Store{Accounts: store}
	// A server that never listens: account removal runs the modules' hooks.
	srv := newServer(cfg, store, authn, slog.New(slog.DiscardHandler), nil)
	defer srv.Close()
	a := &accounts{store: store, auth: authn, domains: cfg.Domains, srv: srv, offline: true}
	ctx := context.Background()
	resp := adminResponse{OK: true}
	switch req.Cmd {
	case "adduser":
		err = a.addUser(ctx, req.JID, req.Password)
	case "passwd":
		err = a.setPassword(ctx, req.JID, req.Password)
	case "deluser":
		err = a.deleteUser(ctx, req.JID)
	case "users":
		resp.Users, err = a.listUsers(ctx)
	case "expire":
		resp.Users, err = a.expire(ctx, req.Before, req.Delete)
	case "invite":
		resp.Users, err = a.inviteRequest(ctx, req)
	case "devices":
		resp.Users, err = a.devices(ctx, req.JID, req.Agent)
	default:
		_, err = a.doAbuse(ctx, req, &resp)
	}
	if cerr := store.Close(); err == nil && cerr != nil {
		err = cerr
	}
	return resp, err
}

// openStore opens the database, explaining a lock held by another process
// with hint.
// opts, if not nil, sets the other options.
func openStore(path, hint string, opts *boltstore.Options) (*boltstore.Store, error) {
	o := boltstore.Options{}
	if opts != nil {
		o = *opts
	}
	o.Timeout = lockTimeout
	store, err := boltstore.Open(path, &o)
	if errors.Is(err, boltstore.ErrLocked) {
		return nil, fmt.Errorf("another process holds the database %s (%s)", path, hint)
	}
	return store, err
}
