// Package fast implements XEP-0484: Fast Authentication Streamlining
// Tokens (version 0.2.0), with the HT-SHA-256-NONE and HT-SHA-256-EXPR
// SASL mechanisms of draft-schmaus-kitten-sasl-ht (the -09 wire format,
// which XEP-0484 cites and clients speak), as an inline extension of SASL2
// (package sasl2, XEP-0388).
//
// A client that logs in with its password asks for a token with
// <request-token mechanism='HT-SHA-256-NONE'/> and gets one in <success/>;
// it reconnects later in one round trip with that token, proving it holds
// it with an HMAC, never sending it. Tokens belong to one device, the
// SASL2 user agent id, and to the mechanism they were asked for.
//
// # Tokens are not stored
//
// HT mechanisms use the token itself as the HMAC key, so a server must be
// able to compute it: it cannot keep only a one-way hash, as it does for
// passwords. Instead the store keeps, per token, a random 128-bit ID, and
// the token is HMAC-SHA-256 of that ID, the user, the device and the
// mechanism under Module.Secret, a key kept outside the database (the
// community server keeps it in its own file). A copy of the database alone
// reveals no token and lets nobody log in; changing the secret revokes
// every token at once.
//
// # Rotation, replay, expiry, revocation
//
// Each device has two slots, as XEP-0484 section 6.1 suggests: Current,
// the token it last logged in with, and Next, the one handed out last and
// not used yet. A new token goes to Next; the previous one stays valid
// until the new one is first used (so a <success/> lost on the way does
// not lock the device out), and that first use moves it to Current,
// replacing the old one. A token older than Module.RotateAfter is replaced
// by a new one in the <success/> of a FAST login, unasked.
//
// A <fast count='N'/> must be higher than every count used with that token
// before, or the login fails (replay protection; the server does not offer
// TLS 0-RTT, where the XEP requires the count). A token past its expiry
// (Module.Expiry after it was issued) fails with <credentials-expired/>,
// and the client falls back to its password. <fast invalidate='true'/>
// logs the device out: both its tokens are gone. A password change
// (treff.Server.PasswordChanged) and account deletion remove all the
// user's tokens; Module.Revoke and the ad-hoc command remove one device's.
//
// # Wiring
//
// The same *Module goes into Server.Modules (for its hooks and ad-hoc
// command) and into the sasl2.Module's Inline list, after stream
// management's and Bind2's:
//
//	f := &fast.Module{Secret: secret, AdHoc: ah}
//	srv.Modules = append(srv.Modules, f, &sasl2.Module{Inline: []sasl2.Inline{..., f}})
package fast

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/adhoc"
	"github.com/treff-im/treff/bind2"
	"github.com/treff-im/treff/sasl2"
	"github.com/treff-im/treff/saslmech"
	"github.com/treff-im/treff/storage"
)

// NS is the XEP-0484 namespace.
const NS = "urn:xmpp:fast:0"

// The HT mechanisms offered. HT-SHA-256-UNIQ (tls-unique) is not: it is
// unsafe with TLS 1.2 renegotiation and undefined in TLS 1.3.
// HT-SHA-256-ENDP (tls-server-end-point) is not either: a SASL mechanism
// sees the TLS connection state, which on a server lacks its own
// certificate.
const (
	// MechNone is HT-SHA-256-NONE: no channel binding.
	MechNone = "HT-SHA-256-NONE"
	// MechExpr is HT-SHA-256-EXPR: tls-exporter channel binding (RFC
	// 9266), offered on streams whose TLS connection can export keying
	// material (TLS 1.3, or 1.2 with the extended master secret).
	MechExpr = "HT-SHA-256-EXPR"
)

// Defaults, the same as Prosody's mod_sasl2_fast.
const (
	DefaultExpiry      = 21 * 24 * time.Hour
	DefaultRotateAfter = 24 * time.Hour
)

// MaxAgentID is the longest user agent id (in bytes) FAST keeps tokens
// for; XEP-0388 suggests a UUID.
const MaxAgentID = 256

// Module offers FAST. The zero value with a server whose Storage
// implements storage.FastTokens works, with a secret made at start (so
// tokens do not survive a restart).
type Module struct {
	// Tokens keeps the devices and their token slots. nil means the
	// server's Storage, which must then implement storage.FastTokens.
	Tokens storage.FastTokens
	// Secret is the key tokens are derived from (see the package doc), at
	// least 16 bytes, kept outside the database. nil means a random one
	// made at Setup: every token becomes useless when the process ends.
	Secret []byte
	// Expiry is how long a token is valid after it was issued. 0 means
	// DefaultExpiry (21 days).
	Expiry time.Duration
	// RotateAfter is the age at which a token used to log in is replaced
	// by a new one. 0 means DefaultRotateAfter (1 day).
	RotateAfter time.Duration
	// AdHoc, if set, gets the command with which users list their devices
	// and revoke their tokens (NodeDevices); it must be among the
	// server's modules too.
	AdHoc *adhoc.Module
	// Now returns the current time. nil means time.Now.
	Now func() time.Time

	srv    *treff.Server
	tokens storage.FastTokens
	secret []byte
	log    *slog.Logger
	seed   maphash.Seed
	locks  [64]sync.Mutex // by user and agent: a device's logins one at a time
}

