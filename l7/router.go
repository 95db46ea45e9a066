package l7

import (
	"bytes"
	"regexp"
	"strings"

	"github.com/valyala/fasthttp"
)

// router holds the compiled routes of one snapshot, in config order.
type router struct {
	routes []*route
}

// match returns the first route that takes the request, or nil. It does not
// allocate unless a route uses a regular expression.
func (r *router) match(ctx *fasthttp.RequestCtx) *route {
	host := hostWithoutPort(ctx.Request.Header.Host())
	path := ctx.Path()
	for _, rt := range r.routes {
		if rt.matches(ctx, host, path) {
			return rt
		}
	}
	return nil
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
	key   string
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
		h = strings.ToLower(h)
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
		c.headers = append(c.headers, kvMatch{key: k, value: v})
	}
	for k, v := range m.Query {
		c.query = append(c.query, kvMatch{key: k, value: v})
	}
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
		v := ctx.Request.Header.Peek(h.key)
		if v == nil || (h.value != "*" && string(v) != h.value) {
			return false
		}
	}
	if len(m.query) > 0 {
		args := ctx.QueryArgs()
		for _, q := range m.query {
			v := args.Peek(q.key)
			if v == nil || (q.value != "*" && string(v) != q.value) {
				return false
			}
		}
	}
	return true
}

// hostWithoutPort strips a trailing :port (and IPv6 brackets' port).
func hostWithoutPort(h []byte) []byte {
	i := bytes.LastIndexByte(h, ':')
	if i < 0 || bytes.IndexByte(h[i:], ']') >= 0 {
		return h
	}
	return h[:i]
}
