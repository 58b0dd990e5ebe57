package treff

import "sync/atomic"

// Stats is a snapshot of a server's counters, for monitoring (a
// Prometheus endpoint, a status page). Counters only grow while the server
// runs; Sessions is a gauge. Taking a snapshot costs a few atomic loads;
// the server's own cost is one atomic add where it already does the work
// (a stanza read, a stanza queued, a delivery decision). No counter is
// per user or per address.
type Stats struct {
	// Sessions are the client sessions bound now (including those
	// waiting to be resumed, XEP-0198), by the transport that bound them.
	Sessions ByTransport
	// SessionsBound counts the sessions bound since the server started.
	SessionsBound ByTransport
	// StanzasIn counts the stanzas read from clients' bound sessions.
	StanzasIn ByKind
	// StanzasOut counts the stanzas queued for clients' sessions
	// (deliveries, replies, broadcasts).
	StanzasOut ByKind
	// Delivered counts stanzas for local accounts queued to at least one
	// of the account's sessions.
	Delivered uint64
	// Offline counts stanzas for local accounts with no session to take
	// them that a module took instead (offline storage, through an
	// undeliverable hook).
	Offline uint64
	// Bounced counts stanzas the server could not deliver and answered
	// with a stanza error (or dropped, for an error stanza).
	Bounced uint64
	// QueueDrops counts sessions closed because their outbound queue
	// exceeded Server.MaxQueue (slow readers), or, with stream
	// management, their unacknowledged stanzas did.
	QueueDrops uint64
}

// ByTransport splits a count of client sessions by transport.
type ByTransport struct {
	// TCP is port 5222 with STARTTLS (Serve).
	TCP int64
	// TLS is direct TLS, XEP-0368 (ServeTLS).
	TLS int64
	// WebSocket (RFC 7395) and BOSH (XEP-0124, XEP-0206) are streams
	// from ServeConn whose connection says so (see ServeConn).
	WebSocket, BOSH int64
	// Other are streams from ServeConn that do not name their transport.
	Other int64
}

// ByKind splits a count of stanzas by kind.
type ByKind struct {
	// Message, Presence and IQ count <message/>, <presence/> and <iq/>
	// stanzas.
	Message, Presence, IQ uint64
}

// Transport names the transport the session's stream came over: "tcp"
// (STARTTLS, Serve), "tls" (direct TLS, ServeTLS), "websocket", "bosh",
// or "other" (ServeConn with a connection that does not say), as
// counted in Stats. A client sent elsewhere needs to know: RFC 6120's
// see-other-host names a TCP address, RFC 7395's see-other-uri a URL.
// A session resumed over another transport reports the one it first
// bound on.
func (s *Session) Transport() string {
	switch s.transport {
	case transportTCP:
		return "tcp"
	case transportTLS:
		return "tls"
	case transportWebSocket:
		return "websocket"
	case transportBOSH:
		return "bosh"
	}
	return "other"
}

// Transports, as counted in serverStats.
const (
	transportNone int8 = iota - 1
	transportTCP
	transportTLS
	transportWebSocket
	transportBOSH
	transportOther
	numTransports
)

// Kinds of stanza, as counted in serverStats.
const (
	kindMessage = iota
	kindPresence
	kindIQ
	numKinds
)

// serverStats holds the counters behind Stats. The padding keeps the
// counters, written on every stanza, off the cache lines of the Server's
// read-mostly fields around them.
type serverStats struct {
	_             [64]byte
	sessions      [numTransports]atomic.Int64
	sessionsBound [numTransports]atomic.Int64
	in, out       [numKinds]atomic.Uint64
	delivered     atomic.Uint64
	offline       atomic.Uint64
	bounced       atomic.Uint64
	queueDrops    atomic.Uint64
	_             [64]byte
}

// Stats returns a snapshot of the server's counters. It is safe to call
// at any time, from any goroutine.
func (srv *Server) Stats() Stats {
	st := &srv.stats
	load := func(a *[numTransports]atomic.Int64) ByTransport {
		return ByTransport{
			TCP:       a[transportTCP].Load(),
			TLS:       a[transportTLS].Load(),
			WebSocket: a[transportWebSocket].Load(),
			BOSH:      a[transportBOSH].Load(),
			Other:     a[transportOther].Load(),
		}
	}
	kinds := func(a *[numKinds]atomic.Uint64) ByKind {
		return ByKind{Message: a[kindMessage].Load(), Presence: a[kindPresence].Load(), IQ: a[kindIQ].Load()}
	}
	return Stats{
		Sessions:      load(&st.sessions),
		SessionsBound: load(&st.sessionsBound),
		StanzasIn:     kinds(&st.in),
		StanzasOut:    kinds(&st.out),
		Delivered:     st.delivered.Load(),
		Offline:       st.offline.Load(),
		Bounced:       st.bounced.Load(),
		QueueDrops:    st.queueDrops.Load(),
	}
}

// transportOf is the transport a connection counts under.
func transportOf(c *conn) int8 {
	switch {
	case c.directTLS:
		return transportTLS
	case !c.preSecure:
		return transportTCP
	}
	if t, ok := c.nc.(interface{ Transport() string }); ok {
		switch t.Transport() {
		case "websocket":
			return transportWebSocket
		case "bosh":
			return transportBOSH
		}
	}
	return transportOther
}

// countOut counts a stanza queued for a client by its first bytes
// ("<message", "<presence", "<iq"); nonzas are not counted.
func (st *serverStats) countOut(raw []byte) {
	if len(raw) < 2 || raw[0] != '<' {
		return
	}
	switch raw[1] {
	case 'm':
		st.out[kindMessage].Add(1)
	case 'p':
		st.out[kindPresence].Add(1)
	case 'i':
		st.out[kindIQ].Add(1)
	}
}

// countIn counts a stanza read from a client.
func (st *serverStats) countIn(k Kind) {
	switch k {
	case KindMessage:
		st.in[kindMessage].Add(1)
	case KindPresence:
		st.in[kindPresence].Add(1)
	case KindIQ:
		st.in[kindIQ].Add(1)
	}
}
