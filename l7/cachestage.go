package l7

import (
	"bytes"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"portico/l7/cache"
	"portico/lb"
)

// The response cache on the proxy path: cacheForward stands in for forward
// on a route with a cache; forward calls cacheResponse (through
// reqState.cache) when a backend has answered, before the response is
// cleaned for the client. The RFC logic lives in package cache.

// routeCache is a route's compiled cache settings.
type routeCache struct {
	c            *cache.Cache
	spec         cache.KeySpec
	urlSpec      cache.KeySpec // the URL parts of spec, for invalidation
	policy       cache.Policy
	maxObject    int64
	lockTimeout  time.Duration
	statusHeader string
	status       *[numOutcomes]string                     // Cache-Status values; "" sends none
	capability   string                                   // Surrogate-Capability sent upstream; "" none
	blank        *atomic.Pointer[fasthttp.ResponseHeader] // the Server's; see prepareEntry
}

// outcome is what the cache did for one request.
type outcome uint8

const (
	oMiss outcome = iota
	oHit
	oStale
	oStored
	oRevalidated
	oBypass
	oOnlyIfCached
	oStaleError
	numOutcomes
)

var xCacheValues = [numOutcomes]string{
	oMiss: "MISS", oHit: "HIT", oStale: "STALE", oStored: "MISS", oRevalidated: "HIT",
	oBypass: "MISS", oOnlyIfCached: "MISS", oStaleError: "STALE",
}

// cacheStatusValues are the RFC 9211 parameters of each outcome.
var cacheStatusValues = [numOutcomes]string{
	oMiss:         "; fwd=miss",
	oHit:          "; hit",
	oStale:        "; hit; detail=stale",
	oStored:       "; fwd=miss; stored",
	oRevalidated:  "; fwd=stale; fwd-status=304",
	oBypass:       "; fwd=bypass",
	oOnlyIfCached: "; fwd=miss; detail=only-if-cached",
	oStaleError:   "; fwd=stale; detail=stale-if-error",
}

// serverCache is the Server's one cache, made by the first snapshot whose
// routes need it and kept across reloads.
type serverCache struct {
	mu     sync.Mutex
	c      *cache.Cache
	budget int64 // the max_bytes it was made with
	// blank is an empty response header with the listeners' flags
	// (NoDefaultDate, NoDefaultContentType), taken from the first request
	// that reaches a cached route; every listener has the same.
	blank atomic.Pointer[fasthttp.ResponseHeader]
}

func (s *Server) buildRouteCache(cfg *Config, rc *RouteCacheConfig) (*routeCache, error) {
	if !rc.Enabled {
		return nil, nil
	}
	s.rcache.mu.Lock()
	defer s.rcache.mu.Unlock()
	if s.rcache.c == nil {
		c, err := cache.New(cache.Config{MaxBytes: cfg.Cache.MaxBytes, Clock: cfg.Cache.Clock, Metrics: s.metrics.set})
		if err != nil {
			return nil, err
		}
		s.rcache.c, s.rcache.budget = c, cfg.Cache.MaxBytes
	}
	spec, err := keySpec(rc.Key)
	if err != nil {
		return nil, err
	}
	r := &routeCache{
		c:            s.rcache.c,
		spec:         spec,
		urlSpec:      cache.KeySpec{Scheme: spec.Scheme, Host: spec.Host, Path: spec.Path, Query: spec.Query},
		maxObject:    rc.MaxObjectBytes,
		lockTimeout:  cfg.Cache.LockTimeout,
		statusHeader: *cfg.Cache.StatusHeader,
		blank:        &s.rcache.blank,
		status:       &[numOutcomes]string{},
		policy: cache.Policy{
			DefaultTTL: rc.DefaultTTL, HeuristicFraction: *cfg.Cache.HeuristicFraction,
			HeuristicMax: cfg.Cache.HeuristicMax, StoreSetCookie: rc.StoreSetCookie,
		},
	}
	if name := *cfg.Cache.Name; name != "" {
		for i := range r.status {
			r.status[i] = name + cacheStatusValues[i]
		}
		r.capability = name + `="Surrogate/1.0"`
		r.policy.SurrogateTarget = name
	}
	return r, nil
}

