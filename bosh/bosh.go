// Package bosh serves XMPP over BOSH for web clients: XEP-0124
// (Bidirectional-streams Over Synchronous HTTP, version 1.11.2) with
// XEP-0206 (XMPP Over BOSH, version 1.4). Handler is an http.Handler,
// usually mounted at /http-bind, that runs each BOSH session as a client
// stream of a treff.Server (through Server.ServeConn), with the same
// negotiation, SASL, stream management and limits as TCP.
//
// A BOSH session is a virtual connection. The session creation request
// starts a stream (a synthetic stream header goes to the session layer);
// the children of each later request's <body/> are appended to the
// stream, in the order of the request ids ('rid'), out-of-order requests
// being buffered within the window; a restart request (xmpp:restart,
// after SASL) opens a new stream and a terminate request closes it. What
// the session layer writes is split back into whole elements and handed
// to the next response; a request with nothing to answer is held for up
// to 'wait' seconds (long polling, hold='1'). A repeated 'rid' gets the
// same response again. A session with no request for 'inactivity'
// seconds ends. When the server closes the stream, the next response
// terminates the session (condition 'remote-stream-error' with the
// stream error, when there is one).
//
// The connection counts as secure: serve the handler over HTTPS, or over
// plain HTTP on loopback only (a local reverse proxy that terminates TLS,
// or tests).
package bosh

import (
	"crypto/rand"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/internal/xmlscan"
)

// Namespaces of XEP-0124 and XEP-0206.
const (
	// NS qualifies the <body/> wrapper element (XEP-0124).
	NS = "http://jabber.org/protocol/httpbind"
	// NSXBOSH qualifies the xmpp:version, xmpp:restart and
	// xmpp:restartlogic attributes (XEP-0206).
	NSXBOSH = "urn:xmpp:xbosh"
)

// Version is the highest version of XEP-0124 the handler speaks (the
// 'ver' attribute of the session creation response).
const Version = "1.11"

// Defaults of the Handler's fields.
const (
	DefaultWait       = 60 * time.Second
	DefaultInactivity = 60 * time.Second
	DefaultMaxPause   = 120 * time.Second
	// DefaultMaxSessionsPerAddress is the default of
	// Handler.MaxSessionsPerAddress: enough for a household or a small
	// office behind one address with a few browser tabs each (a reloaded
	// page's old session lives on until its inactivity timeout), and a
	// bound on what one address can make the server keep.
	DefaultMaxSessionsPerAddress = 10
)

// Handler serves XMPP over BOSH for Server. Set Server and mount it, e.g.
// mux.Handle("/http-bind", &bosh.Handler{Server: srv}); the other fields
// have useful zero values. A Handler must not be copied after first use.
type Handler struct {
	// Server runs the streams.
	Server *treff.Server
	// AllowOrigin is the Access-Control-Allow-Origin header sent to web
	// pages (CORS). "" means "*": any page may use the endpoint, which is
	// safe because BOSH carries no cookies or other ambient credentials.
	AllowOrigin string
	// Wait is the longest time a request is held when there is nothing
	// to answer; a client may ask for less. 0 means 60 seconds.
	Wait time.Duration
	// Inactivity ends a session after that long without any request from
	// its client. 0 means 60 seconds.
	Inactivity time.Duration
	// MaxPause is the longest pause (XEP-0124 section 10) a client may
	// ask for. 0 means 120 seconds.
	MaxPause time.Duration
	// MaxBodySize bounds one request body in bytes. 0 means the server's
	// MaxStanzaSize (256 KiB if unset) plus 4 KiB for the wrapper.
	MaxBodySize int
	// MaxSessionsPerAddress caps the sessions open at once from one
	// client IP address. A session creation request beyond it is answered
	// <body type='terminate' condition='policy-violation'/> (XEP-0124
	// section 17; HTTP 403 instead of 200 for a client that sent no
	// 'ver'); a session counts until it ends (terminate, stream end or
	// inactivity). 0 means DefaultMaxSessionsPerAddress (10); negative
	// means no cap. Requests from loopback addresses are not counted: there
	// the client is a local reverse proxy (or a test), whose clients
	// cannot be told apart. Behind a proxy on another address every client
	// has the proxy's address: set a negative value and limit at the
	// proxy. Addresses are held in memory while their sessions last, never
	// logged or stored.
	MaxSessionsPerAddress int

	mu       sync.Mutex
	sessions map[string]*session
	perAddr  map[netip.Addr]int // open sessions per client address, loopback excluded
}

