package l7

import (
	"bytes"

	"github.com/valyala/fasthttp"
)

// hopHeaders are the hop-by-hop headers of RFC 9110 section 7.6.1 and their
// older relatives; they describe one connection and are never forwarded.
// Transfer-Encoding and Content-Length are managed by fasthttp itself.
var hopHeaders = []string{
	"Connection",
	"Proxy-Connection", // non-standard, sent by old clients
	"Keep-Alive",       // RFC 2068
	"Proxy-Authenticate",
	"Proxy-Authorization",
	"TE",
	"Trailer",
	"Upgrade", // tunnels are handled by the upgrade path
}

// headerDeleter is what removeHopHeaders needs of a request or response header.
type headerDeleter interface {
	Peek(key string) []byte
	Del(key string)
	DelBytes(key []byte)
}

// removeHopHeaders deletes the headers named by Connection first, then the
// fixed list. It does not allocate.
func removeHopHeaders(h headerDeleter) {
	if conn := h.Peek("Connection"); len(conn) > 0 {
		for len(conn) > 0 {
			var tok []byte
			if i := bytes.IndexByte(conn, ','); i >= 0 {
				tok, conn = conn[:i], conn[i+1:]
			} else {
				tok, conn = conn, nil
			}
			tok = bytes.TrimSpace(tok)
			if len(tok) > 0 && !isProtectedHeader(tok) {
				h.DelBytes(tok)
			}
		}
	}
	for _, k := range hopHeaders {
		h.Del(k)
	}
}

// isProtectedHeader reports headers that a Connection option must not be
// allowed to strip: those fasthttp manages and those the proxy relies on.
func isProtectedHeader(k []byte) bool {
	return bytes.EqualFold(k, []byte("Content-Length")) ||
		bytes.EqualFold(k, []byte("Transfer-Encoding")) ||
		bytes.EqualFold(k, []byte("Host"))
}

var (
	_ headerDeleter = (*fasthttp.RequestHeader)(nil)
	_ headerDeleter = (*fasthttp.ResponseHeader)(nil)
)