// Purge removes cached responses: every one when all is set, else those
// whose key starts with prefix, else those stored for the URL key (as keys
// spell it: "http://example.com/a?b" with the default key parts). It
// returns how many objects went; with no cache, 0.
func (s *Server) Purge(key, prefix string, all bool) int {
	s.rcache.mu.Lock()
	c := s.rcache.c
	s.rcache.mu.Unlock()
	switch {
	case c == nil:
		return 0
	case all:
		return c.PurgeAll()
	case prefix != "":
		return c.PurgePrefix(prefix)
	}
	return c.PurgeKey(key)
}

// SetCacheBudget resizes the cache to maxBytes (http.cache.max_bytes) on a
// reload, once the new config is live; a smaller budget evicts at once.
// With no cache yet, the first config that enables one sizes it.
func (s *Server) SetCacheBudget(maxBytes int64) {
	s.rcache.mu.Lock()
	defer s.rcache.mu.Unlock()
	if s.rcache.c == nil || maxBytes == s.rcache.budget {
		return
	}
	if err := s.rcache.c.SetMaxBytes(maxBytes); err != nil {
		s.log.Warn("cannot resize the cache", "max_bytes", maxBytes, "error", err)
		return
	}
	s.log.Info("cache resized", "from", s.rcache.budget, "to", maxBytes)
	s.rcache.budget = maxBytes
}

func (s *Server) closeCache() {
	s.rcache.mu.Lock()
	defer s.rcache.mu.Unlock()
	if s.rcache.c != nil {
		s.rcache.c.Close()
	}
}

// cacheTx is one request's cache state; pooled.
type cacheTx struct {
	rc         *routeCache
	key, path  []byte
	reqCC      cache.Directives
	pragma     bool
	authorized bool
	reqTime    time.Time
	stale      *cache.Entry // the entry being revalidated
	served     *cache.Entry // the entry the response came from
	outcome    outcome
	ageBuf     [24]byte
	// up is the backend's response on a miss (see cachebody.go), until
	// cacheResponse moves it to the client's.
	up *fasthttp.Response
	// flight is the coalesced miss this request leads, until it ends or
	// the response's body takes it over.
	flight *cache.Flight
}

var txPool = sync.Pool{New: func() any { return &cacheTx{key: make([]byte, 0, 256), path: make([]byte, 0, 128)} }}

func releaseTx(tx *cacheTx) {
	if tx.up != nil {
		fasthttp.ReleaseResponse(tx.up)
	}
	tx.rc, tx.stale, tx.served, tx.up, tx.flight = nil, nil, nil, nil, nil
	tx.key, tx.path = tx.key[:0], tx.path[:0]
	txPool.Put(tx)
}

// upstream is the Response forward has the backend's answer read into.
func (tx *cacheTx) upstream() *fasthttp.Response {
	if tx.up == nil {
		tx.up = fasthttp.AcquireResponse()
	}
	return tx.up
}

