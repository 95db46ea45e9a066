package l4

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// v2Header builds a v2 header from its command byte, family byte and body
// (addresses, then TLVs), with the length filled in.
func v2Header(verCmd, fam byte, body ...[]byte) []byte {
	b := append([]byte(proxyV2Sig), verCmd, fam, 0, 0)
	for _, p := range body {
		b = append(b, p...)
	}
	binary.BigEndian.PutUint16(b[14:16], uint16(len(b)-proxyV2HeaderLen))
	return b
}

func tlv(typ byte, val string) []byte {
	return append([]byte{typ, byte(len(val) >> 8), byte(len(val))}, val...)
}

// withCRC appends a PP2_TYPE_CRC32C TLV to a v2 header and fills it in, as
// the spec's sender does: checksum of the whole header with the field zero.
func withCRC(h []byte) []byte {
	h = append(slices.Clone(h), tlv(ProxyTLVCRC32C, "\x00\x00\x00\x00")...)
	binary.BigEndian.PutUint16(h[14:16], uint16(len(h)-proxyV2HeaderLen))
	binary.BigEndian.PutUint32(h[len(h)-4:], crc32.Checksum(h, crc32.MakeTable(crc32.Castagnoli)))
	return h
}

func addrs4() []byte {
	// 192.0.2.1:56324 -> 198.51.100.11:443
	return []byte{192, 0, 2, 1, 198, 51, 100, 11, 0xdc, 0x04, 0x01, 0xbb}
}

func addrs6() []byte {
	src := netip.MustParseAddr("2001:db8::1").As16()
	dst := netip.MustParseAddr("2001:db8:ffff::2").As16()
	return append(append(src[:], dst[:]...), 0x30, 0x39, 0x00, 0x50) // 12345 -> 80
}

var (
	ap = netip.MustParseAddrPort

	v6max = strings.Repeat("ffff:", 7) + "ffff"
)

// proxyVector is a valid header; the bytes after want.Len are the client's.
type proxyVector struct {
	name string
	data []byte
	want ProxyHeader
	tlvs map[byte]string // want.TLVs, by type
}

