package l7

import (
	"fmt"
	"net/textproto"
	"strings"
	"time"

	"portico/l7/cache"
)

// CacheConfig is the `[http.cache]` section: the one response cache that
// the routes with `[http.routes.cache] enabled = true` share.
type CacheConfig struct {
	// MaxBytes is the memory budget of stored responses (bodies, headers
	// and keys). Default 268435456 (256 MiB). A reload resizes the cache;
	// a smaller budget evicts at once.
	MaxBytes int64 `toml:"max_bytes"`
	// HeuristicFraction of the time since Last-Modified is the freshness
	// lifetime of a response that states none (RFC 9111 section 4.2.2);
	// 0 turns heuristic freshness off. 0 to 1. Default 0.1.
	HeuristicFraction *float64 `toml:"heuristic_fraction"`
	// HeuristicMax caps a heuristic lifetime. Default "24h".
	HeuristicMax time.Duration `toml:"heuristic_max"`
	// LockTimeout is how long concurrent misses on one key wait for the one
	// request that went upstream before going upstream themselves.
	// Default "5s".
	LockTimeout time.Duration `toml:"lock_timeout"`
	// StatusHeader names the response header that says HIT, MISS or STALE;
	// "" sends none. Default "X-Cache".
	StatusHeader *string `toml:"status_header"`
	// Name identifies this cache in the Cache-Status header (RFC 9211) and
	// in Surrogate-Control targets (advertised upstream as
	// Surrogate-Capability); "" sends neither. Default "portico".
	Name *string `toml:"name"`
	// Clock is the cache's time source, read when the cache is made; nil:
	// time.Now. Not in the file: tests inject one.
	Clock func() time.Time `toml:"-"`
}

// RouteCacheConfig is a route's `[http.routes.cache]`.
type RouteCacheConfig struct {
	// Enabled caches the route's GET and HEAD responses. Default false.
	Enabled bool `toml:"enabled"`
	// Key lists the request parts of the cache key: "method", "scheme",
	// "host", "path", "query" and "header:NAME". Default ["scheme",
	// "host", "path", "query"].
	Key []string `toml:"key"`
	// DefaultTTL is the freshness lifetime of a response that states none
	// (no Cache-Control max-age or s-maxage, no Expires) and has no
	// Last-Modified for a heuristic. "0s": such responses are stored only
	// with a validator, and revalidated before each use. Default "0s".
	DefaultTTL time.Duration `toml:"default_ttl"`
	// MaxObjectBytes is the largest body stored, with Content-Length or
	// chunked; a body streams to the client as it is stored, and one that
	// turns out larger streams through unstored. Default 8388608 (8 MiB).
	MaxObjectBytes int64 `toml:"max_object_bytes"`
	// StoreSetCookie lets responses with Set-Cookie be stored (and the
	// cookie served to everyone). Default false.
	StoreSetCookie bool `toml:"store_set_cookie"`
}

func (c *CacheConfig) setDefaults() {
	if c.MaxBytes == 0 {
		c.MaxBytes = 256 << 20
	}
	if c.HeuristicFraction == nil {
		f := 0.1
		c.HeuristicFraction = &f
	}
	setDur(&c.HeuristicMax, 24*time.Hour)
	setDur(&c.LockTimeout, 5*time.Second)
	if c.StatusHeader == nil {
		h := "X-Cache"
		c.StatusHeader = &h
	}
	if c.Name == nil {
		n := "portico"
		c.Name = &n
	}
}

func (c *CacheConfig) validate(p string) []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.MaxBytes < 1<<20 {
		add("%s.max_bytes: must be at least 1048576, got %d", p, c.MaxBytes)
	}
	if f := c.HeuristicFraction; f != nil && (*f < 0 || *f > 1) {
		add("%s.heuristic_fraction: must be 0 to 1, got %v", p, *f)
	}
	if c.HeuristicMax < 0 {
		add("%s.heuristic_max: must not be negative, got %s", p, c.HeuristicMax)
	}
	if c.LockTimeout < 0 {
		add("%s.lock_timeout: must not be negative, got %s", p, c.LockTimeout)
	}
	if h := c.StatusHeader; h != nil && *h != "" && !validHeaderName(*h) {
		add("%s.status_header: %q is not a valid header name", p, *h)
	}
	if n := c.Name; n != nil && *n != "" && !validHeaderName(*n) {
		add("%s.name: want a token, got %q", p, *n)
	}
	return errs
}

func (r *RouteCacheConfig) setDefaults() {
	if r.Key == nil {
		r.Key = []string{"scheme", "host", "path", "query"}
	}
	if r.MaxObjectBytes == 0 {
		r.MaxObjectBytes = 8 << 20
	}
}

func (r *RouteCacheConfig) validate(p string, budget int64) []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if _, err := keySpec(r.Key); err != nil && (r.Enabled || r.Key != nil) {
		add("%s.key: %v", p, err)
	}
	if r.DefaultTTL < 0 {
		add("%s.default_ttl: must not be negative, got %s", p, r.DefaultTTL)
	}
	if r.MaxObjectBytes < 0 {
		add("%s.max_object_bytes: must not be negative, got %d", p, r.MaxObjectBytes)
	} else if budget > 0 && r.MaxObjectBytes > budget/2 {
		add("%s.max_object_bytes: must be at most half of http.cache.max_bytes (%d), got %d", p, budget/2, r.MaxObjectBytes)
	}
	return errs
}

// keySpec compiles a route's key parts.
func keySpec(parts []string) (cache.KeySpec, error) {
	var k cache.KeySpec
	if len(parts) == 0 {
		return k, fmt.Errorf("want at least one part")
	}
	seen := map[string]bool{}
	for i, part := range parts {
		if seen[part] {
			return k, fmt.Errorf("[%d]: %q is listed twice", i, part)
		}
		seen[part] = true
		switch {
		case part == "method":
			k.Method = true
		case part == "scheme":
			k.Scheme = true
		case part == "host":
			k.Host = true
		case part == "path":
			k.Path = true
		case part == "query":
			k.Query = true
		case strings.HasPrefix(part, "header:") && validHeaderName(part[len("header:"):]):
			k.Headers = append(k.Headers, textproto.CanonicalMIMEHeaderKey(part[len("header:"):]))
		default:
			return k, fmt.Errorf("[%d]: want method, scheme, host, path, query or header:NAME, got %q", i, part)
		}
	}
	return k, nil
}
