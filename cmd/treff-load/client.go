package main

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"html"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"mellium.im/sasl"

	"github.com/treff-im/treff/internal/xmlscan"
)

// client is one XMPP client connection.
type client struct {
	conn net.Conn
	sc   *xmlscan.Scanner
	jid  string // full JID after bind
	sm   bool   // stream management enabled
	smID string // its resumption id
	h    uint32 // stanzas received since, for XEP-0198 acknowledgements
	wmu  sync.Mutex
	w    *bufio.Writer
}

func (cl *client) send(s string) error {
	cl.wmu.Lock()
	defer cl.wmu.Unlock()
	cl.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := cl.w.WriteString(s); err != nil {
		return err
	}
	return cl.w.Flush()
}

// acks answers stream management for an element the client read: it
// counts stanzas and answers the server's <r/>. It reports whether el was
// a stream management element.
func (cl *client) acks(el *xmlscan.Element) bool {
	if !cl.sm {
		return false
	}
	switch el.Local() {
	case "message", "presence", "iq":
		cl.h++
		return false
	case "r":
		cl.send("<a xmlns='urn:xmpp:sm:3' h='" + strconv.FormatUint(uint64(cl.h), 10) + "'/>")
		return true
	case "a":
		return true
	}
	return false
}

// close ends the stream and the connection.
func (cl *client) close() {
	cl.send("</stream:stream>")
	cl.conn.Close()
}

// expect reads elements until one with one of the given names arrives.
func (cl *client) expect(names ...string) (*xmlscan.Element, error) {
	for i := 0; i < 100; i++ {
		el, err := cl.sc.Next()
		if err != nil {
			return nil, err
		}
		for _, n := range names {
			if el.Local() == n {
				return el, nil
			}
		}
	}
	return nil, errors.New("too many unexpected elements")
}

func header(domain string) string {
	return "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='" + domain + "' version='1.0'>"
}

// open sends a stream header and reads the server's header and features.
func (cl *client) open(domain string) (*xmlscan.Element, error) {
	if err := cl.send(header(domain)); err != nil {
		return nil, err
	}
	if _, err := cl.sc.Header(); err != nil {
		return nil, err
	}
	return cl.expect("features")
}

// connect dials the server and runs STARTTLS; it returns the client with
// the features of the encrypted stream and a deadline of c.timeout set.
func connect(c config) (*client, *xmlscan.Element, error) {
	d := net.Dialer{Timeout: c.timeout, LocalAddr: c.localAddr()}
	conn, err := d.Dial("tcp", c.addr)
	if err != nil {
		return nil, nil, err
	}
	conn.SetDeadline(time.Now().Add(c.timeout))
	cl := &client{conn: conn, w: bufio.NewWriter(conn), sc: xmlscan.NewScanner(conn, 1<<20)}
	fail := func(err error) (*client, *xmlscan.Element, error) { conn.Close(); return nil, nil, err }
	if _, err := cl.open(c.domain); err != nil {
		return fail(fmt.Errorf("stream: %w", err))
	}
	if err := cl.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"); err != nil {
		return fail(err)
	}
	if _, err := cl.expect("proceed"); err != nil {
		return fail(fmt.Errorf("starttls: %w", err))
	}
	tc := tls.Client(conn, c.tlsConfig())
	if err := tc.Handshake(); err != nil {
		return fail(fmt.Errorf("tls: %w", err))
	}
	cl.conn, cl.w = tc, bufio.NewWriter(tc)
	cl.sc.Reset(tc)
	f, err := cl.open(c.domain)
	if err != nil {
		return fail(err)
	}
	return cl, f, nil
}

// sessionCache keeps TLS sessions for -tls-resume, shared by all clients.
var sessionCache = tls.NewLRUClientSessionCache(100000)

func (c *config) tlsConfig() *tls.Config {
	tc := &tls.Config{ServerName: c.domain, InsecureSkipVerify: c.insecure, MinVersion: tls.VersionTLS12}
	if c.tlsResume {
		tc.ClientSessionCache = sessionCache
	}
	return tc
}

