package l7

import (
	"bytes"

	"github.com/valyala/fasthttp"
)

// Header names are case-insensitive (RFC 9110 section 5.1), but fasthttp
// compares them byte for byte when name normalising is off, as it is on
// portico's listeners so that names reach the backend in the case they came
// in. A client's "x-forwarded-for" is then invisible to
// Peek("X-Forwarded-For"), and Del("X-Forwarded-For") leaves it in place.
// Every lookup or deletion of a header that a client or a backend sent goes
// through the helpers here, which ignore case. None of them allocates.
//
// A client's fields are found in RequestHeader.RawHeaders, the header block
// as received. clientFields makes one pass over it up front and notes which
// of the names the proxy handles are present, and in which spelling, so
// that most lookups need no pass of their own.

// watched are the request headers that the proxy reads or replaces on every
// request, in canonical spelling; bit i of clientFields.present and .odd
// stands for watched[i]. They start with hopHeaders, in the same order.
var watched = [...]string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer", "Upgrade",
	wExpect: "Expect", wRequestID: "X-Request-Id", wXFF: "X-Forwarded-For", wXFProto: "X-Forwarded-Proto",
	wXFHost: "X-Forwarded-Host", wVia: "Via",
}

// Indexes in watched of the names the proxy sets.
const (
	wExpect = len(hopHeaders) + iota
	wRequestID
	wXFF
	wXFProto
	wXFHost
	wVia
)

// clientFields summarises a client's header block. The zero value is not
// usable; call init. It is meant to live on the stack of one request.
type clientFields struct {
	h       *fasthttp.RequestHeader // the client's header
	raw     []byte                  // h.RawHeaders(); empty for a request built in code
	present uint32                  // watched names present, in any spelling
	odd     uint32                  // watched names present in a spelling other than the canonical one
	anyOdd  bool                    // some name, watched or not, is not in canonical spelling
	conn    [2][]byte               // the values of the first Connection fields
	nconn   int                     // how many Connection fields there are
}

func (c *clientFields) init(h *fasthttp.RequestHeader) {
	*c = clientFields{h: h, raw: h.RawHeaders()}
	eachRawField(c.raw, func(k, v []byte) bool {
		canonical := isCanonical(k)
		if !canonical {
			c.anyOdd = true
		}
		if i := watchedIndex(k); i >= 0 {
			c.present |= 1 << i
			if !canonical {
				c.odd |= 1 << i
			}
			if i == 0 { // Connection
				if c.nconn < len(c.conn) {
					c.conn[c.nconn] = v
				}
				c.nconn++
			}
		}
		return true
	})
}

// absent reports whether the client certainly did not send watched[i].
func (c *clientFields) absent(i int) bool {
	return len(c.raw) > 0 && c.present&(1<<i) == 0
}

// del deletes every field named name from up, a copy of the client's header
// to which the proxy may have added: the canonical name (which also clears
// fasthttp's special fields such as Host) and every spelling the client
// used.
func (c *clientFields) del(up *fasthttp.RequestHeader, name []byte) {
	var arr [64]byte
	up.DelBytes(appendCanonical(arr[:0], name))
	if i := watchedIndex(name); i >= 0 {
		if c.odd&(1<<i) != 0 {
			c.delSpellings(up, name)
		}
	} else if c.anyOdd {
		c.delSpellings(up, name)
	}
}

// delClient is del while up holds only the client's fields, before the proxy
// adds any: a watched name the client did not send needs no work.
func (c *clientFields) delClient(up *fasthttp.RequestHeader, name []byte) {
	if i := watchedIndex(name); i >= 0 {
		c.delWatched(up, i)
		return
	}
	c.del(up, name)
}

// delWatched deletes every field named watched[i] from up, which holds no
// field of that name but the client's.
func (c *clientFields) delWatched(up *fasthttp.RequestHeader, i int) {
	if c.absent(i) {
		return
	}
	up.Del(watched[i])
	if c.odd&(1<<i) != 0 {
		c.delSpellings(up, s2b(watched[i]))
	}
}

// delSpellings deletes from up the fields named name in every spelling the
// client used.
func (c *clientFields) delSpellings(up *fasthttp.RequestHeader, name []byte) {
	eachRawField(c.raw, func(k, _ []byte) bool {
		if foldEqualBytes(k, name) {
			up.DelBytes(k)
		}
		return true
	})
}

// set sets watched[i] to value in up, a copy of the client's header,
// replacing every spelling of the name the client used. It is for the names
// the proxy sets, once each, before any other change.
func (c *clientFields) set(up *fasthttp.RequestHeader, i int, value []byte) {
	c.delWatched(up, i)
	up.SetBytesV(watched[i], value)
}

// value returns the first value of the client's field watched[i], whatever
// the case of its name, and whether it is present (a present field may have
// an empty value).
func (c *clientFields) value(i int) (value []byte, ok bool) {
	if c.absent(i) {
		return nil, false
	}
	return headerValue(c.h, c.raw, watched[i])
}

// clientHeaderValue returns the first value of the client's header name,
// whatever the case of its name, and whether it is present (a present
// field may have an empty value).
func clientHeaderValue(h *fasthttp.RequestHeader, name string) ([]byte, bool) {
	return headerValue(h, h.RawHeaders(), name)
}

func headerValue(h *fasthttp.RequestHeader, raw []byte, name string) (value []byte, ok bool) {
	if len(raw) == 0 { // a request built in code rather than parsed
		v := h.Peek(name)
		return v, v != nil
	}
	eachRawField(raw, func(k, v []byte) bool {
		if foldEqual(k, name) {
			value, ok = v, true
			return false
		}
		return true
	})
	return value, ok
}

