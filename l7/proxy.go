package l7

import (
	"bytes"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"portico/lb"
)

type netConn = net.Conn

// reqState is per-request scratch space, pooled so that the request path
// does not allocate.
type reqState struct {
	up        fasthttp.Request
	buf       []byte
	ip        []byte
	requestID []byte
	body      bodyReader
	backend   string
}

var statePool = sync.Pool{New: func() any { return &reqState{buf: make([]byte, 0, 256)} }}

func acquireState() *reqState { return statePool.Get().(*reqState) }

func releaseState(st *reqState) {
	st.up.Reset()
	st.body = bodyReader{}
	st.buf, st.ip, st.requestID = st.buf[:0], st.ip[:0], st.requestID[:0]
	st.backend = ""
	statePool.Put(st)
}

// bodyReader streams a request body upstream, enforcing the listener's body
// size limit and an idle timeout between reads from the client.
type bodyReader struct {
	r       io.Reader
	conn    net.Conn
	idle    time.Duration
	remain  int64 // bytes still allowed; <0 means no limit
	started bool
	// clientErr is set when reading from the client failed, so that the
	// failure is not blamed on the backend.
	clientErr error
}

func (b *bodyReader) Read(p []byte) (int, error) {
	b.started = true
	if b.remain == 0 {
		// One more byte than allowed tells a body at the limit from one over it.
		var one [1]byte
		if n, _ := b.r.Read(one[:]); n > 0 {
			return 0, errBodyTooLarge
		}
		return 0, io.EOF
	}
	if b.remain > 0 && int64(len(p)) > b.remain {
		p = p[:b.remain]
	}
	if b.idle > 0 && b.conn != nil {
		_ = b.conn.SetReadDeadline(time.Now().Add(b.idle))
	}
	n, err := b.r.Read(p)
	if b.remain > 0 {
		b.remain -= int64(n)
	}
	if err != nil && err != io.EOF {
		b.clientErr = err
	}
	return n, err
}

// serve handles one request on the L7 path.
func (s *Server) serve(ctx *fasthttp.RequestCtx, l *listener) {
	start := time.Now()
	snap := s.snap.Load()
	if status, reason := checkRequest(ctx); status != 0 {
		s.fail(ctx, snap.noRoute, status, reason)
		s.finish(ctx, l, snap.noRoute, start, nil)
		return
	}
	rt := snap.router.match(ctx)
	if rt == nil {
		s.fail(ctx, snap.noRoute, fasthttp.StatusNotFound, "no route matches this request")
		s.finish(ctx, l, snap.noRoute, start, nil)
		return
	}
	st := acquireState()
	defer releaseState(st)
	if rt.redirect != nil {
		s.redirect(ctx, rt.redirect, st)
		s.finish(ctx, l, rt.metrics, start, st)
		return
	}
	if cl := ctx.Request.Header.ContentLength(); l.maxBody > 0 && int64(cl) > l.maxBody {
		s.fail(ctx, rt.metrics, fasthttp.StatusRequestEntityTooLarge, "request body too large")
		s.finish(ctx, l, rt.metrics, start, st)
		return
	}
	s.prepare(ctx, l, snap, rt, st)
	if isUpgrade(&ctx.Request.Header) {
		s.tunnel(ctx, snap, rt, st)
		s.finish(ctx, l, rt.metrics, start, st)
		return
	}
	s.forward(ctx, l, snap, rt, st)
	s.finish(ctx, l, rt.metrics, start, st)
}

