package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/disco"
	"github.com/treff-im/treff/trefftest"
	"github.com/treff-im/treff/upload"
)

// Events of clients/upload.py.
type (
	uploadService struct {
		JID         string `json:"jid"`
		MaxFileSize int64  `json:"max_file_size"`
	}
	uploadError struct {
		Type        string   `json:"type"`
		Conditions  []string `json:"conditions"`
		Text        string   `json:"text"`
		MaxFileSize *int64   `json:"max_file_size"`
		Retry       *string  `json:"retry"`
	}
	uploadResult struct {
		File        string      `json:"file"`
		URL         string      `json:"url"`
		Kind        string      `json:"kind"`
		Error       uploadError `json:"error"`
		Status      int         `json:"status"`
		MaxFileSize int64       `json:"max_file_size"`
	}
)

// TestUploadSlixmpp uploads files with slixmpp's XEP-0363 plugin to a
// server with the upload module, whose handler an HTTP server on
// 127.0.0.1 serves under /upload/ (slixmpp PUTs with aiohttp, which would
// not trust the test certificate).
func TestUploadSlixmpp(t *testing.T) {
	needSlixmpp(t)
	clk := trefftest.NewClock(time.Now())
	m := &upload.Module{Dir: t.TempDir(), MaxFileSize: 2000, Quota: 3000, Now: clk.Now}
	mux := http.NewServeMux()
	mux.Handle("/upload/", http.StripPrefix("/upload", m.HTTPHandler()))
	web := httptest.NewServer(mux)
	defer web.Close()
	m.BaseURL = web.URL + "/upload/"
	s := newServer(t, func(srv *treff.Server) { srv.Modules = []treff.Module{&disco.Module{}, m} })
	s.AddUser(t, "alice", alicePW)

	dir := t.TempDir()
	files := map[string][]byte{}
	file := func(name string, n int) string {
		b := make([]byte, n)
		rand.Read(b)
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		files[name] = b
		return p
	}
	photo, notes, third, big := file("photo.png", 1500), file("notes.bin", 1000), file("third.bin", 1000), file("big.bin", 5000)

	es := s.client(t, "upload.py", "upload", "--jid", "alice@localhost", "--password", alicePW,
		"--file", photo, "--file", notes, "--file", third, "--file", big)
	var svc uploadService
	es.one(t, "service", "alice").decode(t, &svc)
	if svc.JID != "upload.localhost" || svc.MaxFileSize != 2000 {
		t.Errorf("service found: %+v, want upload.localhost with max-file-size 2000", svc)
	}
	results := map[string]uploadResult{}
	for _, e := range es {
		if e.Event == "uploaded" || e.Event == "upload_error" {
			var r uploadResult
			e.decode(t, &r)
			results[r.File] = r
		}
	}
	get := func(url string) (*http.Response, []byte) {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, b
	}
	for _, name := range []string{"photo.png", "notes.bin"} {
		r := results[name]
		if r.URL == "" {
			t.Fatalf("%s not uploaded: %+v", name, r)
		}
		if !strings.HasPrefix(r.URL, m.BaseURL) || !strings.HasSuffix(r.URL, "/"+name) {
			t.Errorf("%s: GET URL %q", name, r.URL)
		}
		resp, body := get(r.URL)
		if resp.StatusCode != 200 || !bytes.Equal(body, files[name]) {
			t.Errorf("%s: GET %s: status %d, %d bytes, want the %d uploaded", name, r.URL, resp.StatusCode, len(body), len(files[name]))
		}
		if name == "photo.png" && (resp.Header.Get("Content-Type") != "image/png" || !strings.HasPrefix(resp.Header.Get("Content-Disposition"), "inline;")) {
			t.Errorf("photo served as %q, %q", resp.Header.Get("Content-Type"), resp.Header.Get("Content-Disposition"))
		}
		if name == "notes.bin" && !strings.HasPrefix(resp.Header.Get("Content-Disposition"), "attachment;") {
			t.Errorf("binary served as %q", resp.Header.Get("Content-Disposition"))
		}
	}
	// Over quota (2500 of 3000 bytes used): the spec's temporary error.
	if r := results["third.bin"]; r.Kind != "stanza" || r.Error.Type != "wait" || len(r.Error.Conditions) != 1 ||
		r.Error.Conditions[0] != "resource-constraint" || r.Error.Retry == nil {
		t.Errorf("upload over quota: %+v", r)
	}
	// Larger than max-file-size: slixmpp refuses it itself, from the
	// service's disco form.
	if r := results["big.bin"]; r.Kind != "FileTooBig" || r.MaxFileSize != 2000 {
		t.Errorf("oversized upload: %+v", r)
	}

	// Asked anyway, the service answers with <file-too-large/>.
	es = s.client(t, "upload.py", "slot", "--jid", "alice@localhost", "--password", alicePW, "--size", "5000")
	var se struct {
		Error uploadError `json:"error"`
	}
	es.one(t, "slot_error", "alice").decode(t, &se)
	if se.Error.Type != "modify" || len(se.Error.Conditions) != 1 || se.Error.Conditions[0] != "not-acceptable" ||
		se.Error.MaxFileSize == nil || *se.Error.MaxFileSize != 2000 {
		t.Errorf("oversized slot request: %+v", se.Error)
	}

	// The server logged the uploads without their names.
	if got := s.logs.waitFor(2, "upload: stored", "owner", "alice@localhost"); len(got) != 2 {
		t.Errorf("log records of stored files: %+v", got)
	}
	if logs := s.logs.dump(); strings.Contains(logs, "photo") || strings.Contains(logs, "notes") {
		t.Errorf("file names in the server log:\n%s", logs)
	}

	// 31 days later the files are gone and the quota is free again.
	clk.Add(31 * 24 * time.Hour)
	if err := m.Cleanup(context.Background()); err != nil {
		t.Fatal(err)
	}
	if resp, _ := get(results["photo.png"].URL); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET of an expired file: status %d", resp.StatusCode)
	}
	es = s.client(t, "upload.py", "upload", "--jid", "alice@localhost", "--password", alicePW, "--file", third)
	var again uploadResult
	es.one(t, "uploaded", "alice").decode(t, &again)
	if resp, body := get(again.URL); resp.StatusCode != 200 || !bytes.Equal(body, files["third.bin"]) {
		t.Errorf("upload after expiry: GET status %d, %d bytes", resp.StatusCode, len(body))
	}
}

