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
