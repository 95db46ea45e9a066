package l7

import (
	"bytes"
	"errors"
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
	cache     *cacheTx  // from cacheLookup to cacheForward, on a miss
	sticky    []byte    // a sticky-session cookie value issued to this client
	snap      *snapshot // the snapshot the request started with
	// resetResp: ctx.Response has been reset (HostClient.Do read into it),
	// which turns the listener's NoDefaultDate off for it: fasthttp writes
	// the current Date, and finish need not look for one (date.go).
	resetResp bool
}

var statePool = sync.Pool{New: func() any { return &reqState{buf: make([]byte, 0, 256)} }}

func acquireState() *reqState { return statePool.Get().(*reqState) }

func releaseState(st *reqState) {
	st.up.Reset()
	st.body = bodyReader{}
	st.buf, st.ip, st.requestID, st.sticky = st.buf[:0], st.ip[:0], st.requestID[:0], st.sticky[:0]
	st.backend, st.cache, st.snap, st.resetResp = "", nil, nil, false
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
	// length is the declared Content-Length, read the bytes read so far:
	// fasthttp ends a streamed body that the client cut short with a plain
	// EOF, which must not pass for the end of the body.
	length, read int64
	// clientErr is set when reading from the client failed, so that the
	// failure is not blamed on the backend.
	clientErr error
}

