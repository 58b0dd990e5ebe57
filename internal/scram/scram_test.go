package scram

import (
	"crypto/sha1"
	"crypto/sha256"
	"errors"
	"hash"
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
