// Package upload implements XEP-0363: HTTP File Upload (version 1.2.0) as
// a Treff module: a service on upload.<host> for each host that hands
// local users upload slots, and an HTTP handler (HTTPHandler) that takes
// each slot's file with one PUT and serves it with GET to anyone who has
// the URL, until it expires.
//
// Slot URLs carry a random 128-bit ID; the PUT URL is additionally signed
// (HMAC-SHA256 over the slot and an expiry time), so it needs no cookies
// or headers and stops working after SlotTimeout. A slot takes one file
// of exactly the requested size and content type. Files are served with
// their content type, nosniff, a sandboxing Content-Security-Policy and a
// Content-Disposition that makes browsers download anything that could
// run script (only images, audio, video, PDF and plain text are shown
// inline). Each user has a quota; files expire after Expire (30 days by
// default), removed by a background job, and go with the account.
//
// The module needs a storage.Uploads for its records (the server's
// Storage, or Module.Store) and a BlobStore for the bytes (DirStore in
// Module.Dir by default). It never logs file names or addresses.
package upload

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"mime"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/dataform"
	"github.com/treff-im/treff/discoinfo"
	"github.com/treff-im/treff/stanza"
	"github.com/treff-im/treff/storage"
)

// NS is the namespace of XEP-0363.
const NS = "urn:xmpp:http:upload:0"

const (
	nsDiscoInfo  = "http://jabber.org/protocol/disco#info"
	nsDiscoItems = "http://jabber.org/protocol/disco#items"
)

// Defaults of the Module's limits.
const (
	DefaultMaxFileSize = 10 << 20
	DefaultQuota       = 100 << 20
	DefaultExpire      = 30 * 24 * time.Hour
	DefaultSlotTimeout = 5 * time.Minute
)

// cleanupInterval is how often the background job removes expired files.
const cleanupInterval = time.Hour

// Module is the HTTP File Upload service. Set its fields before the
// server starts; mount HTTPHandler on an HTTP server reachable at BaseURL.
type Module struct {
	// BaseURL is the URL under which HTTPHandler is reachable, such as
	// "https://example.org:5281/upload/". Slot URLs are BaseURL followed
	// by the slot ID and the file name. Required.
	BaseURL string
	// Subdomain is the label put before each host's domain to name its
	// service. "" means "upload".
	Subdomain string
	// Store keeps the file records. nil means the server's Storage, which
	// must then implement storage.Uploads.
	Store storage.Uploads
	// Blobs keeps the files' bytes. nil means DirStore{Dir: Dir}.
	Blobs BlobStore
	// Dir is the folder for files when Blobs is nil.
	Dir string
	// MaxFileSize is the largest file in bytes. 0 means 10 MiB.
	MaxFileSize int64
	// Quota is how many bytes of files one user may keep. 0 means
	// 100 MiB; a negative value means no limit.
	Quota int64
	// Expire is how long a file is kept after its slot was requested.
	// 0 means 30 days.
	Expire time.Duration
	// SlotTimeout is how long a PUT URL stays valid. 0 means 5 minutes.
	SlotTimeout time.Duration
	// Secret is the key that signs PUT URLs. nil means a random key made
	// at start-up (PUT URLs then do not survive a restart, which slots
	// valid for minutes need not). Servers behind one BaseURL share it.
	Secret []byte
	// Now returns the current time; nil means time.Now. Tests set it to
	// move a clock.
	Now func() time.Time

	srv      *treff.Server
	store    storage.Uploads
	blobs    BlobStore
	base     string
	secret   []byte
	services map[string]bool
	ready    atomic.Bool

	mu      sync.Mutex
	putting map[string]bool // slot IDs whose PUT is running

	stop func()
	done chan struct{}
}

// Interface guards.
var (
	_ treff.Module  = (*Module)(nil)
	_ treff.Stopper = (*Module)(nil)
)

// Name implements treff.Module.
func (m *Module) Name() string { return "upload" }

