package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/treff-im/treff/proxyproto"
	"github.com/treff-im/treff/register"
)

// The check command looks at a server's setup from the operator's side:
// DNS records, certificates, listeners and settings. It prints one line
// per check, "OK", "WARN" or "FAIL", with a hint for what is not OK, and
// fails when a check does.

// checkResolver is what the DNS checks ask; *net.Resolver is one.
type checkResolver interface {
	LookupSRV(ctx context.Context, service, proto, name string) (string, []*net.SRV, error)
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
}

// Check levels.
const (
	checkOK   = "OK"
	checkWarn = "WARN"
	checkFail = "FAIL"
)

// certWarnDays is how close to its expiry a certificate draws a warning.
const certWarnDays = 14

// checkTimeout bounds one DNS lookup or connection attempt.
const checkTimeout = 5 * time.Second

// checker runs the checks of one configuration.
type checker struct {
	cfg   Config
	res   checkResolver
	roots *x509.CertPool // nil: the system's
	now   time.Time
	out   io.Writer

	fails, warns int
}

// report prints one check's line: level, what, and for WARN and FAIL a
// hint (if any).
func (c *checker) report(level, what, hint string) {
	switch level {
	case checkFail:
		c.fails++
	case checkWarn:
		c.warns++
	}
	line := fmt.Sprintf("%-4s  %s", level, what)
	if hint != "" && level != checkOK {
		line += " -- " + hint
	}
	fmt.Fprintln(c.out, line)
}

// cmdCheck runs the checks for the configuration and exits non-zero if
// one fails.
func cmdCheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newFlags("community check", stderr)
	var resolverAddr string
	f.fs.StringVar(&resolverAddr, "resolver", "", "ask this DNS server (`host:port`) instead of the system's resolver, e.g. 1.1.1.1:53 to see what the internet sees")
	f.usage("Usage: community check [flags]\n\nChecks DNS records, certificates, listeners and settings, one line per check\n(OK, WARN or FAIL, with a hint); exit status 1 if a check fails.\n\nFlags (and every server flag, as the server would be started with):\n")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usageErrorf("check takes no arguments")
	}
	cfg, err := f.config()
	if err != nil {
		return err
	}
	var res checkResolver = net.DefaultResolver
	if resolverAddr != "" {
		if _, _, err := net.SplitHostPort(resolverAddr); err != nil {
			return usageErrorf("-resolver %q: want host:port", resolverAddr)
		}
		res = resolverFor(resolverAddr)
	}
	c := &checker{cfg: cfg, res: res, now: time.Now(), out: stdout}
	c.run(ctx)
	fmt.Fprintf(stdout, "%d failed, %d warnings\n", c.fails, c.warns)
	if c.fails > 0 {
		return fmt.Errorf("check: %d of the checks failed", c.fails)
	}
	return nil
}

// resolverFor returns a resolver that asks the DNS server at addr only.
func resolverFor(addr string) *net.Resolver {
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}
}

// run runs every check.
func (c *checker) run(ctx context.Context) {
	c.checkData()
	c.checkSettings()
	c.checkListeners(ctx)
	c.checkCertificate(ctx)
	c.checkDNS(ctx)
}

// publicDomain reports whether d looks like a domain of the internet: not
// a single label, an IP address or a name of the special-use top-level
// domains (RFC 2606, RFC 6761, RFC 6762, RFC 8375).
func publicDomain(d string) bool {
	if net.ParseIP(d) != nil || !strings.Contains(d, ".") {
		return false
	}
	for _, tld := range []string{".localhost", ".test", ".example", ".invalid", ".local", ".internal", ".lan", ".home.arpa"} {
		if strings.HasSuffix(d, tld) {
			return false
		}
	}
	return true
}

// public reports whether any served domain looks public.
func (c *checker) public() bool {
	return slices.ContainsFunc(c.cfg.Domains, publicDomain)
}

// federation reports whether server-to-server listeners are configured.
func (c *checker) federation() bool { return c.cfg.S2S != "" || c.cfg.S2STLS != "" }

// services returns the service domains of d (group chat, pubsub,
// upload) as this configuration runs them.
func (c *checker) services(d string) []string {
	var out []string
	if c.cfg.MUC {
		out = append(out, "conference."+d)
	}
	if c.cfg.PubSub {
		out = append(out, "pubsub."+d)
	}
	if c.cfg.Upload && c.cfg.HTTPS != "" {
		out = append(out, "upload."+d)
	}
	return out
}

