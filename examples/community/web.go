package main

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/bosh"
	"github.com/treff-im/treff/register"
	"github.com/treff-im/treff/upload"
	"github.com/treff-im/treff/websocket"
)

// The HTTP side of the example server: the WebSocket and BOSH endpoints
// for web clients, connection discovery (XEP-0156), a status page and health
// check, served on the https listener (and on plain http, which is only
// allowed on loopback).

//go:embed status.html
var statusHTML string

// web serves the server's HTTP endpoints.
type web struct {
	cfg    Config
	srv    *treff.Server
	reg    *register.Module
	status *template.Template
	mux    *http.ServeMux
	upload bool // file upload is served under /upload/
	drain  *drainer
}

func newWeb(cfg Config, srv *treff.Server, reg *register.Module) (*web, error) {
	text := statusHTML
	if cfg.StatusTemplate != "" {
		b, err := os.ReadFile(cfg.StatusTemplate)
		if err != nil {
			return nil, fmt.Errorf("status_template: %w", err)
		}
		text = string(b)
	}
	tmpl, err := template.New("status").Parse(text)
	if err != nil {
		return nil, fmt.Errorf("status_template: %w", err)
	}
	w := &web{cfg: cfg, srv: srv, reg: reg, status: tmpl, mux: http.NewServeMux()}
	w.mux.Handle("/xmpp-websocket", w.refuseWhileDraining(&websocket.Handler{Server: srv, Origins: cfg.HTTPOrigins, SeeOtherURI: cfg.WebSocketSeeOther}))
	perAddr := cfg.BOSHSessionsPerAddress
	if perAddr == 0 {
		perAddr = -1 // the handler's "no cap"
	}
	w.mux.Handle("/http-bind", &bosh.Handler{Server: srv, MaxSessionsPerAddress: perAddr})
	w.mux.HandleFunc("GET /.well-known/host-meta", w.hostMeta)
	w.mux.HandleFunc("GET /.well-known/host-meta.json", w.hostMetaJSON)
	w.mux.HandleFunc("GET /healthz", w.health)
	w.mux.HandleFunc("GET /health", w.health)
	w.mux.HandleFunc("GET /{$}", w.statusPage)
	w.mux.HandleFunc("GET /invite/{token}", w.invitePage)
	for _, m := range srv.Modules {
		if up, ok := m.(*upload.Module); ok {
			w.upload = true
			w.mux.Handle("/upload/", up.HTTPHandler())
		}
	}
	if cfg.WebClient != "" {
		dist := filepath.Join(cfg.WebClient, "dist")
		w.mux.Handle("GET /chat/dist/", http.StripPrefix("/chat/dist/", http.FileServer(http.Dir(dist))))
		w.mux.HandleFunc("GET /chat/{$}", w.chatPage)
		w.mux.Handle("GET /chat", http.RedirectHandler("/chat/", http.StatusMovedPermanently))
	}
	return w, nil
}

// health answers a load balancer's check (HAProxy's option httpchk):
// 200 "ok", or 503 "draining" once the node drains (drain.go).
func (w *web) health(rw http.ResponseWriter, r *http.Request) {
	rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
	rw.Header().Set("Cache-Control", "no-store")
	if w.drain.Draining() {
		rw.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(rw, "draining\n")
		return
	}
	io.WriteString(rw, "ok\n")
}

// refuseWhileDraining answers 503 instead of h while the node drains:
// no new WebSocket stream. (BOSH requests go on: those of a new session
// cannot be told from the others without reading the body; a session
// that binds while the node drains is closed at once, drain.go.)
func (w *web) refuseWhileDraining(h http.Handler) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if w.drain.Draining() {
			rw.Header().Set("Retry-After", "1")
			http.Error(rw, "draining", http.StatusServiceUnavailable)
			return
		}
		h.ServeHTTP(rw, r)
	})
}

// chatPage starts Converse.js, connected to this server's WebSocket.
func (w *web) chatPage(rw http.ResponseWriter, r *http.Request) {
	_, ws, host := base(r)
	conf := map[string]any{
		"websocket_url":               ws + "://" + host + "/xmpp-websocket",
		"discover_connection_methods": false,
		"assets_path":                 "/chat/dist/",
		"view_mode":                   "fullscreen",
		"default_domain":              w.cfg.Domains[0],
		"locked_domain":               w.cfg.Domains[0],
		"muc_domain":                  "conference." + w.cfg.Domains[0],
		"allow_registration":          false,
		"i18n":                        "en",
		"auto_reconnect":              true,
	}
	if !w.cfg.Archive {
		// Rooms keep no archive to catch up with (XEP-0313): Converse asks
		// for the rooms' history on joining instead (XEP-0045 7.2.14).
		conf["muc_history_max_stanzas"] = w.cfg.MUCMaxHistory
	}
	settings, _ := json.Marshal(conf)
	rw.Header().Set("Content-Type", "text/html; charset=utf-8")
	rw.Header().Set("Cache-Control", "no-cache")
	fmt.Fprintf(rw, `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>%s — chat</title>
<link rel="stylesheet" href="/chat/dist/converse.min.css">
<script type="module" src="/chat/dist/converse.min.js"></script>
</head><body class="converse-fullscreen">
<script type="module">
converse.initialize(%s);
</script>
</body></html>
`, template.HTMLEscapeString(w.cfg.Domains[0]), settings)
}

