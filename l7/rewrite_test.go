package l7

import (
	"bufio"
	"io"
	"net"
	"net/textproto"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// recBackend is a raw backend: it records each request head exactly as it
// arrives (the request line and the header lines, names in their case) and
// answers every request with the same raw response head and body.
type recBackend struct {
	addr  string
	heads chan string
}

func startRecBackend(t *testing.T, respHead, respBody string) *recBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &recBackend{addr: ln.Addr().String(), heads: make(chan string, 64)}
	resp := respHead + "Content-Length: " + strconv.Itoa(len(respBody)) + "\r\n\r\n" + respBody
	var mu sync.Mutex
	var conns []net.Conn
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					head, n, err := readHead(br)
					if err != nil {
						return
					}
					if _, err := io.CopyN(io.Discard, br, n); err != nil {
						return
					}
					b.heads <- head
					if _, err := io.WriteString(c, resp); err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return b
}

// readHead reads a request head up to its blank line and returns it without
// that line, with the Content-Length of the body that follows.
func readHead(br *bufio.Reader) (string, int64, error) {
	var sb strings.Builder
	var n int64
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return "", 0, err
		}
		if line == "\r\n" {
			return sb.String(), n, nil
		}
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, "Content-Length") {
			n, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
		sb.WriteString(line)
	}
}

// next returns the next recorded request head.
func (b *recBackend) next(t *testing.T) string {
	t.Helper()
	select {
	case h := <-b.heads:
		return h
	case <-time.After(5 * time.Second):
		t.Fatal("backend got no request within 5s")
		return ""
	}
}

// requestLine is the first line of a recorded head, without CRLF.
func requestLine(head string) string {
	line, _, _ := strings.Cut(head, "\r\n")
	return line
}

// fieldValues returns the values of every header line of head named name,
// whatever the case of the name, in order.
func fieldValues(head, name string) []string {
	var out []string
	lines := strings.Split(head, "\r\n")
	for _, l := range lines[1:] {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.EqualFold(k, name) {
			out = append(out, strings.TrimSpace(v))
		}
	}
	return out
}

// wantField checks that head has exactly one header name with value want.
func wantField(t *testing.T, what, head, name, want string) {
	t.Helper()
	got := fieldValues(head, name)
	if len(got) != 1 || got[0] != want {
		t.Errorf("%s %s: got %q; want [%q]", what, name, got, want)
	}
}

// wantNoField checks that head has no header name, in any case.
func wantNoField(t *testing.T, what, head, name string) {
	t.Helper()
	if got := fieldValues(head, name); len(got) > 0 {
		t.Errorf("%s %s: got %q; want none", what, name, got)
	}
}

// respHead renders a response's header lines as a head for fieldValues.
func respHead(status string, h map[string][]string) string {
	var sb strings.Builder
	sb.WriteString(status + "\r\n")
	for k, vs := range h {
		for _, v := range vs {
			sb.WriteString(k + ": " + v + "\r\n")
		}
	}
	return sb.String()
}

// oneRoute is the config of a proxy with one route "main" to the backend "be1"
// at be; routeExtra goes into the route's table, httpExtra into [http].
func oneRoute(be, routeExtra, httpExtra string) string {
	return oneBackend{Addr: be, HTTP: httpExtra, Route: `name = "main"` + "\n" + routeExtra, Backend: `name = "be1"`}.toml()
}

var hex32 = regexp.MustCompile(`^[0-9a-f]{32}$`)

