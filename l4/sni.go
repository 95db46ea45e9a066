package l4

import (
	"iter"
	"strings"

	"golang.org/x/crypto/cryptobyte"
)

// DefaultMaxHelloLen is the HelloParser.MaxLen used when it is zero: one
// full-size TLS record, header included (5 + 2^14 bytes). Real ClientHellos
// are far smaller: about 2 KB from Chrome with an X25519MLKEM768 key share,
// 0.3-0.5 KB from OpenSSL without one.
const DefaultMaxHelloLen = recordHeaderLen + maxPlaintextLen

const (
	recordHeaderLen    = 5
	handshakeHeaderLen = 4
	// maxPlaintextLen is the largest TLSPlaintext.length (RFC 8446 section 5.1).
	maxPlaintextLen = 1 << 14
	// minHelloBodyLen is the smallest ClientHello body: legacy_version (2),
	// random (32), an empty legacy_session_id (1), one cipher suite (2+2)
	// and one compression method (1+1).
	minHelloBodyLen = 2 + 32 + 1 + 2 + 2 + 1 + 1

	recordTypeChangeCipherSpec = 20
	recordTypeApplicationData  = 23
	recordTypeHandshake        = 22
	handshakeTypeClientHello   = 1

	extServerName = 0  // RFC 6066 section 3
	extALPN       = 16 // RFC 7301 section 3.1
	hostNameType  = 0  // NameType host_name, RFC 6066 section 3

	maxHostNameLen  = 253
	maxHostLabelLen = 63
)

// Hello is what [HelloParser.Parse] reads from a ClientHello.
type Hello struct {
	// ServerName is the host_name of the server_name extension (RFC 6066),
	// lower-cased, as DNS names are case-insensitive. It is empty when the
	// client sent none, as clients do when they connect to an IP address.
	// With Encrypted Client Hello it is the outer, public name.
	ServerName string

	// ALPN is the protocol list of the ALPN extension. It views the bytes
	// given to Parse, or the parser's reassembly buffer; see [ALPN].
	ALPN ALPN

	// Len is how many bytes at the start of the parsed data hold the
	// ClientHello: all its TLS records, headers included. Bytes after Len
	// are the client's next records (TLS 1.3 early data, for one), which a
	// passthrough proxy forwards unread.
	Len int
}

// HelloParser parses the TLS ClientHello at the start of a connection from
// the bytes received so far, for routing TLS passthrough by SNI. It never
// blocks and never consumes: the caller peeks at its buffer, calls Parse,
// and calls again with more bytes when Parse asks for them.
//
// The zero value is ready to use. A HelloParser is not safe for concurrent
// use: keep one per event loop. Parse allocates only the server name string,
// and, the first time a ClientHello is fragmented over several records, the
// parser's reassembly buffer, which later calls reuse.
type HelloParser struct {
	// MaxLen bounds the bytes a ClientHello may span, its records' headers
	// included, so that a client cannot make the proxy buffer without limit
	// by sending a hello slowly or declaring a huge one. Parse returns
	// ErrHelloTooLarge as soon as the headers received show the hello will
	// not fit. Zero or negative means DefaultMaxHelloLen; raise it to accept
	// hellos spanning several full records. MaxLen bounds memory, not time:
	// the caller still needs a deadline for the hello to arrive.
	MaxLen int

	// buf holds the handshake message reassembled from its fragments when
	// it spans several records; reused from call to call.
	buf []byte
}