// appendValues appends every non-empty value of the client's field
// watched[i] to dst, joined by ", " as RFC 9110 section 5.3 allows, and
// reports whether there was any.
func (c *clientFields) appendValues(dst []byte, i int) ([]byte, bool) {
	if len(c.raw) == 0 {
		v := c.h.Peek(watched[i])
		return append(dst, v...), len(v) > 0
	}
	found := false
	if c.absent(i) {
		return dst, false
	}
	eachRawField(c.raw, func(k, v []byte) bool {
		if foldEqual(k, watched[i]) && len(v) > 0 {
			if found {
				dst = append(dst, ", "...)
			}
			dst = append(dst, v...)
			found = true
		}
		return true
	})
	return dst, found
}

// removeHop deletes from up, a copy of the client's header, the headers the
// client's Connection fields name, then the fixed hop-by-hop list.
func (c *clientFields) removeHop(up *fasthttp.RequestHeader) {
	const hop = 1<<len(hopHeaders) - 1 // watched starts with hopHeaders
	switch {
	case len(c.raw) == 0:
		c.delOptions(up, c.h.Peek("Connection"))
	case c.present&hop == 0:
		return
	case c.nconn <= len(c.conn):
		for _, v := range c.conn[:c.nconn] {
			c.delOptions(up, v)
		}
	default:
		eachRawField(c.raw, func(k, v []byte) bool {
			if foldEqual(k, "Connection") {
				c.delOptions(up, v)
			}
			return true
		})
	}
	for i, k := range hopHeaders {
		if !c.absent(i) {
			up.Del(k)
		}
	}
	if c.odd&hop != 0 {
		eachRawField(c.raw, func(k, _ []byte) bool {
			if isHopHeader(k) {
				up.DelBytes(k)
			}
			return true
		})
	}
}

// delOptions deletes from up the fields named in a Connection value.
func (c *clientFields) delOptions(up *fasthttp.RequestHeader, conn []byte) {
	for tok, rest := nextToken(conn); len(tok) > 0 || len(rest) > 0; tok, rest = nextToken(rest) {
		if len(tok) > 0 && !isProtectedHeader(tok) {
			c.delClient(up, tok)
		}
	}
}

// watchedIndex returns the index of header name k in watched, or -1.
func watchedIndex(k []byte) int {
	if len(k) < 2 || len(k) > 19 { // the shortest and longest in watched
		return -1
	}
	for i := range watched {
		if len(watched[i]) == len(k) && bytes.EqualFold(k, s2b(watched[i])) {
			return i
		}
	}
	return -1
}

// isCanonical reports whether header name k is in the canonical spelling
// that appendCanonical gives.
func isCanonical(k []byte) bool {
	upper := true
	for _, c := range k {
		if upper && 'a' <= c && c <= 'z' || !upper && 'A' <= c && c <= 'Z' {
			return false
		}
		upper = c == '-'
	}
	return true
}

// foldEqual reports whether header name k is name, ignoring ASCII case.
func foldEqual(k []byte, name string) bool { return foldEqualBytes(k, s2b(name)) }

func foldEqualBytes(k, name []byte) bool {
	return len(k) == len(name) && bytes.EqualFold(k, name)
}

// delHeader deletes every field named name, whatever its case, from a
// *fasthttp.RequestHeader (a copy of a client's) or *fasthttp.ResponseHeader.
func delHeader(h interface{ Del(key string) }, name string) {
	switch h := h.(type) {
	case *fasthttp.RequestHeader:
		var c clientFields
		c.init(h)
		c.del(h, s2b(name))
	case *fasthttp.ResponseHeader:
		delResponseHeader(h, s2b(name))
	default:
		panic("BUG: delHeader on an unknown header type")
	}
}

// delResponseHeader deletes every field named name from a response header.
func delResponseHeader(h *fasthttp.ResponseHeader, name []byte) {
	var arr [64]byte
	h.DelBytes(appendCanonical(arr[:0], name))
	for range maxFoldDeletes {
		var found []byte
		for k := range h.All() {
			if foldEqualBytes(k, name) {
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

// eachRawField calls f with the name and value of each field of a raw
// header block as fasthttp keeps it (RequestHeader.RawHeaders: the lines as
// received, already checked by fasthttp's parser), until f returns false.
func eachRawField(raw []byte, f func(name, value []byte) bool) {
	for len(raw) > 0 {
		line := raw
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			line, raw = raw[:i], raw[i+1:]
		} else {
			raw = nil
		}
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
		if len(line) == 0 || line[0] == ' ' || line[0] == '\t' {
			continue // the blank end line, or a folded continuation
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			continue
		}
		if !f(line[:colon], trimOWS(line[colon+1:])) {
			return
		}
	}
}

// nextToken splits the first element off a comma-separated list, trimmed
// (it may be empty: "a,,b"), and returns the rest. A loop rather than a
// callback, so that a list in a stack buffer stays there.
func nextToken(list []byte) (tok, rest []byte) {
	if i := bytes.IndexByte(list, ','); i >= 0 {
		return trimOWS(list[:i]), list[i+1:]
	}
	return trimOWS(list), nil
}

// trimOWS trims the optional whitespace (spaces and tabs) around b.
func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// appendCanonical appends the canonical form of header name k
// ("x-request-id" is "X-Request-Id"), as fasthttp and net/textproto write it.
func appendCanonical(dst, k []byte) []byte {
	upper := true
	for _, c := range k {
		switch {
		case upper && c >= 'a' && c <= 'z':
			c -= 'a' - 'A'
		case !upper && c >= 'A' && c <= 'Z':
			c += 'a' - 'A'
		}
		dst = append(dst, c)
		upper = c == '-'
	}
	return dst
}