func proxyVectors() []proxyVector {
	ssl := "\x01\x00\x00\x00\x00" + string(tlv(0x21, "TLSv1.3")) + string(tlv(0x22, "client.example"))
	tcp4 := v2Header(0x21, 0x11, addrs4())
	return []proxyVector{
		// v1, from the spec's examples and limits (section 2.1).
		{name: "v1 spec example",
			data: []byte("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\nHost: 192.168.0.11\r\n\r\n"),
			want: ProxyHeader{Version: ProxyV1, Src: ap("192.168.0.1:56324"), Dst: ap("192.168.0.11:443"), Len: 47}},
		{name: "v1 TCP4 longest",
			data: []byte("PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n"),
			want: ProxyHeader{Version: ProxyV1, Src: ap("255.255.255.255:65535"), Dst: ap("255.255.255.255:65535"), Len: 56}},
		{name: "v1 TCP4 zeros",
			data: []byte("PROXY TCP4 0.0.0.0 10.0.0.1 0 0\r\n"),
			want: ProxyHeader{Version: ProxyV1, Src: ap("0.0.0.0:0"), Dst: ap("10.0.0.1:0"), Len: 33}},
		{name: "v1 TCP6 longest",
			data: []byte("PROXY TCP6 " + v6max + " " + v6max + " 65535 65535\r\n"),
			want: ProxyHeader{Version: ProxyV1, Src: netip.AddrPortFrom(netip.MustParseAddr(v6max), 65535),
				Dst: netip.AddrPortFrom(netip.MustParseAddr(v6max), 65535), Len: 104}},
		{name: "v1 TCP6 compressed",
			data: []byte("PROXY TCP6 2001:DB8::1 ::1 40000 5432\r\nQ"),
			want: ProxyHeader{Version: ProxyV1, Src: ap("[2001:db8::1]:40000"), Dst: ap("[::1]:5432"), Len: 39}},
		{name: "v1 TCP6 IPv4-mapped",
			data: []byte("PROXY TCP6 ::ffff:192.0.2.7 :: 1 2\r\n"),
			want: ProxyHeader{Version: ProxyV1, Src: ap("[::ffff:192.0.2.7]:1"), Dst: ap("[::]:2"), Len: 36}},
		{name: "v1 UNKNOWN short",
			data: []byte("PROXY UNKNOWN\r\nhello"),
			want: ProxyHeader{Version: ProxyV1, Len: 15}},
		{name: "v1 UNKNOWN longest",
			data: []byte("PROXY UNKNOWN " + v6max + " " + v6max + " 65535 65535\r\n"),
			want: ProxyHeader{Version: ProxyV1, Len: 107}},
		{name: "v1 UNKNOWN anything",
			data: []byte("PROXY UNKNOWN \x00\xff garbage %!\r\n"),
			want: ProxyHeader{Version: ProxyV1, Len: 29}},

		// v2 (section 2.2).
		{name: "v2 TCP4",
			data: append(slices.Clone(tcp4), "payload"...),
			want: ProxyHeader{Version: ProxyV2, Src: ap("192.0.2.1:56324"), Dst: ap("198.51.100.11:443"), Len: 28}},
		{name: "v2 TCP6",
			data: v2Header(0x21, 0x21, addrs6()),
			want: ProxyHeader{Version: ProxyV2, Src: ap("[2001:db8::1]:12345"), Dst: ap("[2001:db8:ffff::2]:80"), Len: 52}},
		{name: "v2 LOCAL",
			data: v2Header(0x20, 0x00),
			want: ProxyHeader{Version: ProxyV2, Local: true, Len: 16}},
		{name: "v2 LOCAL with addresses ignores them",
			data: v2Header(0x20, 0x11, addrs4()),
			want: ProxyHeader{Version: ProxyV2, Local: true, Len: 28}},
		{name: "v2 LOCAL ignores the family",
			data: v2Header(0x20, 0xff, []byte("opaque")),
			want: ProxyHeader{Version: ProxyV2, Local: true, Len: 22}},
		{name: "v2 PROXY UNSPEC",
			data: v2Header(0x21, 0x00),
			want: ProxyHeader{Version: ProxyV2, Len: 16}},
		{name: "v2 UDP4 keeps the connection's addresses",
			data: v2Header(0x21, 0x12, addrs4()),
			want: ProxyHeader{Version: ProxyV2, Len: 28}},
		{name: "v2 UNIX stream",
			data: v2Header(0x21, 0x31, make([]byte, 216)),
			want: ProxyHeader{Version: ProxyV2, Len: 232}},
		{name: "v2 INET with UNSPEC transport is opaque",
			data: v2Header(0x21, 0x10, []byte{1, 2, 3}),
			want: ProxyHeader{Version: ProxyV2, Len: 19}},
		{name: "v2 TLVs",
			data: v2Header(0x21, 0x11, addrs4(),
				tlv(ProxyTLVALPN, "h2"), tlv(ProxyTLVAuthority, "db.example.com"), tlv(ProxyTLVNoop, ""),
				tlv(ProxyTLVUniqueID, strings.Repeat("u", 128)), tlv(ProxyTLVSSL, ssl), tlv(0xE0, "custom")),
			want: ProxyHeader{Version: ProxyV2, Src: ap("192.0.2.1:56324"), Dst: ap("198.51.100.11:443"), Len: 28 + 5 + 17 + 3 + 131 + 3 + len(ssl) + 9},
			tlvs: map[byte]string{ProxyTLVALPN: "h2", ProxyTLVAuthority: "db.example.com", ProxyTLVNoop: "",
				ProxyTLVUniqueID: strings.Repeat("u", 128), ProxyTLVSSL: ssl, 0xE0: "custom"}},
		{name: "v2 CRC32C",
			data: withCRC(v2Header(0x21, 0x11, addrs4(), tlv(ProxyTLVAuthority, "a.example"))),
			want: ProxyHeader{Version: ProxyV2, Src: ap("192.0.2.1:56324"), Dst: ap("198.51.100.11:443"), Len: 28 + 12 + 7},
			tlvs: map[byte]string{ProxyTLVAuthority: "a.example", ProxyTLVCRC32C: ""}},
	}
}