// Parse parses the ClientHello at the start of data, the bytes received so
// far on a new connection, and reports one of three outcomes:
//
//   - err != nil: data is not the start of a ClientHello this parser can
//     route (one of the Err values of this package, unwrapped); more bytes
//     will not change that.
//   - need > 0: data is a valid prefix of a ClientHello; at least need more
//     bytes are required before Parse can tell more. Call again with data
//     plus the bytes that arrive later (need is a lower bound, not a read
//     size). Bytes that cannot start a ClientHello fail as soon as they
//     arrive: a single 'G' of "GET" returns ErrNotTLS.
//   - otherwise h holds the ClientHello, which ends at h.Len <= len(data).
//
// The result depends only on data, not on how it was split into reads, so
// calling Parse on each growing prefix is correct. The ClientHello may be
// fragmented over several TLS records, which is legal.
//
// h.ALPN views data when the ClientHello fits in one record and the
// parser's buffer otherwise: it is valid until data is modified or Parse is
// called again on the same parser, whichever comes first. Copy what must be
// kept longer. h.ServerName is a new string and stays valid.
//
// Parse checks the structure of the ClientHello up to its extensions list
// and the contents of the server_name and ALPN extensions, rejecting a
// duplicate of either; other extensions are skipped unread, and cipher
// suites, versions and key shares are left to the backend.
func (p *HelloParser) Parse(data []byte) (h Hello, need int, err error) {
	limit := p.MaxLen
	if limit <= 0 {
		limit = DefaultMaxHelloLen
	}

	var (
		pos     int     // start of the current record in data
		got     int     // handshake message bytes in the records before pos
		msgLen  = -1    // handshake message length, header included; -1 until known
		hdr     [4]byte // handshake header, gathered across records
		records int
	)
	// wantMsg is the handshake message length, or its least possible value
	// while the header is incomplete.
	wantMsg := func() int {
		if msgLen >= 0 {
			return msgLen
		}
		return handshakeHeaderLen + minHelloBodyLen
	}
	for {
		// The bytes of the message still to come need at least one more
		// record header.
		minTotal := pos + recordHeaderLen + wantMsg() - got
		if minTotal > limit {
			return Hello{}, 0, ErrHelloTooLarge
		}
		rec := data[pos:]
		if err := checkRecordPrefix(rec, pos == 0); err != nil {
			return Hello{}, 0, err
		}
		if len(rec) < recordHeaderLen {
			return Hello{}, minTotal - len(data), nil
		}
		n := int(rec[3])<<8 | int(rec[4])
		if n > maxPlaintextLen {
			return Hello{}, 0, ErrRecordTooLarge
		}
		if n == 0 { // forbidden for handshake records (RFC 8446 section 5.1)
			return Hello{}, 0, ErrMalformedHello
		}
		end := pos + recordHeaderLen + n
		if end > limit {
			return Hello{}, 0, ErrHelloTooLarge
		}
		frag := data[pos+recordHeaderLen : min(end, len(data))]

		for i := 0; got+i < handshakeHeaderLen && i < len(frag); i++ {
			hdr[got+i] = frag[i]
		}
		if got == 0 && len(frag) > 0 && hdr[0] != handshakeTypeClientHello {
			return Hello{}, 0, ErrNotClientHello
		}
		if msgLen < 0 && got+len(frag) >= handshakeHeaderLen {
			msgLen = handshakeHeaderLen + (int(hdr[1])<<16 | int(hdr[2])<<8 | int(hdr[3]))
			if msgLen < handshakeHeaderLen+minHelloBodyLen {
				return Hello{}, 0, ErrMalformedHello
			}
		}
		left := wantMsg() - got // message bytes from the start of this record on
		if msgLen >= 0 && left < n {
			// The record holds bytes after the ClientHello, which would be
			// another handshake message; a client sends none before the
			// server's reply.
			return Hello{}, 0, ErrMalformedHello
		}
		minTotal = end
		if left > n {
			minTotal += recordHeaderLen + left - n
		}
		// While this record's part of the handshake header has not arrived,
		// minTotal rests on the least message length: let it set need, but
		// not fail the hello, or a prefix could fail where the whole hello
		// fails otherwise (a too-short msgLen above).
		headerPending := msgLen < 0 && got+n >= handshakeHeaderLen
		if minTotal > limit && !headerPending {
			return Hello{}, 0, ErrHelloTooLarge
		}
		if len(data) < end {
			return Hello{}, minTotal - len(data), nil
		}
		got += n
		pos = end
		records++
		if got == msgLen {
			break
		}
	}

	msg := data[recordHeaderLen:pos]
	if records > 1 {
		msg = p.reassemble(data[:pos])
	}
	h.Len = pos
	if err := parseHelloBody(msg[handshakeHeaderLen:], &h); err != nil {
		return Hello{}, 0, err
	}
	return h, 0, nil
}

