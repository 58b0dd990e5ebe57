// Package dnstest is a small DNS server for tests: it answers A, AAAA and
// SRV questions (RFC 1035, RFC 2782) over UDP from a fixed zone, so that
// code using a net.Resolver can be tested on loopback without the
// internet.
package dnstest

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"

	"golang.org/x/net/dns/dnsmessage"
)

// Zone is what the server knows. Names are without the trailing dot and
// compared without regard to case.
type Zone struct {
	// Addrs are the A (IPv4) and AAAA (IPv6) records by name.
	Addrs map[string][]netip.Addr
	// SRV are the SRV records by owner name, e.g.
	// "_xmpp-client._tcp.example.org". A Target of "." says the service
	// is not offered there (RFC 2782).
	SRV map[string][]net.SRV
}

// Server answers questions about its Zone on a UDP address. A name that
// has no record of any type gets NXDOMAIN; a name with records of other
// types only gets an empty answer.
type Server struct {
	pc   net.PacketConn
	zone Zone
	wg   sync.WaitGroup

	mu      sync.Mutex
	queries int
}

// Start serves z on a UDP address (host:port; port 0 picks one) until
// Close.
func Start(addr string, z Zone) (*Server, error) {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, err
	}
	s := &Server{pc: pc, zone: z}
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

// Addr is the server's UDP address.
func (s *Server) Addr() string { return s.pc.LocalAddr().String() }

// Queries is how many questions the server has answered.
func (s *Server) Queries() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queries
}

// Close stops the server and waits for its goroutine.
func (s *Server) Close() error {
	err := s.pc.Close()
	s.wg.Wait()
	return err
}

// Resolver returns a resolver that asks this server only.
func (s *Server) Resolver() *net.Resolver {
	return ResolverFor(s.Addr())
}

// ResolverFor returns a pure-Go resolver that sends every question to the
// DNS server at addr (host:port), whatever /etc/resolv.conf says.
func ResolverFor(addr string) *net.Resolver {
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}
}

func (s *Server) serve() {
	defer s.wg.Done()
	buf := make([]byte, 1500)
	for {
		n, from, err := s.pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		resp, ok := s.answer(buf[:n])
		if !ok {
			continue
		}
		s.mu.Lock()
		s.queries++
		s.mu.Unlock()
		s.pc.WriteTo(resp, from)
	}
}

// answer builds the response to the query in msg; ok is false for
// something that is not a query with one question.
func (s *Server) answer(msg []byte) (resp []byte, ok bool) {
	var p dnsmessage.Parser
	h, err := p.Start(msg)
	if err != nil || h.Response {
		return nil, false
	}
	q, err := p.Question()
	if err != nil {
		return nil, false
	}
	name := strings.ToLower(strings.TrimSuffix(q.Name.String(), "."))
	addrs, hasAddrs := s.zone.Addrs[name]
	srvs, hasSRV := s.zone.SRV[name]
	rh := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired, RecursionAvailable: true}
	if !hasAddrs && !hasSRV {
		rh.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, rh)
	b.EnableCompression()
	if b.StartQuestions() != nil || b.Question(q) != nil || b.StartAnswers() != nil {
		return nil, false
	}
	rrh := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 60}
	switch q.Type {
	case dnsmessage.TypeA:
		for _, a := range addrs {
			if a.Is4() {
				if b.AResource(rrh, dnsmessage.AResource{A: a.As4()}) != nil {
					return nil, false
				}
			}
		}
	case dnsmessage.TypeAAAA:
		for _, a := range addrs {
			if a.Is6() && !a.Is4In6() {
				if b.AAAAResource(rrh, dnsmessage.AAAAResource{AAAA: a.As16()}) != nil {
					return nil, false
				}
			}
		}
	case dnsmessage.TypeSRV:
		for _, r := range srvs {
			target, err := dnsmessage.NewName(strings.TrimSuffix(r.Target, ".") + ".")
			if err != nil {
				return nil, false
			}
			if b.SRVResource(rrh, dnsmessage.SRVResource{Priority: r.Priority, Weight: r.Weight, Port: r.Port, Target: target}) != nil {
				return nil, false
			}
		}
	}
	resp, err = b.Finish()
	return resp, err == nil
}
