package main

// Migration between servers in the format of XEP-0227 (package pie):
// community export [-user JID] FILE and community import FILE, through
// the running server's admin socket or, without one, on the database.
//
// On the admin socket, an import is one request per user or room, the
// file being read (and its XInclude references followed) by the command:
//
//	{"cmd":"import","entry":{"User":{...}}}   answer: {"ok":true,"summary":{...}}
//
// and an export one request answered by lines carrying the document in
// pieces, then one that ends it:
//
//	{"cmd":"export","jid":"alice@localhost"}  ("jid" empty: everything)
//	{"ok":true,"data":"PD94bWwg..."}  ...  {"ok":true,"done":true}

import (
	"bufio"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/treff-im/treff/muc"
	"github.com/treff-im/treff/pie"
	"github.com/treff-im/treff/storage"
)

// Limits of the migration requests on the admin socket.
const (
	// adminMaxEntry is the longest import request: one user with
	// everything it has (vCard and avatars included), as JSON.
	adminMaxEntry = 16 << 20
	// exportChunk is how much of an exported document one answer line
	// carries.
	exportChunk = 64 << 10
	// migrateTimeout bounds a whole export on the server's side (each
	// piece must still be taken within adminIdle).
	migrateTimeout = time.Hour
)

type migrateRequest struct {
	Cmd   string     `json:"cmd"`
	JID   string     `json:"jid,omitempty"`
	Entry *pie.Entry `json:"entry,omitempty"`
}

type migrateResponse struct {
	OK      bool         `json:"ok"`
	Kind    string       `json:"kind,omitempty"`
	Error   string       `json:"error,omitempty"`
	Summary *pie.Summary `json:"summary,omitempty"`
	Data    []byte       `json:"data,omitempty"`
	Done    bool         `json:"done,omitempty"`
}

// migrateOptions are the import options for cfg: its domains and group
// chat services.
func migrateOptions(cfg Config) pie.Options {
	o := pie.Options{Domains: cfg.Domains}
	if cfg.MUC {
		for _, d := range cfg.Domains {
			o.RoomServices = append(o.RoomServices, "conference."+d)
		}
	}
	return o
}

// migrate serves an import or export request of the admin protocol on c
// and reports whether line was one; other requests are left to do. An
// error means c is no longer usable.
func (a *adminServer) migrate(c net.Conn, line []byte) (handled bool, err error) {
	var req migrateRequest
	if json.Unmarshal(line, &req) != nil || req.Cmd != "import" && req.Cmd != "export" {
		return false, nil
	}
	write := func(resp migrateResponse) error {
		if a.closing.Load() {
			// An export in progress ends at its next piece: shutting
			// down does not wait for it.
			return errors.New("server is shutting down")
		}
		b, err := json.Marshal(resp)
		if err != nil {
			return err
		}
		c.SetWriteDeadline(time.Now().Add(adminIdle))
		_, err = c.Write(append(b, '\n'))
		return err
	}
	fail := func(err error) error {
		kind := errorKind(err)
		if kind == kindError {
			a.log.Error("admin command failed", "cmd", req.Cmd, "err", err)
		}
		return write(migrateResponse{Kind: kind, Error: err.Error()})
	}
	acct := a.acct
	if req.Cmd == "import" {
		if req.Entry == nil {
			return true, fail(usageErrorf("import needs an entry"))
		}
		ctx, cancel := context.WithTimeout(context.Background(), adminOpTime)
		defer cancel()
		sum, err := pie.Apply(ctx, acct.store, *req.Entry, acct.importOptions())
		if err != nil {
			return true, fail(err)
		}
		if sum.Accounts > 0 && a.log != nil {
			a.log.Info("account imported", "jid", req.Entry.User.JID)
		}
		return true, write(migrateResponse{OK: true, Summary: &sum})
	}
	filter := pie.Filter{RoomServices: acct.importOptions().RoomServices}
	if req.JID != "" {
		u, err := acct.user(req.JID)
		if err != nil {
			return true, fail(err)
		}
		filter.User = u
	}
	ctx, cancel := context.WithTimeout(context.Background(), migrateTimeout)
	defer cancel()
	cw := &chunkWriter{write: write}
	if err := pie.Export(ctx, acct.store, cw, filter); err != nil {
		if cw.err != nil {
			return true, cw.err
		}
		if filter.User != "" && errors.Is(err, storage.ErrNotFound) {
			err = notFound(filter.User)
		}
		return true, fail(err)
	}
	if err := cw.flush(); err != nil {
		return true, err
	}
	return true, write(migrateResponse{OK: true, Done: true})
}

