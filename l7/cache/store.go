package cache

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/maypok86/otter/v2"
)

// Config is the cache's global part.
type Config struct {
	// MaxBytes is the byte budget of stored responses, their headers and
	// keys included. Required.
	MaxBytes int64
	// Clock returns the current time; nil: time.Now. Tests inject one.
	Clock func() time.Time
	// Metrics receives the cache's counters; nil: a private set.
	Metrics *metrics.Set
}

// ErrBudget is returned by New for a budget that is not positive.
var ErrBudget = errors.New("cache: max_bytes must be positive")

// Cache stores responses under keys, with their variants, in a byte
// budget. It is safe for concurrent use.
type Cache struct {
	store *otter.Cache[string, *Entry]
	now   func() time.Time

	mu      sync.Mutex
	flights map[string]*Flight

	// Counters, created once; the proxy increments them.
	Hits, Misses, StaleServed, Revalidations, Evictions, Stored, Bypass *metrics.Counter
}

// New makes a cache with an empty store.
func New(cfg Config) (*Cache, error) {
	if cfg.MaxBytes <= 0 {
		return nil, ErrBudget
	}
	c := &Cache{now: cfg.Clock, flights: map[string]*Flight{}}
	if c.now == nil {
		c.now = time.Now
	}
	set := cfg.Metrics
	if set == nil {
		set = metrics.NewSet()
	}
	c.Hits = set.GetOrCreateCounter(`portico_http_cache_hits_total`)
	c.Misses = set.GetOrCreateCounter(`portico_http_cache_misses_total`)
	c.StaleServed = set.GetOrCreateCounter(`portico_http_cache_stale_total`)
	c.Revalidations = set.GetOrCreateCounter(`portico_http_cache_revalidations_total`)
	c.Evictions = set.GetOrCreateCounter(`portico_http_cache_evictions_total`)
	c.Stored = set.GetOrCreateCounter(`portico_http_cache_stores_total`)
	c.Bypass = set.GetOrCreateCounter(`portico_http_cache_bypass_total`)
	store, err := otter.New(&otter.Options[string, *Entry]{
		MaximumWeight: uint64(cfg.MaxBytes),
		Weigher: func(k string, e *Entry) uint32 {
			return uint32(min(int64(len(k))+int64(e.size), 1<<32-1))
		},
		OnAtomicDeletion: func(ev otter.DeletionEvent[string, *Entry]) {
			if ev.WasEvicted() {
				c.Evictions.Inc()
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("cannot create cache store: %w", err)
	}
	c.store = store
	set.GetOrCreateGauge(`portico_http_cache_bytes`, func() float64 { return float64(c.store.WeightedSize()) })
	set.GetOrCreateGauge(`portico_http_cache_objects`, func() float64 { return float64(c.store.EstimatedSize()) })
	return c, nil
}

// Now is the cache's clock.
func (c *Cache) Now() time.Time { return c.now() }

// Get returns the entry stored under key that fits the request header h
// (its Vary fields), or nil. It allocates only for a varying entry.
func (c *Cache) Get(key []byte, h HeaderGetter) *Entry {
	e, ok := c.store.GetIfPresent(b2s(key)) // the store does not keep a looked-up key
	if !ok {
		return nil
	}
	if e.VaryStar {
		return nil
	}
	if e.Vary == nil || e.Status != 0 {
		return e
	}
	// A marker: the response varies; find the variant.
	vk := appendVariant(append(make([]byte, 0, len(key)+64), key...), e.Vary, h)
	v, ok := c.store.GetIfPresent(b2s(vk))
	if !ok || !sameNames(v.Vary, e.Vary) {
		return nil
	}
	return v
}

// Put stores e under key for requests like h. A varying response is stored
// under a variant key, behind a marker at key that lists the fields.
func (c *Cache) Put(key []byte, e *Entry, h HeaderGetter) {
	c.Stored.Inc()
	if len(e.Vary) == 0 {
		c.store.Set(string(key), e)
		return
	}
	marker := &Entry{Vary: e.Vary, size: 64}
	for _, n := range e.Vary {
		marker.size += len(n)
	}
	c.store.Set(string(key), marker)
	c.store.Set(string(appendVariant(append([]byte(nil), key...), e.Vary, h)), e)
}

func sameNames(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// PurgeKey removes what is stored for a URL (as keys spell it, e.g.
// "http://example.com/a?b"), with its methods, header parts and variants;
// it returns how many objects went.
func (c *Cache) PurgeKey(url string) int {
	return c.purge(func(k string) bool { return keyURL(k) == url })
}

// Invalidate removes the object stored under a primary key (as
// KeySpec.Append builds it). Variants behind it become unreachable and are
// evicted in time. It does not scan the store.
func (c *Cache) Invalidate(key []byte) { c.store.Invalidate(b2s(key)) }

// PurgePrefix removes every object whose key starts with prefix.
func (c *Cache) PurgePrefix(prefix string) int {
	return c.purge(func(k string) bool { return strings.HasPrefix(k, prefix) })
}

// PurgeAll empties the cache.
func (c *Cache) PurgeAll() int {
	n := c.store.EstimatedSize()
	c.store.InvalidateAll()
	return n
}

func (c *Cache) purge(match func(string) bool) int {
	var keys []string
	for k := range c.store.Keys() {
		if match(k) {
			keys = append(keys, k)
		}
	}
	for _, k := range keys {
		c.store.Invalidate(k)
	}
	return len(keys)
}

// SetMaxBytes changes the byte budget; stored objects over a smaller one
// are evicted before it returns.
func (c *Cache) SetMaxBytes(n int64) error {
	if n <= 0 {
		return ErrBudget
	}
	c.store.SetMaximum(uint64(n))
	return nil
}

// MaxBytes is the byte budget.
func (c *Cache) MaxBytes() int64 { return int64(c.store.GetMaximum()) }

// WeightedSize is the bytes stored, as the budget counts them.
func (c *Cache) WeightedSize() uint64 { return c.store.WeightedSize() }

// Len is about the number of objects stored.
func (c *Cache) Len() int { return c.store.EstimatedSize() }

// CleanUp runs the store's pending maintenance (evictions).
func (c *Cache) CleanUp() { c.store.CleanUp() }

// Close stops the store's background goroutines.
func (c *Cache) Close() { c.store.StopAllGoroutines() }
