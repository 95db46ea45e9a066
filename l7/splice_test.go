package l7

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// A spliced body whose backend pauses right after the bytes that came with
// the header: those bytes reach the client during the pause (the ones sent
// with MSG_MORE are pushed once the backend has nothing more). The first
// part is at least 4 KiB: fasthttp's writer holds the header and the body
// until its 4 KiB buffer is full, spliced or not (bufio.Writer.ReadFrom).
func TestSplicedBodyNotHeldBack(t *testing.T) {
	for _, first := range []int{5000, 6000, 7000, 9000, 20000} {
		t.Run(strconv.Itoa(first), func(t *testing.T) { heldBack(t, first, 64<<10) })
	}
}

// Responses of every size, spliced or not, on one client connection and
// the backend connections it reuses, come through intact and in order.
func TestSplicedBodiesKeepAlive(t *testing.T) {
	body := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i*7 + n)
		}
		return b
	}
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Path[1:])
		w.Header().Set("Content-Length", strconv.Itoa(n))
		b := body(n)
		if r.URL.Query().Get("slow") != "" && n > 1000 { // in pieces
			_, _ = w.Write(b[:n/3])
			w.(http.Flusher).Flush()
			time.Sleep(5 * time.Millisecond)
			_, _ = w.Write(b[n/3 : 2*n/3])
			w.(http.Flusher).Flush()
			time.Sleep(5 * time.Millisecond)
			b = b[2*n/3:]
		}
		if r.Method != http.MethodHead {
			_, _ = w.Write(b)
		}
	}))
	s := startOneBackendProxy(t, oneBackend{Addr: be})
	c := dialWithDeadline(t, s.addr(), 10*time.Second)
	defer c.Close()
	br := bufio.NewReader(c)
	sizes := []int{0, 1, 100, 4000, 8192, 16383, 16384, 16385, 20000, 65535, 65536, 65537, 100000, 300000, 1 << 20}
	for _, slow := range []string{"", "?slow=1"} {
		for _, method := range []string{"GET", "HEAD", "GET"} {
			for _, n := range sizes {
				if _, err := fmt.Fprintf(c, "%s /%d%s HTTP/1.1\r\nHost: x\r\n\r\n", method, n, slow); err != nil {
					t.Fatal(err)
				}
				resp, err := http.ReadResponse(br, &http.Request{Method: method})
				if err != nil {
					t.Fatalf("%s %d%s: %v", method, n, slow, err)
				}
				got, err := io.ReadAll(resp.Body)
				if err != nil {
					t.Fatalf("%s %d%s: %v", method, n, slow, err)
				}
				want := body(n)
				if method == "HEAD" {
					want = nil
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("%s %d%s: got %d bytes, not the %d sent", method, n, slow, len(got), len(want))
				}
			}
		}
	}
}

// A backend that closes before the end of a spliced body: the client gets
// no more than was sent and never a complete response; the next request
// on a new connection still works. A header larger than headerReadCap
// still comes through whole, with its body.
func TestSplicedBodyTruncatedAndLargeHeader(t *testing.T) {
	const total = 200000
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(total))
		if r.URL.Path == "/big-header" {
			w.Header().Set("X-Big", string(bytes.Repeat([]byte("h"), 12000)))
			_, _ = w.Write(bytes.Repeat([]byte("c"), total))
			return
		}
		_, _ = w.Write(bytes.Repeat([]byte("a"), 50000))
		w.(http.Flusher).Flush()
		time.Sleep(20 * time.Millisecond)
		hj, ok := w.(http.Hijacker)
		if !ok {
			return
		}
		conn, _, err := hj.Hijack()
		if err == nil {
			_ = conn.Close()
		}
	}))
	s := startOneBackendProxy(t, oneBackend{Addr: be})

	c := dialWithDeadline(t, s.addr(), 5*time.Second)
	defer c.Close()
	if _, err := c.Write([]byte("GET /cut HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	if err == nil || len(got) >= total || !bytes.Equal(got, bytes.Repeat([]byte("a"), len(got))) {
		t.Errorf("cut body: got %d bytes, err %v; want fewer than %d, all 'a', and an error", len(got), err, total)
	}

	c2 := dialWithDeadline(t, s.addr(), 5*time.Second)
	defer c2.Close()
	if _, err := c2.Write([]byte("GET /big-header HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	resp, err = http.ReadResponse(bufio.NewReader(c2), nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err = io.ReadAll(resp.Body)
	if err != nil || len(resp.Header.Get("X-Big")) != 12000 || !bytes.Equal(got, bytes.Repeat([]byte("c"), total)) {
		t.Errorf("big header: got %d bytes, header %d, err %v", len(got), len(resp.Header.Get("X-Big")), err)
	}
}
