package l7

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"testing"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
)

// Benchmarks of a cache hit. Run them with:
//
//	go test ./l7 -run '^$' -bench 'CacheHit' -benchmem

// newCachedBenchServer is newBenchServer with the "api" route cached and
// the backend answering with a 1 KiB body fresh for an hour.
func newCachedBenchServer(b *testing.B) (*Server, *listener) {
	s, l := newBenchServer(b, fmt.Sprintf(benchConfig, "cache = { enabled = true }"))
	ln := fasthttputil.NewInmemoryListener()
	body := make([]byte, 1024)
	backend := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.Set("Cache-Control", "max-age=3600")
		ctx.Response.Header.Set("ETag", `"v1"`)
		ctx.SetBody(body)
	}}
	go backend.Serve(ln) //nolint:errcheck
	b.Cleanup(func() { _ = backend.Shutdown() })
	for _, c := range s.clients {
		c.Dial = func(string) (net.Conn, error) { return ln.Dial() }
	}
	return s, l
}

// BenchmarkCacheHit is the handler answering a GET from the cache: route,
// key, lookup, response from the stored entry, metrics.
func BenchmarkCacheHit(b *testing.B) {
	s, l := newCachedBenchServer(b)
	b.Run("serial", func(b *testing.B) {
		ctx := parsedCtx(b, benchRequest)
		bw := bufio.NewWriter(io.Discard)
		serveOne(b, s, l, ctx, bw, 200) // the miss that stores it
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			serveOne(b, s, l, ctx, bw, 200)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			ctx := parsedCtx(b, benchRequest)
			bw := bufio.NewWriter(io.Discard)
			for pb.Next() {
				serveOne(b, s, l, ctx, bw, 200)
			}
		})
	})
	if h := s.rcache.c.Hits.Get(); h == 0 {
		b.Fatal("no cache hits")
	}
}

// BenchmarkCacheHitInMemory is the whole path for a hit: a fasthttp client,
// the proxy's listener and handler, over an in-memory pipe; the backend is
// asked once.
func BenchmarkCacheHitInMemory(b *testing.B) {
	s, l := newCachedBenchServer(b)
	c := inMemoryClient(b, l)
	getInParallel(b, c, 1024)
	b.StopTimer()
	if m := s.rcache.c.Misses.Get(); m > 2 {
		b.Errorf("misses: got %d; want 1", m)
	}
}
