package bosh

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/internal/xmlscan"
)

// FuzzParseBody checks what the handler takes from a request body. For
// every body parseBody accepts:
//   - it is a <body/> in the httpbind namespace, as encoding/xml reads it
//     with namespaces resolved, and encoding/xml accepts it;
//   - xboshAttr finds exactly the attributes in the XEP-0206 namespace
//     that encoding/xml finds, whatever the prefix;
//   - its content, appended to the session's stream, is read by the
//     session layer's scanner as the body's children, never as the end of
//     the stream or a new one;
//   - the 'ver' the handler answers is a version no higher than ours;
//   - the stream header and the session creation response built from its
//     'to' and 'xml:lang' carry them back unchanged.
func FuzzParseBody(f *testing.F) {
	for _, s := range []string{
		`<body xmlns='http://jabber.org/protocol/httpbind' rid='1' to='example.org' xml:lang='en' ver='1.6' wait='60' hold='1' xmpp:version='1.0' xmlns:xmpp='urn:xmpp:xbosh'/>`,
		`<?xml version='1.0'?><body xmlns="http://jabber.org/protocol/httpbind" rid="2" sid="s"><message to='a@b'><body>hi</body></message><presence/></body>`,
		`<body xmlns='http://jabber.org/protocol/httpbind' rid='3' sid='s' x:restart='true' xmlns:x='urn:xmpp:xbosh' to='b&amp;c'/>`,
		`<body xmlns='http://jabber.org/protocol/httpbind' rid='4' sid='s' type='terminate'><presence type='unavailable'/></body>`,
		`<body xmlns='http://jabber.org/protocol/httpbind' rid='5' sid='s'>text<iq/></body>`,
		`<body xmlns='http://jabber.org/protocol/httpbind' rid='6' ver='1.-5' to='a&#9;b'/>`,
		`<body xmlns='urn:wrong' rid='7'/>`,
		`<b:body xmlns:b='http://jabber.org/protocol/httpbind' rid='8'/>`,
		`<body xmlns='http://jabber.org/protocol/httpbind' rid='9' sid='s' pause='30'/>`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		el, err := parseBody(data, 4096, 0)
		if err != nil {
			return
		}
		if el.Name != "body" || el.NS() != NS {
			t.Fatalf("parseBody accepted <%s xmlns=%q>", el.Name, el.NS())
		}
		// encoding/xml, with namespaces resolved.
		doc := bytes.TrimSpace(data)
		if bytes.HasPrefix(doc, []byte("<?xml")) {
			doc = doc[bytes.Index(doc, []byte("?>"))+2:]
		}
		d := xml.NewDecoder(bytes.NewReader(doc))
		d.Strict = true
		var start xml.StartElement
		children := 0
		depth := 0
		for {
			tok, err := d.Token()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("parseBody accepted %q, encoding/xml says %v", data, err)
			}
			switch tok := tok.(type) {
			case xml.StartElement:
				if depth == 0 {
					start = tok.Copy()
				} else if depth == 1 {
					children++
				}
				depth++
			case xml.EndElement:
				depth--
			}
		}
		if start.Name != (xml.Name{Space: NS, Local: "body"}) {
			t.Fatalf("parseBody accepted %q, encoding/xml reads %v", data, start.Name)
		}
		for _, local := range []string{"restart", "version", "restartlogic"} {
			got, gotOK := xboshAttr(el, local)
			want, wantOK := "", false
			for _, a := range start.Attr {
				if a.Name == (xml.Name{Space: NSXBOSH, Local: local}) {
					want, wantOK = a.Value, true
				}
			}
			if gotOK != wantOK || normSpace(got) != normSpace(want) {
				t.Fatalf("%q: xboshAttr(%q) = %q %v, encoding/xml %q %v", data, local, got, gotOK, want, wantOK)
			}
		}

		// The content as the session layer reads it.
		s := &session{host: attr(el, "to"), lang: attr(el, "xml:lang")}
		sc := xmlscan.NewScanner(strings.NewReader(s.header()+el.Inner()), 1<<20)
		if _, err := sc.Header(); err != nil {
			t.Fatalf("header %q for %q: %v", s.header(), data, err)
		}
		for n := 0; ; n++ {
			_, err := sc.Next()
			if errors.Is(err, io.EOF) {
				if n != children {
					t.Fatalf("%q: the stream reads %d elements, the body has %d children", data, n, children)
				}
				break
			}
			if err != nil {
				// Text between the children, or a prefix declared on
				// the body only: a stream error for the session, never
				// a different stream.
				if errors.Is(err, xmlscan.ErrStreamEnd) || n > children {
					t.Fatalf("%q: after %d elements: %v", data, n, err)
				}
				break
			}
		}

		ver := version(attr(el, "ver"))
		if !regexp.MustCompile(`^[0-9]+\.[0-9]+$`).MatchString(ver) {
			t.Fatalf("ver=%q answered as %q", attr(el, "ver"), ver)
		}
		maj, min, _ := strings.Cut(ver, ".")
		a, _ := strconv.Atoi(maj)
		b, _ := strconv.Atoi(min)
		if a > 1 || a == 1 && b > 11 {
			t.Fatalf("ver=%q answered as %q, above %s", attr(el, "ver"), ver, Version)
		}

		if strings.ContainsAny(s.host+s.lang, "\t\n\r") {
			return // as above
		}
		hdr, err := xmlscan.NewScanner(strings.NewReader(s.header()), 0).Header()
		if err != nil {
			t.Fatalf("header %q: %v", s.header(), err)
		}
		if v, _ := hdr.Attr("to"); v != s.host {
			t.Fatalf("header %q: to %q, want %q", s.header(), v, s.host)
		}
		if v, ok := hdr.Attr("xml:lang"); v != s.lang || ok != (s.lang != "") {
			t.Fatalf("header %q: xml:lang %q, want %q", s.header(), v, s.lang)
		}
		s.sid, s.ver, s.wait, s.requests, s.streamID = "sid", ver, time.Minute, 2, s.lang
		r := &request{creation: true, done: make(chan struct{})}
		s.answerLocked(r, []byte("<stream:features xmlns:stream='http://etherx.jabber.org/streams'/>"), false)
		resp, err := parseBody(r.resp, 0, 0)
		if err != nil {
			t.Fatalf("creation response %q: %v", r.resp, err)
		}
		if attr(resp, "from") != s.host || attr(resp, "ver") != ver || attr(resp, "authid") != s.streamID || attr(resp, "sid") != "sid" {
			t.Fatalf("creation response %q for %q", r.resp, data)
		}
	})
}

