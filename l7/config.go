package l7

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Config is the `[http]` section: the L7 listeners, routes and the settings
// they share.
type Config struct {
	// Listeners accept HTTP or HTTPS connections. At least one is required.
	Listeners []ListenerConfig `toml:"listeners"`
	// Routes are tried in order; the first that matches handles the request.
	Routes []RouteConfig `toml:"routes"`
	// Upstream holds the settings of the HTTP clients that talk to backends.
	Upstream UpstreamConfig `toml:"upstream"`
	// Forwarded controls the X-Forwarded-* and Via headers.
	Forwarded ForwardedConfig `toml:"forwarded"`
	// AccessLog writes one line per request.
	AccessLog AccessLogConfig `toml:"access_log"`
	// Cache is the response cache the routes share (see cacheconfig.go).
	Cache CacheConfig `toml:"cache"`
}

// ListenerConfig is one `[[http.listeners]]` entry.
type ListenerConfig struct {
	// Name labels the listener in logs and metrics. Default: its address.
	Name string `toml:"name"`
	// Address is host:port to listen on. Required.
	Address string `toml:"address"`
	// Certificates turn on TLS termination; the certificate is chosen by SNI
	// (the first one when no name matches). Empty: plain HTTP.
	Certificates []CertificateConfig `toml:"certificates"`
	// HeaderTimeout bounds the time to receive a request's header block; a
	// client that is slower gets 408. Default "10s".
	HeaderTimeout time.Duration `toml:"header_timeout"`
	// BodyTimeout is the longest wait for the next bytes of a request body;
	// a client that is slower gets 408. Default "60s".
	BodyTimeout time.Duration `toml:"body_timeout"`
	// IdleTimeout closes a keep-alive connection idle this long. Default "60s".
	IdleTimeout time.Duration `toml:"idle_timeout"`
	// WriteTimeout bounds writing one response to a client. 0 (default): none,
	// so that large downloads to slow clients are not cut.
	WriteTimeout time.Duration `toml:"write_timeout"`
	// MaxHeaderBytes is the largest request header block; larger gets 431.
	// Default 16384.
	MaxHeaderBytes int `toml:"max_header_bytes"`
	// MaxBodyBytes is the largest request body; larger gets 413. 0: no
	// limit. Default 1073741824 (1 GiB).
	MaxBodyBytes *int64 `toml:"max_body_bytes"`
	// MaxConns is the most client connections open at once, idle ones
	// included; over it a connection gets 503 and is closed. 0: no limit.
	// Default 0.
	MaxConns int `toml:"max_conns"`

	// parking, when set, replaces defaultParking (tests).
	parking *parkPolicy
}

// CertificateConfig names one PEM certificate chain and its key.
type CertificateConfig struct {
	CertFile string `toml:"cert_file"`
	KeyFile  string `toml:"key_file"`
}

// UpstreamConfig configures the fasthttp.HostClient kept for each backend.
type UpstreamConfig struct {
	// ConnectTimeout bounds dialing a backend. Default "2s".
	ConnectTimeout time.Duration `toml:"connect_timeout"`
	// ResponseTimeout bounds waiting for a response header block, and each
	// read of a body. 504 when exceeded. Default "30s".
	ResponseTimeout time.Duration `toml:"response_timeout"`
	// WriteTimeout bounds each write of a request to a backend. Default "30s".
	WriteTimeout time.Duration `toml:"write_timeout"`
	// IdleTimeout closes a kept-alive backend connection idle this long.
	// Default "60s".
	IdleTimeout time.Duration `toml:"idle_timeout"`
	// MaxConns is the most connections to one backend. Default 512.
	MaxConns int `toml:"max_conns"`
	// MaxConnWait is how long a request waits for a free connection when a
	// backend is at MaxConns; then 503. 0: do not wait. Default "1s".
	MaxConnWait *time.Duration `toml:"max_conn_wait"`
	// Retries is how many other backends a request tries after a failed
	// connect (or, for idempotent requests, a failure before any response
	// byte). Default 2.
	Retries *int `toml:"retries"`
	// MaxResponseHeaderBytes is the largest response header block accepted
	// from a backend; larger gets 502. Default 65536.
	MaxResponseHeaderBytes int `toml:"max_response_header_bytes"`
}

