package l7

import (
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// wantAnswer checks a response's status and one-line reason.
func wantAnswer(t *testing.T, resp *http.Response, body string, status int, reason string) {
	t.Helper()
	if resp.StatusCode != status || body != reason+"\n" {
		t.Fatalf("got %d %q; want %d %q", resp.StatusCode, body, status, reason+"\n")
	}
}

func TestErrorHeaderTooLarge(t *testing.T) {
	be := startCheckBackend(t)
	s := startOneBackendProxy(t, oneBackend{Addr: be.addr, Listener: "max_header_bytes = 1024"})
	f := func(name, raw string) {
		t.Helper()
		rc := dialCheck(t, s.addr())
		resp, body := rc.exchange(raw)
		wantAnswer(t, resp, body, 431, "request header block too large")
		if n := be.seen.Load(); n != 0 {
			t.Fatalf("%s: backend saw %d requests; want 0", name, n)
		}
	}
	f("one long field", "GET / HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("a", 2000)+"\r\n\r\n")
	f("many fields", "GET / HTTP/1.1\r\nHost: x\r\n"+strings.Repeat("X-Field: abcdefghij\r\n", 100)+"\r\n")
	// Just under the limit still works.
	rc := dialCheck(t, s.addr())
	if resp, _ := rc.exchange("GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 900) + "\r\n\r\n"); resp.StatusCode != 200 {
		t.Fatalf("header block under the limit: got %d; want 200", resp.StatusCode)
	}
}

func TestErrorBodyTooLarge(t *testing.T) {
	be := startCheckBackend(t)
	s := startOneBackendProxy(t, oneBackend{Addr: be.addr, Listener: "max_body_bytes = 10"})
	t.Run("content-length", func(t *testing.T) {
		rc := dialCheck(t, s.addr())
		resp, body := rc.exchange("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world")
		wantAnswer(t, resp, body, 413, "request body too large")
		if n := be.seen.Load(); n != 0 {
			t.Fatalf("backend saw %d requests; want 0", n)
		}
	})
	t.Run("chunked", func(t *testing.T) {
		complete := be.complete.Load()
		rc := dialCheck(t, s.addr())
		resp, body := rc.exchange("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nhello \r\n6\r\nworld!\r\n0\r\n\r\n")
		wantAnswer(t, resp, body, 413, "request body too large")
		if !rc.closed() {
			t.Fatal("connection still open after 413 on a streamed body; want it closed")
		}
		if n := be.complete.Load() - complete; n != 0 {
			t.Fatalf("backend read %d complete requests; want 0", n)
		}
	})
	t.Run("at-limit", func(t *testing.T) {
		rc := dialCheck(t, s.addr())
		resp, body := rc.exchange("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n")
		if want := `POST / host=x xfh=x body="helloworld"`; resp.StatusCode != 200 || body != want {
			t.Fatalf("got %d %q; want 200 %q", resp.StatusCode, body, want)
		}
	})
}

func TestErrorHeaderTimeout(t *testing.T) {
	be := startCheckBackend(t)
	s := startOneBackendProxy(t, oneBackend{Addr: be.addr, Listener: `header_timeout = "200ms"`})
	rc := dialCheck(t, s.addr())
	resp, body := rc.exchange("GET / HTTP/1.1\r\nHost: x\r\nX-Half: ") // bounded by the connection's deadline
	wantAnswer(t, resp, body, 408, "request header timeout")
	if !rc.closed() {
		t.Fatal("connection still open after 408; want it closed")
	}
}

func TestErrorBodyTimeout(t *testing.T) {
	be := startCheckBackend(t)
	// header_timeout is long: the 408 must come from body_timeout.
	s := startOneBackendProxy(t, oneBackend{Addr: be.addr, Listener: `header_timeout = "20s"
body_timeout = "200ms"`})
	tests := []struct {
		name, raw, reason string
	}{
		// fasthttp reads up to 8 KiB of a Content-Length body before the
		// handler runs; the stall is within that.
		{"content-length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello", "request timeout"},
		// Past the read-ahead, portico's body reader times out.
		{"content-length-large", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 20000\r\n\r\n" + strings.Repeat("a", 10000), "request body timeout"},
		{"chunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n5\r\nwo", "request body timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			complete := be.complete.Load()
			rc := dialCheck(t, s.addr())
			start := time.Now()
			resp, body := rc.exchange(tt.raw)
			wantAnswer(t, resp, body, 408, tt.reason)
			if d := time.Since(start); d > 10*time.Second {
				t.Fatalf("408 after %v; want it after about body_timeout", d)
			}
			if n := be.complete.Load() - complete; n != 0 {
				t.Fatalf("backend read %d complete requests; want 0", n)
			}
		})
	}
}

func TestErrorBackendRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	s := startOneBackendProxy(t, oneBackend{Addr: addr})
	rc := dialCheck(t, s.addr())
	resp, body := rc.exchange("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	wantAnswer(t, resp, body, 502, "backend refused connection")
}

func TestErrorPoolFull(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(entered)
			<-release
		}
		io.WriteString(w, "ok")
	}))
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	s := startOneBackendProxy(t, oneBackend{Addr: be, Upstream: `max_conns = 1
max_conn_wait = "100ms"`})
	slow := dialCheck(t, s.addr())
	slow.send("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
	select {
	case <-entered: // the only backend connection is now busy
	case <-time.After(10 * time.Second):
		t.Fatal("slow request never reached the backend")
	}
	rc := dialCheck(t, s.addr())
	resp, body := rc.exchange("GET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
	wantAnswer(t, resp, body, 503, "backend connection pool full")

	once.Do(func() { close(release) })
	if resp, body := slow.response(); resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("slow request: got %d %q; want 200 \"ok\"", resp.StatusCode, body)
	}
}

func TestErrorBackendTimeout(t *testing.T) {
	release := make(chan struct{})
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(release) }) // runs before the backend closes
	s := startOneBackendProxy(t, oneBackend{Addr: be, Upstream: `response_timeout = "200ms"`})
	rc := dialCheck(t, s.addr())
	resp, body := rc.exchange("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	wantAnswer(t, resp, body, 504, "backend timeout")
}

func TestErrorNoRoute(t *testing.T) {
	be := startCheckBackend(t)
	s := startOneBackendProxy(t, oneBackend{Addr: be.addr, Route: `match.hosts = ["only.example"]`})
	rc := dialCheck(t, s.addr())
	resp, body := rc.exchange("GET / HTTP/1.1\r\nHost: other.example\r\n\r\n")
	wantAnswer(t, resp, body, 404, "no route matches this request")
	if n := be.seen.Load(); n != 0 {
		t.Fatalf("backend saw %d requests; want 0", n)
	}
	// The connection stays usable: a 404 is not a framing problem.
	if resp, _ := rc.exchange("GET / HTTP/1.1\r\nHost: only.example\r\n\r\n"); resp.StatusCode != 200 {
		t.Fatalf("after 404: got %d; want 200", resp.StatusCode)
	}
}
