package l7

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// seqBackend accepts connections on loopback and answers each request
// read from them with what answer returns for its path, written in one
// Write; the connection stays open for the next request. It returns its
// address and the count of connections accepted; the proxy's shutdown
// closes them.
func seqBackend(t *testing.T, answer func(path string) []byte) (string, *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	accepted := new(atomic.Int32)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			go func(c net.Conn) {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					_, _ = io.Copy(io.Discard, req.Body)
					if _, err := c.Write(answer(req.URL.Path)); err != nil {
						return
					}
				}
			}(c)
		}
	}()
	return ln.Addr().String(), accepted
}

// get1 sends a GET for path on c and reads the response.
func get1(t *testing.T, c net.Conn, br *bufio.Reader, path string) (*http.Response, []byte) {
	t.Helper()
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s body: %v", path, err)
	}
	return resp, b
}

// A backend that sends bytes past the Content-Length of a response: they
// must not become the answer to the next request on that connection. A
// connection whose spliced bodies end where they should is reused.
func TestSpliceReviewExtraBytes(t *testing.T) {
	for _, n := range []int{10000, 100000} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			be, accepted := seqBackend(t, func(path string) []byte {
				if path == "/clean" {
					return []byte("HTTP/1.1 200 OK\r\nContent-Length: " + strconv.Itoa(n) + "\r\n\r\n" + strings.Repeat("c", n))
				}
				if path == "/big" {
					return []byte("HTTP/1.1 200 OK\r\nContent-Length: " + strconv.Itoa(n) + "\r\n\r\n" +
						strings.Repeat("b", n) + "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nEVIL!")
				}
				return []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			})
			s := startOneBackendProxy(t, oneBackend{Addr: be})
			c := dialWithDeadline(t, s.addr(), 5*time.Second)
			defer c.Close()
			br := bufio.NewReader(c)
			for i := 0; i < 3; i++ {
				if _, b := get1(t, c, br, "/clean"); !bytes.Equal(b, bytes.Repeat([]byte("c"), n)) {
					t.Fatalf("clean: %d bytes", len(b))
				}
			}
			if a := accepted.Load(); a != 1 {
				t.Errorf("%d backend connections for three clean responses, want 1", a)
			}
			_, b := get1(t, c, br, "/big")
			if !bytes.Equal(b, bytes.Repeat([]byte("b"), n)) {
				t.Fatalf("big: %d bytes", len(b))
			}
			if resp, b := get1(t, c, br, "/small"); string(b) != "ok" {
				t.Errorf("the request after the one answered with extra bytes got %d %q, want ok", resp.StatusCode, b)
			}
		})
	}
}

// bigBody is n bytes that show where they come from.
func bigBody(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*13 + n)
	}
	return b
}

// stalledClient asks for path and reads nothing, with a small receive
// buffer.
func stalledClient(t *testing.T, addr, path string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.(*net.TCPConn).SetReadBuffer(4096)
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path); err != nil {
		t.Fatal(err)
	}
	return c
}

// A client that stops reading a spliced body is cut at write_timeout: the
// proxy gives up, and the backend's writes fail.
func TestSpliceReviewWriteTimeout(t *testing.T) {
	const total = 256 << 20
	failed := make(chan time.Time, 1)
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(total))
		chunk := make([]byte, 1<<20)
		for sent := 0; sent < total; sent += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				failed <- time.Now()
				return
			}
		}
	}))
	s := startOneBackendProxy(t, oneBackend{Addr: be, Listener: `write_timeout = "300ms"`})
	start := time.Now()
	c := stalledClient(t, s.addr(), "/")
	defer c.Close()
	select {
	case at := <-failed:
		t.Logf("backend write failed after %v", at.Sub(start))
	case <-time.After(10 * time.Second):
		t.Fatal("the proxy still holds a stalled client 10 s on (write_timeout 300ms)")
	}
}

// A stalled client of a spliced body is cut at the end of the drain.
func TestSpliceReviewShutdownCutsStalled(t *testing.T) {
	const total = 256 << 20
	failed := make(chan struct{})
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(total))
		chunk := make([]byte, 1<<20)
		for sent := 0; sent < total; sent += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				close(failed)
				return
			}
		}
	}))
	s := startOneBackendProxy(t, oneBackend{Addr: be})
	c := stalledClient(t, s.addr(), "/")
	defer c.Close()
	// Wait for the body to be under way: its first bytes reach the client.
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var one [1]byte
	if _, err := c.Read(one[:]); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := contextWithTimeout(300 * time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Shutdown(ctx) }()
	select {
	case <-failed:
	case <-time.After(10 * time.Second):
		t.Fatal("the stalled client was not cut at the end of the drain")
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return")
	}
}

