package l7

import (
	"bytes"
	"encoding/binary"

	"github.com/valyala/fasthttp"
)

// Request smuggling works when two HTTP parsers on one path read a message's
// framing differently: a front proxy and a backend, or portico and either.
// fasthttp's parser (v1.78.0) already refuses most of the classic shapes
// before the handler runs; portico answers those with 400 from parseError:
//   - two Content-Length fields, or one that is not plain digits ("+5",
//     "5,5", "0x5", "-5", empty, more digits than an int holds);
//   - a Transfer-Encoding other than chunked or identity ("chunked,
//     identity", "gzip, chunked", "xchunked"), two Transfer-Encoding fields,
//     or any Transfer-Encoding in an HTTP/1.0 request;
//   - whitespace between a field name and its colon, a first field line
//     that starts with whitespace, a bare CR, and control characters other
//     than HTAB in names or values (NUL, VT, FF...);
//   - a missing, empty or repeated Host in HTTP/1.1, and a Host or target
//     that its URI parser rejects;
//   - chunk sizes that are not bare hex ("0x5", "-5", " 5", too many
//     digits), a LF inside a chunk line, a missing CRLF after chunk data.
//
// What it accepts and checkRequest refuses, with 400 unless noted:
//   - Content-Length together with Transfer-Encoding (fasthttp takes chunked
//     and closes the connection afterwards; RFC 9112 section 6.1 allows
//     rejecting instead, which leaves no doubt upstream);
//   - "Transfer-Encoding: identity" (fasthttp ignores it, and then reads the
//     body as the next request);
//   - obs-fold continuation lines (fasthttp joins them, so a folded
//     "Transfer-Encoding:\r\n chunked" was chunked to it);
//   - a bare LF ending a field line or the header block;
//   - a field name with whitespace inside ("X Foo"), which fasthttp passes on;
//   - DEL (0x7f) in a field value;
//   - "Content_Length" and "Transfer_Encoding", which some backends (CGI
//     style gateways) read as the framing headers;
//   - a Host that is empty, repeated or not a URI authority ("u@evil", which
//     fasthttp turns into Host "evil" plus an Authorization header upstream),
//     or that fasthttp's URI parser reads differently from the raw field;
//     and a missing Host in HTTP/1.0 too, since portico routes by host and
//     must send one upstream;
//   - an absolute-form target with a scheme other than http or https, or
//     with userinfo;
//   - an upgrade request that declares a body (the tunnel sends no body);
//   - CONNECT (501): a backend that took it would turn a pooled connection
//     into a tunnel;
//   - a protocol other than HTTP/1.0 and HTTP/1.1 (505).
//
// An absolute-form target ("GET http://a.example/x HTTP/1.1") is accepted
// whatever its Host says: RFC 9112 section 3.2.2 makes the target's authority
// win, so checkRequest sets Host to it and routing, X-Forwarded-Host and the
// upstream request all see the same host.
//
// A bare LF ending the request line is accepted (RFC 9112 section 2.2 allows
// it and fasthttp does not keep the line), as are chunk extensions of any
// content: portico writes its own request line and re-chunks the body, so
// neither reaches a backend. Errors inside a chunked body show up only while
// it streams upstream, where bodyReader makes them abort the upstream
// request. The trailer section of a chunked body is parsed by fasthttp
// alone, and it takes a bare LF for a line end there; portico cannot see
// those bytes, so a connection serves nothing after a chunked request (see
// finish), and no peer can disagree about where the next request starts.

