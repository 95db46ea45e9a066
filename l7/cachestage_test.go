package l7

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/VictoriaMetrics/metrics"

	"portico/lb"
)

// fakeClock is the cache's injected clock: tests move time instead of
// sleeping.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// origin is a backend whose answer the test sets per request.
type origin struct {
	clock   *fakeClock // the origin's Date agrees with the cache's clock
	hits    atomic.Int64
	mu      sync.Mutex
	handler http.HandlerFunc
	lastReq *http.Request
}

func (o *origin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	o.hits.Add(1)
	o.mu.Lock()
	h := o.handler
	o.lastReq = r
	o.mu.Unlock()
	if o.clock != nil {
		w.Header().Set("Date", o.clock.Now().UTC().Format(http.TimeFormat))
	}
	h(w, r)
}

func (o *origin) set(h http.HandlerFunc) { o.mu.Lock(); o.handler = h; o.mu.Unlock() }

func (o *origin) last() *http.Request { o.mu.Lock(); defer o.mu.Unlock(); return o.lastReq }

// answer is an origin handler that sends the given header pairs and body.
func answer(status int, body string, kv ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i < len(kv); i += 2 {
			w.Header().Add(kv[i], kv[i+1])
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

// startCacheProxy starts a proxy with one cached route in front of a
// fresh origin, with the cache on clock; extra goes into the route's
// [http.routes.cache] table, global into [http.cache].
func startCacheProxy(t testing.TB, clock *fakeClock, global, extra string) (*Server, *origin) {
	t.Helper()
	o := &origin{clock: clock, handler: answer(200, "hello", "Cache-Control", "max-age=60")}
	be := startBackend(t, o)
	text := fmt.Sprintf(`
[http]
[[http.listeners]]
address = "127.0.0.1:0"
[http.cache]
%s
[[http.routes]]
name = "cached"
pool = "web"
[http.routes.cache]
enabled = true
%s
[pools.web]
backends = [{ address = %q }]
`, global, extra, be)
	var tc testConfig
	md, err := toml.Decode(text, &tc)
	if err != nil {
		t.Fatal(err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		t.Fatalf("unknown config keys: %v", und)
	}
	tc.HTTP.SetDefaults()
	if clock != nil {
		tc.HTTP.Cache.Clock = clock.Now
	}
	pools := map[string]*lb.Pool{}
	for name, pc := range tc.Pools {
		pc.SetDefaults()
		p, err := lb.NewPool(name, pc)
		if err != nil {
			t.Fatal(err)
		}
		pools[name] = p
	}
	if err := tc.HTTP.Validate("http", map[string]bool{"web": true}); err != nil {
		t.Fatal(err)
	}
	s, err := New(tc.HTTP, pools, slog.New(slog.NewTextHandler(io.Discard, nil)), metrics.NewSet())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	return s, o
}

var cacheClient = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 200}}

// get sends a request with header pairs kv and returns the response, body
// read.
func get(t testing.TB, s *Server, method, path string, kv ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+s.addr()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(kv); i += 2 {
		req.Header.Add(kv[i], kv[i+1])
	}
	resp, err := cacheClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// step is one request of a scenario and what it must see.
type step struct {
	advance time.Duration // move the cache clock first
	method  string        // default GET
	path    string        // default /r
	header  []string
	origin  http.HandlerFunc // set the origin's answer first
	status  int              // default 200
	xcache  string           // "" not checked
	body    string           // "" not checked
	hits    int64            // origin requests so far; -1 not checked
	check   func(t *testing.T, resp *http.Response, o *origin)
}

func runSteps(t *testing.T, global, extra string, steps []step) {
	t.Helper()
	clock := &fakeClock{t: time.Now()}
	s, o := startCacheProxy(t, clock, global, extra)
	for i, st := range steps {
		clock.Advance(st.advance)
		if st.origin != nil {
			o.set(st.origin)
		}
		method, path, status := st.method, st.path, st.status
		if method == "" {
			method = "GET"
		}
		if path == "" {
			path = "/r"
		}
		if status == 0 {
			status = 200
		}
		resp, body := get(t, s, method, path, st.header...)
		if resp.StatusCode != status {
			t.Errorf("step %d: status: got %d; want %d", i, resp.StatusCode, status)
		}
		if got := resp.Header.Get("X-Cache"); st.xcache != "" && got != st.xcache {
			t.Errorf("step %d: X-Cache: got %q; want %q (Cache-Status %q)", i, got, st.xcache, resp.Header.Get("Cache-Status"))
		}
		if st.body != "" && body != st.body {
			t.Errorf("step %d: body: got %q; want %q", i, body, st.body)
		}
		if got := o.hits.Load(); st.hits >= 0 && got != st.hits {
			t.Errorf("step %d: origin requests: got %d; want %d", i, got, st.hits)
		}
		if st.check != nil {
			st.check(t, resp, o)
		}
	}
}

func TestCacheDirectives(t *testing.T) {
	ok := func(kv ...string) http.HandlerFunc { return answer(200, "v1", kv...) }
	cases := []struct {
		name          string
		global, extra string
		steps         []step
	}{
		{name: "max-age fresh then stale", steps: []step{
			{origin: ok("Cache-Control", "max-age=100"), xcache: "MISS", hits: 1},
			{advance: 50 * time.Second, xcache: "HIT", body: "v1", hits: 1},
			{advance: 60 * time.Second, origin: answer(200, "v2", "Cache-Control", "max-age=100"), xcache: "MISS", body: "v2", hits: 2},
			{xcache: "HIT", body: "v2", hits: 2},
		}},
		{name: "no-store", steps: []step{
			{origin: ok("Cache-Control", "no-store, max-age=100"), xcache: "MISS", hits: 1},
			{xcache: "MISS", hits: 2},
		}},
		{name: "private", steps: []step{
			{origin: ok("Cache-Control", "private, max-age=100"), xcache: "MISS", hits: 1},
			{xcache: "MISS", hits: 2},
		}},
		{name: "s-maxage over max-age", steps: []step{
			{origin: ok("Cache-Control", "max-age=1000, s-maxage=10"), hits: 1},
			{advance: 5 * time.Second, xcache: "HIT", hits: 1},
			{advance: 20 * time.Second, xcache: "MISS", hits: 2},
		}},
		{name: "Expires", steps: []step{
			{origin: func(w http.ResponseWriter, r *http.Request) {
				now := time.Now().UTC()
				w.Header().Set("Date", now.Format(http.TimeFormat))
				w.Header().Set("Expires", now.Add(100*time.Second).Format(http.TimeFormat))
				io.WriteString(w, "v1")
			}, hits: 1},
			{advance: 10 * time.Second, xcache: "HIT", hits: 1},
			{advance: 200 * time.Second, xcache: "MISS", hits: 2},
		}},
		{name: "invalid Expires is stale", steps: []step{
			{origin: ok("Expires", "0", "ETag", `"e"`), hits: 1},
			{origin: answer(304, "", "ETag", `"e"`), xcache: "HIT", body: "v1", hits: 2},
		}},
		{name: "heuristic from Last-Modified", global: "heuristic_fraction = 0.1", steps: []step{
			{origin: ok("Last-Modified", time.Now().Add(-1000*time.Second).UTC().Format(http.TimeFormat)), hits: 1},
			{advance: 50 * time.Second, xcache: "HIT", hits: 1},
			{advance: 100 * time.Second, origin: answer(304, ""), xcache: "HIT", hits: 2, check: func(t *testing.T, _ *http.Response, o *origin) {
				if o.last().Header.Get("If-Modified-Since") == "" {
					t.Error("revalidation without If-Modified-Since")
				}
			}},
		}},
		{name: "no heuristic when off", global: "heuristic_fraction = 0.0", steps: []step{
			{origin: ok("Last-Modified", time.Now().Add(-1000*time.Second).UTC().Format(http.TimeFormat)), hits: 1},
			{advance: time.Second, origin: answer(304, ""), xcache: "HIT", hits: 2},
		}},
		{name: "default ttl", extra: `default_ttl = "30s"`, steps: []step{
			{origin: ok(), hits: 1},
			{advance: 10 * time.Second, xcache: "HIT", hits: 1},
			{advance: 30 * time.Second, xcache: "MISS", hits: 2},
		}},
		{name: "no default ttl: not stored", steps: []step{
			{origin: ok(), hits: 1},
			{xcache: "MISS", hits: 2},
		}},
		{name: "response no-cache revalidates with ETag", steps: []step{
			{origin: ok("Cache-Control", "no-cache", "ETag", `"a"`), xcache: "MISS", hits: 1},
			{origin: answer(304, "", "ETag", `"a"`), xcache: "HIT", body: "v1", hits: 2, check: func(t *testing.T, _ *http.Response, o *origin) {
				if got := o.last().Header.Get("If-None-Match"); got != `"a"` {
					t.Errorf("If-None-Match: got %q; want %q", got, `"a"`)
				}
			}},
		}},
		{name: "304 refreshes headers", steps: []step{
			{origin: ok("Cache-Control", "max-age=10", "ETag", `"a"`, "X-V", "1"), hits: 1},
			{advance: 20 * time.Second, origin: answer(304, "", "Cache-Control", "max-age=100", "X-V", "2"), hits: 2, check: func(t *testing.T, r *http.Response, _ *origin) {
				if r.Header.Get("X-V") != "2" {
					t.Errorf("X-V: got %q; want 2", r.Header.Get("X-V"))
				}
			}},
			{advance: 50 * time.Second, xcache: "HIT", body: "v1", hits: 2, check: func(t *testing.T, r *http.Response, _ *origin) {
				if r.Header.Get("X-V") != "2" {
					t.Errorf("X-V: got %q; want 2", r.Header.Get("X-V"))
				}
			}},
		}},
		{name: "changed on revalidation", steps: []step{
			{origin: ok("Cache-Control", "max-age=10", "ETag", `"a"`), hits: 1},
			{advance: 20 * time.Second, origin: answer(200, "v2", "Cache-Control", "max-age=10", "ETag", `"b"`), body: "v2", hits: 2},
			{xcache: "HIT", body: "v2", hits: 2},
		}},
		{name: "must-revalidate beats max-stale", steps: []step{
			{origin: ok("Cache-Control", "max-age=10, must-revalidate"), hits: 1},
			{advance: 20 * time.Second, header: []string{"Cache-Control", "max-stale=100"}, xcache: "MISS", hits: 2},
		}},
		{name: "proxy-revalidate beats max-stale", steps: []step{
			{origin: ok("Cache-Control", "max-age=10, proxy-revalidate"), hits: 1},
			{advance: 20 * time.Second, header: []string{"Cache-Control", "max-stale=100"}, xcache: "MISS", hits: 2},
		}},
		{name: "request max-stale", steps: []step{
			{origin: ok("Cache-Control", "max-age=10"), hits: 1},
			{advance: 20 * time.Second, header: []string{"Cache-Control", "max-stale=100"}, xcache: "STALE", hits: 1},
			{header: []string{"Cache-Control", "max-stale=5"}, xcache: "MISS", hits: 2},
		}},
		{name: "request no-cache", steps: []step{
			{origin: ok("Cache-Control", "max-age=100"), hits: 1},
			{header: []string{"Cache-Control", "no-cache"}, xcache: "MISS", hits: 2},
		}},
		{name: "request Pragma no-cache", steps: []step{
			{origin: ok("Cache-Control", "max-age=100"), hits: 1},
			{header: []string{"Pragma", "no-cache"}, xcache: "MISS", hits: 2},
		}},
		{name: "request max-age", steps: []step{
			{origin: ok("Cache-Control", "max-age=100"), hits: 1},
			{advance: 30 * time.Second, header: []string{"Cache-Control", "max-age=40"}, xcache: "HIT", hits: 1},
			{header: []string{"Cache-Control", "max-age=20"}, xcache: "MISS", hits: 2},
		}},
		{name: "request min-fresh", steps: []step{
			{origin: ok("Cache-Control", "max-age=100"), hits: 1},
			{advance: 50 * time.Second, header: []string{"Cache-Control", "min-fresh=40"}, xcache: "HIT", hits: 1},
			{header: []string{"Cache-Control", "min-fresh=60"}, xcache: "MISS", hits: 2},
		}},
		{name: "only-if-cached", steps: []step{
			{header: []string{"Cache-Control", "only-if-cached"}, status: 504, hits: 0},
			{origin: ok("Cache-Control", "max-age=100"), hits: 1},
			{header: []string{"Cache-Control", "only-if-cached"}, xcache: "HIT", hits: 1},
		}},
		{name: "Age carried and grown", steps: []step{
			{origin: ok("Cache-Control", "max-age=100", "Age", "30"), hits: 1},
			{advance: 10 * time.Second, xcache: "HIT", hits: 1, check: func(t *testing.T, r *http.Response, _ *origin) {
				if a := r.Header.Get("Age"); a != "40" && a != "41" {
					t.Errorf("Age: got %q; want 40", a)
				}
			}},
			{advance: 70 * time.Second, xcache: "MISS", hits: 2},
		}},
		{name: "Vary", steps: []step{
			{header: []string{"Accept-Encoding", "gzip"}, origin: ok("Cache-Control", "max-age=100", "Vary", "Accept-Encoding"), hits: 1},
			{header: []string{"Accept-Encoding", "gzip"}, xcache: "HIT", hits: 1},
			{header: []string{"Accept-Encoding", "br"}, xcache: "MISS", hits: 2},
			{header: []string{"Accept-Encoding", "br"}, xcache: "HIT", hits: 2},
			{header: []string{"Accept-Encoding", "gzip"}, xcache: "HIT", hits: 2},
		}},
		{name: "Vary star", steps: []step{
			{origin: ok("Cache-Control", "max-age=100", "Vary", "*"), hits: 1},
			{xcache: "MISS", hits: 2},
		}},
		{name: "Authorization", steps: []step{
			{header: []string{"Authorization", "Bearer x"}, origin: ok("Cache-Control", "max-age=100"), hits: 1},
			{header: []string{"Authorization", "Bearer x"}, xcache: "MISS", hits: 2},
			{path: "/p", header: []string{"Authorization", "Bearer x"}, origin: ok("Cache-Control", "max-age=100, public"), hits: 3},
			{path: "/p", header: []string{"Authorization", "Bearer x"}, xcache: "HIT", hits: 3},
		}},
		{name: "client conditional answered from cache", steps: []step{
			{origin: ok("Cache-Control", "max-age=100", "ETag", `"a"`), hits: 1},
			{header: []string{"If-None-Match", `"a"`}, status: 304, xcache: "HIT", hits: 1},
			{header: []string{"If-None-Match", `"b"`}, status: 200, body: "v1", hits: 1},
		}},
		{name: "client conditional on a miss", steps: []step{
			{header: []string{"If-None-Match", `"a"`}, origin: ok("Cache-Control", "max-age=100", "ETag", `"a"`), status: 304, hits: 1},
			{body: "v1", xcache: "HIT", hits: 1},
		}},
		{name: "stale-while-revalidate", steps: []step{
			{origin: ok("Cache-Control", "max-age=10, stale-while-revalidate=100", "ETag", `"a"`), hits: 1},
			{advance: 20 * time.Second, origin: answer(304, "", "Cache-Control", "max-age=10, stale-while-revalidate=100", "ETag", `"a"`), xcache: "STALE", body: "v1", hits: -1},
		}},
		{name: "stale-if-error", steps: []step{
			{origin: ok("Cache-Control", "max-age=10, stale-if-error=100"), hits: 1},
			{advance: 20 * time.Second, origin: answer(500, "boom"), xcache: "STALE", body: "v1", hits: 2},
			{advance: 200 * time.Second, status: 500, body: "boom", hits: 3},
		}},
		{name: "request stale-if-error", steps: []step{
			{origin: ok("Cache-Control", "max-age=10", "ETag", `"a"`), hits: 1},
			{advance: 20 * time.Second, origin: answer(503, "down"), header: []string{"Cache-Control", "stale-if-error=60"}, xcache: "STALE", body: "v1", hits: 2},
		}},
		{name: "unsafe method invalidates", steps: []step{
			{origin: ok("Cache-Control", "max-age=100"), hits: 1},
			{path: "/other", origin: ok("Cache-Control", "max-age=100"), hits: 2},
			{xcache: "HIT", hits: 2},
			{method: "POST", origin: answer(200, "posted", "Location", "/other"), hits: 3},
			{origin: ok("Cache-Control", "max-age=100"), xcache: "MISS", hits: 4},
			{path: "/other", xcache: "MISS", hits: 5},
		}},
		{name: "failed unsafe method keeps", steps: []step{
			{origin: ok("Cache-Control", "max-age=100"), hits: 1},
			{method: "DELETE", origin: answer(500, "no"), status: 500, hits: 2},
			{xcache: "HIT", hits: 2},
		}},
		{name: "HEAD from cached GET", steps: []step{
			{origin: ok("Cache-Control", "max-age=100"), hits: 1},
			{method: "HEAD", xcache: "HIT", hits: 1, check: func(t *testing.T, r *http.Response, _ *origin) {
				if r.ContentLength != 2 {
					t.Errorf("Content-Length: got %d; want 2", r.ContentLength)
				}
			}},
		}},
		{name: "range from cached body", steps: []step{
			{origin: answer(200, "0123456789", "Cache-Control", "max-age=100"), hits: 1},
			{header: []string{"Range", "bytes=2-4"}, status: 206, body: "234", xcache: "HIT", hits: 1},
			{header: []string{"Range", "bytes=-3"}, status: 206, body: "789", hits: 1},
		}},
		{name: "range on a miss passes through", steps: []step{
			{header: []string{"Range", "bytes=0-1"}, origin: answer(206, "01", "Content-Range", "bytes 0-1/10"), status: 206, hits: 1},
			{origin: ok("Cache-Control", "max-age=100"), xcache: "MISS", hits: 2},
		}},
		{name: "Set-Cookie not stored", steps: []step{
			{origin: ok("Cache-Control", "max-age=100", "Set-Cookie", "a=b"), hits: 1},
			{xcache: "MISS", hits: 2},
		}},
		{name: "Set-Cookie stored when allowed", extra: "store_set_cookie = true", steps: []step{
			{origin: ok("Cache-Control", "max-age=100", "Set-Cookie", "a=b"), hits: 1},
			{xcache: "HIT", hits: 1},
		}},
		{name: "over max object size streams", extra: "max_object_bytes = 4", steps: []step{
			{origin: answer(200, "0123456789", "Cache-Control", "max-age=100"), body: "0123456789", hits: 1},
			{xcache: "MISS", body: "0123456789", hits: 2},
		}},
		{name: "chunked stored", steps: []step{
			{origin: chunked("0123456789", "Cache-Control", "max-age=100"), body: "0123456789", hits: 1},
			{xcache: "HIT", body: "0123456789", hits: 1},
		}},
		{name: "chunked over max object streams", extra: "max_object_bytes = 4", steps: []step{
			{origin: chunked("0123456789", "Cache-Control", "max-age=100"), body: "0123456789", hits: 1},
			{xcache: "MISS", body: "0123456789", hits: 2},
		}},
		{name: "chunked at max object stored", extra: "max_object_bytes = 10", steps: []step{
			{origin: chunked("0123456789", "Cache-Control", "max-age=100"), body: "0123456789", hits: 1},
			{xcache: "HIT", body: "0123456789", hits: 1},
		}},
		{name: "chunked conditional on a miss", steps: []step{
			{header: []string{"If-None-Match", `"a"`}, origin: chunked("0123456789", "Cache-Control", "max-age=100", "ETag", `"a"`), status: 304, hits: 1},
			{xcache: "HIT", body: "0123456789", hits: 1},
		}},
		{name: "204 stored", steps: []step{
			{origin: answer(204, "", "Cache-Control", "max-age=100"), status: 204, hits: 1},
			{status: 204, xcache: "HIT", hits: 1},
		}},
		{name: "HEAD on a miss keeps Content-Length", steps: []step{
			{method: "HEAD", origin: answer(200, "0123456789", "Cache-Control", "max-age=100"), hits: 1, check: func(t *testing.T, r *http.Response, _ *origin) {
				if r.ContentLength != 10 {
					t.Errorf("Content-Length: got %d; want 10", r.ContentLength)
				}
			}},
		}},
		{name: "Date kept from origin", steps: []step{
			{origin: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Date", "Sun, 06 Nov 2033 08:49:37 GMT")
				ok("Cache-Control", "max-age=100")(w, r)
			}, check: wantDate("Sun, 06 Nov 2033 08:49:37 GMT"), hits: 1},
			{advance: 5 * time.Second, xcache: "HIT", check: wantDate("Sun, 06 Nov 2033 08:49:37 GMT"), hits: 1},
		}},
		{name: "Date added when origin sends none", steps: []step{
			{origin: noDate(ok("Cache-Control", "max-age=100")), check: wantDate(""), hits: 1},
			{xcache: "HIT", check: wantDate(""), hits: 1},
		}},
		{name: "Date added to a chunked miss", steps: []step{
			{origin: noDate(chunked("0123456789", "Cache-Control", "max-age=100")), body: "0123456789", check: wantDate(""), hits: 1},
			{xcache: "HIT", body: "0123456789", check: wantDate(""), hits: 1},
		}},
		{name: "Age list first value", steps: []step{
			{origin: ok("Cache-Control", "max-age=3600", "Age", "0,7200"), hits: 1},
			{xcache: "HIT", hits: 1},
		}},
		{name: "Age list old first value", steps: []step{
			{origin: ok("Cache-Control", "max-age=3600", "Age", "7200,0"), hits: 1},
			{xcache: "MISS", hits: 2},
		}},
		{name: "Age list repeated", steps: []step{
			{origin: ok("Cache-Control", "max-age=3600", "Age", "0, 0"), hits: 1},
			{xcache: "MISS", hits: 2},
		}},
		{name: "Age two lines", steps: []step{
			{origin: ok("Cache-Control", "max-age=3600", "Age", "0", "Age", "7200"), hits: 1},
			{xcache: "MISS", hits: 2},
		}},
		{name: "Age with a parameter", steps: []step{
			{origin: ok("Cache-Control", "max-age=3600", "Age", "7200;foo=1"), hits: 1},
			{xcache: "MISS", hits: 2},
		}},
		{name: "Vary combines field lines", steps: []step{
			{header: []string{"Foo", "1, 2"}, origin: ok("Cache-Control", "max-age=100", "Vary", "Foo"), hits: 1},
			{header: []string{"Foo", "1", "Foo", "2"}, xcache: "HIT", hits: 1},
			{header: []string{"Foo", " 1 ,2 "}, xcache: "HIT", hits: 1},
			{header: []string{"Foo", "2, 1"}, xcache: "MISS", hits: 2}, // order kept for an unknown field
		}},
		{name: "Vary Accept-Language order and case", steps: []step{
			{header: []string{"Accept-Language", "en, de;q=0.5"}, origin: ok("Cache-Control", "max-age=100", "Vary", "accept-language"), hits: 1},
			{header: []string{"Accept-Language", "DE; q=0.5,EN"}, xcache: "HIT", hits: 1},
			{header: []string{"Accept-Language", "de", "Accept-Language", "en"}, xcache: "MISS", hits: 2}, // q differs
			{header: []string{"Accept-Language", "en"}, xcache: "MISS", hits: 3},
		}},
		{name: "key with header part", extra: `key = ["path", "header:X-Tenant"]`, steps: []step{
			{header: []string{"X-Tenant", "a"}, origin: ok("Cache-Control", "max-age=100"), hits: 1},
			{header: []string{"X-Tenant", "a"}, xcache: "HIT", hits: 1},
			{header: []string{"X-Tenant", "b"}, xcache: "MISS", hits: 2},
		}},
		{name: "Cache-Status", steps: []step{
			{origin: ok("Cache-Control", "max-age=100"), check: func(t *testing.T, r *http.Response, _ *origin) {
				if got := r.Header.Get("Cache-Status"); got != "portico; fwd=miss; stored" {
					t.Errorf("Cache-Status: got %q", got)
				}
			}, hits: 1},
			{check: func(t *testing.T, r *http.Response, _ *origin) {
				if got := r.Header.Get("Cache-Status"); got != "portico; hit" {
					t.Errorf("Cache-Status: got %q", got)
				}
			}, hits: 1},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			runSteps(t, c.global, c.extra, c.steps)
		})
	}
}

// TestCacheStaleWhileRevalidateBackground: a stale hit inside the window
// is served at once and one background revalidation refreshes the entry.
func TestCacheStaleWhileRevalidateBackground(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	s, o := startCacheProxy(t, clock, "", "")
	o.set(answer(200, "v1", "Cache-Control", "max-age=10, stale-while-revalidate=100"))
	get(t, s, "GET", "/r")
	clock.Advance(20 * time.Second)
	revalidated := make(chan struct{})
	var once sync.Once
	o.set(func(w http.ResponseWriter, r *http.Request) {
		answer(200, "v2", "Cache-Control", "max-age=100")(w, r)
		once.Do(func() { close(revalidated) })
	})
	if resp, body := get(t, s, "GET", "/r"); body != "v1" || resp.Header.Get("X-Cache") != "STALE" {
		t.Fatalf("got %q %q; want v1 STALE", body, resp.Header.Get("X-Cache"))
	}
	select {
	case <-revalidated:
	case <-time.After(5 * time.Second):
		t.Fatal("no background revalidation")
	}
	s.bg.Wait() // the entry is stored when the goroutine ends
	if resp, body := get(t, s, "GET", "/r"); body != "v2" || resp.Header.Get("X-Cache") != "HIT" {
		t.Errorf("got %q %q; want v2 HIT", body, resp.Header.Get("X-Cache"))
	}
	if got := o.hits.Load(); got != 2 {
		t.Errorf("origin requests: got %d; want 2", got)
	}
}

// TestCacheCoalescing: 100 concurrent requests for a cold key reach the
// origin once.
func TestCacheCoalescing(t *testing.T) {
	s, o := startCacheProxy(t, nil, "", "")
	release := make(chan struct{})
	o.set(func(w http.ResponseWriter, r *http.Request) {
		<-release
		answer(200, "cold", "Cache-Control", "max-age=100")(w, r)
	})
	const n = 100
	var wg sync.WaitGroup
	bodies := make(chan string, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, b := get(t, s, "GET", "/cold")
			bodies <- b
		}()
	}
	// Every request has joined the flight once the miss counter says so.
	c := s.rcache.c
	deadline := time.Now().Add(10 * time.Second)
	for c.Misses.Get() < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d requests arrived", c.Misses.Get(), n)
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	close(bodies)
	for b := range bodies {
		if b != "cold" {
			t.Fatalf("got body %q; want cold", b)
		}
	}
	if got := o.hits.Load(); got != 1 {
		t.Errorf("origin requests: got %d; want 1", got)
	}
}

