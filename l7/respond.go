package l7

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"time"

	"github.com/valyala/fasthttp"

	"portico/lb"
)

// fail answers with status and a one-line plain-text reason.
func (s *Server) fail(ctx *fasthttp.RequestCtx, _ *routeMetrics, status int, reason string) {
	ctx.Response.Reset()
	ctx.Response.SetStatusCode(status)
	ctx.Response.Header.SetContentType("text/plain; charset=utf-8")
	ctx.Response.SetBodyString(reason + "\n")
}

// finish records metrics and the access-log line of a request.
func (s *Server) finish(ctx *fasthttp.RequestCtx, l *listener, m *routeMetrics, start time.Time, st *reqState) {
	d := time.Since(start)
	m.observe(ctx.Response.StatusCode(), d.Seconds())
	if s.access == nil {
		return
	}
	e := entry{ctx: ctx, start: start, duration: d}
	if st != nil {
		e.ip, e.backend, e.reqID = st.ip, st.backend, st.requestID
		if len(e.ip) == 0 {
			st.ip = appendIP(st.ip[:0], ctx.RemoteAddr())
			e.ip = st.ip
		}
	} else {
		var ip [64]byte
		e.ip = appendIP(ip[:0], ctx.RemoteAddr())
	}
	e.route = m.name
	s.access.write(&e)
}

// parseError answers requests that fasthttp could not read.
func (s *Server) parseError(ctx *fasthttp.RequestCtx, l *listener, err error) {
	status, reason := fasthttp.StatusBadRequest, "malformed request"
	var small *fasthttp.ErrSmallBuffer
	var opErr *net.OpError
	switch {
	case errors.As(err, &small):
		status, reason = fasthttp.StatusRequestHeaderFieldsTooLarge, "request header block too large"
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		status, reason = fasthttp.StatusRequestEntityTooLarge, "request body too large"
	case errors.As(err, &opErr) && opErr.Timeout(), isTimeout(err):
		status, reason = fasthttp.StatusRequestTimeout, "request header timeout"
	}
	snap := s.snap.Load()
	s.fail(ctx, snap.noRoute, status, reason)
	snap.noRoute.observe(status, 0)
	if s.log.Enabled(context.Background(), slog.LevelDebug) {
		s.log.Debug("bad request", "listener", l.cfg.Name, "client", ctx.RemoteAddr().String(), "status", status, "error", err)
	}
}

// logUpstreamError logs a failed exchange with a backend once per request.
func (s *Server) logUpstreamError(rt *route, b *lb.Backend, kind string, err error) {
	s.log.Warn("upstream error", "route", rt.name, "pool", rt.pool.Name, "backend", b.Name, "kind", kind, "error", err)
}
