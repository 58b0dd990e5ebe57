package treff

import (
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff/internal/xmlscan"
)

// discardConn is a net.Conn that swallows writes and counts them.
type discardConn struct {
	net.Conn
	n atomic.Int64
}

func (c *discardConn) Write(p []byte) (int, error)      { c.n.Add(int64(len(p))); return len(p), nil }
func (c *discardConn) SetWriteDeadline(time.Time) error { return nil }
func (c *discardConn) SetReadDeadline(time.Time) error  { return nil }
func (c *discardConn) Close() error                     { return nil }

func benchSession(srv *Server, full string) (*Session, *discardConn) {
	dc := &discardConn{}
	c := srv.newConn(dc, false)
	c.rw = dc
	s := newSession(c, jid.MustParse(full))
	s.available.Store(true)
	srv.table.Add(s)
	return s, dc
}

// BenchmarkRouteMessage measures the server's path for one chat message
// from one client session to another: scanning the element, stamping
// 'from', routing by RFC 6121 rules and queueing it for the recipient's
// writer (which writes to a discarding connection). TLS and the kernel are
// left out; the load tool measures those.
func BenchmarkRouteMessage(b *testing.B) {
	for _, to := range []string{"bob@localhost", "bob@localhost/phone"} {
		b.Run(strings.ReplaceAll(to, "/", "_"), func(b *testing.B) {
			srv := &Server{Hosts: []Host{{Domain: "localhost"}}}
			if err := srv.init(); err != nil {
				b.Fatal(err)
			}
			alice, _ := benchSession(srv, "alice@localhost/laptop")
			bob, out := benchSession(srv, "bob@localhost/phone")
			msg := "<message to='" + to + "' type='chat' id='abc123'><body>Hello Bob, how are you doing today?</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>"
			const batch = 1000
			in := strings.NewReader("")
			sc := xmlscan.NewScanner(in, 0)
			stream := strings.Repeat(msg, batch)
			b.ReportAllocs()
			b.SetBytes(int64(len(msg)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if i%batch == 0 {
					b.StopTimer()
					in.Reset(header + stream)
					sc.Reset(in)
					if _, err := sc.Header(); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
				}
				el, err := sc.Next()
				if err != nil {
					b.Fatal(err)
				}
				alice.handle(el)
			}
			bob.waitWritten()
			b.StopTimer()
			if out.n.Load() == 0 {
				b.Fatal("nothing delivered")
			}
		})
	}
}

const header = "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>"