// TestCacheMemoryBound fills the cache through the proxy far past its
// budget: what is stored stays within it.
func TestCacheMemoryBound(t *testing.T) {
	const budget = 2 << 20
	s, o := startCacheProxy(t, nil, fmt.Sprintf("max_bytes = %d", budget), "max_object_bytes = 65536")
	body := strings.Repeat("x", 32<<10)
	o.set(answer(200, body, "Cache-Control", "max-age=100"))
	for i := 0; i < 200; i++ { // 6.25 MiB through a 2 MiB cache
		if _, b := get(t, s, "GET", fmt.Sprintf("/m%d", i)); len(b) != len(body) {
			t.Fatalf("got %d bytes; want %d", len(b), len(body))
		}
	}
	c := s.rcache.c
	c.CleanUp()
	t.Logf("stored %d bytes in %d objects; budget %d; evictions %d", c.WeightedSize(), c.Len(), budget, c.Evictions.Get())
	if c.WeightedSize() > budget {
		t.Errorf("stored %d bytes; want <= %d", c.WeightedSize(), budget)
	}
	if c.Evictions.Get() == 0 {
		t.Error("no evictions")
	}
}

func TestCachePurge(t *testing.T) {
	s, o := startCacheProxy(t, nil, "", "")
	for _, p := range []string{"/a", "/a?x=1", "/b/1", "/b/2"} {
		get(t, s, "GET", p)
	}
	base := "http://" + s.addr()
	if n := s.Purge(base+"/a", "", false); n != 1 {
		t.Errorf("purge key: got %d; want 1", n)
	}
	if n := s.Purge("", base+"/b/", false); n != 2 {
		t.Errorf("purge prefix: got %d; want 2", n)
	}
	if _, err := cacheClient.Get(base + "/a?x=1"); err != nil {
		t.Fatal(err)
	}
	before := o.hits.Load()
	if resp, _ := get(t, s, "GET", "/a"); resp.Header.Get("X-Cache") != "MISS" || o.hits.Load() != before+1 {
		t.Errorf("purged key: got %s", resp.Header.Get("X-Cache"))
	}
	s.Purge("", "", true)
	if resp, _ := get(t, s, "GET", "/a?x=1"); resp.Header.Get("X-Cache") != "MISS" {
		t.Errorf("after purge all: got %s; want MISS", resp.Header.Get("X-Cache"))
	}
}

