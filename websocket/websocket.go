// Package websocket serves XMPP over WebSocket (RFC 7395) for web clients:
// an http.Handler, usually mounted at /xmpp-websocket, that runs each
// WebSocket connection as a client stream of a treff.Server, with the same
// negotiation, SASL, stream management and limits as TCP.
//
// RFC 7395 frames one whole XML element per WebSocket message, and opens
// and closes the stream with <open/> and <close/> instead of the stream
// tags. The handler translates between the two: a client's messages
// become the byte stream the server's session layer reads, and what the
// session writes is split back into elements, each sent as one message
// (however large: a 20 KiB stanza is one message, never several), with
// the namespaces each standalone element needs.
//
// The connection counts as secure: serve the handler over HTTPS, or over
// plain HTTP on loopback only (a local reverse proxy that terminates TLS,
// or tests).
package websocket

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	xws "golang.org/x/net/websocket"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/internal/xmlscan"
	"github.com/treff-im/treff/internal/xmlsplit"
)

// Namespaces of RFC 7395.
const (
	NSFraming = "urn:ietf:params:xml:ns:xmpp-framing"
	// Protocol is the WebSocket subprotocol a client must ask for.
	Protocol = "xmpp"
)

// Handler serves XMPP over WebSocket for Server.
type Handler struct {
	// Server runs the streams.
	Server *treff.Server
	// Origins are the Origin header values (scheme://host[:port]) of web
	// pages allowed to connect. Empty allows clients that send no Origin
	// (native clients) and pages served by this same host; "*" allows
	// every origin.
	Origins []string
	// MaxStanzaSize bounds one WebSocket message (plus 1 KiB for the
	// namespaces a standalone element repeats); 0 means the server's
	// MaxStanzaSize, or 256 KiB. A larger message, or a larger stanza in
	// fragments, ends the stream with <policy-violation/> and <close/>,
	// as on TCP, and the WebSocket with status 1009 (message too big).
	MaxStanzaSize int
	// SeeOtherURI, if set, sends every client elsewhere (RFC 7395 3.6.1):
	// its stream is answered with <open/> and a <close/> naming this
	// URI (a wss:// URL), for an endpoint that has moved.
	SeeOtherURI string
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusUpgradeRequired)
		w.Write([]byte("This is an XMPP WebSocket endpoint (RFC 7395).\n"))
		return
	}
	hj := &hijacked{ResponseWriter: w}
	xws.Server{Handshake: h.handshake, Handler: func(ws *xws.Conn) { h.serve(ws, hj.nc) }}.ServeHTTP(hj, r)
}

// hijacked keeps the connection the WebSocket library takes over, so that
// the handler can end it with the close status it chooses (the library's
// Close always sends 1000).
type hijacked struct {
	http.ResponseWriter
	nc net.Conn
}

func (h *hijacked) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, rw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	h.nc = nc
	return nc, rw, err
}

// handshake checks the subprotocol and the origin.
func (h *Handler) handshake(cfg *xws.Config, r *http.Request) error {
	ok := false
	for _, p := range cfg.Protocol {
		if p == Protocol {
			ok = true
		}
	}
	if !ok {
		return errors.New("websocket: the client did not ask for the xmpp subprotocol")
	}
	cfg.Protocol = []string{Protocol}
	origin := r.Header.Get("Origin")
	if !h.originAllowed(origin, r.Host) {
		return errors.New("websocket: origin not allowed")
	}
	if origin != "" {
		cfg.Origin, _ = url.Parse(origin)
	}
	return nil
}

func (h *Handler) originAllowed(origin, host string) bool {
	if origin == "" {
		return true
	}
	for _, o := range h.Origins {
		if o == "*" || strings.EqualFold(strings.TrimSuffix(o, "/"), origin) {
			return true
		}
	}
	if len(h.Origins) > 0 {
		return false
	}
	u, err := url.Parse(origin)
	return err == nil && strings.EqualFold(u.Host, host)
}

