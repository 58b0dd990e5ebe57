package proxyproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"strconv"
)

// Command is what a header says about the connection.
type Command uint8

const (
	// Local: the proxy opened the connection itself (a health check);
	// the connection's own endpoints stand.
	Local Command = iota
	// Proxy: the connection is relayed for the client in Source.
	Proxy
)

// Header is a parsed PROXY protocol header.
type Header struct {
	Version int // 1 or 2
	Command Command
	// Source and Destination are the client's address and the address
	// it connected to (the proxy's), for a TCP connection over IPv4 or
	// IPv6 relayed with the Proxy command. They are not valid (IsValid
	// false) for a Local command, v1's UNKNOWN, or a v2 header for
	// another family or transport (unspecified, UNIX, UDP): the
	// connection's own endpoints stand for those.
	Source, Destination netip.AddrPort
}

// Errors of Parse. Their texts never hold any part of the input (they
// are logged, and the server logs no address).
var (
	// ErrIncomplete: the input is a valid beginning of a header; more
	// bytes are needed.
	ErrIncomplete = errors.New("proxyproto: incomplete header")
	// ErrNoHeader: the input does not start with a PROXY protocol
	// signature.
	ErrNoHeader = errors.New("proxyproto: no PROXY protocol header")
	// ErrMalformed: the input starts with a signature but is not a
	// valid header.
	ErrMalformed = errors.New("proxyproto: malformed header")
	// ErrTooLong: a version 2 header longer than the limit.
	ErrTooLong = errors.New("proxyproto: header too long")
)

const (
	// MaxV1 is the longest version 1 header, CRLF included (the
	// specification's bound: an IPv6 line is 104 bytes).
	MaxV1 = 107
	// v2Fixed is the size of a version 2 header's fixed part.
	v2Fixed = 16
	// DefaultMaxHeader is the default bound of a version 2 header,
	// address block and TLVs included. The specification's addresses
	// take at most 216 bytes; HAProxy's TLVs (ALPN, authority, unique
	// ID, TLS details) a few hundred more.
	DefaultMaxHeader = 1024
)

var (
	v1Sig = []byte("PROXY ")
	v2Sig = []byte("\r\n\r\n\x00\r\nQUIT\n")
)

// Parse parses the PROXY protocol header at the start of b, version 1
// (text) or 2 (binary), and returns it with its length in bytes. A
// version 2 header longer than max bytes (0 means DefaultMaxHeader) is
// ErrTooLong. The errors are ErrIncomplete (b is a valid beginning:
// read more), ErrNoHeader, ErrMalformed and ErrTooLong.
func Parse(b []byte, max int) (Header, int, error) {
	if max <= 0 {
		max = DefaultMaxHeader
	}
	switch {
	case len(b) == 0:
		return Header{}, 0, ErrIncomplete
	case hasPrefix(b, v1Sig):
		return parseV1(b)
	case hasPrefix(b, v2Sig):
		return parseV2(b, max)
	}
	return Header{}, 0, ErrNoHeader
}

// hasPrefix reports whether b starts with sig, or is a proper beginning
// of it (ErrIncomplete is then left to the parser).
func hasPrefix(b, sig []byte) bool {
	n := min(len(b), len(sig))
	return n > 0 && bytes.Equal(b[:n], sig[:n])
}

// IsPrefix reports whether b could be the start of a PROXY protocol
// header: it starts with a signature, or is the beginning of one.
func IsPrefix(b []byte) bool {
	return hasPrefix(b, v1Sig) || hasPrefix(b, v2Sig)
}

func parseV1(b []byte) (Header, int, error) {
	if len(b) < len(v1Sig) {
		return Header{}, 0, ErrIncomplete
	}
	end := bytes.Index(b[:min(len(b), MaxV1)], []byte("\r\n"))
	if end < 0 {
		if len(b) >= MaxV1 {
			return Header{}, 0, ErrMalformed
		}
		// A line holds printable ASCII only: no need to wait for the rest
		// of something else.
		for _, c := range b {
			if c != '\r' && (c < 0x20 || c > 0x7e) {
				return Header{}, 0, ErrMalformed
			}
		}
		return Header{}, 0, ErrIncomplete
	}
	line := string(b[len(v1Sig):end])
	n := end + 2
	h := Header{Version: 1, Command: Proxy}
	proto, rest, _ := cutSpace(line)
	switch proto {
	case "UNKNOWN":
		// The rest of the line is to be ignored (the proxy does not know
		// the client's protocol); the connection's endpoints stand.
		for i := 0; i < len(rest); i++ {
			if rest[i] < 0x20 || rest[i] > 0x7e {
				return Header{}, 0, ErrMalformed
			}
		}
		return h, n, nil
	case "TCP4", "TCP6":
	default:
		return Header{}, 0, ErrMalformed
	}
	var f [4]string
	for i := range f {
		var ok bool
		f[i], rest, ok = cutSpace(rest)
		if f[i] == "" || ok != (i < 3) {
			return Header{}, 0, ErrMalformed
		}
	}
	src, err1 := parseAddr(f[0], proto == "TCP4")
	dst, err2 := parseAddr(f[1], proto == "TCP4")
	sp, err3 := parsePort(f[2])
	dp, err4 := parsePort(f[3])
	if err1 != nil || err2 != nil || err3 != nil || err4 != nil {
		return Header{}, 0, ErrMalformed
	}
	h.Source = netip.AddrPortFrom(src, sp)
	h.Destination = netip.AddrPortFrom(dst, dp)
	return h, n, nil
}

