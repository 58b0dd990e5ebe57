// Package component implements XEP-0114: Jabber Component Protocol, the
// server side (jabber:component:accept): external components such as
// gateways (biboumi for IRC, say) or bots connect to the server, each for
// its own domain, and the server routes that domain's stanzas to them.
//
// A component opens a stream to its domain in the jabber:component:accept
// namespace and proves it knows the domain's secret with <handshake/>:
// the lowercase hex SHA-1 of the stream ID (which the server sent in its
// header) followed by the secret. Then:
//
//   - every stanza addressed to the domain or to a JID under it goes to
//     the component's stream as bytes; while no component is connected,
//     the sender gets <remote-server-timeout type='wait'/> (as Prosody);
//   - every stanza the component sends must carry a 'from' in its own
//     domain (else the stream is closed with <invalid-from/>) and a 'to'
//     (else <improper-addressing/>; a missing 'from' too); it is handed to
//     Server.Route, so it reaches local users, other components and other
//     servers (through s2s) like any stanza;
//   - the server's disco#items lists the component domains; disco#info
//     of a component domain goes to the component.
//
// Refusals are stream errors followed by the closing of the connection:
// <host-unknown/> for a domain that is not configured, <not-authorized/>
// for a wrong handshake, <improper-addressing/> for a header without
// 'to', <invalid-namespace/> for a stream in another namespace. One
// stream per domain: a second one that authenticates while the first is
// connected gets <conflict/> and the first stays (Prosody's default,
// component_conflict_resolve = "kick_new": a misconfigured duplicate
// cannot take a working gateway's traffic).
//
// The protocol has no TLS; serve it on loopback (or a private network)
// only, as every server does.
package component

import (
	"log/slog"
	"time"

	"github.com/treff-im/treff"
)

// NS is the namespace of component streams accepted by a server.
const NS = "jabber:component:accept"

// Defaults of Module's settings.
const (
	// DefaultHandshakeTimeout bounds the time from connect to an accepted
	// handshake.
	DefaultHandshakeTimeout = 30 * time.Second
	// DefaultPingInterval is how long a component may send nothing before
	// the server pings it (XEP-0199).
	DefaultPingInterval = 5 * time.Minute
	// DefaultPingTimeout is how long the server waits for anything from
	// the component after a ping before it closes the stream.
	DefaultPingTimeout = time.Minute
	// DefaultMaxQueue bounds the bytes waiting to be written to one
	// component: more than a client session's 1 MiB, since a gateway
	// carries the traffic of many users.
	DefaultMaxQueue = 4 << 20
	// DefaultWriteTimeout bounds one write to a component.
	DefaultWriteTimeout = 30 * time.Second
)

// Module accepts external components. Add it to Server.Modules, call
// Server.Setup, then serve a listener with Serve (Prosody and most
// components use port 5347).
type Module struct {
	// Components maps each component domain (e.g. irc.example.org) to its
	// shared secret. A domain must not be one of the server's hosts or
	// another module's service domain.
	Components map[string]string
	// Names are the names shown for the component domains in the
	// server's disco#items, by domain; a domain without one is listed
	// without a name.
	Names map[string]string

	// HandshakeTimeout bounds the time from connect to an accepted
	// handshake; a component that takes longer gets
	// <connection-timeout/>. 0 means DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// PingInterval is how long a connected component may send no stanza
	// before the server sends it an XEP-0199 ping from the first host.
	// Any stanza (the pong, an error, anything else) counts as an
	// answer; a component that sends nothing within PingTimeout more is
	// closed with <connection-timeout/>. Whitespace keepalives do not
	// count. 0 means DefaultPingInterval; negative means never (and no
	// idle limit).
	PingInterval time.Duration
	// PingTimeout: see PingInterval. 0 means DefaultPingTimeout.
	PingTimeout time.Duration
	// MaxQueue is the most bytes waiting to be written to one component.
	// A stanza that would exceed it is not queued: its sender gets
	// <resource-constraint type='wait'/>, and the stream stays up (the
	// component is behind, not gone; one that stops reading altogether
	// is closed by WriteTimeout). 0 means DefaultMaxQueue.
	MaxQueue int
	// WriteTimeout bounds each write to a component; one that does not
	// read for that long is disconnected (no stream error can be
	// written), and what was queued goes back to its senders as
	// <remote-server-timeout/>. 0 means DefaultWriteTimeout.
	WriteTimeout time.Duration
	// MaxStanzaSize is the largest element accepted from a component; a
	// larger one closes the stream with <policy-violation/>. 0 means the
	// server's MaxStanzaSize (256 KiB by default). The attribute limit
	// per start tag is the server's MaxAttributes once the component has
	// authenticated, at most 100 before.
	MaxStanzaSize int
	// Logger, if set, replaces the server's logger for this module.
	Logger *slog.Logger

	srv *treff.Server
	st  *state
}
