package l7

import (
	"fmt"
	"net/textproto"
	"regexp"
	"sort"
	"time"

	"github.com/valyala/fasthttp"

	"portico/lb"
)

// snapshot is everything a request needs that a reload may change: routes,
// pools and their clients, and the header policy. It is immutable once built;
// the server swaps whole snapshots atomically.
type snapshot struct {
	router    router
	upstream  UpstreamConfig
	retries   int // upstream.retries, resolved
	forwarded forwarded
	noRoute   *routeMetrics
}

// forwarded is ForwardedConfig with its pointers resolved.
type forwarded struct {
	xff, proto, host, via, requestID bool
	viaValue                         string // "portico", appended after "1.1 "
}

// route is the compiled form of RouteConfig.
type route struct {
	name     string
	match    matcher
	pool     *pool
	rewrite  pathRewrite
	redirect *RedirectConfig
	reqOps   headerOps
	respOps  headerOps
	metrics  *routeMetrics
	cache    *routeCache // nil: not cached
}

// pool pairs an lb.Pool with one HostClient per backend.
type pool struct {
	*lb.Pool
	clients []*fasthttp.HostClient
	errors  [][numKinds]counter // per backend, per failure kind
	logs    []logThrottle       // per backend: upstream errors logged at most once a second
}

type pathRewrite struct {
	stripPrefix string
	re          *regexp.Regexp
	replacement string
	addPrefix   string
}

func (p *pathRewrite) active() bool {
	return p.stripPrefix != "" || p.re != nil || p.addPrefix != ""
}

// headerOps are one direction's header edits, applied remove, set, add.
type headerOps struct {
	remove []string
	set    []headerOp
	add    []headerOp
}

type headerOp struct {
	name  string
	value template
}

func (h *headerOps) empty() bool { return len(h.remove)+len(h.set)+len(h.add) == 0 }

func compileOps(set, add map[string]string, remove []string) (headerOps, error) {
	var ops headerOps
	for _, k := range remove {
		ops.remove = append(ops.remove, textproto.CanonicalMIMEHeaderKey(k))
	}
	build := func(m map[string]string) ([]headerOp, error) {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys) // a stable order for repeatable output
		var out []headerOp
		for _, k := range keys {
			t, err := parseTemplate(m[k])
			if err != nil {
				return nil, err
			}
			out = append(out, headerOp{name: textproto.CanonicalMIMEHeaderKey(k), value: t})
		}
		return out, nil
	}
	var err error
	if ops.set, err = build(set); err != nil {
		return ops, err
	}
	ops.add, err = build(add)
	return ops, err
}

// buildSnapshot compiles a validated config against the given pools.
func (s *Server) buildSnapshot(cfg *Config, pools map[string]*lb.Pool) (*snapshot, error) {
	snap := &snapshot{upstream: cfg.Upstream, retries: *cfg.Upstream.Retries, noRoute: s.metrics.route(noRouteName)}
	f := cfg.Forwarded
	snap.forwarded = forwarded{
		xff: *f.XForwardedFor, proto: *f.XForwardedProto, host: *f.XForwardedHost,
		via: *f.Via, requestID: *f.RequestID, viaValue: f.ViaName,
	}
	built := map[string]*pool{}
	for i, rc := range cfg.Routes {
		rt := &route{name: rc.Name, match: compileMatch(rc.Match), redirect: rc.Redirect, metrics: s.metrics.route(rc.Name)}
		if rc.Redirect == nil {
			p, ok := built[rc.Pool]
			if !ok {
				lp := pools[rc.Pool]
				if lp == nil {
					return nil, fmt.Errorf("routes[%d].pool: pool %q is not defined", i, rc.Pool)
				}
				p = s.buildPool(lp, &cfg.Upstream)
				built[rc.Pool] = p
			}
			rt.pool = p
		}
		rw := rc.Rewrite
		rt.rewrite = pathRewrite{stripPrefix: rw.StripPrefix, replacement: rw.Replacement, addPrefix: rw.AddPrefix}
		if rw.Regex != "" {
			rt.rewrite.re = regexp.MustCompile(rw.Regex)
		}
		var err error
		h := rc.Headers
		if rt.reqOps, err = compileOps(h.RequestSet, h.RequestAdd, h.RequestRemove); err != nil {
			return nil, fmt.Errorf("routes[%d].headers: %w", i, err)
		}
		if rt.respOps, err = compileOps(h.ResponseSet, h.ResponseAdd, h.ResponseRemove); err != nil {
			return nil, fmt.Errorf("routes[%d].headers: %w", i, err)
		}
		if rt.cache, err = s.buildRouteCache(cfg, &rc.Cache); err != nil {
			return nil, fmt.Errorf("routes[%d].cache: %w", i, err)
		}
		snap.router.routes = append(snap.router.routes, rt)
	}
	return snap, nil
}

