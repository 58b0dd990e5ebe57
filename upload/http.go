package upload

import (
	"crypto/hmac"
	"errors"
	"io/fs"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/treff-im/treff/storage"
)

// HTTPHandler returns the handler for the files: PUT to a slot's PUT URL
// stores the file, GET and HEAD serve it, OPTIONS answers CORS
// preflights. It finds the slot in the last two elements of the request
// path (ID and file name), so it works mounted under any prefix, with or
// without http.StripPrefix; BaseURL must lead to it. It answers 503 until
// the module is set up and after it stopped.
func (m *Module) HTTPHandler() http.Handler { return http.HandlerFunc(m.serveHTTP) }

// safeInline are the media types shown inline in a browser; every other
// type is served as an attachment (downloaded), because it could run
// script in the context of the upload origin (text/html, image/svg+xml,
// application/xhtml+xml, XML, JavaScript, ...).
var safeInline = map[string]bool{
	"image/png": true, "image/jpeg": true, "image/gif": true, "image/webp": true,
	"image/avif": true, "image/bmp": true, "image/heic": true, "image/heif": true,
	"application/pdf": true, "text/plain": true,
}

func (m *Module) serveHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Allow-Methods", "GET, HEAD, PUT, OPTIONS")
	h.Set("Access-Control-Allow-Headers", "Content-Type")
	h.Set("Access-Control-Expose-Headers", "Content-Disposition, Content-Length, ETag")
	if !m.ready.Load() {
		http.Error(w, "service unavailable", http.StatusServiceUnavailable)
		return
	}
	if r.Method == http.MethodOptions {
		h.Set("Access-Control-Max-Age", "86400")
		w.WriteHeader(http.StatusNoContent)
		return
	}
	id, ok := slotID(r.URL.Path)
	if !ok {
		http.NotFound(w, r)
		return
	}
	switch r.Method {
	case http.MethodPut:
		m.put(w, r, id)
	case http.MethodGet, http.MethodHead:
		m.get(w, r, id)
	default:
		h.Set("Allow", "GET, HEAD, PUT, OPTIONS")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

// slotID finds the slot ID in a path ending in /ID/NAME.
func slotID(p string) (string, bool) {
	i := strings.LastIndexByte(p, '/')
	if i < 0 || i == len(p)-1 {
		return "", false
	}
	p = p[:i]
	id := p[strings.LastIndexByte(p, '/')+1:]
	return id, validID(id)
}

func (m *Module) put(w http.ResponseWriter, r *http.Request, id string) {
	ctx := r.Context()
	u, err := m.store.Upload(ctx, id)
	if errors.Is(err, storage.ErrNotFound) {
		http.NotFound(w, r)
		return
	}
	if err != nil {
		m.srv.Log().Error("upload: reading a slot failed", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	q := r.URL.Query()
	exp, err := strconv.ParseInt(q.Get("e"), 10, 64)
	if err != nil || !hmac.Equal([]byte(q.Get("s")), []byte(m.sign(u, exp))) {
		http.Error(w, "invalid upload URL", http.StatusForbidden)
		return
	}
	if u.Uploaded {
		http.Error(w, "this slot has its file already", http.StatusConflict)
		return
	}
	if !m.now().Before(time.Unix(exp, 0)) {
		http.Error(w, "the upload URL has expired", http.StatusForbidden)
		return
	}
	switch {
	case r.ContentLength < 0:
		http.Error(w, "Content-Length is required", http.StatusLengthRequired)
		return
	case r.ContentLength > u.Size:
		http.Error(w, "the file is larger than the slot", http.StatusRequestEntityTooLarge)
		return
	case r.ContentLength < u.Size:
		http.Error(w, "the file is smaller than the slot", http.StatusBadRequest)
		return
	}
	if u.ContentType != "" {
		got, ok := cleanContentType(r.Header.Get("Content-Type"))
		if !ok || !strings.EqualFold(got, u.ContentType) {
			http.Error(w, "the Content-Type is not the slot's", http.StatusUnsupportedMediaType)
			return
		}
	}
	m.mu.Lock()
	busy := m.putting[id]
	m.putting[id] = true
	m.mu.Unlock()
	if busy {
		http.Error(w, "this slot is being uploaded", http.StatusConflict)
		return
	}
	defer func() {
		m.mu.Lock()
		delete(m.putting, id)
		m.mu.Unlock()
	}()
	if err := m.blobs.Put(ctx, id, r.Body, u.Size); err != nil {
		if ctx.Err() == nil && !errors.Is(err, ErrSize) {
			m.srv.Log().Warn("upload: storing a file failed", "owner", u.Owner, "err", err)
		}
		http.Error(w, "the upload did not complete", http.StatusBadRequest)
		return
	}
	if err := m.store.MarkUploaded(ctx, id); err != nil {
		// Removed meanwhile (the account was deleted), or a second PUT
		// won the race.
		if !errors.Is(err, storage.ErrExists) {
			m.blobs.Delete(ctx, id)
		}
		if errors.Is(err, storage.ErrNotFound) || errors.Is(err, storage.ErrExists) {
			http.Error(w, "the slot is gone", http.StatusConflict)
			return
		}
		m.srv.Log().Error("upload: recording a file failed", "owner", u.Owner, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	m.srv.Log().Debug("upload: stored", "owner", u.Owner, "size", u.Size)
	w.WriteHeader(http.StatusCreated)
}

func (m *Module) get(w http.ResponseWriter, r *http.Request, id string) {
	ctx := r.Context()
	u, err := m.store.Upload(ctx, id)
	now := m.now()
	if errors.Is(err, storage.ErrNotFound) || (err == nil && (!u.Uploaded || m.expired(u, now))) {
		http.NotFound(w, r)
		return
	}
	if err != nil {
		m.srv.Log().Error("upload: reading a file record failed", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	f, err := m.blobs.Open(ctx, id)
	if errors.Is(err, fs.ErrNotExist) {
		http.NotFound(w, r)
		return
	}
	if err != nil {
		m.srv.Log().Error("upload: opening a file failed", "owner", u.Owner, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	defer f.Close()
	ctype := u.ContentType
	if ctype == "" {
		ctype = "application/octet-stream"
	}
	mt, _, _ := mime.ParseMediaType(ctype)
	inline := safeInline[mt] || strings.HasPrefix(mt, "audio/") || strings.HasPrefix(mt, "video/")
	h := w.Header()
	h.Set("Content-Type", ctype)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'; sandbox")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Disposition", contentDisposition(inline, u.Filename))
	left := u.Created.Add(m.expire()).Sub(now)
	h.Set("Cache-Control", "private, max-age="+strconv.FormatInt(int64(left/time.Second), 10)+", immutable")
	h.Set("ETag", `"`+u.ID+`"`)
	http.ServeContent(w, r, "", u.Created, f)
}

// contentDisposition returns a Content-Disposition value (RFC 6266):
// inline or attachment, with the file name as an ASCII fallback (other
// characters, quotes and backslashes replaced by '_') and as filename*
// in UTF-8 (RFC 8187).
func contentDisposition(inline bool, name string) string {
	var b strings.Builder
	if inline {
		b.WriteString("inline")
	} else {
		b.WriteString("attachment")
	}
	b.WriteString(`; filename="`)
	for _, r := range name {
		if r < 0x20 || r >= 0x7f || r == '"' || r == '\\' {
			b.WriteByte('_')
			continue
		}
		b.WriteRune(r)
	}
	b.WriteString(`"; filename*=UTF-8''`)
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$&+-.^_`|~", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}
