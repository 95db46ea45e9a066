package l4

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"iter"
	"net/netip"
	"strconv"
)

// This file implements the PROXY protocol, versions 1 and 2, as specified
// in https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt ("the
// spec" below): a header a proxy sends first on a connection to tell the
// receiver the client's address.
//
// # Sending
//
// A pool configured to send the protocol writes AppendProxyHeader's bytes
// on each backend connection before any byte of the client's, presenting
// the client's address and the address it connected to. Health checks that
// the proxy opens itself may send AppendProxyV2Local.
//
// # Accepting
//
// A listener that accepts the protocol lists the networks of the load
// balancers in front of it in ProxyPolicy.Trusted, and calls
// ProxyPolicy.Check on the bytes each new connection has sent:
//
//   - A trusted peer must start with a valid v1 or v2 header; without one
//     (ErrNoProxyHeader) or with a bad one the connection is closed. There is
//     no "optional" mode: the spec forbids guessing whether a header is
//     there (section 2), since a client could then choose its own address.
//     The proxy waits for the header before it picks a backend, because the
//     header holds the address it may hash on; the listener's handshake
//     timeout bounds the wait (the spec suggests at least 3 s, to cover a
//     TCP retransmit). A LOCAL header (the balancer's health check) or a v1
//     UNKNOWN one leaves the connection's own addresses in use.
//   - Any other peer is served with its own addresses, but a connection
//     that starts with a PROXY signature is closed (ErrProxyUntrusted): a
//     client must not pose as the balancer, to the logs or to a backend that
//     reads the header. The proxy does not wait for an untrusted peer's
//     first bytes, since with server-first protocols (MySQL, SMTP) the
//     client sends nothing until greeted: it dials at once and checks the
//     first bytes when they come, holding them while they are a strict
//     prefix of a signature (11 bytes at most).
//
// A listener that does not accept the protocol calls neither and forwards
// the bytes unread.

// ProxyVersion is a PROXY protocol version.
type ProxyVersion uint8

const (
	// ProxyV1 is the text format: one line, at most 107 bytes.
	ProxyV1 ProxyVersion = 1
	// ProxyV2 is the binary format, 16 bytes plus addresses and TLVs.
	ProxyV2 ProxyVersion = 2
)

const (
	// MaxProxyV1Len is the longest v1 header, CRLF included (spec
	// section 2.1): "PROXY UNKNOWN" with two full IPv6 addresses and ports.
	MaxProxyV1Len = 107
	// MaxProxyV2Len is the longest v2 header the format can express: 16
	// bytes and a 16-bit length.
	MaxProxyV2Len = proxyV2HeaderLen + 0xffff
	// DefaultMaxProxyHeaderLen is ProxyPolicy.MaxLen when it is zero:
	// room for the addresses and the TLVs load balancers send (ALPN,
	// authority, a unique ID of up to 128 bytes, SSL details, cloud
	// endpoint IDs) with a wide margin.
	DefaultMaxProxyHeaderLen = 4096

	proxyV2HeaderLen = 16
	// minProxyV1Len is the shortest v1 header, "PROXY UNKNOWN\r\n".
	minProxyV1Len = 15
)

// PROXY protocol v2 TLV types (spec section 2.2). TLVs of other types are
// skipped as the spec asks.
const (
	ProxyTLVALPN      = 0x01 // the ALPN protocol the client negotiated
	ProxyTLVAuthority = 0x02 // the host name the client asked for (SNI)
	ProxyTLVCRC32C    = 0x03 // a checksum of the header; Check verifies it
	ProxyTLVNoop      = 0x04 // padding
	ProxyTLVUniqueID  = 0x05 // an opaque connection ID, up to 128 bytes
	ProxyTLVSSL       = 0x20 // TLS details, with sub-TLVs
	ProxyTLVNetNS     = 0x30 // the network namespace's name
)

// The signatures that start a header: v1's text, v2's 12 bytes (spec
// section 2.2), chosen to fail fast on every common protocol.
const (
	proxyV1Sig = "PROXY "
	proxyV2Sig = "\r\n\r\n\x00\r\nQUIT\n"
)