// Read fails for good once reading from the client has failed, and drops the
// bytes that came with the failure: fasthttp's chunked writer writes data
// returned with an error and reads on, so a broken chunked body could
// otherwise resynchronise and go upstream as a complete one.
func (b *bodyReader) Read(p []byte) (int, error) {
	b.started = true
	if b.clientErr != nil {
		return 0, b.clientErr
	}
	if b.remain == 0 {
		// One more byte than allowed tells a body at the limit from one over it.
		var one [1]byte
		n, err := b.r.Read(one[:])
		if n > 0 {
			b.clientErr = errBodyTooLarge // the client's fault: close, do not blame the backend
			return 0, errBodyTooLarge
		}
		if err != nil && err != io.EOF {
			b.clientErr = err
			return 0, err
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
	if b.read += int64(n); err == io.EOF && b.read < b.length {
		err = io.ErrUnexpectedEOF
	}
	if err != nil && err != io.EOF {
		b.clientErr = err
		return 0, err
	}
	return n, err
}

// serve handles one request on the L7 path.
func (s *Server) serve(ctx *fasthttp.RequestCtx, l *listener) {
	start := ctx.Time() // fasthttp's clock reading as the handler started
	if start.IsZero() { // a RequestCtx not from a fasthttp.Server
		start = time.Now()
	}
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
	st.snap = snap
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
	if rt.cache != nil && s.cacheLookup(ctx, l, snap, rt, st) {
		s.finish(ctx, l, rt.metrics, start, st)
		return
	}
	s.prepare(ctx, l, snap, rt, st)
	if isUpgrade(&ctx.Request.Header) {
		s.tunnel(ctx, snap, rt, st)
		s.finish(ctx, l, rt.metrics, start, st)
		return
	}
	if rt.cache != nil {
		s.cacheForward(ctx, l, snap, rt, st)
	} else {
		s.forward(ctx, l, snap, rt, st)
	}
	s.finish(ctx, l, rt.metrics, start, st)
}

// prepare builds the upstream request in st.up from the client's request.
// Headers the client sent are found whatever the case of their names (see
// headerfold.go); those the proxy sets replace every spelling of the name.
func (s *Server) prepare(ctx *fasthttp.RequestCtx, l *listener, snap *snapshot, rt *route, st *reqState) {
	up := &st.up
	var client clientFields // one pass over the client's header block
	client.init(&ctx.Request.Header)
	ctx.Request.Header.CopyTo(&up.Header)
	// The client's Connection: close is about its own connection; the
	// backend connection stays in the keep-alive pool.
	up.Header.ResetConnectionClose()
	// Forward the client's Content-Type or none; never invent one.
	up.Header.SetNoDefaultContentType(true)
	upgrade := isUpgrade(&ctx.Request.Header)
	client.removeHop(&up.Header)
	client.delWatched(&up.Header, wExpect) // the listener has already answered 100-continue
	if upgrade {
		up.Header.Set("Connection", "Upgrade")
		up.Header.SetBytesV("Upgrade", ctx.Request.Header.Peek("Upgrade"))
	}
	up.URI().SetSchemeBytes(strHTTP)

	st.ip = appendClientIP(st.ip[:0], ctx)
	f := &snap.forwarded
	if f.requestID {
		if id, _ := client.value(wRequestID); len(id) > 0 {
			st.requestID = append(st.requestID[:0], id...)
		} else {
			st.requestID = s.ids.append(st.requestID[:0])
		}
		client.set(&up.Header, wRequestID, st.requestID)
	}
	if f.xff {
		b, prior := client.appendValues(st.buf[:0], wXFF)
		if prior {
			b = append(b, ", "...)
		}
		b = append(b, st.ip...)
		client.set(&up.Header, wXFF, b)
		st.buf = b
	}
	if f.proto {
		client.set(&up.Header, wXFProto, l.scheme)
	}
	if f.host {
		client.set(&up.Header, wXFHost, ctx.URI().Host())
	}
	if f.via {
		b, prior := client.appendValues(st.buf[:0], wVia)
		if prior {
			b = append(b, ", "...)
		}
		st.buf = appendVia(b, nil, ctx.Request.Header.IsHTTP11(), f.viaValue)
		client.set(&up.Header, wVia, st.buf)
	}
	if !rt.reqOps.empty() {
		s.applyOps(ctx, l, rt, st, &rt.reqOps, &up.Header)
	}
	// The backend gets the path the route matched: normalised, still
	// encoded, then rewritten. A path already in normal form (nearly all)
	// is left as fasthttp copied it, with the query string.
	if path := requestPath(ctx); rt.rewrite.active() {
		b := st.buf[:0]
		if !isNormalPath(path) {
			b = appendNormalPath(b, path)
			path = b
		}
		out := rt.rewrite.apply(b[len(b):], path) // after path, in the same buffer
		up.URI().SetPathBytes(out)
		if cap(out) > cap(st.buf) {
			st.buf = out[:0]
		}
	} else if !isNormalPath(path) {
		st.buf = appendNormalPath(st.buf[:0], path)
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

// appendClientIP appends the IP of the client of ctx: the text that
// countingListener kept when it accepted the connection, else that of
// ctx.RemoteAddr (a TLS connection, or a test's).
func appendClientIP(dst []byte, ctx *fasthttp.RequestCtx) []byte {
	if cc, ok := ctx.Conn().(*countConn); ok && len(cc.ip) > 0 {
		return append(dst, cc.ip...)
	}
	return appendIP(dst, ctx.RemoteAddr())
}

// appendIP appends the IP of addr, without port; it does not allocate for a
// TCP address.
func appendIP(dst []byte, addr net.Addr) []byte {
	if ta, ok := addr.(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(ta.IP); ok {
			return ip.Unmap().AppendTo(dst)
		}
	}
	// Another kind of address (a test's in-memory pipe): its text, less
	// any port.
	return append(dst, addrHost(addr.String())...)
}

// forward sends st.up to a backend of the route's pool and the response to
// the client, retrying on another backend when that is safe.
func (s *Server) forward(ctx *fasthttp.RequestCtx, l *listener, snap *snapshot, rt *route, st *reqState) {
	p := rt.pool
	idempotent := isIdempotent(ctx.Method())
	var lastErr error
	var lastKind int
	var lastBackend *lb.Backend
	var tried uint64
	if cl := ctx.Request.Header.ContentLength(); cl > 0 {
		st.body.length = int64(cl)
	}
	hash := s.stickyHash(ctx, p.HashKey(), st)
	for attempt := 0; attempt <= snap.retries; attempt++ {
		b, err := p.pickUntried(hash, attempt, tried)
		if err != nil {
			lastErr = err
			break
		}
		tried |= backendBit(b.Backend)
		resp := &ctx.Response
		if st.cache != nil {
			resp = st.cache.upstream() // cacheResponse moves it to ctx.Response
		}
		err = p.clients[b.Index].Do(&st.up, resp)
		st.resetResp = st.resetResp || resp == &ctx.Response
		outcome := lb.Canceled
		switch {
		case err == nil && resp.StatusCode() < 500:
			outcome = lb.Success
		case err == nil, st.body.clientErr == nil && !errors.Is(err, errBodyTooLarge) && !errors.Is(err, fasthttp.ErrNoFreeConns):
			outcome = lb.Failure // counts toward the pool's passive checks
		}
		if err == nil && resp.IsBodyStream() {
			// The work is in flight until the body has gone to the client.
			releaseAfterResponse(ctx, b, outcome)
		} else {
			b.Release(outcome)
		}
		if err == nil {
			st.backend = b.Name
			if st.cache != nil {
				s.cacheResponse(ctx, st)
			}
			s.finishResponse(ctx, l, rt, st)
			if st.cache == nil && resp.IsBodyStream() {
				if !p.clients[b.Index].IsTLS {
					offerSplice(ctx, resp) // splice.go
				}
				resp.ImmediateHeaderFlush = headerFlushNeeded(resp) // splice.go
			}
			if len(st.sticky) > 0 {
				setStickyCookie(&ctx.Response.Header, p.HashKey().Name, st.sticky, ctx.IsTLS())
			}
			return
		}
		if st.body.clientErr != nil || errors.Is(err, errBodyTooLarge) {
			lastErr = err // the client's body failed, not the backend
			break
		}
		kind, _, _, connectFailed := classify(err)
		p.errors[b.Index][kind].Inc()
		lastErr, lastKind, lastBackend = err, kind, b.Backend
		retryable := connectFailed || (kind == kindReset && idempotent && !st.body.started)
		if !retryable || len(p.Backends()) < 2 && !connectFailed {
			break
		}
	}
	ctx.Response.Reset()
	st.resetResp = true
	_, status, reason, _ := classify(lastErr)
	if ce := st.body.clientErr; ce != nil {
		// The client, not the backend, broke the exchange.
		status, reason = clientBodyError(ce, ctx.Request.Header.ContentLength() == -1)
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

// pickUntried picks a backend for a request's attempt, passing over those in
// tried (a set of backendBit): a policy may hand a retry the backend that
// just failed (round robin over two backends does: its counter and Attempt
// both move by one), so it is asked again, at most once per backend. Each
// new ask adds the pool size to Attempt, which perturbs a hashing policy
// and leaves a counting one to step by one. When every backend has been
// tried, the last pick is returned.
func (p *pool) pickUntried(hash uint64, attempt int, tried uint64) (lb.Lease, error) {
	n := len(p.Backends())
	b, err := p.Pick(lb.Key{Hash: hash, Attempt: uint32(attempt)})
	for i := 1; i <= n && err == nil && tried&backendBit(b.Backend) != 0; i++ {
		b.Release(lb.Canceled)
		b, err = p.Pick(lb.Key{Hash: hash, Attempt: uint32(attempt + i*n)})
	}
	return b, err
}

// backendBit is b's member of a set of tried backends; backends past the
// 64th are not tracked.
func backendBit(b *lb.Backend) uint64 {
	if b.Index >= 64 {
		return 0
	}
	return 1 << b.Index
}

// finishResponse cleans the backend's response for the client.
func (s *Server) finishResponse(ctx *fasthttp.RequestCtx, l *listener, rt *route, st *reqState) {
	h := &ctx.Response.Header
	removeHopHeaders(h)
	h.ResetConnectionClose()
	snap := st.snap // the request keeps its snapshot across a reload
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
		delHeader(h, k)
	}
	for i := range ops.set {
		op := &ops.set[i]
		st.buf = s.expand(st.buf[:0], &op.value, ctx, l, rt, st)
		delHeader(h, op.name) // every spelling, not only the canonical one
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
			dst = append(dst, ctx.URI().Host()...)
		case phPath:
			dst = appendRequestPath(dst, ctx) // normalised, still encoded
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

// redirect answers with the route's redirect. The target keeps the parts of
// the request that rd does not replace; the request's port is kept only while
// the scheme stays the same, and a default port (80 for http, 443 for https)
// is left out.
func (s *Server) redirect(ctx *fasthttp.RequestCtx, rd *RedirectConfig, st *reqState) {
	b := st.buf[:0]
	reqScheme := "http"
	if ctx.IsTLS() {
		reqScheme = "https"
	}
	scheme := reqScheme
	if rd.Scheme != "" {
		scheme = rd.Scheme
	}
	reqHost := ctx.URI().Host()
	host := hostWithoutPort(reqHost)
	if rd.Host != "" || len(host) > 0 {
		b = append(append(b, scheme...), "://"...)
		if rd.Host != "" {
			b = append(b, rd.Host...)
		} else {
			b = append(b, host...)
		}
		switch {
		case rd.Port != 0:
			if !(rd.Port == 80 && scheme == "http" || rd.Port == 443 && scheme == "https") {
				b = strconv.AppendInt(append(b, ':'), int64(rd.Port), 10)
			}
		case scheme == reqScheme && len(reqHost) > len(host):
			b = append(b, reqHost[len(host):]...) // keep the request's port
		}
	} // else no host to name (HTTP/1.0 without Host): a relative reference
	if rd.Path != "" {
		b = append(b, rd.Path...)
	} else {
		b = appendRequestPath(b, ctx)
	}
	if q := ctx.URI().QueryString(); len(q) > 0 {
		b = append(append(b, '?'), q...)
	}
	st.buf = b
	ctx.Response.Header.SetBytesV("Location", b)
	ctx.Response.SetStatusCode(rd.Status)
}