// cacheLookup runs before the upstream request is built: it answers a GET
// or HEAD from the store when it may (fresh, or stale as allowed), or with
// 504 for only-if-cached, and reports whether it did. Otherwise it leaves
// the request's cache state in st.cache for cacheForward.
func (s *Server) cacheLookup(ctx *fasthttp.RequestCtx, l *listener, snap *snapshot, rt *route, st *reqState) bool {
	m := ctx.Method()
	if string(m) != "GET" && string(m) != "HEAD" || isUpgrade(&ctx.Request.Header) {
		return false
	}
	rc := rt.cache
	tx := txPool.Get().(*cacheTx)
	tx.rc, tx.outcome = rc, oMiss
	if rc.blank.Load() == nil {
		b := new(fasthttp.ResponseHeader)
		ctx.Response.Header.CopyTo(b) // untouched yet: empty, with the server's flags
		rc.blank.Store(b)
	}
	h := &ctx.Request.Header
	tx.reqCC.Reset()
	cc := h.Peek("Cache-Control")
	tx.reqCC.Parse(cc)
	tx.pragma = len(cc) == 0 && bytes.Contains(bytes.ToLower(h.Peek("Pragma")), []byte("no-cache"))
	tx.authorized = len(h.Peek("Authorization")) > 0
	tx.path = appendRequestPath(tx.path[:0], ctx)
	in := cache.KeyInput{Method: m, Scheme: l.scheme, Host: ctx.URI().Host(), Path: tx.path, Query: ctx.URI().QueryString()}
	tx.key = rc.spec.Append(tx.key[:0], &in, h)

	now := rc.c.Now()
	e := rc.c.Get(tx.key, h)
	o := oMiss
	if e != nil {
		switch e.Decide(now, &tx.reqCC, tx.pragma) {
		case cache.Fresh:
			rc.c.Hits.Inc()
			o = oHit
		case cache.Stale:
			rc.c.StaleServed.Inc()
			o = oStale
		case cache.StaleRevalidate:
			rc.c.StaleServed.Inc()
			o = oStale
			s.prepare(ctx, l, snap, rt, st) // the background request is built from it
			s.revalidateInBackground(ctx, rt, st, tx, e)
		}
	}
	switch {
	case o != oMiss:
		if len(st.requestID) == 0 {
			s.hitRequestFields(ctx, snap, st)
		}
		s.serveEntry(ctx, l, rt, st, tx, e, now, o)
	case tx.reqCC.OnlyIfCached:
		s.fail(ctx, rt.metrics, fasthttp.StatusGatewayTimeout, "not in cache (only-if-cached)")
		tx.outcome = oOnlyIfCached
		s.cacheHeaders(ctx, tx)
	default:
		tx.stale = e // nil, or the entry to revalidate
		st.cache = tx
		return false
	}
	releaseTx(tx)
	return true
}

// hitRequestFields sets what finishResponse and the header templates read
// of a request answered without going upstream (see prepare).
func (s *Server) hitRequestFields(ctx *fasthttp.RequestCtx, snap *snapshot, st *reqState) {
	st.ip = appendClientIP(st.ip[:0], ctx)
	if snap.forwarded.requestID {
		if id := ctx.Request.Header.Peek("X-Request-Id"); len(id) > 0 {
			st.requestID = append(st.requestID[:0], id...)
		} else {
			st.requestID = s.ids.append(st.requestID[:0])
		}
	}
}

// cacheForward goes upstream for a request of a route with a cache that
// cacheLookup did not answer, storing what it may.
func (s *Server) cacheForward(ctx *fasthttp.RequestCtx, l *listener, snap *snapshot, rt *route, st *reqState) {
	rc := rt.cache
	m := ctx.Method()
	tx := st.cache
	if tx == nil {
		s.forward(ctx, l, snap, rt, st)
		if unsafeMethod(m) {
			if code := ctx.Response.StatusCode(); code >= 200 && code < 400 {
				s.invalidate(ctx, l, rc)
			}
		}
		return
	}
	st.cache = nil
	defer releaseTx(tx)
	get := string(m) == "GET"
	h := &ctx.Request.Header
	e := tx.stale
	tx.stale = nil
	if e == nil && len(h.Peek("Range")) > 0 {
		rc.c.Bypass.Inc()
		s.forward(ctx, l, snap, rt, st)
		tx.outcome = oBypass
		s.cacheHeaders(ctx, tx)
		return
	}
	if e == nil && get {
		// Coalesce: one request per key goes upstream; the rest wait for
		// its response, then go themselves if it was not stored.
		f, lead := rc.c.Join(tx.key)
		rc.c.Misses.Inc() // after Join: a test waits for every miss to have joined
		if lead {
			tx.flight = f
			defer func() {
				if tx.flight != nil { // not taken over by a body being stored
					rc.c.Leave(tx.key, tx.flight)
					tx.flight = nil
				}
			}()
		} else if f.Wait(rc.lockTimeout) {
			now := rc.c.Now()
			if e2 := rc.c.Get(tx.key, h); e2 != nil && e2.Decide(now, &tx.reqCC, tx.pragma) == cache.Fresh {
				rc.c.Hits.Inc()
				s.serveEntry(ctx, l, rt, st, tx, e2, now, oHit)
				return
			}
		}
	} else {
		rc.c.Misses.Inc()
	}
	// The response must be complete and unconditional to be stored; the
	// client's own conditions are answered from it afterwards.
	up := &st.up.Header
	for _, k := range [...]string{"If-None-Match", "If-Modified-Since", "If-Range", "Range"} {
		delHeader(up, k)
	}
	if rc.capability != "" {
		up.Set("Surrogate-Capability", rc.capability)
	}
	if e != nil && get {
		tx.stale = e
		if e.ETag != "" {
			up.Set("If-None-Match", e.ETag)
		}
		if e.LastModified != "" {
			up.Set("If-Modified-Since", e.LastModified)
		}
	}
	tx.reqTime = rc.c.Now()
	st.cache = tx
	s.forward(ctx, l, snap, rt, st)
	st.cache = nil
	if tx.served == nil && tx.stale != nil && isServerError(ctx.Response.StatusCode()) && tx.stale.StaleIfError(rc.c.Now(), &tx.reqCC) {
		rc.c.StaleServed.Inc()
		s.serveEntry(ctx, l, rt, st, tx, tx.stale, rc.c.Now(), oStaleError)
		return
	}
	if tx.served != nil {
		s.answerConditional(ctx, tx.served)
	}
	s.cacheHeaders(ctx, tx)
}

