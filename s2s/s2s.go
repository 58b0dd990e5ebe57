// Package s2s connects a Treff server with other XMPP servers: server-to-
// server streams (RFC 6120) in both directions, so that a user here talks
// to users of any other server.
//
// Outgoing, a stanza for a remote domain goes to the stream this server
// keeps for that pair of domains (one per pair, reused), which is set up
// on demand: the domain's _xmpps-server._tcp (direct TLS, XEP-0368) and
// _xmpp-server._tcp SRV records are tried in order, then the domain itself
// on port 5269; TLS is required (STARTTLS or direct); the stream is
// authenticated with SASL EXTERNAL when the peer accepts this server's
// certificate (XEP-0178), else with Server Dialback (XEP-0220) keyed as
// XEP-0185 recommends. Stanzas wait in a bounded queue meanwhile; if the
// stream cannot be set up in time, each is answered with
// <remote-server-not-found/> or <remote-server-timeout/>. Idle streams are
// closed.
//
// Incoming, Serve and ServeTLS accept streams from other servers: TLS
// first, then SASL EXTERNAL for a peer whose certificate is valid for its
// domain (RFC 6125: DNS-ID, SRV-ID or XmppAddr), or dialback, verified by
// connecting back to the peer's authoritative server. Every stanza must
// come from the authenticated domain (else <invalid-from/>) and go to one
// of this server's domains (else <host-unknown/>); errors are never
// answered, so two servers cannot bounce errors at each other forever.
//
// Certificates are checked against the system's roots, plus CAFiles; a
// development setup whose servers use self-signed certificates sets
// AcceptSelfSigned. Resolve (static routes) lets tests and special
// deployments point a domain at an address without DNS.
package s2s

import (
	"context"
	"crypto/x509"
	"log/slog"
	"net"
	"time"

	"github.com/treff-im/treff"
)

// Namespaces of server-to-server streams.
const (
	NSServer           = "jabber:server"
	NSDialback         = "jabber:server:dialback"
	NSDialbackFeatures = "urn:xmpp:features:dialback"
)

// Defaults of Module's settings.
const (
	DefaultIdleTimeout    = 10 * time.Minute
	DefaultConnectTimeout = 30 * time.Second
	DefaultQueueLimit     = 1000
	DefaultMaxStreams     = 1000
	// maxVerifying bounds the dialback checks one incoming stream may
	// have running: each makes a connection to another server.
	maxVerifying = 8
)

// Resolver looks up where a domain's server listens. *net.Resolver
// implements it.
type Resolver interface {
	LookupSRV(ctx context.Context, service, proto, name string) (string, []*net.SRV, error)
}

// Module is the server-to-server module. Add it to Server.Modules and serve
// its listeners with Serve (port 5269, STARTTLS) and ServeTLS (direct TLS).
type Module struct {
	// Resolve maps domains to "host:port" addresses used instead of DNS
	// (tests, or peers reached over a private network). A domain listed
	// here is connected to with STARTTLS at that address only.
	Resolve map[string]string
	// Resolver looks up SRV records; nil means net.DefaultResolver.
	Resolver Resolver
	// RootCAs are the certificate authorities trusted for other servers'
	// certificates; nil means the system's roots plus CAFiles.
	RootCAs *x509.CertPool
	// CAFiles are PEM files of further authorities to trust (added to the
	// system's roots when RootCAs is nil).
	CAFiles []string
	// AcceptSelfSigned accepts a certificate that does not chain to a
	// trusted authority as long as it names the peer's domain. For
	// development only: anyone can make such a certificate.
	AcceptSelfSigned bool
	// NoDialback disables Server Dialback: only peers with certificates
	// this server trusts (and that trust this server's) can federate.
	NoDialback bool
	// Secret keys the dialback keys (XEP-0185). nil means a random secret
	// made at start-up, which is fine for a single server process.
	Secret []byte
	// IdleTimeout closes streams without traffic for that long. 0 means
	// DefaultIdleTimeout.
	IdleTimeout time.Duration
	// ConnectTimeout bounds the set-up of an outgoing stream (resolution,
	// connection, TLS, authentication); stanzas queued for longer are
	// answered with <remote-server-timeout/>. 0 means DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// QueueLimit is the most stanzas waiting for one outgoing stream; more
	// are answered with <resource-constraint/>. 0 means DefaultQueueLimit.
	QueueLimit int
	// MaxStreams bounds the outgoing streams open or being set up at once
	// (one per pair of domains; stanzas that would need another are
	// answered with <resource-constraint/>), and likewise the incoming
	// streams (more connections are closed at once). 0 means
	// DefaultMaxStreams.
	MaxStreams int
	// MaxStanzaSize is the largest element accepted from a peer; 0 means
	// the server's MaxStanzaSize, or 256 KiB. The attribute limit per
	// start tag is the server's MaxAttributes once the peer has
	// authenticated a domain, at most 100 before; a peer that sends more
	// gets <policy-violation/>.
	MaxStanzaSize int
	// Logger, if set, replaces the server's logger for this module.
	Logger *slog.Logger

	srv    *treff.Server
	roots  *x509.CertPool
	secret []byte
	st     *state
}
