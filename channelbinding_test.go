package treff_test

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"crypto/tls"
	"encoding/base64"
	"hash"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/auth"
	"github.com/treff-im/treff/trefftest"
)

// The tests in this file log in with SCRAM and channel binding through a
// SCRAM client written here from RFC 5802, RFC 5929 and RFC 9266, which
// takes its binding data from its own side of the TLS connection.

// offer is what the stream features offered, as a client reads them.
type offer struct {
	mechs []string
	cbs   []string // XEP-0440's types; nil if not announced
}

var (
	mechRE     = regexp.MustCompile(`<mechanism>([^<]+)</mechanism>`)
	cbRE       = regexp.MustCompile(`<channel-binding type='([^']+)'/>`)
	legacySASL = regexp.MustCompile(`<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>.*?</mechanisms>`)
)

// parseOffer reads RFC 6120's mechanism list (SASL2's, if offered too,
// repeats it) and XEP-0440's binding types.
func parseOffer(feats string) offer {
	var o offer
	for _, m := range mechRE.FindAllStringSubmatch(legacySASL.FindString(feats), -1) {
		o.mechs = append(o.mechs, m[1])
	}
	if strings.Contains(feats, "<sasl-channel-binding xmlns='urn:xmpp:sasl-cb:0'>") {
		for _, m := range cbRE.FindAllStringSubmatch(feats, -1) {
			o.cbs = append(o.cbs, m[1])
		}
	}
	return o
}

// ssdp is XEP-0474's hash (version 0.5.0) as a client computes it from
// what it was offered.
func (o offer) ssdp(h func() hash.Hash) string {
	sum := h()
	m := slices.Sorted(slices.Values(o.mechs))
	sum.Write([]byte(strings.Join(m, "\x1e")))
	if o.cbs != nil {
		sum.Write([]byte{0x1f})
		sum.Write([]byte(strings.Join(slices.Sorted(slices.Values(o.cbs)), "\x1e")))
	}
	return base64.StdEncoding.EncodeToString(sum.Sum(nil))
}

func scramHash(mech string) func() hash.Hash {
	switch strings.TrimSuffix(mech, "-PLUS") {
	case "SCRAM-SHA-1":
		return sha1.New
	case "SCRAM-SHA-256":
		return sha256.New
	case "SCRAM-SHA-512":
		return sha512.New
	}
	panic(mech)
}

// clientBinding computes binding data of type typ from the client's side
// of the connection.
func clientBinding(t *testing.T, cs tls.ConnectionState, typ string) []byte {
	t.Helper()
	switch typ {
	case "tls-exporter":
		b, err := cs.ExportKeyingMaterial("EXPORTER-Channel-Binding", nil, 32)
		if err != nil {
			t.Fatal(err)
		}
		return b
	case "tls-server-end-point":
		// trefftest's certificate is ECDSA with SHA-256.
		sum := sha256.Sum256(cs.PeerCertificates[0].Raw)
		return sum[:]
	}
	return []byte("no such binding")
}

// scramLogin is one SCRAM attempt.
type scramLogin struct {
	mech, gs2 string
	cb        []byte // sent after the gs2 header in c=
	user, pw  string
}