func TestRewriteForwardedHeaders(t *testing.T) {
	be := startRecBackend(t, "HTTP/1.1 200 OK\r\nVia: 1.1 upstream\r\n", "ok")
	s := startProxy(t, oneRoute(be.addr, "", ""))
	resp, _ := rawRoundTrip(t, s.addr(), "GET /p HTTP/1.1\r\nHost: H.test:8080\r\n"+
		"x-forwarded-for: 203.0.113.1\r\nX-Forwarded-For: 198.51.100.2, 198.51.100.3\r\n"+
		"x-forwarded-proto: https\r\nX-FORWARDED-HOST: evil.test\r\nvia: 1.0 edge\r\n\r\n")
	head := be.next(t)
	wantField(t, "request", head, "X-Forwarded-For", "203.0.113.1, 198.51.100.2, 198.51.100.3, 127.0.0.1")
	wantField(t, "request", head, "X-Forwarded-Proto", "http")
	wantField(t, "request", head, "X-Forwarded-Host", "h.test:8080")
	wantField(t, "request", head, "Via", "1.0 edge, 1.1 portico")
	if got, want := resp.Header.Values("Via"), []string{"1.1 upstream, 1.1 portico"}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("response Via: got %q; want %q", got, want)
	}

	// An HTTP/1.0 client is named so in Via.
	rawRoundTrip(t, s.addr(), "GET /p HTTP/1.0\r\nHost: h.test\r\n\r\n")
	head = be.next(t)
	wantField(t, "HTTP/1.0 request", head, "Via", "1.0 portico")
	wantField(t, "HTTP/1.0 request", head, "X-Forwarded-For", "127.0.0.1")
}

func TestRewriteForwardedSwitchedOff(t *testing.T) {
	for _, tc := range []struct {
		key  string
		name string // the header that must be left as the client sent it
	}{
		{"x_forwarded_for", "X-Forwarded-For"},
		{"x_forwarded_proto", "X-Forwarded-Proto"},
		{"x_forwarded_host", "X-Forwarded-Host"},
		{"via", "Via"},
		{"request_id", "X-Request-Id"},
	} {
		t.Run(tc.key, func(t *testing.T) {
			be := startRecBackend(t, "HTTP/1.1 200 OK\r\n", "ok")
			s := startProxy(t, oneRoute(be.addr, "", "[http.forwarded]\n"+tc.key+" = false"))
			// Without the header: nothing is added.
			resp, _ := rawRoundTrip(t, s.addr(), "GET / HTTP/1.1\r\nHost: h.test\r\n\r\n")
			head := be.next(t)
			wantNoField(t, "request", head, tc.name)
			if tc.name == "Via" || tc.name == "X-Request-Id" {
				if got := resp.Header.Values(tc.name); len(got) > 0 {
					t.Errorf("response %s: got %q; want none", tc.name, got)
				}
			}
			// With it: passed on untouched.
			rawRoundTrip(t, s.addr(), "GET / HTTP/1.1\r\nHost: h.test\r\n"+tc.name+": client-value\r\n\r\n")
			head = be.next(t)
			wantField(t, "request", head, tc.name, "client-value")
			// The others are still on.
			for _, other := range []string{"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "Via", "X-Request-Id"} {
				if other != tc.name && len(fieldValues(head, other)) != 1 {
					t.Errorf("request %s: got %q; want one", other, fieldValues(head, other))
				}
			}
		})
	}
}

