package l7

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// chunked is an origin handler that sends body without Content-Length, in
// two flushed pieces, so that it goes out chunked.
func chunked(body string, kv ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i < len(kv); i += 2 {
			w.Header().Add(kv[i], kv[i+1])
		}
		half := len(body) / 2
		io.WriteString(w, body[:half])
		w.(http.Flusher).Flush()
		io.WriteString(w, body[half:])
	}
}

// noDate makes net/http send no Date.
func noDate(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Date"] = nil
		h(w, r)
	}
}

// wantDate checks the response's one Date: want, or any valid date when
// want is "".
func wantDate(want string) func(t *testing.T, r *http.Response, _ *origin) {
	return func(t *testing.T, r *http.Response, _ *origin) {
		t.Helper()
		got := r.Header.Values("Date")
		if len(got) != 1 {
			t.Fatalf("Date: got %q; want one", got)
		}
		if want == "" {
			if _, err := http.ParseTime(got[0]); err != nil {
				t.Errorf("Date: got %q; want an HTTP date", got[0])
			}
			return
		}
		if got[0] != want {
			t.Errorf("Date: got %q; want %q", got[0], want)
		}
	}
}

// TestCacheStreamsWhileStoring: a miss's body reaches the client while the
// origin is still sending it, is stored once it ends, and a request that
// arrived meanwhile waits for it and is answered from the cache.
func TestCacheStreamsWhileStoring(t *testing.T) {
	s, o := startCacheProxy(t, nil, "", "")
	release := make(chan struct{})
	o.set(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=100")
		io.WriteString(w, "first,")
		w.(http.Flusher).Flush()
		<-release
		io.WriteString(w, "second")
	})
	resp, err := cacheClient.Get("http://" + s.addr() + "/s")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	first := make([]byte, len("first,"))
	if _, err := io.ReadFull(br, first); err != nil || string(first) != "first," {
		t.Fatalf("first piece: got %q, %v; want %q before the origin ends", first, err, "first,")
	}
	// A second request for the key waits for the one in flight.
	var wg sync.WaitGroup
	var xcache, body string
	wg.Add(1)
	go func() {
		defer wg.Done()
		r, b := get(t, s, "GET", "/s")
		xcache, body = r.Header.Get("X-Cache"), b
	}()
	for s.rcache.c.Misses.Get() < 2 {
		time.Sleep(time.Millisecond)
	}
	close(release)
	rest, err := io.ReadAll(br)
	if err != nil || string(rest) != "second" {
		t.Fatalf("rest: got %q, %v; want second", rest, err)
	}
	wg.Wait()
	if xcache != "HIT" || body != "first,second" {
		t.Errorf("waiter: got %s %q; want HIT %q", xcache, body, "first,second")
	}
	if got := o.hits.Load(); got != 1 {
		t.Errorf("origin requests: got %d; want 1", got)
	}
}

// TestCacheCutBodyNotStored: a body the origin cuts short (declared
// length or chunked) is not stored, and a waiter goes upstream itself.
func TestCacheCutBodyNotStored(t *testing.T) {
	for _, framing := range []string{"Content-Length: 10\r\n", "Transfer-Encoding: chunked\r\n"} {
		t.Run(strings.Fields(framing)[0], func(t *testing.T) {
			s, o := startCacheProxy(t, nil, "", "")
			o.set(func(w http.ResponseWriter, r *http.Request) {
				conn, bw, err := w.(http.Hijacker).Hijack()
				if err != nil {
					t.Error(err)
					return
				}
				defer conn.Close()
				fmt.Fprintf(bw, "HTTP/1.1 200 OK\r\nCache-Control: max-age=100\r\n%s\r\n", framing)
				if strings.HasPrefix(framing, "Transfer") {
					bw.WriteString("5\r\n01234\r\n")
				} else {
					bw.WriteString("01234")
				}
				bw.Flush()
			})
			req, _ := http.NewRequest("GET", "http://"+s.addr()+"/cut", nil)
			if resp, err := cacheClient.Do(req); err == nil {
				if b, err := io.ReadAll(resp.Body); err == nil {
					t.Errorf("cut body read whole: %q", b)
				}
				resp.Body.Close()
			}
			o.set(answer(200, "whole", "Cache-Control", "max-age=100"))
			if resp, body := get(t, s, "GET", "/cut"); resp.Header.Get("X-Cache") != "MISS" || body != "whole" {
				t.Errorf("after the cut: got %s %q; want MISS whole", resp.Header.Get("X-Cache"), body)
			}
			if resp, _ := get(t, s, "GET", "/cut"); resp.Header.Get("X-Cache") != "HIT" {
				t.Errorf("then: got %s; want HIT", resp.Header.Get("X-Cache"))
			}
		})
	}
}

// TestCacheBudgetReload: a reload's max_bytes resizes the running cache; a
// smaller budget evicts at once.
func TestCacheBudgetReload(t *testing.T) {
	const budget = 4 << 20
	s, o := startCacheProxy(t, nil, fmt.Sprintf("max_bytes = %d", budget), "max_object_bytes = 65536")
	o.set(answer(200, strings.Repeat("x", 32<<10), "Cache-Control", "max-age=100"))
	for i := 0; i < 100; i++ {
		get(t, s, "GET", fmt.Sprintf("/b%d", i))
	}
	c := s.rcache.c
	c.CleanUp()
	if c.WeightedSize() < 2<<20 {
		t.Fatalf("stored %d bytes; want over 2 MiB before the resize", c.WeightedSize())
	}
	s.SetCacheBudget(1 << 20)
	c.CleanUp()
	if got := c.WeightedSize(); got > 1<<20 {
		t.Errorf("after the resize: stored %d bytes; want <= %d", got, 1<<20)
	}
	if got := c.MaxBytes(); got != 1<<20 {
		t.Errorf("MaxBytes: got %d; want %d", got, 1<<20)
	}
}

// TestDateOnLocalResponses: with NoDefaultDate, answers the proxy makes
// itself still carry one Date.
func TestDateOnLocalResponses(t *testing.T) {
	s, _ := startCacheProxy(t, nil, "", "")
	resp, _ := get(t, s, "GET", "/none", "Cache-Control", "only-if-cached")
	if resp.StatusCode != 504 {
		t.Fatalf("status: got %d; want 504", resp.StatusCode)
	}
	wantDate("")(t, resp, nil)

	rs := startProxy(t, `
[http]
[[http.listeners]]
address = "127.0.0.1:0"
[[http.routes]]
redirect = { scheme = "https", status = 301 }
`)
	r, _ := rawRoundTrip(t, rs.addr(), "GET /x HTTP/1.1\r\nHost: h.test\r\n\r\n")
	if r.StatusCode != 301 {
		t.Fatalf("status: got %d; want 301", r.StatusCode)
	}
	wantDate("")(t, r, nil)
	r, _ = rawRoundTrip(t, rs.addr(), "GET /x HTTP/1.1\r\n\r\n")
	wantDate("")(t, r, nil)
}