func (h *Handler) serve(ws *xws.Conn, nc net.Conn) {
	max := h.MaxStanzaSize
	if max <= 0 {
		max = h.Server.MaxStanzaSize
	}
	if max <= 0 {
		max = 256 << 10
	}
	ws.MaxPayloadBytes = max + 1024
	ws.PayloadType = xws.TextFrame
	if h.SeeOtherURI != "" {
		h.redirect(ws)
		return
	}
	c := &conn{ws: ws, nc: nc, remote: remoteAddr(ws.Request())}
	h.Server.ServeConn(c)
}

// redirect answers the client's <open/> with ours and a <close/> with
// see-other-uri (RFC 7395 3.6.1), then ends the connection.
func (h *Handler) redirect(ws *xws.Conn) {
	ws.SetDeadline(time.Now().Add(10 * time.Second))
	var msg string
	if err := xws.Message.Receive(ws, &msg); err != nil {
		return
	}
	open := "<open xmlns='" + NSFraming + "' version='1.0'"
	if el, err := xmlscan.Parse([]byte(strings.TrimSpace(msg)), 0); err == nil && el.Name == "open" {
		if to, ok := el.Attr("to"); ok {
			open += " from='" + string(treff.AppendEscaped(nil, to)) + "'"
		}
	}
	xws.Message.Send(ws, open+"/>")
	xws.Message.Send(ws, "<close xmlns='"+NSFraming+"' see-other-uri='"+string(treff.AppendEscaped(nil, h.SeeOtherURI))+"'/>")
}

// remoteAddr is the client's address from the HTTP request.
func remoteAddr(r *http.Request) net.Addr {
	if a, err := net.ResolveTCPAddr("tcp", r.RemoteAddr); err == nil {
		return a
	}
	return &net.TCPAddr{}
}

// conn carries a client stream over a WebSocket connection: the byte
// stream the session layer reads and writes on one side, RFC 7395
// messages on the other.
type conn struct {
	ws     *xws.Conn
	nc     net.Conn // the connection under ws
	remote net.Addr

	tooBig    atomic.Bool // the stream ends for a message or stanza over the limit
	closeOnce sync.Once
	closeErr  error

	rbuf []byte // translated input not read yet

	wmu  sync.Mutex
	wbuf []byte // output not yet a whole element
}

// Transport names the transport for treff.Server.Stats (see ServeConn).
func (c *conn) Transport() string { return "websocket" }

func (c *conn) Read(p []byte) (int, error) {
	for len(c.rbuf) == 0 {
		var msg string
		if err := xws.Message.Receive(c.ws, &msg); err != nil {
			if errors.Is(err, xws.ErrFrameTooLarge) {
				// The session layer answers it as an oversized stanza.
				return 0, fmt.Errorf("websocket: a message over %d bytes: %w", c.ws.MaxPayloadBytes, xmlscan.ErrTooLarge)
			}
			return 0, err
		}
		c.rbuf = translateIn(msg)
	}
	n := copy(p, c.rbuf)
	c.rbuf = c.rbuf[n:]
	return n, nil
}

// translateIn turns a client's message into stream bytes: <open/> into a
// stream header, <close/> into the closing tag; anything else is passed
// as is.
func translateIn(msg string) []byte {
	t := strings.TrimSpace(msg)
	if strings.HasPrefix(t, "<open") || strings.HasPrefix(t, "<close") {
		el, err := xmlscan.Parse([]byte(t), 0)
		// Exactly <open/> or <close/>: the prefix test alone also took
		// <closed/> or <opener/> in the framing namespace for <open/>.
		if err == nil && el.NS() == NSFraming && (el.Name == "open" || el.Name == "close") {
			if el.Name == "close" {
				return []byte("</stream:stream>")
			}
			var b []byte
			b = append(b, "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'"...)
			for _, a := range el.Attrs {
				if a.Name == "xmlns" {
					continue
				}
				b = append(b, ' ')
				b = append(b, a.Name...)
				b = append(b, "='"...)
				b = treff.AppendEscaped(b, a.Value)
				b = append(b, '\'')
			}
			return append(b, '>')
		}
	}
	return []byte(msg)
}