// ForwardedConfig controls the proxy headers added to requests.
type ForwardedConfig struct {
	// XForwardedFor appends the client address to X-Forwarded-For. Default true.
	XForwardedFor *bool `toml:"x_forwarded_for"`
	// XForwardedProto sets X-Forwarded-Proto to http or https. Default true.
	XForwardedProto *bool `toml:"x_forwarded_proto"`
	// XForwardedHost sets X-Forwarded-Host to the request's Host. Default true.
	XForwardedHost *bool `toml:"x_forwarded_host"`
	// Via adds "1.1 <via_name>" to Via on requests and responses. Default true.
	Via *bool `toml:"via"`
	// ViaName is the pseudonym used in Via. Default "portico".
	ViaName string `toml:"via_name"`
	// RequestID sets X-Request-Id when the request has none. Default true.
	RequestID *bool `toml:"request_id"`
}

// AccessLogConfig controls the access log.
type AccessLogConfig struct {
	// Enabled turns the access log on. Default false.
	Enabled bool `toml:"enabled"`
	// Format is "common" (Common Log Format) or "json". Default "common".
	Format string `toml:"format"`
	// Path is "stdout", "stderr" or a file path, appended to. Default "stdout".
	Path string `toml:"path"`
}

// RouteConfig is one `[[http.routes]]` entry.
type RouteConfig struct {
	// Name labels the route in logs and metrics. Default "route<index>".
	Name string `toml:"name"`
	// Match selects the requests this route takes. Empty: every request.
	Match MatchConfig `toml:"match"`
	// Pool names the `[pools.NAME]` that serves the route. Required unless
	// Redirect is set.
	Pool string `toml:"pool"`
	// Rewrite changes the path sent upstream.
	Rewrite RewriteConfig `toml:"rewrite"`
	// Redirect answers with a redirect instead of proxying.
	Redirect *RedirectConfig `toml:"redirect"`
	// Headers edits request and response headers.
	Headers HeadersConfig `toml:"headers"`
	// Cache caches the route's responses (see cacheconfig.go).
	Cache RouteCacheConfig `toml:"cache"`
}

// MatchConfig is a route's match; every field set must match.
type MatchConfig struct {
	// Hosts: exact names ("api.example.com") or a leading wildcard
	// ("*.example.com": one or more labels before example.com, so not
	// example.com itself). Case-insensitive; the request's port and a
	// trailing dot are ignored, so a name must not have a port. The host of
	// an absolute-form request target overrides Host. Any of them matches.
	Hosts []string `toml:"hosts"`
	// Path matches the path exactly. Paths are matched, rewritten and sent
	// upstream in normalised form: still percent-encoded (an encoded slash
	// %2F stays encoded), with escaped letters, digits and "-._~" decoded,
	// repeated slashes merged and "." and ".." segments removed, so
	// "/api/../admin" is "/admin" and "/a%20b" stays "/a%20b". The query
	// string is not part of the path.
	Path string `toml:"path"`
	// PathPrefix matches paths that start with it, byte for byte: "/api"
	// also matches "/apis"; write "/api/" to match only below /api.
	PathPrefix string `toml:"path_prefix"`
	// PathRegex matches paths with an RE2 regular expression (unanchored
	// unless it says ^ or $).
	PathRegex string `toml:"path_regex"`
	// Methods: any of them matches. Case-sensitive, as in HTTP.
	Methods []string `toml:"methods"`
	// Headers: each named header (name case-insensitive) must be present
	// with exactly this value (the first, if the header is repeated); "*"
	// means present with any value.
	Headers map[string]string `toml:"headers"`
	// Query: each named query argument must have exactly this value, once
	// decoded; "*" means present with any value, even none ("?debug").
	Query map[string]string `toml:"query"`
}