// TestUploadCommunity: the same against the example server binary, whose
// https listener serves the upload service under /upload/ with its own
// certificate (trusted by slixmpp's aiohttp through SSL_CERT_FILE): a
// photo goes up and comes back byte for byte; past the quota the spec's
// error comes back.
func TestUploadCommunity(t *testing.T) {
	needSlixmpp(t)
	bin := buildCommunity(t)
	data := t.TempDir()
	runCommunity(t, bin, "adduser", "-data", data, "-password", alicePW, "alice@localhost")
	w := startWebCommunity(t, bin, data, "-upload-max-size", "2000", "-upload-quota", "3000")

	dir := t.TempDir()
	photo := make([]byte, 1800)
	rand.Read(photo)
	photoFile := filepath.Join(dir, "photo.png")
	moreFile := filepath.Join(dir, "more.bin")
	for f, b := range map[string][]byte{photoFile: photo, moreFile: photo[:1500]} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	script, err := filepath.Abs(filepath.Join("clients", "upload.py"))
	if err != nil {
		t.Fatal(err)
	}
	es := runClient(t, "upload.py community", append(pythonEnv(), "SSL_CERT_FILE="+w.cert), python, script,
		"--cert", w.cert, "--timeout", fmt.Sprint(scriptTimeout.Seconds()), "--addr", w.addr,
		"upload", "--jid", "alice@localhost", "--password", alicePW, "--file", photoFile, "--file", moreFile)
	results := map[string]uploadResult{}
	for _, e := range es {
		if e.Event == "uploaded" || e.Event == "upload_error" {
			var r uploadResult
			e.decode(t, &r)
			results[r.File] = r
		}
	}
	r := results["photo.png"]
	_, port, _ := net.SplitHostPort(w.https)
	if !strings.HasPrefix(r.URL, "https://localhost:"+port+"/upload/") {
		t.Fatalf("photo: %+v, want a GET URL on the https listener", r)
	}
	pem, err := os.ReadFile(w.cert)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, w.https)
		}}}
	resp, err := hc.Get(r.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Equal(body, photo) || resp.Header.Get("Content-Type") != "image/png" {
		t.Errorf("GET %s: %d, %d bytes, %q; want the %d bytes uploaded as image/png", r.URL, resp.StatusCode, len(body), resp.Header.Get("Content-Type"), len(photo))
	}
	if r := results["more.bin"]; r.Kind != "stanza" || len(r.Error.Conditions) != 1 || r.Error.Conditions[0] != "resource-constraint" {
		t.Errorf("upload over quota: %+v", r)
	}
}