func TestRewriteRequestID(t *testing.T) {
	be := startRecBackend(t, "HTTP/1.1 200 OK\r\n", "ok")
	s := startProxy(t, oneRoute(be.addr, "", ""))

	// Absent: generated, 32 hex digits, the same upstream and on the response.
	seen := map[string]bool{}
	for i := 0; i < 3; i++ {
		resp, _ := rawRoundTrip(t, s.addr(), "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
		ids := fieldValues(be.next(t), "X-Request-Id")
		if len(ids) != 1 || !hex32.MatchString(ids[0]) {
			t.Fatalf("request X-Request-Id: got %q; want one of 32 hex digits", ids)
		}
		if got := resp.Header.Get("X-Request-Id"); got != ids[0] {
			t.Errorf("response X-Request-Id: got %q; want %q", got, ids[0])
		}
		if seen[ids[0]] {
			t.Errorf("X-Request-Id %q given twice", ids[0])
		}
		seen[ids[0]] = true
	}

	// Present, in any case: passed on once and echoed.
	resp, _ := rawRoundTrip(t, s.addr(), "GET / HTTP/1.1\r\nHost: h\r\nx-request-ID: abc-123\r\n\r\n")
	wantField(t, "request", be.next(t), "X-Request-Id", "abc-123")
	if got := resp.Header.Get("X-Request-Id"); got != "abc-123" {
		t.Errorf("response X-Request-Id: got %q; want %q", got, "abc-123")
	}

	// Present but empty: replaced by a generated one.
	rawRoundTrip(t, s.addr(), "GET / HTTP/1.1\r\nHost: h\r\nX-Request-Id:\r\n\r\n")
	if ids := fieldValues(be.next(t), "X-Request-Id"); len(ids) != 1 || !hex32.MatchString(ids[0]) {
		t.Errorf("request X-Request-Id: got %q; want one of 32 hex digits", ids)
	}
}

// hopNames are the hop-by-hop headers the tests send, in odd cases, with
// X-Hop, which Connection names.
var hopNames = []string{"Connection", "Keep-Alive", "TE", "Trailer", "Upgrade", "Proxy-Connection", "Proxy-Authorization", "Proxy-Authenticate", "X-Hop", "X-Hop-Two"}

func TestRewriteHopByHop(t *testing.T) {
	be := startRecBackend(t, "HTTP/1.1 200 OK\r\n"+
		"connection: x-hop, Keep-Alive\r\nConnection: X-HOP-two\r\nx-hop: 1\r\nX-Hop-Two: 2\r\nkeep-alive: timeout=5\r\n"+
		"Proxy-Connection: keep-alive\r\nupgrade: h2c\r\nTE: trailers\r\nproxy-authenticate: Basic\r\nX-End: kept\r\n", "ok")
	s := startProxy(t, oneRoute(be.addr, "", ""))
	resp, body := rawRoundTrip(t, s.addr(), "GET / HTTP/1.1\r\nHost: h\r\n"+
		"connection: keep-alive, X-Hop\r\nCONNECTION: x-hop-two\r\nx-hop: 1\r\nX-HOP-TWO: 2\r\nKeep-Alive: 300\r\nte: trailers\r\n"+
		"trailer: X-T\r\nUpgrade: h2c\r\nproxy-connection: keep-alive\r\nProxy-Authorization: Basic c2VjcmV0\r\nX-End: kept\r\n\r\n")
	head := be.next(t)
	for _, name := range hopNames {
		if name == "Connection" {
			continue // fasthttp may write its own keep-alive Connection upstream
		}
		wantNoField(t, "request", head, name)
	}
	for _, v := range fieldValues(head, "Connection") {
		if !strings.EqualFold(v, "keep-alive") && !strings.EqualFold(v, "close") {
			t.Errorf("request Connection: got %q; want none or fasthttp's own", v)
		}
	}
	wantField(t, "request", head, "X-End", "kept")

	if resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("got %d %q; want 200 %q", resp.StatusCode, body, "ok")
	}
	rh := respHead(resp.Status, resp.Header)
	for _, name := range hopNames {
		if name == "Connection" {
			continue
		}
		wantNoField(t, "response", rh, name)
	}
	for _, v := range fieldValues(rh, "Connection") {
		if !strings.EqualFold(v, "keep-alive") && !strings.EqualFold(v, "close") {
			t.Errorf("response Connection: got %q; want none or the proxy's own", v)
		}
	}
	wantField(t, "response", rh, "X-End", "kept")
}

// TestRewriteConnectionCannotStripFraming pins that a Connection option
// naming Content-Length or Host does not remove them.
func TestRewriteConnectionCannotStripFraming(t *testing.T) {
	be := startRecBackend(t, "HTTP/1.1 200 OK\r\n", "ok")
	s := startProxy(t, oneRoute(be.addr, "", ""))
	resp, _ := rawRoundTrip(t, s.addr(), "POST / HTTP/1.1\r\nHost: h.test\r\nConnection: content-length, host\r\nContent-Length: 3\r\n\r\nabc")
	head := be.next(t)
	wantField(t, "request", head, "Content-Length", "3")
	wantField(t, "request", head, "Host", "h.test")
	if resp.StatusCode != 200 {
		t.Errorf("got status %d; want 200", resp.StatusCode)
	}
}