// ServeHTTP implements http.Handler: POST carries BOSH requests, OPTIONS
// answers CORS preflight requests, GET shows a short text page.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	origin := h.AllowOrigin
	if origin == "" {
		origin = "*"
	}
	hdr.Set("Access-Control-Allow-Origin", origin)
	if origin != "*" {
		hdr.Add("Vary", "Origin")
	}
	switch r.Method {
	case http.MethodPost:
	case http.MethodOptions:
		hdr.Set("Access-Control-Allow-Methods", "POST, OPTIONS")
		hdr.Set("Access-Control-Allow-Headers", "Content-Type")
		hdr.Set("Access-Control-Max-Age", "86400")
		w.WriteHeader(http.StatusNoContent)
		return
	case http.MethodGet, http.MethodHead:
		hdr.Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "This is an XMPP over BOSH endpoint (XEP-0124, XEP-0206): web clients POST to it.\n")
		return
	default:
		hdr.Set("Allow", "GET, POST, OPTIONS")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}

	max := h.maxBody()
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(max)))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			writeBody(w, http.StatusOK, terminateBody("policy-violation", nil))
		}
		return // else the client went away
	}
	el, err := parseBody(data, max, h.Server.MaxAttributes)
	if err != nil {
		writeBody(w, http.StatusOK, terminateBody("bad-request", nil))
		return
	}
	rid, err := strconv.ParseUint(attr(el, "rid"), 10, 64)
	if err != nil || rid == 0 || rid > maxRID {
		writeBody(w, http.StatusOK, terminateBody("bad-request", nil))
		return
	}
	sid, ok := el.Attr("sid")
	if !ok {
		h.create(w, r, el, rid)
		return
	}
	h.mu.Lock()
	s := h.sessions[sid]
	h.mu.Unlock()
	if s == nil {
		// No 'ver' is known for an unknown session: answer as to a
		// current client (XEP-0124 section 17: no HTTP error codes).
		writeBody(w, http.StatusOK, terminateBody("item-not-found", nil))
		return
	}
	req, status, resp := s.submit(rid, el)
	if req == nil {
		writeBody(w, status, resp)
		return
	}
	wait(w, r, req, s.wait)
}

// maxRID is the largest request id XEP-0124 allows (2^53 - 1).
const maxRID = 1<<53 - 1

// wait writes req's response once it is ready (held at most hold), unless the client goes
// away first (the response stays cached for a retry with the same rid).
func wait(w http.ResponseWriter, r *http.Request, req *request, hold time.Duration) {
	// Long polls outlive a short http.Server.WriteTimeout.
	http.NewResponseController(w).SetWriteDeadline(time.Now().Add(hold + 30*time.Second))
	select {
	case <-req.done:
		writeBody(w, req.status, req.resp)
	case <-r.Context().Done():
	}
}

func (h *Handler) maxBody() int {
	if h.MaxBodySize > 0 {
		return h.MaxBodySize
	}
	n := h.Server.MaxStanzaSize
	if n <= 0 {
		n = 256 << 10
	}
	return n + 4<<10
}

func durationOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// parseBody parses a request: one <body/> element qualified by NS, after
// an optional XML declaration.
//
// maxAttrs bounds the attributes of each start tag, the body's and its
// stanzas' (<= 0 means 100): the server's MaxAttributes, which the session
// layer applies again to the stanzas once it reads them.
func parseBody(data []byte, max, maxAttrs int) (*xmlscan.Element, error) {
	s := strings.TrimSpace(string(data))
	if strings.HasPrefix(s, "<?xml") {
		i := strings.Index(s, "?>")
		if i < 0 {
			return nil, xmlscan.ErrNotWellFormed
		}
		s = s[i+2:]
	}
	el, err := xmlscan.ParseAttrs([]byte(s), max, maxAttrs)
	if err != nil {
		return nil, err
	}
	if el.Name != "body" || el.NS() != NS {
		return nil, errors.New("bosh: not a body element")
	}
	return el, nil
}

func attr(el *xmlscan.Element, name string) string {
	v, _ := el.Attr(name)
	return v
}

// xboshAttr returns the value of the attribute local in the XEP-0206
// namespace, whatever prefix the client bound to it.
func xboshAttr(el *xmlscan.Element, local string) (string, bool) {
	for _, a := range el.Attrs {
		p, l, ok := strings.Cut(a.Name, ":")
		if ok && l == local && p != "xmlns" && attr(el, "xmlns:"+p) == NSXBOSH {
			return a.Value, true
		}
	}
	return "", false
}

// seconds parses a non-negative number of seconds.
func seconds(v string) (time.Duration, bool) {
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil {
		return 0, false
	}
	return time.Duration(n) * time.Second, true
}

// secs formats d as whole seconds, at least 1.
func secs(d time.Duration) string {
	return strconv.FormatInt(max(int64(d/time.Second), 1), 10)
}

// version returns the lower of the client's 'ver' and Version.
func version(client string) string {
	maj, min, ok := strings.Cut(client, ".")
	// ParseUint, not Atoi: no sign ("1.-5" was answered as is).
	a, err1 := strconv.ParseUint(maj, 10, 31)
	b, err2 := strconv.ParseUint(min, 10, 31)
	if !ok || err1 != nil || err2 != nil {
		return Version
	}
	if a < 1 || a == 1 && b < 11 {
		return strconv.FormatUint(a, 10) + "." + strconv.FormatUint(b, 10)
	}
	return Version
}

