package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/treff-im/treff/internal/dnstest"
	"github.com/treff-im/treff/proxyproto"
	"github.com/treff-im/treff/register"
	"github.com/treff-im/treff/trefftest"
)

// checkOutput is what a checker printed, one line per check.
type checkOutput []string

// has reports whether a line has the level and contains every part.
func (o checkOutput) has(level string, parts ...string) bool {
	for _, l := range o {
		if !strings.HasPrefix(l, level+" ") {
			continue
		}
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(l, p)
		}
		if ok {
			return true
		}
	}
	return false
}

func (o checkOutput) count(level string) int {
	n := 0
	for _, l := range o {
		if strings.HasPrefix(l, level+" ") {
			n++
		}
	}
	return n
}

func (o checkOutput) String() string { return strings.Join(o, "\n") }

// runChecks runs one check function of a checker for cfg asking zone's
// DNS server, and returns its lines.
func runChecks(t *testing.T, cfg Config, zone dnstest.Zone, roots *x509.CertPool, now time.Time, f func(*checker, context.Context)) (checkOutput, *checker) {
	t.Helper()
	dns, err := dnstest.Start("127.0.0.1:0", zone)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dns.Close() })
	var out strings.Builder
	c := &checker{cfg: cfg, res: dns.Resolver(), roots: roots, now: now, out: &out}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	f(c, ctx)
	text := strings.TrimRight(out.String(), "\n")
	if text == "" {
		return nil, c
	}
	return checkOutput(strings.Split(text, "\n")), c
}

func addrs(s ...string) []netip.Addr {
	var out []netip.Addr
	for _, a := range s {
		out = append(out, netip.MustParseAddr(a))
	}
	return out
}

func TestCheckDNS(t *testing.T) {
	cfg := Default()
	cfg.Domains = []string{"example.org", "broken.example.net", "chat.test"}
	cfg.C2S, cfg.C2STLS, cfg.S2S, cfg.S2STLS = "[::]:5222", "[::]:5223", "[::]:5269", ""
	cfg.HTTPS, cfg.HTTPURL = "[::]:443", ""
	cfg.Components = map[string]string{"irc.example.org": "secret", "gw.test": "secret"}
	zone := dnstest.Zone{
		Addrs: map[string][]netip.Addr{
			"xmpp.example.org":        addrs("192.0.2.10", "2001:db8::10"),
			"example.org":             addrs("192.0.2.10"),
			"conference.example.org":  addrs("192.0.2.10"),
			"broken.example.net":      addrs("10.0.0.5"),
			"gone.example.net":        nil, // no A record: NOERROR, no answer
			"pubsub.example.org.test": nil,
		},
		SRV: map[string][]net.SRV{
			"_xmpp-client._tcp.example.org":     {{Target: "xmpp.example.org", Port: 5222, Weight: 5}},
			"_xmpps-client._tcp.example.org":    {{Target: "xmpp.example.org", Port: 443, Weight: 5}},
			"_xmpp-server._tcp.example.org":     {{Target: "xmpp.example.org", Port: 5269, Weight: 5}},
			"_xmpp-server._tcp.irc.example.org": {{Target: "xmpp.example.org", Port: 5269}},
			// broken.example.net: a client record to a name without
			// addresses, a direct TLS record saying "not here".
			"_xmpp-client._tcp.broken.example.net":  {{Target: "gone.example.net", Port: 5222}},
			"_xmpps-client._tcp.broken.example.net": {{Target: ".", Port: 0}},
		},
	}
	out, c := runChecks(t, cfg, zone, nil, time.Now(), (*checker).checkDNS)
	for _, want := range []struct {
		level string
		parts []string
	}{
		{checkOK, []string{"SRV _xmpp-client._tcp.example.org -> xmpp.example.org:5222 (192.0.2.10 2001:db8::10)"}},
		{checkWarn, []string{"SRV _xmpps-client._tcp.example.org points to port 443, the listener is on 5223"}},
		{checkOK, []string{"SRV _xmpp-server._tcp.example.org -> xmpp.example.org:5269"}},
		// No SRV for the group chat service, but its address: found
		// on the default port.
		{checkOK, []string{"no SRV record _xmpp-server._tcp.conference.example.org: found at conference.example.org port 5269"}},
		// Neither for pubsub: a warning (local users do not need it).
		{checkWarn, []string{"pubsub.example.org has no A or AAAA record", "_xmpp-server._tcp.pubsub.example.org"}},
		{checkFail, []string{"gone.example.net has no A or AAAA record", "SRV _xmpp-client._tcp.broken.example.net points to it"}},
		{checkWarn, []string{"_xmpps-client._tcp.broken.example.net says the service is not offered"}},
		// s2s for broken.example.net: its own address, private.
		{checkWarn, []string{"broken.example.net has the address 10.0.0.5, which the internet cannot reach"}},
		{checkOK, []string{"no SRV record _xmpp-server._tcp.broken.example.net: found at broken.example.net port 5269 (10.0.0.5)"}},
		// An external component's domain.
		{checkOK, []string{"SRV _xmpp-server._tcp.irc.example.org -> xmpp.example.org:5269"}},
		// The https listener's public name (the first domain).
		{checkOK, []string{"example.org (https, upload) has addresses 192.0.2.10"}},
	} {
		if !out.has(want.level, want.parts...) {
			t.Errorf("no %s line with %q in:\n%s", want.level, want.parts, out)
		}
	}
	// chat.test and gw.test are not public: nothing looked up for them.
	for _, l := range out {
		if strings.Contains(l, ".test") {
			t.Errorf("chat.test checked: %s", l)
		}
	}
	if c.fails != out.count(checkFail) || c.warns != out.count(checkWarn) || c.fails != 1 {
		t.Errorf("fails %d, warns %d; want 1 failure and the counts of the lines:\n%s", c.fails, c.warns, out)
	}
}

