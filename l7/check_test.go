package l7

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// checkBackend is a net/http backend that counts the requests it is
// handed and those whose body it read to the end, and echoes what it got.
type checkBackend struct {
	addr     string
	seen     atomic.Int64 // handler calls
	complete atomic.Int64 // handler calls that read the whole body
}

func startCheckBackend(t testing.TB) *checkBackend {
	t.Helper()
	cb := &checkBackend{}
	cb.addr = startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cb.seen.Add(1)
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		cb.complete.Add(1)
		fmt.Fprintf(w, "%s %s host=%s xfh=%s body=%q", r.Method, r.RequestURI, r.Host, r.Header.Get("X-Forwarded-Host"), body)
	}))
	return cb
}

// checkConn is a client connection that writes raw bytes and reads responses.
type checkConn struct {
	t  testing.TB
	c  net.Conn
	br *bufio.Reader
}

func dialCheck(t testing.TB, addr string) *checkConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	return &checkConn{t: t, c: c, br: bufio.NewReader(c)}
}

func (rc *checkConn) send(raw string) {
	rc.t.Helper()
	if _, err := io.WriteString(rc.c, raw); err != nil {
		rc.t.Fatalf("write: %v", err)
	}
}

// exchange sends raw and reads the response to it (see response).
func (rc *checkConn) exchange(raw string) (*http.Response, string) {
	rc.t.Helper()
	rc.send(raw)
	return rc.response()
}