// cacheResponse runs in forward when a backend has answered a request of
// cacheForward into tx.up, before the response is cleaned for the client:
// it refreshes a revalidated entry on 304, or moves the response to the
// client's, its body stored on the way when the response is storable.
func (s *Server) cacheResponse(ctx *fasthttp.RequestCtx, st *reqState) {
	tx := st.cache
	rc := tx.rc
	up := tx.up
	tx.up = nil
	status := up.StatusCode()
	now := rc.c.Now()
	if tx.stale != nil && status == fasthttp.StatusNotModified {
		rc.c.Revalidations.Inc()
		n := tx.stale.Refresh(responseFields(&up.Header), tx.reqTime, now, &rc.policy)
		_ = up.CloseBodyStream()
		fasthttp.ReleaseResponse(up)
		rc.prepareEntry(n)
		rc.c.Put(tx.key, n, &ctx.Request.Header)
		fillFromEntry(ctx, n, now, tx)
		tx.served, tx.outcome = n, oRevalidated
		return
	}
	t, e := s.storeBody(ctx, st, up, status, now)
	streamed := up.IsBodyStream()
	moveResponse(ctx, up, t) // up, and t unless streamed, are gone after
	switch {
	case t == nil:
	case !streamed:
		tx.served, tx.outcome = e, oStored
	case len(ctx.Request.Header.Peek("If-None-Match")) > 0 || len(ctx.Request.Header.Peek("If-Modified-Since")) > 0:
		// The client may get a 304 from the entry: the body is read
		// first, up to max_object_bytes (what storing it holds anyway).
		t.startPump()
		if t.waitPump() {
			tx.served, tx.outcome = e, oStored
		}
	default:
		t.startPump()
		tx.outcome = oStored // as it comes; not stored if it is cut short
	}
}

// storeBody returns the body tee that stores the backend's response up,
// with its entry, or nil when up is not to be stored.
func (s *Server) storeBody(ctx *fasthttp.RequestCtx, st *reqState, up *fasthttp.Response, status int, now time.Time) (*cacheBody, *cache.Entry) {
	tx := st.cache
	rc := tx.rc
	if string(ctx.Method()) != "GET" || isServerError(status) && tx.stale != nil && tx.stale.StaleIfError(now, &tx.reqCC) {
		return nil, nil
	}
	e := cache.NewEntry(status, responseFields(&up.Header), nil, tx.reqTime, now, &rc.policy)
	if !e.Storable(&tx.reqCC, tx.authorized, &rc.policy) {
		return nil, nil
	}
	if len(up.Header.PeekTrailerKeys()) > 0 {
		return nil, nil // a hit could not send the trailer fields
	}
	cl := up.Header.ContentLength()
	if status == fasthttp.StatusNoContent {
		cl = 0 // no body, whatever the framing said
	}
	if cl == -2 || int64(cl) > rc.maxObject {
		// -2: a body up to the connection's close, whose cut cannot be
		// told from its end. Either way it streams through unstored.
		return nil, nil
	}
	e.Backend = st.backend
	t := cacheBodies.Get().(*cacheBody)
	t.storing, t.rc, t.e, t.max, t.want = true, rc, e, rc.maxObject, cl
	t.key = append([]byte(nil), tx.key...)
	if cl > 0 {
		t.buf = make([]byte, 0, cl)
	}
	if len(e.Vary) > 0 {
		t.vary = fasthttp.AcquireRequest()
		ctx.Request.Header.CopyTo(&t.vary.Header)
	}
	t.flight, tx.flight = tx.flight, nil
	return t, e
}