// cutSpace cuts s at its first single space.
func cutSpace(s string) (before, after string, found bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == ' ' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

func parseAddr(s string, v4 bool) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" || a.Is4() != v4 {
		return netip.Addr{}, ErrMalformed
	}
	return a, nil
}

// parsePort parses a port in decimal, 0 to 65535, without leading
// zeros.
func parsePort(s string) (uint16, error) {
	if len(s) == 0 || len(s) > 5 || len(s) > 1 && s[0] == '0' {
		return 0, ErrMalformed
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, ErrMalformed
		}
	}
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0, ErrMalformed
	}
	return uint16(n), nil
}

// Address families and transports of version 2 (the high and low
// nibbles of the 14th byte).
const (
	famUnspec = 0x0
	famInet   = 0x1
	famInet6  = 0x2
	famUnix   = 0x3

	transUnspec = 0x0
	transStream = 0x1
	transDgram  = 0x2
)

func parseV2(b []byte, max int) (Header, int, error) {
	if len(b) < v2Fixed {
		return Header{}, 0, ErrIncomplete
	}
	verCmd, famTrans := b[12], b[13]
	if verCmd>>4 != 2 {
		return Header{}, 0, ErrMalformed
	}
	h := Header{Version: 2}
	switch verCmd & 0xf {
	case 0:
		h.Command = Local
	case 1:
		h.Command = Proxy
	default:
		return Header{}, 0, ErrMalformed
	}
	fam, trans := famTrans>>4, famTrans&0xf
	if fam > famUnix || trans > transDgram {
		return Header{}, 0, ErrMalformed
	}
	n := v2Fixed + int(binary.BigEndian.Uint16(b[14:16]))
	if n > max {
		return Header{}, 0, ErrTooLong
	}
	if len(b) < n {
		return Header{}, 0, ErrIncomplete
	}
	body := b[v2Fixed:n]
	var need int
	switch fam {
	case famInet:
		need = 12
	case famInet6:
		need = 36
	case famUnix:
		need = 216
	}
	if len(body) < need {
		return Header{}, 0, ErrMalformed
	}
	if h.Command == Local || trans != transStream {
		// A health check, or a connection whose endpoints are not TCP
		// addresses: the connection's own endpoints stand.
		return h, n, nil
	}
	switch fam {
	case famInet:
		src := netip.AddrFrom4([4]byte(body[0:4]))
		dst := netip.AddrFrom4([4]byte(body[4:8]))
		h.Source = netip.AddrPortFrom(src, binary.BigEndian.Uint16(body[8:10]))
		h.Destination = netip.AddrPortFrom(dst, binary.BigEndian.Uint16(body[10:12]))
	case famInet6:
		src := netip.AddrFrom16([16]byte(body[0:16]))
		dst := netip.AddrFrom16([16]byte(body[16:32]))
		h.Source = netip.AddrPortFrom(src, binary.BigEndian.Uint16(body[32:34]))
		h.Destination = netip.AddrPortFrom(dst, binary.BigEndian.Uint16(body[34:36]))
	}
	return h, n, nil
}

// Append appends h in the given version's format to b: what a proxy
// sends (for tests and for proxies written in Go). A Local command or
// a header without valid addresses becomes v1's UNKNOWN or v2's
// unspecified family.
func (h Header) Append(b []byte, version int) []byte {
	addrs := h.Command == Proxy && h.Source.IsValid() && h.Destination.IsValid() &&
		h.Source.Addr().Is4() == h.Destination.Addr().Is4()
	if version == 1 {
		if !addrs {
			return append(b, "PROXY UNKNOWN\r\n"...)
		}
		proto := "TCP6 "
		if h.Source.Addr().Is4() {
			proto = "TCP4 "
		}
		b = append(b, "PROXY "+proto...)
		b = h.Source.Addr().AppendTo(b)
		b = append(b, ' ')
		b = h.Destination.Addr().AppendTo(b)
		b = append(b, ' ')
		b = strconv.AppendUint(b, uint64(h.Source.Port()), 10)
		b = append(b, ' ')
		b = strconv.AppendUint(b, uint64(h.Destination.Port()), 10)
		return append(b, "\r\n"...)
	}
	b = append(b, v2Sig...)
	cmd := byte(0x20)
	if h.Command == Proxy {
		cmd |= 1
	}
	if !addrs {
		return append(b, cmd, 0, 0, 0)
	}
	if h.Source.Addr().Is4() {
		b = append(b, cmd, famInet<<4|transStream, 0, 12)
		s, d := h.Source.Addr().As4(), h.Destination.Addr().As4()
		b = append(b, s[:]...)
		b = append(b, d[:]...)
	} else {
		b = append(b, cmd, famInet6<<4|transStream, 0, 36)
		s, d := h.Source.Addr().As16(), h.Destination.Addr().As16()
		b = append(b, s[:]...)
		b = append(b, d[:]...)
	}
	b = binary.BigEndian.AppendUint16(b, h.Source.Port())
	return binary.BigEndian.AppendUint16(b, h.Destination.Port())
}
