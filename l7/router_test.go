package l7

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// parsedCtx returns a RequestCtx holding raw (a request head, without the
// final blank line), parsed as a portico listener parses it: header names
// kept in the case they came in.
func parsedCtx(t testing.TB, raw string) *fasthttp.RequestCtx {
	t.Helper()
	var req fasthttp.Request
	req.Header.DisableNormalizing()
	if err := req.Read(bufio.NewReader(strings.NewReader(raw + "\r\n\r\n"))); err != nil {
		t.Fatalf("parse %q: %v", raw, err)
	}
	ctx := new(fasthttp.RequestCtx)
	ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 40000}, nil)
	return ctx
}

// testRouter compiles named matches into a router, in order.
func testRouter(ms ...namedMatch) *router {
	r := &router{}
	for _, m := range ms {
		r.routes = append(r.routes, &route{name: m.name, match: compileMatch(m.m)})
	}
	return r
}

type namedMatch struct {
	name string
	m    MatchConfig
}

func TestRouterMatch(t *testing.T) {
	r := testRouter(
		namedMatch{"exact-host", MatchConfig{Hosts: []string{"api.example.com"}}},
		namedMatch{"wild-host", MatchConfig{Hosts: []string{"*.Example.com"}}},
		namedMatch{"exact-path", MatchConfig{Path: "/exact"}},
		namedMatch{"admin", MatchConfig{PathPrefix: "/admin"}},
		namedMatch{"api-prefix", MatchConfig{PathPrefix: "/api/"}},
		namedMatch{"regex", MatchConfig{PathRegex: `^/v[0-9]+/items$`}},
		namedMatch{"methods", MatchConfig{Path: "/m", Methods: []string{"PUT", "DELETE"}}},
		namedMatch{"header", MatchConfig{Path: "/h", Headers: map[string]string{"X-Api-Version": "2"}}},
		namedMatch{"header-any", MatchConfig{Path: "/h", Headers: map[string]string{"x-debug": "*"}}},
		namedMatch{"query", MatchConfig{Path: "/q", Query: map[string]string{"v": "2"}}},
		namedMatch{"query-any", MatchConfig{Path: "/q", Query: map[string]string{"debug": "*"}}},
		namedMatch{"combo", MatchConfig{Hosts: []string{"shop.test"}, PathPrefix: "/cart", Methods: []string{"POST"},
			Headers: map[string]string{"X-Tenant": "*"}, Query: map[string]string{"step": "pay"}}},
		namedMatch{"combo-shadowed", MatchConfig{Hosts: []string{"shop.test"}, PathPrefix: "/cart"}},
	)
	for _, tc := range []struct {
		name, req, want string // want "" means no route
	}{
		{"host exact", "GET / HTTP/1.1\r\nHost: api.example.com", "exact-host"},
		{"host case and port ignored", "GET / HTTP/1.1\r\nHost: API.Example.COM:8443", "exact-host"},
		{"host trailing dot", "GET / HTTP/1.1\r\nHost: api.example.com.", "exact-host"},
		{"absolute-form target overrides Host", "GET http://api.example.com/ HTTP/1.1\r\nHost: other.test", "exact-host"},
		{"host wildcard one label", "GET / HTTP/1.1\r\nHost: www.example.com", "wild-host"},
		{"host wildcard two labels", "GET / HTTP/1.1\r\nHost: a.b.EXAMPLE.com:80", "wild-host"},
		{"host wildcard not the apex", "GET / HTTP/1.1\r\nHost: example.com", ""},
		{"host wildcard not a suffix of a label", "GET / HTTP/1.1\r\nHost: badexample.com", ""},
		{"no host", "GET / HTTP/1.0", ""},

		{"path exact", "GET /exact HTTP/1.1\r\nHost: x", "exact-path"},
		{"path exact with query", "GET /exact?a=1 HTTP/1.1\r\nHost: x", "exact-path"},
		{"path exact not with slash", "GET /exact/ HTTP/1.1\r\nHost: x", ""},
		{"path exact not a prefix", "GET /exactly HTTP/1.1\r\nHost: x", ""},
		{"path exact after merging slashes", "GET //exact HTTP/1.1\r\nHost: x", "exact-path"},
		{"path exact after decoding a letter", "GET /%65xact HTTP/1.1\r\nHost: x", "exact-path"},
		{"path exact after dot segments", "GET /a/./b/../../exact HTTP/1.1\r\nHost: x", "exact-path"},
		{"path prefix", "GET /api/users HTTP/1.1\r\nHost: x", "api-prefix"},
		{"path prefix is bytes", "GET /administrator HTTP/1.1\r\nHost: x", "admin"},
		{"path prefix needs its slash", "GET /api HTTP/1.1\r\nHost: x", ""},
		{"dot-dot leaves the prefix", "GET /api/../admin HTTP/1.1\r\nHost: x", "admin"},
		{"encoded dot-dot leaves the prefix", "GET /api/%2e%2E/admin/x HTTP/1.1\r\nHost: x", "admin"},
		{"dot-dot cannot climb above root", "GET /../../api/x HTTP/1.1\r\nHost: x", "api-prefix"},
		{"encoded slash is not a separator", "GET /api%2Fusers HTTP/1.1\r\nHost: x", ""},
		{"encoded slash dot-dot is one segment", "GET /api/x%2F..%2F..%2Fadmin HTTP/1.1\r\nHost: x", "api-prefix"},
		{"regex", "GET /v12/items HTTP/1.1\r\nHost: x", "regex"},
		{"regex anchored", "GET /v12/items/1 HTTP/1.1\r\nHost: x", ""},
		{"regex sees normal form", "GET /v1/x/../items HTTP/1.1\r\nHost: x", "regex"},

		{"method", "PUT /m HTTP/1.1\r\nHost: x", "methods"},
		{"method other", "DELETE /m HTTP/1.1\r\nHost: x", "methods"},
		{"method not listed", "GET /m HTTP/1.1\r\nHost: x", ""},
		{"method case-sensitive", "put /m HTTP/1.1\r\nHost: x", ""},

		{"header value", "GET /h HTTP/1.1\r\nHost: x\r\nX-Api-Version: 2", "header"},
		{"header name any case", "GET /h HTTP/1.1\r\nHost: x\r\nx-api-VERSION: 2", "header"},
		{"header value differs", "GET /h HTTP/1.1\r\nHost: x\r\nX-Api-Version: 3", ""},
		{"header value is exact", "GET /h HTTP/1.1\r\nHost: x\r\nX-Api-Version: 2.0", ""},
		{"header star", "GET /h HTTP/1.1\r\nHost: x\r\nX-DEBUG: yes", "header-any"},
		{"header star empty value", "GET /h HTTP/1.1\r\nHost: x\r\nX-Debug:", "header-any"},
		{"header absent", "GET /h HTTP/1.1\r\nHost: x", ""},

		{"query value", "GET /q?v=2 HTTP/1.1\r\nHost: x", "query"},
		{"query value decoded", "GET /q?a=1&v=%32 HTTP/1.1\r\nHost: x", "query"},
		{"query value differs", "GET /q?v=20 HTTP/1.1\r\nHost: x", ""},
		{"query key case-sensitive", "GET /q?V=2 HTTP/1.1\r\nHost: x", ""},
		{"query star", "GET /q?debug=1 HTTP/1.1\r\nHost: x", "query-any"},
		{"query star no value", "GET /q?debug HTTP/1.1\r\nHost: x", "query-any"},
		{"query star empty value", "GET /q?debug= HTTP/1.1\r\nHost: x", "query-any"},
		{"query absent", "GET /q HTTP/1.1\r\nHost: x", ""},

		{"combination", "POST /cart/1?step=pay HTTP/1.1\r\nHost: shop.test\r\nX-Tenant: a", "combo"},
		{"combination first wins over later", "POST /cart/1?step=pay HTTP/1.1\r\nHost: shop.test\r\nX-Tenant: a", "combo"},
		{"combination one part fails", "POST /cart/1?step=ship HTTP/1.1\r\nHost: shop.test\r\nX-Tenant: a", "combo-shadowed"},
		{"combination method fails", "GET /cart/1?step=pay HTTP/1.1\r\nHost: shop.test\r\nX-Tenant: a", "combo-shadowed"},
		{"combination header fails", "POST /cart/1?step=pay HTTP/1.1\r\nHost: shop.test", "combo-shadowed"},
		{"earlier route wins", "GET /exact HTTP/1.1\r\nHost: api.example.com", "exact-host"},
		{"no match", "GET /nowhere HTTP/1.1\r\nHost: x", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ""
			if rt := r.match(parsedCtx(t, tc.req)); rt != nil {
				got = rt.name
			}
			if got != tc.want {
				t.Errorf("%q: got route %q; want %q", tc.req, got, tc.want)
			}
		})
	}
}

