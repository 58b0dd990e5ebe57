package scram

import (
	"bytes"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"hash"
	"strconv"
	"strings"
	"testing"

	"mellium.im/sasl"
)

func fakeKeys(string) Keys {
	return Keys{Salt: []byte("fakesalt"), Iterations: 4096, StoredKey: make([]byte, 32), ServerKey: make([]byte, 32)}
}

// run drives our server with mellium's independently written SCRAM client.
func run(t *testing.T, mech sasl.Mechanism, name string, stored, given string) error {
	t.Helper()
	keys, err := Derive(name, stored, []byte("0123456789abcdef"), 4096)
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(name, func(user, authzid string) (Keys, bool, error) {
		if user != "alice" {
			return Keys{}, false, nil
		}
		return keys, true, nil
	}, fakeKeys)
	client := sasl.NewClient(mech, sasl.Credentials(func() ([]byte, []byte, []byte) {
		return []byte("alice"), []byte(given), nil
	}))
	_, resp, err := client.Step(nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		out, done, err := srv.Step(resp)
		if err != nil {
			return err
		}
		if done {
			// The client must accept the server's signature.
			if _, _, err := client.Step(out); err != nil {
				t.Fatalf("client rejects server signature: %v", err)
			}
			return nil
		}
		if _, resp, err = client.Step(out); err != nil {
			t.Fatal(err)
		}
	}
	t.Fatal("exchange did not finish")
	return nil
}

func TestSCRAMWithMelliumClient(t *testing.T) {
	for _, tc := range []struct {
		mech sasl.Mechanism
		name string
		h    func() hash.Hash
	}{{sasl.ScramSha256, SHA256, sha256.New}, {sasl.ScramSha1, SHA1, sha1.New}} {
		t.Run(tc.name, func(t *testing.T) {
			if err := run(t, tc.mech, tc.name, "secret", "secret"); err != nil {
				t.Fatalf("good password: %v", err)
			}
			if err := run(t, tc.mech, tc.name, "secret", "wrong"); !errors.Is(err, ErrNotAuthorized) {
				t.Fatalf("bad password: %v", err)
			}
		})
	}
}

func TestUnknownUserFailsAtProof(t *testing.T) {
	srv := NewServer(SHA256, func(string, string) (Keys, bool, error) { return Keys{}, false, nil }, fakeKeys)
	out, done, err := srv.Step([]byte("n,,n=mallory,r=abcdef"))
	if err != nil || done || len(out) == 0 {
		t.Fatalf("first step: %q %v %v", out, done, err)
	}
}

func TestMalformed(t *testing.T) {
	for _, in := range []string{"", "x,,n=a,r=b", "n,,r=b", "n,,n=,r=b", "n,,n=a=2,r=b", "n,,m=x,n=a,r=b", "n,x,n=a,r=b"} {
		srv := NewServer(SHA256, func(string, string) (Keys, bool, error) { return fakeKeys(""), true, nil }, fakeKeys)
		if _, _, err := srv.Step([]byte(in)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%q: err = %v", in, err)
		}
	}
	srv := NewServer(SHA256, nil, fakeKeys)
	if _, _, err := srv.Step([]byte("p=tls-unique,,n=a,r=b")); !errors.Is(err, ErrNotAuthorized) {
		t.Errorf("channel binding: %v", err)
	}
}

func TestUnescape(t *testing.T) {
	if v, ok := unescape("a=2Cb=3Dc"); !ok || v != "a,b=c" {
		t.Errorf("got %q %v", v, ok)
	}
	for _, bad := range []string{"a=", "a=2", "a=41"} {
		if _, ok := unescape(bad); ok {
			t.Errorf("%q accepted", bad)
		}
	}
}

// vectorServer is a server for user "user" with password "pencil" and
// RFC 7677's salt, with RFC 7677's server nonce.
func vectorServer(t *testing.T, mech string) *Server {
	t.Helper()
	salt, _ := base64.StdEncoding.DecodeString("W22ZaJ0SNY7soEsUEjb6gQ==")
	keys, err := Derive(strings.TrimSuffix(mech, Plus), "pencil", salt, 4096)
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(mech, func(user, _ string) (Keys, bool, error) { return keys, user == "user", nil }, fakeKeys)
	s.nonceSuffix = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
	return s
}