// RewriteConfig changes the request path before it goes upstream, in this
// order: strip_prefix, then regex/replacement, then add_prefix. It works on
// the normalised, still percent-encoded path (see MatchConfig.Path); the
// query string is kept as it came. A result that does not start with "/"
// gets one.
type RewriteConfig struct {
	// StripPrefix is removed from the start of the path, byte for byte.
	StripPrefix string `toml:"strip_prefix"`
	// Regex is an RE2 expression; every match is replaced by Replacement,
	// which may use $1 or ${name}.
	Regex       string `toml:"regex"`
	Replacement string `toml:"replacement"`
	// AddPrefix is put in front of the path (without doubling a "/").
	AddPrefix string `toml:"add_prefix"`
}

// RedirectConfig answers a route's requests with a redirect. Unset parts of
// the target keep the request's own.
type RedirectConfig struct {
	// Status is 301, 302, 307 or 308. Default 302.
	Status int `toml:"status"`
	// Scheme is "http" or "https".
	Scheme string `toml:"scheme"`
	// Host replaces the request's host (without port).
	Host string `toml:"host"`
	// Port replaces the port; 0 keeps the request's (dropped when the
	// scheme changes, so http->https lands on 443). A scheme's default port
	// (80, 443) is not written.
	Port int `toml:"port"`
	// Path replaces the path; the query string is kept. Unset: the
	// request's normalised path.
	Path string `toml:"path"`
}

// HeadersConfig edits headers; names are case-insensitive, and a set or a
// remove applies to every spelling of the name. Values may hold
// placeholders: {client_ip}, {host} (as the request gave it, lower case,
// with any port), {path} (normalised, still encoded, without query),
// {method}, {scheme}, {request_id}, {route}, {backend} (response only);
// "{{" and "}}" stand for braces. Content-Length and Transfer-Encoding
// cannot be set or added: they frame the message.
type HeadersConfig struct {
	RequestSet     map[string]string `toml:"request_set"`
	RequestAdd     map[string]string `toml:"request_add"`
	RequestRemove  []string          `toml:"request_remove"`
	ResponseSet    map[string]string `toml:"response_set"`
	ResponseAdd    map[string]string `toml:"response_add"`
	ResponseRemove []string          `toml:"response_remove"`
}

// SetDefaults fills unset fields with their defaults.
func (c *Config) SetDefaults() {
	for i := range c.Listeners {
		l := &c.Listeners[i]
		if l.Name == "" {
			l.Name = l.Address
		}
		if l.HeaderTimeout == 0 {
			l.HeaderTimeout = 10 * time.Second
		}
		setDur(&l.IdleTimeout, 60*time.Second)
		setDur(&l.BodyTimeout, 60*time.Second)
		if l.MaxHeaderBytes == 0 {
			l.MaxHeaderBytes = 16 << 10
		}
		if l.MaxBodyBytes == nil {
			gib := int64(1 << 30)
			l.MaxBodyBytes = &gib
		}
	}
	for i := range c.Routes {
		r := &c.Routes[i]
		if r.Name == "" {
			r.Name = "route" + strconv.Itoa(i)
		}
		if r.Redirect != nil && r.Redirect.Status == 0 {
			r.Redirect.Status = 302
		}
		r.Cache.setDefaults()
	}
	c.Cache.setDefaults()
	u := &c.Upstream
	setDur(&u.ConnectTimeout, 2*time.Second)
	setDur(&u.ResponseTimeout, 30*time.Second)
	setDur(&u.WriteTimeout, 30*time.Second)
	setDur(&u.IdleTimeout, 60*time.Second)
	if u.MaxConnWait == nil {
		sec := time.Second
		u.MaxConnWait = &sec
	}
	if u.MaxConns == 0 {
		u.MaxConns = 512
	}
	if u.Retries == nil {
		two := 2
		u.Retries = &two
	}
	if u.MaxResponseHeaderBytes == 0 {
		u.MaxResponseHeaderBytes = 64 << 10
	}
	f := &c.Forwarded
	for _, p := range []**bool{&f.XForwardedFor, &f.XForwardedProto, &f.XForwardedHost, &f.Via, &f.RequestID} {
		if *p == nil {
			t := true
			*p = &t
		}
	}
	if f.ViaName == "" {
		f.ViaName = "portico"
	}
	if c.AccessLog.Format == "" {
		c.AccessLog.Format = "common"
	}
	if c.AccessLog.Path == "" {
		c.AccessLog.Path = "stdout"
	}
}

