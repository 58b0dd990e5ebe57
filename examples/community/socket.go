package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// The admin protocol, spoken on the Unix socket admin.sock in the data
// folder. The client sends one request per line, a JSON object, and the
// server answers each with one line, a JSON object:
//
//	{"cmd":"adduser","jid":"alice@localhost","password":"s3cret"}
//	{"cmd":"passwd","jid":"alice@localhost","password":"n3w"}
//	{"cmd":"deluser","jid":"alice@localhost"}
//	{"cmd":"users"}
//	{"cmd":"registration"}                  (the policy in force)
//	{"cmd":"registration","policy":"open"}  (switch it)
//	{"cmd":"expire","before":"2025-11-21T00:00:00Z"}              (list)
//	{"cmd":"expire","before":"2025-11-21T00:00:00Z","delete":true}
//	{"cmd":"invite","domain":"localhost","valid":"168h"}   (a new link)
//	{"cmd":"invite","list":true}                           (links not used)
//	{"cmd":"announce","subject":"Maintenance","body":"..."} (answer: "sent")
//	{"cmd":"devices","jid":"alice@localhost"}    (FAST devices, one per line)
//	{"cmd":"devices","jid":"alice@localhost","agent":"ID"}  (log one out)
//	{"cmd":"backup","file":".backup-1.db"}  (a database copy: backup.go)
//	{"cmd":"drain"}        (drain.go; answer: the streams closed, as sent)
//
//	{"ok":true}
//	{"ok":true,"users":["alice@localhost","bob@localhost"]}
//	{"ok":true,"policy":"open"}
//	{"ok":false,"kind":"notfound","error":"no account carol@localhost"}
//
// import and export (community import, community export) are described
// in migrate.go; an import request may be up to adminMaxEntry long.
//
// kind is one of usage, exists, notfound and error. A connection may carry
// several requests; the server closes it after adminIdle without one.

// adminSocket is the socket's file name in the data folder.
const adminSocket = "admin.sock"

// maxSocketPath is the longest Unix socket path that works everywhere
// (sun_path is 104 bytes on BSDs and macOS, 108 on Linux, with a NUL).
const maxSocketPath = 103

// Limits of the admin protocol.
const (
	adminMaxLine = 64 << 10         // longest request line
	adminIdle    = 30 * time.Second // server: time allowed for a request
	adminDial    = 2 * time.Second  // client: time to connect
	adminAnswer  = 30 * time.Second // client: time to wait for an answer
	adminOpTime  = 20 * time.Second // server: time for one operation
)

type adminRequest struct {
	Cmd      string `json:"cmd"`
	JID      string `json:"jid,omitempty"`
	Password string `json:"password,omitempty"`
	Policy   string `json:"policy,omitempty"`
	// Before and Delete are for expire.
	Before time.Time `json:"before,omitzero"`
	Delete bool      `json:"delete,omitempty"`
	// Subject and Body are for announce.
	Subject string `json:"subject,omitempty"`
	Body    string `json:"body,omitempty"`
	// Domain, Valid and List are for invite.
	Domain string `json:"domain,omitempty"`
	Valid  string `json:"valid,omitempty"`
	List   bool   `json:"list,omitempty"`
	// Agent is for devices: the user agent id to log out, "" to list.
	Agent string `json:"agent,omitempty"`
	// Reason is for suspend.
	Reason string `json:"reason,omitempty"`
	// Entries are for block and unblock.
	Entries []string `json:"entries,omitempty"`
	// File is for backup: the file in the data folder for the database
	// copy (see backup.go).
	File string `json:"file,omitempty"`
}

type adminResponse struct {
	OK     bool     `json:"ok"`
	Kind   string   `json:"kind,omitempty"`
	Error  string   `json:"error,omitempty"`
	Users  []string `json:"users,omitempty"`
	Policy string   `json:"policy,omitempty"`
	Sent   int      `json:"sent,omitempty"` // announce: sessions reached
	Size   int64    `json:"size,omitempty"` // backup: the database copy's bytes
}

// adminServer serves the admin protocol for a running server.
type adminServer struct {
	l     *net.UnixListener
	acct  *accounts
	drain *drainer // nil in tests without one
	log   *slog.Logger
	data  string // the data folder, for backup

	closing atomic.Bool
	wg      sync.WaitGroup
	mu      sync.Mutex
	conns   map[net.Conn]struct{}
}