// login connects, runs STARTTLS, SASL and bind, and sends presence (unless
// it is empty). The returned client has no deadline set.
func login(c config, user, presence string) (*client, error) {
	c.addr = c.addrFor(user)
	cl, _, err := connect(c)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*client, error) { cl.conn.Close(); return nil, err }
	if c.sasl2 || c.fast {
		if err := cl.sasl2Login(c, user, nil); err != nil {
			return fail(fmt.Errorf("sasl2: %w", err))
		}
	} else {
		if err := cl.bindLegacy(c, user); err != nil {
			return fail(err)
		}
	}
	if c.sm && !cl.sm {
		if err := cl.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>"); err != nil {
			return fail(err)
		}
		el, err := cl.expect("enabled", "failed")
		if err != nil || el.Local() != "enabled" {
			return fail(fmt.Errorf("stream management: %v", err))
		}
		cl.sm = true
		cl.smID, _ = el.Attr("id")
	}
	if c.carbons {
		if err := cl.send("<iq type='set' id='carbons'><enable xmlns='urn:xmpp:carbons:2'/></iq>"); err != nil {
			return fail(err)
		}
		for i := 0; i < 10; i++ {
			el, err := cl.expect("iq")
			if err != nil {
				return fail(fmt.Errorf("carbons: %v", err))
			}
			if id, _ := el.Attr("id"); id == "carbons" {
				if t, _ := el.Attr("type"); t != "result" {
					return fail(fmt.Errorf("carbons refused: %s", el.Raw))
				}
				break
			}
		}
	}
	if presence != "" {
		if err := cl.send(presence); err != nil {
			return fail(err)
		}
	}
	cl.conn.SetDeadline(time.Time{})
	return cl, nil
}

// reconnect drops prev's connection without closing its stream, connects
// again and resumes the stream (XEP-0198): inline in SASL2 with -sasl2 or
// -fast, after RFC 6120 SASL and the stream restart otherwise.
func reconnect(c config, user string, prev *client) (*client, error) {
	if prev.smID == "" {
		return nil, errors.New("the server offered no resumption id")
	}
	prev.conn.Close()
	c.addr = c.addrFor(user)
	cl, _, err := connect(c)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*client, error) { cl.conn.Close(); return nil, err }
	if c.sasl2 || c.fast {
		if err := cl.sasl2Login(c, user, prev); err != nil {
			return fail(fmt.Errorf("sasl2: %w", err))
		}
	} else {
		if err := cl.auth(c, user); err != nil {
			return fail(fmt.Errorf("sasl: %w", err))
		}
		cl.sc.Restart()
		if _, err := cl.open(c.domain); err != nil {
			return fail(err)
		}
		if err := cl.send(resumeElement(prev)); err != nil {
			return fail(err)
		}
		el, err := cl.expect("resumed", "failed")
		if err != nil || el.Local() != "resumed" {
			return fail(fmt.Errorf("resume: %v %s", err, elRaw(el)))
		}
	}
	cl.jid, cl.sm, cl.smID, cl.h = prev.jid, true, prev.smID, prev.h
	cl.conn.SetDeadline(time.Time{})
	return cl, nil
}

func resumeElement(prev *client) string {
	return "<resume xmlns='urn:xmpp:sm:3' previd='" + html.EscapeString(prev.smID) + "' h='" + strconv.FormatUint(uint64(prev.h), 10) + "'/>"
}

func elRaw(el *xmlscan.Element) string {
	if el == nil {
		return ""
	}
	return el.Raw
}

// bindLegacy runs RFC 6120 SASL, the stream restart and the bind IQ.
func (cl *client) bindLegacy(c config, user string) error {
	if err := cl.auth(c, user); err != nil {
		return fmt.Errorf("sasl: %w", err)
	}
	cl.sc.Restart()
	if _, err := cl.open(c.domain); err != nil {
		return err
	}
	if err := cl.send("<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>load</resource></bind></iq>"); err != nil {
		return err
	}
	el, err := cl.expect("iq")
	if err != nil || !strings.Contains(el.Raw, "<jid>") {
		return fmt.Errorf("bind: %v", err)
	}
	j := el.Raw[strings.Index(el.Raw, "<jid>")+5:]
	cl.jid = j[:strings.Index(j, "<")]
	return nil
}