// TestVectors runs exchanges whose messages are fixed: RFC 7677's
// SCRAM-SHA-256 example, and -PLUS exchanges with 32 fixed bytes of
// binding data and XEP-0474's attribute, whose proofs and signatures were
// computed separately (Python's hashlib and hmac).
func TestVectors(t *testing.T) {
	const srvNonce = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
	cb := make([]byte, 32)
	for i := range cb {
		cb[i] = byte(i)
	}
	for _, tc := range []struct {
		name, mech, ssdp, first, srvFirst, final, v string
	}{{
		name:     "RFC7677",
		mech:     SHA256,
		first:    "n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
		srvFirst: srvNonce + ",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
		final:    "c=biws," + srvNonce + ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
		v:        "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
	}, {
		name:     "SHA256PlusExporter",
		mech:     SHA256Plus,
		first:    "p=tls-exporter,,n=user,r=rOprNGfwEbeRWgbNEkqO",
		srvFirst: srvNonce + ",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
		final:    "c=cD10bHMtZXhwb3J0ZXIsLAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f," + srvNonce + ",p=QC6CS20quADQRb3mT99YUH+n3VJxUvzuK0K0E1Vrs2M=",
		v:        "v=2GiAgapEppLVlUXbxUDksL3VgYHzuqiK5tR4mhJGgvs=",
	}, {
		name:     "SHA512PlusEndPointSSDP",
		mech:     SHA512Plus,
		ssdp:     "X",
		first:    "p=tls-server-end-point,,n=user,r=rOprNGfwEbeRWgbNEkqO",
		srvFirst: srvNonce + ",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,h=X",
		final:    "c=cD10bHMtc2VydmVyLWVuZC1wb2ludCwsAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=," + srvNonce + ",p=iGv8WjNii+652SRO41xIbYc9w7SoFCjetEFxsoHo7fYn/sEm+xqRxmS4C7WpFxpd8NJ0bQPucIuMAGyAVG5y1Q==",
		v:        "v=BM9tqqq039iXgsxtWzaS/k4V9wIcsSmKzzSiy+jvBZnpDrAvbOdABM+BhlCzX8L6Xl7R3mTt/RXKPT/5LbQ8PA==",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			s := vectorServer(t, tc.mech)
			s.SetBinding(Binding{Offered: true, Data: func(typ string) ([]byte, bool) {
				return cb, typ == "tls-exporter" || typ == "tls-server-end-point"
			}})
			s.SetDowngradeHash(tc.ssdp)
			out, done, err := s.Step([]byte(tc.first))
			if err != nil || done || string(out) != tc.srvFirst {
				t.Fatalf("server-first = %q, %v, %v; want %q", out, done, err, tc.srvFirst)
			}
			out, done, err = s.Step([]byte(tc.final))
			if err != nil || !done || string(out) != tc.v {
				t.Fatalf("server-final = %q, %v, %v; want %q", out, done, err, tc.v)
			}
			if s.Username() != "user" {
				t.Errorf("username %q", s.Username())
			}
		})
	}
}

// TestBindingRefusals: what RFC 5802 section 6 says a server must refuse.
func TestBindingRefusals(t *testing.T) {
	cb := []byte("binding data of this channel....")
	data := func(typ string) ([]byte, bool) { return cb, typ == "tls-exporter" }
	for _, tc := range []struct {
		name, mech, first string
		b                 Binding
	}{
		{"YWhilePlusOffered", SHA256, "y,,n=user,r=abc", Binding{Offered: true, Data: data}},
		{"NOnPlus", SHA256Plus, "n,,n=user,r=abc", Binding{Offered: true, Data: data}},
		{"YOnPlus", SHA256Plus, "y,,n=user,r=abc", Binding{Offered: true, Data: data}},
		{"TypeNotOffered", SHA256Plus, "p=tls-unique,,n=user,r=abc", Binding{Offered: true, Data: data}},
		{"BindingOnNonPlus", SHA256, "p=tls-exporter,,n=user,r=abc", Binding{Offered: true, Data: data}},
		{"PlusWithoutBinding", SHA256Plus, "p=tls-exporter,,n=user,r=abc", Binding{}},
		{"BadTypeName", SHA256Plus, "p=tls exporter,,n=user,r=abc", Binding{Offered: true, Data: data}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := vectorServer(t, tc.mech)
			s.SetBinding(tc.b)
			if _, _, err := s.Step([]byte(tc.first)); !errors.Is(err, ErrNotAuthorized) {
				t.Errorf("Step(%q) = %v, want ErrNotAuthorized", tc.first, err)
			}
		})
	}
	// Accepted first messages: "n" always on a non-PLUS mechanism, "y"
	// when no -PLUS was offered.
	for _, tc := range []struct {
		first string
		b     Binding
	}{{"n,,n=user,r=abc", Binding{Offered: true, Data: data}}, {"y,,n=user,r=abc", Binding{}}} {
		s := vectorServer(t, SHA256)
		s.SetBinding(tc.b)
		if _, _, err := s.Step([]byte(tc.first)); err != nil {
			t.Errorf("Step(%q) with %+v: %v", tc.first, tc.b.Offered, err)
		}
	}
}