// buildPool makes or reuses one HostClient per backend. Clients are kept by
// address and settings across snapshots so that a reload keeps warm
// connections.
func (s *Server) buildPool(lp *lb.Pool, u *UpstreamConfig) *pool {
	p := &pool{Pool: lp}
	for _, b := range lp.Backends() {
		p.clients = append(p.clients, s.client(b.Address, u))
		var errs [numKinds]counter
		for k := range errs {
			errs[k] = s.metrics.upstreamError(lp.Name, b.Name, kindNames[k])
		}
		p.errors = append(p.errors, errs)
		p.logs = append(p.logs, logThrottle{})
	}
	return p
}

// clientKey is what shapes a HostClient: two snapshots that agree on it share
// the client and its warm connections.
type clientKey struct {
	addr                             string
	connect, read, write, idle, wait time.Duration
	maxConns, headerBytes            int
}

func (s *Server) client(addr string, u *UpstreamConfig) *fasthttp.HostClient {
	s.clientsMu.Lock()
	defer s.clientsMu.Unlock()
	k := clientKey{addr, u.ConnectTimeout, u.ResponseTimeout, u.WriteTimeout, u.IdleTimeout, *u.MaxConnWait, u.MaxConns, u.MaxResponseHeaderBytes}
	if c, ok := s.clients[k]; ok {
		return c
	}
	connect, read, write := u.ConnectTimeout, u.ResponseTimeout, u.WriteTimeout
	c := &fasthttp.HostClient{
		Addr: addr,
		// fasthttp's ReadTimeout and WriteTimeout bound a whole exchange,
		// streamed body included; ioTimeoutConn bounds each read and write.
		Dial: func(a string) (netConn, error) {
			c, err := fasthttp.DialTimeout(a, connect)
			if err != nil {
				return nil, err
			}
			return backendConn{&ioTimeoutConn{netConn: c, read: read, write: write}}, nil
		},
		MaxConns:                  u.MaxConns,
		MaxConnWaitTimeout:        *u.MaxConnWait,
		MaxIdleConnDuration:       u.IdleTimeout,
		ReadBufferSize:            u.MaxResponseHeaderBytes,
		StreamResponseBody:        true,
		NoDefaultUserAgentHeader:  true,
		DisablePathNormalizing:    true,
		MaxIdemponentCallAttempts: 1,
	}
	s.clients[k] = c
	return c
}

// ioTimeoutConn gives each Read and Write of a backend connection its own
// deadline, so that upstream.response_timeout and write_timeout bound the
// wait for the next bytes (as nginx's proxy_read_timeout does) and a large
// body that keeps moving may take as long as it needs.
//
// Moving a deadline costs two clock reads and a runtime timer update, twice
// per proxied request, so a deadline is moved only when it has come nearer
// than the timeout: it is then set deadlineSlack further out than that. A
// wait is so never cut before the timeout, and always by the timeout plus
// deadlineSlack (nginx keeps a timer that would move by less than 300 ms
// for the same reason). Not safe for concurrent Reads, nor concurrent
// Writes, which a net.Conn's users do not do anyway.
type ioTimeoutConn struct {
	netConn
	read, write time.Duration
	// readBy and writeBy are the deadlines set; zero when none is.
	readBy, writeBy time.Time
	yield           yieldAfterWrite // a response rarely follows its request at once
}

// deadlineSlack is how far past the timeout a deadline is set: an eighth of
// the timeout, at most deadlineSlackMax.
func deadlineSlack(timeout time.Duration) time.Duration {
	return min(timeout/8, deadlineSlackMax)
}

const deadlineSlackMax = 250 * time.Millisecond

func (c *ioTimeoutConn) Read(p []byte) (int, error) {
	c.yield.beforeRead()
	if c.read > 0 {
		now := time.Now()
		if c.readBy.Sub(now) < c.read { // also when none is set (readBy is zero)
			c.readBy = now.Add(c.read + deadlineSlack(c.read))
			_ = c.netConn.SetReadDeadline(c.readBy)
		}
	}
	return c.netConn.Read(p)
}

func (c *ioTimeoutConn) Write(p []byte) (int, error) {
	if c.write > 0 {
		now := time.Now()
		if c.writeBy.Sub(now) < c.write {
			c.writeBy = now.Add(c.write + deadlineSlack(c.write))
			_ = c.netConn.SetWriteDeadline(c.writeBy)
		}
	}
	c.yield.written()
	return c.netConn.Write(p)
}

// SetDeadline, SetReadDeadline and SetWriteDeadline keep readBy and writeBy
// in step with deadlines set from outside.
func (c *ioTimeoutConn) SetDeadline(t time.Time) error {
	c.readBy, c.writeBy = t, t
	return c.netConn.SetDeadline(t)
}

func (c *ioTimeoutConn) SetReadDeadline(t time.Time) error {
	c.readBy = t
	return c.netConn.SetReadDeadline(t)
}

func (c *ioTimeoutConn) SetWriteDeadline(t time.Time) error {
	c.writeBy = t
	return c.netConn.SetWriteDeadline(t)
}