// checkData checks the data folder.
func (c *checker) checkData() {
	fi, err := os.Stat(c.cfg.Data)
	switch {
	case errors.Is(err, os.ErrNotExist):
		c.report(checkFail, fmt.Sprintf("data folder %s does not exist", c.cfg.Data), "give the server's folder with -data or -config (the server creates it at its first start)")
		return
	case err != nil:
		c.report(checkFail, fmt.Sprintf("data folder %s: %v", c.cfg.Data, err), "")
		return
	case !fi.IsDir():
		c.report(checkFail, fmt.Sprintf("data folder %s is not a folder", c.cfg.Data), "")
		return
	case fi.Mode().Perm()&0o077 != 0:
		c.report(checkWarn, fmt.Sprintf("data folder %s is accessible to other users (%v)", c.cfg.Data, fi.Mode().Perm()), "chmod 700 "+c.cfg.Data)
	default:
		c.report(checkOK, fmt.Sprintf("data folder %s", c.cfg.Data), "")
	}
	resp, err := callAdmin(filepath.Join(c.cfg.Data, adminSocket), adminRequest{Cmd: "registration"})
	switch {
	case errors.Is(err, errNoServer):
		c.report(checkFail, "no server answers on "+filepath.Join(c.cfg.Data, adminSocket), "start it (systemctl start treff); the listener checks below fail too")
	case err != nil:
		c.report(checkFail, "the server's admin socket: "+err.Error(), "")
	case resp.Policy != "":
		c.report(checkOK, fmt.Sprintf("a server runs with this data folder (registration %s)", resp.Policy), "")
	default:
		c.report(checkOK, "a server runs with this data folder", "")
	}
}

// checkSettings warns about settings unfit for a public server.
func (c *checker) checkSettings() {
	cfg := c.cfg
	public := c.public()
	if !public {
		c.report(checkWarn, fmt.Sprintf("domain %s: none is a public domain, so DNS is not checked", strings.Join(cfg.Domains, ", ")),
			"set domain (e.g. -domain example.org) for a server others can reach")
	}
	if len(cfg.Admins) == 0 {
		c.report(checkWarn, "no admins", "set admins = you@"+cfg.Domains[0]+": admins get spam reports and registration notices and run the XEP-0133 commands")
	} else {
		c.report(checkOK, "admins: "+strings.Join(cfg.Admins, ", "), "")
	}
	switch {
	case cfg.Registration == register.Open && len(cfg.ContactAbuse) == 0:
		c.report(checkWarn, "registration is open and contact_abuse is not set", "other servers look for an abuse address before they trust an open server (JabberSPAM); set contact_abuse = xmpp:abuse@"+cfg.Domains[0]+" or mailto:...")
	case len(cfg.ContactAbuse) == 0 && public:
		c.report(checkWarn, "contact_abuse is not set", "set contact_abuse (XEP-0157) so that others can report abuse from your server")
	}
	if cfg.Registration == register.Open {
		c.report(checkOK, fmt.Sprintf("registration open, at most %s per address and %s in all", limitString(cfg.RegistrationPerAddress), limitString(cfg.RegistrationGlobal)), "")
	}
	if cfg.S2SSelfSigned && public {
		c.report(checkFail, "s2s_self_signed = yes on a public domain", "anyone can pretend to be any server to yours; set s2s_self_signed = no (it is for test setups)")
	}
	if cfg.Archive && cfg.ArchiveRetention == 0 {
		c.report(checkWarn, "archive is on and archive_retention is 0: messages are kept forever", "set archive_retention (e.g. 365d): keep no more than the users need")
	}
	if len(cfg.Components) > 0 && cfg.ComponentListen != "" && !isLoopback(cfg.ComponentListen) {
		c.report(checkWarn, "component_listen "+cfg.ComponentListen+" is not on loopback", "components authenticate over an unencrypted stream: keep it on loopback or a private network")
	}
	if cfg.DebugAddr != "" && !isLoopback(cfg.DebugAddr) {
		c.report(checkWarn, "debug_addr "+cfg.DebugAddr+" is not on loopback", "the profiling endpoints show the server's memory: keep them on loopback")
	}
}

func limitString(l register.Limit) string {
	return fmt.Sprintf("%d/%s", l.N, l.Period)
}

// listenerSpec is one configured listener.
type listenerSpec struct {
	name, addr string
	public     bool // clients or other servers connect to it from outside
}

