// Package scram implements the server side of SCRAM (RFC 5802, RFC 7677)
// over stored keys: the server keeps only the salt, iteration count,
// StoredKey and ServerKey of each user, never the password or the salted
// password, so a leaked database does not let anyone log in.
//
// The -PLUS variants bind the exchange to the TLS channel (RFC 5802
// section 6): the caller says which binding types the stream offers and
// gives their data (see Binding). The server-first-message can carry
// XEP-0474's downgrade-protection hash (saslmech.Stream.DowngradeHash).
package scram

import (
	"bytes"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"
)

// Mechanism names. A -PLUS mechanism uses the keys of the mechanism
// without the suffix.
const (
	SHA1       = "SCRAM-SHA-1"
	SHA256     = "SCRAM-SHA-256"
	SHA512     = "SCRAM-SHA-512"
	SHA1Plus   = SHA1 + Plus
	SHA256Plus = SHA256 + Plus
	SHA512Plus = SHA512 + Plus
	Plus       = "-PLUS"
)

// Errors from Step. ErrMalformed maps to SASL <malformed-request/>,
// ErrAuthzid to <invalid-authzid/>, ErrNotAuthorized to <not-authorized/>.
var (
	ErrMalformed     = errors.New("scram: malformed message")
	ErrNotAuthorized = errors.New("scram: not authorized")
	// ErrBindingRefused is ErrNotAuthorized for a -PLUS attempt refused
	// for its channel binding (a type the stream does not offer, or none),
	// before any credential was looked at.
	ErrBindingRefused = fmt.Errorf("%w: channel binding refused", ErrNotAuthorized)
	ErrAuthzid        = errors.New("scram: invalid authzid")
)

// Hash returns the hash function of a mechanism (with or without -PLUS),
// or nil.
func Hash(mech string) func() hash.Hash {
	switch strings.TrimSuffix(mech, Plus) {
	case SHA1:
		return sha1.New
	case SHA256:
		return sha256.New
	case SHA512:
		return sha512.New
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

// Binding is what a server needs for channel binding (RFC 5802 section 6)
// on one stream.
type Binding struct {
	// Offered is true when the stream offered a -PLUS mechanism: a client
	// that says it could bind but thinks the server cannot ("y") is then
	// refused, as a stripped mechanism list means an attacker in the
	// middle.
	Offered bool
	// Data returns the channel-binding data of a type the stream offers,
	// or ok false for a type it does not offer. nil means none.
	Data func(typ string) (data []byte, ok bool)
	// Refused, if not nil, is called when the client asks for a type the
	// stream does not offer; RefusedBefore reports whether that happened
	// on the stream before, in which case "y" is accepted although -PLUS
	// was offered: the client saw -PLUS and could not use it, nobody
	// stripped it (saslmech.Stream.RefuseBinding).
	Refused       func()
	RefusedBefore func() bool
}

// Server runs one SCRAM exchange.
type Server struct {
	mech   string
	plus   bool
	h      func() hash.Hash
	lookup Lookup
	fake   func(username string) Keys
	cb     Binding
	ext    string // extension attributes of the server-first-message
	cbData []byte // the binding data the client must send after its gs2 header
	cbType string

	nonceSuffix string // the server's part of the nonce, set by tests; "" means random

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

// NewServer returns a server for mechanism mech (one of the names
// above). fake returns deterministic made-up keys for an unknown user. A
// -PLUS mechanism needs SetBinding; without it every client is refused.
func NewServer(mech string, lookup Lookup, fake func(username string) Keys) *Server {
	return &Server{mech: mech, plus: strings.HasSuffix(mech, Plus), h: Hash(mech), lookup: lookup, fake: fake}
}

// SetBinding sets the stream's channel binding, before the first Step.
func (s *Server) SetBinding(b Binding) { s.cb = b }

// SetDowngradeHash makes the server-first-message carry XEP-0474's "h"
// attribute with value v, before the first Step.
func (s *Server) SetDowngradeHash(v string) {
	s.ext = ""
	if v != "" {
		s.ext = ",h=" + v
	}
}

// Username returns the authenticated username after a successful exchange.
func (s *Server) Username() string { return s.username }

// ChannelBinding returns the channel-binding type the client chose, or
// "" for none.
func (s *Server) ChannelBinding() string { return s.cbType }

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
	case s.plus && (flag == "n" || flag == "y"):
		// A -PLUS mechanism without binding (RFC 5802 section 6): a
		// client that has none of the stream's types (tls-unique alone
		// on TLS 1.3). It saw -PLUS offered.
		if s.cb.Refused != nil {
			s.cb.Refused()
		}
		return nil, false, ErrBindingRefused
	case flag == "n":
	case flag == "y":
		// The client could bind but thinks we cannot: if we offered a
		// -PLUS mechanism, someone stripped it (RFC 5802 section 6).
		if s.cb.Offered && (s.cb.RefusedBefore == nil || !s.cb.RefusedBefore()) {
			return nil, false, ErrNotAuthorized
		}
	case len(flag) > 2 && flag[:2] == "p=":
		if !s.plus || s.cb.Data == nil || !cbName(flag[2:]) {
			return nil, false, ErrNotAuthorized
		}
		data, ok := s.cb.Data(flag[2:])
		if !ok {
			if s.cb.Refused != nil {
				s.cb.Refused()
			}
			return nil, false, ErrBindingRefused
		}
		s.cbData, s.cbType = data, flag[2:]
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
	suffix := s.nonceSuffix
	if suffix == "" {
		var rnd [18]byte
		if _, err := rand.Read(rnd[:]); err != nil {
			return nil, false, err
		}
		suffix = base64.StdEncoding.EncodeToString(rnd[:])
	}
	s.nonce = cn[2:] + suffix
	s.srvFirst = "r=" + s.nonce + ",s=" + base64.StdEncoding.EncodeToString(keys.Salt) +
		",i=" + strconv.Itoa(keys.Iterations) + s.ext
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
	if !ok || len(cb) < 2 || cb[:2] != "c=" {
		return nil, false, ErrMalformed
	}
	got, err := base64.StdEncoding.DecodeString(cb[2:])
	if err != nil {
		return nil, false, ErrMalformed
	}
	// The gs2 header again, then the binding data of a -PLUS exchange.
	// Other binding data means another TLS channel: a man in the middle.
	if len(got) < len(s.gs2) || string(got[:len(s.gs2)]) != s.gs2 {
		return nil, false, ErrMalformed
	}
	if subtle.ConstantTimeCompare(got[len(s.gs2):], s.cbData) != 1 {
		return nil, false, ErrNotAuthorized
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

// cbName reports whether s is a cb-name (RFC 5802 section 7).
func cbName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-') {
			return false
		}
	}
	return s != ""
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e || s[i] == ',' {
			return false
		}
	}
	return s != ""
}