// scramResult is what the server answered.
type scramResult struct {
	failure  string // the failure's condition, or "" on success
	attrs    map[string]string
	verified bool // the server's signature checked out
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// run sends the attempt on c (features read) and returns the outcome.
func (l scramLogin) run(t *testing.T, c *trefftest.Client) scramResult {
	t.Helper()
	h := scramHash(l.mech)
	bare := "n=" + l.user + ",r=fyko+d2lbbFgONRv9qkxdawL"
	c.Send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='" + l.mech + "'>" + b64(l.gs2+bare) + "</auth>")
	m := c.Expect(`<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>[^<]*</challenge>|<failure[^>]*>.*?</failure>`)
	if cond, ok := failureCondition(m); ok {
		return scramResult{failure: cond}
	}
	raw, err := base64.StdEncoding.DecodeString(m[strings.Index(m, ">")+1 : strings.LastIndex(m, "<")])
	if err != nil {
		t.Fatal(err)
	}
	srvFirst := string(raw)
	attrs := map[string]string{}
	for _, a := range strings.Split(srvFirst, ",") {
		k, v, _ := strings.Cut(a, "=")
		attrs[k] = v
	}
	salt, _ := base64.StdEncoding.DecodeString(attrs["s"])
	iter, _ := strconv.Atoi(attrs["i"])
	salted, err := pbkdf2.Key(h, l.pw, salt, iter, h().Size())
	if err != nil {
		t.Fatal(err)
	}
	mac := func(key []byte, msg string) []byte {
		m := hmac.New(h, key)
		m.Write([]byte(msg))
		return m.Sum(nil)
	}
	clientKey := mac(salted, "Client Key")
	stored := h()
	stored.Write(clientKey)
	without := "c=" + base64.StdEncoding.EncodeToString(append([]byte(l.gs2), l.cb...)) + ",r=" + attrs["r"]
	authMsg := bare + "," + srvFirst + "," + without
	proof := make([]byte, len(clientKey))
	subtle.XORBytes(proof, clientKey, mac(stored.Sum(nil), authMsg))
	c.Send("<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>" + b64(without+",p="+base64.StdEncoding.EncodeToString(proof)) + "</response>")
	m = c.Expect(`<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>[^<]*</success>|<failure[^>]*>.*?</failure>`)
	if cond, ok := failureCondition(m); ok {
		return scramResult{failure: cond, attrs: attrs}
	}
	v, _ := base64.StdEncoding.DecodeString(m[strings.Index(m, ">")+1 : strings.LastIndex(m, "<")])
	want := "v=" + base64.StdEncoding.EncodeToString(mac(mac(salted, "Server Key"), authMsg))
	return scramResult{attrs: attrs, verified: string(v) == want}
}

func failureCondition(m string) (string, bool) {
	i := strings.Index(m, "<failure")
	if i < 0 {
		return "", false
	}
	rest := m[i:]
	rest = rest[strings.Index(rest, ">")+1:]
	if j := strings.Index(rest, "<"); j >= 0 {
		rest = rest[j+1:]
		if k := strings.IndexAny(rest, " />"); k >= 0 {
			return rest[:k], true
		}
	}
	return "", true
}

// openTLS opens a stream to ts over STARTTLS or direct TLS with a client
// TLS configuration limited to version, and returns the client, the
// offer it read and its TLS state.
func openTLS(t *testing.T, ts *trefftest.Server, direct bool, version uint16) (*trefftest.Client, offer, tls.ConnectionState) {
	t.Helper()
	cfg := ts.TLSConfig()
	cfg.MinVersion, cfg.MaxVersion = version, version
	var c *trefftest.Client
	if direct {
		tc, err := tls.Dial("tcp", ts.TLSAddr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tc.Close() })
		c = trefftest.NewClient(t, tc, ts.Domain, cfg)
	} else {
		c = ts.Dial(t, ts.Addr)
		c = trefftest.NewClient(t, c.Conn(), ts.Domain, cfg)
		c.StartTLS()
	}
	c.Send(trefftest.Header(ts.Domain))
	o := parseOffer(c.Expect(`</stream:features>`))
	return c, o, c.Conn().(*tls.Conn).ConnectionState()
}

// TestChannelBindingLogin logs in with each -PLUS mechanism and each
// binding type, on TLS 1.3 and 1.2, over STARTTLS and direct TLS: the
// offer names the types available (tls-exporter on TLS 1.3 only), the
// login succeeds with the client's own binding data, and the server
// proves it knows the password. SCRAM-SHA-512 is offered because the
// authenticator lists it.
func TestChannelBindingLogin(t *testing.T) {
	ts := newTestServer(t, func(s *treff.Server) { s.Authenticator.(*auth.Store).SHA512 = true })
	for _, version := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		for _, direct := range []bool{false, true} {
			name := map[uint16]string{tls.VersionTLS13: "TLS1.3", tls.VersionTLS12: "TLS1.2"}[version] + map[bool]string{false: "/STARTTLS", true: "/DirectTLS"}[direct]
			t.Run(name, func(t *testing.T) {
				wantCB := []string{"tls-exporter", "tls-server-end-point"}
				if version == tls.VersionTLS12 {
					wantCB = []string{"tls-server-end-point"}
				}
				_, o, _ := openTLS(t, ts, direct, version)
				wantMechs := []string{"SCRAM-SHA-512-PLUS", "SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-512", "SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"}
				if !slices.Equal(o.mechs, wantMechs) || !slices.Equal(o.cbs, wantCB) {
					t.Fatalf("offered %q with channel bindings %q; want %q with %q", o.mechs, o.cbs, wantMechs, wantCB)
				}
				for _, mech := range []string{"SCRAM-SHA-1-PLUS", "SCRAM-SHA-256-PLUS", "SCRAM-SHA-512-PLUS"} {
					for _, typ := range wantCB {
						c, o, cs := openTLS(t, ts, direct, version)
						r := scramLogin{mech: mech, gs2: "p=" + typ + ",,", cb: clientBinding(t, cs, typ), user: "alice", pw: "alicepw"}.run(t, c)
						if r.failure != "" || !r.verified {
							t.Fatalf("%s with %s: failure %q, server signature verified %v", mech, typ, r.failure, r.verified)
						}
						if got, want := r.attrs["h"], o.ssdp(scramHash(mech)); got != want {
							t.Errorf("%s: XEP-0474 h=%q, the client computes %q", mech, got, want)
						}
						c.Send(trefftest.Header(ts.Domain))
						c.Expect(`<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>`)
					}
				}
				if version == tls.VersionTLS12 {
					// tls-exporter is not announced on TLS 1.2: refused.
					c, _, cs := openTLS(t, ts, direct, version)
					b, err := cs.ExportKeyingMaterial("EXPORTER-Channel-Binding", nil, 32)
					if err != nil {
						t.Fatal(err)
					}
					r := scramLogin{mech: "SCRAM-SHA-256-PLUS", gs2: "p=tls-exporter,,", cb: b, user: "alice", pw: "alicepw"}.run(t, c)
					if r.failure != "not-authorized" {
						t.Errorf("tls-exporter on TLS 1.2: failure %q, want not-authorized", r.failure)
					}
				}
			})
		}
	}
}