// response reads one response, skipping 100 Continue, and its body.
func (rc *checkConn) response() (*http.Response, string) {
	rc.t.Helper()
	for {
		resp, err := http.ReadResponse(rc.br, nil)
		if err != nil {
			rc.t.Fatalf("read response: %v", err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			rc.t.Fatalf("read response body: %v", err)
		}
		if resp.StatusCode != http.StatusContinue {
			return resp, string(body)
		}
	}
}

// closed reports whether the server closed the connection: the next read
// ends with EOF (or a reset) rather than data or a timeout.
func (rc *checkConn) closed() bool {
	rc.t.Helper()
	_ = rc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := rc.br.Read(make([]byte, 1))
	var ne net.Error
	if n > 0 || (errors.As(err, &ne) && ne.Timeout()) {
		return false
	}
	return err != nil
}

// TestCheckRequestRejects sends each smuggling shape raw through the proxy
// and checks the answer, that the connection is closed after it, and that
// no request reached the backend. Shapes that fasthttp refuses and shapes
// checkRequest refuses are both here: what matters is the end-to-end answer.
func TestCheckRequestRejects(t *testing.T) {
	be := startCheckBackend(t)
	s := startOneBackendProxy(t, oneBackend{Addr: be.addr})

	const post = "POST /a HTTP/1.1\r\nHost: x\r\n"
	const chunked = post + "Transfer-Encoding: chunked\r\n\r\n"
	smuggled := "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
	tests := []struct {
		name   string
		raw    string
		status int
		reason string
		// partial: the error is found while the body streams upstream, so
		// the backend sees the head and part of the body, never all of it.
		partial bool
	}{
		// Content-Length and Transfer-Encoding.
		{"cl-and-te", post + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 400, "conflicting Content-Length and Transfer-Encoding", false},
		{"te-and-cl", post + "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n" + smuggled, 400, "conflicting Content-Length and Transfer-Encoding", false},
		{"cl-dup-same", post + "Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello", 400, "duplicate Content-Length", false},
		{"cl-dup-diff", post + "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400, "duplicate Content-Length", false},
		{"cl-dup-case", post + "Content-Length: 5\r\ncontent-length: 5\r\n\r\nhello", 400, "duplicate Content-Length", false},
		{"cl-plus", post + "Content-Length: +5\r\n\r\nhello", 400, "invalid Content-Length", false},
		{"cl-list", post + "Content-Length: 5,5\r\n\r\nhello", 400, "invalid Content-Length", false},
		{"cl-list-space", post + "Content-Length: 5, 5\r\n\r\nhello", 400, "invalid Content-Length", false},
		{"cl-inner-space", post + "Content-Length: 5 5\r\n\r\nhello", 400, "invalid Content-Length", false},
		{"cl-hex", post + "Content-Length: 0x5\r\n\r\nhello", 400, "invalid Content-Length", false},
		{"cl-negative", post + "Content-Length: -5\r\n\r\nhello", 400, "invalid Content-Length", false},
		{"cl-empty", post + "Content-Length: \r\n\r\nhello", 400, "invalid Content-Length", false},
		{"cl-too-long", post + "Content-Length: 99999999999999999999\r\n\r\nhello", 400, "invalid Content-Length", false},
		{"cl-underscore", post + "Content_Length: 5\r\n\r\nhello", 400, "framing header name with underscore", false},
		// Transfer-Encoding.
		{"te-chunked-identity", post + "Transfer-Encoding: chunked, identity\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 400, "unsupported Transfer-Encoding", false},
		{"te-gzip-chunked", post + "Transfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 400, "unsupported Transfer-Encoding", false},
		{"te-xchunked", post + "Transfer-Encoding: xchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 400, "unsupported Transfer-Encoding", false},
		{"te-identity", post + "Transfer-Encoding: identity\r\n\r\n" + smuggled, 400, "unsupported Transfer-Encoding", false},
		{"te-identity-cl", post + "Transfer-Encoding: identity\r\nContent-Length: 5\r\n\r\nhello", 400, "unsupported Transfer-Encoding", false},
		{"te-vertical-tab", post + "Transfer-Encoding: \vchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 400, "invalid character in header value", false},
		{"te-dup", post + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 400, "duplicate Transfer-Encoding", false},
		{"te-http10", "POST /a HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 400, "unsupported Transfer-Encoding", false},
		{"te-underscore", post + "Transfer_Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 400, "framing header name with underscore", false},
		{"te-folded", post + "Transfer-Encoding:\r\n chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 400, "obsolete line folding in header block", false},
		// Field syntax.
		{"space-before-colon", post + "Content-Length : 5\r\n\r\nhello", 400, "whitespace between header name and colon", false},
		{"tab-before-colon", post + "Transfer-Encoding\t: chunked\r\n\r\n0\r\n\r\n", 400, "invalid header name", false},
		{"space-in-name", "GET /a HTTP/1.1\r\nHost: x\r\nX Foo: 5\r\n\r\n", 400, "invalid header name", false},
		{"empty-name", "GET /a HTTP/1.1\r\nHost: x\r\n: 5\r\n\r\n", 400, "invalid header name", false},
		{"no-colon", "GET /a HTTP/1.1\r\nHost: x\r\nfoo\r\n\r\n", 400, "invalid header name", false},
		{"nul-in-name", "GET /a HTTP/1.1\r\nHost: x\r\nX-F\x00oo: 5\r\n\r\n", 400, "invalid header name", false},
		{"obs-fold", "GET /a HTTP/1.1\r\nHost: x\r\nX-Foo: a\r\n b\r\n\r\n", 400, "obsolete line folding in header block", false},
		{"obs-fold-tab", "GET /a HTTP/1.1\r\nHost: x\r\nX-Foo: a\r\n\tb\r\n\r\n", 400, "obsolete line folding in header block", false},
		{"first-line-space", "GET /a HTTP/1.1\r\n Host: x\r\n\r\n", 400, "obsolete line folding in header block", false},
		{"bare-lf-line", "GET /a HTTP/1.1\r\nHost: x\nX-Foo: a\r\n\r\n", 400, "bare LF in header block", false},
		{"bare-lf-end", "GET /a HTTP/1.1\r\nHost: x\r\n\n" + smuggled, 400, "bare LF in header block", false},
		{"bare-cr-value", "GET /a HTTP/1.1\r\nHost: x\r\nX-Foo: a\rb\r\n\r\n", 400, "invalid character in header value", false},
		{"bare-cr-line", "GET /a HTTP/1.1\r\nHost: x\rX-Foo: a\r\n\r\n", 400, "invalid character in header value", false},
		{"nul-in-value", "GET /a HTTP/1.1\r\nHost: x\r\nX-Foo: a\x00b\r\n\r\n", 400, "invalid character in header value", false},
		{"ff-in-value", "GET /a HTTP/1.1\r\nHost: x\r\nX-Foo: a\fb\r\n\r\n", 400, "invalid character in header value", false},
		{"del-in-value", "GET /a HTTP/1.1\r\nHost: x\r\nX-Foo: a\x7fb\r\n\r\n", 400, "invalid character in header value", false},
		// Host and request target.
		{"host-missing", "GET /a HTTP/1.1\r\n\r\n", 400, "missing Host header", false},
		{"host-empty", "GET /a HTTP/1.1\r\nHost:\r\n\r\n", 400, "missing Host header", false},
		{"host-missing-http10", "GET /a HTTP/1.0\r\n\r\n", 400, "missing Host header", false},
		{"host-empty-http10", "GET /a HTTP/1.0\r\nHost: \r\n\r\n", 400, "invalid Host header", false},
		{"host-dup", "GET /a HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400, "duplicate Host header", false},
		{"host-dup-same", "GET /a HTTP/1.1\r\nHost: x\r\nhost: x\r\n\r\n", 400, "duplicate Host header", false},
		{"host-userinfo", "GET /a HTTP/1.1\r\nHost: u@evil\r\n\r\n", 400, "invalid Host header", false},
		{"host-escape", "GET /a HTTP/1.1\r\nHost: ev%69l\r\n\r\n", 400, "invalid host", false},
		{"host-space", "GET /a HTTP/1.1\r\nHost: a b\r\n\r\n", 400, "invalid host", false},
		{"host-slash", "GET /a HTTP/1.1\r\nHost: a/b\r\n\r\n", 400, "invalid host", false},
		{"host-bracket-open", "GET /a HTTP/1.1\r\nHost: [::1\r\n\r\n", 400, "invalid host", false},
		{"host-two-ports", "GET /a HTTP/1.1\r\nHost: a:1:2\r\n\r\n", 400, "invalid host", false},
		{"host-bad-port", "GET /a HTTP/1.1\r\nHost: x:abc\r\n\r\n", 400, "invalid host", false},
		{"target-no-host", "GET http://evil/x HTTP/1.1\r\n\r\n", 400, "missing Host header", false},
		{"target-userinfo", "GET http://u:p@evil/x HTTP/1.1\r\nHost: good\r\n\r\n", 400, "userinfo in request target", false},
		{"target-scheme", "GET ftp://evil/x HTTP/1.1\r\nHost: good\r\n\r\n", 400, "unsupported scheme in request target", false},
		// Request line, method, version.
		{"http09", "GET /a\r\n\r\n", 400, "malformed request line", false},
		{"version-garbage", "GET /a HTTP/x.y\r\nHost: x\r\n\r\n", 400, "malformed request line", false},
		{"version-2", "GET /a HTTP/2.0\r\nHost: x\r\n\r\n", 505, "unsupported HTTP version", false},
		{"version-1.2", "GET /a HTTP/1.2\r\nHost: x\r\n\r\n", 505, "unsupported HTTP version", false},
		{"target-ctl", "GET /a\x01b HTTP/1.1\r\nHost: x\r\n\r\n", 400, "malformed request line", false},
		{"target-bad-scheme", "GET h_t://evil/x HTTP/1.1\r\nHost: good\r\n\r\n", 400, "malformed request line", false},
		{"method-bad", "G(T /a HTTP/1.1\r\nHost: x\r\n\r\n", 400, "malformed request line", false},
		{"two-spaces", "GET  /a HTTP/1.1\r\nHost: x\r\n\r\n", 400, "malformed request line", false},
		{"connect", "CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n", 501, "CONNECT is not supported", false},
		{"upgrade-with-body", "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: " + fmt.Sprint(len(smuggled)) + "\r\n\r\n" + smuggled, 400, "upgrade request with a body", false},
		{"upgrade-with-chunked", "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "upgrade request with a body", false},
		// Chunked bodies: fasthttp reads them while portico streams them
		// upstream, so these answers come from the proxy, not the check.
		{"chunk-size-0x", chunked + "0x5\r\nhello\r\n0\r\n\r\n", 400, "malformed chunked body", false},
		{"chunk-size-negative", chunked + "-5\r\nhello\r\n0\r\n\r\n", 400, "malformed chunked body", false},
		{"chunk-size-leading-space", chunked + " 5\r\nhello\r\n0\r\n\r\n", 400, "malformed chunked body", false},
		{"chunk-size-too-long", chunked + "fffffffffffffffffff\r\nhello\r\n0\r\n\r\n", 400, "malformed chunked body", false},
		{"chunk-size-bare-lf", chunked + "5\nhello\r\n0\r\n\r\n", 400, "malformed chunked body", false},
		{"chunk-ext-lf", chunked + "5;a\nb\r\nhello\r\n0\r\n\r\n", 400, "malformed chunked body", false},
		{"chunk-ext-after-space", chunked + "5 ;a=b\r\nhello\r\n0\r\n\r\n", 400, "malformed chunked body", false},
		{"chunk-data-too-long", chunked + "3\r\nhello\r\n0\r\n\r\n", 400, "malformed chunked body", false},
		{"chunk-data-bare-cr", chunked + "3\r\nhel\rA5\r\nhello\r\n0\r\n\r\n", 400, "malformed chunked body", false},
		{"chunk-trailer-cl", chunked + "5\r\nhello\r\n0\r\nContent-Length: 5\r\n\r\n", 400, "malformed chunked body", true},
		{"chunk-second-bad", chunked + "5\r\nhello\r\nzz\r\n0\r\n\r\n", 400, "malformed chunked body", true},
		{"chunk-truncated", chunked + "5\r\nhello\r\n5\r\nhel", 400, "request body incomplete", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seen, complete := be.seen.Load(), be.complete.Load()
			rc := dialCheck(t, s.addr())
			rc.send(tt.raw)
			if tt.name == "chunk-truncated" {
				_ = rc.c.(*net.TCPConn).CloseWrite()
			}
			resp, body := rc.response()
			if resp.StatusCode != tt.status || body != tt.reason+"\n" {
				t.Errorf("got %d %q; want %d %q", resp.StatusCode, body, tt.status, tt.reason+"\n")
			}
			if !rc.closed() {
				t.Errorf("connection still open after the answer; want it closed")
			}
			if n := be.complete.Load() - complete; n != 0 {
				t.Errorf("backend read %d complete requests; want 0", n)
			}
			if n := be.seen.Load() - seen; n != 0 && !tt.partial {
				t.Errorf("backend saw %d requests; want 0", n)
			}
		})
	}
}

// TestCheckRequestAccepts sends shapes that are odd but unambiguous, and
// checks that they reach the backend as they should.
func TestCheckRequestAccepts(t *testing.T) {
	be := startCheckBackend(t)
	s := startOneBackendProxy(t, oneBackend{Addr: be.addr})
	tests := []struct {
		name string
		raw  string
		want string // the backend's echo
	}{
		{"cl-ows", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: \t5 \t\r\n\r\nhello", `POST /a host=x xfh=x body="hello"`},
		{"cl-leading-zeros", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 005\r\n\r\nhello", `POST /a host=x xfh=x body="hello"`},
		{"cl-zero-upgrade", "GET /a HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nUpgrade: websocket\r\n\r\n", `GET /a host=x xfh=x body=""`},
		{"te-odd-case", "POST /a HTTP/1.1\r\nHost: x\r\ntransfer-encoding: ChUnKeD\r\n\r\n5\r\nhello\r\n0\r\n\r\n", `POST /a host=x xfh=x body="hello"`},
		{"te-tabs", "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\tchunked\t\r\n\r\n5\r\nhello\r\n0\r\n\r\n", `POST /a host=x xfh=x body="hello"`},
		{"chunk-ext", "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b;c\r\nhello\r\n0;x\r\n\r\n", `POST /a host=x xfh=x body="hello"`},
		{"chunk-trailer", "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Sum: 1\r\n\r\n", `POST /a host=x xfh=x body="hello"`},
		{"obs-text-value", "GET /a HTTP/1.1\r\nHost: x\r\nX-Name: caf\xc3\xa9\r\n\r\n", `GET /a host=x xfh=x body=""`},
		{"host-port-case", "GET /a HTTP/1.1\r\nHost: X.Example:8080\r\n\r\n", `GET /a host=x.example:8080 xfh=x.example:8080 body=""`},
		{"host-ipv6", "GET /a HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", `GET /a host=[::1]:80 xfh=[::1]:80 body=""`},
		{"host-empty-port", "GET /a HTTP/1.1\r\nHost: x:\r\n\r\n", `GET /a host=x: xfh=x: body=""`},
		{"http10-keep-alive", "POST /a HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nContent-Length: 5\r\n\r\nhello", `POST /a host=x xfh=x body="hello"`},
		{"leading-crlf", "\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\n", `GET /a host=x xfh=x body=""`},
		{"options-star", "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", ""}, // net/http answers it itself
		// RFC 9112 section 3.2.2: the target's authority wins over Host.
		{"target-authority-wins", "GET http://Evil.Example:99/x?q=1 HTTP/1.1\r\nHost: good\r\n\r\n", `GET /x?q=1 host=evil.example:99 xfh=evil.example:99 body=""`},
		{"target-https", "GET https://evil/x HTTP/1.1\r\nHost: good\r\n\r\n", `GET /x host=evil xfh=evil body=""`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := dialCheck(t, s.addr())
			resp, body := rc.exchange(tt.raw)
			if resp.StatusCode != 200 || body != tt.want {
				t.Errorf("got %d %q; want 200 %q", resp.StatusCode, body, tt.want)
			}
		})
	}
}

// TestCheckRequestTargetRoutes pins the decision on absolute-form targets:
// a request is routed by the target's authority, not by its Host header.
func TestCheckRequestTargetRoutes(t *testing.T) {
	good, evil := startCheckBackend(t), startCheckBackend(t)
	s := startProxy(t, fmt.Sprintf(`
[http]
[[http.listeners]]
address = "127.0.0.1:0"
[[http.routes]]
match.hosts = ["good"]
pool = "good"
[[http.routes]]
match.hosts = ["evil"]
pool = "evil"
[pools.good]
[[pools.good.backends]]
address = %q
[pools.evil]
[[pools.evil.backends]]
address = %q
`, good.addr, evil.addr))
	rc := dialCheck(t, s.addr())
	resp, body := rc.exchange("GET http://evil/x HTTP/1.1\r\nHost: good\r\n\r\n")
	if want := `GET /x host=evil xfh=evil body=""`; resp.StatusCode != 200 || body != want {
		t.Fatalf("got %d %q; want 200 %q", resp.StatusCode, body, want)
	}
	if g, e := good.seen.Load(), evil.seen.Load(); g != 0 || e != 1 {
		t.Fatalf("got good=%d evil=%d requests; want good=0 evil=1", g, e)
	}
}

// TestCheckRequestKeepAlive sends legitimate requests of each framing on
// one connection, pipelined too, and checks each arrives intact. A chunked
// request is the last a connection serves (see finish): the connection
// closes after its answer.
func TestCheckRequestKeepAlive(t *testing.T) {
	be := startCheckBackend(t)
	s := startOneBackendProxy(t, oneBackend{Addr: be.addr})
	rc := dialCheck(t, s.addr())
	steps := []struct{ raw, want string }{
		{"POST /cl HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", `POST /cl host=x xfh=x body="hello"`},
		{"GET /get HTTP/1.1\r\nHost: x\r\n\r\n", `GET /get host=x xfh=x body=""`},
		{"POST /expect HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi", `POST /expect host=x xfh=x body="hi"`},
		{"POST /empty HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", `POST /empty host=x xfh=x body=""`},
		{"POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n2;ext=1\r\nlo\r\n0\r\n\r\n", `POST /chunked host=x xfh=x body="hello"`},
	}
	for i, st := range steps {
		resp, body := rc.exchange(st.raw)
		if resp.StatusCode != 200 || body != st.want {
			t.Fatalf("request %d: got %d %q; want 200 %q", i, resp.StatusCode, body, st.want)
		}
		if last := i == len(steps)-1; resp.Close != last {
			t.Fatalf("request %d: got Connection: close %v; want %v", i, resp.Close, last)
		}
	}
	if !rc.closed() {
		t.Fatal("connection open after a chunked request; want it closed")
	}

	// Pipelined in one write: CL, then chunked, then a request that must
	// not be served.
	rc = dialCheck(t, s.addr())
	rc.send("POST /p1 HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\na" +
		"POST /p2 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nb\r\n0\r\n\r\n" +
		"GET /p3 HTTP/1.1\r\nHost: x\r\n\r\n")
	for _, want := range []string{`POST /p1 host=x xfh=x body="a"`, `POST /p2 host=x xfh=x body="b"`} {
		resp, body := rc.response()
		if resp.StatusCode != 200 || body != want {
			t.Fatalf("pipelined: got %d %q; want 200 %q", resp.StatusCode, body, want)
		}
	}
	if !rc.closed() {
		t.Fatal("pipelined: connection open after a chunked request; want it closed")
	}
	if got, want := be.complete.Load(), int64(len(steps)+2); got != want {
		t.Fatalf("backend read %d complete requests; want %d", got, want)
	}
}

// TestCheckChunkedTrailerBareLF pins why a connection closes after a chunked
// request: fasthttp ends a trailer section at a bare LF, where a peer that
// reads CRLF only sees trailer lines, so what follows must not be served.
func TestCheckChunkedTrailerBareLF(t *testing.T) {
	be := startCheckBackend(t)
	s := startOneBackendProxy(t, oneBackend{Addr: be.addr})
	const head = "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n"
	for _, trailer := range []string{"0\r\n\n", "0\r\nX: 1\n\r\n", "0\r\nX: 1\r\n\n", "0\r\nX: a\r\n b\r\n\r\n"} {
		rc := dialCheck(t, s.addr())
		if resp, body := rc.exchange(head + trailer + "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"); resp.StatusCode != 200 || !resp.Close {
			t.Fatalf("trailer %q: got %d %q close=%v; want 200 and Connection: close", trailer, resp.StatusCode, body, resp.Close)
		}
		if !rc.closed() {
			t.Fatalf("trailer %q: connection still open; want it closed", trailer)
		}
	}
	if got := be.seen.Load(); got != 4 {
		t.Fatalf("backend saw %d requests; want 4, none of them /smuggled", got)
	}
}

// TestCheckRequestRejectedKeepsOthers checks that a rejected request on one
// connection does not disturb a request on another.
func TestCheckRequestRejectedKeepsOthers(t *testing.T) {
	be := startCheckBackend(t)
	s := startOneBackendProxy(t, oneBackend{Addr: be.addr})
	bad, good := dialCheck(t, s.addr()), dialCheck(t, s.addr())
	if resp, _ := bad.exchange("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"); resp.StatusCode != 400 {
		t.Fatalf("got %d; want 400", resp.StatusCode)
	}
	if resp, body := good.exchange("GET /b HTTP/1.1\r\nHost: x\r\n\r\n"); resp.StatusCode != 200 || !strings.HasPrefix(body, "GET /b ") {
		t.Fatalf("got %d %q; want 200 for GET /b", resp.StatusCode, body)
	}
	if got := be.seen.Load(); got != 1 {
		t.Fatalf("backend saw %d requests; want 1", got)
	}
}

// TestScanHeaderBlock checks the header block scanner alone, on blocks
// fasthttp would never hand it, so that it does not rely on fasthttp.
func TestScanHeaderBlock(t *testing.T) {
	tests := []struct {
		name, raw string
		reason    string
		facts     headerFacts
	}{
		{"empty-block", "\r\n", "", headerFacts{}},
		{"host", "Host: x\r\n\r\n", "", headerFacts{host: 1}},
		{"cl-zero", "Host: x\r\nContent-Length: 000\r\n\r\n", "", headerFacts{host: 1, contentLength: 1}},
		{"cl", "content-LENGTH: 12\r\n\r\n", "", headerFacts{contentLength: 1, body: true}},
		{"te", "Transfer-Encoding: chunked\r\nUpgrade: x\r\n\r\n", "", headerFacts{transferEncoding: 1, body: true, upgrade: true}},
		{"long-value", "X-Long: " + strings.Repeat("abcdefgh", 20) + "\t" + strings.Repeat("\x80", 9) + "\r\n\r\n", "", headerFacts{}},
		{"no-end", "Host: x\r\n", reasonUnterminated, headerFacts{}},
		{"no-end-in-name", "Host", reasonUnterminated, headerFacts{}},
		{"no-end-in-value", "Host: x", reasonUnterminated, headerFacts{}},
		{"after-end", "Host: x\r\n\r\nX", reasonUnterminated, headerFacts{}},
		{"bare-cr-end", "Host: x\r\n\r", reasonBareCR, headerFacts{}},
		{"bare-cr-after-value", "Host: x\rY: z\r\n\r\n", reasonBareCR, headerFacts{}},
		{"bare-lf", "Host: x\n\r\n", reasonBareLF, headerFacts{}},
		{"bare-lf-end", "Host: x\r\n\n", reasonBareLF, headerFacts{}},
		{"bare-lf-long", "X: " + strings.Repeat("a", 17) + "\nY: z\r\n\r\n", reasonBareLF, headerFacts{}},
		{"fold", "X: a\r\n\tb\r\n\r\n", reasonObsFold, headerFacts{}},
		{"name-space", "X\t : a\r\n\r\n", reasonNameSpace, headerFacts{}},
		{"name-inner-space", "X Y: a\r\n\r\n", reasonBadName, headerFacts{}},
		{"name-empty", ": a\r\n\r\n", reasonBadName, headerFacts{}},
		{"name-utf8", "\xc3\xa9: a\r\n\r\n", reasonBadName, headerFacts{}},
		{"value-nul-long", "X: " + strings.Repeat("a", 16) + "\x00\r\n\r\n", reasonBadValue, headerFacts{}},
		{"value-del", "X: \x7f\r\n\r\n", reasonBadValue, headerFacts{}},
		{"value-esc", "X: \x1b[31m\r\n\r\n", reasonBadValue, headerFacts{}},
		{"cl-alpha", "Content-Length: 1a\r\n\r\n", reasonBadCL, headerFacts{}},
		{"cl-19-digits", "Content-Length: 1000000000000000000\r\n\r\n", reasonBadCL, headerFacts{}},
		{"cl-underscore", "content_length: 1\r\n\r\n", reasonUnderscore, headerFacts{}},
		{"te-identity", "Transfer-Encoding: identity\r\n\r\n", reasonBadTE, headerFacts{}},
		{"te-chunked-comma", "Transfer-Encoding: chunked,\r\n\r\n", reasonBadTE, headerFacts{}},
		{"te-underscore", "TRANSFER_ENCODING: chunked\r\n\r\n", reasonUnderscore, headerFacts{}},
		{"host-at", "Host: a@b\r\n\r\n", reasonBadHost, headerFacts{}},
		{"host-pct", "Host: a%41\r\n\r\n", reasonBadHost, headerFacts{}},
		{"host-port-alpha", "Host: a:8o\r\n\r\n", reasonBadHost, headerFacts{}},
		{"host-port-long", "Host: a:123456\r\n\r\n", reasonBadHost, headerFacts{}},
		{"host-two-colons", "Host: a:1:2\r\n\r\n", reasonBadHost, headerFacts{}},
		{"host-bracket-open", "Host: [::1\r\n\r\n", reasonBadHost, headerFacts{}},
		{"host-bracket-empty", "Host: []\r\n\r\n", reasonBadHost, headerFacts{}},
		{"host-bracket-junk", "Host: [::1]x\r\n\r\n", reasonBadHost, headerFacts{}},
		{"host-only-port", "Host: :80\r\n\r\n", reasonBadHost, headerFacts{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var f headerFacts
			status, reason := scanHeaderBlock([]byte(tt.raw), &f)
			if reason != tt.reason {
				t.Fatalf("got %d %q; want %q", status, reason, tt.reason)
			}
			if (status == 0) != (reason == "") {
				t.Fatalf("got status %d with reason %q", status, reason)
			}
			if reason == "" && f != tt.facts {
				t.Fatalf("got facts %+v; want %+v", f, tt.facts)
			}
		})
	}
}

// TestWordHasCTL compares the word test with a byte loop on every byte value
// in every lane.
func TestWordHasCTL(t *testing.T) {
	for lane := 0; lane < 8; lane++ {
		for c := 0; c < 256; c++ {
			var b [8]byte
			for i := range b {
				b[i] = 'a'
			}
			b[lane] = byte(c)
			w := uint64(0)
			for i := 7; i >= 0; i-- {
				w = w<<8 | uint64(b[i])
			}
			want := c < 0x20 || c == 0x7f
			if got := wordHasCTL(w); got != want {
				t.Fatalf("lane %d byte %#x: got %v; want %v", lane, c, got, want)
			}
		}
	}
}

// TestCheckUpstreamFraming checks what the backend receives for each client
// framing, even with a route that tries to remove the framing headers: one
// Host, exactly one of Content-Length and Transfer-Encoding when there is a
// body, never both, and the body as the client sent it.
func TestCheckUpstreamFraming(t *testing.T) {
	fb := startFramingBackend(t)
	s := startOneBackendProxy(t, oneBackend{
		Addr:  fb.ln.Addr().String(),
		Route: `headers.request_remove = ["Content-Length", "Transfer-Encoding", "Host"]`,
	})
	tests := []struct{ name, raw, body string }{
		{"content-length", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", "hello"},
		{"chunked", "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2;x=y\r\nhe\r\n3\r\nllo\r\n0\r\nX-T: 1\r\n\r\n", "hello"},
		{"chunked-empty", "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", ""},
		{"no-body-post", "POST /a HTTP/1.1\r\nHost: x\r\n\r\n", ""},
		{"get", "GET /a HTTP/1.1\r\nHost: x\r\n\r\n", ""},
		{"get-with-body", "GET /a HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi", "hi"},
		{"http10", "POST /a HTTP/1.0\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi", "hi"},
		{"expect", "PUT /a HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi", "hi"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, _ := fb.settle(t)
			rc := dialCheck(t, s.addr())
			if resp, body := rc.exchange(tt.raw); resp.StatusCode != 200 {
				t.Fatalf("got %d %q; want 200", resp.StatusCode, body)
			}
			after, faults := fb.settle(t)
			if len(faults) > 0 {
				t.Fatalf("backend got a badly framed request: %s", strings.Join(faults, "; "))
			}
			if got := after[len(before):]; len(got) != 1 || string(got[0].body) != tt.body {
				t.Fatalf("backend got %+v; want one request with body %q", got, tt.body)
			}
		})
	}
}