// Reasons checkRequest gives with its statuses.
const (
	reasonBareLF       = "bare LF in header block"
	reasonBareCR       = "bare CR in header block"
	reasonObsFold      = "obsolete line folding in header block"
	reasonNameSpace    = "whitespace between header name and colon"
	reasonBadName      = "invalid header name"
	reasonBadValue     = "invalid character in header value"
	reasonUnterminated = "header block not terminated"
	reasonBadCL        = "invalid Content-Length"
	reasonDupCL        = "duplicate Content-Length"
	reasonBadTE        = "unsupported Transfer-Encoding"
	reasonDupTE        = "duplicate Transfer-Encoding"
	reasonCLTE         = "conflicting Content-Length and Transfer-Encoding"
	reasonTE10         = "Transfer-Encoding in an HTTP/1.0 request"
	reasonUnderscore   = "framing header name with underscore"
	reasonNoHost       = "missing Host header"
	reasonDupHost      = "duplicate Host header"
	reasonBadHost      = "invalid Host header"
	reasonBadScheme    = "unsupported scheme in request target"
	reasonUserinfo     = "userinfo in request target"
	reasonBadAuthority = "invalid authority in request target"
	reasonUpgradeBody  = "upgrade request with a body"
	reasonConnect      = "CONNECT is not supported"
	reasonVersion      = "unsupported HTTP version"
	reasonNoRawHeaders = "cannot inspect request header block"
	reasonRequestLine  = "malformed request line"
	reasonBadHostParse = "invalid host"
)

// checkRequest rejects request shapes that two HTTP parsers could read
// differently (request smuggling) before anything goes upstream. It returns
// 0 when the request is acceptable, else the status and a short reason, and
// then marks the connection to be closed after the answer: the body of a
// request whose framing is in doubt must not be read as the next request.
// For an absolute-form target it sets the Host header to the target's
// authority.
//
// It makes one pass over the raw header block and does not allocate.
func checkRequest(ctx *fasthttp.RequestCtx) (status int, reason string) {
	status, reason = inspectRequest(ctx)
	if status != 0 {
		ctx.SetConnectionClose()
	}
	return status, reason
}

func inspectRequest(ctx *fasthttp.RequestCtx) (status int, reason string) {
	h := &ctx.Request.Header
	http11 := h.IsHTTP11()
	if !http11 && !bytes.Equal(h.Protocol(), strHTTP10) {
		return fasthttp.StatusHTTPVersionNotSupported, reasonVersion
	}
	if h.IsConnect() {
		return fasthttp.StatusNotImplemented, reasonConnect
	}
	raw := h.RawHeaders()
	if len(raw) == 0 && len(h.Host()) > 0 {
		// fasthttp parsed fields it did not keep: fail closed.
		return fasthttp.StatusInternalServerError, reasonNoRawHeaders
	}
	var f headerFacts
	if len(raw) > 0 {
		if status, reason = scanHeaderBlock(raw, &f); status != 0 {
			return status, reason
		}
	}
	switch {
	case f.contentLength > 1:
		return fasthttp.StatusBadRequest, reasonDupCL
	case f.transferEncoding > 1:
		return fasthttp.StatusBadRequest, reasonDupTE
	case f.contentLength > 0 && f.transferEncoding > 0:
		return fasthttp.StatusBadRequest, reasonCLTE
	case f.transferEncoding > 0 && !http11:
		return fasthttp.StatusBadRequest, reasonTE10
	case f.host == 0:
		return fasthttp.StatusBadRequest, reasonNoHost
	case f.host > 1:
		return fasthttp.StatusBadRequest, reasonDupHost
	case f.body && f.upgrade && isUpgrade(h):
		return fasthttp.StatusBadRequest, reasonUpgradeBody
	}
	return checkTarget(ctx)
}