func TestParseProxyHeader(t *testing.T) {
	for _, v := range proxyVectors() {
		t.Run(v.name, func(t *testing.T) {
			h, need, err := ParseProxyHeader(v.data)
			if err != nil || need != 0 {
				t.Fatalf("got need %d, err %v", need, err)
			}
			checkProxyHeader(t, h, v)
			// Every proper prefix asks for more, and no more than is
			// missing.
			for k := range v.want.Len {
				_, need, err := ParseProxyHeader(v.data[:k])
				if err != nil || need <= 0 || k+need > v.want.Len {
					t.Fatalf("prefix %d of %d: got need %d, err %v", k, v.want.Len, need, err)
				}
			}
			// The header alone parses the same.
			h, _, _ = ParseProxyHeader(v.data[:v.want.Len])
			checkProxyHeader(t, h, v)
		})
	}
}

func checkProxyHeader(t *testing.T, h ProxyHeader, v proxyVector) {
	t.Helper()
	tlvs := h.TLVs
	if h.Version != v.want.Version || h.Local != v.want.Local || h.Src != v.want.Src || h.Dst != v.want.Dst || h.Len != v.want.Len {
		t.Fatalf("got %+v; want %+v", h, v.want)
	}
	got := map[byte]string{}
	for k, val := range tlvs.All() {
		if k == ProxyTLVCRC32C {
			val = nil // its value is the checksum
		}
		got[k] = string(val)
	}
	if len(got) != len(v.tlvs) {
		t.Fatalf("got TLVs %q; want %q", got, v.tlvs)
	}
	for k, want := range v.tlvs {
		if g, ok := got[k]; !ok || g != want {
			t.Fatalf("TLV %#x: got %q; want %q", k, g, want)
		}
		if val, ok := tlvs.Lookup(k); !ok || k != ProxyTLVCRC32C && string(val) != want {
			t.Fatalf("Lookup(%#x): got %q, %v; want %q", k, val, ok, want)
		}
	}
	if _, ok := tlvs.Lookup(0x7f); ok {
		t.Fatal("Lookup of an absent type: got true")
	}
}