// Setup implements treff.Module.
func (m *Module) Setup(ctx context.Context, r *treff.Registry) error {
	m.srv = r.Server()
	u, err := url.Parse(m.BaseURL)
	if m.BaseURL == "" || err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("upload: BaseURL must be an absolute http(s) URL, got %q", m.BaseURL)
	}
	m.base = m.BaseURL
	if !strings.HasSuffix(m.base, "/") {
		m.base += "/"
	}
	m.store = m.Store
	if m.store == nil {
		s, ok := m.srv.Storage.(storage.Uploads)
		if !ok {
			return errors.New("upload: the server's storage does not implement storage.Uploads; set Module.Store")
		}
		m.store = s
	}
	m.blobs = m.Blobs
	if m.blobs == nil {
		if m.Dir == "" {
			return errors.New("upload: set Module.Dir or Module.Blobs")
		}
		m.blobs = DirStore{Dir: m.Dir}
	}
	m.secret = m.Secret
	if len(m.secret) == 0 {
		m.secret = make([]byte, 32)
		rand.Read(m.secret)
	}
	m.putting = make(map[string]bool)
	sub := m.Subdomain
	if sub == "" {
		sub = "upload"
	}
	m.services = make(map[string]bool)
	for _, h := range m.srv.Hosts {
		d := sub + "." + h.Domain
		m.services[d] = true
		r.HandleDomain(d, treff.StanzaHandlerFunc(m.handle))
		r.AddItem(discoinfo.Item{JID: d, Name: "HTTP File Upload"})
	}
	r.OnAccountDeleted(m.accountDeleted)

	jobCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	m.stop, m.done = cancel, make(chan struct{})
	go m.cleanupLoop(jobCtx)
	m.ready.Store(true)
	return nil
}

// Stop implements treff.Stopper: it ends the expiry job. The HTTP
// handler answers 503 afterwards.
func (m *Module) Stop(ctx context.Context) error {
	m.ready.Store(false)
	if m.stop == nil {
		return nil
	}
	m.stop()
	select {
	case <-m.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("upload: stop: %w", ctx.Err())
	}
}

func (m *Module) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

func (m *Module) maxFileSize() int64 { return orDefault(m.MaxFileSize, DefaultMaxFileSize) }
func (m *Module) expire() time.Duration {
	return time.Duration(orDefault(int64(m.Expire), int64(DefaultExpire)))
}
func (m *Module) slotTimeout() time.Duration {
	return time.Duration(orDefault(int64(m.SlotTimeout), int64(DefaultSlotTimeout)))
}

// quota returns the per-user quota for storage (<= 0: none).
func (m *Module) quota() int64 {
	if m.Quota == 0 {
		return DefaultQuota
	}
	return m.Quota
}

func orDefault(v, def int64) int64 {
	if v <= 0 {
		return def
	}
	return v
}

// handle receives every stanza for an upload service domain.
func (m *Module) handle(ctx context.Context, st *treff.Stanza) {
	if st.Kind != treff.KindIQ {
		if st.Kind == treff.KindMessage && st.Type != "error" {
			m.fail(ctx, st, stanza.ServiceUnavailable)
		}
		return
	}
	if st.Type != "get" && st.Type != "set" {
		return
	}
	if st.To.Localpart() != "" || st.To.Resourcepart() != "" {
		m.fail(ctx, st, stanza.ServiceUnavailable)
		return
	}
	switch {
	case st.Type == "get" && st.Payload.Space == nsDiscoInfo:
		m.reply(ctx, st, m.discoInfo())
	case st.Type == "get" && st.Payload.Space == nsDiscoItems:
		m.reply(ctx, st, []byte("<query xmlns='"+nsDiscoItems+"'/>"))
	case st.Payload.Space == NS && st.Payload.Local == "request":
		if st.Type != "get" {
			m.fail(ctx, st, stanza.BadRequest)
			return
		}
		m.requestSlot(ctx, st)
	default:
		m.fail(ctx, st, stanza.ServiceUnavailable)
	}
}