// A backend that stops in the middle of a spliced body is given up at
// response_timeout.
func TestSpliceReviewResponseTimeout(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "200000")
		_, _ = w.Write(bytes.Repeat([]byte("a"), 50000))
		w.(http.Flusher).Flush()
		<-release
	}))
	s := startOneBackendProxy(t, oneBackend{Addr: be, Upstream: `response_timeout = "300ms"`})
	c := dialWithDeadline(t, s.addr(), 10*time.Second)
	defer c.Close()
	start := time.Now()
	if _, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	if err == nil || len(got) != 50000 {
		t.Errorf("got %d bytes, %v; want the 50000 sent and an error", len(got), err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("cut after %v, want about 300ms", d)
	}
}

// Pipelined requests for spliced bodies: each answer whole and in order.
func TestSpliceReviewPipelined(t *testing.T) {
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Path[1:])
		w.Header().Set("Content-Length", strconv.Itoa(n))
		_, _ = w.Write(bigBody(n))
	}))
	s := startOneBackendProxy(t, oneBackend{Addr: be})
	c := dialWithDeadline(t, s.addr(), 10*time.Second)
	defer c.Close()
	sizes := []int{100000, 20000, 5, 300000, 70000, 16384}
	var req bytes.Buffer
	for _, n := range sizes {
		fmt.Fprintf(&req, "GET /%d HTTP/1.1\r\nHost: x\r\n\r\n", n)
	}
	if _, err := c.Write(req.Bytes()); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	for _, n := range sizes {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%d: %v", n, err)
		}
		got, err := io.ReadAll(resp.Body)
		if err != nil || !bytes.Equal(got, bigBody(n)) {
			t.Fatalf("%d: got %d bytes, %v", n, len(got), err)
		}
	}
}

// Many clients at once, spliced and not, over two backends: every body
// intact; the bytes sent are counted.
func TestSpliceReviewConcurrent(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Path[1:])
		w.Header().Set("Content-Length", strconv.Itoa(n))
		b := bigBody(n)
		if r.URL.Query().Get("slow") != "" && n > 30000 {
			_, _ = w.Write(b[:n/2])
			w.(http.Flusher).Flush()
			time.Sleep(time.Millisecond)
			b = b[n/2:]
		}
		_, _ = w.Write(b)
	})
	be1, be2 := startBackend(t, h), startBackend(t, h)
	s := startProxy(t, fmt.Sprintf(`
[http]
[[http.listeners]]
address = "127.0.0.1:0"
[[http.routes]]
pool = "web"
[pools.web]
[[pools.web.backends]]
address = %q
[[pools.web.backends]]
address = %q
`, be1, be2))
	sizes := []int{1, 5000, 16384, 20000, 65536, 100000, 250000}
	runClients(t, s.addr(), 8, func(g int, c net.Conn, br *bufio.Reader) error {
		for i := 0; i < 30; i++ {
			n := sizes[(g+i)%len(sizes)]
			path := "/" + strconv.Itoa(n)
			if i%3 == 0 {
				path += "?slow=1"
			}
			got, err := getBody(c, br, path)
			if err != nil || !bytes.Equal(got, bigBody(n)) {
				return fmt.Errorf("client %d req %d: got %d bytes of %d, %v", g, i, len(got), n, err)
			}
		}
		return nil
	})
	// Every registration was taken by the response it was made for.
	spliceReg.mu.Lock()
	left, n := len(spliceReg.m), spliceReg.n.Load()
	spliceReg.mu.Unlock()
	if left != 0 || n != 0 {
		t.Errorf("%d registrations left (count %d)", left, n)
	}
}

// Spliced bodies on a connection parked and woken between requests.
func TestSpliceReviewParked(t *testing.T) {
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Path[1:])
		w.Header().Set("Content-Length", strconv.Itoa(n))
		_, _ = w.Write(bigBody(n))
	}))
	s := startProxy(t, oneBackend{Addr: be}.toml(), parkAlways)
	c := dialWithDeadline(t, s.addr(), 10*time.Second)
	defer c.Close()
	br := bufio.NewReader(c)
	for i, n := range []int{100000, 200000, 50000, 100000} {
		if i > 0 {
			waitParked(t, s, 1)
		}
		if _, err := fmt.Fprintf(c, "GET /%d HTTP/1.1\r\nHost: x\r\n\r\n", n); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		if err != nil || !bytes.Equal(got, bigBody(n)) {
			t.Fatalf("%d: got %d bytes, %v", n, len(got), err)
		}
	}
}

func contextWithTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

