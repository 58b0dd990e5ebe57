package proxyproto

import (
	"bytes"
	"encoding/hex"
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func hexb(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

const sig2 = "0d0a0d0a000d0a515549540a"

func TestParseValid(t *testing.T) {
	ap := netip.MustParseAddrPort
	for _, tc := range []struct {
		name string
		in   []byte
		want Header
	}{
		{"v1 tcp4", []byte("PROXY TCP4 192.0.2.7 198.51.100.1 56324 5222\r\n"),
			Header{1, Proxy, ap("192.0.2.7:56324"), ap("198.51.100.1:5222")}},
		{"v1 tcp6", []byte("PROXY TCP6 2001:db8::7 2001:db8::1 65535 0\r\n"),
			Header{1, Proxy, ap("[2001:db8::7]:65535"), ap("[2001:db8::1]:0")}},
		{"v1 longest", []byte("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"),
			Header{1, Proxy, ap("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"), ap("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535")}},
		{"v1 unknown", []byte("PROXY UNKNOWN\r\n"), Header{Version: 1, Command: Proxy}},
		{"v1 unknown with addresses", []byte("PROXY UNKNOWN ffff:: ffff:: 1 2\r\n"), Header{Version: 1, Command: Proxy}},
		// HAProxy's own example (its documentation of version 2).
		{"v2 tcp4", hexb(sig2 + "21 11 000c ac130001 ac130003 a652 0050"),
			Header{2, Proxy, ap("172.19.0.1:42578"), ap("172.19.0.3:80")}},
		{"v2 tcp6", hexb(sig2 + "21 21 0024 20010db8000000000000000000000007 20010db8000000000000000000000001 1388 1466"),
			Header{2, Proxy, ap("[2001:db8::7]:5000"), ap("[2001:db8::1]:5222")}},
		{"v2 local", hexb(sig2 + "20 00 0000"), Header{Version: 2, Command: Local}},
		{"v2 local with addresses", hexb(sig2 + "20 11 000c 7f000001 7f000001 0001 0002"), Header{Version: 2, Command: Local}},
		{"v2 unspec", hexb(sig2 + "21 00 0000"), Header{Version: 2, Command: Proxy}},
		{"v2 udp", hexb(sig2 + "21 12 000c ac130001 ac130003 a652 0050"), Header{Version: 2, Command: Proxy}},
		{"v2 unix", append(hexb(sig2+"21 31 00d8"), make([]byte, 216)...), Header{Version: 2, Command: Proxy}},
		{"v2 tlv", hexb(sig2 + "21 11 0013 ac130001 ac130003 a652 0050 01 0004 78 6d 70 70"),
			Header{2, Proxy, ap("172.19.0.1:42578"), ap("172.19.0.3:80")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := append(append([]byte{}, tc.in...), "<?xml"...)
			h, n, err := Parse(in, 0)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if h != tc.want || n != len(tc.in) {
				t.Errorf("Parse = %+v, %d; want %+v, %d", h, n, tc.want, len(tc.in))
			}
			// Every proper beginning asks for more.
			for i := 1; i < len(tc.in); i++ {
				if _, _, err := Parse(tc.in[:i], 0); err != ErrIncomplete {
					t.Fatalf("Parse of the first %d bytes: %v, want ErrIncomplete", i, err)
				}
			}
		})
	}
}

func TestParseInvalid(t *testing.T) {
	long := append(hexb(sig2+"21 11 0400"), make([]byte, 0x400)...)
	for _, tc := range []struct {
		name string
		in   []byte
		want error
	}{
		{"xmpp", []byte("<?xml version='1.0'?>"), ErrNoHeader},
		{"tls", hexb("16030100"), ErrNoHeader},
		{"empty", nil, ErrIncomplete},
		{"v1 lowercase", []byte("proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n"), ErrNoHeader},
		{"v1 family", []byte("PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n"), ErrMalformed},
		{"v1 tcp4 with ipv6", []byte("PROXY TCP4 ::1 ::1 1 2\r\n"), ErrMalformed},
		{"v1 tcp6 with ipv4", []byte("PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n"), ErrMalformed},
		{"v1 zone", []byte("PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n"), ErrMalformed},
		{"v1 port range", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n"), ErrMalformed},
		{"v1 port zero-padded", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n"), ErrMalformed},
		{"v1 port sign", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n"), ErrMalformed},
		{"v1 missing port", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"), ErrMalformed},
		{"v1 extra field", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n"), ErrMalformed},
		{"v1 double space", []byte("PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n"), ErrMalformed},
		{"v1 octal ipv4", []byte("PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n"), ErrMalformed},
		{"v1 no crlf", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n<?xml version='1.0'?><stream:stream xmlns='jabber:client' to='example.org' version='1.0'>"), ErrMalformed},
		{"v1 binary", []byte("PROXY TCP4 1.2.3.4\x00"), ErrMalformed},
		{"v1 too long", []byte("PROXY UNKNOWN " + strings.Repeat("x", 100) + "\r\n"), ErrMalformed},
		{"v2 version 1", hexb(sig2 + "11 11 000c ac130001 ac130003 a652 0050"), ErrMalformed},
		{"v2 command 2", hexb(sig2 + "22 11 000c ac130001 ac130003 a652 0050"), ErrMalformed},
		{"v2 family 4", hexb(sig2 + "21 41 000c ac130001 ac130003 a652 0050"), ErrMalformed},
		{"v2 transport 3", hexb(sig2 + "21 13 000c ac130001 ac130003 a652 0050"), ErrMalformed},
		{"v2 short inet", hexb(sig2 + "21 11 000b ac130001 ac130003 a652 00"), ErrMalformed},
		{"v2 short inet6", hexb(sig2 + "21 21 000c ac130001 ac130003 a652 0050"), ErrMalformed},
		{"v2 too long", long, ErrTooLong},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := Parse(tc.in, 0); err != tc.want {
				t.Errorf("Parse: %v, want %v", err, tc.want)
			}
		})
	}
	if _, _, err := Parse(long, len(long)); err != nil {
		t.Errorf("Parse with a limit that fits: %v", err)
	}
}

func TestAppendRoundTrip(t *testing.T) {
	for _, h := range []Header{
		{Command: Proxy, Source: netip.MustParseAddrPort("192.0.2.7:5000"), Destination: netip.MustParseAddrPort("198.51.100.1:5222")},
		{Command: Proxy, Source: netip.MustParseAddrPort("[2001:db8::7]:1"), Destination: netip.MustParseAddrPort("[::1]:5223")},
		{Command: Local},
	} {
		for _, v := range []int{1, 2} {
			b := h.Append(nil, v)
			got, n, err := Parse(b, 0)
			want := h
			want.Version = v
			if v == 1 && h.Command == Local {
				want.Command = Proxy // v1 has UNKNOWN, no LOCAL
			}
			if err != nil || n != len(b) || got != want {
				t.Errorf("v%d %+v: Parse(%q) = %+v, %d, %v", v, h, b, got, n, err)
			}
		}
	}
}

// FuzzParse checks that Parse never panics, never claims more bytes than
// it was given or than the limit, that a header it accepts comes out the
// same from its own encoding, and that an input it needs more of is
// only ever a beginning of a header.
func FuzzParse(f *testing.F) {
	f.Add([]byte("PROXY TCP4 192.0.2.7 198.51.100.1 56324 5222\r\n<stream>"))
	f.Add([]byte("PROXY TCP6 2001:db8::7 2001:db8::1 65535 0\r\n"))
	f.Add([]byte("PROXY UNKNOWN\r\n"))
	f.Add([]byte("PROXY TCP4 1.2.3.4"))
	f.Add(hexb(sig2 + "21 11 000c ac130001 ac130003 a652 0050"))
	f.Add(hexb(sig2 + "21 21 0024 20010db8000000000000000000000007 20010db8000000000000000000000001 1388 1466"))
	f.Add(hexb(sig2 + "20 00 0000"))
	f.Add(hexb(sig2 + "21 11 0013 ac130001 ac130003 a652 0050 01 0004 78 6d 70 70"))
	f.Add([]byte("<?xml version='1.0'?>"))
	f.Fuzz(func(t *testing.T, b []byte) {
		const max = 300
		h, n, err := Parse(b, max)
		switch {
		case err == nil:
			if n <= 0 || n > len(b) || n > max && h.Version == 2 || n > MaxV1 && h.Version == 1 {
				t.Fatalf("Parse(%q) took %d bytes", b, n)
			}
			if h.Source.IsValid() != h.Destination.IsValid() || h.Source.IsValid() && h.Command != Proxy {
				t.Fatalf("Parse(%q) = %+v", b, h)
			}
			again, m, err := Parse(h.Append(nil, h.Version), max)
			if err != nil || m == 0 || again != h && !(h.Version == 1 && !h.Source.IsValid() && again.Command == h.Command) {
				t.Fatalf("Parse(%q) = %+v, but its encoding parses as %+v, %v", b, h, again, err)
			}
			if !bytes.HasPrefix(b, v1Sig) && !bytes.HasPrefix(b, v2Sig) {
				t.Fatalf("Parse(%q) accepted input without a signature", b)
			}
		case errors.Is(err, ErrIncomplete):
			if len(b) > 0 && !IsPrefix(b) {
				t.Fatalf("Parse(%q) wants more of input that is no header's beginning", b)
			}
		case errors.Is(err, ErrNoHeader):
			if IsPrefix(b) {
				t.Fatalf("Parse(%q): no header, but it starts like one", b)
			}
		case errors.Is(err, ErrMalformed), errors.Is(err, ErrTooLong):
		default:
			t.Fatalf("Parse(%q): unexpected error %v", b, err)
		}
	})
}
