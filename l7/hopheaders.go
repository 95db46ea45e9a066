package l7

import (
	"bytes"

	"github.com/valyala/fasthttp"
)

// hopHeaders are the hop-by-hop headers of RFC 9110 section 7.6.1 and their
// older relatives; they describe one connection and are never forwarded.
// Transfer-Encoding and Content-Length are managed by fasthttp itself.
// watched (headerfold.go) starts with the same names, in the same order.
var hopHeaders = [...]string{
	"Connection",
	"Proxy-Connection", // non-standard, sent by old clients
	"Keep-Alive",       // RFC 2068
	"Proxy-Authenticate",
	"Proxy-Authorization",
	"Te",
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
// fixed list, whatever the case of their names (see headerfold.go), from a
// response or from a copy of a client's request. It does not allocate.
func removeHopHeaders(h headerDeleter) {
	switch h := h.(type) {
	case *fasthttp.RequestHeader:
		var c clientFields
		c.init(h)
		c.removeHop(h)
	case *fasthttp.ResponseHeader:
		removeResponseHop(h)
	default:
		panic("BUG: removeHopHeaders on an unknown header type")
	}
}

func removeResponseHop(h *fasthttp.ResponseHeader) {
	// One pass notes the hop-by-hop fields present and copies the
	// Connection options: deleting fields moves their storage.
	var arr [128]byte
	opts := arr[:0]
	var present uint32
	odd := false
	for k, v := range h.All() {
		i := hopIndex(k)
		if i < 0 {
			continue
		}
		present |= 1 << i
		odd = odd || !isCanonical(k)
		if i == 0 { // Connection
			opts = append(append(opts, v...), ',')
		}
	}
	if present == 0 {
		return
	}
	for tok, rest := nextToken(opts); len(tok) > 0 || len(rest) > 0; tok, rest = nextToken(rest) {
		if len(tok) > 0 && !isProtectedHeader(tok) && hopIndex(tok) < 0 {
			delResponseHeader(h, tok)
		}
	}
	for i, k := range hopHeaders {
		if present&(1<<i) != 0 {
			h.Del(k)
		}
	}
	for range maxFoldDeletes {
		if !odd {
			return
		}
		var found []byte
		for k := range h.All() {
			if hopIndex(k) >= 0 {
				found = k
				break
			}
		}
		if found == nil {
			return
		}
		h.DelBytes(found) // copies found before it moves anything
	}
}

// maxFoldDeletes bounds the find-and-delete loops over response headers, in
// case fasthttp reports a field that DelBytes cannot remove.
const maxFoldDeletes = 64

// isProtectedHeader reports headers that a Connection option must not be
// allowed to strip: those fasthttp manages and those the proxy relies on.
func isProtectedHeader(k []byte) bool {
	return bytes.EqualFold(k, []byte("Content-Length")) ||
		bytes.EqualFold(k, []byte("Transfer-Encoding")) ||
		bytes.EqualFold(k, []byte("Host"))
}

func isHopHeader(k []byte) bool { return hopIndex(k) >= 0 }

// hopIndex returns the index of header name k in hopHeaders, or -1.
func hopIndex(k []byte) int {
	if i := watchedIndex(k); i < len(hopHeaders) {
		return i
	}
	return -1
}