// checkRecordPrefix checks the content type and major version of the record
// header at the start of rec, as far as rec holds them.
func checkRecordPrefix(rec []byte, first bool) error {
	if len(rec) > 0 && rec[0] != recordTypeHandshake {
		if !first {
			// Records of another type must not interleave with a
			// handshake message (RFC 8446 section 5.1).
			return ErrMalformedHello
		}
		if rec[0] >= recordTypeChangeCipherSpec && rec[0] <= recordTypeApplicationData {
			return ErrNotHandshake
		}
		return ErrNotTLS
	}
	if len(rec) > 1 && rec[1] != 3 { // legacy_record_version 3.x
		return ErrNotTLS
	}
	return nil
}

// reassemble copies the fragments of the handshake message in the complete,
// checked records of data into p.buf and returns the message.
func (p *HelloParser) reassemble(data []byte) []byte {
	p.buf = p.buf[:0]
	for len(data) > 0 {
		n := int(data[3])<<8 | int(data[4])
		p.buf = append(p.buf, data[recordHeaderLen:recordHeaderLen+n]...)
		data = data[recordHeaderLen+n:]
	}
	return p.buf
}

// parseHelloBody parses a ClientHello without its handshake header
// (RFC 8446 section 4.1.2, RFC 5246 section 7.4.1.2) into h.
func parseHelloBody(body cryptobyte.String, h *Hello) error {
	var (
		version                 uint16
		sessionID, suites, comp cryptobyte.String
	)
	if !body.ReadUint16(&version) || version>>8 != 3 ||
		!body.Skip(32) || // random
		!body.ReadUint8LengthPrefixed(&sessionID) || len(sessionID) > 32 ||
		!body.ReadUint16LengthPrefixed(&suites) || len(suites) < 2 || len(suites)%2 != 0 ||
		!body.ReadUint8LengthPrefixed(&comp) || len(comp) < 1 {
		return ErrMalformedHello
	}
	if body.Empty() {
		return nil // no extensions block, which TLS 1.2 and older allow
	}
	var exts cryptobyte.String
	if !body.ReadUint16LengthPrefixed(&exts) || !body.Empty() {
		return ErrMalformedHello
	}
	var sawSNI, sawALPN bool
	for !exts.Empty() {
		var (
			typ uint16
			ext cryptobyte.String
		)
		if !exts.ReadUint16(&typ) || !exts.ReadUint16LengthPrefixed(&ext) {
			return ErrMalformedHello
		}
		switch typ {
		case extServerName:
			if sawSNI {
				return ErrMalformedHello
			}
			sawSNI = true
			name, ok := parseServerNameExt(ext)
			if !ok {
				return ErrMalformedHello
			}
			if name == nil {
				continue
			}
			s, ok := lowerHostName(name)
			if !ok {
				return ErrInvalidServerName
			}
			h.ServerName = s
		case extALPN:
			if sawALPN {
				return ErrMalformedHello
			}
			sawALPN = true
			list, ok := parseALPNExt(ext)
			if !ok {
				return ErrMalformedHello
			}
			h.ALPN = ALPN{list: list}
		}
	}
	return nil
}