// chunkWriter sends what is written to it as answer lines of at most
// exportChunk bytes.
type chunkWriter struct {
	write func(migrateResponse) error
	buf   []byte
	err   error
}

func (w *chunkWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	n := len(p)
	for len(p) > 0 {
		k := min(len(p), exportChunk-len(w.buf))
		w.buf = append(w.buf, p[:k]...)
		p = p[k:]
		if len(w.buf) == exportChunk {
			if err := w.flush(); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

func (w *chunkWriter) flush() error {
	if w.err == nil && len(w.buf) > 0 {
		w.err = w.write(migrateResponse{OK: true, Data: w.buf})
		w.buf = w.buf[:0]
	}
	return w.err
}

// cmdExport writes the server's accounts (or one) and rooms to a file in
// the format of XEP-0227.
func cmdExport(args []string, stdout, stderr io.Writer) error {
	f := newFlags("community export", stderr, "data", "domain", "muc")
	var who string
	f.fs.StringVar(&who, "user", "", "export only this account (a bare `JID`)")
	f.usage("Usage: community export [flags] [-user JID] FILE   (FILE -: standard output)\n")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErrorf("export needs exactly one FILE (community export [-user JID] FILE)")
	}
	cfg, err := f.config()
	if err != nil {
		return err
	}
	req := migrateRequest{Cmd: "export"}
	if who != "" {
		j, err := parseUser(who)
		if err != nil {
			return err
		}
		req.JID = j.String()
	}
	out, commit, err := createOutput(pos[0], stdout)
	if err != nil {
		return err
	}
	defer commit(false)
	bw := bufio.NewWriter(out)
	err = exportAdmin(cfg, req, bw)
	if errors.Is(err, errNoServer) {
		err = withStore(cfg, "export", func(store storage.Store) error {
			a := &accounts{domains: cfg.Domains}
			filter := pie.Filter{RoomServices: migrateOptions(cfg).RoomServices}
			if req.JID != "" {
				if filter.User, err = a.user(req.JID); err != nil {
					return err
				}
			}
			err := pie.Export(context.Background(), store, bw, filter)
			if errors.Is(err, storage.ErrNotFound) {
				return notFound(req.JID)
			}
			return err
		})
	}
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		return err
	}
	return commit(true)
}

// createOutput opens name for writing ("-": w), as a temporary file
// beside it that commit(true) renames to name (mode 0600: the file holds
// the users' credentials); commit(false) removes it.
func createOutput(name string, w io.Writer) (io.Writer, func(bool) error, error) {
	if name == "-" {
		return w, func(bool) error { return nil }, nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".*")
	if err != nil {
		return nil, nil, err
	}
	done := false
	return tmp, func(ok bool) error {
		if done {
			return nil
		}
		done = true
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
			return nil
		}
		err := tmp.Sync()
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(tmp.Name(), name)
		}
		if err != nil {
			os.Remove(tmp.Name())
		}
		return err
	}, nil
}

// exportAdmin asks the running server for the export and writes it to w;
// errNoServer if none runs.
func exportAdmin(cfg Config, req migrateRequest, w io.Writer) error {
	c, err := dialAdmin(cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.send(req); err != nil {
		return err
	}
	for {
		resp, err := c.receive()
		if err != nil {
			return err
		}
		if _, err := w.Write(resp.Data); err != nil {
			return err
		}
		if resp.Done {
			return nil
		}
	}
}

// adminConn is a connection to the admin socket for migration requests.
type adminConn struct {
	c net.Conn
	r *bufio.Reader
}

func dialAdmin(cfg Config) (*adminConn, error) {
	c, err := net.DialTimeout("unix", filepath.Join(cfg.Data, adminSocket), adminDial)
	if err != nil {
		return nil, errNoServer
	}
	return &adminConn{c: c, r: bufio.NewReaderSize(c, 64<<10)}, nil
}

func (c *adminConn) Close() error { return c.c.Close() }

func (c *adminConn) send(req migrateRequest) error {
	b, err := json.Marshal(req)
	if err != nil {
		return err
	}
	if len(b) >= adminMaxEntry {
		return fmt.Errorf("%s is too large to import through the admin socket (%d bytes, at most %d); stop the server and import again", entryName(req.Entry), len(b), adminMaxEntry)
	}
	c.c.SetDeadline(time.Now().Add(adminAnswer))
	if _, err := c.c.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("admin socket: %w", err)
	}
	return nil
}