func TestCheckDNSMissing(t *testing.T) {
	cfg := Default()
	cfg.Domains = []string{"example.org"}
	cfg.C2S, cfg.C2STLS, cfg.S2S, cfg.S2STLS, cfg.HTTPS = "[::]:5222", "[::]:5223", "[::]:5270", "[::]:5270", ""
	out, c := runChecks(t, cfg, dnstest.Zone{Addrs: map[string][]netip.Addr{"example.org": addrs("2001:db8::1")}}, nil, time.Now(), (*checker).checkDNS)
	for _, want := range []struct {
		level string
		parts []string
	}{
		{checkOK, []string{"no SRV record _xmpp-client._tcp.example.org: found at example.org port 5222 (2001:db8::1)"}},
		{checkWarn, []string{"no SRV record _xmpps-client._tcp.example.org", "_xmpps-client._tcp.example.org. 3600 IN SRV 0 5 5223 example.org."}},
		// Servers would try 5269, the listener is on 5270.
		{checkFail, []string{"no SRV record _xmpp-server._tcp.example.org, and the listener is on port 5270, not 5269", "IN SRV 0 5 5270 example.org."}},
		{checkWarn, []string{"no SRV record _xmpps-server._tcp.example.org"}},
	} {
		if !out.has(want.level, want.parts...) {
			t.Errorf("no %s line with %q in:\n%s", want.level, want.parts, out)
		}
	}
	if c.fails != 1 {
		t.Errorf("%d failures, want 1:\n%s", c.fails, out)
	}

	// No DNS server at all: the lookups fail, and say so.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := pc.LocalAddr().String()
	pc.Close()
	var sb strings.Builder
	c = &checker{cfg: cfg, res: resolverFor(dead), now: time.Now(), out: &sb}
	c.checkDNS(context.Background())
	if lines := checkOutput(strings.Split(sb.String(), "\n")); !lines.has(checkFail, "looking up SRV _xmpp-client._tcp.example.org", "-resolver") {
		t.Errorf("with no DNS server:\n%s", sb.String())
	}
}

