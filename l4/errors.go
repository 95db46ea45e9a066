package l4

import "errors"

// Errors returned by [HelloParser.Parse]. Each means the connection is not a
// TLS client this proxy can route by SNI, and it should be closed (or handed
// to a non-TLS route). They are returned unwrapped, so a flood of garbage
// costs no allocation; compare with errors.Is.
var (
	// ErrNotTLS means the bytes are not a TLS record: an HTTP request, a
	// PROXY protocol header, an SSL 2.0 hello, or noise.
	ErrNotTLS = errors.New("l4: not a TLS record")
	// ErrNotHandshake means the first record is TLS but not a handshake
	// record (an alert, change_cipher_spec or application data).
	ErrNotHandshake = errors.New("l4: not a TLS handshake")
	// ErrNotClientHello means the first handshake message is not a
	// ClientHello.
	ErrNotClientHello = errors.New("l4: not a TLS ClientHello")
	// ErrRecordTooLarge means a record is longer than 2^14 bytes, the
	// limit for TLSPlaintext (RFC 8446 section 5.1).
	ErrRecordTooLarge = errors.New("l4: TLS record longer than 16384 bytes")
	// ErrHelloTooLarge means the ClientHello would not fit in
	// HelloParser.MaxLen bytes.
	ErrHelloTooLarge = errors.New("l4: TLS ClientHello longer than the limit")
	// ErrMalformedHello means lengths or fields of the records or of the
	// ClientHello do not add up.
	ErrMalformedHello = errors.New("l4: malformed TLS ClientHello")
	// ErrInvalidServerName means the server_name extension holds a name
	// that is not a DNS host name: an IP literal, a trailing dot, an empty
	// or over-long label, or a byte outside letters, digits, '-' and '_'.
	ErrInvalidServerName = errors.New("l4: invalid TLS server name")
)

// Errors of the proxy. They reach the debug log and the reason a flow was
// closed; compare with errors.Is.
var (
	// ErrNoRoute means a TLS passthrough connection's server name matched
	// no route and the listener has no default pool.
	ErrNoRoute = errors.New("l4: no route for server name")
	// ErrHelloTimeout means a TLS passthrough connection did not send its
	// whole ClientHello within client_hello_timeout.
	ErrHelloTimeout = errors.New("l4: ClientHello not received in time")
	// ErrConnectTimeout means no backend connection was ready in time.
	ErrConnectTimeout = errors.New("l4: backend connection not ready in time")
	// ErrEnrollTimeout means a paused socket handed back to its event loop
	// never opened there.
	ErrEnrollTimeout = errors.New("l4: socket not resumed in time")
	// errNoDirectRegister means registerFD was called without a gnet event
	// loop it can reach (see gnetfd.go); never returned by the proxy.
	errNoDirectRegister = errors.New("l4: gnet version without direct registration")
	// errResumeNotOpened means gnet closed a resumed socket before its
	// OnOpen took it; not expected with gnet's register0.
	errResumeNotOpened = errors.New("l4: resumed socket not opened by the event loop")
	// ErrPeerGone means a paused socket's peer reset it before reading
	// resumed.
	ErrPeerGone = errors.New("l4: peer gone while paused")
)

// Errors returned by [ParseProxyHeader] and [ProxyPolicy.Check]. Each means
// the connection must be closed. They are returned unwrapped; compare with
// errors.Is.
var (
	// ErrNoProxyHeader means a peer that must send a PROXY protocol header
	// sent bytes that do not start one.
	ErrNoProxyHeader = errors.New("l4: no PROXY protocol header")
	// ErrProxyUntrusted means a peer outside ProxyPolicy.Trusted sent a
	// PROXY protocol header.
	ErrProxyUntrusted = errors.New("l4: PROXY protocol header from an untrusted peer")
	// ErrMalformedProxyHeader means a PROXY protocol header breaks the
	// format: a bad v1 line, a bare CR or LF, a v2 family, address block
	// or TLV that does not add up.
	ErrMalformedProxyHeader = errors.New("l4: malformed PROXY protocol header")
	// ErrProxyV1TooLong means a v1 header has no CRLF in its first 107
	// bytes, the longest line the protocol allows.
	ErrProxyV1TooLong = errors.New("l4: PROXY protocol v1 header longer than 107 bytes")
	// ErrProxyHeaderTooLarge means a v2 header declares more bytes than
	// ProxyPolicy.MaxLen.
	ErrProxyHeaderTooLarge = errors.New("l4: PROXY protocol v2 header longer than the limit")
	// ErrProxyUnsupported means a v2 header has a version other than 2 or
	// a command other than LOCAL and PROXY.
	ErrProxyUnsupported = errors.New("l4: unsupported PROXY protocol version or command")
	// ErrProxyChecksum means a v2 header's PP2_TYPE_CRC32C value does not
	// match the header.
	ErrProxyChecksum = errors.New("l4: PROXY protocol v2 header checksum mismatch")
)