// listeners returns the listeners the server would open.
func (c *checker) listeners() []listenerSpec {
	cfg := c.cfg
	all := []listenerSpec{
		{"c2s", cfg.C2S, true}, {"c2s_tls", cfg.C2STLS, true},
		{"s2s", cfg.S2S, true}, {"s2s_tls", cfg.S2STLS, true},
		{"http", cfg.HTTP, false}, {"https", cfg.HTTPS, cfg.HTTPURL == ""},
		{"debug_addr", cfg.DebugAddr, false},
	}
	if len(cfg.Components) > 0 {
		all = append(all, listenerSpec{"component_listen", cfg.ComponentListen, false})
	}
	var out []listenerSpec
	for _, l := range all {
		if l.addr != "" {
			out = append(out, l)
		}
	}
	return out
}

// dialAddr is where to connect to reach a listener on addr: the
// unspecified addresses are reached on loopback.
func dialAddr(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return net.JoinHostPort(host, port)
}

// checkListeners connects to each configured listener and warns about
// loopback listeners on a public server.
func (c *checker) checkListeners(ctx context.Context) {
	public := c.public()
	for _, l := range c.listeners() {
		if public && l.public && isLoopback(l.addr) {
			_, port, _ := net.SplitHostPort(l.addr)
			c.report(checkWarn, fmt.Sprintf("%s listens on %s only: nobody outside this machine can connect", l.name, l.addr),
				fmt.Sprintf("set %s = [::]:%s (all addresses) or this machine's public address", l.name, port))
		}
		d := net.Dialer{Timeout: checkTimeout}
		conn, err := d.DialContext(ctx, "tcp", dialAddr(l.addr))
		if err != nil {
			c.report(checkFail, fmt.Sprintf("%s %s: nothing accepts connections (%v)", l.name, l.addr, errors.Unwrap(err)),
				"is the server running with this configuration? (journalctl -u treff)")
			continue
		}
		conn.Close()
		c.report(checkOK, fmt.Sprintf("%s %s accepts connections", l.name, l.addr), "")
	}
}

// checkCertificate checks the certificate's names, expiry and chain, and
// whether the running server serves it.
func (c *checker) checkCertificate(ctx context.Context) {
	cfg := c.cfg
	var cert tls.Certificate
	var err error
	what := ""
	switch {
	case cfg.ACME:
		dir := filepath.Join(cfg.Data, acmeDir)
		file := filepath.Join(dir, acmeCertFile)
		what = "ACME certificate " + file
		if _, serr := os.Stat(file); errors.Is(serr, os.ErrNotExist) {
			c.report(checkWarn, "acme is on but no certificate was obtained yet", "the server asks the CA at start; watch its log for the order (the CA must reach the https listener on port 443, or the http one on 80)")
			return
		}
		cert, err = tls.LoadX509KeyPair(file, filepath.Join(dir, acmeKeyFile))
	case cfg.Cert != "":
		what = "certificate " + cfg.Cert
		cert, err = tls.LoadX509KeyPair(cfg.Cert, cfg.Key)
	default:
		file := filepath.Join(cfg.Data, "cert.pem")
		what = "self-signed certificate " + file
		if _, serr := os.Stat(file); errors.Is(serr, os.ErrNotExist) {
			c.report(checkWarn, "no certificate configured and no self-signed one yet", "the server makes a self-signed one at its first start; a public server needs cert and key (Let's Encrypt), see docs/deploy.md")
			return
		}
		cert, err = tls.LoadX509KeyPair(file, filepath.Join(cfg.Data, "key.pem"))
	}
	if err != nil {
		c.report(checkFail, what+": "+err.Error(), "check the cert and key files (PEM, the key matching the first certificate, readable by the server)")
		return
	}
	leaf := cert.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			c.report(checkFail, what+": "+err.Error(), "")
			return
		}
	}
	selfSigned := bytes.Equal(leaf.RawIssuer, leaf.RawSubject) && leaf.CheckSignatureFrom(leaf) == nil
	switch left := leaf.NotAfter.Sub(c.now); {
	case left <= 0:
		c.report(checkFail, fmt.Sprintf("%s expired on %s", what, leaf.NotAfter.UTC().Format(time.DateOnly)), "renew it (certbot renew, or -acme yes) and reload the server (systemctl reload treff)")
	case left < certWarnDays*24*time.Hour:
		c.report(checkWarn, fmt.Sprintf("%s expires in %d days (%s)", what, int(left.Hours()/24), leaf.NotAfter.UTC().Format(time.DateOnly)), "renew it now and reload the server (systemctl reload treff); is automatic renewal running?")
	default:
		c.report(checkOK, fmt.Sprintf("%s valid until %s", what, leaf.NotAfter.UTC().Format(time.DateOnly)), "")
	}
	if selfSigned {
		level := checkOK
		if c.public() {
			level = checkWarn
		}
		c.report(level, what+" is self-signed", "clients and other servers refuse it: not for a public server; get one from Let's Encrypt (see docs/deploy.md)")
	} else {
		inter := x509.NewCertPool()
		for _, der := range cert.Certificate[1:] {
			if ic, err := x509.ParseCertificate(der); err == nil {
				inter.AddCert(ic)
			}
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: c.roots, Intermediates: inter, CurrentTime: c.now}); err != nil {
			c.report(checkFail, fmt.Sprintf("%s does not verify: %v", what, err), "clients will refuse it; give the full chain (fullchain.pem, not cert.pem)")
		} else {
			c.report(checkOK, what+" verifies with its chain", "")
		}
	}
	for _, d := range c.cfg.Domains {
		if err := leaf.VerifyHostname(d); err != nil {
			c.report(checkFail, fmt.Sprintf("%s is not valid for %s", what, d), "clients refuse it for this domain; get one that names it")
		} else {
			c.report(checkOK, fmt.Sprintf("%s names %s", what, d), "")
		}
		if !c.federation() {
			continue
		}
		for _, s := range c.services(d) {
			if strings.HasPrefix(s, "upload.") {
				continue // reached over https, at the https listener's address
			}
			if err := leaf.VerifyHostname(s); err != nil {
				c.report(checkWarn, fmt.Sprintf("%s is not valid for %s", what, s), "other servers' users cannot use this service unless the certificate names it (add it to the certificate)")
			}
		}
	}
	c.checkServedCertificate(ctx, what, cert.Certificate[0])
}