func TestParseProxyHeaderErrors(t *testing.T) {
	tcp4 := v2Header(0x21, 0x11, addrs4())
	crc := withCRC(tcp4)
	badCRC := slices.Clone(crc)
	badCRC[len(badCRC)-1] ^= 1
	badCRCBody := slices.Clone(crc)
	badCRCBody[16] ^= 1 // an address byte: the checksum covers the whole header
	for _, tc := range []struct {
		name string
		data string
		want error
	}{
		{"http", "GET / HTTP/1.1\r\n\r\n", ErrNoProxyHeader},
		{"tls", "\x16\x03\x01\x02\x00\x01", ErrNoProxyHeader},
		{"lower case", "proxy TCP4 1.2.3.4 1.2.3.4 1 2\r\n", ErrNoProxyHeader},
		{"no space after PROXY", "PROXYTCP4 1.2.3.4", ErrNoProxyHeader},
		{"v2 signature broken at its end", "\r\n\r\n\x00\r\nQUIT\r", ErrNoProxyHeader},
		{"CRLF alone", "\r\n\r\n\r\n", ErrNoProxyHeader},

		{"v1 unknown protocol", "PROXY TCP5 1.2.3.4 1.2.3.4 1 2\r\n", ErrMalformedProxyHeader},
		{"v1 UDP4", "PROXY UDP4 1.2.3.4", ErrMalformedProxyHeader},
		{"v1 two spaces after PROXY", "PROXY  TCP4", ErrMalformedProxyHeader},
		{"v1 UNKNOWN glued", "PROXY UNKNOWNX\r\n", ErrMalformedProxyHeader},
		{"v1 leading zero in address", "PROXY TCP4 192.168.0.01 192.168.0.11 56324 443\r\n", ErrMalformedProxyHeader},
		{"v1 octet over 255", "PROXY TCP4 256.1.1.1 1.1.1.1 1 2\r\n", ErrMalformedProxyHeader},
		{"v1 three octets", "PROXY TCP4 1.1.1 1.1.1.1 1 2\r\n", ErrMalformedProxyHeader},
		{"v1 leading zero in port", "PROXY TCP4 1.1.1.1 1.1.1.1 0443 2\r\n", ErrMalformedProxyHeader},
		{"v1 port over 65535", "PROXY TCP4 1.1.1.1 1.1.1.1 65536 2\r\n", ErrMalformedProxyHeader},
		{"v1 port of six digits", "PROXY TCP4 1.1.1.1 1.1.1.1 100000 2\r\n", ErrMalformedProxyHeader},
		{"v1 two spaces", "PROXY TCP4 1.1.1.1  1.1.1.1 1 2\r\n", ErrMalformedProxyHeader},
		{"v1 trailing space", "PROXY TCP4 1.1.1.1 1.1.1.1 1 2 \r\n", ErrMalformedProxyHeader},
		{"v1 missing port", "PROXY TCP4 1.1.1.1 1.1.1.1 1\r\n", ErrMalformedProxyHeader},
		{"v1 IPv6 in TCP4", "PROXY TCP4 ::1 ::1 1 2\r\n", ErrMalformedProxyHeader},
		{"v1 IPv4 in TCP6", "PROXY TCP6 1.2.3.4 1.2.3.4 1 2\r\n", ErrMalformedProxyHeader},
		{"v1 zone", "PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", ErrMalformedProxyHeader},
		{"v1 two ellipses", "PROXY TCP6 1::2::3 ::1 1 2\r\n", ErrMalformedProxyHeader},
		{"v1 five hex digits", "PROXY TCP6 12345::1 ::1 1 2\r\n", ErrMalformedProxyHeader},
		{"v1 nine groups", "PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n", ErrMalformedProxyHeader},
		{"v1 bare LF", "PROXY TCP4 1.1.1.1 1.1.1.1 1 2\n", ErrMalformedProxyHeader},
		{"v1 CR without LF", "PROXY TCP4 1.1.1.1 1.1.1.1 1 2\rX", ErrMalformedProxyHeader},
		{"v1 UNKNOWN bare LF", "PROXY UNKNOWN foo\nbar\r\n", ErrMalformedProxyHeader},
		{"v1 letter out of range", "PROXY TCP4 1.1.1.1 x", ErrMalformedProxyHeader},
		{"v1 no CRLF in 107 bytes", "PROXY UNKNOWN " + strings.Repeat("f", 200), ErrProxyV1TooLong},
		{"v1 108 bytes", "PROXY UNKNOWN " + v6max + " " + v6max + " 65535 655350\r\n", ErrProxyV1TooLong},
		{"v1 TCP6 without CRLF", "PROXY TCP6 " + v6max + " " + v6max + " 65535 65535 0000000000", ErrProxyV1TooLong},

		{"v2 version 1", string(v2Header(0x11, 0x11, addrs4())), ErrProxyUnsupported},
		{"v2 version 3", string(v2Header(0x31, 0x11, addrs4())), ErrProxyUnsupported},
		{"v2 command 2", string(v2Header(0x22, 0x11, addrs4())), ErrProxyUnsupported},
		{"v2 family 4", string(v2Header(0x21, 0x41, addrs4())), ErrMalformedProxyHeader},
		{"v2 transport 3", string(v2Header(0x21, 0x13, addrs4())), ErrMalformedProxyHeader},
		{"v2 TCP4 short address block", string(v2Header(0x21, 0x11, addrs4()[:8])), ErrMalformedProxyHeader},
		{"v2 TCP6 short address block", string(v2Header(0x21, 0x21, addrs4())), ErrMalformedProxyHeader},
		{"v2 TLV past the header", string(v2Header(0x21, 0x11, addrs4(), []byte{ProxyTLVALPN, 0, 5, 'h', '2'})), ErrMalformedProxyHeader},
		{"v2 two stray bytes", string(v2Header(0x21, 0x11, addrs4(), tlv(ProxyTLVALPN, "h2"), []byte{0, 0})), ErrMalformedProxyHeader},
		{"v2 CRC32C of 3 bytes", string(v2Header(0x21, 0x11, addrs4(), tlv(ProxyTLVCRC32C, "abc"))), ErrMalformedProxyHeader},
		{"v2 CRC32C mismatch", string(badCRC), ErrProxyChecksum},
		{"v2 CRC32C over a changed address", string(badCRCBody), ErrProxyChecksum},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, need, err := ParseProxyHeader([]byte(tc.data))
			if err != tc.want || need != 0 || h.Len != 0 {
				t.Fatalf("got %+v, need %d, err %v; want err %v", h, need, err, tc.want)
			}
			// Every prefix needs more or fails the same way.
			for k := range len(tc.data) {
				_, need, err := ParseProxyHeader([]byte(tc.data[:k]))
				if err != nil && err != tc.want || err == nil && need <= 0 {
					t.Fatalf("prefix %d: got need %d, err %v; want more wanted or %v", k, need, err, tc.want)
				}
			}
		})
	}
}

