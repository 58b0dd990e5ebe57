// Command relay is the baseline of bench/compare.sh: a plain TLS relay that
// stands for the physical limit of the machine. It accepts direct-TLS
// connections, pairs them in the order they arrive, and copies bytes both
// ways between the two of a pair, without looking at them. treff-load
// -relay drives it with the same clients and stanzas as an XMPP server.
package main

import (
	"crypto/tls"
	"flag"
	"io"
	"log"
	"net"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:15299", "listen `address` (loopback only)")
	cert := flag.String("cert", "cert.pem", "certificate `file` (PEM)")
	key := flag.String("key", "key.pem", "private key `file` (PEM)")
	flag.Parse()
	kp, err := tls.LoadX509KeyPair(*cert, *key)
	if err != nil {
		log.Fatal(err)
	}
	l, err := tls.Listen("tcp", *addr, &tls.Config{Certificates: []tls.Certificate{kp}})
	if err != nil {
		log.Fatal(err)
	}
	// Connections are paired in the order their handshakes complete.
	ready := make(chan *tls.Conn)
	go func() {
		for {
			a, b := <-ready, <-ready
			go pipe(a, b)
			go pipe(b, a)
		}
	}()
	for {
		c, err := l.Accept()
		if err != nil {
			log.Fatal(err)
		}
		go func() {
			tc := c.(*tls.Conn)
			if err := tc.Handshake(); err != nil {
				tc.Close()
				return
			}
			ready <- tc
		}()
	}
}

// pipe copies src to dst until either side ends, then closes both.
func pipe(dst, src net.Conn) {
	io.Copy(dst, src)
	dst.Close()
	src.Close()
}