func TestRewriteHeaderOps(t *testing.T) {
	be := startRecBackend(t, "HTTP/1.1 200 OK\r\nx-powered-by: php\r\nx-cache: MISS\r\nX-Backend-Only: 1\r\n", "ok")
	s := startProxy(t, oneRoute(be.addr, `
[http.routes.headers]
request_set = { "X-Client" = "{client_ip}", "x-info" = "{method} {scheme}://{host}{path} id={request_id} route={route}", "X-Replaced" = "new", "X-Braces" = "{{literal}}" }
request_add = { "X-Added" = "{route}" }
request_remove = ["X-Secret", "cookie"]
response_set = { "X-Served-By" = "{backend} via {route}", "X-Cache" = "HIT" }
response_add = { "X-Path" = "{path}" }
response_remove = ["X-Powered-By"]
`, ""))
	resp, _ := rawRoundTrip(t, s.addr(), "GET /a%20b/../c?q=1 HTTP/1.1\r\nHost: Shop.Test:8080\r\n"+
		"x-replaced: old\r\nX-REPLACED: older\r\nx-added: client\r\nx-secret: s\r\nX-SECRET: t\r\nCookie: a=b\r\nx-request-id: rid\r\n\r\n")
	head := be.next(t)
	wantField(t, "request", head, "X-Client", "127.0.0.1")
	wantField(t, "request", head, "X-Info", "GET http://shop.test:8080/c id=rid route=main")
	wantField(t, "request", head, "X-Replaced", "new")
	wantField(t, "request", head, "X-Braces", "{literal}")
	if got := fieldValues(head, "X-Added"); strings.Join(got, "|") != "client|main" {
		t.Errorf("request X-Added: got %q; want [\"client\" \"main\"]", got)
	}
	wantNoField(t, "request", head, "X-Secret")
	wantNoField(t, "request", head, "Cookie")

	rh := respHead(resp.Status, resp.Header)
	wantField(t, "response", rh, "X-Served-By", "be1 via main")
	wantField(t, "response", rh, "X-Cache", "HIT")
	wantField(t, "response", rh, "X-Path", "/c")
	wantNoField(t, "response", rh, "X-Powered-By")
	wantField(t, "response", rh, "X-Backend-Only", "1")
}

func TestRewritePath(t *testing.T) {
	be := startRecBackend(t, "HTTP/1.1 200 OK\r\n", "ok")
	for _, tc := range []struct {
		name, rewrite, target, want string // want: the backend's request target
	}{
		{"none", ``, "/api/a%2Fb%20c?x=%2F&y=a+b", "/api/a%2Fb%20c?x=%2F&y=a+b"},
		{"none normalises", ``, "/x/..//api/./%7Eu?q", "/api/~u?q"},
		{"strip", `strip_prefix = "/api"`, "/api/users/7?q=1", "/users/7?q=1"},
		{"strip all", `strip_prefix = "/api"`, "/api?q=1", "/?q=1"},
		{"strip keeps encoding", `strip_prefix = "/api"`, "/api/a%2Fb/%E2%82%AC%20x?q=%20", "/a%2Fb/%E2%82%AC%20x?q=%20"},
		{"strip not matching", `strip_prefix = "/api"`, "/web/x", "/web/x"},
		{"add", `add_prefix = "/v2"`, "/users?q", "/v2/users?q"},
		{"add with slash", `add_prefix = "/v2/"`, "/users", "/v2/users"},
		{"strip and add", `strip_prefix = "/api"` + "\n" + `add_prefix = "/internal"`, "/api/users?a=1&b=2", "/internal/users?a=1&b=2"},
		{"regex", `regex = "^/user/([0-9]+)$"` + "\n" + `replacement = "/users/$1/profile"`, "/user/42?x", "/users/42/profile?x"},
		{"regex named group", `regex = "^/(?P<lang>[a-z]{2})/(.*)$"` + "\n" + `replacement = "/${lang}-site/$2"`, "/de/page?x", "/de-site/page?x"},
		{"regex sees encoded path", `regex = "%20"` + "\n" + `replacement = "-"`, "/a%20b%20c", "/a-b-c"},
		{"all three", `strip_prefix = "/api"` + "\n" + `regex = "^/v1/"` + "\n" + `replacement = "/"` + "\n" + `add_prefix = "/svc"`, "/api/v1/items?page=2", "/svc/items?page=2"},
		{"rewrite after normalising", `strip_prefix = "/api"`, "/api/../api/%75sers", "/users"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := oneRoute(be.addr, "", "")
			if tc.rewrite != "" {
				cfg = oneRoute(be.addr, "[http.routes.rewrite]\n"+tc.rewrite, "")
			}
			s := startProxy(t, cfg)
			resp, _ := rawRoundTrip(t, s.addr(), "GET "+tc.target+" HTTP/1.1\r\nHost: h\r\n\r\n")
			if resp.StatusCode != 200 {
				t.Fatalf("got status %d; want 200", resp.StatusCode)
			}
			if got, want := requestLine(be.next(t)), "GET "+tc.want+" HTTP/1.1"; got != want {
				t.Errorf("%s: got %q; want %q", tc.target, got, want)
			}
		})
	}
}