// prepare builds the upstream request in st.up from the client's request.
func (s *Server) prepare(ctx *fasthttp.RequestCtx, l *listener, snap *snapshot, rt *route, st *reqState) {
	up := &st.up
	ctx.Request.Header.CopyTo(&up.Header)
	upgrade := isUpgrade(&ctx.Request.Header)
	removeHopHeaders(&up.Header)
	up.Header.Del("Expect") // the listener has already answered 100-continue
	if upgrade {
		up.Header.Set("Connection", "Upgrade")
		up.Header.SetBytesV("Upgrade", ctx.Request.Header.Peek("Upgrade"))
	}
	up.URI().SetSchemeBytes(strHTTP)

	st.ip = appendIP(st.ip[:0], ctx.RemoteAddr())
	f := &snap.forwarded
	if f.requestID {
		if id := up.Header.Peek("X-Request-Id"); len(id) > 0 {
			st.requestID = append(st.requestID[:0], id...)
		} else {
			st.requestID = s.ids.append(st.requestID[:0])
			up.Header.SetBytesV("X-Request-Id", st.requestID)
		}
	}
	if f.xff {
		b := st.buf[:0]
		if prior := up.Header.Peek("X-Forwarded-For"); len(prior) > 0 {
			b = append(append(b, prior...), ", "...)
		}
		b = append(b, st.ip...)
		up.Header.SetBytesV("X-Forwarded-For", b)
		st.buf = b
	}
	if f.proto {
		up.Header.SetBytesV("X-Forwarded-Proto", l.scheme)
	}
	if f.host {
		up.Header.SetBytesV("X-Forwarded-Host", ctx.Request.Header.Host())
	}
	if f.via {
		st.buf = appendVia(st.buf[:0], up.Header.Peek("Via"), ctx.Request.Header.IsHTTP11(), f.viaValue)
		up.Header.SetBytesV("Via", st.buf)
	}
	if !rt.reqOps.empty() {
		s.applyOps(ctx, l, rt, st, &rt.reqOps, &up.Header)
	}
	if rt.rewrite.active() {
		st.buf = rt.rewrite.apply(st.buf[:0], ctx.Path())
		up.URI().SetPathBytes(st.buf)
	}

	if !upgrade {
		if ctx.Request.IsBodyStream() {
			st.body = bodyReader{r: ctx.RequestBodyStream(), conn: ctx.Conn(), idle: l.bodyTimeout, remain: -1}
			if l.maxBody > 0 {
				st.body.remain = l.maxBody
			}
			up.SetBodyStream(&st.body, ctx.Request.Header.ContentLength())
		} else if body := ctx.Request.Body(); len(body) > 0 {
			up.SetBodyRaw(body)
		}
	}
}

var strHTTP = []byte("http")

func appendVia(dst, prior []byte, http11 bool, name string) []byte {
	if len(prior) > 0 {
		dst = append(append(dst, prior...), ", "...)
	}
	if http11 {
		dst = append(dst, "1.1 "...)
	} else {
		dst = append(dst, "1.0 "...)
	}
	return append(dst, name...)
}

// appendIP appends the IP of addr without allocating.
func appendIP(dst []byte, addr net.Addr) []byte {
	if ta, ok := addr.(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(ta.IP); ok {
			return ip.Unmap().AppendTo(dst)
		}
	}
	return append(dst, addr.String()...)
}

// forward sends st.up to a backend of the route's pool and the response to
// the client, retrying on another backend when that is safe.
func (s *Server) forward(ctx *fasthttp.RequestCtx, l *listener, snap *snapshot, rt *route, st *reqState) {
	p := rt.pool
	idempotent := isIdempotent(ctx.Method())
	var lastErr error
	var lastKind int
	var lastBackend *lb.Backend
	for attempt := 0; attempt <= snap.upstream.Retries; attempt++ {
		b, err := p.Pick(lb.Key{Attempt: uint32(attempt)})
		if err != nil {
			lastErr = err
			break
		}
		b.Acquire()
		err = p.clients[b.Index].Do(&st.up, &ctx.Response)
		b.Release()
		if err == nil {
			st.backend = b.Name
			s.finishResponse(ctx, l, rt, st)
			return
		}
		kind, _, _, connectFailed := classify(err)
		p.errors[b.Index][kind].Inc()
		lastErr, lastKind, lastBackend = err, kind, b
		retryable := connectFailed || (kind == kindReset && idempotent && !st.body.started)
		if !retryable || len(p.Backends) < 2 && !connectFailed {
			break
		}
	}
	ctx.Response.Reset()
	_, status, reason, _ := classify(lastErr)
	if ce := st.body.clientErr; ce != nil {
		// The client, not the backend, broke the exchange.
		status, reason = fasthttp.StatusBadRequest, "request body incomplete"
		if isTimeout(ce) {
			status, reason = fasthttp.StatusRequestTimeout, "request body timeout"
		}
		ctx.SetConnectionClose()
		s.fail(ctx, rt.metrics, status, reason)
		return
	}
	if lastBackend != nil {
		st.backend = lastBackend.Name
		s.logUpstreamError(rt, lastBackend, kindNames[lastKind], lastErr)
	}
	s.fail(ctx, rt.metrics, status, reason)
}