func (w *web) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	rw.Header().Set("X-Content-Type-Options", "nosniff")
	w.mux.ServeHTTP(rw, r)
}

// base is the URL of this server as the client reached it.
func base(r *http.Request) (scheme, wsScheme, host string) {
	if r.TLS != nil {
		return "https", "wss", r.Host
	}
	return "http", "ws", r.Host
}

// hostMeta answers XEP-0156 connection discovery in XRD.
func (w *web) hostMeta(rw http.ResponseWriter, r *http.Request) {
	rw.Header().Set("Content-Type", "application/xrd+xml")
	rw.Header().Set("Access-Control-Allow-Origin", "*")
	s, ws, host := base(r)
	fmt.Fprintf(rw, "<?xml version='1.0' encoding='utf-8'?>\n<XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'>\n"+
		"  <Link rel='urn:xmpp:alt-connections:websocket' href='%s'/>\n"+
		"  <Link rel='urn:xmpp:alt-connections:xbosh' href='%s'/>\n</XRD>\n",
		template.HTMLEscapeString(ws+"://"+host+"/xmpp-websocket"), template.HTMLEscapeString(s+"://"+host+"/http-bind"))
}

// hostMetaJSON answers XEP-0156 connection discovery in JRD.
func (w *web) hostMetaJSON(rw http.ResponseWriter, r *http.Request) {
	s, ws, host := base(r)
	rw.Header().Set("Content-Type", "application/json")
	rw.Header().Set("Access-Control-Allow-Origin", "*")
	json.NewEncoder(rw).Encode(map[string]any{"links": []map[string]string{
		{"rel": "urn:xmpp:alt-connections:websocket", "href": ws + "://" + host + "/xmpp-websocket"},
		{"rel": "urn:xmpp:alt-connections:xbosh", "href": s + "://" + host + "/http-bind"},
	}})
}

// statusData is what the status page template gets. Its fields are the
// template's interface: an operator's own template may use all of them.
type statusData struct {
	Domain           string // the first domain served
	Domains          []string
	Registration     string // open, closed or invite, as it is now
	Archive          bool   // messages are archived
	ArchiveRetention string // e.g. "365 days"; empty: kept until deleted
	Upload           bool   // file sharing is on
	UploadExpire     string // how long shared files are kept
	ExpireAfter      string // unused accounts may be deleted after this
	WebClient        string // the web client's path, or empty
	Push             bool   // push notifications are on
	PushBody         bool   // and carry the message's text
	RoomHistory      int    // messages each group chat room keeps for newcomers; 0: no group chat
	FilterStrangers  string // no, drop or quarantine: what happens by default to messages from strangers
	// Contacts are the contact addresses (XEP-0157), by kind: abuse,
	// admin, support, security.
	Contacts []Contact
}

// Contact is one kind of contact address with its URIs (checked by
// disco.CheckContactURI when the configuration was read, so safe in an
// href, also xmpp: ones that html/template would otherwise refuse).
type Contact struct {
	Kind string // abuse, admin, support, security
	URIs []template.URL
}

func (w *web) statusPage(rw http.ResponseWriter, r *http.Request) {
	d := statusData{
		Domain:       w.cfg.Domains[0],
		Domains:      w.cfg.Domains,
		Registration: string(register.Closed),
		Archive:      w.cfg.Archive,
		ExpireAfter:  days(w.cfg.ExpireAfter),
		Push:         w.cfg.Push,
		PushBody:     w.cfg.Push && w.cfg.PushBody,
	}
	if w.cfg.MUC {
		d.RoomHistory = w.cfg.MUCMaxHistory
	}
	d.FilterStrangers = string(w.cfg.FilterStrangers)
	if w.cfg.WebClient != "" {
		d.WebClient = "/chat/"
	}
	for _, c := range []struct {
		kind string
		uris []string
	}{{"abuse", w.cfg.ContactAbuse}, {"admin", w.cfg.ContactAdmin}, {"support", w.cfg.ContactSupport}, {"security", w.cfg.ContactSecurity}} {
		if len(c.uris) == 0 {
			continue
		}
		contact := Contact{Kind: c.kind}
		for _, u := range c.uris {
			contact.URIs = append(contact.URIs, template.URL(u))
		}
		d.Contacts = append(d.Contacts, contact)
	}
	if w.upload {
		d.Upload = true
		d.UploadExpire = days(w.cfg.UploadExpire)
	}
	if w.reg != nil {
		d.Registration = string(w.reg.CurrentPolicy())
	}
	if w.cfg.Archive && w.cfg.ArchiveRetention > 0 {
		d.ArchiveRetention = days(w.cfg.ArchiveRetention)
	}
	rw.Header().Set("Content-Type", "text/html; charset=utf-8")
	rw.Header().Set("Cache-Control", "no-cache")
	rw.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	if err := w.status.Execute(rw, d); err != nil {
		w.srv.Log().Error("status page failed", "err", err)
	}
}

// days renders a duration of whole days ("365 days"), else as Go does.
func days(d time.Duration) string {
	if d <= 0 {
		return ""
	}
	if d%(24*time.Hour) == 0 {
		n := int(d / (24 * time.Hour))
		if n == 1 {
			return "1 day"
		}
		return fmt.Sprintf("%d days", n)
	}
	return d.String()
}

// isLoopback reports whether a listen address is on loopback only.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