func (c *adminConn) receive() (migrateResponse, error) {
	c.c.SetDeadline(time.Now().Add(adminAnswer))
	line, err := readLine(c.r, 2*exportChunk+4096)
	if err != nil {
		return migrateResponse{}, fmt.Errorf("admin socket: the server did not answer: %w", err)
	}
	var resp migrateResponse
	if err := json.Unmarshal(line, &resp); err != nil {
		return migrateResponse{}, fmt.Errorf("admin socket: bad answer: %w", err)
	}
	if !resp.OK {
		kind := resp.Kind
		if kind == "" {
			kind = kindError
		}
		return resp, &cmdError{kind: kind, msg: resp.Error}
	}
	return resp, nil
}

func entryName(e *pie.Entry) string {
	switch {
	case e == nil:
		return "the request"
	case e.User != nil:
		return e.User.JID
	case e.Room != nil:
		return "room " + e.Room.JID
	}
	return "the entry"
}

// cmdImport reads a XEP-0227 file, or every file of a folder (as
// prosody-migrator writes them, one per user), into the server.
func cmdImport(args []string, stdout, stderr io.Writer) error {
	f := newFlags("community import", stderr, "data", "domain", "muc")
	f.usage("Usage: community import [flags] FILE|FOLDER\n")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErrorf("import needs exactly one FILE or FOLDER (community import FILE)")
	}
	cfg, err := f.config()
	if err != nil {
		return err
	}
	files, err := importFiles(pos[0])
	if err != nil {
		return err
	}
	opts := migrateOptions(cfg)
	var sum pie.Summary
	prog := newProgress(stderr, files)
	defer prog.end()
	apply := func(store storage.Store) func(pie.Entry) error {
		return func(e pie.Entry) error {
			s, err := pie.Apply(context.Background(), store, e, opts)
			sum.Add(s)
			prog.entry()
			return err
		}
	}
	run := func(each func(pie.Entry) error) error {
		for _, name := range files {
			dir := filepath.Dir(name)
			fh, err := os.Open(name)
			if err != nil {
				return err
			}
			err = pie.Decode(prog.reader(fh), pie.DecodeOptions{Open: func(href string) (io.ReadCloser, error) {
				fi, err := os.Open(filepath.Join(dir, href))
				if err != nil {
					return nil, err
				}
				return struct {
					io.Reader
					io.Closer
				}{prog.reader(fi), fi}, nil
			}}, each)
			fh.Close()
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		}
		return nil
	}
	c, err := dialAdmin(cfg)
	switch {
	case errors.Is(err, errNoServer):
		err = withStore(cfg, "import", func(store storage.Store) error { return run(apply(store)) })
	case err == nil:
		err = run(func(e pie.Entry) error {
			if err := c.send(migrateRequest{Cmd: "import", Entry: &e}); err != nil {
				return err
			}
			resp, err := c.receive()
			if err != nil {
				return fmt.Errorf("%s: %w", entryName(&e), err)
			}
			if resp.Summary != nil {
				sum.Add(*resp.Summary)
			}
			prog.entry()
			return nil
		})
		c.Close()
	}
	prog.end()
	fmt.Fprint(stdout, sum.String())
	if err != nil {
		return fmt.Errorf("%w (what is listed above was imported; importing again skips it)", err)
	}
	return nil
}

// importFiles returns name, or for a folder its *.xml files whose
// document is <server-data/> (the files they include are read through
// them), sorted.
func importFiles(name string) ([]string, error) {
	fi, err := os.Stat(name)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return []string{name}, nil
	}
	all, err := filepath.Glob(filepath.Join(name, "*.xml"))
	if err != nil {
		return nil, err
	}
	sort.Strings(all)
	var files []string
	for _, f := range all {
		if root, err := rootElement(f); err == nil && root == (xml.Name{Space: pie.NS, Local: "server-data"}) {
			files = append(files, f)
		}
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no XEP-0227 document (*.xml with <server-data/>) in %s", name)
	}
	return files, nil
}

func rootElement(name string) (xml.Name, error) {
	f, err := os.Open(name)
	if err != nil {
		return xml.Name{}, err
	}
	defer f.Close()
	d := xml.NewDecoder(io.LimitReader(f, 64<<10))
	for {
		tok, err := d.Token()
		if err != nil {
			return xml.Name{}, err
		}
		if se, ok := tok.(xml.StartElement); ok {
			return se.Name, nil
		}
	}
}

