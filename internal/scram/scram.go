// Package scram implements the server side of SCRAM (RFC 5802, RFC 7677)
// over stored keys: the server keeps only the salt, iteration count,
// StoredKey and ServerKey of each user, never the password or the salted
// password, so a leaked database does not let anyone log in.
//
// Channel binding (-PLUS) is not offered; a client that requires it is
// refused.
package scram

import (
	"bytes"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"hash"
	"strconv"
)

// Mechanism names.
const (
	SHA1   = "SCRAM-SHA-1"
	SHA256 = "SCRAM-SHA-256"
)

// Errors from Step. ErrMalformed maps to SASL <malformed-request/>,
// ErrAuthzid to <invalid-authzid/>, ErrNotAuthorized to <not-authorized/>.
var (
	ErrMalformed     = errors.New("scram: malformed message")
	ErrNotAuthorized = errors.New("scram: not authorized")
	ErrAuthzid       = errors.New("scram: invalid authzid")
)

// Hash returns the hash function of a mechanism, or nil.
func Hash(mech string) func() hash.Hash {
	switch mech {
	case SHA1:
		return sha1.New
	case SHA256:
		return sha256.New
	}
	return nil
}

// Keys are the stored credentials of one user for one mechanism.
type Keys struct {
	Salt       []byte
	Iterations int
	StoredKey  []byte
	ServerKey  []byte
}

// Derive computes the keys for password (already normalised with the PRECIS
// OpaqueString profile) with the given salt and iteration count.
func Derive(mech, password string, salt []byte, iterations int) (Keys, error) {
	h := Hash(mech)
	if h == nil {
		return Keys{}, errors.New("scram: unknown mechanism " + mech)
	}
	salted, err := pbkdf2.Key(h, password, salt, iterations, h().Size())
	if err != nil {
		return Keys{}, err
	}
	clientKey := mac(h, salted, "Client Key")
	sum := h()
	sum.Write(clientKey)
	return Keys{
		Salt:       append([]byte(nil), salt...),
		Iterations: iterations,
		StoredKey:  sum.Sum(nil),
		ServerKey:  mac(h, salted, "Server Key"),
	}, nil
}