var (
	_ treff.Module       = (*Module)(nil)
	_ sasl2.Inline       = (*Module)(nil)
	_ sasl2.Mechanisms   = (*Module)(nil)
	_ saslmech.Mechanism = htMechanism{}
)

// Name implements treff.Module.
func (m *Module) Name() string { return "fast" }

// Setup implements treff.Module.
func (m *Module) Setup(ctx context.Context, r *treff.Registry) error {
	srv := r.Server()
	m.log = srv.Log()
	tokens := m.Tokens
	if tokens == nil {
		t, ok := srv.Storage.(storage.FastTokens)
		if !ok {
			return errors.New("fast: the server's Storage cannot keep FAST tokens; set Module.Tokens")
		}
		tokens = t
	}
	switch {
	case len(m.Secret) == 0:
		m.secret = make([]byte, 32)
		rand.Read(m.secret)
		m.log.Warn("fast: no secret configured; FAST tokens will not survive a restart")
	case len(m.Secret) < 16:
		return fmt.Errorf("fast: the secret has %d bytes, want at least 16", len(m.Secret))
	default:
		m.secret = slices.Clone(m.Secret)
	}
	// Set last: a module whose Setup failed offers nothing.
	m.tokens = tokens
	m.srv = srv
	m.seed = maphash.MakeSeed()
	r.OnAccountDeleted(m.forget)
	r.OnPasswordChanged(m.forget)
	if m.AdHoc != nil {
		m.AdHoc.Add(m.devicesCommand())
	}
	return nil
}

// forget removes every device of the user.
func (m *Module) forget(ctx context.Context, user jid.JID) error {
	return m.tokens.DeleteFastDevices(ctx, user.Bare().String())
}

func (m *Module) now() time.Time {
	if m.Now != nil {
		return m.Now().UTC()
	}
	return time.Now().UTC()
}

func (m *Module) expiry() time.Duration {
	if m.Expiry > 0 {
		return m.Expiry
	}
	return DefaultExpiry
}

func (m *Module) rotateAfter() time.Duration {
	if m.RotateAfter > 0 {
		return m.RotateAfter
	}
	return DefaultRotateAfter
}

// lock returns the lock of the user's device agent.
func (m *Module) lock(user, agent string) *sync.Mutex {
	var h maphash.Hash
	h.SetSeed(m.seed)
	h.WriteString(user)
	h.WriteByte(0)
	h.WriteString(agent)
	return &m.locks[h.Sum64()%uint64(len(m.locks))]
}

// token derives the token of slot t of the user's device agent.
func (m *Module) token(user, agent string, t storage.FastToken) string {
	h := hmac.New(sha256.New, m.secret)
	h.Write([]byte("treff FAST token\x00"))
	for _, s := range []string{user, agent, t.Mechanism} {
		h.Write(binary.AppendUvarint(nil, uint64(len(s))))
		h.Write([]byte(s))
	}
	h.Write(t.ID)
	// RFC 8959 marks it as a secret for scanners of logs and code.
	return "secret-token:fast-" + base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}

// offered returns the HT mechanisms offered on a stream with TLS state
// from s (nil s: none has channel binding), channel binding first.
func offered(s *saslmech.Stream) []string {
	if s != nil {
		if _, ok := cbData(MechExpr, s); ok {
			return []string{MechExpr, MechNone}
		}
	}
	return []string{MechNone}
}

// Inline implements sasl2.Inline: the <fast/> element listing the
// mechanisms the stream can use (none before Setup).
func (m *Module) Inline(n *treff.Negotiation) string {
	if m.tokens == nil {
		return ""
	}
	b := []byte("<fast xmlns='" + NS + "'>")
	for _, name := range offered(n.SASL()) {
		b = append(b, "<mechanism>"+name+"</mechanism>"...)
	}
	return string(append(b, "</fast>"...))
}

// Mechanism implements sasl2.Mechanisms.
func (m *Module) Mechanism(a *sasl2.Auth, name string) (saslmech.Mechanism, bool) {
	if m.tokens == nil || (name != MechNone && name != MechExpr) {
		return nil, false
	}
	return htMechanism{m: m, name: name}, true
}

// request is what FAST reads of one <authenticate/>.
type request struct {
	user      jid.JID
	agent     sasl2.UserAgent
	mechanism string // the SASL mechanism the client used
	// fast: the <fast/> element's count (if counted) and invalidate.
	counted    bool
	count      uint64
	invalidate bool
	// requestToken is <request-token/>'s mechanism, "" if none.
	requestToken string
	// offered are the FAST mechanisms offered on the stream.
	offered []string
	// bad explains a malformed FAST element, "" if none is.
	bad string
}