// withStore opens the database for an admin command when no server runs
// (never creating it), says on stderr which one, and closes it after fn.
func withStore(cfg Config, cmd string, fn func(storage.Store) error) error {
	store, err := openDB(cfg, cmd == "import")
	if err != nil {
		return err
	}
	err = fn(store)
	if cerr := store.Close(); err == nil {
		err = cerr
	}
	return err
}

// progress shows on stderr, if it is a terminal, how much of the files
// was read and how many users and rooms were imported, at most every
// progressEvery.
type progress struct {
	w           *os.File // nil: no terminal, nothing shown
	total, read int64
	entries     int
	last        time.Time
	shown       bool
}

const progressEvery = 200 * time.Millisecond

func newProgress(stderr io.Writer, files []string) *progress {
	p := &progress{}
	f, ok := stderr.(*os.File)
	if !ok || !isTerminal(f) {
		return p
	}
	p.w = f
	for _, name := range files {
		if fi, err := os.Stat(name); err == nil {
			p.total += fi.Size()
		}
	}
	return p
}

// reader counts what is read through it.
func (p *progress) reader(r io.Reader) io.Reader {
	if p.w == nil {
		return r
	}
	return &countingReader{r: r, p: p}
}

type countingReader struct {
	r io.Reader
	p *progress
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.p.read += int64(n)
	return n, err
}

func (p *progress) entry() {
	p.entries++
	if p.w == nil || time.Since(p.last) < progressEvery {
		return
	}
	p.last = time.Now()
	p.shown = true
	mb := func(n int64) float64 { return float64(n) / (1 << 20) }
	if p.read <= p.total {
		fmt.Fprintf(p.w, "\rimport: %.1f of %.1f MiB read, %d users and rooms   ", mb(p.read), mb(p.total), p.entries)
	} else { // included files
		fmt.Fprintf(p.w, "\rimport: %.1f MiB read, %d users and rooms   ", mb(p.read), p.entries)
	}
}

func (p *progress) end() {
	if p.shown {
		fmt.Fprintln(p.w)
		p.shown = false
	}
}

// dbNotice says once per process which database an admin command uses
// (adduser -batch opens it for each line).
var dbNotice sync.Once

// existingDatabase returns the database of cfg for an admin command
// working without a server. Admin commands never create a data folder:
// a missing one is an error naming it (a typo in -data, or a command run
// from another folder than the server's). They create the database only
// for commands that add accounts (create is true), and only in an empty
// data folder (one made for a new server); reading commands need it to
// exist. It says on stderr which database it uses.
func existingDatabase(cfg Config, create bool) (string, error) {
	abs, err := filepath.Abs(cfg.Data)
	if err != nil {
		abs = cfg.Data
	}
	path := filepath.Join(abs, dbFile)
	fi, err := os.Stat(abs)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return "", fmt.Errorf("no data folder %s: no server runs with it and there is no database to open; give the server's folder with -data or -config (a server creates its folder when it starts)", abs)
	case err != nil:
		return "", err
	case !fi.IsDir():
		return "", fmt.Errorf("the data folder %s is not a folder", abs)
	}
	if _, err := os.Stat(path); err == nil {
		dbNotice.Do(func() {
			fmt.Fprintf(os.Stderr, "community: no server answers on %s; using the database %s\n", filepath.Join(abs, adminSocket), path)
		})
		return path, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	entries, err := os.ReadDir(abs)
	if err != nil {
		return "", err
	}
	if !create || len(entries) > 0 {
		return "", fmt.Errorf("no database %s: no server runs with the data folder %s and it has no database; give the server's folder with -data or -config", path, abs)
	}
	fmt.Fprintf(os.Stderr, "community: no server answers on %s; creating the database %s in the empty data folder\n", filepath.Join(abs, adminSocket), path)
	return path, nil
}

// importOptions are the import options of the running server: its
// domains and the services of its group chat module.
func (a *accounts) importOptions() pie.Options {
	o := pie.Options{Domains: a.domains}
	if a.srv == nil {
		return o
	}
	for _, mod := range a.srv.Modules {
		if m, ok := mod.(*muc.Module); ok {
			sub := m.Subdomain
			if sub == "" {
				sub = "conference"
			}
			for _, d := range a.domains {
				o.RoomServices = append(o.RoomServices, sub+"."+d)
			}
		}
	}
	return o
}