// FuzzServeHTTP posts a body to a session that does not exist: the
// answer is always a terminate body, bad-request exactly when the body
// or its rid is not acceptable, item-not-found otherwise.
func FuzzServeHTTP(f *testing.F) {
	for _, s := range []string{
		`<body xmlns='http://jabber.org/protocol/httpbind' rid='10' sid='nosuch'/>`,
		`<body xmlns='http://jabber.org/protocol/httpbind' rid='0' sid='nosuch'/>`,
		`<body xmlns='http://jabber.org/protocol/httpbind' rid='9007199254740992' sid='x'/>`,
		`<body xmlns='http://jabber.org/protocol/httpbind' rid='-1' sid='x'/>`,
		`<body xmlns='http://jabber.org/protocol/httpbind' rid='+5' sid='x'/>`,
		`<body rid='1' sid='x'/>`,
		`not xml`,
	} {
		f.Add([]byte(s))
	}
	h := &Handler{Server: &treff.Server{}, MaxBodySize: 4096}
	re := regexp.MustCompile(`^<body xmlns='http://jabber.org/protocol/httpbind' type='terminate' condition='([a-z-]+)'/>$`)
	f.Fuzz(func(t *testing.T, data []byte) {
		el, perr := parseBody(data, 4096, 0)
		badRID := true
		if perr == nil {
			if _, ok := el.Attr("sid"); !ok {
				return // would create a session
			}
			rid, err := strconv.ParseUint(attr(el, "rid"), 10, 64)
			badRID = err != nil || rid == 0 || rid > maxRID
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/http-bind", bytes.NewReader(data)))
		if w.Code != http.StatusOK || w.Header().Get("Content-Type") != "text/xml; charset=utf-8" {
			t.Fatalf("%q: status %d, Content-Type %q", data, w.Code, w.Header().Get("Content-Type"))
		}
		m := re.FindStringSubmatch(w.Body.String())
		if m == nil {
			t.Fatalf("%q: response %q", data, w.Body)
		}
		want := "item-not-found"
		if len(data) > 4096 {
			want = "policy-violation"
		} else if perr != nil || badRID {
			want = "bad-request"
		}
		if m[1] != want {
			t.Fatalf("%q: condition %q, want %q", data, m[1], want)
		}
		if _, err := parseBody(w.Body.Bytes(), 0, 0); err != nil {
			t.Fatalf("response %q: %v", w.Body, err)
		}
	})
}

func normSpace(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\t' || r == '\n' || r == '\r' {
			return ' '
		}
		return r
	}, s)
}

// Found by FuzzParseBody: a signed 'ver' was answered as is.
func TestVersionSigned(t *testing.T) {
	for in, want := range map[string]string{
		"1.-5": Version, "-1.0": Version, "+1.5": Version, "1.+5": Version,
		"1.6": "1.6", "0.9": "0.9", "1.11": "1.11", "2.0": Version, "1.011": Version,
	} {
		if got := version(in); got != want {
			t.Errorf("version(%q) = %q, want %q", in, got, want)
		}
	}
}