// readBody reads a response body whole, up to max bytes, and releases the
// backend connection; ok is false for a longer body or a cut one.
func readBody(resp *fasthttp.Response, max int64) (body []byte, ok bool) {
	r := resp.BodyStream()
	if r == nil {
		return append([]byte(nil), resp.Body()...), int64(len(resp.Body())) <= max
	}
	cl := resp.Header.ContentLength()
	if cl == -2 || int64(cl) > max {
		_ = resp.CloseBodyStream()
		return nil, false
	}
	body, err := io.ReadAll(io.LimitReader(r, max+1))
	if cerr := resp.CloseBodyStream(); err == nil {
		err = cerr
	}
	return body, err == nil && int64(len(body)) <= max && (cl < 0 || len(body) == cl)
}

// responseFields copies the end-to-end fields of a backend's response. Age
// is kept for the entry to read; a hit replaces it with the current age.
// X-Request-Id is one request's: a hit gets its own.
func responseFields(h *fasthttp.ResponseHeader) []cache.Field {
	conn := h.Peek("Connection")
	out := make([]cache.Field, 0, 16)
	for k, v := range h.All() {
		if isHopHeader(k) || bytes.EqualFold(k, []byte("Content-Length")) || bytes.EqualFold(k, []byte("Transfer-Encoding")) ||
			bytes.EqualFold(k, []byte("X-Request-Id")) || listedIn(conn, k) {
			continue
		}
		out = append(out, cache.Field{Name: string(k), Value: string(v)})
	}
	return out
}

// listedIn reports whether name is one of the comma-separated tokens of v.
func listedIn(v, name []byte) bool {
	for len(v) > 0 {
		i := bytes.IndexByte(v, ',')
		if i < 0 {
			i = len(v)
		}
		if bytes.EqualFold(bytes.TrimSpace(v[:i]), name) {
			return true
		}
		v = v[min(i+1, len(v)):]
	}
	return false
}

// fillFromEntry makes the client's response the stored one, with its age.
func fillFromEntry(ctx *fasthttp.RequestCtx, e *cache.Entry, now time.Time, tx *cacheTx) {
	resp := &ctx.Response
	resp.Reset()
	h := &resp.Header
	if tmpl, ok := e.Extra.(*fasthttp.ResponseHeader); ok {
		tmpl.CopyTo(h) // with the server's NoDefaultDate: the stored Date goes out
	} else {
		resp.SetStatusCode(e.Status)
		h.SetNoDefaultContentType(true)
		for _, f := range e.Header {
			h.Add(f.Name, f.Value)
		}
	}
	h.SetBytesV("Age", cache.AppendAge(tx.ageBuf[:0], int64(e.Age(now)/time.Second)))
	resp.SetBodyRaw(e.Body)
}

// prepareEntry gives an entry, before it is stored, the response header
// its hits copy (Extra): its fields, with the origin's Date, or the time
// it was received when the origin sent none (RFC 9110 section 6.6.1). It
// is parsed once here, since fasthttp takes a Date field only by parsing.
func (rc *routeCache) prepareEntry(e *cache.Entry) {
	blank := rc.blank.Load()
	if blank == nil {
		return
	}
	h := new(fasthttp.ResponseHeader)
	blank.CopyTo(h)
	size := 0
	err := parseHeader(h, e.Status, nil, func(yield func(k, v []byte) bool) {
		date := false
		for _, f := range e.Header {
			if strings.EqualFold(f.Name, "Age") {
				continue // a hit sets its own
			}
			date = date || strings.EqualFold(f.Name, "Date")
			size += len(f.Name) + len(f.Value)
			yield([]byte(f.Name), []byte(f.Value))
		}
		if !date {
			yield([]byte("Date"), e.ResponseTime.UTC().AppendFormat(nil, http.TimeFormat))
		}
	})
	if err == nil {
		e.SetExtra(h, size+512)
	}
}