// checkTarget makes the Host header and the request target agree.
func checkTarget(ctx *fasthttp.RequestCtx) (status int, reason string) {
	h := &ctx.Request.Header
	target := h.RequestURI()
	uriHost := ctx.URI().Host()
	if len(target) == 0 || target[0] == '/' || (len(target) == 1 && target[0] == '*') {
		// Origin-form: fasthttp's URI parser read the Host field; anything
		// it changed beyond case (decoded escapes, dropped userinfo) would
		// route here on one host and go upstream with another.
		if !asciiEqualFold(h.Host(), uriHost) {
			return fasthttp.StatusBadRequest, reasonBadHost
		}
		return 0, ""
	}
	// Absolute-form: scheme "://" authority [path-abempty] ["?" query].
	i := bytes.Index(target, strColonSlashSlash)
	if i < 0 {
		return fasthttp.StatusBadRequest, reasonBadAuthority
	}
	scheme := target[:i]
	if !asciiEqualFold(scheme, "http") && !asciiEqualFold(scheme, "https") {
		return fasthttp.StatusBadRequest, reasonBadScheme
	}
	auth := target[i+len(strColonSlashSlash):]
	for j, c := range auth {
		if c == '/' || c == '?' || c == '#' {
			auth = auth[:j]
			break
		}
	}
	if bytes.IndexByte(auth, '@') >= 0 {
		return fasthttp.StatusBadRequest, reasonUserinfo
	}
	if !validHostField(auth) || !asciiEqualFold(auth, uriHost) {
		return fasthttp.StatusBadRequest, reasonBadAuthority
	}
	h.SetHostBytes(uriHost)
	return 0, ""
}

var (
	strHTTP10          = []byte("HTTP/1.0")
	strColonSlashSlash = []byte("://")
)

// headerFacts is what scanHeaderBlock learns about the framing fields.
type headerFacts struct {
	contentLength    int  // Content-Length fields seen
	transferEncoding int  // Transfer-Encoding fields seen
	host             int  // Host fields seen
	body             bool // a non-zero Content-Length or a Transfer-Encoding
	upgrade          bool // an Upgrade field
}

// scanHeaderBlock checks a raw header block (the field lines after the
// request line, through the empty line that ends them) and fills f. Each
// line must be a token, a colon, and a value of visible characters,
// obs-text, SP and HTAB, ended by CRLF. It returns 0 or a 400 and a reason.
func scanHeaderBlock(raw []byte, f *headerFacts) (status int, reason string) {
	const bad = fasthttp.StatusBadRequest
	i := 0
	for {
		if i >= len(raw) {
			return bad, reasonUnterminated
		}
		switch raw[i] {
		case '\r':
			if i+1 < len(raw) && raw[i+1] == '\n' {
				if i+2 != len(raw) {
					return bad, reasonUnterminated // bytes after the end: not a block
				}
				return 0, ""
			}
			return bad, reasonBareCR
		case '\n':
			return bad, reasonBareLF
		case ' ', '\t':
			return bad, reasonObsFold
		}

		start := i
		for i < len(raw) && tokenChars[raw[i]] {
			i++
		}
		if i == len(raw) {
			return bad, reasonUnterminated
		}
		if raw[i] != ':' {
			if raw[i] == ' ' || raw[i] == '\t' {
				j := i
				for j < len(raw) && (raw[j] == ' ' || raw[j] == '\t') {
					j++
				}
				if j < len(raw) && raw[j] == ':' {
					return bad, reasonNameSpace
				}
			}
			return bad, reasonBadName
		}
		if i == start {
			return bad, reasonBadName
		}
		name := raw[start:i]
		i++

		vstart := i
	value:
		for {
			for i+8 <= len(raw) && !wordHasCTL(binary.LittleEndian.Uint64(raw[i:])) {
				i += 8
			}
			if i >= len(raw) {
				return bad, reasonUnterminated
			}
			switch c := raw[i]; {
			case c >= 0x20 && c != 0x7f, c == '\t':
				i++
			case c == '\r':
				break value
			case c == '\n':
				return bad, reasonBareLF
			default:
				return bad, reasonBadValue
			}
		}
		if i+1 >= len(raw) || raw[i+1] != '\n' {
			return bad, reasonBareCR
		}
		v := trimFieldValue(raw[vstart:i])
		i += 2
		if i < len(raw) && (raw[i] == ' ' || raw[i] == '\t') {
			return bad, reasonObsFold // before the value is judged: it continues
		}

		switch len(name) {
		case 4:
			if asciiEqualFold(name, "host") {
				f.host++
				if !validHostField(v) {
					return bad, reasonBadHost
				}
			}
		case 7:
			if asciiEqualFold(name, "upgrade") {
				f.upgrade = true
			}
		case 14:
			switch framingName(name, "content-length") {
			case framingExact:
				f.contentLength++
				if len(v) == 0 || len(v) > 18 {
					return bad, reasonBadCL
				}
				zero := true
				for _, c := range v {
					if c < '0' || c > '9' {
						return bad, reasonBadCL
					}
					zero = zero && c == '0'
				}
				f.body = f.body || !zero
			case framingUnderscore:
				return bad, reasonUnderscore
			}
		case 17:
			switch framingName(name, "transfer-encoding") {
			case framingExact:
				f.transferEncoding++
				f.body = true
				if !asciiEqualFold(v, "chunked") {
					return bad, reasonBadTE
				}
			case framingUnderscore:
				return bad, reasonUnderscore
			}
		}
	}
}

