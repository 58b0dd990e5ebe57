package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/treff-im/treff/trefftest"
)

// The tests in this file log in to the example server binary with
// channel binding through an independent client, github.com/xmppo/go-xmpp
// (the library of go-sendxmpp), built from its own module in goxmpp/.
// Debian's libstrophe (0.12.2) has no SCRAM-*-PLUS at all and its
// python3-nbxmpp (4.2.2) binds only with tls-unique, which Treff does not
// offer; go-xmpp 0.4.1 does tls-exporter and tls-server-end-point, reads
// XEP-0440 and checks XEP-0474.

// buildGoXMPP builds the goxmpp client. Its module needs go-xmpp from the
// Go module proxy: without it the test is skipped, except in CI.
func buildGoXMPP(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "goxmpp")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, ".")
	cmd.Dir = "goxmpp"
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly")
	if out, err := cmd.CombinedOutput(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("go build goxmpp: %v\n%s", err, out)
		}
		t.Skipf("cannot build the go-xmpp client (needs github.com/xmppo/go-xmpp from the Go module proxy): %v\n%s", err, out)
	}
	return bin
}

// goxmppResult is the outcome of one goxmpp run.
type goxmppResult struct {
	JID    string `json:"jid"`
	Error  string `json:"error"`
	stderr string // the client's debug log: the XML it sent and received
}

func runGoXMPP(t *testing.T, bin string, args ...string) goxmppResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Run(); err != nil {
		t.Fatalf("goxmpp %q: %v\nstdout: %s\nstderr: %s", args, err, &stdout, &stderr)
	}
	var r goxmppResult
	if err := json.Unmarshal(bytes.TrimSpace(stdout.Bytes()), &r); err != nil {
		t.Fatalf("goxmpp %q: %v: %q", args, err, stdout.String())
	}
	r.stderr = stderr.String()
	return r
}

// initialResponse returns the base64 that starts an initial response
// beginning with prefix (the prefix cut to whole 3-byte groups), to find
// the gs2 header the client sent in its debug log.
func initialResponse(prefix string) string {
	return base64.StdEncoding.EncodeToString([]byte(prefix[:len(prefix)/3*3]))
}