// parseServerNameExt returns the host_name of a server_name extension
// (RFC 6066 section 3), or nil if the list holds only other name types.
func parseServerNameExt(ext cryptobyte.String) (name []byte, ok bool) {
	var list cryptobyte.String
	if !ext.ReadUint16LengthPrefixed(&list) || list.Empty() || !ext.Empty() {
		return nil, false
	}
	for !list.Empty() {
		var (
			typ uint8
			n   cryptobyte.String
		)
		if !list.ReadUint8(&typ) || !list.ReadUint16LengthPrefixed(&n) || n.Empty() {
			return nil, false
		}
		if typ != hostNameType {
			continue
		}
		if name != nil { // at most one name per type
			return nil, false
		}
		name = n
	}
	return name, true
}

// parseALPNExt checks an ALPN extension (RFC 7301 section 3.1) and returns
// its protocol_name_list.
func parseALPNExt(ext cryptobyte.String) (list []byte, ok bool) {
	var l cryptobyte.String
	if !ext.ReadUint16LengthPrefixed(&l) || l.Empty() || !ext.Empty() {
		return nil, false
	}
	list = l
	for !l.Empty() {
		var proto cryptobyte.String
		if !l.ReadUint8LengthPrefixed(&proto) || proto.Empty() {
			return nil, false
		}
	}
	return list, true
}

// lowerHostName checks that name is a DNS host name as RFC 6066 allows in
// SNI and returns it lower-cased. It accepts letters, digits, '-' and '_'
// (not LDH, but found in real names) in dot-separated labels of 1 to 63
// bytes, at most 253 bytes in all, with no trailing dot. A last label of
// digits only is rejected: that is an IPv4 literal ("10.0.0.1", "127.1"),
// and no top-level domain is all-numeric. IPv6 literals fail on ':'.
func lowerHostName(name []byte) (string, bool) {
	if len(name) == 0 || len(name) > maxHostNameLen {
		return "", false
	}
	var buf [maxHostNameLen]byte
	label := 0 // length of the current label
	digits := true
	for i, c := range name {
		switch {
		case 'a' <= c && c <= 'z', c == '-', c == '_':
			digits = false
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
			digits = false
		case '0' <= c && c <= '9':
		case c == '.':
			if label == 0 {
				return "", false
			}
			buf[i] = c
			label = 0
			digits = true
			continue
		default:
			return "", false
		}
		label++
		if label > maxHostLabelLen {
			return "", false
		}
		buf[i] = c
	}
	if label == 0 || digits {
		return "", false
	}
	return string(buf[:len(name)]), true
}

// ALPN is the protocol_name_list of a ClientHello's ALPN extension
// (RFC 7301), in the client's order of preference. The zero value means
// the client sent no ALPN extension. An ALPN views the bytes the
// ClientHello was parsed from, with the lifetime given at
// [HelloParser.Parse]; its methods do not allocate, except String.
type ALPN struct {
	list []byte // checked: one or more non-empty uint8-length-prefixed names
}

// All yields each protocol name in order. The slices view the parsed bytes
// and must not be modified.
func (a ALPN) All() iter.Seq[[]byte] {
	return func(yield func([]byte) bool) {
		for l := a.list; len(l) > 0; {
			n := 1 + int(l[0])
			if !yield(l[1:n:n]) {
				return
			}
			l = l[n:]
		}
	}
}

// Len returns the number of protocols offered; 0 if there was no ALPN
// extension.
func (a ALPN) Len() int {
	n := 0
	for l := a.list; len(l) > 0; l = l[1+int(l[0]):] {
		n++
	}
	return n
}

// Contains reports whether the client offered proto, e.g. "h2".
func (a ALPN) Contains(proto string) bool {
	for p := range a.All() {
		if string(p) == proto {
			return true
		}
	}
	return false
}

// String returns the protocols separated by commas, as in "h2,http/1.1",
// for logs and tests. It allocates.
func (a ALPN) String() string {
	var b strings.Builder
	for p := range a.All() {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.Write(p)
	}
	return b.String()
}