// testCA makes a certificate authority and a certificate it signed for
// names, valid from now-1h until notAfter; the chain goes to dir as
// fullchain.pem (leaf and CA) and key.pem.
func testCA(t *testing.T, dir string, notAfter time.Time, names ...string) (pool *x509.CertPool, certFile, keyFile string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(5, 0, 0),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: names[0]},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter, DNSNames: names,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "fullchain.pem"), filepath.Join(dir, "privkey.pem")
	chain := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})...)
	if err := os.WriteFile(certFile, chain, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(ca)
	return pool, certFile, keyFile
}

// serveTLS serves cert on a loopback TLS listener until the test ends,
// completing handshakes; it returns the address.
func serveTLS(t *testing.T, certFile, keyFile string) string {
	return serveTLSProxied(t, certFile, keyFile, false)
}

// serveTLSProxied is serveTLS, behind a PROXY protocol listener if
// proxied (loopback is trusted: every connection must send a header).
func serveTLSProxied(t *testing.T, certFile, keyFile string, proxied bool) string {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	var l net.Listener
	l, err = net.Listen("tcp", trefftest.FreeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	if proxied {
		l = &proxyproto.Listener{Listener: l}
	}
	l = tls.NewListener(l, &tls.Config{Certificates: []tls.Certificate{cert}})
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	return l.Addr().String()
}

func TestCheckCertificate(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	roots, certFile, keyFile := testCA(t, dir, now.Add(60*24*time.Hour), "example.org", "conference.example.org")
	cfg := Default()
	cfg.Domains = []string{"example.org"}
	cfg.Data, cfg.Cert, cfg.Key = dir, certFile, keyFile
	cfg.C2STLS = serveTLS(t, certFile, keyFile)
	out, c := runChecks(t, cfg, dnstest.Zone{}, roots, now, (*checker).checkCertificate)
	for _, want := range []struct {
		level string
		parts []string
	}{
		{checkOK, []string{"certificate " + certFile + " valid until " + now.Add(60*24*time.Hour).UTC().Format(time.DateOnly)}},
		{checkOK, []string{"verifies with its chain"}},
		{checkOK, []string{"names example.org"}},
		{checkWarn, []string{"is not valid for pubsub.example.org"}},
		{checkOK, []string{"the running server presents it on c2s_tls"}},
	} {
		if !out.has(want.level, want.parts...) {
			t.Errorf("no %s line with %q in:\n%s", want.level, want.parts, out)
		}
	}
	if c.fails != 0 || c.warns != 1 {
		t.Errorf("fails %d, warns %d, want 0 and 1:\n%s", c.fails, c.warns, out)
	}

	// Ten days later the same certificate draws a warning, and after its
	// end a failure; with the system's roots it does not verify; the
	// running server still presents the old one after a renewal.
	out, _ = runChecks(t, cfg, dnstest.Zone{}, roots, now.Add(50*24*time.Hour), (*checker).checkCertificate)
	if !out.has(checkWarn, "expires in 9 days", "systemctl reload treff") && !out.has(checkWarn, "expires in 10 days") {
		t.Errorf("50 days later:\n%s", out)
	}
	out, _ = runChecks(t, cfg, dnstest.Zone{}, roots, now.Add(61*24*time.Hour), (*checker).checkCertificate)
	if !out.has(checkFail, "expired on") {
		t.Errorf("61 days later:\n%s", out)
	}
	out, _ = runChecks(t, cfg, dnstest.Zone{}, nil, now, (*checker).checkCertificate)
	if !out.has(checkFail, "does not verify", "fullchain.pem") {
		t.Errorf("with the system's roots:\n%s", out)
	}
	_, newCert, newKey := testCA(t, t.TempDir(), now.Add(90*24*time.Hour), "example.org")
	cfg.Cert, cfg.Key = newCert, newKey
	out, _ = runChecks(t, cfg, dnstest.Zone{}, nil, now, (*checker).checkCertificate)
	if !out.has(checkWarn, "presents another certificate than "+newCert, "SIGHUP") {
		t.Errorf("after a renewal without reload:\n%s", out)
	}
	// A certificate for other names fails.
	cfg.Domains = []string{"example.com"}
	out, _ = runChecks(t, cfg, dnstest.Zone{}, nil, now, (*checker).checkCertificate)
	if !out.has(checkFail, "is not valid for example.com") {
		t.Errorf("for another domain:\n%s", out)
	}
}

// Behind a load balancer, check sends the PROXY header a health check
// would (LOCAL) before its TLS handshake.
func TestCheckCertificateBehindProxy(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	roots, certFile, keyFile := testCA(t, dir, now.Add(60*24*time.Hour), "example.org")
	cfg := Default()
	cfg.Domains = []string{"example.org"}
	cfg.Data, cfg.Cert, cfg.Key = dir, certFile, keyFile
	cfg.ProxyProtocol = []string{"c2s_tls"}
	cfg.C2STLS = serveTLSProxied(t, certFile, keyFile, true)
	out, _ := runChecks(t, cfg, dnstest.Zone{}, roots, now, (*checker).checkCertificate)
	if !out.has(checkOK, "the running server presents it on c2s_tls") {
		t.Errorf("behind a PROXY protocol listener:\n%s", out)
	}
}

func TestCheckSelfSigned(t *testing.T) {
	dir := t.TempDir()
	cfg := Default()
	cfg.Data, cfg.C2STLS = dir, ""
	// None yet.
	out, c := runChecks(t, cfg, dnstest.Zone{}, nil, time.Now(), (*checker).checkCertificate)
	if !out.has(checkWarn, "no self-signed one yet") || c.warns != 1 {
		t.Errorf("before the first start:\n%s", out)
	}
	// The one the server makes: fine for localhost, a warning for a
	// public domain.
	cfg.Domains = []string{"example.org"}
	if _, err := loadCertificate(cfg, nil, discardLogger()); err != nil {
		t.Fatal(err)
	}
	out, _ = runChecks(t, cfg, dnstest.Zone{}, nil, time.Now(), (*checker).checkCertificate)
	if !out.has(checkWarn, "self-signed certificate "+filepath.Join(dir, "cert.pem")+" is self-signed", "not for a public server") {
		t.Errorf("self-signed on a public domain:\n%s", out)
	}
	cfg.Domains = []string{"localhost"}
	out, _ = runChecks(t, cfg, dnstest.Zone{}, nil, time.Now(), (*checker).checkCertificate)
	if !out.has(checkOK, "is self-signed") || !out.has(checkFail, "is not valid for localhost") {
		t.Errorf("self-signed for example.org, served as localhost:\n%s", out)
	}
}

func TestCheckSettings(t *testing.T) {
	cfg := Default()
	cfg.Domains = []string{"example.org"}
	cfg.Registration = register.Open
	cfg.S2SSelfSigned = true
	cfg.Archive, cfg.ArchiveRetention = true, 0
	out, c := runChecks(t, cfg, dnstest.Zone{}, nil, time.Now(), func(c *checker, _ context.Context) { c.checkSettings() })
	for _, want := range []struct {
		level string
		parts []string
	}{
		{checkWarn, []string{"no admins", "admins = you@example.org"}},
		{checkWarn, []string{"registration is open and contact_abuse is not set"}},
		{checkOK, []string{"registration open, at most 3/1h0m0s per address and 60/1h0m0s in all"}},
		{checkFail, []string{"s2s_self_signed = yes on a public domain"}},
		{checkWarn, []string{"archive is on and archive_retention is 0"}},
	} {
		if !out.has(want.level, want.parts...) {
			t.Errorf("no %s line with %q in:\n%s", want.level, want.parts, out)
		}
	}
	if c.fails != 1 || c.warns != 3 {
		t.Errorf("fails %d, warns %d, want 1 and 3:\n%s", c.fails, c.warns, out)
	}

	cfg.Admins = []string{"admin@example.org"}
	cfg.ContactAbuse = []string{"xmpp:abuse@example.org"}
	cfg.S2SSelfSigned, cfg.ArchiveRetention = false, 365*24*time.Hour
	out, c = runChecks(t, cfg, dnstest.Zone{}, nil, time.Now(), func(c *checker, _ context.Context) { c.checkSettings() })
	if c.fails != 0 || c.warns != 0 || !out.has(checkOK, "admins: admin@example.org") {
		t.Errorf("a good configuration:\n%s", out)
	}
}

func TestCheckListeners(t *testing.T) {
	l, err := net.Listen("tcp", trefftest.FreeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	closed := trefftest.FreeAddr(t) // nothing listens there
	cfg := Default()
	cfg.Domains = []string{"example.org"}
	cfg.C2S, cfg.C2STLS, cfg.S2S, cfg.HTTP, cfg.HTTPS = l.Addr().String(), closed, "", "", ""
	out, c := runChecks(t, cfg, dnstest.Zone{}, nil, time.Now(), (*checker).checkListeners)
	if !out.has(checkOK, "c2s "+l.Addr().String()+" accepts connections") ||
		!out.has(checkFail, "c2s_tls "+closed+": nothing accepts connections") ||
		!out.has(checkWarn, "c2s listens on "+l.Addr().String()+" only", "set c2s = [::]:") ||
		c.fails != 1 || c.warns != 2 {
		t.Errorf("fails %d, warns %d:\n%s", c.fails, c.warns, out)
	}
	// An unspecified address is reached on loopback.
	if got := dialAddr("[::]:5222"); got != "[::1]:5222" {
		t.Errorf("dialAddr([::]:5222) = %s", got)
	}
	if got := dialAddr(":5222"); got != "127.0.0.1:5222" {
		t.Errorf("dialAddr(:5222) = %s", got)
	}
}

// TestCheckCommand runs the whole command against a running admin
// socket, with the data folder of a server, a listener and a DNS server
// on loopback.
func TestCheckCommand(t *testing.T) {
	sock, _, _ := startAdmin(t)
	data := filepath.Dir(sock)
	os.Chmod(data, 0o700)
	l, err := net.Listen("tcp", trefftest.FreeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	dns, err := dnstest.Start("127.0.0.1:0", dnstest.Zone{
		Addrs: map[string][]netip.Addr{"example.org": addrs("192.0.2.1")},
		SRV:   map[string][]net.SRV{"_xmpp-client._tcp.example.org": {{Target: "example.org", Port: uint16(port)}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer dns.Close()
	args := []string{"check", "-data", data, "-domain", "example.org", "-c2s", l.Addr().String(), "-c2s-tls", "", "-s2s", "", "-http", "", "-https", "",
		"-admins", "admin@example.org", "-contact-abuse", "xmpp:abuse@example.org", "-resolver", dns.Addr()}
	var stdout, stderr strings.Builder
	code := run(context.Background(), args, strings.NewReader(""), &stdout, &stderr)
	out := checkOutput(strings.Split(strings.TrimSpace(stdout.String()), "\n"))
	if code != exitOK || !out.has(checkOK, "a server runs with this data folder") ||
		!out.has(checkOK, fmt.Sprintf("SRV _xmpp-client._tcp.example.org -> example.org:%d (192.0.2.1)", port)) ||
		!out.has(checkWarn, "c2s listens on") || !out.has(checkWarn, "no self-signed one yet") ||
		out[len(out)-1] != "0 failed, 2 warnings" {
		t.Errorf("exit %d, stderr %q:\n%s", code, stderr.String(), out)
	}
	if dns.Queries() == 0 {
		t.Error("-resolver: the DNS server was not asked")
	}

	// A wrong -resolver is a usage error; a failure is exit status 1.
	if code := run(context.Background(), []string{"check", "-data", data, "-resolver", "nowhere"}, strings.NewReader(""), &stdout, &stderr); code != exitUsage {
		t.Errorf("-resolver nowhere: exit %d, want %d", code, exitUsage)
	}
	stderr.Reset()
	if code := run(context.Background(), []string{"check", "-data", filepath.Join(data, "missing"), "-c2s-tls", "", "-s2s", "", "-http", "", "-https", ""}, strings.NewReader(""), &stdout, &stderr); code != exitError || !strings.Contains(stderr.String(), "check:") {
		t.Errorf("missing data folder: exit %d (%q), want %d", code, stderr.String(), exitError)
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
