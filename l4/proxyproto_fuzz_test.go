package l4

import (
	"net/netip"
	"testing"
)

// FuzzParseProxyHeader checks that ParseProxyHeader never panics and that
// its result depends only on the bytes, not on how they arrive:
//
//   - a result is exactly one of a sentinel error, need > 0, or a header
//     within data (v1 at most MaxProxyV1Len bytes);
//   - every proper prefix (a sample, for long inputs) fails with the same
//     error, or asks for more: when data is a header or the start of one,
//     no more than the full result shows is still to come;
//   - a header parses the same from data[:Len]; its TLVs tile their bytes;
//     its TCP addresses survive AppendProxyHeader and a parse back;
//   - ProxyPolicy.Check agrees: the same from a trusted peer, and from an
//     untrusted one ErrProxyUntrusted for a header, and never a header.
func FuzzParseProxyHeader(f *testing.F) {
	for _, v := range proxyVectors() {
		f.Add(v.data)
	}
	f.Add([]byte("PROXY TCP4 1.1.1.1 1.1.1.1 0443 2\r\n"))
	f.Add([]byte("PROXY UNKNOWN " + v6max + " " + v6max + " 65535 655350\r\n"))
	f.Add(v2Header(0x21, 0x11, addrs4(), tlv(ProxyTLVCRC32C, "abcd")))
	f.Add(withCRC(v2Header(0x21, 0x21, addrs6(), tlv(ProxyTLVSSL, "\x01\x00\x00\x00\x00"))))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Add([]byte{})

	trusted := ProxyPolicy{Trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, MaxLen: MaxProxyV2Len}
	inside, outside := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("192.0.2.1")

	f.Fuzz(func(t *testing.T, data []byte) {
		h, need, err := ParseProxyHeader(data)
		switch {
		case err != nil:
			if !isProxySentinel(err) || need != 0 || h.Len != 0 || h.Version != 0 {
				t.Fatalf("got %+v, need %d, err %v; want zero with a sentinel", h, need, err)
			}
		case need > 0:
			if h.Len != 0 || h.Version != 0 {
				t.Fatalf("got %+v with need %d; want zero", h, need)
			}
		default:
			if need != 0 || h.Len <= 0 || h.Len > len(data) || h.Version == ProxyV1 && h.Len > MaxProxyV1Len {
				t.Fatalf("got %+v, need %d for %d bytes", h, need, len(data))
			}
		}

		end := len(data) + need
		if err == nil && need == 0 {
			end = h.Len
		}
		n := min(len(data), end)
		step := 1
		if n > 256 {
			step = n / 97
		}
		for k := 0; k < n; k += step {
			_, pneed, perr := ParseProxyHeader(data[:k])
			switch {
			case perr != nil && perr != err:
				t.Fatalf("prefix %d of %d: got err %v; want %v or more wanted", k, len(data), perr, err)
			case perr == nil && (pneed <= 0 || err == nil && k+pneed > end):
				t.Fatalf("prefix %d of %d: got need %d; want 1 to %d", k, len(data), pneed, end-k)
			}
		}

		if hc, nc, ec := trusted.Check(inside, data); ec != err || nc != need || hc.Len != h.Len {
			t.Fatalf("trusted Check: got Len %d need %d err %v; want Len %d need %d err %v", hc.Len, nc, ec, h.Len, need, err)
		}
		if hc, _, ec := trusted.Check(outside, data); hc.Len != 0 || ec != nil && ec != ErrProxyUntrusted || err == nil && need == 0 && ec != ErrProxyUntrusted {
			t.Fatalf("untrusted Check: got Len %d err %v after parse err %v", hc.Len, ec, err)
		}

		if err != nil || need > 0 {
			return
		}
		h2, _, err2 := ParseProxyHeader(data[:h.Len])
		if err2 != nil || h2.Len != h.Len || h2.Src != h.Src || h2.Dst != h.Dst || h2.Local != h.Local || string(h2.TLVs) != string(h.TLVs) {
			t.Fatalf("header alone: got %+v, %v; want %+v", h2, err2, h)
		}
		tiled := 0
		for _, v := range h.TLVs.All() {
			tiled += 3 + len(v)
		}
		if tiled != len(h.TLVs) {
			t.Fatalf("TLVs of %d bytes: iteration covers %d", len(h.TLVs), tiled)
		}
		if h.Src.IsValid() != h.Dst.IsValid() {
			t.Fatalf("got Src %s, Dst %s", h.Src, h.Dst)
		}
		if h.Src.IsValid() {
			for _, v := range []ProxyVersion{ProxyV1, ProxyV2} {
				b := AppendProxyHeader(nil, v, h.Src, h.Dst)
				r, _, err := ParseProxyHeader(b)
				if err != nil || r.Len != len(b) || unmap(r.Src) != unmap(h.Src) || unmap(r.Dst) != unmap(h.Dst) {
					t.Fatalf("v%d round trip of %s -> %s: got %+v, %v", v, h.Src, h.Dst, r, err)
				}
			}
		}
	})
}

func unmap(a netip.AddrPort) netip.AddrPort { return netip.AddrPortFrom(a.Addr().Unmap(), a.Port()) }

// FuzzParseIP checks the allocation-free address parsers of v1 headers
// against net/netip.
func FuzzParseIP(f *testing.F) {
	for _, s := range []string{"1.2.3.4", "::", "::ffff:1.2.3.4", "1:2:3:4:5:6:7:8", "fe80::1%eth0", "1::2::3", "01.2.3.4"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, werr := netip.ParseAddr(s)
		if werr == nil && want.Zone() != "" {
			werr = errZone // zones are not part of a v1 address
		}
		got4, ok4 := parseIPv4([]byte(s))
		got6, ok6 := parseIPv6([]byte(s))
		switch {
		case werr != nil:
			if ok4 || ok6 {
				t.Fatalf("%q: got %v/%v %v/%v; netip says %v", s, got4, ok4, got6, ok6, werr)
			}
		case want.Is4():
			if !ok4 || got4 != want || ok6 {
				t.Fatalf("%q: got v4 %v/%v v6 %v/%v; want %v", s, got4, ok4, got6, ok6, want)
			}
		default:
			if !ok6 || got6 != want || ok4 {
				t.Fatalf("%q: got v4 %v/%v v6 %v/%v; want %v", s, got4, ok4, got6, ok6, want)
			}
		}
	})
}

var errZone = ErrMalformedProxyHeader