// v2 command, family and transport values (spec section 2.2).
const (
	proxyV2Version  = 0x20
	proxyCmdLocal   = 0x0
	proxyCmdProxy   = 0x1
	proxyFamUnspec  = 0x00
	proxyFamTCP4    = 0x11
	proxyFamTCP6    = 0x21
	proxyAddrLenV4  = 12
	proxyAddrLenV6  = 36
	proxyAddrLenUDS = 216
)

var (
	castagnoli = crc32.MakeTable(crc32.Castagnoli)
	// crcZero stands in for the checksum field; a global, as a local
	// array passed to crc32.Update escapes to the heap.
	crcZero [4]byte
)

// ProxyHeader is a parsed PROXY protocol header.
type ProxyHeader struct {
	// Version is ProxyV1 or ProxyV2; 0 when ProxyPolicy.Check found no
	// header on an untrusted connection.
	Version ProxyVersion
	// Local is set for a v2 LOCAL command: the sender opened the
	// connection itself, typically as a health check.
	Local bool
	// Src is the client's address and Dst the address it connected to, as
	// the sender saw them; an IPv4 client of a TCP6 header is IPv4-mapped.
	// Both are the zero AddrPort when the header carries no TCP address
	// (LOCAL, v1 UNKNOWN, v2 UNSPEC, UDP or UNIX): the connection's own
	// addresses then stand.
	Src, Dst netip.AddrPort
	// TLVs are the v2 type-length-value fields after the addresses,
	// checked to be well formed. They view the bytes given to the parser.
	TLVs ProxyTLVs
	// Len is the length of the header: the bytes to discard before the
	// client's data.
	Len int
}

// ProxyTLVs are the TLV fields of a v2 header, as on the wire.
type ProxyTLVs []byte

// All yields the type and value of each TLV in order. The values view the
// parsed bytes.
func (t ProxyTLVs) All() iter.Seq2[byte, []byte] {
	return func(yield func(byte, []byte) bool) {
		for b := t; len(b) >= 3; {
			n := 3 + int(binary.BigEndian.Uint16(b[1:3]))
			if n > len(b) || !yield(b[0], b[3:n:n]) {
				return
			}
			b = b[n:]
		}
	}
}

// Lookup returns the value of the first TLV of type typ.
func (t ProxyTLVs) Lookup(typ byte) ([]byte, bool) {
	for k, v := range t.All() {
		if k == typ {
			return v, true
		}
	}
	return nil, false
}

// AppendProxyHeader appends to b a PROXY protocol header of version v that
// presents a TCP connection from src to dst, and returns the extended
// slice. It does not allocate when b has room (MaxProxyV1Len bytes, or 52
// for v2).
//
// Two IPv4 addresses (IPv4-mapped ones included) make a TCP4 header, any
// other pair of valid addresses a TCP6 one, with an IPv4 address mapped. A
// zone is dropped. When either address is invalid the header says the
// family is unknown: "PROXY UNKNOWN" for v1, the PROXY command with an
// UNSPEC family for v2, and the receiver uses the connection's addresses.
// A version other than ProxyV1 and ProxyV2 panics.
func AppendProxyHeader(b []byte, v ProxyVersion, src, dst netip.AddrPort) []byte {
	s, d := src.Addr().Unmap().WithZone(""), dst.Addr().Unmap().WithZone("")
	fam := byte(proxyFamTCP6)
	switch {
	case !s.IsValid() || !d.IsValid():
		fam = proxyFamUnspec
	case s.Is4() && d.Is4():
		fam = proxyFamTCP4
	default:
		s, d = netip.AddrFrom16(s.As16()), netip.AddrFrom16(d.As16())
	}
	switch v {
	case ProxyV1:
		switch fam {
		case proxyFamUnspec:
			return append(b, "PROXY UNKNOWN\r\n"...)
		case proxyFamTCP4:
			b = append(b, "PROXY TCP4 "...)
		default:
			b = append(b, "PROXY TCP6 "...)
		}
		b = s.AppendTo(b)
		b = append(b, ' ')
		b = d.AppendTo(b)
		b = append(b, ' ')
		b = strconv.AppendUint(b, uint64(src.Port()), 10)
		b = append(b, ' ')
		b = strconv.AppendUint(b, uint64(dst.Port()), 10)
		return append(b, '\r', '\n')
	case ProxyV2:
		b = append(b, proxyV2Sig...)
		b = append(b, proxyV2Version|proxyCmdProxy, fam)
		switch fam {
		case proxyFamUnspec:
			return append(b, 0, 0)
		case proxyFamTCP4:
			b = binary.BigEndian.AppendUint16(b, proxyAddrLenV4)
			s4, d4 := s.As4(), d.As4()
			b = append(append(b, s4[:]...), d4[:]...)
		default:
			b = binary.BigEndian.AppendUint16(b, proxyAddrLenV6)
			s16, d16 := s.As16(), d.As16()
			b = append(append(b, s16[:]...), d16[:]...)
		}
		b = binary.BigEndian.AppendUint16(b, src.Port())
		return binary.BigEndian.AppendUint16(b, dst.Port())
	}
	panic("BUG: l4: PROXY protocol version " + strconv.Itoa(int(v)))
}

