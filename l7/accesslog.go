package l7

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/valyala/fasthttp"
)

// accessLog writes one line per request, in Common Log Format or JSON, to a
// buffered writer flushed every second and at close. A nil *accessLog is
// disabled and all its methods are no-ops.
type accessLog struct {
	json bool

	mu     sync.Mutex
	w      *bufio.Writer
	file   io.Closer // nil for stdout/stderr
	line   []byte
	closed bool // lines of requests cut by the end of a drain are dropped

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

func openAccessLog(c AccessLogConfig) (*accessLog, error) {
	if !c.Enabled {
		return nil, nil
	}
	a := &accessLog{json: c.Format == "json", stop: make(chan struct{}), done: make(chan struct{})}
	switch c.Path {
	case "stdout":
		a.w = bufio.NewWriterSize(os.Stdout, 64<<10)
	case "stderr":
		a.w = bufio.NewWriterSize(os.Stderr, 64<<10)
	default:
		f, err := os.OpenFile(c.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			return nil, fmt.Errorf("cannot open access log: %w", err)
		}
		a.w, a.file = bufio.NewWriterSize(f, 64<<10), f
	}
	go a.flushLoop()
	return a, nil
}

func (a *accessLog) flushLoop() {
	defer close(a.done)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			a.mu.Lock()
			_ = a.w.Flush()
			a.mu.Unlock()
		case <-a.stop:
			return
		}
	}
}

// close flushes the log and closes its file. It may be called more than
// once (Shutdown may be); later writes are dropped.
func (a *accessLog) close() {
	if a == nil {
		return
	}
	a.closeOnce.Do(func() {
		close(a.stop)
		<-a.done
		a.mu.Lock()
		defer a.mu.Unlock()
		a.closed = true
		_ = a.w.Flush()
		if a.file != nil {
			_ = a.file.Close()
		}
	})
}

// entry is what one access-log line reports.
type entry struct {
	ctx      *fasthttp.RequestCtx
	ip       []byte
	start    time.Time
	duration time.Duration
	route    string
	backend  string
	reqID    []byte
}

// write appends one line; it does not allocate once the line buffer has grown.
func (a *accessLog) write(e *entry) {
	if a == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return
	}
	b := a.line[:0]
	ctx := e.ctx
	status := ctx.Response.StatusCode()
	size := bodySize(ctx)
	if a.json {
		b = append(b, `{"time":"`...)
		b = e.start.AppendFormat(b, time.RFC3339Nano)
		b = append(b, `","client":`...)
		b = appendJSONString(b, e.ip)
		b = append(b, `,"method":`...)
		b = appendJSONString(b, ctx.Method())
		b = append(b, `,"uri":`...)
		b = appendJSONString(b, ctx.Request.Header.RequestURI())
		b = append(b, `,"protocol":`...)
		b = appendJSONString(b, ctx.Request.Header.Protocol())
		b = append(b, `,"host":`...)
		b = appendJSONString(b, ctx.Request.Header.Host())
		b = append(b, `,"status":`...)
		b = strconv.AppendInt(b, int64(status), 10)
		b = append(b, `,"bytes":`...)
		if size >= 0 {
			b = strconv.AppendInt(b, int64(size), 10)
		} else {
			b = append(b, "null"...) // streamed without a length
		}
		b = append(b, `,"duration_ms":`...)
		b = strconv.AppendFloat(b, float64(e.duration.Microseconds())/1000, 'f', 3, 64)
		b = append(b, `,"route":`...)
		b = appendJSONString(b, s2b(e.route))
		b = append(b, `,"backend":`...)
		b = appendJSONString(b, s2b(e.backend))
		b = append(b, `,"request_id":`...)
		b = appendJSONString(b, e.reqID)
		b = append(b, "}\n"...)
	} else {
		b = append(b, e.ip...)
		b = append(b, " - - ["...)
		b = e.start.AppendFormat(b, "02/Jan/2006:15:04:05 -0700")
		b = append(b, "] \""...)
		b = appendPrintable(b, ctx.Method())
		b = append(b, ' ')
		b = appendPrintable(b, ctx.Request.Header.RequestURI())
		b = append(b, ' ')
		b = appendPrintable(b, ctx.Request.Header.Protocol())
		b = append(b, "\" "...)
		b = strconv.AppendInt(b, int64(status), 10)
		b = append(b, ' ')
		if size >= 0 {
			b = strconv.AppendInt(b, int64(size), 10)
		} else {
			b = append(b, '-')
		}
		b = append(b, '\n')
	}
	a.line = b
	_, _ = a.w.Write(b)
}

// bodySize is the length of the response body sent, or -1 when the body
// is streamed without a Content-Length. A response to HEAD has none.
func bodySize(ctx *fasthttp.RequestCtx) int {
	r := &ctx.Response
	if r.SkipBody || ctx.IsHead() {
		return 0
	}
	if r.IsBodyStream() {
		if n := r.Header.ContentLength(); n >= 0 {
			return n
		}
		return -1
	}
	return len(r.Body())
}

// appendPrintable copies s for a Common Log Format line: bytes that could
// break the line or its quoting (controls, '"', '\\') and bytes outside
// ASCII are written \xHH, as nginx does, so that the line stays one
// unambiguous line of printable ASCII.
func appendPrintable(dst, s []byte) []byte {
	for _, c := range s {
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			dst = append(dst, '\\', 'x', hexDigits[c>>4], hexDigits[c&0xf])
			continue
		}
		dst = append(dst, c)
	}
	return dst
}

// appendJSONString appends s as a JSON string, escaping what JSON requires.
// Bytes that are not UTF-8 become U+FFFD, so that every line is valid JSON
// for strict parsers too.
func appendJSONString(dst, s []byte) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c < 0x20 || c == 0x7f:
			dst = append(dst, `\u00`...)
			dst = append(dst, hexDigits[c>>4], hexDigits[c&0xf])
		case c < utf8.RuneSelf:
			dst = append(dst, c)
		default:
			r, n := utf8.DecodeRune(s[i:])
			if r == utf8.RuneError && n == 1 {
				dst = append(dst, `\ufffd`...)
			} else {
				dst = append(dst, s[i:i+n]...)
			}
			i += n
			continue
		}
		i++
	}
	return append(dst, '"')
}