// TestChannelBindingRefusals: the attempts RFC 5802 section 6 and a man
// in the middle make, each refused with <not-authorized/>, and the plain
// SCRAM logins that stay allowed.
func TestChannelBindingRefusals(t *testing.T) {
	ts := newTestServer(t, nil)
	for _, tc := range []struct {
		name string
		l    func(cs tls.ConnectionState) scramLogin
		ok   bool
	}{
		{"YDowngrade", func(tls.ConnectionState) scramLogin {
			// The client could bind, but its offer was stripped of -PLUS.
			return scramLogin{mech: "SCRAM-SHA-256", gs2: "y,,"}
		}, false},
		{"NWithoutBinding", func(tls.ConnectionState) scramLogin { return scramLogin{mech: "SCRAM-SHA-256", gs2: "n,,"} }, true},
		{"NOnPlus", func(tls.ConnectionState) scramLogin { return scramLogin{mech: "SCRAM-SHA-256-PLUS", gs2: "n,,"} }, false},
		{"TLSUnique", func(cs tls.ConnectionState) scramLogin {
			return scramLogin{mech: "SCRAM-SHA-256-PLUS", gs2: "p=tls-unique,,", cb: make([]byte, 12)}
		}, false},
		{"WrongExporterData", func(cs tls.ConnectionState) scramLogin {
			// Keying material of another connection (a proxy's).
			b, _ := cs.ExportKeyingMaterial("EXPORTER-Channel-Binding-other", nil, 32)
			return scramLogin{mech: "SCRAM-SHA-256-PLUS", gs2: "p=tls-exporter,,", cb: b}
		}, false},
		{"WrongEndPointData", func(tls.ConnectionState) scramLogin {
			// The hash of another certificate (a proxy's).
			sum := sha256.Sum256([]byte("another certificate"))
			return scramLogin{mech: "SCRAM-SHA-1-PLUS", gs2: "p=tls-server-end-point,,", cb: sum[:]}
		}, false},
		{"NoBindingData", func(tls.ConnectionState) scramLogin {
			return scramLogin{mech: "SCRAM-SHA-256-PLUS", gs2: "p=tls-exporter,,"}
		}, false},
		{"BindingOnPlainSCRAM", func(cs tls.ConnectionState) scramLogin {
			b, _ := cs.ExportKeyingMaterial("EXPORTER-Channel-Binding", nil, 32)
			return scramLogin{mech: "SCRAM-SHA-256", gs2: "p=tls-exporter,,", cb: b}
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _, cs := openTLS(t, ts, false, tls.VersionTLS13)
			l := tc.l(cs)
			l.user, l.pw = "alice", "alicepw"
			r := l.run(t, c)
			if tc.ok && (r.failure != "" || !r.verified) {
				t.Errorf("failure %q, verified %v; want success", r.failure, r.verified)
			}
			if !tc.ok && r.failure != "not-authorized" {
				t.Errorf("failure %q, want not-authorized", r.failure)
			}
		})
	}
}

// TestSCRAMWithoutChannelBinding: with no binding available (a server
// configuration choosing its certificate itself, on TLS 1.2) neither
// -PLUS nor XEP-0440 is offered, "y" is accepted, and the XEP-0474 hash
// covers the mechanisms alone.
func TestSCRAMWithoutChannelBinding(t *testing.T) {
	ts := newTestServer(t, nil)
	cert := ts.Hosts[0].Certificates[0]
	ts2 := newTestServer(t, func(s *treff.Server) {
		s.TLSConfig = &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return &tls.Config{Certificates: []tls.Certificate{cert}}, nil
		}}
	})
	ts2.Roots = ts.Roots
	c, o, _ := openTLS(t, ts2, false, tls.VersionTLS12)
	if want := []string{"SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"}; !slices.Equal(o.mechs, want) || o.cbs != nil {
		t.Fatalf("offered %q with bindings %q; want %q and no XEP-0440", o.mechs, o.cbs, want)
	}
	r := scramLogin{mech: "SCRAM-SHA-256", gs2: "y,,", user: "alice", pw: "alicepw"}.run(t, c)
	if r.failure != "" || !r.verified {
		t.Fatalf("y without -PLUS offered: failure %q", r.failure)
	}
	if got, want := r.attrs["h"], o.ssdp(sha256.New); got != want {
		t.Errorf("h=%q, want %q", got, want)
	}
}

