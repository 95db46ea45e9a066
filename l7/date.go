package l7

import (
	"bufio"
	"bytes"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// The Date header. A proxy and a cache forward the origin's Date, and
// stored responses keep theirs, with Age saying how old they are (RFC 9110
// section 6.6.1, RFC 9111 section 4.2.3); a Date is added only where the
// response has none. fasthttp's server, by default, writes its own Date on
// every response and drops the one there, so the listeners run with
// NoDefaultDate. Three things in fasthttp v1.78.0 shape the rest:
//
//   - Set and Add of "Date" on a ResponseHeader are ignored ("managed
//     automatically"): a Date field gets into a header only by parsing
//     (ResponseHeader.Read, which HostClient uses) or by CopyTo from a
//     header that has one.
//   - Response.Reset (and so HostClient.Do into a response) turns the
//     server's NoDefaultDate off for that response, and there is no setter:
//     such a response gets fasthttp's own, current, Date. That is the
//     uncached proxy path; it keeps fasthttp's Date as before.
//   - CopyTo carries the flag, and Read keeps it.
//
// So the cache builds the headers it sends by parsing (parseHeader) into a
// header that still has the server's flag: the client's response for a
// miss (moveResponse), a per-entry template for hits (prepareEntry). And
// finish gives a Date, by the same parse, to a response that would go
// out without one (setDate): a redirect, or a cached origin's that sent none.

// dateValue is the formatted Date of one second.
type dateValue struct {
	sec int64
	b   []byte
}

// currentDate caches the formatted date; the first request of a second
// replaces it. Safe for concurrent use.
var currentDate atomic.Pointer[dateValue]

// httpDate returns the IMF-fixdate of now; it allocates once a second.
// The result must not be changed.
func httpDate(now time.Time) []byte {
	sec := now.Unix()
	if d := currentDate.Load(); d != nil && d.sec == sec {
		return d.b
	}
	d := &dateValue{sec: sec, b: now.UTC().AppendFormat(make([]byte, 0, len(http.TimeFormat)), http.TimeFormat)}
	currentDate.Store(d)
	return d.b
}

// setDate gives a response the current Date when it would go out without
// one: the server's NoDefaultDate is on for it (it has not been reset) and
// it has no Date field. A reset response gets fasthttp's Date anyway; it
// may go through here for nothing (a local error answer), which costs a
// header parse and no allocation.
func setDate(h *fasthttp.ResponseHeader, now time.Time) {
	if len(h.Peek("Date")) > 0 {
		return
	}
	p := headerParsers.Get().(*headerParser)
	defer headerParsers.Put(p)
	b := h.AppendBytes(p.buf[:0])
	p.buf = b
	if bytes.Contains(b, []byte("\r\nDate: ")) {
		return // reset: fasthttp writes its own
	}
	b = appendDateLine(b[:len(b)-2], httpDate(now)) // before the blank line
	p.buf = append(b, "\r\n"...)
	// The block has the framing fasthttp would write now, not the
	// response's (a body not set yet has none): keep the response's.
	cl, closing := h.ContentLength(), h.ConnectionClose()
	if p.parse(h, p.buf) == nil { // it came from h: it parses
		h.SetContentLength(cl)
		if !closing {
			h.ResetConnectionClose()
		}
	}
}

func appendDateLine(dst, date []byte) []byte {
	return append(append(append(dst, "Date: "...), date...), "\r\n"...)
}

// headerParser parses a header block into a ResponseHeader; pooled.
type headerParser struct {
	buf []byte
	rd  bytes.Reader
	br  *bufio.Reader
}

var headerParsers = sync.Pool{New: func() any {
	p := &headerParser{buf: make([]byte, 0, 1024)}
	p.br = bufio.NewReaderSize(&p.rd, 8<<10)
	return p
}}

// parse replaces h's fields and status with those of block, a status line
// and fields ending in a blank line; h keeps its NoDefaultDate.
func (p *headerParser) parse(h *fasthttp.ResponseHeader, block []byte) error {
	p.rd.Reset(block)
	br := p.br
	if len(block) > br.Size() {
		br = bufio.NewReaderSize(&p.rd, len(block))
	} else {
		br.Reset(&p.rd)
	}
	return h.Read(br)
}

// parseHeader replaces h's fields and status with status (and its
// reason phrase msg, or the standard one) and the fields that fields
// yields; h keeps its NoDefaultDate, so a Date among the fields goes out.
func parseHeader(h *fasthttp.ResponseHeader, status int, msg []byte, fields func(yield func(k, v []byte) bool)) error {
	p := headerParsers.Get().(*headerParser)
	defer headerParsers.Put(p)
	b := append(p.buf[:0], "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, ' ')
	if len(msg) > 0 {
		b = append(b, msg...)
	} else {
		b = append(b, fasthttp.StatusMessage(status)...)
	}
	b = append(b, "\r\n"...)
	closing := false
	fields(func(k, v []byte) bool {
		b = append(append(append(append(b, k...), ": "...), v...), "\r\n"...)
		closing = closing || bytes.EqualFold(k, []byte("Connection")) && bytes.Contains(v, []byte("close"))
		return true
	})
	p.buf = append(b, "\r\n"...)
	if err := p.parse(h, p.buf); err != nil {
		return err
	}
	if !closing {
		// No Content-Length among the fields reads as a body up to the
		// close; the caller sets the body and its framing.
		h.ResetConnectionClose()
	}
	return nil
}