// serveEntry answers from a stored entry.
func (s *Server) serveEntry(ctx *fasthttp.RequestCtx, l *listener, rt *route, st *reqState, tx *cacheTx, e *cache.Entry, now time.Time, o outcome) {
	fillFromEntry(ctx, e, now, tx)
	if !s.answerConditional(ctx, e) {
		answerRange(ctx, e)
	}
	st.backend = e.Backend
	s.finishResponse(ctx, l, rt, st)
	tx.outcome = o
	s.cacheHeaders(ctx, tx)
}

// answerConditional turns the response into 304 when the client's
// If-None-Match or If-Modified-Since holds for e.
func (s *Server) answerConditional(ctx *fasthttp.RequestCtx, e *cache.Entry) bool {
	h := &ctx.Request.Header
	inm, ims := h.Peek("If-None-Match"), h.Peek("If-Modified-Since")
	if len(inm) == 0 && len(ims) == 0 || ctx.Response.StatusCode() != fasthttp.StatusOK || !e.NotModified(inm, ims) {
		return false
	}
	ctx.Response.SetStatusCode(fasthttp.StatusNotModified)
	ctx.Response.SetBodyRaw(nil)
	ctx.Response.Header.DelBytes([]byte("Content-Length"))
	return true
}

// answerRange answers a single byte range (bytes=a-b, a-, -n) from a
// complete body with 206; other range forms get the whole 200.
func answerRange(ctx *fasthttp.RequestCtx, e *cache.Entry) {
	rg := ctx.Request.Header.Peek("Range")
	if len(rg) == 0 || e.Status != fasthttp.StatusOK || !e.Complete {
		return
	}
	if ir := ctx.Request.Header.Peek("If-Range"); len(ir) > 0 && (e.ETag == "" || string(ir) != e.ETag) {
		return // the representation may have changed: send it whole
	}
	start, end, ok := parseRange(rg, int64(len(e.Body)))
	if !ok {
		return
	}
	resp := &ctx.Response
	resp.SetStatusCode(fasthttp.StatusPartialContent)
	resp.Header.SetContentRange(int(start), int(end), len(e.Body))
	resp.SetBodyRaw(e.Body[start : end+1])
}

// parseRange parses one satisfiable byte range of a body of size n.
func parseRange(v []byte, n int64) (start, end int64, ok bool) {
	v, found := bytes.CutPrefix(bytes.TrimSpace(v), []byte("bytes="))
	if !found || bytes.IndexByte(v, ',') >= 0 || n == 0 {
		return 0, 0, false
	}
	a, b, found := bytes.Cut(v, []byte("-"))
	if !found {
		return 0, 0, false
	}
	a, b = bytes.TrimSpace(a), bytes.TrimSpace(b)
	if len(a) == 0 { // suffix: the last b bytes
		k, err := strconv.ParseInt(string(b), 10, 64)
		if err != nil || k <= 0 {
			return 0, 0, false
		}
		return max(n-k, 0), n - 1, true
	}
	start, err := strconv.ParseInt(string(a), 10, 64)
	if err != nil || start >= n {
		return 0, 0, false
	}
	end = n - 1
	if len(b) > 0 {
		if end, err = strconv.ParseInt(string(b), 10, 64); err != nil || end < start {
			return 0, 0, false
		}
		end = min(end, n-1)
	}
	return start, end, true
}

// cacheHeaders adds X-Cache (or the configured name) and Cache-Status.
func (s *Server) cacheHeaders(ctx *fasthttp.RequestCtx, tx *cacheTx) {
	rc := tx.rc
	if rc.statusHeader != "" {
		ctx.Response.Header.Set(rc.statusHeader, xCacheValues[tx.outcome])
	}
	if v := rc.status[tx.outcome]; v != "" {
		ctx.Response.Header.Set("Cache-Status", v)
	}
}

func isServerError(status int) bool { return status >= 500 && status <= 504 }

// unsafeMethod: every method not known to be safe (RFC 9110 section
// 9.2.1), extension methods included, invalidates.
func unsafeMethod(m []byte) bool {
	switch string(m) {
	case "GET", "HEAD", "OPTIONS", "TRACE":
		return false
	}
	return true
}

