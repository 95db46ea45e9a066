package l7

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"portico/lb"
)

// fail answers with status and a one-line plain-text reason. A connection
// already marked to close stays marked.
func (s *Server) fail(ctx *fasthttp.RequestCtx, _ *routeMetrics, status int, reason string) {
	closeConn := ctx.Response.ConnectionClose()
	ctx.Response.Reset()
	if closeConn {
		ctx.Response.SetConnectionClose()
	}
	ctx.Response.SetStatusCode(status)
	ctx.Response.Header.SetContentType("text/plain; charset=utf-8")
	ctx.Response.AppendBodyString(reason)
	ctx.Response.AppendBodyString("\n")
}

// finish records metrics and the access-log line of a request.
func (s *Server) finish(ctx *fasthttp.RequestCtx, l *listener, m *routeMetrics, start time.Time, st *reqState) {
	if ctx.Request.Header.ContentLength() == -1 {
		// fasthttp parses the trailer section of a chunked body and takes a
		// bare LF for a line end there ("0\r\n\n" ends it), which portico
		// cannot see or refuse: a peer that reads CRLF only would put the
		// next request elsewhere. So nothing more is read from this
		// connection (see check.go).
		ctx.SetConnectionClose()
	}
	now := time.Now()
	if st == nil || !st.resetResp {
		setDate(&ctx.Response.Header, now) // the listeners run with NoDefaultDate (date.go)
	}
	d := now.Sub(start)
	m.observe(ctx.Response.StatusCode(), d.Seconds())
	if s.access == nil {
		return
	}
	e := entry{ctx: ctx, start: start, duration: d}
	if st != nil {
		e.ip, e.backend, e.reqID = st.ip, st.backend, st.requestID
		if len(e.ip) == 0 {
			st.ip = appendClientIP(st.ip[:0], ctx)
			e.ip = st.ip
		}
	} else {
		var ip [64]byte
		e.ip = appendClientIP(ip[:0], ctx)
	}
	e.route = m.name
	s.access.write(&e)
}

// parseError answers requests that fasthttp could not read. fasthttp closes
// the connection after the answer.
func (s *Server) parseError(ctx *fasthttp.RequestCtx, l *listener, err error) {
	status, reason := parseErrorStatus(err)
	snap := s.snap.Load()
	s.fail(ctx, snap.noRoute, status, reason)
	snap.noRoute.observe(status, 0)
	if s.log.Enabled(context.Background(), slog.LevelDebug) {
		s.log.Debug("bad request", "listener", l.cfg.Name, "client", ctx.RemoteAddr().String(), "status", status, "error", err)
	}
}

// parseErrorStatus maps an error of fasthttp's request parser to a status and
// a short reason. fasthttp has sentinels for only a few of its errors; the
// others are told apart by their text, and anything unknown is a plain
// "malformed request". check_test.go pins each mapping against the real
// parser.
func parseErrorStatus(err error) (status int, reason string) {
	var small *fasthttp.ErrSmallBuffer
	var opErr *net.OpError
	switch {
	case errors.As(err, &small):
		return fasthttp.StatusRequestHeaderFieldsTooLarge, "request header block too large"
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		return fasthttp.StatusRequestEntityTooLarge, "request body too large"
	case errors.As(err, &opErr) && opErr.Timeout() && error(opErr) != err:
		// Wrapped by the header reader: the header block was late.
		return fasthttp.StatusRequestTimeout, "request header timeout"
	case isTimeout(err):
		// A bare timeout: nothing came on a new connection, or a body
		// fasthttp reads ahead of the handler was late.
		return fasthttp.StatusRequestTimeout, "request timeout"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return fasthttp.StatusBadRequest, "request body incomplete"
	case errors.Is(err, fasthttp.ErrDuplicateContentLength):
		return fasthttp.StatusBadRequest, reasonDupCL
	case errors.Is(err, fasthttp.ErrUnsupportedTransferEncoding):
		return fasthttp.StatusBadRequest, reasonBadTE
	case errors.Is(err, fasthttp.ErrMissingRequestMethod), errors.Is(err, fasthttp.ErrUnsupportedRequestMethod),
		errors.Is(err, fasthttp.ErrExtraWhitespaceInRequestLine), errors.Is(err, fasthttp.ErrEmptyRequestURI):
		return fasthttp.StatusBadRequest, reasonRequestLine
	}
	msg := err.Error()
	for _, m := range parseErrorTexts {
		if strings.Contains(msg, m.text) {
			return fasthttp.StatusBadRequest, m.reason
		}
	}
	return fasthttp.StatusBadRequest, "malformed request"
}

// parseErrorTexts are fragments of fasthttp v1.78.0's parser errors that have
// no sentinel, with the reason each gets; the first match wins.
var parseErrorTexts = []struct{ text, reason string }{
	{"cannot parse content-length", reasonBadCL},
	{"too many transfer-encoding headers", reasonDupTE},
	{"unsupported transfer-encoding", reasonBadTE},
	{"invalid header key", reasonNameSpace}, // whitespace before the colon
	{"headers cannot start with space or tab", reasonObsFold},
	{"malformed mime header", reasonBadName},
	{"invalid header value", reasonBadValue},
	{"missing required host header", reasonNoHost},
	{"too many host headers", reasonDupHost},
	{"in host name", reasonBadHostParse},
	{"invalid url escape", reasonBadHostParse},
	{"invalid port", reasonBadHostParse},
	{"invalid host", reasonBadHostParse},
	{"missing ']' in host", reasonBadHostParse},
	{"unsupported http version", reasonRequestLine},
	{"first line of request", reasonRequestLine},
	{"http request method", reasonRequestLine},
	{"request uri", reasonRequestLine},
}

// logUpstreamError logs a failed exchange with a backend, at most once a
// second per backend; the line says how many were not logged since the last
// one (the metrics count every one).
func (s *Server) logUpstreamError(rt *route, b *lb.Backend, kind string, err error) {
	if suppressed, ok := rt.pool.logs[b.Index].allow(time.Now()); ok {
		s.log.Warn("upstream error", "route", rt.name, "pool", rt.pool.Name, "backend", b.Name, "kind", kind, "error", err, "suppressed", suppressed)
	}
}

// logThrottle lets one log line through per second and counts the rest.
type logThrottle struct {
	next       atomic.Int64 // unix nanos before which lines are suppressed
	suppressed atomic.Int64
}

// allow reports whether a line may be logged now and how many were
// suppressed before it.
func (l *logThrottle) allow(now time.Time) (suppressed int64, ok bool) {
	n := now.UnixNano()
	next := l.next.Load()
	if n < next || !l.next.CompareAndSwap(next, n+int64(time.Second)) {
		l.suppressed.Add(1)
		return 0, false
	}
	return l.suppressed.Swap(0), true
}
