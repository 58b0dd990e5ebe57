// Command goxmpp logs in to an XMPP server with github.com/xmppo/go-xmpp,
// an XMPP client library written independently of Treff that does
// SCRAM-*-PLUS with tls-exporter and tls-server-end-point, reads XEP-0440
// and checks XEP-0474. The end-to-end tests (../channelbinding_test.go)
// build and run it; it lives in its own module so that the library's
// go.mod does not depend on it.
//
// It prints one JSON line: {"jid": ...} after a login, or {"error": ...},
// and exits 0 either way (the tests judge the outcome). With -debug its
// XML goes to stderr, where the tests read the <auth/> it sent.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/xmppo/go-xmpp"
)

func main() {
	var (
		addr     = flag.String("addr", "", "server `address` (IP:port)")
		jid      = flag.String("jid", "", "account `JID`")
		password = flag.String("password", "", "account password")
		caFile   = flag.String("ca", "", "PEM `file` of the certificate to trust")
		starttls = flag.Bool("starttls", false, "STARTTLS instead of direct TLS")
		tls12    = flag.Bool("tls12", false, "TLS 1.2 at most")
		ssdp     = flag.Bool("ssdp", false, "check XEP-0474's downgrade-protection hash")
		mech     = flag.String("mech", "", "force this SASL `mechanism`")
	)
	flag.Parse()
	pem, err := os.ReadFile(*caFile)
	if err != nil {
		fail(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		fail(fmt.Errorf("no certificate in %s", *caFile))
	}
	cfg := &tls.Config{RootCAs: roots, ServerName: "localhost", MinVersion: tls.VersionTLS12}
	if *tls12 {
		cfg.MaxVersion = tls.VersionTLS12
	}
	o := xmpp.Options{
		Host:        *addr,
		User:        *jid,
		Password:    *password,
		TLSConfig:   cfg,
		NoTLS:       *starttls,
		StartTLS:    *starttls,
		SSDP:        *ssdp,
		Mechanism:   *mech,
		NoPLAIN:     true,
		Session:     false,
		DialTimeout: 10 * time.Second,
		Debug:       true,
		DebugWriter: os.Stderr,
	}
	c, err := o.NewClient()
	if err != nil {
		fail(err)
	}
	out(map[string]string{"jid": c.JID()})
	c.Close()
}

func fail(err error) {
	out(map[string]string{"error": err.Error()})
	os.Exit(0)
}

func out(v any) {
	b, _ := json.Marshal(v)
	fmt.Println(string(b))
}