// Write takes what the session writes and sends each whole element as
// one message.
func (c *conn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wbuf = append(c.wbuf, p...)
	for {
		n := xmlsplit.ElementEnd(c.wbuf)
		if n == 0 {
			break
		}
		if out := translateOut(c.wbuf[:n]); out != nil {
			if err := xws.Message.Send(c.ws, string(out)); err != nil {
				return 0, err
			}
		}
		c.wbuf = c.wbuf[n:]
	}
	if len(c.wbuf) == 0 {
		c.wbuf = nil
	}
	return len(p), nil
}

// translateOut turns one element of the server's stream into a message:
// the stream header into <open/>, the closing tag into <close/>, and
// stream-level elements into standalone documents with their namespaces.
func translateOut(el []byte) []byte {
	el = bytes.TrimSpace(el)
	switch {
	case len(el) == 0:
		return nil
	case bytes.HasPrefix(el, []byte("<?xml")):
		return nil // the declaration before the header
	case bytes.HasPrefix(el, []byte("<stream:stream")):
		// A copy: el is part of the write buffer.
		selfClosed := append(bytes.Clone(bytes.TrimSuffix(el, []byte(">"))), "/>"...)
		hdr, err := xmlscan.Parse(selfClosed, 0)
		if err != nil {
			return nil
		}
		b := []byte("<open xmlns='" + NSFraming + "'")
		for _, a := range hdr.Attrs {
			if a.Name == "xmlns" || strings.HasPrefix(a.Name, "xmlns:") {
				continue
			}
			b = append(b, ' ')
			b = append(b, a.Name...)
			b = append(b, "='"...)
			b = treff.AppendEscaped(b, a.Value)
			b = append(b, '\'')
		}
		return append(b, "/>"...)
	case bytes.Equal(el, []byte("</stream:stream>")):
		return []byte("<close xmlns='" + NSFraming + "'/>")
	}
	return xmlsplit.Standalone(el)
}

// ReadFailed learns from the session layer why it ends the stream (see
// treff's readFailedNoter): for a message or stanza over the size limit,
// Close sends 1009 instead of 1000.
func (c *conn) ReadFailed(err error) {
	if errors.Is(err, xmlscan.ErrTooLarge) {
		c.tooBig.Store(true)
	}
}

// WebSocket close status codes (RFC 6455 7.4.1).
const (
	closeTooBig  = 1009
	lingerTime   = 2 * time.Second
	lingerMaxLen = 1 << 20
)

// Close sends the close frame (1009 after a message or stanza over the
// limit, else 1000) and closes the connection.
func (c *conn) Close() error {
	c.closeOnce.Do(func() {
		if !c.tooBig.Load() {
			c.closeErr = c.ws.Close() // 1000
			return
		}
		c.ws.WriteClose(closeTooBig)
		c.closeErr = lingerClose(c.nc)
	})
	return c.closeErr
}

// lingerClose closes a connection whose client may still be sending the
// rest of an oversized message. Closing a socket with unread data makes
// TCP send a reset, which can destroy the close frame before the client
// reads it; so the sending side is shut first (the close frame is followed
// by FIN) and what the client still sends is discarded, up to lingerMaxLen
// bytes or lingerTime, until the client closes its side.
func lingerClose(nc net.Conn) error {
	if cw, ok := nc.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
		nc.SetReadDeadline(time.Now().Add(lingerTime))
		io.CopyN(io.Discard, nc, lingerMaxLen)
	}
	return nc.Close()
}

var _ interface{ ReadFailed(error) } = (*conn)(nil)

func (c *conn) LocalAddr() net.Addr                { return c.ws.LocalAddr() }
func (c *conn) RemoteAddr() net.Addr               { return c.remote }
func (c *conn) SetDeadline(t time.Time) error      { return c.ws.SetDeadline(t) }
func (c *conn) SetReadDeadline(t time.Time) error  { return c.ws.SetReadDeadline(t) }
func (c *conn) SetWriteDeadline(t time.Time) error { return c.ws.SetWriteDeadline(t) }