// finishResponse cleans the backend's response for the client.
func (s *Server) finishResponse(ctx *fasthttp.RequestCtx, l *listener, rt *route, st *reqState) {
	h := &ctx.Response.Header
	removeHopHeaders(h)
	h.ResetConnectionClose()
	snap := s.snap.Load()
	if snap.forwarded.via {
		st.buf = appendVia(st.buf[:0], h.Peek("Via"), true, snap.forwarded.viaValue)
		h.SetBytesV("Via", st.buf)
	}
	if len(st.requestID) > 0 && len(h.Peek("X-Request-Id")) == 0 {
		h.SetBytesV("X-Request-Id", st.requestID)
	}
	if !rt.respOps.empty() {
		s.applyOps(ctx, l, rt, st, &rt.respOps, h)
	}
}

func isIdempotent(m []byte) bool {
	switch string(m) {
	case "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE":
		return true
	}
	return false
}

// headerSetter is what applyOps needs of a request or response header.
type headerSetter interface {
	Del(key string)
	SetBytesV(key string, value []byte)
	AddBytesV(key string, value []byte)
}

func (s *Server) applyOps(ctx *fasthttp.RequestCtx, l *listener, rt *route, st *reqState, ops *headerOps, h headerSetter) {
	for _, k := range ops.remove {
		h.Del(k)
	}
	for i := range ops.set {
		op := &ops.set[i]
		st.buf = s.expand(st.buf[:0], &op.value, ctx, l, rt, st)
		h.SetBytesV(op.name, st.buf)
	}
	for i := range ops.add {
		op := &ops.add[i]
		st.buf = s.expand(st.buf[:0], &op.value, ctx, l, rt, st)
		h.AddBytesV(op.name, st.buf)
	}
}

func (s *Server) expand(dst []byte, t *template, ctx *fasthttp.RequestCtx, l *listener, rt *route, st *reqState) []byte {
	for _, seg := range t.segs {
		switch seg.kind {
		case phLiteral:
			dst = append(dst, seg.literal...)
		case phClientIP:
			dst = append(dst, st.ip...)
		case phHost:
			dst = append(dst, ctx.Request.Header.Host()...)
		case phPath:
			dst = append(dst, ctx.Path()...)
		case phMethod:
			dst = append(dst, ctx.Method()...)
		case phScheme:
			dst = append(dst, l.scheme...)
		case phRequestID:
			dst = append(dst, st.requestID...)
		case phRoute:
			dst = append(dst, rt.name...)
		case phBackend:
			dst = append(dst, st.backend...)
		}
	}
	return dst
}

// apply rewrites path into dst: strip prefix, regex replace, add prefix.
// It allocates only for the regex step.
func (p *pathRewrite) apply(dst, path []byte) []byte {
	if p.stripPrefix != "" && bytes.HasPrefix(path, s2b(p.stripPrefix)) {
		path = path[len(p.stripPrefix):]
	}
	if p.re != nil {
		path = p.re.ReplaceAll(path, s2b(p.replacement))
	}
	pre := p.addPrefix
	if len(pre) > 0 && pre[len(pre)-1] == '/' && len(path) > 0 && path[0] == '/' {
		pre = pre[:len(pre)-1]
	}
	dst = append(dst, pre...)
	if (len(path) == 0 || path[0] != '/') && (len(dst) == 0 || dst[len(dst)-1] != '/') {
		dst = append(dst, '/')
	}
	return append(dst, path...)
}

// redirect answers with the route's redirect.
func (s *Server) redirect(ctx *fasthttp.RequestCtx, rd *RedirectConfig, st *reqState) {
	b := st.buf[:0]
	scheme := "http"
	if ctx.IsTLS() {
		scheme = "https"
	}
	if rd.Scheme != "" {
		scheme = rd.Scheme
	}
	b = append(append(b, scheme...), "://"...)
	reqHost := ctx.Request.Header.Host()
	host := hostWithoutPort(reqHost)
	if rd.Host != "" {
		b = append(b, rd.Host...)
	} else {
		b = append(b, host...)
	}
	switch {
	case rd.Port != 0:
		b = append(append(b, ':'), strconv.Itoa(rd.Port)...)
	case rd.Scheme == "" && len(reqHost) > len(host):
		b = append(b, reqHost[len(host):]...) // keep the request's port
	}
	if rd.Path != "" {
		b = append(b, rd.Path...)
	} else {
		b = append(b, ctx.Request.URI().PathOriginal()...)
	}
	if q := ctx.URI().QueryString(); len(q) > 0 {
		b = append(append(b, '?'), q...)
	}
	st.buf = b
	ctx.Response.Header.SetBytesV("Location", b)
	ctx.Response.SetStatusCode(rd.Status)
}