// invalidate drops what is stored for the target of a successful unsafe
// request, and for its Location and Content-Location on the same host
// (RFC 9111 section 4.4).
func (s *Server) invalidate(ctx *fasthttp.RequestCtx, l *listener, rc *routeCache) {
	path := appendRequestPath(nil, ctx)
	host := ctx.URI().Host()
	in := cache.KeyInput{Scheme: l.scheme, Host: host, Path: path, Query: ctx.URI().QueryString()}
	rc.drop(&in)
	for _, name := range [...]string{"Location", "Content-Location"} {
		v := ctx.Response.Header.Peek(name)
		if len(v) == 0 {
			continue
		}
		u, err := url.Parse(string(v))
		if err != nil || u.Host != "" && !bytes.EqualFold([]byte(u.Host), host) || u.Path == "" {
			continue
		}
		in := cache.KeyInput{Scheme: l.scheme, Host: host, Path: []byte(u.EscapedPath()), Query: []byte(u.RawQuery)}
		rc.drop(&in)
	}
}

var strGET = []byte("GET")

// drop removes what is stored for a URL: by its one key when the key has
// no header part, else by a scan of the store for the URL.
func (rc *routeCache) drop(in *cache.KeyInput) {
	if len(rc.spec.Headers) == 0 {
		in.Method = strGET
		rc.c.Invalidate(rc.spec.Append(nil, in, nil))
		return
	}
	rc.c.PurgeKey(string(rc.urlSpec.Append(nil, in, nil)))
}

// revalidateInBackground sends one conditional request for a stale entry
// served under stale-while-revalidate; concurrent requests for the key
// share it. The goroutine is bounded by the upstream timeouts, and
// Shutdown waits for it.
func (s *Server) revalidateInBackground(ctx *fasthttp.RequestCtx, rt *route, st *reqState, tx *cacheTx, e *cache.Entry) {
	rc := rt.cache
	key := append([]byte(nil), tx.key...)
	f, lead := rc.c.Join(key)
	if !lead {
		return
	}
	req := fasthttp.AcquireRequest()
	st.up.Header.CopyTo(&req.Header)
	for _, k := range [...]string{"If-None-Match", "If-Modified-Since", "If-Range", "Range"} {
		delHeader(&req.Header, k)
	}
	if rc.capability != "" {
		req.Header.Set("Surrogate-Capability", rc.capability)
	}
	if e.ETag != "" {
		req.Header.Set("If-None-Match", e.ETag)
	}
	if e.LastModified != "" {
		req.Header.Set("If-Modified-Since", e.LastModified)
	}
	vary := &fasthttp.RequestHeader{} // the client's fields, which key a new variant
	ctx.Request.Header.CopyTo(vary)
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		defer rc.c.Leave(key, f)
		defer fasthttp.ReleaseRequest(req)
		s.revalidate(rt, key, e, req, vary)
	}()
}

// revalidate sends req, a conditional request for e, to a backend of the
// route and refreshes or replaces the entry.
func (s *Server) revalidate(rt *route, key []byte, e *cache.Entry, req *fasthttp.Request, vary *fasthttp.RequestHeader) {
	rc := rt.cache
	p := rt.pool
	b, err := p.Pick(lb.Key{})
	if err != nil {
		return
	}
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(resp)
	reqTime := rc.c.Now()
	err = p.clients[b.Index].Do(req, resp)
	if err != nil || resp.StatusCode() >= 500 {
		b.Release(lb.Failure)
		return
	}
	b.Release(lb.Success)
	now := rc.c.Now()
	if resp.StatusCode() == fasthttp.StatusNotModified {
		rc.c.Revalidations.Inc()
		n := e.Refresh(responseFields(&resp.Header), reqTime, now, &rc.policy)
		rc.prepareEntry(n)
		rc.c.Put(key, n, vary)
		return
	}
	n := cache.NewEntry(resp.StatusCode(), responseFields(&resp.Header), nil, reqTime, now, &rc.policy)
	var cc cache.Directives
	cc.Reset()
	cc.Parse(vary.Peek("Cache-Control"))
	if !n.Storable(&cc, len(vary.Peek("Authorization")) > 0, &rc.policy) {
		_ = resp.CloseBodyStream()
		return
	}
	body, ok := readBody(resp, rc.maxObject)
	if !ok {
		return
	}
	n.SetBody(body)
	n.Backend = b.Name
	rc.prepareEntry(n)
	rc.c.Put(key, n, vary)
}