func writeBody(w http.ResponseWriter, status int, b []byte) {
	h := w.Header()
	h.Set("Content-Type", "text/xml; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	w.Write(b)
}

// terminateBody is a <body type='terminate'/> with the condition (none if
// "") and the payload.
func terminateBody(cond string, payload []byte) []byte {
	b := []byte("<body xmlns='" + NS + "' type='terminate'")
	if cond != "" {
		b = append(b, " condition='"...)
		b = append(b, cond...)
		b = append(b, '\'')
	}
	if len(payload) == 0 {
		return append(b, "/>"...)
	}
	b = append(b, '>')
	b = append(b, payload...)
	return append(b, "</body>"...)
}

// legacyStatus is the HTTP status a legacy client (one that sent no 'ver')
// expects with a terminal condition (XEP-0124 section 17.1).
func legacyStatus(cond string) int {
	switch cond {
	case "bad-request":
		return http.StatusBadRequest
	case "policy-violation":
		return http.StatusForbidden
	case "item-not-found":
		return http.StatusNotFound
	}
	return http.StatusOK
}

// create starts a session for a session creation request.
func (h *Handler) create(w http.ResponseWriter, r *http.Request, el *xmlscan.Element, rid uint64) {
	_, hasVer := el.Attr("ver")
	to := attr(el, "to")
	if to == "" {
		status := http.StatusOK
		if !hasVer {
			status = http.StatusBadRequest
		}
		writeBody(w, status, terminateBody("improper-addressing", nil))
		return
	}
	addr, counted := clientAddr(r.RemoteAddr)
	if counted && !h.admit(addr) {
		h.Server.Log().Debug("bosh session refused: too many sessions from one address")
		status := http.StatusOK
		if !hasVer {
			status = legacyStatus("policy-violation")
		}
		writeBody(w, status, terminateBody("policy-violation", nil))
		return
	}
	maxWait := durationOr(h.Wait, DefaultWait)
	wt := maxWait
	if d, ok := seconds(attr(el, "wait")); ok && d > 0 && d < wt {
		wt = d
	}
	hold := 1
	if v, ok := el.Attr("hold"); ok && v == "0" {
		hold = 0
	}
	s := &session{
		h:          h,
		sid:        rand.Text(),
		host:       to,
		lang:       attr(el, "xml:lang"),
		wait:       wt,
		hold:       hold,
		requests:   hold + 1,
		inactivity: durationOr(h.Inactivity, DefaultInactivity),
		maxPause:   durationOr(h.MaxPause, DefaultMaxPause),
		ver:        version(attr(el, "ver")),
		legacy:     !hasVer,
		remote:     remoteAddr(r.RemoteAddr),
		changed:    make(chan struct{}),
		queued:     make(map[uint64]*request),
		nextRID:    rid + 1,
		maxQueue:   h.Server.MaxQueue,
		maxIn:      4 * h.maxBody(),
		addr:       addr,
		counted:    counted,
	}
	if s.maxQueue <= 0 {
		s.maxQueue = 1 << 20
	}
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		s.local = a
	} else {
		s.local = &net.TCPAddr{}
	}
	req := &request{rid: rid, done: make(chan struct{}), creation: true, needFeatures: true}
	s.mu.Lock()
	s.appendInLocked(s.header())
	s.held = append(s.held, req)
	req.timer = time.AfterFunc(s.wait, func() { s.expire(req) })
	s.mu.Unlock()

	h.mu.Lock()
	if h.sessions == nil {
		h.sessions = make(map[string]*session)
	}
	h.sessions[s.sid] = s
	h.mu.Unlock()
	h.Server.Log().Debug("bosh session created", "ver", s.ver, "wait", s.wait, "hold", s.hold)
	go func() {
		h.Server.ServeConn(s)
		s.Close()
	}()
	wait(w, r, req, s.wait)
}

func (h *Handler) remove(s *session) {
	h.mu.Lock()
	if h.sessions[s.sid] == s {
		delete(h.sessions, s.sid)
		if s.counted {
			if h.perAddr[s.addr]--; h.perAddr[s.addr] <= 0 {
				delete(h.perAddr, s.addr)
			}
		}
	}
	h.mu.Unlock()
}

// admit counts a new session from addr, unless addr has as many as
// MaxSessionsPerAddress already.
func (h *Handler) admit(addr netip.Addr) bool {
	limit := h.MaxSessionsPerAddress
	if limit == 0 {
		limit = DefaultMaxSessionsPerAddress
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if limit > 0 && h.perAddr[addr] >= limit {
		return false
	}
	if h.perAddr == nil {
		h.perAddr = make(map[netip.Addr]int)
	}
	h.perAddr[addr]++
	return true
}

// clientAddr is the IP address of an HTTP request's client, and whether
// it counts against MaxSessionsPerAddress (not loopback, not unknown).
func clientAddr(remote string) (netip.Addr, bool) {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return netip.Addr{}, false
	}
	a := ap.Addr().Unmap().WithZone("")
	return a, !a.IsLoopback()
}

// remoteAddr is the client's address from the HTTP request.
func remoteAddr(hostport string) net.Addr {
	if a, err := net.ResolveTCPAddr("tcp", hostport); err == nil {
		return a
	}
	return &net.TCPAddr{}
}