// TestWrongBindingData: a client on another TLS channel (a man in the
// middle) sends other binding data, and so does a client that repeats
// the gs2 header alone; both are refused although the proof is right.
func TestWrongBindingData(t *testing.T) {
	srvCB := bytes.Repeat([]byte{1}, 32)
	for _, tc := range []struct {
		name     string
		clientCB []byte
		want     error
	}{{"Right", srvCB, nil}, {"Other", bytes.Repeat([]byte{2}, 32), ErrNotAuthorized}, {"None", nil, ErrNotAuthorized}, {"Prefix", srvCB[:16], ErrNotAuthorized}} {
		t.Run(tc.name, func(t *testing.T) {
			s := vectorServer(t, SHA256Plus)
			s.SetBinding(Binding{Offered: true, Data: func(string) ([]byte, bool) { return srvCB, true }})
			c := &testClient{h: sha256.New, user: "user", password: "pencil", gs2: "p=tls-exporter,,", cb: tc.clientCB}
			_, err := c.run(t, s)
			if !errors.Is(err, tc.want) && !(tc.want == nil && err == nil) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

// testClient is a minimal SCRAM client written from RFC 5802, for the
// binding tests (mellium's client cannot do tls-exporter).
type testClient struct {
	h              func() hash.Hash
	user, password string
	gs2            string
	cb             []byte
}

// run drives s and returns the server's final message.
func (c *testClient) run(t *testing.T, s *Server) (string, error) {
	t.Helper()
	bare := "n=" + c.user + ",r=clientnonce"
	out, _, err := s.Step([]byte(c.gs2 + bare))
	if err != nil {
		return "", err
	}
	srvFirst := string(out)
	var nonce, salt string
	iter := 0
	for _, a := range strings.Split(srvFirst, ",") {
		switch {
		case strings.HasPrefix(a, "r="):
			nonce = a[2:]
		case strings.HasPrefix(a, "s="):
			salt = a[2:]
		case strings.HasPrefix(a, "i="):
			iter, _ = strconv.Atoi(a[2:])
		}
	}
	saltB, _ := base64.StdEncoding.DecodeString(salt)
	salted, err := pbkdf2.Key(c.h, c.password, saltB, iter, c.h().Size())
	if err != nil {
		t.Fatal(err)
	}
	clientKey := mac(c.h, salted, "Client Key")
	st := c.h()
	st.Write(clientKey)
	without := "c=" + base64.StdEncoding.EncodeToString(append([]byte(c.gs2), c.cb...)) + ",r=" + nonce
	am := bare + "," + srvFirst + "," + without
	sig := hmac.New(c.h, st.Sum(nil))
	sig.Write([]byte(am))
	proof := make([]byte, len(clientKey))
	subtle.XORBytes(proof, clientKey, sig.Sum(nil))
	out, _, err = s.Step([]byte(without + ",p=" + base64.StdEncoding.EncodeToString(proof)))
	return string(out), err
}

// A client that tried a -PLUS mechanism and could not bind (its only
// type, tls-unique, is not offered) may then say "y" on plain SCRAM: it
// saw -PLUS, nobody stripped it. Without that attempt, "y" is refused.
func TestYAfterRefusedBinding(t *testing.T) {
	keys := Keys{Salt: []byte("salt"), Iterations: 4096}
	lookup := func(username, authzid string) (Keys, bool, error) { return keys, true, nil }
	fake := func(string) Keys { return keys }
	refused := false
	b := Binding{Offered: true, Data: func(typ string) ([]byte, bool) { return nil, false },
		Refused: func() { refused = true }, RefusedBefore: func() bool { return refused }}
	y := NewServer("SCRAM-SHA-256", lookup, fake)
	y.SetBinding(b)
	if _, _, err := y.Step([]byte("y,,n=user,r=abcdefgh")); err != ErrNotAuthorized {
		t.Fatalf("y with -PLUS offered and no refused binding: %v, want ErrNotAuthorized", err)
	}
	for _, first := range []string{"p=tls-unique,,n=user,r=abcdefgh", "n,,n=user,r=abcdefgh"} {
		plus := NewServer("SCRAM-SHA-256-PLUS", lookup, fake)
		plus.SetBinding(b)
		refused = false
		if _, _, err := plus.Step([]byte(first)); err != ErrBindingRefused || !errors.Is(err, ErrNotAuthorized) || !refused {
			t.Fatalf("-PLUS with %q: err %v, refused %v", first, err, refused)
		}
		y := NewServer("SCRAM-SHA-256", lookup, fake)
		y.SetBinding(b)
		if _, _, err := y.Step([]byte("y,,n=user,r=abcdefgh")); err != nil {
			t.Errorf("y after a refused -PLUS attempt (%q): %v", first, err)
		}
	}
}