func setDur(d *time.Duration, def time.Duration) {
	if *d == 0 {
		*d = def
	}
}

// Validate reports every problem in the section. path is the section's name
// in the config file ("http"); pools is the set of defined pool names.
func (c *Config) Validate(path string, pools map[string]bool) error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if len(c.Listeners) == 0 {
		add("%s.listeners: at least one listener is required", path)
	}
	addrs := map[string]int{}
	for i, l := range c.Listeners {
		p := fmt.Sprintf("%s.listeners[%d]", path, i)
		if _, _, err := net.SplitHostPort(l.Address); err != nil || l.Address == "" {
			add("%s.address: want host:port, got %q", p, l.Address)
		}
		if j, dup := addrs[l.Address]; dup && !strings.HasSuffix(l.Address, ":0") {
			add("%s.address: %q is also the address of listeners[%d]", p, l.Address, j)
		}
		addrs[l.Address] = i
		for j, cert := range l.Certificates {
			if cert.CertFile == "" {
				add("%s.certificates[%d].cert_file: required", p, j)
			}
			if cert.KeyFile == "" {
				add("%s.certificates[%d].key_file: required", p, j)
			}
		}
		for _, d := range []struct {
			name string
			v    time.Duration
		}{{"header_timeout", l.HeaderTimeout}, {"body_timeout", l.BodyTimeout}, {"idle_timeout", l.IdleTimeout}, {"write_timeout", l.WriteTimeout}} {
			if d.v < 0 {
				add("%s.%s: must not be negative, got %s", p, d.name, d.v)
			}
		}
		if l.MaxHeaderBytes < 1024 || l.MaxHeaderBytes > 1<<20 {
			add("%s.max_header_bytes: must be 1024 to 1048576, got %d", p, l.MaxHeaderBytes)
		}
		if l.MaxBodyBytes != nil && *l.MaxBodyBytes < 0 {
			add("%s.max_body_bytes: must not be negative, got %d", p, *l.MaxBodyBytes)
		}
		if l.MaxConns < 0 {
			add("%s.max_conns: must not be negative, got %d", p, l.MaxConns)
		}
	}
	names := map[string]int{}
	for i, r := range c.Routes {
		p := fmt.Sprintf("%s.routes[%d]", path, i)
		if j, dup := names[r.Name]; dup {
			add("%s.name: %q is also the name of routes[%d]", p, r.Name, j)
		}
		if r.Name == noRouteName {
			add("%s.name: %q is reserved for requests that no route takes", p, r.Name)
		}
		names[r.Name] = i
		errs = append(errs, r.validate(p, pools)...)
		errs = append(errs, r.Cache.validate(p+".cache", c.Cache.MaxBytes)...)
	}
	errs = append(errs, c.Cache.validate(path+".cache")...)
	u := c.Upstream
	up := path + ".upstream"
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"connect_timeout", u.ConnectTimeout}, {"response_timeout", u.ResponseTimeout}, {"write_timeout", u.WriteTimeout}, {"idle_timeout", u.IdleTimeout}, {"max_conn_wait", derefDur(u.MaxConnWait)}} {
		if d.v < 0 {
			add("%s.%s: must not be negative, got %s", up, d.name, d.v)
		}
	}
	if u.MaxConns < 1 {
		add("%s.max_conns: must be at least 1, got %d", up, u.MaxConns)
	}
	if r := u.Retries; r != nil && (*r < 0 || *r > 10) {
		add("%s.retries: must be 0 to 10, got %d", up, *r)
	}
	if u.MaxResponseHeaderBytes < 1024 {
		add("%s.max_response_header_bytes: must be at least 1024, got %d", up, u.MaxResponseHeaderBytes)
	}
	switch c.AccessLog.Format {
	case "common", "json":
	default:
		add("%s.access_log.format: want \"common\" or \"json\", got %q", path, c.AccessLog.Format)
	}
	return errors.Join(errs...)
}