var authRE = regexp.MustCompile(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='([^']+)'>([^<]*)</auth>|<authenticate xmlns='urn:xmpp:sasl:2' mechanism='([^']+)'><initial-response>([^<]*)</initial-response>`)

// sentAuth returns the mechanism and initial response of the client's
// <auth/> (RFC 6120) or <authenticate/> (SASL2, which go-xmpp prefers
// when offered).
func (r goxmppResult) sentAuth(t *testing.T) (mech, data string) {
	t.Helper()
	m := authRE.FindStringSubmatch(r.stderr)
	if m == nil {
		t.Fatalf("no <auth/> or <authenticate/> in the client's log:\n%s", r.stderr)
	}
	if m[1] == "" {
		return m[3], m[4]
	}
	return m[1], m[2]
}

// TestGoXMPPChannelBinding logs go-xmpp in to the example server with
// SCRAM-SHA-256-PLUS: over direct TLS and STARTTLS on TLS 1.3 it binds
// with tls-exporter, on TLS 1.2 with tls-server-end-point (the only type
// announced there), each time with XEP-0474's check on. Both sides say
// which mechanism and binding were used: the <auth/> the client sent and
// the server's debug log.
func TestGoXMPPChannelBinding(t *testing.T) {
	client := buildGoXMPP(t)
	p, _ := startAlice(t)
	logins := map[string]int{}
	for _, tc := range []struct {
		name    string
		args    []string
		binding string
	}{
		{"TLS1.3/DirectTLS", []string{"-addr", p.tls}, "tls-exporter"},
		{"TLS1.3/STARTTLS", []string{"-addr", p.addr, "-starttls"}, "tls-exporter"},
		{"TLS1.2/DirectTLS", []string{"-addr", p.tls, "-tls12"}, "tls-server-end-point"},
		{"TLS1.2/STARTTLS", []string{"-addr", p.addr, "-starttls", "-tls12"}, "tls-server-end-point"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"-jid", "alice@localhost", "-password", alicePW, "-ca", p.cert, "-ssdp"}, tc.args...)
			r := runGoXMPP(t, client, args...)
			if r.Error != "" || !strings.HasPrefix(r.JID, "alice@localhost/") {
				t.Fatalf("login: %+v\nclient log:\n%s", r, r.stderr)
			}
			mech, ir := r.sentAuth(t)
			if want := initialResponse("p=" + tc.binding + ",,n="); mech != "SCRAM-SHA-256-PLUS" || !strings.HasPrefix(ir, want) {
				t.Errorf("client sent <auth mechanism=%q>%s..., want SCRAM-SHA-256-PLUS and a gs2 header p=%s (%s...)", mech, ir[:min(len(ir), 32)], tc.binding, want)
			}
			line := "msg=authenticated user=alice@localhost mechanism=SCRAM-SHA-256-PLUS channel_binding=" + tc.binding
			logins[line]++
			waitLogCount(t, p, line, logins[line])
		})
	}
	p.stop(t)
}

// mitm is a TLS-terminating proxy: clients reach it with its own
// certificate (which they are told to trust) and it forwards to the
// server over a TLS connection of its own, as a man in the middle with a
// certificate a client accepts does. With strip it also removes the
// -PLUS mechanisms and XEP-0440's announcement from the first stream
// features, as an active attacker would.
type mitm struct {
	addr   string
	caFile string
	l      net.Listener
	wg     sync.WaitGroup
}

func startMITM(t *testing.T, upstream, upstreamCA string, upstreamMax uint16, strip bool) *mitm {
	t.Helper()
	cert, err := trefftest.Certificate("localhost")
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "mitm.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o644); err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(upstreamCA)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	m := &mitm{addr: l.Addr().String(), caFile: caFile, l: l}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			m.wg.Add(1)
			go func() {
				defer m.wg.Done()
				m.relay(c, upstream, &tls.Config{RootCAs: roots, ServerName: "localhost", MaxVersion: upstreamMax}, strip)
			}()
		}
	}()
	t.Cleanup(func() { l.Close(); m.wg.Wait() })
	return m
}

var (
	plusMechRE = regexp.MustCompile(`<mechanism>[^<]*-PLUS</mechanism>`)
	cbFeatRE   = regexp.MustCompile(`<sasl-channel-binding xmlns='urn:xmpp:sasl-cb:0'>.*?</sasl-channel-binding>`)
)

func (m *mitm) relay(c net.Conn, upstream string, cfg *tls.Config, strip bool) {
	defer c.Close()
	s, err := tls.Dial("tcp", upstream, cfg)
	if err != nil {
		return
	}
	defer s.Close()
	done := make(chan struct{})
	go func() {
		io.Copy(s, c)
		s.CloseWrite()
		close(done)
	}()
	if strip {
		// Hold the server's output until the first features are complete,
		// then pass them on without channel binding.
		var buf []byte
		p := make([]byte, 4096)
		for !bytes.Contains(buf, []byte("</stream:features>")) {
			n, err := s.Read(p)
			buf = append(buf, p[:n]...)
			if err != nil {
				return
			}
		}
		buf = plusMechRE.ReplaceAll(buf, nil)
		buf = cbFeatRE.ReplaceAll(buf, nil)
		if _, err := c.Write(buf); err != nil {
			return
		}
	}
	io.Copy(c, s)
	c.Close()
	<-done
}

// TestGoXMPPThroughMITM puts a TLS-terminating proxy between go-xmpp and
// the example server. Channel binding exposes it: the -PLUS login with
// tls-exporter (the client's TLS 1.3) and with tls-server-end-point
// (TLS 1.2 on both sides, so that only that type is announced) fails,
// because the client binds to the proxy's channel. A proxy that also
// strips -PLUS and XEP-0440 from the features leaves go-xmpp with plain
// SCRAM and the gs2 flag "y", which the server refuses since it offered
// -PLUS. Plain SCRAM through the same proxy from a client without
// channel binding (slixmpp, "n") succeeds: the proxy is not otherwise in
// the way.
func TestGoXMPPThroughMITM(t *testing.T) {
	client := buildGoXMPP(t)
	p, _ := startAlice(t)
	failures := 0
	refused := func(t *testing.T, r goxmppResult, wantMech, wantGS2 string) {
		t.Helper()
		if r.Error == "" {
			t.Fatalf("logged in through the proxy as %s", r.JID)
		}
		mech, ir := r.sentAuth(t)
		if mech != wantMech || !strings.HasPrefix(ir, initialResponse(wantGS2)) {
			t.Errorf("client sent <auth mechanism=%q>%s...; want %s with %q", mech, ir[:min(len(ir), 32)], wantMech, wantGS2)
		}
		failures++
		waitLogCount(t, p, `msg="authentication failed" cond=not-authorized`, failures)
	}

	t.Run("PlusTLS1.3", func(t *testing.T) {
		m := startMITM(t, p.tls, p.cert, tls.VersionTLS13, false)
		r := runGoXMPP(t, client, "-addr", m.addr, "-jid", "alice@localhost", "-password", alicePW, "-ca", m.caFile)
		refused(t, r, "SCRAM-SHA-256-PLUS", "p=tls-exporter,,n=")
	})
	t.Run("PlusTLS1.2", func(t *testing.T) {
		m := startMITM(t, p.tls, p.cert, tls.VersionTLS12, false)
		r := runGoXMPP(t, client, "-addr", m.addr, "-jid", "alice@localhost", "-password", alicePW, "-ca", m.caFile, "-tls12")
		refused(t, r, "SCRAM-SHA-256-PLUS", "p=tls-server-end-point,,n=")
	})
	t.Run("Stripped", func(t *testing.T) {
		m := startMITM(t, p.tls, p.cert, tls.VersionTLS13, true)
		r := runGoXMPP(t, client, "-addr", m.addr, "-jid", "alice@localhost", "-password", alicePW, "-ca", m.caFile)
		refused(t, r, "SCRAM-SHA-256", "y,,n=")
	})
	t.Run("PlainSCRAM", func(t *testing.T) {
		m := startMITM(t, p.tls, p.cert, tls.VersionTLS13, false)
		s := &server{Server: &trefftest.Server{Domain: "localhost", Addr: m.addr, CertFile: m.caFile}}
		es := s.slix(t, "send", "--direct-tls", "--mech", "SCRAM-SHA-256", "--jid", "alice@localhost", "--password", alicePW,
			"--to", "alice@localhost", "--body", "through the proxy")
		if l := es.one(t, "login", "alice"); l.Mech != "SCRAM-SHA-256" || !strings.HasPrefix(l.JID, "alice@localhost/") {
			t.Errorf("slixmpp logged in as %q with %s, want alice with SCRAM-SHA-256", l.JID, l.Mech)
		}
		waitLogCount(t, p, "msg=authenticated user=alice@localhost mechanism=SCRAM-SHA-256 channel_binding=\"\"", 1)
	})
	if got := strings.Count(p.logs.String(), "msg=authenticated user=alice@localhost mechanism=SCRAM-SHA-256-PLUS"); got != 0 {
		t.Errorf("the server logged %d -PLUS logins through the proxy", got)
	}
	p.stop(t)
}