// TestDowngradeHashDetectsStrippedOffer: a man in the middle that strips
// the -PLUS mechanisms and XEP-0440 from the features cannot change the
// h attribute (the client proof covers it), and it does not match the
// hash of the stripped offer: the client detects the downgrade.
func TestDowngradeHashDetectsStrippedOffer(t *testing.T) {
	ts := newTestServer(t, nil)
	c, o, _ := openTLS(t, ts, false, tls.VersionTLS13)
	stripped := offer{}
	for _, m := range o.mechs {
		if !strings.HasSuffix(m, "-PLUS") {
			stripped.mechs = append(stripped.mechs, m)
		}
	}
	r := scramLogin{mech: "SCRAM-SHA-256", gs2: "n,,", user: "alice", pw: "alicepw"}.run(t, c)
	if r.failure != "" || !r.verified {
		t.Fatalf("failure %q", r.failure)
	}
	got := r.attrs["h"]
	if got == "" || got != o.ssdp(sha256.New) {
		t.Fatalf("h=%q, want the hash of the real offer %q", got, o.ssdp(sha256.New))
	}
	if got == stripped.ssdp(sha256.New) {
		t.Errorf("h=%q matches the stripped offer %q too", got, stripped.mechs)
	}
	// Stripping only the channel-binding types is detected as well.
	if got == (offer{mechs: o.mechs}).ssdp(sha256.New) {
		t.Error("h matches an offer without XEP-0440")
	}
}

// TestTLSResumptionBinding: a resumed TLS session presents no
// certificate, so tls-server-end-point is not offered on it; on TLS 1.3
// tls-exporter still is, on TLS 1.2 no -PLUS mechanism is left.
func TestTLSResumptionBinding(t *testing.T) {
	ts := newTestServer(t, nil)
	for _, tc := range []struct {
		version      uint16
		first, again []string
	}{
		{tls.VersionTLS13, []string{"tls-exporter", "tls-server-end-point"}, []string{"tls-exporter"}},
		{tls.VersionTLS12, []string{"tls-server-end-point"}, nil},
	} {
		cfg := ts.TLSConfig()
		cfg.MinVersion, cfg.MaxVersion = tc.version, tc.version
		cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
		var got [][]string
		for i := 0; i < 2; i++ {
			conn, err := tls.Dial("tcp", ts.TLSAddr, cfg)
			if err != nil {
				t.Fatal(err)
			}
			c := trefftest.NewClient(t, conn, ts.Domain, cfg)
			c.Send(trefftest.Header(ts.Domain))
			o := parseOffer(c.Expect(`</stream:features>`))
			if i == 1 && !conn.ConnectionState().DidResume {
				t.Fatalf("second connection did not resume")
			}
			// Log in, so that TLS 1.3's ticket has arrived before the next dial.
			r := scramLogin{mech: "SCRAM-SHA-256", gs2: "n,,", user: "alice", pw: "alicepw"}.run(t, c)
			if r.failure != "" {
				t.Fatal(r.failure)
			}
			conn.Close()
			got = append(got, o.cbs)
		}
		if !slices.Equal(got[0], tc.first) || !slices.Equal(got[1], tc.again) {
			t.Errorf("TLS %x: first connection offered %q, the resumed one %q; want %q and %q", tc.version, got[0], got[1], tc.first, tc.again)
		}
	}
}

// TestPlainNeedsTLS: before TLS no mechanism is offered and PLAIN is
// refused with <encryption-required/>.
func TestPlainNeedsTLS(t *testing.T) {
	ts := newTestServer(t, nil)
	c := ts.Dial(t, ts.Addr)
	c.Send(trefftest.Header(ts.Domain))
	f := c.Expect(`</stream:features>`)
	if strings.Contains(f, "<mechanism>") || strings.Contains(f, "sasl-channel-binding") {
		t.Fatalf("features before TLS: %s", f)
	}
	c.Send(trefftest.PlainAuth("alice", "alicepw"))
	c.Expect(`<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><encryption-required/></failure>`)
}