const (
	framingOther = iota
	framingExact
	framingUnderscore // the name with "_" where it has "-"
)

// framingName compares name, ignoring case, with lower, a lower-case name of
// the same length holding dashes.
func framingName(name []byte, lower string) int {
	kind := framingExact
	for i := 0; i < len(lower); i++ {
		c := name[i]
		if lower[i] == '-' {
			switch c {
			case '-':
			case '_':
				kind = framingUnderscore
			default:
				return framingOther
			}
			continue
		}
		if c|0x20 != lower[i] {
			return framingOther
		}
	}
	return kind
}

// asciiEqualFold reports whether a and b are equal ignoring ASCII case.
func asciiEqualFold[T []byte | string](a []byte, b T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if x == y {
			continue
		}
		if x|0x20 != y|0x20 || x|0x20 < 'a' || x|0x20 > 'z' {
			return false
		}
	}
	return true
}

// trimFieldValue removes the optional whitespace (SP and HTAB) around a value.
func trimFieldValue(v []byte) []byte {
	for len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
		v = v[1:]
	}
	for len(v) > 0 && (v[len(v)-1] == ' ' || v[len(v)-1] == '\t') {
		v = v[:len(v)-1]
	}
	return v
}

// wordHasCTL reports whether any byte of the 8 in w is below 0x20 or is 0x7f.
// The tests are exact as booleans (Hacker's Delight, "find a byte less
// than n", valid for n <= 128).
func wordHasCTL(w uint64) bool {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	less := (w - 0x20*lo) &^ w & hi
	d := w ^ 0x7f*lo
	del := (d - lo) &^ d & hi
	return less|del != 0
}

// validHostField reports whether h is a URI authority without userinfo as a Host
// field holds it: a non-empty reg-name, IPv4 address or bracketed IP literal,
// then an optional ":" and digits (RFC 9110 section 7.2, RFC 3986 section
// 3.2.2). Percent-escapes are refused: fasthttp decodes them, so the host
// routed on and the one sent upstream would differ.
func validHostField(h []byte) bool {
	if len(h) == 0 {
		return false
	}
	port := h
	if h[0] == '[' {
		end := bytes.IndexByte(h, ']')
		if end < 2 {
			return false
		}
		for _, c := range h[1:end] {
			if !hostChars[c] || c == '[' {
				return false
			}
		}
		port = h[end+1:]
	} else {
		i := bytes.IndexByte(h, ':')
		if i == 0 {
			return false
		}
		if i < 0 {
			i = len(h)
		}
		for _, c := range h[:i] {
			if !hostChars[c] || c == '[' || c == ']' || c == ':' {
				return false
			}
		}
		port = h[i:]
	}
	if len(port) == 0 {
		return true
	}
	if port[0] != ':' || len(port) > 6 {
		return false
	}
	for _, c := range port[1:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// tokenChars are the bytes of an RFC 9110 token (a field name).
var tokenChars = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range []byte("!#$%&'*+-.^_`|~") {
		t[c] = true
	}
	return t
}()

// hostChars are the bytes of a host in a Host field: RFC 3986 unreserved and
// sub-delims, ":" and the brackets of an IP literal; no "%".
var hostChars = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range []byte("-._~!$&'()*+,;=:[]") {
		t[c] = true
	}
	return t
}()