// AppendProxyV2Local appends a v2 header with the LOCAL command, for a
// connection the proxy opens on its own behalf (a health check): the
// receiver keeps the connection's addresses. v1 has no equivalent (the
// spec suggests a real address pair instead).
func AppendProxyV2Local(b []byte) []byte {
	b = append(b, proxyV2Sig...)
	return append(b, proxyV2Version|proxyCmdLocal, proxyFamUnspec, 0, 0)
}

// ParseProxyHeader parses the PROXY protocol header, v1 or v2, at the start
// of data, the bytes received so far on a connection from a peer that must
// send one. It reports one of three outcomes, like HelloParser.Parse:
//
//   - err != nil: data does not start with a header this parser accepts
//     (one of the PROXY Err values of this package, unwrapped); more bytes
//     will not change that. Bytes that cannot start a header fail at once.
//   - need > 0: data is a valid prefix of a header; at least need more
//     bytes are required (a lower bound, not a read size).
//   - otherwise h holds the header, which ends at h.Len <= len(data).
//
// The result depends only on data, not on how it was split into reads. It
// never blocks, never consumes, and does not allocate; h.TLVs views data.
// v2 headers may be up to MaxProxyV2Len long; ProxyPolicy.Check takes a
// lower limit.
func ParseProxyHeader(data []byte) (h ProxyHeader, need int, err error) {
	return parseProxyHeader(data, MaxProxyV2Len)
}

func parseProxyHeader(data []byte, maxLen int) (ProxyHeader, int, error) {
	switch {
	case len(data) == 0:
		return ProxyHeader{}, minProxyV1Len, nil
	case data[0] == proxyV1Sig[0]:
		return parseProxyV1(data)
	case data[0] == proxyV2Sig[0]:
		return parseProxyV2(data, maxLen)
	}
	return ProxyHeader{}, 0, ErrNoProxyHeader
}

