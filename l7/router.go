package l7

import (
	"bytes"
	"net/textproto"
	"regexp"
	"sort"
	"strings"
	"sync"

	"github.com/valyala/fasthttp"
)

// router holds the compiled routes of one snapshot, in config order.
type router struct {
	routes []*route
}

// match returns the first route that takes the request, or nil. Routes see
// the request's host (from an absolute-form target if there is one, else
// from Host; lower case, without port or a trailing dot) and its path in
// normalised form (see appendNormalPath). It does not allocate unless a
// route uses a regular expression.
func (r *router) match(ctx *fasthttp.RequestCtx) *route {
	host := requestHost(ctx)
	path := requestPath(ctx)
	if !isNormalPath(path) {
		bp := pathBufs.Get().(*[]byte)
		defer pathBufs.Put(bp)
		*bp = appendNormalPath((*bp)[:0], path)
		path = *bp
	}
	for _, rt := range r.routes {
		if rt.matches(ctx, host, path) {
			return rt
		}
	}
	return nil
}

// pathBufs hold normalised paths during matching, for the rare request whose
// path is not already in normal form.
var pathBufs = sync.Pool{New: func() any { b := make([]byte, 0, 256); return &b }}

// requestHost returns the host a request is for, lower case and without port
// or trailing dot: that of an absolute-form target (RFC 9112 section 3.2.2:
// it overrides Host, and it is what fasthttp sends upstream), else Host's.
func requestHost(ctx *fasthttp.RequestCtx) []byte {
	h := hostWithoutPort(ctx.URI().Host())
	if n := len(h); n > 1 && h[n-1] == '.' {
		h = h[:n-1]
	}
	return h
}

type pathKind uint8

const (
	pathAny pathKind = iota
	pathExact
	pathPrefix
	pathRegex
)

type hostMatch struct {
	name     string // exact name, lower case
	wildcard bool   // name is ".example.com": match any non-empty label(s) before it
}

type kvMatch struct {
	key   string // a header's name in canonical form, or a query argument's
	value string // "*" means present with any value
}

// matcher is the compiled form of MatchConfig.
type matcher struct {
	hosts   []hostMatch
	kind    pathKind
	path    string
	re      *regexp.Regexp
	methods []string
	headers []kvMatch
	query   []kvMatch
}

func compileMatch(m MatchConfig) matcher {
	c := matcher{path: m.Path, methods: m.Methods}
	for _, h := range m.Hosts {
		h = strings.TrimSuffix(strings.ToLower(h), ".")
		if strings.HasPrefix(h, "*.") {
			c.hosts = append(c.hosts, hostMatch{name: h[1:], wildcard: true})
		} else {
			c.hosts = append(c.hosts, hostMatch{name: h})
		}
	}
	switch {
	case m.Path != "":
		c.kind = pathExact
	case m.PathPrefix != "":
		c.kind, c.path = pathPrefix, m.PathPrefix
	case m.PathRegex != "":
		c.kind, c.re = pathRegex, regexp.MustCompile(m.PathRegex)
	}
	for k, v := range m.Headers {
		c.headers = append(c.headers, kvMatch{key: textproto.CanonicalMIMEHeaderKey(k), value: v})
	}
	for k, v := range m.Query {
		c.query = append(c.query, kvMatch{key: k, value: v})
	}
	// Map order is random; a fixed order makes matching cost repeatable.
	sort.Slice(c.headers, func(i, j int) bool { return c.headers[i].key < c.headers[j].key })
	sort.Slice(c.query, func(i, j int) bool { return c.query[i].key < c.query[j].key })
	return c
}

func (m *matcher) matchHost(host []byte) bool {
	if len(m.hosts) == 0 {
		return true
	}
	for _, h := range m.hosts {
		if h.wildcard {
			if len(host) > len(h.name) && bytes.EqualFold(host[len(host)-len(h.name):], s2b(h.name)) {
				return true
			}
		} else if bytes.EqualFold(host, s2b(h.name)) {
			return true
		}
	}
	return false
}

func (m *matcher) matchPath(path []byte) bool {
	switch m.kind {
	case pathExact:
		return string(path) == m.path
	case pathPrefix:
		return bytes.HasPrefix(path, s2b(m.path))
	case pathRegex:
		return m.re.Match(path)
	}
	return true
}

func (rt *route) matches(ctx *fasthttp.RequestCtx, host, path []byte) bool {
	m := &rt.match
	if !m.matchHost(host) || !m.matchPath(path) {
		return false
	}
	if len(m.methods) > 0 {
		method := ctx.Method()
		ok := false
		for _, want := range m.methods {
			if string(method) == want {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	for _, h := range m.headers {
		v, ok := clientHeaderValue(&ctx.Request.Header, h.key)
		if !ok || (h.value != "*" && string(v) != h.value) {
			return false
		}
	}
	if len(m.query) > 0 {
		args := ctx.QueryArgs()
		for _, q := range m.query {
			if !args.Has(q.key) || (q.value != "*" && string(args.Peek(q.key)) != q.value) {
				return false
			}
		}
	}
	return true
}

// addrHost returns the host of a "host:port" or "[v6]:port" address, without
// brackets, and a as it is when it has no port. Unlike net.SplitHostPort it
// does not allocate an error for an address without port.
func addrHost(a string) string {
	i := strings.LastIndexByte(a, ':')
	if i < 0 || i+1 == len(a) || strings.Trim(a[i+1:], "0123456789") != "" {
		return a
	}
	host := a[:i]
	if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		return host[1 : len(host)-1]
	}
	if strings.Contains(host, ":") {
		return a // a bare IPv6 address: the last group is not a port
	}
	return host
}

// hostWithoutPort strips a trailing :port (and IPv6 brackets' port).
func hostWithoutPort(h []byte) []byte {
	i := bytes.LastIndexByte(h, ':')
	if i < 0 || bytes.IndexByte(h[i:], ']') >= 0 {
		return h
	}
	return h[:i]
}
