package treff

import (
	"crypto/tls"
	"time"
)

// Every test of this package exercises parking: sessions park as soon as
// the client has sent everything (see idleConn).
func init() { defaultParkAfter = -1 }

// SetParkAfter sets how long a session is quiet before its reader parks.
func SetParkAfter(s *Server, d time.Duration) { s.parkAfter = d }

// Parks returns how many times sessions have parked.
func Parks(s *Server) int64 { return s.parks.Load() }

// SetHandled sets a session's count of stanzas handled from its client
// (XEP-0198 'h'), to test the wrap at 2^32.
func SetHandled(s *Session, h uint32) { s.smIn.Store(h) }

// DirectTLSConfig returns the TLS configuration of direct TLS listeners.
func DirectTLSConfig(s *Server) *tls.Config { return s.tlsBase }