// TestParseProxyHeaderCorrupted flips each byte of each vector: the result
// is a header, a request for more, or a sentinel; never a panic or a
// header longer than the data.
func TestParseProxyHeaderCorrupted(t *testing.T) {
	for _, v := range proxyVectors() {
		for i := range v.want.Len {
			for _, x := range []byte{0x01, 0x20, 0x80, 0xff} {
				data := slices.Clone(v.data)
				data[i] ^= x
				h, need, err := ParseProxyHeader(data)
				switch {
				case err != nil:
					if !isProxySentinel(err) {
						t.Fatalf("%s, byte %d ^ %#x: got err %v; want a sentinel", v.name, i, x, err)
					}
				case need == 0 && (h.Len <= 0 || h.Len > len(data)):
					t.Fatalf("%s, byte %d ^ %#x: got Len %d for %d bytes", v.name, i, x, h.Len, len(data))
				}
			}
		}
	}
}

func isProxySentinel(err error) bool {
	switch err {
	case ErrNoProxyHeader, ErrProxyUntrusted, ErrMalformedProxyHeader, ErrProxyV1TooLong,
		ErrProxyHeaderTooLarge, ErrProxyUnsupported, ErrProxyChecksum:
		return true
	}
	return false
}

func TestAppendProxyHeader(t *testing.T) {
	for _, tc := range []struct {
		name     string
		src, dst netip.AddrPort
		v1       string
		v2       []byte
		// wantSrc and wantDst are what the parser returns.
		wantSrc, wantDst netip.AddrPort
	}{
		{
			name: "ipv4",
			src:  ap("192.0.2.1:56324"), dst: ap("198.51.100.11:443"),
			v1:      "PROXY TCP4 192.0.2.1 198.51.100.11 56324 443\r\n",
			v2:      v2Header(0x21, 0x11, addrs4()),
			wantSrc: ap("192.0.2.1:56324"), wantDst: ap("198.51.100.11:443"),
		},
		{
			name: "ipv6",
			src:  ap("[2001:db8::1]:12345"), dst: ap("[2001:db8:ffff::2]:80"),
			v1:      "PROXY TCP6 2001:db8::1 2001:db8:ffff::2 12345 80\r\n",
			v2:      v2Header(0x21, 0x21, addrs6()),
			wantSrc: ap("[2001:db8::1]:12345"), wantDst: ap("[2001:db8:ffff::2]:80"),
		},
		{
			name: "ipv4-mapped pair is TCP4",
			src:  ap("[::ffff:192.0.2.1]:56324"), dst: ap("[::ffff:198.51.100.11]:443"),
			v1:      "PROXY TCP4 192.0.2.1 198.51.100.11 56324 443\r\n",
			v2:      v2Header(0x21, 0x11, addrs4()),
			wantSrc: ap("192.0.2.1:56324"), wantDst: ap("198.51.100.11:443"),
		},
		{
			name: "mixed pair is TCP6",
			src:  ap("192.0.2.1:1"), dst: ap("[2001:db8::2]:2"),
			v1:      "PROXY TCP6 ::ffff:192.0.2.1 2001:db8::2 1 2\r\n",
			wantSrc: ap("[::ffff:192.0.2.1]:1"), wantDst: ap("[2001:db8::2]:2"),
		},
		{
			name: "zone dropped",
			src:  ap("[fe80::1%eth0]:1"), dst: ap("[fe80::2%eth0]:2"),
			v1:      "PROXY TCP6 fe80::1 fe80::2 1 2\r\n",
			wantSrc: ap("[fe80::1]:1"), wantDst: ap("[fe80::2]:2"),
		},
		{
			name: "unknown source",
			dst:  ap("192.0.2.1:1"),
			v1:   "PROXY UNKNOWN\r\n",
			v2:   v2Header(0x21, 0x00),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			buf := make([]byte, 0, 128)
			for _, v := range []ProxyVersion{ProxyV1, ProxyV2} {
				got := AppendProxyHeader(buf[:0], v, tc.src, tc.dst)
				if v == ProxyV1 && string(got) != tc.v1 {
					t.Errorf("v1: got %q; want %q", got, tc.v1)
				}
				if v == ProxyV2 && tc.v2 != nil && !bytes.Equal(got, tc.v2) {
					t.Errorf("v2: got % x; want % x", got, tc.v2)
				}
				// Round trip, followed by the client's bytes.
				h, need, err := ParseProxyHeader(append(got, "payload"...))
				if err != nil || need != 0 || h.Version != v || h.Len != len(got) || h.Src != tc.wantSrc || h.Dst != tc.wantDst {
					t.Errorf("v%d round trip: got %+v, need %d, err %v; want %s -> %s, Len %d", v, h, need, err, tc.wantSrc, tc.wantDst, len(got))
				}
			}
		})
	}

	local := AppendProxyV2Local(nil)
	if want := v2Header(0x20, 0x00); !bytes.Equal(local, want) {
		t.Errorf("LOCAL: got % x; want % x", local, want)
	}
	if h, _, err := ParseProxyHeader(local); err != nil || !h.Local || h.Src.IsValid() {
		t.Errorf("LOCAL round trip: got %+v, %v", h, err)
	}

	defer func() {
		if r := recover(); r == nil || !strings.HasPrefix(r.(string), "BUG: ") {
			t.Errorf("version 3: got panic %v; want a BUG panic", r)
		}
	}()
	AppendProxyHeader(nil, 3, tc4src, tc4dst)
}

