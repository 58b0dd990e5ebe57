// Package extdisco implements XEP-0215: External Service Discovery for a
// Treff server: it tells local users which STUN and TURN servers to use
// for calls (Jingle audio/video across NAT) and hands out time-limited
// TURN credentials.
//
// Credentials follow the "TURN REST API" scheme that coturn understands
// with use-auth-secret/static-auth-secret (and eturnal, and others): the
// username is the expiry as Unix time, a colon and a random tag; the
// password is base64(HMAC-SHA1(secret, username)). The TURN server checks
// them with the shared secret alone, and refuses them once expired. The
// username says nothing about the user (no JID goes to the TURN server's
// logs).
//
// Only the server's own users are answered; anyone else gets
// <forbidden/>.
package extdisco

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/stanza"
)

// NS is the XEP-0215 namespace.
const NS = "urn:xmpp:extdisco:2"

// DefaultTTL is how long TURN credentials are valid unless configured.
const DefaultTTL = 24 * time.Hour

// Service is one external service.
type Service struct {
	// Type is "stun" or "turn" (or "turns", "stuns").
	Type string
	// Host is the service's host name or address; Port its port.
	Host string
	Port int
	// Transport is "udp" or "tcp"; "" leaves it out.
	Transport string
	// Name is a human-readable name; optional.
	Name string
}

// Module answers XEP-0215 requests.
type Module struct {
	// Services are the configured services, listed in this order.
	Services []Service
	// Secret is the TURN REST API shared secret (coturn's
	// static-auth-secret). Without it, TURN services are listed without
	// credentials.
	Secret string
	// TTL is how long credentials are valid; 0 means DefaultTTL.
	TTL time.Duration

	srv *treff.Server
	now func() time.Time
}

var _ treff.Module = (*Module)(nil)

// Name implements treff.Module.
func (m *Module) Name() string { return "extdisco" }

// Setup implements treff.Module.
func (m *Module) Setup(ctx context.Context, r *treff.Registry) error {
	for _, s := range m.Services {
		if s.Host == "" || s.Port <= 0 || s.Port > 65535 || s.Type == "" {
			return fmt.Errorf("extdisco: service %q:%d of type %q: need a host, a port and a type", s.Host, s.Port, s.Type)
		}
	}
	if m.TTL < 0 {
		return errors.New("extdisco: negative TTL")
	}
	m.srv = r.Server()
	if m.now == nil {
		m.now = time.Now
	}
	r.AddFeature(NS)
	r.HandleIQ(NS, treff.IQHandlerFunc(m.handle))
	return nil
}

func (m *Module) ttl() time.Duration {
	if m.TTL == 0 {
		return DefaultTTL
	}
	return m.TTL
}

// handle answers <services/> and <credentials/> (XEP-0215 3.1, 3.3).
func (m *Module) handle(ctx context.Context, iq *treff.Stanza) ([]byte, error) {
	if iq.Type != "get" {
		return nil, stanza.BadRequest
	}
	if f := iq.From; f.Localpart() == "" || !m.srv.IsLocal(f.Domainpart()) {
		return nil, stanza.Forbidden.WithText("external services are for this server's users")
	}
	var payload stanza.Child
	for c := range iq.Children() {
		payload = c
		break
	}
	switch iq.Payload.Local {
	case "services":
		typ, _ := payload.Attr("type")
		b := []byte("<services xmlns='" + NS + "'")
		if typ != "" {
			b = append(b, " type='"...)
			b = treff.AppendEscaped(b, typ)
			b = append(b, '\'')
		}
		b = append(b, '>')
		for _, s := range m.Services {
			if typ == "" || s.Type == typ {
				b = m.appendService(b, s)
			}
		}
		return append(b, "</services>"...), nil
	case "credentials":
		// <credentials><service host='…' type='…' [port='…']/></credentials>
		for child := range payload.Children() {
			if child.Name.Local != "service" {
				continue
			}
			host, _ := child.Attr("host")
			typ, _ := child.Attr("type")
			port, _ := child.Attr("port")
			for _, s := range m.Services {
				if s.Host == host && s.Type == typ && (port == "" || port == strconv.Itoa(s.Port)) && m.hasCredentials(s) {
					b := []byte("<credentials xmlns='" + NS + "'>")
					b = m.appendService(b, s)
					return append(b, "</credentials>"...), nil
				}
			}
			return nil, stanza.ItemNotFound.WithText("no such service with credentials")
		}
		return nil, stanza.BadRequest.WithText("no service named")
	}
	return nil, stanza.FeatureNotImplemented
}

// hasCredentials reports whether the server hands out credentials for s.
func (m *Module) hasCredentials(s Service) bool {
	return m.Secret != "" && (s.Type == "turn" || s.Type == "turns")
}

// appendService appends a <service/> element, with fresh credentials for
// a TURN service when there is a secret.
func (m *Module) appendService(b []byte, s Service) []byte {
	b = append(b, "<service type='"...)
	b = treff.AppendEscaped(b, s.Type)
	b = append(b, "' host='"...)
	b = treff.AppendEscaped(b, s.Host)
	b = append(b, "' port='"...)
	b = strconv.AppendInt(b, int64(s.Port), 10)
	b = append(b, '\'')
	if s.Transport != "" {
		b = append(b, " transport='"...)
		b = treff.AppendEscaped(b, s.Transport)
		b = append(b, '\'')
	}
	if s.Name != "" {
		b = append(b, " name='"...)
		b = treff.AppendEscaped(b, s.Name)
		b = append(b, '\'')
	}
	if m.hasCredentials(s) {
		expires := m.now().Add(m.ttl()).UTC().Truncate(time.Second)
		user, pass := Credentials(m.Secret, expires)
		b = append(b, " restricted='1' username='"...)
		b = treff.AppendEscaped(b, user)
		b = append(b, "' password='"...)
		b = treff.AppendEscaped(b, pass)
		b = append(b, "' expires='"...)
		b = expires.AppendFormat(b, time.RFC3339)
		b = append(b, '\'')
	}
	return append(b, "/>"...)
}

// Credentials returns TURN REST API credentials valid until expires:
// username "UNIXTIME:TAG" (TAG random, so that users do not share an
// allocation quota on the TURN server) and password
// base64(HMAC-SHA1(secret, username)).
func Credentials(secret string, expires time.Time) (username, password string) {
	var tag [6]byte
	rand.Read(tag[:])
	username = strconv.FormatInt(expires.Unix(), 10) + ":" + hex.EncodeToString(tag[:])
	mac := hmac.New(sha1.New, []byte(secret))
	mac.Write([]byte(username))
	return username, base64.StdEncoding.EncodeToString(mac.Sum(nil))
}