func (m *Module) discoInfo() []byte {
	b := []byte("<query xmlns='" + nsDiscoInfo + "'><identity category='store' type='file' name='HTTP File Upload'/>" +
		"<feature var='" + NS + "'/><feature var='" + nsDiscoInfo + "'/>")
	form := dataform.Form{Fields: []dataform.Field{
		dataform.FormType(NS),
		{Var: "max-file-size", Values: []string{strconv.FormatInt(m.maxFileSize(), 10)}},
	}}
	b = form.Append(b, "result")
	return append(b, "</query>"...)
}

// send routes raw XML as a stanza.
func (m *Module) send(ctx context.Context, raw []byte) {
	st, err := treff.NewStanza(raw)
	if err != nil {
		m.srv.Log().Error("upload: built a bad stanza", "err", err)
		return
	}
	m.srv.Route(ctx, st)
}

func (m *Module) reply(ctx context.Context, st *treff.Stanza, payload []byte) {
	m.send(ctx, treff.AppendResult(nil, st, payload))
}

// fail answers st with an error; extra, if not empty, is put into the
// <error/> element after the condition and text.
func (m *Module) fail(ctx context.Context, st *treff.Stanza, e error, extra ...string) {
	if st.From.Equal(jid.JID{}) {
		return
	}
	b := treff.AppendError(nil, st, e)
	if len(extra) > 0 {
		s := string(b)
		i := strings.LastIndex(s, "</error>")
		b = []byte(s[:i] + strings.Join(extra, "") + s[i:])
	}
	m.send(ctx, b)
}

// slotRequest is the <request/> of XEP-0363 section 4.
type slotRequest struct {
	Filename    *string `xml:"filename,attr"`
	Size        *string `xml:"size,attr"`
	ContentType string  `xml:"content-type,attr"`
}

func (m *Module) requestSlot(ctx context.Context, st *treff.Stanza) {
	owner := st.From.Bare()
	if owner.Localpart() == "" || !m.srv.IsLocal(owner.Domainpart()) {
		m.fail(ctx, st, stanza.NotAllowed.WithText("Only users of this server may upload files"))
		return
	}
	var req slotRequest
	if err := st.DecodePayload(&req); err != nil {
		m.fail(ctx, st, stanza.BadRequest)
		return
	}
	if req.Filename == nil || req.Size == nil {
		m.fail(ctx, st, stanza.BadRequest.WithText("The request needs a filename and a size"))
		return
	}
	name, ok := cleanFilename(*req.Filename)
	if !ok {
		m.fail(ctx, st, stanza.BadRequest.WithText("Invalid file name"))
		return
	}
	size, err := strconv.ParseInt(strings.TrimSpace(*req.Size), 10, 64)
	if err != nil || size < 0 {
		m.fail(ctx, st, stanza.BadRequest.WithText("Invalid file size"))
		return
	}
	ctype, ok := cleanContentType(req.ContentType)
	if !ok {
		m.fail(ctx, st, stanza.BadRequest.WithText("Invalid content type"))
		return
	}
	if max := m.maxFileSize(); size > max {
		m.fail(ctx, st, stanza.Error{Type: stanza.Modify, Condition: stanza.NotAcceptable,
			Text: fmt.Sprintf("File too large. The maximum file size is %d bytes", max)},
			fmt.Sprintf("<file-too-large xmlns='%s'><max-file-size>%d</max-file-size></file-too-large>", NS, max))
		return
	}
	now := m.now().UTC()
	u := storage.Upload{
		ID:          newID(),
		Owner:       owner.String(),
		Filename:    name,
		Size:        size,
		ContentType: ctype,
		Created:     now,
	}
	err = m.store.CreateUpload(ctx, u, m.quota())
	if errors.Is(err, storage.ErrQuotaExceeded) && m.dropStale(ctx, u.Owner) {
		err = m.store.CreateUpload(ctx, u, m.quota())
	}
	if errors.Is(err, storage.ErrQuotaExceeded) {
		m.quotaError(ctx, st, u.Owner)
		return
	}
	if err != nil {
		m.srv.Log().Error("upload: storing a slot failed", "owner", u.Owner, "err", err)
		m.fail(ctx, st, stanza.InternalServerError)
		return
	}
	m.srv.Log().Debug("upload: slot", "owner", u.Owner, "size", size)
	exp := now.Add(m.slotTimeout()).Unix()
	getURL := m.base + u.ID + "/" + url.PathEscape(name)
	putURL := getURL + "?e=" + strconv.FormatInt(exp, 10) + "&s=" + m.sign(u, exp)
	b := []byte("<slot xmlns='" + NS + "'><put url='")
	b = treff.AppendEscaped(b, putURL)
	b = append(b, "'/><get url='"...)
	b = treff.AppendEscaped(b, getURL)
	b = append(b, "'/></slot>"...)
	m.reply(ctx, st, b)
}

