package l7

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// deadAddr returns a loopback address that refuses connections.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// methodCounts counts the requests a backend saw, by method.
type methodCounts struct{ get, post atomic.Int64 }

func (m *methodCounts) count(method string) {
	switch method {
	case http.MethodGet:
		m.get.Add(1)
	case http.MethodPost:
		m.post.Add(1)
	}
}

// startGoodBackend answers every request with its method and the length and
// first bytes of its body.
func startGoodBackend(t *testing.T) (string, *methodCounts) {
	t.Helper()
	var m methodCounts
	addr := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.count(r.Method)
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "%s %d %s", r.Method, len(body), body[:min(len(body), 16)])
	}))
	return addr, &m
}

// startResetBackend accepts connections, reads one request header block and
// resets the connection without answering.
func startResetBackend(t *testing.T) (string, *methodCounts) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var m methodCounts
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					return
				}
				m.count(req.Method)
				_ = c.(*net.TCPConn).SetLinger(0) // close sends RST
			}()
		}
	}()
	return ln.Addr().String(), &m
}

func twoBackends(a, b, upstream string) string {
	return fmt.Sprintf(`
[http]
[http.upstream]
%s
[[http.listeners]]
address = "127.0.0.1:0"
[[http.routes]]
pool = "web"
[pools.web]
[[pools.web.backends]]
address = %q
[[pools.web.backends]]
address = %q
`, upstream, a, b)
}

// doRequest sends one request through the proxy and returns the status and body.
func doRequest(t *testing.T, c *http.Client, method, url string, body []byte) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return resp.StatusCode, string(b)
}

// TestRetryConnectRefused: a backend that refuses connections is skipped for
// every request, GET or POST, small or streamed body: nothing reached it, so
// retrying on the other backend is always safe.
func TestRetryConnectRefused(t *testing.T) {
	good, m := startGoodBackend(t)
	s := startProxy(t, twoBackends(deadAddr(t), good, ""))
	c := streamClient(t)
	url := "http://" + s.addr() + "/"
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB: streamed by the proxy
	const n = 8
	for i := range n {
		if st, body := doRequest(t, c, http.MethodGet, url, nil); st != 200 || body != "GET 0 " {
			t.Errorf("GET %d: got %d %q; want 200 %q", i, st, body, "GET 0 ")
		}
		b := fmt.Appendf(nil, "post-%d", i)
		if st, body := doRequest(t, c, http.MethodPost, url, b); st != 200 || body != fmt.Sprintf("POST %d %s", len(b), b) {
			t.Errorf("POST %d: got %d %q; want 200 %q", i, st, body, fmt.Sprintf("POST %d %s", len(b), b))
		}
		want := fmt.Sprintf("POST %d %s", len(big), big[:16])
		if st, body := doRequest(t, c, http.MethodPost, url, big); st != 200 || body != want {
			t.Errorf("POST %d (1 MiB): got %d %q; want 200 %q", i, st, body, want)
		}
	}
	if g, p := m.get.Load(), m.post.Load(); g != n || p != 2*n {
		t.Errorf("good backend saw %d GET and %d POST; want %d and %d", g, p, n, 2*n)
	}
}

// TestRetryResetBeforeResponse: a backend that takes the request and resets
// the connection may have acted on it, so only idempotent requests are
// retried elsewhere; a POST gets 502 and reached the backend at most once.
func TestRetryResetBeforeResponse(t *testing.T) {
	reset, rm := startResetBackend(t)
	good, gm := startGoodBackend(t)
	s := startProxy(t, twoBackends(reset, good, ""))
	c := streamClient(t)
	url := "http://" + s.addr() + "/"
	const n = 6
	for i := range n {
		r0 := rm.get.Load()
		if st, body := doRequest(t, c, http.MethodGet, url, nil); st != 200 || body != "GET 0 " {
			t.Errorf("GET %d: got %d %q; want 200 %q", i, st, body, "GET 0 ")
		}
		if d := rm.get.Load() - r0; d > 1 {
			t.Errorf("GET %d reached the resetting backend %d times; want at most 1", i, d)
		}
	}
	if rm.get.Load() == 0 {
		t.Error("no GET reached the resetting backend; the test did not exercise a retry")
	}
	if g := gm.get.Load(); g != n {
		t.Errorf("good backend saw %d GET; want %d", g, n)
	}

	failed := 0
	for i := range n {
		r0, g0 := rm.post.Load(), gm.post.Load()
		b := fmt.Appendf(nil, "post-%d", i)
		st, body := doRequest(t, c, http.MethodPost, url, b)
		dr, dg := rm.post.Load()-r0, gm.post.Load()-g0
		switch st {
		case http.StatusBadGateway:
			failed++
			if dr != 1 || dg != 0 {
				t.Errorf("POST %d: got 502 with the resetting backend seeing it %d times and the good one %d; want 1 and 0", i, dr, dg)
			}
		case http.StatusOK:
			if want := fmt.Sprintf("POST %d %s", len(b), b); body != want || dr != 0 || dg != 1 {
				t.Errorf("POST %d: got 200 %q, backends saw it %d (reset) and %d (good) times; want %q, 0 and 1", i, body, dr, dg, want)
			}
		default:
			t.Errorf("POST %d: got %d %q; want 502 or 200", i, st, body)
		}
	}
	if failed == 0 {
		t.Error("no POST reached the resetting backend; the test did not exercise it")
	}
}

// TestRetryDisabled: upstream.retries = 0 sends each request to one backend
// only, even when the connection was refused.
func TestRetryDisabled(t *testing.T) {
	good, m := startGoodBackend(t)
	s := startProxy(t, twoBackends(deadAddr(t), good, "retries = 0"))
	if got := s.snap.Load().retries; got != 0 {
		t.Fatalf("config retries = 0 became %d after SetDefaults; want 0", got)
	}
	c := streamClient(t)
	url := "http://" + s.addr() + "/"
	var failed, ok int64
	for i := range 8 {
		st, body := doRequest(t, c, http.MethodGet, url, nil)
		switch {
		case st == http.StatusBadGateway && strings.Contains(body, "refused"):
			failed++
		case st == http.StatusOK:
			ok++
		default:
			t.Errorf("GET %d: got %d %q; want 502 or 200", i, st, body)
		}
	}
	if failed == 0 {
		t.Error("every request succeeded; want those sent to the dead backend to fail")
	}
	if g := m.get.Load(); g != ok {
		t.Errorf("good backend saw %d GET; want %d (one per success)", g, ok)
	}
}