func (cl *client) auth(c config, user string) error {
	mech, err := mechanism(c.mech)
	if err != nil {
		return err
	}
	neg := sasl.NewClient(mech, sasl.Credentials(func() ([]byte, []byte, []byte) {
		return []byte(user), []byte(c.password), nil
	}))
	_, resp, err := neg.Step(nil)
	if err != nil {
		return err
	}
	if err := cl.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='" + c.mech + "'>" + base64.StdEncoding.EncodeToString(resp) + "</auth>"); err != nil {
		return err
	}
	for i := 0; i < 5; i++ {
		el, err := cl.expect("challenge", "success", "failure")
		if err != nil {
			return err
		}
		data, _ := base64.StdEncoding.DecodeString(strings.TrimSpace(el.Inner()))
		switch el.Local() {
		case "failure":
			return errors.New("authentication failed")
		case "success":
			if len(data) > 0 {
				if _, _, err := neg.Step(data); err != nil {
					return fmt.Errorf("server signature: %w", err)
				}
			}
			return nil
		}
		_, resp, err := neg.Step(data)
		if err != nil {
			return err
		}
		if err := cl.send("<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>" + base64.StdEncoding.EncodeToString(resp) + "</response>"); err != nil {
			return err
		}
	}
	return errors.New("too many SASL steps")
}

// register creates an account with in-band registration (XEP-0077). An
// account that exists already (conflict) is not an error: its password is
// checked when the run logs in.
func register(c config, user string) error {
	c.addr = c.addrFor(user)
	cl, _, err := connect(c)
	if err != nil {
		return err
	}
	defer cl.close()
	if err := cl.send("<iq type='set' id='reg'><query xmlns='jabber:iq:register'><username>" + user +
		"</username><password>" + html.EscapeString(c.password) + "</password></query></iq>"); err != nil {
		return err
	}
	el, err := cl.expect("iq")
	if err != nil {
		return fmt.Errorf("register %s: %w", user, err)
	}
	if t, _ := el.Attr("type"); t != "result" && !strings.Contains(el.Raw, "<conflict") {
		return fmt.Errorf("register %s: %s", user, el.Raw)
	}
	return nil
}

// unregister removes the account of a logged-in client (XEP-0077 section 3.2).
func (cl *client) unregister() error {
	cl.conn.SetDeadline(time.Now().Add(10 * time.Second))
	if err := cl.send("<iq type='set' id='unreg'><query xmlns='jabber:iq:register'><remove/></query></iq>"); err != nil {
		return err
	}
	for i := 0; i < 1000; i++ {
		el, err := cl.sc.Next()
		if err != nil {
			return err
		}
		if id, _ := el.Attr("id"); el.Local() == "iq" && id == "unreg" {
			if t, _ := el.Attr("type"); t != "result" {
				return fmt.Errorf("remove account: %s", el.Raw)
			}
			return nil
		}
	}
	return errors.New("remove account: no answer")
}

// relayConnect opens a direct-TLS connection to a raw relay and sends a
// stream header, which the relay hands to the partner connection.
func relayConnect(c config, user string) (*client, error) {
	c.addr = c.addrFor(user)
	d := &net.Dialer{Timeout: c.timeout, LocalAddr: c.localAddr()}
	conn, err := tls.DialWithDialer(d, "tcp", c.addr, c.tlsConfig())
	if err != nil {
		return nil, err
	}
	cl := &client{conn: conn, w: bufio.NewWriter(conn), sc: xmlscan.NewScanner(conn, 1<<20), jid: user + "@" + c.domain + "/load"}
	if err := cl.send(header(c.domain)); err != nil {
		conn.Close()
		return nil, err
	}
	return cl, nil
}