// quotaError answers a slot request over the owner's quota, with the time
// at which the owner's first file expires as the retry stamp.
func (m *Module) quotaError(ctx context.Context, st *treff.Stanza, owner string) {
	var used int64
	var retry time.Time
	if list, err := m.store.ListUploads(ctx, owner); err == nil {
		for _, u := range list {
			used += u.Size
			end := u.Created.Add(m.expire())
			if !u.Uploaded {
				end = u.Created.Add(m.slotTimeout())
			}
			if retry.IsZero() || end.Before(retry) {
				retry = end
			}
		}
	}
	e := stanza.Error{Type: stanza.Wait, Condition: stanza.ResourceConstraint,
		Text: fmt.Sprintf("Quota reached: your files take %d of %d bytes", used, m.quota())}
	var extra []string
	if !retry.IsZero() {
		extra = append(extra, "<retry xmlns='"+NS+"' stamp='"+retry.UTC().Format(time.RFC3339)+"'/>")
	}
	m.srv.Log().Debug("upload: quota reached", "owner", owner, "used", used)
	m.fail(ctx, st, e, extra...)
}

// dropStale removes the owner's slots whose PUT URL has expired unused
// and the owner's expired files, which count against the quota until the
// hourly job removes them. It reports whether it removed any.
func (m *Module) dropStale(ctx context.Context, owner string) bool {
	list, err := m.store.ListUploads(ctx, owner)
	if err != nil {
		return false
	}
	now := m.now()
	dropped := false
	for _, u := range list {
		if m.expired(u, now) && m.remove(ctx, u) == nil {
			dropped = true
		}
	}
	return dropped
}

// expired reports whether a record is due for removal: an uploaded file
// older than Expire, or a slot unused after its PUT URL expired.
func (m *Module) expired(u storage.Upload, now time.Time) bool {
	if u.Uploaded {
		return !now.Before(u.Created.Add(m.expire()))
	}
	return !now.Before(u.Created.Add(m.slotTimeout()))
}

// remove deletes a record's file and then the record, unless its PUT is
// running.
func (m *Module) remove(ctx context.Context, u storage.Upload) error {
	m.mu.Lock()
	busy := m.putting[u.ID]
	m.mu.Unlock()
	if busy {
		return nil
	}
	if err := m.blobs.Delete(ctx, u.ID); err != nil {
		return err
	}
	return m.store.DeleteUpload(ctx, u.ID)
}

