// Package pgtest gives tests a PostgreSQL server: the one named by the
// environment variable TREFF_PGSQL_DSN, or a throwaway one started from
// Debian's PostgreSQL binaries in a temporary folder on a free loopback
// port and stopped when the test ends. Each test then takes a database or
// a schema of its own from it, so tests never see each other's data.
//
// It skips the test, saying why, only when no DSN is set and PostgreSQL
// is not installed (apt-get install postgresql).
package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvDSN is the environment variable naming an existing server to use
// instead of starting one: a pgx connection string (URL or key=value)
// of a role that may create databases and schemas.
const EnvDSN = "TREFF_PGSQL_DSN"

// binRoot is where Debian installs PostgreSQL's server binaries, one
// folder per major version.
const binRoot = "/usr/lib/postgresql"

// Server is a PostgreSQL server for tests.
type Server struct {
	// DSN connects to the server's maintenance database as a superuser.
	DSN string
	// PID is the postmaster's process ID for a server Start started; 0
	// for one named by TREFF_PGSQL_DSN.
	PID int

	dir      string
	bin      string
	uid, gid int // of the user postgres when running as root
	seq      atomic.Int64
	stop     func()
}

// Bin returns the folder of the newest installed PostgreSQL server
// binaries, or "" if there is none.
func Bin() string {
	ents, err := os.ReadDir(binRoot)
	if err != nil {
		return ""
	}
	var vers []int
	for _, e := range ents {
		if v, err := strconv.Atoi(e.Name()); err == nil {
			if _, err := os.Stat(filepath.Join(binRoot, e.Name(), "bin", "postgres")); err == nil {
				vers = append(vers, v)
			}
		}
	}
	if len(vers) == 0 {
		return ""
	}
	sort.Ints(vers)
	return filepath.Join(binRoot, strconv.Itoa(vers[len(vers)-1]), "bin")
}

// Start returns the server named by TREFF_PGSQL_DSN, or starts a
// throwaway one that tb's cleanup stops (by its PID). It skips tb if
// neither is possible because PostgreSQL is not installed, and fails it
// if a server cannot be started.
func Start(tb testing.TB) *Server {
	tb.Helper()
	return StartWith(tb, Options{})
}

// Options change how StartWith starts a throwaway server.
type Options struct {
	// Durable keeps PostgreSQL's fsync on, for benchmarks whose figures
	// must include the cost of a durable commit. Tests leave it off:
	// their data is thrown away.
	Durable bool
}

// StartWith is Start with options for a throwaway server (they do not
// apply to TREFF_PGSQL_DSN's).
func StartWith(tb testing.TB, o Options) *Server {
	tb.Helper()
	if dsn := os.Getenv(EnvDSN); dsn != "" {
		return &Server{DSN: dsn}
	}
	bin := Bin()
	if bin == "" {
		tb.Skipf("PostgreSQL is not installed (no %s/*/bin/postgres) and %s is not set: apt-get install postgresql, or name a server in %s", binRoot, EnvDSN, EnvDSN)
	}
	s := &Server{bin: bin}
	var err error
	for range 3 { // a port found free may be taken before postgres binds it
		if err = s.start(o); err == nil {
			tb.Cleanup(s.stop)
			return s
		}
	}
	tb.Fatalf("pgtest: %v", err)
	return nil
}

// asPostgres returns the command to run name from the server binaries:
// as the user postgres when running as root, which PostgreSQL refuses
// (set on the process itself rather than through runuser, so that the
// PID recorded is the server's and a signal reaches it).
func (s *Server) asPostgres(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(s.bin, name), args...)
	if s.uid != 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(s.uid), Gid: uint32(s.gid)}}
		cmd.Dir = s.dir
	}
	return cmd
}