// TestRouterMatchBuiltRequest checks a request built in code, which has no
// raw header block, still matches on headers.
func TestRouterMatchBuiltRequest(t *testing.T) {
	r := testRouter(namedMatch{"h", MatchConfig{Headers: map[string]string{"x-api-version": "2"}}})
	var req fasthttp.Request
	req.SetRequestURI("http://x/")
	req.Header.Set("X-Api-Version", "2")
	ctx := new(fasthttp.RequestCtx)
	ctx.Init(&req, nil, nil)
	if rt := r.match(ctx); rt == nil {
		t.Fatalf("got no route; want h")
	}
}

func TestRouterMatchDoesNotAllocate(t *testing.T) {
	r := testRouter(
		namedMatch{"a", MatchConfig{Hosts: []string{"*.example.com"}, PathPrefix: "/api/", Methods: []string{"POST"}}},
		namedMatch{"b", MatchConfig{Path: "/x", Headers: map[string]string{"X-A": "1"}, Query: map[string]string{"q": "*"}}},
		namedMatch{"c", MatchConfig{PathPrefix: "/"}},
	)
	for _, req := range []string{
		"GET /x?q=1 HTTP/1.1\r\nHost: www.example.com\r\nx-a: 1",
		"GET /api/../x?q=1 HTTP/1.1\r\nHost: www.example.com\r\nX-A: 1",
	} {
		ctx := parsedCtx(t, req)
		if rt := r.match(ctx); rt == nil || rt.name != "b" {
			t.Fatalf("%q: got %v; want route b", req, rt)
		}
		if n := testing.AllocsPerRun(100, func() { r.match(ctx) }); n != 0 {
			t.Errorf("%q: got %v allocations per match; want 0", req, n)
		}
	}
}