// checkServedCertificate compares the certificate the running server
// presents on its direct TLS listener with the one on disk.
func (c *checker) checkServedCertificate(ctx context.Context, what string, der []byte) {
	addr := c.cfg.C2STLS
	if addr == "" {
		return
	}
	d := net.Dialer{Timeout: checkTimeout}
	nc, err := d.DialContext(ctx, "tcp", dialAddr(addr))
	if err != nil {
		return // the listener check says so
	}
	defer nc.Close()
	if c.cfg.proxied("c2s_tls") {
		// A listener behind a load balancer wants a PROXY header from
		// loopback too: LOCAL, as the balancer's own health checks send.
		nc.SetDeadline(time.Now().Add(checkTimeout))
		if _, err := nc.Write(proxyproto.Header{Command: proxyproto.Local}.Append(nil, 2)); err != nil {
			return
		}
	}
	conn := tls.Client(nc, &tls.Config{
		ServerName:         c.cfg.Domains[0],
		InsecureSkipVerify: true, // compared below, not verified
	})
	hctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	if err := conn.HandshakeContext(hctx); err != nil {
		return // the listener check says so
	}
	peer := conn.ConnectionState().PeerCertificates
	if len(peer) == 0 || !bytes.Equal(peer[0].Raw, der) {
		c.report(checkWarn, "the running server presents another certificate than "+strings.TrimPrefix(strings.TrimPrefix(what, "self-signed "), "certificate "),
			"reload it after a renewal: systemctl reload treff (SIGHUP)")
		return
	}
	c.report(checkOK, "the running server presents it on c2s_tls", "")
}

// checkDNS checks the SRV and address records of each public domain and
// its services.
func (c *checker) checkDNS(ctx context.Context) {
	cfg := c.cfg
	port := func(addr string) int {
		_, p, _ := net.SplitHostPort(addr)
		n, _ := strconv.Atoi(p)
		return n
	}
	for _, d := range cfg.Domains {
		if !publicDomain(d) {
			continue
		}
		if cfg.C2S != "" {
			c.checkSRV(ctx, "xmpp-client", d, port(cfg.C2S), 5222, checkFail)
		}
		if cfg.C2STLS != "" {
			c.checkSRV(ctx, "xmpps-client", d, port(cfg.C2STLS), 0, checkWarn)
		}
		if cfg.S2S != "" {
			c.checkSRV(ctx, "xmpp-server", d, port(cfg.S2S), 5269, checkFail)
		}
		if cfg.S2STLS != "" {
			c.checkSRV(ctx, "xmpps-server", d, port(cfg.S2STLS), 0, checkWarn)
		}
		if c.federation() {
			s2sPort := port(cfg.S2S)
			if cfg.S2S == "" {
				s2sPort = 0
			}
			for _, s := range c.services(d) {
				if strings.HasPrefix(s, "upload.") {
					continue
				}
				c.checkSRV(ctx, "xmpp-server", s, s2sPort, 5269, checkWarn)
			}
		}
	}
	if c.federation() {
		// External components' domains are reached through this server.
		var comps []string
		for d := range cfg.Components {
			if publicDomain(d) {
				comps = append(comps, d)
			}
		}
		slices.Sort(comps)
		for _, d := range comps {
			c.checkSRV(ctx, "xmpp-server", d, port(cfg.S2S), 5269, checkWarn)
		}
	}
	if cfg.HTTPS != "" {
		u, err := url.Parse(publicURL(cfg))
		if err == nil && publicDomain(u.Hostname()) {
			if ips, ok := c.lookupAddrs(ctx, u.Hostname(), checkFail, "the web client, WebSocket and file upload are at "+u.String()); ok {
				c.report(checkOK, fmt.Sprintf("%s (https, upload) has addresses %s", u.Hostname(), ips), "")
			}
		}
	}
}