func TestCacheConfigValidate(t *testing.T) {
	cfg := Config{
		Listeners: []ListenerConfig{{Address: "127.0.0.1:0"}},
		Routes:    []RouteConfig{{Pool: "web", Cache: RouteCacheConfig{Enabled: true, Key: []string{"path", "cookie:x", "path"}, DefaultTTL: -1, MaxObjectBytes: 1 << 30}}},
	}
	cfg.SetDefaults()
	cfg.Cache.MaxBytes = 1000
	bad := 2.0
	cfg.Cache.HeuristicFraction = &bad
	err := cfg.Validate("http", map[string]bool{"web": true})
	for _, want := range []string{
		`http.routes[0].cache.key: [1]: want method, scheme, host, path, query or header:NAME, got "cookie:x"`,
		`http.routes[0].cache.default_ttl: must not be negative, got -1ns`,
		`http.routes[0].cache.max_object_bytes: must be at most half of http.cache.max_bytes (500), got 1073741824`,
		`http.cache.max_bytes: must be at least 1048576, got 1000`,
		`http.cache.heuristic_fraction: must be 0 to 1, got 2`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("got %v; want it to contain %q", err, want)
		}
	}
}

// TestCacheHitProxyHeaders: a hit gets its own X-Request-Id and portico's
// Via, as a proxied response does, and not the stored response's.
func TestCacheHitProxyHeaders(t *testing.T) {
	s, o := startCacheProxy(t, nil, "", "")
	o.set(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Request-Id", r.Header.Get("X-Request-Id")) // an echoing origin
		answer(200, "v", "Cache-Control", "max-age=100")(w, r)
	})
	miss, _ := get(t, s, "GET", "/h")
	hit, _ := get(t, s, "GET", "/h")
	if hit.Header.Get("X-Cache") != "HIT" {
		t.Fatalf("X-Cache: got %q; want HIT", hit.Header.Get("X-Cache"))
	}
	a, b := miss.Header.Get("X-Request-Id"), hit.Header.Get("X-Request-Id")
	if a == "" || b == "" || a == b {
		t.Errorf("X-Request-Id: miss %q, hit %q; want two different ids", a, b)
	}
	if got := hit.Header.Values("Via"); len(got) != 1 || got[0] != "1.1 portico" {
		t.Errorf("Via: got %q; want [\"1.1 portico\"]", got)
	}
}