// Cleanup removes expired files and their records, and slots whose PUT
// URL expired unused. The module runs it at start-up and every hour.
func (m *Module) Cleanup(ctx context.Context) error {
	if m.store == nil {
		return errors.New("upload: cleanup: module not set up")
	}
	now := m.now()
	// The same instants as expired: a record is due when its time is up,
	// Created <= now - d, that is Created before now - d + 1ns.
	list, err := m.store.ExpiredUploads(ctx, now.Add(-m.expire()+1), now.Add(-m.slotTimeout()+1))
	if err != nil {
		return fmt.Errorf("upload: cleanup: %w", err)
	}
	var errs []error
	n := 0
	for _, u := range list {
		if err := m.remove(ctx, u); err != nil {
			errs = append(errs, err)
			continue
		}
		n++
	}
	if n > 0 {
		m.srv.Log().Info("upload: expired files removed", "count", n)
	}
	if len(errs) > 0 {
		return fmt.Errorf("upload: cleanup: %w", errors.Join(errs...))
	}
	return nil
}

func (m *Module) cleanupLoop(ctx context.Context) {
	defer close(m.done)
	t := time.NewTicker(cleanupInterval)
	defer t.Stop()
	for {
		if err := m.Cleanup(ctx); err != nil && ctx.Err() == nil {
			m.srv.Log().Error("upload: removing expired files failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// accountDeleted removes the user's files and records.
func (m *Module) accountDeleted(ctx context.Context, user jid.JID) error {
	owner := user.Bare().String()
	list, err := m.store.ListUploads(ctx, owner)
	if err != nil {
		return fmt.Errorf("upload: listing the account's files: %w", err)
	}
	var failed error
	for _, u := range list {
		if err := m.blobs.Delete(ctx, u.ID); err != nil && failed == nil {
			failed = fmt.Errorf("upload: deleting a file: %w", err)
		}
	}
	if failed != nil {
		// The records stay, so that another try finds the files.
		return failed
	}
	if err := m.store.DeleteUploads(ctx, owner); err != nil {
		return fmt.Errorf("upload: deleting the account's file records: %w", err)
	}
	m.srv.Log().Debug("upload: account's files removed", "owner", owner, "count", len(list))
	return nil
}

// newID returns a random slot ID: 128 bits in unpadded base64url.
func newID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// idLen is the length of the IDs newID makes.
const idLen = 22

func validID(id string) bool {
	if len(id) != idLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// sign returns the signature of a PUT URL for u valid until exp (Unix
// seconds): it covers the slot ID, size and content type.
func (m *Module) sign(u storage.Upload, exp int64) string {
	h := hmac.New(sha256.New, m.secret)
	fmt.Fprintf(h, "%s\x00%d\x00%s\x00%d", u.ID, u.Size, u.ContentType, exp)
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}

// maxNameBytes bounds a stored file name.
const maxNameBytes = 200

// cleanFilename makes a file name safe to keep and to put into a URL and
// a header: the last path element, without control and format characters
// (such as bidirectional overrides), trimmed and shortened to
// maxNameBytes keeping the extension. It reports false if nothing usable
// is left or the name is not UTF-8.
func cleanFilename(s string) (string, bool) {
	if !utf8.ValidString(s) {
		return "", false
	}
	if i := strings.LastIndexAny(s, `/\`); i >= 0 {
		s = s[i+1:]
	}
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == utf8.RuneError {
			return -1
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if s == "" || s == "." || s == ".." {
		return "", false
	}
	if len(s) > maxNameBytes {
		ext := path.Ext(s)
		if len(ext) > 20 {
			ext = ""
		}
		stem := s[:maxNameBytes-len(ext)]
		for len(stem) > 0 && !utf8.ValidString(stem) {
			stem = stem[:len(stem)-1]
		}
		s = stem + ext
	}
	return s, true
}

// cleanContentType normalises a requested content type; "" stays "" (not
// given: the PUT may send any type, the file is served as
// application/octet-stream).
func cleanContentType(s string) (string, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", true
	}
	if len(s) > 255 {
		return "", false
	}
	mt, params, err := mime.ParseMediaType(s)
	if err != nil || !strings.Contains(mt, "/") {
		return "", false
	}
	out := mime.FormatMediaType(mt, params)
	return out, out != ""
}