func mac(h func() hash.Hash, key []byte, msg string) []byte {
	m := hmac.New(h, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// Lookup returns the keys of a user. username is the SCRAM username after
// unescaping; authzid is the requested authorisation identity or "". It
// returns ok false for unknown users, in which case the exchange goes on
// with made-up keys and fails at the proof, so that clients cannot probe
// which accounts exist.
type Lookup func(username, authzid string) (k Keys, ok bool, err error)

// Server runs one SCRAM exchange.
type Server struct {
	mech   string
	h      func() hash.Hash
	lookup Lookup
	fake   func(username string) Keys

	step      int
	gs2       string
	first     string // client-first-message-bare
	srvFirst  string
	nonce     string
	keys      Keys
	known     bool
	username  string
	authzid   string
	serverSig []byte
}

// NewServer returns a server for mechanism mech (SHA1 or SHA256). fake
// returns deterministic made-up keys for an unknown user.
func NewServer(mech string, lookup Lookup, fake func(username string) Keys) *Server {
	return &Server{mech: mech, h: Hash(mech), lookup: lookup, fake: fake}
}

// Username returns the authenticated username after a successful exchange.
func (s *Server) Username() string { return s.username }

// Authzid returns the requested authorisation identity ("" if none).
func (s *Server) Authzid() string { return s.authzid }

// Step processes the client's message and returns the server's answer. done
// is true with the additional data for <success/> once the client is
// authenticated.
func (s *Server) Step(in []byte) (out []byte, done bool, err error) {
	s.step++
	switch s.step {
	case 1:
		return s.clientFirst(in)
	case 2:
		return s.clientFinal(in)
	}
	return nil, false, ErrMalformed
}

func (s *Server) clientFirst(in []byte) ([]byte, bool, error) {
	// gs2-header: cbind-flag "," [ authzid ] ","
	msg := string(in)
	var flag, az string
	var ok bool
	if flag, msg, ok = cut(msg, ','); !ok {
		return nil, false, ErrMalformed
	}
	switch {
	case flag == "n" || flag == "y":
		// "y": the client supports channel binding but thinks we do not;
		// we do not offer -PLUS, so that is right.
	case len(flag) > 2 && flag[:2] == "p=":
		return nil, false, ErrNotAuthorized
	default:
		return nil, false, ErrMalformed
	}
	if az, msg, ok = cut(msg, ','); !ok {
		return nil, false, ErrMalformed
	}
	if az != "" {
		if len(az) < 3 || az[:2] != "a=" {
			return nil, false, ErrMalformed
		}
		v, ok := unescape(az[2:])
		if !ok {
			return nil, false, ErrMalformed
		}
		s.authzid = v
	}
	s.gs2 = string(in[:len(in)-len(msg)])
	s.first = msg
	// client-first-message-bare: [reserved-mext ","] username "," nonce ...
	if len(msg) > 2 && msg[:2] == "m=" {
		return nil, false, ErrMalformed
	}
	user, rest, ok := cut(msg, ',')
	if !ok || len(user) < 3 || user[:2] != "n=" {
		return nil, false, ErrMalformed
	}
	name, ok := unescape(user[2:])
	if !ok || name == "" {
		return nil, false, ErrMalformed
	}
	cn, _, _ := cut(rest, ',')
	if len(cn) < 3 || cn[:2] != "r=" || !printable(cn[2:]) {
		return nil, false, ErrMalformed
	}
	s.username = name
	keys, known, err := s.lookup(name, s.authzid)
	if err != nil {
		return nil, false, err
	}
	if !known {
		keys = s.fake(name)
	}
	s.keys, s.known = keys, known
	var rnd [18]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, false, err
	}
	s.nonce = cn[2:] + base64.StdEncoding.EncodeToString(rnd[:])
	s.srvFirst = "r=" + s.nonce + ",s=" + base64.StdEncoding.EncodeToString(keys.Salt) +
		",i=" + strconv.Itoa(keys.Iterations)
	return []byte(s.srvFirst), false, nil
}

func (s *Server) clientFinal(in []byte) ([]byte, bool, error) {
	msg := string(in)
	i := bytes.LastIndex(in, []byte(",p="))
	if i < 0 {
		return nil, false, ErrMalformed
	}
	withoutProof := msg[:i]
	proof, err := base64.StdEncoding.DecodeString(msg[i+3:])
	if err != nil {
		return nil, false, ErrMalformed
	}
	cb, rest, ok := cut(withoutProof, ',')
	if !ok || cb != "c="+base64.StdEncoding.EncodeToString([]byte(s.gs2)) {
		return nil, false, ErrMalformed
	}
	r, _, _ := cut(rest, ',')
	if r != "r="+s.nonce {
		return nil, false, ErrMalformed
	}
	authMsg := []byte(s.first + "," + s.srvFirst + "," + withoutProof)
	sig := hmac.New(s.h, s.keys.StoredKey)
	sig.Write(authMsg)
	clientSig := sig.Sum(nil)
	if len(proof) != len(clientSig) {
		return nil, false, ErrNotAuthorized
	}
	clientKey := make([]byte, len(proof))
	subtle.XORBytes(clientKey, proof, clientSig)
	sum := s.h()
	sum.Write(clientKey)
	if subtle.ConstantTimeCompare(sum.Sum(nil), s.keys.StoredKey) != 1 || !s.known {
		return nil, false, ErrNotAuthorized
	}
	ss := hmac.New(s.h, s.keys.ServerKey)
	ss.Write(authMsg)
	return []byte("v=" + base64.StdEncoding.EncodeToString(ss.Sum(nil))), true, nil
}

func cut(s string, sep byte) (before, after string, ok bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == sep {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// unescape decodes a saslname (=2C is ',' and =3D is '=').
func unescape(s string) (string, bool) {
	if !bytes.ContainsRune([]byte(s), '=') {
		return s, true
	}
	var b []byte
	for i := 0; i < len(s); i++ {
		if s[i] != '=' {
			b = append(b, s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", false
		}
		switch s[i+1 : i+3] {
		case "2C":
			b = append(b, ',')
		case "3D":
			b = append(b, '=')
		default:
			return "", false
		}
		i += 2
	}
	return string(b), true
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e || s[i] == ',' {
			return false
		}
	}
	return s != ""
}
