package s2s

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	xmppx509 "mellium.im/xmpp/x509"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/internal/xmlscan"
)

const (
	nsStream   = "http://etherx.jabber.org/streams"
	nsStreams  = "urn:ietf:params:xml:ns:xmpp-streams"
	nsTLS      = "urn:ietf:params:xml:ns:xmpp-tls"
	nsSASL     = "urn:ietf:params:xml:ns:xmpp-sasl"
	nsStanzas  = "urn:ietf:params:xml:ns:xmpp-stanzas"
	writeLimit = 30 * time.Second
)

// stream is one server-to-server connection: the raw socket, TLS on top
// once negotiated, and a scanner reading whole elements.
type stream struct {
	nc     net.Conn
	rw     net.Conn // nc, or TLS over it
	sc     *xmlscan.Scanner
	wmu    sync.Mutex
	secure bool
	certs  []*x509.Certificate // the peer's, once TLS is up
	id     string              // the receiving side's stream id
	closed bool                // under wmu: the closing tag was written
}

func newStream(nc net.Conn, max int) *stream {
	return &stream{nc: nc, rw: nc, sc: xmlscan.NewScanner(nc, max)}
}

// write writes raw within the write limit.
func (s *stream) write(raw []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.closed {
		return net.ErrClosed
	}
	s.rw.SetWriteDeadline(time.Now().Add(writeLimit))
	_, err := s.rw.Write(raw)
	return err
}

func (s *stream) writeString(str string) error { return s.write([]byte(str)) }

// next reads the next element, waiting at most d.
func (s *stream) next(d time.Duration) (*xmlscan.Element, error) {
	s.nc.SetReadDeadline(time.Now().Add(d))
	return s.sc.Next()
}

// closeWith writes a stream error (unless cond is empty) and the closing
// tag, and closes the connection.
func (s *stream) closeWith(cond string) {
	s.wmu.Lock()
	if !s.closed {
		s.closed = true
		tail := "</stream:stream>"
		if cond != "" {
			tail = streamError(cond) + tail
		}
		s.rw.SetWriteDeadline(time.Now().Add(2 * time.Second))
		io.WriteString(s.rw, tail)
	}
	s.wmu.Unlock()
	s.nc.Close()
}

func streamError(cond string) string {
	return "<stream:error><" + cond + " xmlns='" + nsStreams + "'/></stream:error>"
}

// header is a stream header from from to to.
func header(from, to, id string) string {
	var b strings.Builder
	b.WriteString("<?xml version='1.0'?><stream:stream xmlns='" + NSServer + "' xmlns:stream='" + nsStream + "' xmlns:db='" + NSDialback + "'")
	for _, a := range [][2]string{{"from", from}, {"to", to}, {"id", id}} {
		if a[1] != "" {
			b.WriteString(" " + a[0] + "='")
			b.Write(treff.AppendEscaped(nil, a[1]))
			b.WriteString("'")
		}
	}
	b.WriteString(" version='1.0'>")
	return b.String()
}

// startTLS upgrades the stream with cfg, as the client or the server.
func (s *stream) startTLS(cfg *tls.Config, client bool, d time.Duration) error {
	var tc *tls.Conn
	if client {
		tc = tls.Client(s.nc, cfg)
	} else {
		tc = tls.Server(s.nc, cfg)
	}
	s.nc.SetDeadline(time.Now().Add(d))
	if err := tc.Handshake(); err != nil {
		return err
	}
	s.nc.SetDeadline(time.Time{})
	s.rw, s.secure = tc, true
	s.certs = tc.ConnectionState().PeerCertificates
	s.sc.Reset(tc)
	return nil
}

func newID() string {
	var b [16]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// features is what a stream features element offers.
type features struct {
	starttls, external, dialback bool
}

// parseFeatures reads <stream:features/>.
func parseFeatures(el *xmlscan.Element) features {
	var f features
	inner := el.Inner()
	f.starttls = strings.Contains(inner, nsTLS)
	if i := strings.Index(inner, nsSASL); i >= 0 {
		f.external = strings.Contains(inner[i:], "<mechanism>EXTERNAL</mechanism>")
	}
	f.dialback = strings.Contains(inner, NSDialbackFeatures)
	return f
}

// verify reports whether certs (leaf first) are a valid certificate for
// domain: a chain to the trusted roots (or, with AcceptSelfSigned, any
// certificate) whose names include domain as a DNS-ID, an SRV-ID for
// _xmpp-server or an XmppAddr (RFC 6125, RFC 6120 13.7.1.2).
func (m *Module) verify(certs []*x509.Certificate, domain string) bool {
	if len(certs) == 0 || domain == "" {
		return false
	}
	leaf := certs[0]
	if !m.AcceptSelfSigned {
		inter := x509.NewCertPool()
		for _, c := range certs[1:] {
			inter.AddCert(c)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: m.roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			return false
		}
	} else if now := time.Now(); now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
		return false
	}
	if leaf.VerifyHostname(domain) == nil {
		return true
	}
	xc, err := xmppx509.FromCertificate(leaf)
	if err != nil {
		return false
	}
	for _, n := range xc.SRVNames {
		if strings.EqualFold(n, "_xmpp-server."+domain) {
			return true
		}
	}
	for _, a := range xc.XMPPAddresses {
		if strings.EqualFold(a, domain) {
			return true
		}
	}
	return false
}

// dialbackKey is the key this server gives for a stream from originating
// to receiving with the receiving side's stream id (XEP-0185):
// HMAC-SHA256(SHA256(secret), receiving + " " + originating + " " + id).
func (m *Module) dialbackKey(receiving, originating, id string) string {
	k := sha256.Sum256(m.secret)
	mac := hmac.New(sha256.New, []byte(hex.EncodeToString(k[:])))
	mac.Write([]byte(receiving + " " + originating + " " + id))
	return hex.EncodeToString(mac.Sum(nil))
}

// isDialback reports whether el is the dialback element name, written
// with the stream's db: prefix or with its own namespace.
func isDialback(el *xmlscan.Element, name string) bool {
	return el.Name == "db:"+name || el.Name == name && el.NS() == NSDialback
}

// describe says what went wrong with a connection in words that hold no
// address: the server writes no IP address to its logs.
func describe(err error) string {
	var se errStream
	var dns *net.DNSError
	var ne net.Error
	switch {
	case err == nil:
		return ""
	case errors.As(err, &se):
		return string(se)
	case errors.As(err, &dns):
		if dns.IsNotFound {
			return "the domain does not exist"
		}
		return "DNS lookup failed"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed by the peer"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "host unreachable"
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timed out"
	case strings.Contains(err.Error(), "tls:"), strings.Contains(err.Error(), "x509:"):
		return "TLS failed"
	case errors.Is(err, xmlscan.ErrNotWellFormed), errors.Is(err, xmlscan.ErrBadStreamHeader),
		errors.Is(err, xmlscan.ErrBadPrefix), errors.Is(err, xmlscan.ErrTooManyAttrs),
		errors.Is(err, xmlscan.ErrNestedStream):
		return "the peer sent bad XML"
	}
	return "connection failed"
}
