package bench

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// Upstream is a fast HTTP backend: every request gets 200 and a body whose
// size the last path segment gives: "small" 64 bytes, "64k" 65536 bytes, a
// number that many bytes (at most 16 MiB), anything else 64 bytes. Bodies
// are built once per size; serving one allocates nothing. Every response
// may be cached for 5 minutes (Cache-Control), for the cache workload.
type Upstream struct {
	mu     sync.RWMutex
	bodies map[int][]byte
}

// NewUpstream returns an Upstream.
func NewUpstream() *Upstream { return &Upstream{bodies: map[int][]byte{}} }

// maxUpstreamBody bounds the size a request may ask for.
const maxUpstreamBody = 16 << 20

// BodySize returns the body size for a request path.
func BodySize(path []byte) int {
	seg := path
	if i := bytes.LastIndexByte(path, '/'); i >= 0 {
		seg = path[i+1:]
	}
	switch string(seg) {
	case "small":
		return 64
	case "64k":
		return 64 << 10
	}
	if n, err := strconv.Atoi(string(seg)); err == nil && n >= 0 && n <= maxUpstreamBody {
		return n
	}
	return 64
}

func (u *Upstream) body(n int) []byte {
	u.mu.RLock()
	b, ok := u.bodies[n]
	u.mu.RUnlock()
	if ok {
		return b
	}
	b = bytes.Repeat([]byte("0123456789abcdef"), n/16+1)[:n]
	if n > 0 {
		b[n-1] = '\n'
	}
	u.mu.Lock()
	u.bodies[n] = b
	u.mu.Unlock()
	return b
}

var cacheControl, maxAge300 = []byte("Cache-Control"), []byte("public, max-age=300")

// Handle serves one request.
func (u *Upstream) Handle(ctx *fasthttp.RequestCtx) {
	ctx.SetContentType("text/plain")
	ctx.Response.Header.SetBytesKV(cacheControl, maxAge300)
	ctx.SetBody(u.body(BodySize(ctx.Path())))
}

// Server returns a fasthttp server for u, tuned for keep-alive load: no
// Date or Server header work beyond fasthttp's, no idle limit shorter than
// a benchmark run.
func (u *Upstream) Server() *fasthttp.Server {
	return &fasthttp.Server{
		Handler:                       u.Handle,
		Name:                          "bench",
		IdleTimeout:                   5 * time.Minute,
		ReadTimeout:                   5 * time.Minute,
		Concurrency:                   1 << 20,
		NoDefaultDate:                 true,
		DisableHeaderNamesNormalizing: true,
	}
}

// Serve serves u on every listener until ctx ends.
func (u *Upstream) Serve(ctx context.Context, lns ...net.Listener) error {
	errc := make(chan error, len(lns))
	srvs := make([]*fasthttp.Server, len(lns))
	for i, ln := range lns {
		srvs[i] = u.Server()
		go func() { errc <- srvs[i].Serve(ln) }()
	}
	select {
	case <-ctx.Done():
		for _, s := range srvs {
			_ = s.Shutdown()
		}
		return nil
	case err := <-errc:
		return fmt.Errorf("cannot serve: %w", err)
	}
}
