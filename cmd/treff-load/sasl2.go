package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"html"
	"regexp"
	"strings"
	"sync"

	"mellium.im/sasl"
)

// Modern login (-sasl2, -fast): XEP-0388 SASL2 with XEP-0386 Bind 2 in
// one <authenticate/>, no stream restart and no bind IQ; with -fast, the
// first login of each user asks for a XEP-0484 token and later ones use
// it (HT-SHA-256-NONE: one message, no password hashing), as a phone's
// reconnects do.

// fastTokens are the users' FAST tokens, with the count of their next
// use (replay protection).
var fastTokens sync.Map // user -> *fastToken

type fastToken struct {
	mu    sync.Mutex
	token string
	count int
}

var tokenRE = regexp.MustCompile(`<token xmlns='urn:xmpp:fast:0'[^>]*\btoken='([^']+)'`)

// userAgent is a stable UUID for the user's one device.
func userAgent(user string) string {
	h := sha256.Sum256([]byte("treff-load " + user))
	h[6] = h[6]&0x0f | 0x40 // version 4
	h[8] = h[8]&0x3f | 0x80 // variant
	return fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}

var (
	enabledRE = regexp.MustCompile(`<enabled xmlns='urn:xmpp:sm:3'[^>]*\bid='([^']+)'`)
	successRE = regexp.MustCompile(`<additional-data>([^<]*)</additional-data>`)
	authzidRE = regexp.MustCompile(`<authorization-identifier>([^<]+)</authorization-identifier>`)
)

// sasl2Login authenticates and binds in SASL2 and sets cl.jid; with c.sm
// stream management is enabled in Bind 2. With prev, it resumes prev's
// stream inline instead of binding.
func (cl *client) sasl2Login(c config, user string, prev *client) error {
	inline := "<user-agent id='" + userAgent(user) + "'><software>treff-load</software></user-agent>"
	if prev != nil {
		inline += resumeElement(prev)
	} else {
		inline += "<bind xmlns='urn:xmpp:bind:0'><tag>load</tag>"
		if c.sm {
			inline += "<enable xmlns='urn:xmpp:sm:3' resume='true'/>"
		}
		inline += "</bind>"
	}

	var tok *fastToken
	if c.fast {
		v, _ := fastTokens.LoadOrStore(user, &fastToken{})
		tok = v.(*fastToken)
		tok.mu.Lock()
		defer tok.mu.Unlock()
	}
	var mech, first string
	var neg *sasl.Negotiator
	if tok != nil && tok.token != "" {
		// HT-SHA-256-NONE: authcid NUL HMAC-SHA-256(token, "Initiator").
		mech = "HT-SHA-256-NONE"
		first = user + "\x00" + string(htHash(tok.token, "Initiator"))
		inline += fmt.Sprintf("<fast xmlns='urn:xmpp:fast:0' count='%d'/>", tok.count)
		tok.count++
	} else {
		m, err := mechanism(c.mech)
		if err != nil {
			return err
		}
		neg = sasl.NewClient(m, sasl.Credentials(func() ([]byte, []byte, []byte) {
			return []byte(user), []byte(c.password), nil
		}))
		_, resp, err := neg.Step(nil)
		if err != nil {
			return err
		}
		mech, first = c.mech, string(resp)
		if tok != nil {
			inline += "<request-token xmlns='urn:xmpp:fast:0' mechanism='HT-SHA-256-NONE'/>"
		}
	}
	if err := cl.send("<authenticate xmlns='urn:xmpp:sasl:2' mechanism='" + mech + "'><initial-response>" +
		base64.StdEncoding.EncodeToString([]byte(first)) + "</initial-response>" + inline + "</authenticate>"); err != nil {
		return err
	}
	for i := 0; i < 5; i++ {
		el, err := cl.expect("challenge", "success", "failure")
		if err != nil {
			return err
		}
		switch el.Local() {
		case "failure":
			return fmt.Errorf("SASL2 %s failed: %s", mech, el.Raw)
		case "success":
			if neg != nil {
				if m := successRE.FindStringSubmatch(el.Raw); m != nil {
					data, _ := base64.StdEncoding.DecodeString(m[1])
					if _, _, err := neg.Step(data); err != nil {
						return fmt.Errorf("server signature: %w", err)
					}
				}
			}
			if prev != nil {
				if !strings.Contains(el.Raw, "<resumed xmlns='urn:xmpp:sm:3'") {
					return fmt.Errorf("SASL2 did not resume the stream: %s", el.Raw)
				}
			} else {
				m := authzidRE.FindStringSubmatch(el.Raw)
				if m == nil || !strings.Contains(m[1], "/") {
					return fmt.Errorf("SASL2: no bound JID in %s", el.Raw)
				}
				cl.jid = html.UnescapeString(m[1])
				if c.sm {
					e := enabledRE.FindStringSubmatch(el.Raw)
					if e == nil {
						return fmt.Errorf("Bind 2 did not enable stream management: %s", el.Raw)
					}
					cl.sm, cl.smID = true, html.UnescapeString(e[1])
				}
			}
			if tok != nil {
				if t := tokenRE.FindStringSubmatch(el.Raw); t != nil {
					tok.token, tok.count = html.UnescapeString(t[1]), 0
				}
			}
			return nil
		}
		if neg == nil {
			return errors.New("a challenge in HT-SHA-256-NONE")
		}
		data, _ := base64.StdEncoding.DecodeString(strings.TrimSpace(el.Inner()))
		_, resp, err := neg.Step(data)
		if err != nil {
			return err
		}
		if err := cl.send("<response xmlns='urn:xmpp:sasl:2'>" + base64.StdEncoding.EncodeToString(resp) + "</response>"); err != nil {
			return err
		}
	}
	return errors.New("too many SASL2 steps")
}

func htHash(token, label string) []byte {
	h := hmac.New(sha256.New, []byte(token))
	h.Write([]byte(label))
	return h.Sum(nil)
}

func mechanism(name string) (sasl.Mechanism, error) {
	switch name {
	case "PLAIN":
		return sasl.Plain, nil
	case "SCRAM-SHA-1":
		return sasl.ScramSha1, nil
	case "SCRAM-SHA-256":
		return sasl.ScramSha256, nil
	}
	return sasl.Mechanism{}, fmt.Errorf("unknown mechanism %s", name)
}