// lookupAddrs looks up the A and AAAA records of host, reporting a
// missing record at level with why; ok is false when it found none.
func (c *checker) lookupAddrs(ctx context.Context, host, level, why string) (ips string, ok bool) {
	lctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	addrs, err := c.res.LookupIPAddr(lctx, host)
	if err != nil || len(addrs) == 0 {
		if err != nil && !isNotFound(err) {
			c.report(checkFail, fmt.Sprintf("looking up %s: %v", host, err), "is DNS reachable from this machine? Try -resolver 1.1.1.1:53")
			return "", false
		}
		c.report(level, fmt.Sprintf("%s has no A or AAAA record", host), why+"; add an A (and AAAA) record for "+host)
		return "", false
	}
	var list []string
	for _, a := range addrs {
		list = append(list, a.IP.String())
		if a.IP.IsLoopback() || a.IP.IsPrivate() || a.IP.IsLinkLocalUnicast() || a.IP.IsUnspecified() {
			c.report(checkWarn, fmt.Sprintf("%s has the address %s, which the internet cannot reach", host, a.IP), "use this machine's public address in DNS")
		}
	}
	slices.Sort(list)
	return strings.Join(list, " "), true
}

// isNotFound reports whether err says the name or record does not exist.
func isNotFound(err error) bool {
	var dnsErr *net.DNSError
	return errors.As(err, &dnsErr) && dnsErr.IsNotFound
}

// checkSRV checks the SRV records _service._tcp.name: their targets must
// have addresses, and their ports should be the listener's (want; 0:
// not checked). Without records, clients and servers fall back to name's
// addresses on port fallback (0: no fallback, XEP-0368); missing is the
// level of a record that is missing with no working fallback.
func (c *checker) checkSRV(ctx context.Context, service, name string, want, fallback int, missing string) {
	owner := "_" + service + "._tcp." + name
	lctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	_, srvs, err := c.res.LookupSRV(lctx, service, "tcp", name)
	if err != nil && !isNotFound(err) {
		c.report(checkFail, fmt.Sprintf("looking up SRV %s: %v", owner, err), "is DNS reachable from this machine? Try -resolver 1.1.1.1:53")
		return
	}
	record := func(port int) string {
		return fmt.Sprintf("%s. 3600 IN SRV 0 5 %d %s.", owner, port, name)
	}
	if len(srvs) == 0 {
		if fallback == 0 {
			c.report(missing, "no SRV record "+owner, "clients and servers find this listener only through it; add: "+record(want))
			return
		}
		ips, ok := c.lookupAddrs(ctx, name, missing, "no SRV record "+owner+" either")
		if !ok {
			return
		}
		if want != 0 && want != fallback {
			c.report(missing, fmt.Sprintf("no SRV record %s, and the listener is on port %d, not %d", owner, want, fallback), "add: "+record(want))
			return
		}
		c.report(checkOK, fmt.Sprintf("no SRV record %s: found at %s port %d (%s)", owner, name, fallback, ips), "")
		return
	}
	for _, s := range srvs {
		target := strings.TrimSuffix(s.Target, ".")
		if target == "" {
			c.report(missing, "SRV "+owner+" says the service is not offered (target \".\")", "remove that record or replace it with: "+record(want))
			continue
		}
		ips, ok := c.lookupAddrs(ctx, target, checkFail, "SRV "+owner+" points to it")
		if !ok {
			continue
		}
		if want != 0 && int(s.Port) != want {
			c.report(checkWarn, fmt.Sprintf("SRV %s points to port %d, the listener is on %d", owner, s.Port, want), "fine behind a port forward; otherwise fix the record or the listener")
			continue
		}
		c.report(checkOK, fmt.Sprintf("SRV %s -> %s:%d (%s)", owner, target, s.Port, ips), "")
	}
}