var tc4src, tc4dst = ap("192.0.2.1:1"), ap("192.0.2.2:2")

func TestProxyAllocs(t *testing.T) {
	buf := make([]byte, 0, MaxProxyV1Len)
	v6 := append([]byte("PROXY TCP6 "+v6max+" "+v6max+" 65535 65535\r\n"), "data"...)
	v2 := withCRC(v2Header(0x21, 0x11, addrs4(), tlv(ProxyTLVAuthority, "example.com")))
	src, dst := ap("[2001:db8::1]:1"), ap("[2001:db8::2]:2")
	p := ProxyPolicy{Trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	peer := netip.MustParseAddr("10.1.2.3")
	for name, f := range map[string]func(){
		"append v1":     func() { buf = AppendProxyHeader(buf[:0], ProxyV1, src, dst) },
		"append v2":     func() { buf = AppendProxyHeader(buf[:0], ProxyV2, src, dst) },
		"parse v1 TCP6": func() { ParseProxyHeader(v6) },
		"parse v2":      func() { ParseProxyHeader(v2) },
		"check":         func() { p.Check(peer, v2) },
	} {
		if n := testing.AllocsPerRun(100, f); n != 0 {
			t.Errorf("%s: got %.0f allocs; want 0", name, n)
		}
	}
}

func TestProxyPolicy(t *testing.T) {
	p := ProxyPolicy{
		Trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")},
		MaxLen:  64,
	}
	hdr := "PROXY TCP4 192.0.2.1 10.0.0.1 1234 5432\r\n"
	v2 := string(v2Header(0x21, 0x11, addrs4()))
	big := string(v2Header(0x21, 0x11, addrs4(), tlv(ProxyTLVUniqueID, strings.Repeat("x", 40))))
	for _, tc := range []struct {
		name, peer, data  string
		wantLen, wantNeed int
		wantErr           error
	}{
		{"trusted v1", "10.1.1.1", hdr + "Q", len(hdr), 0, nil},
		{"trusted v2", "10.1.1.1", v2, 28, 0, nil},
		{"trusted IPv4-mapped peer", "::ffff:10.1.1.1", hdr, len(hdr), 0, nil},
		{"trusted IPv6 peer with zone", "fd00::1%eth0", hdr, len(hdr), 0, nil},
		{"trusted, header not yet here", "10.1.1.1", "", 0, minProxyV1Len, nil},
		{"trusted, partial header", "10.1.1.1", hdr[:20], 0, 1, nil},
		{"trusted without header", "10.1.1.1", "\x16\x03\x01", 0, 0, ErrNoProxyHeader},
		{"trusted, v2 over MaxLen", "10.1.1.1", big[:16], 0, 0, ErrProxyHeaderTooLarge},
		{"untrusted v1", "192.0.2.1", hdr, 0, 0, ErrProxyUntrusted},
		{"untrusted v2", "192.0.2.1", v2, 0, 0, ErrProxyUntrusted},
		{"untrusted v2 signature alone", "192.0.2.1", proxyV2Sig, 0, 0, ErrProxyUntrusted},
		{"untrusted, prefix of v1", "192.0.2.1", "PROX", 0, 2, nil},
		{"untrusted, prefix of v2", "192.0.2.1", "\r\n\r", 0, 9, nil},
		{"untrusted, nothing yet", "192.0.2.1", "", 0, 1, nil},
		{"untrusted plain", "192.0.2.1", "\x16\x03\x01\x02\x00", 0, 0, nil},
		{"untrusted POST", "192.0.2.1", "POST / HTTP/1.1\r\n", 0, 0, nil},
		{"untrusted PROXY verb", "192.0.2.1", "PROXYZ", 0, 0, nil},
		{"IPv6 peer outside the prefix", "fc00::1", hdr, 0, 0, ErrProxyUntrusted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, need, err := p.Check(netip.MustParseAddr(tc.peer), []byte(tc.data))
			if h.Len != tc.wantLen || need != tc.wantNeed || err != tc.wantErr {
				t.Fatalf("got Len %d, need %d, err %v; want Len %d, need %d, err %v", h.Len, need, err, tc.wantLen, tc.wantNeed, tc.wantErr)
			}
		})
	}
	var zero ProxyPolicy
	if zero.Trusts(netip.MustParseAddr("10.0.0.1")) {
		t.Error("the zero policy trusts a peer")
	}
	if _, _, err := zero.Check(netip.MustParseAddr("10.0.0.1"), []byte(hdr)); err != ErrProxyUntrusted {
		t.Errorf("zero policy: got %v; want ErrProxyUntrusted", err)
	}
}

