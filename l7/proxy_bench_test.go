package l7

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"portico/lb"
)

// Benchmarks of the request path. Run them with, for example:
//
//	go test ./l7 -run '^$' -bench 'Serve|ProxyInMemory|RouterMatch' -benchmem
//
// and see where allocations come from with:
//
//	go test ./l7 -run '^$' -bench 'Serve$' -memprofile mem.out
//	go tool pprof -sample_index=alloc_objects -top l7.test mem.out

// benchRequest is a plain GET as a browser-like client sends it.
const benchRequest = "GET /api/users?id=7 HTTP/1.1\r\nHost: shop.example.com\r\nUser-Agent: bench/1.0\r\n" +
	"Accept: */*\r\nAccept-Encoding: gzip\r\nConnection: keep-alive"

// benchConfig has a few routes in front of the one that takes benchRequest,
// with the default forwarded headers.
const benchConfig = `
[http]
[[http.listeners]]
address = "127.0.0.1:0"
[[http.routes]]
match = { hosts = ["admin.example.com"] }
pool = "web"
[[http.routes]]
match = { path_prefix = "/static/" }
pool = "web"
[[http.routes]]
name = "api"
match = { hosts = ["*.example.com"], path_prefix = "/api/", methods = ["GET", "POST"] }
pool = "web"
%s
[pools.web]
backends = [{ address = "inmem:1" }, { address = "inmem:2" }]
`

// newBenchServer builds, but does not start, a server from tomlText whose
// backends all answer from one in-memory fasthttp server, and returns it
// with its first listener.
func newBenchServer(b *testing.B, tomlText string) (*Server, *listener) {
	b.Helper()
	var tc testConfig
	if _, err := toml.Decode(tomlText, &tc); err != nil {
		b.Fatal(err)
	}
	tc.HTTP.SetDefaults()
	pools := map[string]*lb.Pool{}
	names := map[string]bool{}
	for name, pc := range tc.Pools {
		pc.SetDefaults()
		p, err := lb.NewPool(name, pc)
		if err != nil {
			b.Fatal(err)
		}
		pools[name], names[name] = p, true
	}
	if err := tc.HTTP.Validate("http", names); err != nil {
		b.Fatal(err)
	}
	s, err := New(tc.HTTP, pools, slog.New(slog.NewTextHandler(io.Discard, nil)), metrics.NewSet())
	if err != nil {
		b.Fatal(err)
	}
	ln := fasthttputil.NewInmemoryListener()
	backend := &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {
			ctx.Response.Header.Set("Cache-Control", "no-store")
			ctx.SetBodyString("hello, world")
		},
	}
	go backend.Serve(ln) //nolint:errcheck
	b.Cleanup(func() { _ = backend.Shutdown() })
	for _, c := range s.clients {
		c.Dial = func(string) (net.Conn, error) { return ln.Dial() }
	}
	return s, s.listeners[0]
}

// serveOne runs one request through the handler and writes the response as
// the listener would, which drains and closes the streamed backend body.
func serveOne(b *testing.B, s *Server, l *listener, ctx *fasthttp.RequestCtx, bw *bufio.Writer, status int) {
	s.serve(ctx, l)
	if code := ctx.Response.StatusCode(); code != status {
		b.Fatalf("got status %d; want %d: %s", code, status, ctx.Response.Body())
	}
	if err := ctx.Response.Write(bw); err != nil {
		b.Fatal(err)
	}
	_ = bw.Flush()
	ctx.Response.Reset()
	// What the listener does after writing: close the request's io.Closer
	// user values (the held backend lease).
	ctx.Request.ResetUserValues()
}

// BenchmarkServe is the proxy's handler for a plain GET: route, build the
// upstream request, exchange it with an in-memory backend, clean the
// response, count metrics. The allocations it reports are fasthttp's and the
// in-memory pipe's, not portico's (see the memprofile command above).
func BenchmarkServe(b *testing.B) {
	for _, tc := range []struct {
		name, extra string
		status      int
	}{
		{"plain", ``, 200},
		{"headers", `headers = { request_set = { "X-Route" = "{route}", "X-Client" = "{client_ip}" }, response_set = { "X-Served-By" = "{backend}" }, response_remove = ["Cache-Control"] }`, 200},
		{"rewrite", `rewrite = { strip_prefix = "/api", add_prefix = "/v2" }`, 200},
		{"access-log", ``, 200},
		{"redirect", `redirect = { scheme = "https", port = 8443 }`, 302},
	} {
		b.Run(tc.name, func(b *testing.B) {
			cfg := fmt.Sprintf(benchConfig, tc.extra)
			if tc.name == "access-log" {
				cfg = strings.Replace(cfg, "[http]\n", fmt.Sprintf("[http]\naccess_log = { enabled = true, format = \"json\", path = %q }\n", filepath.Join(b.TempDir(), "access.log")), 1)
			}
			if tc.status != 200 {
				cfg = strings.Replace(cfg, "pool = \"web\"\nredirect", "redirect", 1)
			}
			s, l := newBenchServer(b, cfg)
			b.Run("serial", func(b *testing.B) {
				ctx := parsedCtx(b, benchRequest)
				bw := bufio.NewWriter(io.Discard)
				serveOne(b, s, l, ctx, bw, tc.status) // warm the pools and the backend connection
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					serveOne(b, s, l, ctx, bw, tc.status)
				}
			})
			b.Run("parallel", func(b *testing.B) {
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					ctx := parsedCtx(b, benchRequest)
					bw := bufio.NewWriter(io.Discard)
					for pb.Next() {
						serveOne(b, s, l, ctx, bw, tc.status)
					}
				})
			})
		})
	}
}

