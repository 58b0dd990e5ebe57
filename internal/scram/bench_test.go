package scram

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"strconv"
	"strings"
	"testing"
)

// benchExchange runs SCRAM-SHA-256 server exchanges; setup prepares each
// server. The client's side (PBKDF2 above all) is not timed.
func benchExchange(b *testing.B, mech, gs2 string, cb []byte, setup func(*Server)) {
	salt := []byte("0123456789abcdef")
	keys, err := Derive(SHA256, "pencil", salt, 4096)
	if err != nil {
		b.Fatal(err)
	}
	salted, _ := pbkdf2.Key(sha256.New, "pencil", salt, 4096, 32)
	m := hmac.New(sha256.New, salted)
	m.Write([]byte("Client Key"))
	clientKey := m.Sum(nil)
	lookup := func(string, string) (Keys, bool, error) { return keys, true, nil }
	first := []byte(gs2 + "n=user,r=fyko+d2lbbFgONRv9qkxdawL")
	bare := "n=user,r=fyko+d2lbbFgONRv9qkxdawL"
	cbAttr := "c=" + base64.StdEncoding.EncodeToString(append([]byte(gs2), cb...))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		s := NewServer(mech, lookup, func(string) Keys { return keys })
		if setup != nil {
			setup(s)
		}
		out, _, err := s.Step(first)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		srvFirst := string(out)
		r, _, _ := strings.Cut(strings.TrimPrefix(srvFirst, "r="), ",")
		without := cbAttr + ",r=" + r
		sig := hmac.New(sha256.New, keys.StoredKey)
		sig.Write([]byte(bare + "," + srvFirst + "," + without))
		proof := make([]byte, 32)
		subtle.XORBytes(proof, clientKey, sig.Sum(nil))
		final := []byte(without + ",p=" + base64.StdEncoding.EncodeToString(proof))
		b.StartTimer()
		if _, done, err := s.Step(final); err != nil || !done {
			b.Fatal(err, done, strconv.Quote(string(final)))
		}
	}
}

// BenchmarkServerSHA256 is a SCRAM-SHA-256 exchange without channel
// binding (the same on the code before -PLUS existed).
func BenchmarkServerSHA256(b *testing.B) { benchExchange(b, SHA256, "n,,", nil, nil) }

// BenchmarkServerSHA256PlusSSDP is a SCRAM-SHA-256-PLUS exchange with
// 32 bytes of tls-exporter data and XEP-0474's attribute (the binding
// data and the hash come from saslmech; see its benchmarks).
func BenchmarkServerSHA256PlusSSDP(b *testing.B) {
	cb := make([]byte, 32)
	benchExchange(b, SHA256Plus, "p=tls-exporter,,", cb, func(s *Server) {
		s.SetBinding(Binding{Offered: true, Data: func(typ string) ([]byte, bool) { return cb, typ == "tls-exporter" }})
		s.SetDowngradeHash("G6k/rBLDqgOhRRaCuuatSDFkJ08G6k/rBLDqgOhRRaCuu=")
	})
}