// TestParseIPAgainstNetip checks the allocation-free address parsers against
// net/netip on tricky forms.
func TestParseIPAgainstNetip(t *testing.T) {
	for _, s := range []string{
		"0.0.0.0", "255.255.255.255", "1.2.3.4", "01.2.3.4", "1.2.3", "1.2.3.4.5", "1..2.3", "256.0.0.1",
		"1.2.3.4 ", "", ".", "1.2.3.04", "1.2.3.-4",
		"::", "::1", "1::", "1::2", "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7::", "::2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8:9",
		"1:2:3:4:5:6:7", ":::", ":1", "1:", "1::2::3", "12345::", "fFfF::", "::ffff:1.2.3.4", "1:2:3:4:5:6:1.2.3.4",
		"1:2:3:4:5:6:7:1.2.3.4", "::1.2.3.4", "1.2.3.4::", "::1.2.3", "::1:2.3.4.5", "0::0", "00000::1", "0000::1",
		"1:2:3:4:5:6::1.2.3.4", "::ffff:01.2.3.4", "2001:db8::/32",
	} {
		want, wantErr := netip.ParseAddr(s)
		got4, ok4 := parseIPv4([]byte(s))
		got6, ok6 := parseIPv6([]byte(s))
		switch {
		case wantErr != nil:
			if ok4 || ok6 {
				t.Errorf("%q: got %v/%v %v/%v; netip says %v", s, got4, ok4, got6, ok6, wantErr)
			}
		case want.Is4():
			if !ok4 || got4 != want || ok6 {
				t.Errorf("%q: got v4 %v/%v v6 %v/%v; want %v as IPv4 only", s, got4, ok4, got6, ok6, want)
			}
		default:
			if !ok6 || got6 != want || ok4 {
				t.Errorf("%q: got v4 %v/%v v6 %v/%v; want %v as IPv6 only", s, got4, ok4, got6, ok6, want)
			}
		}
	}
}