// parseProxyV1 parses data that starts with 'P'. It reads the line as it
// arrives, so that a line that breaks the format fails at its first wrong
// byte, as the spec recommends, with the error the whole line would get.
func parseProxyV1(data []byte) (ProxyHeader, int, error) {
	need := max(1, minProxyV1Len-len(data))
	if full, ok := hasPrefix(data, proxyV1Sig); !ok {
		return ProxyHeader{}, 0, ErrNoProxyHeader
	} else if !full {
		return ProxyHeader{}, need, nil
	}
	rest := data[len(proxyV1Sig):]
	var proto string
	for _, p := range [...]string{"TCP4 ", "TCP6 ", "UNKNOWN"} {
		full, ok := hasPrefix(rest, p)
		if !ok {
			continue
		}
		if !full {
			return ProxyHeader{}, need, nil
		}
		proto = p
		break
	}
	if proto == "" {
		return ProxyHeader{}, 0, ErrMalformedProxyHeader
	}
	start := len(proxyV1Sig) + len(proto)
	unknown := proto == "UNKNOWN"
	if unknown && len(data) > start && data[start] != ' ' && data[start] != '\r' {
		return ProxyHeader{}, 0, ErrMalformedProxyHeader // "UNKNOWNX"
	}

	// Find the CRLF. A TCP line holds only address and port characters;
	// an UNKNOWN one anything but a bare CR or LF.
	end := -1
	for i := start; i < min(len(data), MaxProxyV1Len); i++ {
		switch c := data[i]; {
		case c == '\r':
			switch {
			case i+2 > MaxProxyV1Len:
				return ProxyHeader{}, 0, ErrProxyV1TooLong
			case i+1 == len(data):
				return ProxyHeader{}, need, nil
			case data[i+1] != '\n':
				return ProxyHeader{}, 0, ErrMalformedProxyHeader
			}
			end = i + 2
		case c == '\n':
			return ProxyHeader{}, 0, ErrMalformedProxyHeader
		case !unknown && !isV1AddrChar(c):
			return ProxyHeader{}, 0, ErrMalformedProxyHeader
		}
		if end >= 0 {
			break
		}
	}
	if end < 0 {
		if len(data) >= MaxProxyV1Len {
			return ProxyHeader{}, 0, ErrProxyV1TooLong
		}
		return ProxyHeader{}, need, nil
	}

	h := ProxyHeader{Version: ProxyV1, Len: end}
	if unknown {
		return h, 0, nil
	}
	// "SRC DST SPORT DPORT", single spaces.
	line := data[start : end-2]
	srcB, line, ok1 := bytes.Cut(line, []byte{' '})
	dstB, line, ok2 := bytes.Cut(line, []byte{' '})
	sportB, dportB, ok3 := bytes.Cut(line, []byte{' '})
	if !ok1 || !ok2 || !ok3 {
		return ProxyHeader{}, 0, ErrMalformedProxyHeader
	}
	var src, dst netip.Addr
	if proto == "TCP4 " {
		src, ok1 = parseIPv4(srcB)
		dst, ok2 = parseIPv4(dstB)
	} else {
		src, ok1 = parseIPv6(srcB)
		dst, ok2 = parseIPv6(dstB)
	}
	sport, ok3 := parsePort(sportB)
	dport, ok4 := parsePort(dportB)
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return ProxyHeader{}, 0, ErrMalformedProxyHeader
	}
	h.Src, h.Dst = netip.AddrPortFrom(src, sport), netip.AddrPortFrom(dst, dport)
	return h, 0, nil
}

// parseProxyV2 parses data that starts with CR.
func parseProxyV2(data []byte, maxLen int) (ProxyHeader, int, error) {
	if full, ok := hasPrefix(data, proxyV2Sig); !ok {
		return ProxyHeader{}, 0, ErrNoProxyHeader
	} else if !full || len(data) < proxyV2HeaderLen {
		return ProxyHeader{}, proxyV2HeaderLen - len(data), nil
	}
	verCmd, fam := data[12], data[13]
	total := proxyV2HeaderLen + int(binary.BigEndian.Uint16(data[14:16]))
	cmd := verCmd & 0x0f
	switch {
	case verCmd&0xf0 != proxyV2Version || cmd > proxyCmdProxy:
		return ProxyHeader{}, 0, ErrProxyUnsupported
	case cmd == proxyCmdProxy && (fam>>4 > 3 || fam&0x0f > 2):
		// Unassigned family or transport (spec section 2.2). LOCAL
		// ignores the family.
		return ProxyHeader{}, 0, ErrMalformedProxyHeader
	case total > maxLen:
		return ProxyHeader{}, 0, ErrProxyHeaderTooLarge
	}
	// The address block's length for the protocol bytes the spec lists;
	// the other combinations are left opaque.
	addrLen, known := 0, true
	switch fam {
	case proxyFamUnspec:
	case proxyFamTCP4, 0x12: // TCP, UDP over IPv4
		addrLen = proxyAddrLenV4
	case proxyFamTCP6, 0x22:
		addrLen = proxyAddrLenV6
	case 0x31, 0x32: // UNIX stream, datagram
		addrLen = proxyAddrLenUDS
	default:
		known = false
	}
	if known && total < proxyV2HeaderLen+addrLen {
		return ProxyHeader{}, 0, ErrMalformedProxyHeader
	}
	if len(data) < total {
		return ProxyHeader{}, total - len(data), nil
	}

	h := ProxyHeader{Version: ProxyV2, Local: cmd == proxyCmdLocal, Len: total}
	if !known {
		return h, 0, nil
	}
	addr := data[proxyV2HeaderLen : proxyV2HeaderLen+addrLen]
	if cmd == proxyCmdProxy {
		switch fam {
		case proxyFamTCP4:
			h.Src = netip.AddrPortFrom(netip.AddrFrom4([4]byte(addr[0:4])), binary.BigEndian.Uint16(addr[8:10]))
			h.Dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(addr[4:8])), binary.BigEndian.Uint16(addr[10:12]))
		case proxyFamTCP6:
			h.Src = netip.AddrPortFrom(netip.AddrFrom16([16]byte(addr[0:16])), binary.BigEndian.Uint16(addr[32:34]))
			h.Dst = netip.AddrPortFrom(netip.AddrFrom16([16]byte(addr[16:32])), binary.BigEndian.Uint16(addr[34:36]))
		}
	}
	tlvStart := proxyV2HeaderLen + addrLen
	for i := tlvStart; i < total; {
		if total-i < 3 {
			return ProxyHeader{}, 0, ErrMalformedProxyHeader
		}
		typ, n := data[i], int(binary.BigEndian.Uint16(data[i+1:i+3]))
		v := i + 3
		if n > total-v {
			return ProxyHeader{}, 0, ErrMalformedProxyHeader
		}
		if typ == ProxyTLVCRC32C {
			if n != 4 {
				return ProxyHeader{}, 0, ErrMalformedProxyHeader
			}
			// The checksum of the header with this field zeroed (spec
			// section 2.2.3).
			c := crc32.Update(0, castagnoli, data[:v])
			c = crc32.Update(c, castagnoli, crcZero[:])
			c = crc32.Update(c, castagnoli, data[v+4:total])
			if c != binary.BigEndian.Uint32(data[v:v+4]) {
				return ProxyHeader{}, 0, ErrProxyChecksum
			}
		}
		i = v + n
	}
	if total > tlvStart {
		h.TLVs = ProxyTLVs(data[tlvStart:total:total])
	}
	return h, 0, nil
}