// rawRoundTrip sends one raw request (head and body as given) to addr and
// returns the response, its body read.
func rawRoundTrip(t *testing.T, addr, raw string) (*http.Response, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("read response to %q: %v", raw, err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return resp, string(body)
}

// namedBackend answers "<name> <request-uri>".
func namedBackend(t *testing.T, name string) string {
	return startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s", name, r.RequestURI)
	}))
}

func TestRouterEndToEnd(t *testing.T) {
	api, admin, www := namedBackend(t, "api"), namedBackend(t, "admin"), namedBackend(t, "www")
	s := startProxy(t, fmt.Sprintf(`
[http]
[[http.listeners]]
address = "127.0.0.1:0"
[[http.routes]]
name = "admin"
match = { path_prefix = "/admin" }
pool = "admin"
[[http.routes]]
name = "api"
match = { path_prefix = "/api/", methods = ["GET"], headers = { "X-Key" = "*" } }
pool = "api"
[[http.routes]]
name = "www"
match = { hosts = ["*.example.com"] }
pool = "www"
[pools.api]
backends = [{ address = %q }]
[pools.admin]
backends = [{ address = %q }]
[pools.www]
backends = [{ address = %q }]
`, api, admin, www))
	for _, tc := range []struct {
		name, req  string
		wantStatus int
		wantBody   string
	}{
		{"prefix", "GET /api/v1?x=1 HTTP/1.1\r\nHost: a\r\nx-key: k\r\n\r\n", 200, "api /api/v1?x=1"},
		{"dot-dot routes and forwards the normal path", "GET /api/../admin/x?y HTTP/1.1\r\nHost: a\r\nx-key: k\r\n\r\n", 200, "admin /admin/x?y"},
		{"encoded dot-dot too", "GET /api/%2e%2e/admin HTTP/1.1\r\nHost: a\r\nX-Key: k\r\n\r\n", 200, "admin /admin"},
		{"encoded slash kept", "GET /api/a%2Fb%20c HTTP/1.1\r\nHost: a\r\nX-Key: k\r\n\r\n", 200, "api /api/a%2Fb%20c"},
		{"method filters", "POST /api/v1 HTTP/1.1\r\nHost: a\r\nX-Key: k\r\nContent-Length: 0\r\n\r\n", 404, "no route matches this request\n"},
		{"header filters", "GET /api/v1 HTTP/1.1\r\nHost: a\r\n\r\n", 404, "no route matches this request\n"},
		{"wildcard host", "GET /p HTTP/1.1\r\nHost: WWW.Example.com:1234\r\n\r\n", 200, "www /p"},
		{"wildcard host not apex", "GET /p HTTP/1.1\r\nHost: example.com\r\n\r\n", 404, "no route matches this request\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := rawRoundTrip(t, s.addr(), tc.req)
			if resp.StatusCode != tc.wantStatus || body != tc.wantBody {
				t.Errorf("got %d %q; want %d %q", resp.StatusCode, body, tc.wantStatus, tc.wantBody)
			}
			if tc.wantStatus == 404 {
				if ct := resp.Header.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
					t.Errorf("404 Content-Type: got %q; want %q", ct, "text/plain; charset=utf-8")
				}
				if strings.Count(body, "\n") != 1 {
					t.Errorf("404 body: got %q; want one line", body)
				}
			}
		})
	}
}