func TestParseRange(t *testing.T) {
	cases := []struct {
		in         string
		start, end int64
		ok         bool
	}{
		{"bytes=0-3", 0, 3, true},
		{"bytes=2-", 2, 9, true},
		{"bytes=-4", 6, 9, true},
		{"bytes=-40", 0, 9, true},
		{"bytes=5-100", 5, 9, true},
		{"bytes=5-2", 0, 0, false},
		{"bytes=10-", 0, 0, false},
		{"bytes=0-1,3-4", 0, 0, false},
		{"items=0-1", 0, 0, false},
		{"bytes=-0", 0, 0, false},
		{"bytes=a-b", 0, 0, false},
	}
	for _, c := range cases {
		s, e, ok := parseRange([]byte(c.in), 10)
		if s != c.start || e != c.end || ok != c.ok {
			t.Errorf("parseRange(%q) = %d, %d, %v; want %d, %d, %v", c.in, s, e, ok, c.start, c.end, c.ok)
		}
	}
}

func FuzzParseRange(f *testing.F) {
	f.Add("bytes=0-3", int64(10))
	f.Fuzz(func(t *testing.T, v string, n int64) {
		if n < 0 {
			return
		}
		s, e, ok := parseRange([]byte(v), n)
		if ok && (s < 0 || e >= n || s > e) {
			t.Errorf("parseRange(%q, %d) = %d, %d: outside the body", v, n, s, e)
		}
	})
}