// hasPrefix reports whether b starts with s (full), or is a proper prefix of
// it (ok && !full).
func hasPrefix(b []byte, s string) (full, ok bool) {
	n := min(len(b), len(s))
	if string(b[:n]) != s[:n] {
		return false, false
	}
	return n == len(s), true
}

// isV1AddrChar reports whether c may appear in the addresses and ports of
// a v1 TCP line, separators included.
func isV1AddrChar(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' || c == ':' || c == '.' || c == ' '
}

// parseIPv4 parses dotted decimal without leading zeros (spec section 2.1),
// without allocating, unlike netip.ParseAddr of a converted string.
func parseIPv4(s []byte) (netip.Addr, bool) {
	var ip [4]byte
	for i := range ip {
		if i > 0 {
			if len(s) == 0 || s[0] != '.' {
				return netip.Addr{}, false
			}
			s = s[1:]
		}
		n, d := 0, 0
		for d < len(s) && '0' <= s[d] && s[d] <= '9' {
			if d > 0 && n == 0 { // a leading zero
				return netip.Addr{}, false
			}
			n = n*10 + int(s[d]-'0')
			d++
			if n > 255 {
				return netip.Addr{}, false
			}
		}
		if d == 0 {
			return netip.Addr{}, false
		}
		ip[i] = byte(n)
		s = s[d:]
	}
	return netip.AddrFrom4(ip), len(s) == 0
}