// start makes a data folder and starts a server on it.
func (s *Server) start(o Options) error {
	dir, err := os.MkdirTemp("", "treff-pgtest-")
	if err != nil {
		return err
	}
	rm := func() { os.RemoveAll(dir) }
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			rm()
			return fmt.Errorf("running as root needs the user postgres: %w", err)
		}
		s.uid, _ = strconv.Atoi(u.Uid)
		s.gid, _ = strconv.Atoi(u.Gid)
		s.dir = dir
		if err := os.Chown(dir, s.uid, s.gid); err != nil {
			rm()
			return err
		}
	}
	data := filepath.Join(dir, "data")
	if out, err := s.asPostgres("initdb", "-D", data, "-U", "postgres", "--auth", "trust", "-E", "UTF8", "--no-sync", "--locale", "C").CombinedOutput(); err != nil {
		rm()
		return fmt.Errorf("initdb: %v\n%s", err, out)
	}
	port, err := freePort()
	if err != nil {
		rm()
		return err
	}
	// The server runs in the foreground of its own process (no pg_ctl),
	// so that the test knows its PID and stops it by that.
	fsync := "off"
	if o.Durable {
		fsync = "on"
	}
	cmd := s.asPostgres("postgres", "-D", data, "-p", strconv.Itoa(port), "-k", dir, "-h", "127.0.0.1",
		"-c", "fsync="+fsync, "-c", "max_connections=200", "-c", "shared_buffers=32MB")
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		rm()
		return err
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	s.PID = cmd.Process.Pid
	s.dir = dir
	s.DSN = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
	s.stop = func() {
		// SIGINT is PostgreSQL's fast shutdown.
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		rm()
	}
	// Wait until it accepts connections (bounded), or has died.
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		c, err := pgx.Connect(ctx, s.DSN)
		cancel()
		if err == nil {
			c.Close(context.Background())
			return nil
		}
		select {
		case <-done:
			rm()
			return fmt.Errorf("postgres exited at start: %s", logs.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.stop()
			return fmt.Errorf("postgres did not accept connections within a minute: %v\n%s", err, logs.String())
		}
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// exec runs one statement on the maintenance database.
func (s *Server) exec(ctx context.Context, sql string) error {
	c, err := pgx.Connect(ctx, s.DSN)
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	_, err = c.Exec(ctx, sql)
	return err
}

// name returns a new name for a database or schema, unique on the
// server also when several test processes share it.
func (s *Server) name(prefix string) string {
	return fmt.Sprintf("%s_%d_%d_%d", prefix, os.Getpid(), time.Now().UnixNano()%1e9, s.seq.Add(1))
}

// Database creates an empty database, dropped when tb ends, and returns
// a DSN for it.
func (s *Server) Database(tb testing.TB) string {
	tb.Helper()
	name := s.name("treff")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.exec(ctx, "CREATE DATABASE "+name); err != nil {
		tb.Fatalf("pgtest: create database: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := s.exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			tb.Logf("pgtest: drop database %s: %v", name, err)
		}
	})
	dsn, err := withParam(s.DSN, "dbname", name)
	if err != nil {
		tb.Fatal(err)
	}
	return dsn
}

// Schema creates an empty schema in the maintenance database, dropped
// when tb ends, and returns a DSN whose search_path is that schema:
// cheaper than a database, for tests that open many fresh stores.
func (s *Server) Schema(tb testing.TB) string {
	tb.Helper()
	name := s.name("t")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.exec(ctx, "CREATE SCHEMA "+name); err != nil {
		tb.Fatalf("pgtest: create schema: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := s.exec(ctx, "DROP SCHEMA IF EXISTS "+name+" CASCADE"); err != nil {
			tb.Logf("pgtest: drop schema %s: %v", name, err)
		}
	})
	dsn, err := withParam(s.DSN, "search_path", name)
	if err != nil {
		tb.Fatal(err)
	}
	return dsn
}

// withParam returns dsn with one parameter set; "dbname" replaces a
// URL's path. It understands both forms pgx takes.
func withParam(dsn, key, value string) (string, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", fmt.Errorf("pgtest: %s: %w", EnvDSN, err)
		}
		if key == "dbname" {
			u.Path = "/" + value
			return u.String(), nil
		}
		q := u.Query()
		q.Set(key, value)
		u.RawQuery = q.Encode()
		return u.String(), nil
	}
	if strings.Contains(dsn, "'") {
		return "", errors.New("pgtest: quoted values in a key=value DSN are not supported; use a URL")
	}
	return dsn + " " + key + "=" + value, nil
}
