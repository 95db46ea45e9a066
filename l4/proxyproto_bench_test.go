package l4

import (
	"net/netip"
	"strings"
	"testing"
)

// BenchmarkAppendProxyHeader is the cost of the header written on each
// backend connection. Run with:
//
//	go test ./l4 -run '^$' -bench ProxyHeader -benchmem
func BenchmarkAppendProxyHeader(b *testing.B) {
	for _, bc := range []struct {
		name     string
		v        ProxyVersion
		src, dst netip.AddrPort
	}{
		{"v1/tcp4", ProxyV1, ap("192.0.2.1:56324"), ap("198.51.100.11:443")},
		{"v1/tcp6", ProxyV1, ap("[2001:db8:1:2:3:4:5:6]:56324"), ap("[2001:db8::11]:443")},
		{"v2/tcp4", ProxyV2, ap("192.0.2.1:56324"), ap("198.51.100.11:443")},
		{"v2/tcp6", ProxyV2, ap("[2001:db8:1:2:3:4:5:6]:56324"), ap("[2001:db8::11]:443")},
	} {
		b.Run(bc.name, func(b *testing.B) {
			buf := make([]byte, 0, MaxProxyV1Len)
			b.ReportAllocs()
			for b.Loop() {
				buf = AppendProxyHeader(buf[:0], bc.v, bc.src, bc.dst)
			}
		})
	}
}

// BenchmarkParseProxyHeader is the cost per connection on a listener that
// accepts the protocol, with the client's first bytes behind the header.
func BenchmarkParseProxyHeader(b *testing.B) {
	payload := "\x16\x03\x01\x02\x00" + strings.Repeat("x", 100)
	for _, bc := range []struct {
		name string
		data string
	}{
		{"v1/tcp4", "PROXY TCP4 192.0.2.1 198.51.100.11 56324 443\r\n"},
		{"v1/tcp6", "PROXY TCP6 2001:db8:1:2:3:4:5:6 2001:db8::11 56324 443\r\n"},
		{"v1/unknown", "PROXY UNKNOWN\r\n"},
		{"v2/tcp4", string(v2Header(0x21, 0x11, addrs4()))},
		{"v2/tcp6", string(v2Header(0x21, 0x21, addrs6()))},
		{"v2/tcp4+tlvs", string(v2Header(0x21, 0x11, addrs4(), tlv(ProxyTLVALPN, "h2"),
			tlv(ProxyTLVAuthority, "db.example.com"), tlv(ProxyTLVUniqueID, strings.Repeat("u", 64))))},
		{"v2/tcp4+crc32c", string(withCRC(v2Header(0x21, 0x11, addrs4(), tlv(ProxyTLVAuthority, "db.example.com"))))},
	} {
		b.Run(bc.name, func(b *testing.B) {
			data := []byte(bc.data + payload)
			b.ReportAllocs()
			for b.Loop() {
				if h, _, err := ParseProxyHeader(data); err != nil || h.Len != len(bc.data) {
					b.Fatalf("got %+v, %v", h, err)
				}
			}
		})
	}
}

// BenchmarkProxyPolicyCheck is the per-connection check on a listener with
// a few trusted networks: a trusted v2 header, and an untrusted TLS client.
func BenchmarkProxyPolicyCheck(b *testing.B) {
	p := ProxyPolicy{Trusted: []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("172.16.0.0/12"), netip.MustParsePrefix("fd00::/8"),
	}}
	v2 := v2Header(0x21, 0x11, addrs4())
	tls := []byte("\x16\x03\x01\x02\x00")
	for _, bc := range []struct {
		name string
		peer netip.Addr
		data []byte
	}{
		{"trusted", netip.MustParseAddr("172.16.5.5"), v2},
		{"untrusted", netip.MustParseAddr("192.0.2.1"), tls},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := p.Check(bc.peer, bc.data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