// TestCacheSlowLeaderDoesNotHoldWaiters: the client whose miss leads a
// coalesced flight reads nothing of a large body; the entry is stored at
// the backend's pace all the same, and a request for the key that comes
// meanwhile is a hit, not a wait for lock_timeout and a second miss.
func TestCacheSlowLeaderDoesNotHoldWaiters(t *testing.T) {
	s, o := startCacheProxy(t, nil, `lock_timeout = "10s"`, "max_object_bytes = 33554432")
	body := bytes.Repeat([]byte("0123456789abcdef"), (16<<20)/16) // far above socket buffers
	o.set(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		_, _ = w.Write(body)
	})
	leader := dialWithDeadline(t, s.addr(), 20*time.Second)
	defer leader.Close()
	if _, err := io.WriteString(leader, "GET /big HTTP/1.1\r\nHost: "+s.addr()+"\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	// The leader's response is under way once its status line arrives.
	br := bufio.NewReader(leader)
	if line, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(line, "HTTP/1.1 200") {
		t.Fatalf("leader: got %q, %v", line, err)
	}
	c := s.rcache.c
	deadline := time.Now().Add(10 * time.Second)
	for c.Len() == 0 { // stored while the leader's client reads nothing more
		if time.Now().After(deadline) {
			t.Fatal("the body was not stored while its first client stalled")
		}
		time.Sleep(5 * time.Millisecond)
	}
	resp, b := get(t, s, "GET", "/big")
	if len(b) != len(body) || resp.Header.Get("X-Cache") != "HIT" {
		t.Fatalf("second request: %d bytes, X-Cache %q; want %d bytes from cache", len(b), resp.Header.Get("X-Cache"), len(body))
	}
	if got := o.hits.Load(); got != 1 {
		t.Errorf("origin requests: got %d; want 1", got)
	}
	// And the stalled client still gets the whole body, intact.
	resp2, err := http.ReadResponse(bufio.NewReader(io.MultiReader(strings.NewReader("HTTP/1.1 200 OK\r\n"), br)), nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp2.Body)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("leader body: %d bytes (want %d), equal %v, err %v", len(got), len(body), bytes.Equal(got, body), err)
	}
}

// TestCacheTrailersPassThrough: a response that declares trailer fields
// reaches the client with them, and is not stored (a hit could not send
// them).
func TestCacheTrailersPassThrough(t *testing.T) {
	s, o := startCacheProxy(t, nil, "", "")
	o.set(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Trailer", "X-Sum")
		_, _ = w.Write([]byte("hello"))
		w.(http.Flusher).Flush()
		w.Header().Set("X-Sum", "42")
	})
	for i := range 2 {
		c := dialWithDeadline(t, s.addr(), 10*time.Second)
		if _, err := io.WriteString(c, "GET /t HTTP/1.1\r\nHost: "+s.addr()+"\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		c.Close()
		if err != nil || string(b) != "hello" {
			t.Fatalf("request %d: body %q, %v", i, b, err)
		}
		if got := resp.Trailer.Get("X-Sum"); got != "42" {
			t.Errorf("request %d: trailer X-Sum %q; want 42 (trailers %v)", i, got, resp.Trailer)
		}
	}
	if got := o.hits.Load(); got != 2 {
		t.Errorf("origin requests: got %d; want 2 (not stored)", got)
	}
}