// parseIPv6 parses an IPv6 address in the text forms of RFC 4291 section
// 2.2 (hex groups, one "::", a trailing dotted IPv4 address), without a
// zone and without allocating.
func parseIPv6(s []byte) (netip.Addr, bool) {
	var ip [16]byte
	ellipsis := -1 // where "::" stands in ip; -1 when absent
	if len(s) >= 2 && s[0] == ':' && s[1] == ':' {
		ellipsis = 0
		s = s[2:]
	}
	i := 0
	for i < 16 && len(s) > 0 {
		acc, d := 0, 0
		for ; d < len(s) && d < 5; d++ {
			v, ok := hexVal(s[d])
			if !ok {
				break
			}
			acc = acc<<4 | v
		}
		if d == 0 || d > 4 {
			return netip.Addr{}, false
		}
		if d < len(s) && s[d] == '.' {
			// A trailing IPv4 address fills the last four bytes.
			if ellipsis < 0 && i != 12 || i > 12 {
				return netip.Addr{}, false
			}
			ip4, ok := parseIPv4(s)
			if !ok {
				return netip.Addr{}, false
			}
			a4 := ip4.As4()
			copy(ip[i:], a4[:])
			i += 4
			s = nil
			break
		}
		ip[i], ip[i+1] = byte(acc>>8), byte(acc)
		i += 2
		s = s[d:]
		if len(s) == 0 {
			break
		}
		if s[0] != ':' || len(s) == 1 {
			return netip.Addr{}, false
		}
		s = s[1:]
		if s[0] == ':' {
			if ellipsis >= 0 {
				return netip.Addr{}, false
			}
			ellipsis = i
			s = s[1:]
		}
	}
	if len(s) != 0 {
		return netip.Addr{}, false
	}
	switch {
	case i < 16 && ellipsis < 0, i == 16 && ellipsis >= 0:
		// Too few groups without "::", or a "::" standing for none.
		return netip.Addr{}, false
	case i < 16:
		n := 16 - i
		copy(ip[ellipsis+n:], ip[ellipsis:i])
		clear(ip[ellipsis : ellipsis+n])
	}
	return netip.AddrFrom16(ip), true
}

func hexVal(c byte) (int, bool) {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0'), true
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10, true
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10, true
	}
	return 0, false
}

// parsePort parses a decimal port without leading zeros.
func parsePort(s []byte) (uint16, bool) {
	if len(s) == 0 || len(s) > 5 || len(s) > 1 && s[0] == '0' {
		return 0, false
	}
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return uint16(n), n <= 0xffff
}

// ProxyPolicy is a listener's policy for PROXY protocol headers from the
// peers that connect to it (see the top of this file). The zero value
// trusts no one: Check then only rejects connections that start with a
// header. It is read-only once in use and safe for concurrent use.
type ProxyPolicy struct {
	// Trusted are the networks of the proxies allowed, and required, to
	// send a header. A peer matches as it is and with an IPv4-mapped
	// address unmapped; its zone is ignored.
	Trusted []netip.Prefix
	// MaxLen bounds a v2 header, in bytes from its first; a larger one
	// fails with ErrProxyHeaderTooLarge as soon as its length is read.
	// Zero or negative means DefaultMaxProxyHeaderLen. v1 headers are
	// bounded by the format (MaxProxyV1Len).
	MaxLen int
}

// Trusts reports whether peer is in one of the trusted networks.
func (p *ProxyPolicy) Trusts(peer netip.Addr) bool {
	peer = peer.WithZone("")
	unmapped := peer.Unmap()
	for _, n := range p.Trusted {
		if n.Contains(peer) || n.Contains(unmapped) {
			return true
		}
	}
	return false
}

// Check applies the policy to data, the bytes received so far from peer,
// with the outcomes of ParseProxyHeader:
//
//   - from a trusted peer, the header ParseProxyHeader finds, bounded by
//     MaxLen, or its error (ErrNoProxyHeader when data does not start one);
//   - from any other peer, ErrProxyUntrusted when data starts with the v1
//     "PROXY " or the v2 signature; need > 0 while data is a strict prefix
//     of one; otherwise a zero ProxyHeader (Len 0: nothing to discard) as
//     soon as the first byte rules a signature out.
//
// It never blocks, never consumes and does not allocate.
func (p *ProxyPolicy) Check(peer netip.Addr, data []byte) (ProxyHeader, int, error) {
	if p.Trusts(peer) {
		maxLen := p.MaxLen
		if maxLen <= 0 {
			maxLen = DefaultMaxProxyHeaderLen
		}
		return parseProxyHeader(data, maxLen)
	}
	if len(data) == 0 {
		return ProxyHeader{}, 1, nil
	}
	for _, sig := range [...]string{proxyV1Sig, proxyV2Sig} {
		if full, ok := hasPrefix(data, sig); full {
			return ProxyHeader{}, 0, ErrProxyUntrusted
		} else if ok {
			return ProxyHeader{}, len(sig) - len(data), nil
		}
	}
	return ProxyHeader{}, 0, nil
}