// inMemoryClient serves l on an in-memory listener until the benchmark ends
// and returns a client for it, for requests to http://shop.example.com/.
func inMemoryClient(b *testing.B, l *listener) *fasthttp.HostClient {
	ln := fasthttputil.NewInmemoryListener()
	go l.srv.Serve(ln) //nolint:errcheck
	b.Cleanup(func() { _ = l.srv.Shutdown() })
	return &fasthttp.HostClient{Addr: "shop.example.com", Dial: func(string) (net.Conn, error) { return ln.Dial() }, MaxConns: 1024}
}

// BenchmarkProxyInMemory is the whole path: a fasthttp client, the proxy's
// listener, the handler, the backend, over in-memory pipes.
func BenchmarkProxyInMemory(b *testing.B) {
	_, l := newBenchServer(b, fmt.Sprintf(benchConfig, ""))
	c := inMemoryClient(b, l)
	getInParallel(b, c, -1)
}

// BenchmarkRouterMatch times picking a route; the route that matches comes
// after others that do not, as in a real config.
func BenchmarkRouterMatch(b *testing.B) {
	for _, tc := range []struct {
		name string
		m    MatchConfig
		req  string
	}{
		{"exact", MatchConfig{Path: "/api/users"}, "GET /api/users?id=7 HTTP/1.1\r\nHost: shop.example.com"},
		{"prefix", MatchConfig{PathPrefix: "/api/"}, "GET /api/users?id=7 HTTP/1.1\r\nHost: shop.example.com"},
		{"host-wildcard", MatchConfig{Hosts: []string{"*.example.com"}}, "GET /api/users HTTP/1.1\r\nHost: Shop.Example.com:8080"},
		{"regex", MatchConfig{PathRegex: `^/api/users/[0-9]+$`}, "GET /api/users/42 HTTP/1.1\r\nHost: shop.example.com"},
		{"header", MatchConfig{Headers: map[string]string{"X-Api-Version": "2"}}, "GET /api/users HTTP/1.1\r\nHost: shop.example.com\r\nAccept: */*\r\nx-api-version: 2"},
		{"path-not-normal", MatchConfig{PathPrefix: "/api/"}, "GET /static/../api//users HTTP/1.1\r\nHost: shop.example.com"},
	} {
		for _, n := range []int{1, 10} {
			b.Run(fmt.Sprintf("%s/routes=%d", tc.name, n), func(b *testing.B) {
				var ms []namedMatch
				for i := 1; i < n; i++ { // routes that do not match, before the one that does
					ms = append(ms, namedMatch{fmt.Sprint(i), MatchConfig{Hosts: []string{fmt.Sprintf("h%d.test", i)}, PathPrefix: fmt.Sprintf("/p%d/", i)}})
				}
				r := testRouter(append(ms, namedMatch{"it", tc.m})...)
				if rt := r.match(parsedCtx(b, tc.req)); rt == nil || rt.name != "it" {
					b.Fatalf("got %v; want the last route", rt)
				}
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					ctx := parsedCtx(b, tc.req)
					for pb.Next() {
						if r.match(ctx) == nil {
							b.Fatal("no match")
						}
					}
				})
			})
		}
	}
}

// BenchmarkPrepare is building the upstream request alone: hop-by-hop and
// forwarded headers, request ID, path. "odd-case" has names in the case
// some clients send them, which costs extra passes over the header block.
func BenchmarkPrepare(b *testing.B) {
	for _, tc := range []struct{ name, req string }{
		{"canonical", benchRequest},
		{"odd-case", "GET /api/users?id=7 HTTP/1.1\r\nhost: shop.example.com\r\nuser-agent: bench/1.0\r\naccept: */*\r\n" +
			"connection: keep-alive\r\nx-forwarded-for: 203.0.113.9\r\nsec-fetch-mode: cors"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			s, l := newBenchServer(b, fmt.Sprintf(benchConfig, ""))
			ctx := parsedCtx(b, tc.req)
			snap := s.snap.Load()
			rt := snap.router.match(ctx)
			if rt == nil {
				b.Fatal("no route")
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				st := acquireState()
				s.prepare(ctx, l, snap, rt, st)
				releaseState(st)
			}
		})
	}
}

// getInParallel GETs http://shop.example.com/api/users?id=7 through c from
// parallel goroutines, failing on anything but 200 and, when bodyLen >= 0,
// a body of that length.
func getInParallel(b *testing.B, c *fasthttp.HostClient, bodyLen int) {
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		for pb.Next() {
			req.SetRequestURI("http://shop.example.com/api/users?id=7")
			if err := c.Do(req, resp); err != nil {
				b.Fatal(err)
			}
			if resp.StatusCode() != fasthttp.StatusOK || bodyLen >= 0 && len(resp.Body()) != bodyLen {
				b.Fatalf("got status %d, %d bytes; want 200, %d", resp.StatusCode(), len(resp.Body()), bodyLen)
			}
		}
	})
}