// listenAdmin creates the admin socket at path with mode 0600. The caller
// must hold the database lock: then no other server owns the socket, and a
// file left at path is stale (from a crash) and is replaced.
func listenAdmin(path string) (*net.UnixListener, error) {
	if len(path) > maxSocketPath {
		return nil, fmt.Errorf("admin socket: the path %s is too long for a Unix socket (at most %d bytes); use a shorter data folder path", path, maxSocketPath)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("admin socket: %s exists and is not a socket", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("admin socket: removing stale %s: %w", path, err)
		}
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	// The data folder is 0700 already; this keeps the socket private even
	// where it is not.
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	l.SetUnlinkOnClose(true)
	return l, nil
}

// serve accepts admin connections until close is called.
func (a *adminServer) serve() error {
	for {
		c, err := a.l.Accept()
		if err != nil {
			if a.closing.Load() {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return fmt.Errorf("admin socket: %w", err)
		}
		a.mu.Lock()
		if a.closing.Load() {
			a.mu.Unlock()
			c.Close()
			return nil
		}
		if a.conns == nil {
			a.conns = make(map[net.Conn]struct{})
		}
		a.conns[c] = struct{}{}
		a.wg.Add(1)
		a.mu.Unlock()
		go func() {
			defer a.wg.Done()
			a.handle(c)
			a.mu.Lock()
			delete(a.conns, c)
			a.mu.Unlock()
		}()
	}
}

// close stops accepting, removes the socket file, lets running requests
// finish and closes every connection.
func (a *adminServer) close() {
	a.mu.Lock()
	a.closing.Store(true)
	a.l.Close()
	for c := range a.conns {
		// Interrupts a connection waiting for its next request; one being
		// answered finishes first.
		c.SetReadDeadline(time.Now())
	}
	a.mu.Unlock()
	a.wg.Wait()
}

func (a *adminServer) handle(c net.Conn) {
	defer c.Close()
	r := bufio.NewReaderSize(c, 4096)
	for {
		// Under the lock, so that close either sees this deadline and
		// overrides it, or this sees closing.
		a.mu.Lock()
		if a.closing.Load() {
			a.mu.Unlock()
			return
		}
		c.SetReadDeadline(time.Now().Add(adminIdle))
		a.mu.Unlock()
		line, err := readLine(r, adminMaxEntry)
		if err != nil {
			if errors.Is(err, errLineTooLong) {
				writeResponse(c, adminResponse{Kind: kindUsage, Error: "request too long"})
			}
			return
		}
		if a.closing.Load() {
			writeResponse(c, adminResponse{Kind: kindError, Error: "server is shutting down"})
			return
		}
		if handled, err := a.migrate(c, line); handled { // import, export: migrate.go
			if err != nil {
				return
			}
			continue
		}
		if len(line) > adminMaxLine {
			writeResponse(c, adminResponse{Kind: kindUsage, Error: "request too long"})
			return
		}
		resp := a.do(line)
		if writeResponse(c, resp) != nil {
			return
		}
	}
}

func (a *adminServer) do(line []byte) adminResponse {
	var req adminRequest
	d := json.NewDecoder(bytes.NewReader(line))
	d.DisallowUnknownFields()
	if err := d.Decode(&req); err != nil {
		return adminResponse{Kind: kindUsage, Error: "malformed request"}
	}
	ctx, cancel := context.WithTimeout(context.Background(), adminOpTime)
	defer cancel()
	var err error
	resp := adminResponse{OK: true}
	switch req.Cmd {
	case "adduser":
		err = a.acct.addUser(ctx, req.JID, req.Password)
	case "passwd":
		err = a.acct.setPassword(ctx, req.JID, req.Password)
	case "deluser":
		err = a.acct.deleteUser(ctx, req.JID)
	case "users":
		resp.Users, err = a.acct.listUsers(ctx)
	case "devices":
		resp.Users, err = a.acct.devices(ctx, req.JID, req.Agent)
	case "registration":
		resp.Policy, err = a.acct.registration(req.Policy)
	case "expire":
		if req.Before.IsZero() {
			err = usageErrorf("expire needs a cutoff time")
			break
		}
		resp.Users, err = a.acct.expire(ctx, req.Before, req.Delete)
	case "invite":
		resp.Users, err = a.acct.inviteRequest(ctx, req)
	case "announce":
		resp.Sent, err = a.acct.announce(req.Subject, req.Body)
	case "drain": // drain.go
		if a.drain == nil {
			err = usageErrorf("this server cannot drain")
			break
		}
		resp.Sent = a.drain.drain()
	case "backup": // backup.go
		resp.Size, err = a.backupSnapshot(ctx, req.File)
	default:
		var ok bool
		if ok, err = a.acct.doAbuse(ctx, req, &resp); !ok {
			err = usageErrorf("unknown command %q", req.Cmd)
		}
	}
	if err != nil {
		kind := errorKind(err)
		if kind == kindError {
			// Only the command and the error: never the request, which
			// may hold a password.
			a.log.Error("admin command failed", "cmd", req.Cmd, "err", err)
		}
		return adminResponse{Kind: kind, Error: err.Error()}
	}
	return resp
}

func writeResponse(c net.Conn, resp adminResponse) error {
	b, err := json.Marshal(resp)
	if err != nil {
		return err
	}
	c.SetWriteDeadline(time.Now().Add(adminIdle))
	_, err = c.Write(append(b, '\n'))
	return err
}

var errLineTooLong = errors.New("line too long")

// readLine reads one '\n'-terminated line of at most max bytes.
func readLine(r *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > max {
			return nil, errLineTooLong
		}
		if err == nil {
			return line, nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return nil, err
		}
	}
}

// errNoServer reports that no server answers on the admin socket.
var errNoServer = errors.New("no server on the admin socket")

// callAdmin sends req to the server listening on the admin socket at path.
// It returns errNoServer if none listens there; any other error means a
// server was reached but did not answer properly. An error answer is
// returned as a *cmdError.
func callAdmin(path string, req adminRequest) (adminResponse, error) {
	c, err := net.DialTimeout("unix", path, adminDial)
	if err != nil {
		// A missing socket, or a stale one from a crash: no server runs.
		return adminResponse{}, errNoServer
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(adminAnswer))
	b, err := json.Marshal(req)
	if err != nil {
		return adminResponse{}, err
	}
	if _, err := c.Write(append(b, '\n')); err != nil {
		return adminResponse{}, fmt.Errorf("admin socket: %w", err)
	}
	line, err := readLine(bufio.NewReader(c), 16<<20)
	if err != nil {
		return adminResponse{}, fmt.Errorf("admin socket: the server did not answer: %w", err)
	}
	var resp adminResponse
	if err := json.Unmarshal(line, &resp); err != nil {
		return adminResponse{}, fmt.Errorf("admin socket: bad answer: %w", err)
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