func (r *RouteConfig) validate(p string, pools map[string]bool) []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	m := r.Match
	for j, h := range m.Hosts {
		switch {
		case h == "" || h == "*." || strings.Contains(h[1:], "*") || (strings.HasPrefix(h, "*") && !strings.HasPrefix(h, "*.")) ||
			strings.ContainsAny(h, "/?#@ \t"):
			add("%s.match.hosts[%d]: want a name or *.suffix, got %q", p, j, h)
		case hasPort(h):
			add("%s.match.hosts[%d]: must not have a port (the request's is ignored), got %q", p, j, h)
		}
	}
	n := 0
	for _, s := range []string{m.Path, m.PathPrefix, m.PathRegex} {
		if s != "" {
			n++
		}
	}
	if n > 1 {
		add("%s.match: set at most one of path, path_prefix and path_regex", p)
	}
	if m.Path != "" && m.Path[0] != '/' {
		add("%s.match.path: must start with /, got %q", p, m.Path)
	} else if m.Path != "" && !isNormalPath([]byte(m.Path)) {
		add("%s.match.path: requests are matched in normal form, so %q never matches; want %q", p, m.Path, appendNormalPath(nil, []byte(m.Path)))
	}
	if m.PathPrefix != "" && m.PathPrefix[0] != '/' {
		add("%s.match.path_prefix: must start with /, got %q", p, m.PathPrefix)
	}
	if m.PathRegex != "" {
		if _, err := regexp.Compile(m.PathRegex); err != nil {
			add("%s.match.path_regex: %v", p, err)
		}
	}
	for j, meth := range m.Methods {
		if !validHeaderName(meth) || strings.ToUpper(meth) != meth {
			add("%s.match.methods[%d]: want an upper-case method, got %q", p, j, meth)
		}
	}
	for _, k := range sortedKeys(m.Headers) {
		if !validHeaderName(k) {
			add("%s.match.headers: %q is not a valid header name", p, k)
		}
	}
	if r.Redirect != nil {
		rd := r.Redirect
		switch rd.Status {
		case 301, 302, 307, 308:
		default:
			add("%s.redirect.status: want 301, 302, 307 or 308, got %d", p, rd.Status)
		}
		if rd.Scheme != "" && rd.Scheme != "http" && rd.Scheme != "https" {
			add("%s.redirect.scheme: want \"http\" or \"https\", got %q", p, rd.Scheme)
		}
		if rd.Port < 0 || rd.Port > 65535 {
			add("%s.redirect.port: must be 0 to 65535, got %d", p, rd.Port)
		}
		if rd.Host != "" && (strings.ContainsAny(rd.Host, "/?#@ \t\\") || hasPort(rd.Host) || hasCTL(rd.Host)) {
			add("%s.redirect.host: want a host name without port, got %q", p, rd.Host)
		}
		switch {
		case rd.Path != "" && rd.Path[0] != '/':
			add("%s.redirect.path: must start with /, got %q", p, rd.Path)
		case strings.HasPrefix(rd.Path, "//"):
			add("%s.redirect.path: must not start with //, got %q", p, rd.Path)
		case strings.ContainsAny(rd.Path, "?# \t") || hasCTL(rd.Path):
			add("%s.redirect.path: must not contain spaces, control characters, ? or #, got %q", p, rd.Path)
		}
		if r.Pool != "" {
			add("%s: set either pool or redirect, not both", p)
		}
	} else if r.Pool == "" {
		add("%s.pool: required (or set redirect)", p)
	} else if !pools[r.Pool] {
		add("%s.pool: pool %q is not defined", p, r.Pool)
	}
	rw := r.Rewrite
	if rw.StripPrefix != "" && rw.StripPrefix[0] != '/' {
		add("%s.rewrite.strip_prefix: must start with /, got %q", p, rw.StripPrefix)
	}
	if rw.AddPrefix != "" && rw.AddPrefix[0] != '/' {
		add("%s.rewrite.add_prefix: must start with /, got %q", p, rw.AddPrefix)
	}
	for _, f := range []struct{ name, v string }{{"add_prefix", rw.AddPrefix}, {"replacement", rw.Replacement}} {
		// They go into the request line as they are.
		if strings.ContainsAny(f.v, "?# \t") || hasCTL(f.v) {
			add("%s.rewrite.%s: must not contain spaces, control characters, ? or #, got %q", p, f.name, f.v)
		}
	}
	if rw.Regex != "" {
		if _, err := regexp.Compile(rw.Regex); err != nil {
			add("%s.rewrite.regex: %v", p, err)
		}
	} else if rw.Replacement != "" {
		add("%s.rewrite.replacement: set only with regex", p)
	}
	h := r.Headers
	for _, set := range []struct {
		name string
		m    map[string]string
	}{{"request_set", h.RequestSet}, {"request_add", h.RequestAdd}, {"response_set", h.ResponseSet}, {"response_add", h.ResponseAdd}} {
		for _, k := range sortedKeys(set.m) {
			if !validHeaderName(k) {
				add("%s.headers.%s: %q is not a valid header name", p, set.name, k)
			}
			if strings.EqualFold(k, "Content-Length") || strings.EqualFold(k, "Transfer-Encoding") {
				add("%s.headers.%s: %q frames the message and cannot be set", p, set.name, k)
			}
			t, err := parseTemplate(set.m[k])
			if err != nil {
				add("%s.headers.%s.%s: %v", p, set.name, k, err)
			} else if strings.HasPrefix(set.name, "request_") && t.has(phBackend) {
				add("%s.headers.%s.%s: {backend} is known only for responses", p, set.name, k)
			}
		}
	}
	for _, rm := range []struct {
		name string
		l    []string
	}{{"request_remove", h.RequestRemove}, {"response_remove", h.ResponseRemove}} {
		for j, k := range rm.l {
			if !validHeaderName(k) {
				add("%s.headers.%s[%d]: %q is not a valid header name", p, rm.name, j, k)
			}
		}
	}
	return errs
}

// noRouteName labels, in metrics, the requests that no route takes.
const noRouteName = "none"

// hasPort reports whether host name h ends in a port: a colon outside the
// brackets of an IPv6 literal.
func hasPort(h string) bool {
	if strings.HasPrefix(h, "[") {
		i := strings.LastIndexByte(h, ']')
		return i >= 0 && strings.Contains(h[i:], ":")
	}
	return strings.Contains(h, ":")
}

func hasCTL(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return true
		}
	}
	return false
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// validHeaderName reports whether s is an RFC 9110 token.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTokenChar(s[i]) {
			return false
		}
	}
	return true
}

func isTokenChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// derefDur is *d, or 0 when d is unset.
func derefDur(d *time.Duration) time.Duration {
	if d == nil {
		return 0
	}
	return *d
}