// The bytes of a spliced response are counted as sent, as many as the
// client receives.
func TestSpliceReviewBytesSent(t *testing.T) {
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Path[1:])
		w.Header().Set("Content-Length", strconv.Itoa(n))
		b := bigBody(n)
		_, _ = w.Write(b[:n/4])
		w.(http.Flusher).Flush()
		time.Sleep(2 * time.Millisecond)
		_, _ = w.Write(b[n/4:])
	}))
	s := startOneBackendProxy(t, oneBackend{Addr: be})
	for _, n := range []int{10000, 100000, 1 << 20} {
		before, _ := scrapeMetrics(t, s)
		_, got := exchangeAndClose(t, s.addr(), fmt.Sprintf("GET /%d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", n))
		after, _ := scrapeMetrics(t, s)
		sent := after["portico_http_bytes_sent_total"] - before["portico_http_bytes_sent_total"]
		if int(sent) != got {
			t.Errorf("%d: counted %v bytes sent, the client got %d", n, sent, got)
		}
	}
}

func countPipeFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip(err)
	}
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(l, "pipe:") {
			n++
		}
	}
	return n
}

// Clients that go away in the middle of spliced bodies, and backends that
// do: no pipe is left open beyond the pool's.
func TestSpliceReviewPipesNotLeaked(t *testing.T) {
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(4<<20))
		b := bigBody(64 << 10)
		for i := 0; i < 64; i++ {
			if _, err := w.Write(b); err != nil {
				return
			}
			if r.URL.Path == "/cut" && i == 3 {
				w.(http.Flusher).Flush()
				hj, _ := w.(http.Hijacker)
				if c, _, err := hj.Hijack(); err == nil {
					c.Close()
				}
				return
			}
		}
	}))
	s := startOneBackendProxy(t, oneBackend{Addr: be})
	before := countPipeFDs(t)
	for i := 0; i < 150; i++ {
		path := "/"
		if i%2 == 1 {
			path = "/cut"
		}
		c := dialWithDeadline(t, s.addr(), 5*time.Second)
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path)
		var buf [100 << 10]byte
		_, _ = io.ReadFull(c, buf[:])
		_ = c.(*net.TCPConn).SetLinger(0)
		c.Close()
	}
	// Let the proxy notice the last ones.
	deadline := time.Now().Add(5 * time.Second)
	for s.metrics.conns.Load() != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	after := countPipeFDs(t)
	t.Logf("pipe fds: %d before, %d after", before, after)
	if after-before > 2*cap(splicePipes) {
		t.Errorf("pipe fds: %d before, %d after", before, after)
	}
}

// Interim responses, a header sent apart from its body, a POST: spliced
// bodies intact, the connection reused after each.
func TestSpliceReviewShapes(t *testing.T) {
	const n = 150000
	body := bigBody(n)
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		switch r.URL.Path {
		case "/early":
			w.Header().Set("Link", "</a>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			w.(http.Flusher).Flush()
			time.Sleep(2 * time.Millisecond)
		case "/header-first":
			w.Header().Set("Content-Length", strconv.Itoa(n))
			w.WriteHeader(200)
			w.(http.Flusher).Flush()
			time.Sleep(2 * time.Millisecond)
		}
		w.Header().Set("Content-Length", strconv.Itoa(n))
		_, _ = w.Write(body)
	}))
	s := startOneBackendProxy(t, oneBackend{Addr: be})
	c := dialWithDeadline(t, s.addr(), 10*time.Second)
	defer c.Close()
	br := bufio.NewReader(c)
	for i := 0; i < 3; i++ {
		for _, req := range []string{
			"GET /early HTTP/1.1\r\nHost: x\r\n\r\n",
			"GET /header-first HTTP/1.1\r\nHost: x\r\n\r\n",
			"POST /post HTTP/1.1\r\nHost: x\r\nContent-Length: 70000\r\n\r\n" + strings.Repeat("p", 70000),
			"GET /plain HTTP/1.1\r\nHost: x\r\n\r\n",
		} {
			if _, err := io.WriteString(c, req); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("%.20q: %v", req, err)
			}
			got, err := io.ReadAll(resp.Body)
			if err != nil || resp.StatusCode != 200 || !bytes.Equal(got, body) {
				t.Fatalf("%.20q: %d, got %d bytes, %v", req, resp.StatusCode, len(got), err)
			}
		}
	}
}

// Bytes of a spliced body sent with MSG_MORE are not held back while the
// backend pauses, with a pipe or without one (pipe2 fails: out of
// descriptors; the body is then read and written as before). Bytes held
// back leave at the next retransmission timer, 200 ms on.
func TestSpliceReviewNotHeldBack(t *testing.T) {
	for _, withPipe := range []bool{true, false} {
		t.Run(fmt.Sprint("pipe=", withPipe), func(t *testing.T) {
			if !withPipe {
				old := pipe2
				pipe2 = func([]int, int) error { return syscall.EMFILE }
				defer func() { pipe2 = old }()
				for len(splicePipes) > 0 {
					(<-splicePipes).close()
				}
			}
			for _, first := range []int{5000, 6000, 9000} {
				heldBack(t, first, 64<<10)
			}
		})
	}
}