// TestRewriteOpsOnProxyHeaders checks that header edits apply to the
// headers the proxy itself sets, in both directions.
func TestRewriteOpsOnProxyHeaders(t *testing.T) {
	be := startRecBackend(t, "HTTP/1.1 200 OK\r\n", "ok")
	s := startProxy(t, oneRoute(be.addr, `
[http.routes.headers]
request_remove = ["x-forwarded-for", "VIA"]
request_set = { "X-Request-Id" = "fixed", "x-forwarded-proto" = "gopher" }
response_remove = ["via"]
response_set = { "x-request-id" = "out" }
`, ""))
	resp, _ := rawRoundTrip(t, s.addr(), "GET / HTTP/1.1\r\nHost: h\r\nx-forwarded-for: 1.2.3.4\r\nVia: 1.0 edge\r\nx-request-id: in\r\n\r\n")
	head := be.next(t)
	wantNoField(t, "request", head, "X-Forwarded-For")
	wantNoField(t, "request", head, "Via")
	wantField(t, "request", head, "X-Request-Id", "fixed")
	wantField(t, "request", head, "X-Forwarded-Proto", "gopher")
	rh := respHead(resp.Status, resp.Header)
	wantNoField(t, "response", rh, "Via")
	wantField(t, "response", rh, "X-Request-Id", "out")
}

// TestRewriteHeaderNamesCanonical checks the helpers that give a header's
// canonical name as fasthttp and net/textproto do.
func TestRewriteHeaderNamesCanonical(t *testing.T) {
	for _, k := range []string{"x-request-id", "CONTENT-type", "te", "a--b", "x_y", "Via"} {
		if got, want := string(appendCanonical(nil, []byte(k))), textproto.CanonicalMIMEHeaderKey(k); got != want {
			t.Errorf("appendCanonical(%q): got %q; want %q", k, got, want)
		}
	}
}

// TestRewriteWatchedStartsWithHop pins the layout clientFields relies on.
func TestRewriteWatchedStartsWithHop(t *testing.T) {
	for i, h := range hopHeaders {
		if watched[i] != h {
			t.Errorf("watched[%d]: got %q; want %q", i, watched[i], h)
		}
	}
	for i, w := range watched {
		if got := watchedIndex([]byte(strings.ToUpper(w))); got != i {
			t.Errorf("watchedIndex(%q): got %d; want %d", strings.ToUpper(w), got, i)
		}
		if !isCanonical([]byte(w)) {
			t.Errorf("watched[%d] %q is not canonical", i, w)
		}
	}
}

// pipeAddr is an address that is not TCP, as an in-memory pipe has.
type pipeAddr string

func (a pipeAddr) Network() string { return "pipe" }
func (a pipeAddr) String() string  { return string(a) }

func TestRewriteAppendIP(t *testing.T) {
	for _, tc := range []struct {
		addr net.Addr
		want string
	}{
		{&net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 1234}, "192.0.2.1"},
		{&net.TCPAddr{IP: net.ParseIP("::ffff:192.0.2.1"), Port: 1}, "192.0.2.1"},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 443}, "2001:db8::1"},
		{pipeAddr("pipe"), "pipe"},
		{pipeAddr("10.0.0.1:99"), "10.0.0.1"},
		{pipeAddr("[2001:db8::2]:80"), "2001:db8::2"},
		{pipeAddr("2001:db8::3"), "2001:db8::3"},
		{pipeAddr("host:http"), "host:http"},
	} {
		if got := string(appendIP([]byte("x="), tc.addr)); got != "x="+tc.want {
			t.Errorf("appendIP(%v): got %q; want %q", tc.addr, got, "x="+tc.want)
		}
	}
	tcp := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 1234}
	buf := make([]byte, 0, 64)
	if n := testing.AllocsPerRun(100, func() { buf = appendIP(buf[:0], tcp) }); n != 0 {
		t.Errorf("appendIP of a TCP address: got %v allocations; want 0", n)
	}
}