// readRequest reads the FAST elements of a.
func readRequest(a *sasl2.Auth) request {
	req := request{user: a.User, agent: a.UserAgent, mechanism: a.Mechanism}
	if a.N != nil {
		req.offered = offered(a.N.SASL())
	} else {
		req.offered = offered(nil)
	}
	if el, ok := a.Child(NS, "fast"); ok {
		if c, ok := el.Attr("count"); ok {
			n, err := strconv.ParseUint(c, 10, 63)
			if err != nil {
				req.bad = "the count of <fast/> is not a number"
			}
			req.counted, req.count = true, n
		}
		if v, ok := el.Attr("invalidate"); ok {
			req.invalidate = v == "true" || v == "1"
		}
	}
	if el, ok := a.Child(NS, "request-token"); ok {
		req.requestToken, _ = el.Attr("mechanism")
		if req.requestToken == "" {
			req.bad = "<request-token/> names no mechanism"
		}
	}
	return req
}

// Success implements sasl2.Inline: a new token in <token/> if the client
// asked for one or its token is due for rotation.
func (m *Module) Success(ctx context.Context, a *sasl2.Auth) (string, error) {
	return m.success(ctx, readRequest(a))
}

func (m *Module) success(ctx context.Context, req request) (string, error) {
	if m.tokens == nil {
		return "", nil
	}
	if req.bad != "" {
		return "", &sasl2.Failure{Condition: "malformed-request", Text: req.bad}
	}
	agent := req.agent.ID
	if agent == "" || len(agent) > MaxAgentID {
		if req.requestToken != "" {
			m.log.Debug("fast: token requested without a usable user agent id", "jid", req.user.Bare().String())
		}
		return "", nil
	}
	user := req.user.Bare().String()
	mech := req.requestToken
	if mech != "" && !slices.Contains(req.offered, mech) {
		m.log.Debug("fast: token requested for a mechanism not offered", "mechanism", mech)
		return "", nil
	}
	mu := m.lock(user, agent)
	mu.Lock()
	defer mu.Unlock()
	now := m.now()
	d, err := m.tokens.FastDevice(ctx, user, agent)
	if errors.Is(err, storage.ErrNotFound) {
		d, err = storage.FastDevice{Agent: agent}, nil
	}
	if err != nil {
		// The login stands; the client asks again next time.
		m.log.Error("fast: reading a device's tokens failed", "err", err)
		return "", nil
	}
	if mech == "" {
		// Rotation: only after a FAST login that kept its token.
		if !isHT(req.mechanism) || req.invalidate || len(d.Current.ID) == 0 || now.Sub(d.Current.Issued) < m.rotateAfter() {
			return "", nil
		}
		mech = d.Current.Mechanism
	}
	id := make([]byte, 16)
	rand.Read(id)
	d.Next = storage.FastToken{ID: id, Mechanism: mech, Issued: now, Expires: now.Add(m.expiry())}
	if req.agent.Software != "" || req.agent.Device != "" {
		d.Software, d.Device = req.agent.Software, req.agent.Device
	}
	d.LastUsed = now
	if err := m.tokens.PutFastDevice(ctx, user, d); err != nil {
		m.log.Error("fast: storing a new token failed", "err", err)
		return "", nil
	}
	return "<token xmlns='" + NS + "' expiry='" + d.Next.Expires.Format("2006-01-02T15:04:05Z") +
		"' token='" + m.token(user, agent, d.Next) + "'/>", nil
}

func isHT(mech string) bool { return mech == MechNone || mech == MechExpr }

// Devices returns the user's devices that hold FAST tokens, sorted by
// user agent id.
func (m *Module) Devices(ctx context.Context, user jid.JID) ([]storage.FastDevice, error) {
	if m.tokens == nil {
		return nil, errors.New("fast: module not set up")
	}
	return m.tokens.FastDevices(ctx, user.Bare().String())
}

// Revoke removes the tokens of the user's device agent and logs the
// device out: its sessions bound through Bind 2 (whose resource ends in
// the part derived from the user agent id, see bind2.Resource) end with
// <not-authorized/>, hibernating ones included, so that it cannot resume
// either. It returns an error wrapping storage.ErrNotFound if there is no
// such device.
func (m *Module) Revoke(ctx context.Context, user jid.JID, agent string) error {
	if m.tokens == nil {
		return errors.New("fast: module not set up")
	}
	u := user.Bare().String()
	mu := m.lock(u, agent)
	mu.Lock()
	defer mu.Unlock()
	if _, err := m.tokens.FastDevice(ctx, u, agent); err != nil {
		return err
	}
	if err := m.tokens.DeleteFastDevice(ctx, u, agent); err != nil {
		return err
	}
	gen := bind2.Resource(user, "", agent)
	for _, s := range m.srv.Sessions(user.Bare()) {
		if res := s.JID().Resourcepart(); res == gen || strings.HasSuffix(res, "/"+gen) {
			s.Close("not-authorized", "this device was logged out")
		}
	}
	return nil
}
