package l7

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"testing/iotest"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (a, b net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	a, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b = <-accepted
	if b == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func TestCountConnReadFrom(t *testing.T) {
	for _, tc := range []struct {
		name string
		r    func(p []byte) io.Reader
	}{
		{"one read", func(p []byte) io.Reader { return bytes.NewReader(p) }},
		{"data with EOF", func(p []byte) io.Reader { return iotest.DataErrReader(bytes.NewReader(p)) }},
		{"one byte at a time", func(p []byte) io.Reader { return iotest.OneByteReader(bytes.NewReader(p)) }},
		{"limited", func(p []byte) io.Reader {
			return io.LimitReader(io.MultiReader(bytes.NewReader(p), newPayload(1<<20)), int64(len(p)))
		}},
	} {
		for _, size := range []int{0, 1, copyBufSize - 1, copyBufSize, 3*copyBufSize + 7} {
			t.Run(fmt.Sprintf("%s/size=%d", tc.name, size), func(t *testing.T) {
				if tc.name == "one byte at a time" && size > copyBufSize {
					t.Skip("slow")
				}
				want, _ := io.ReadAll(newPayload(int64(size)))
				a, b := tcpPair(t)
				m := newServerMetrics(metrics.NewSet())
				c := &countConn{Conn: a, m: m}
				got := make(chan []byte, 1)
				go func() {
					p, _ := io.ReadAll(b)
					got <- p
				}()
				n, err := c.ReadFrom(tc.r(want))
				if err != nil {
					t.Fatalf("got error %v; want nil", err)
				}
				if n != int64(size) {
					t.Errorf("got n %d; want %d", n, size)
				}
				if sent := m.bytesOut.Get(); sent != uint64(size) {
					t.Errorf("got %d bytes counted; want %d", sent, size)
				}
				a.Close()
				if p := <-got; !bytes.Equal(p, want) {
					t.Errorf("got %d bytes (equal: false); want %d", len(p), len(want))
				}
			})
		}
	}
}

func TestCountConnReadFromErrors(t *testing.T) {
	t.Run("read error", func(t *testing.T) {
		a, b := tcpPair(t)
		go io.Copy(io.Discard, b)
		c := &countConn{Conn: a, m: newServerMetrics(metrics.NewSet())}
		boom := errors.New("boom")
		n, err := c.ReadFrom(io.MultiReader(bytes.NewReader([]byte("abc")), iotest.ErrReader(boom)))
		if n != 3 || !errors.Is(err, boom) {
			t.Errorf("got %d, %v; want 3, %v", n, err, boom)
		}
	})
	t.Run("write error", func(t *testing.T) {
		a, _ := tcpPair(t)
		c := &countConn{Conn: a, m: newServerMetrics(metrics.NewSet())}
		a.Close()
		n, err := c.ReadFrom(bytes.NewReader([]byte("abc")))
		if n != 0 || !errors.Is(err, net.ErrClosed) {
			t.Errorf("got %d, %v; want 0, %v", n, err, net.ErrClosed)
		}
	})
}

// TestStreamedBodySizes sends bodies around the sizes where the copy
// changes hands (fasthttp's 4 KiB writer, its 8 KiB read-ahead, the 64 KiB
// copy buffer) through the proxy both ways, with and without a
// Content-Length, and checks every byte.
func TestStreamedBodySizes(t *testing.T) {
	sizes := []int64{0, 1, 4095, 4096, 4097, 8192, 8193, copyBufSize, copyBufSize + 1, 3*copyBufSize + 7}
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			n, sum, err := hashReader(r.Body)
			fmt.Fprintf(w, "%d %s %v", n, sum, err)
			return
		}
		size, _ := strconv.ParseInt(r.URL.Query().Get("size"), 10, 64)
		downloadHandler(size)(w, r)
	}))
	s := startOneBackendProxy(t, oneBackend{Addr: be})
	client := streamClient(t)
	for _, framing := range []string{"content-length", "chunked"} {
		for _, size := range sizes {
			t.Run(fmt.Sprintf("download/%s/size=%d", framing, size), func(t *testing.T) {
				resp, err := client.Get(fmt.Sprintf("http://%s/d?size=%d&framing=%s", s.addr(), size, framing))
				if err != nil {
					t.Fatal(err)
				}
				n, sum, err := hashReader(resp.Body)
				resp.Body.Close()
				if err != nil {
					t.Fatalf("read body after %d bytes: %v", n, err)
				}
				if want := payloadDigest(t, size); n != size || sum != want {
					t.Errorf("got %d bytes sha256 %s; want %d bytes sha256 %s", n, sum, size, want)
				}
			})
			t.Run(fmt.Sprintf("upload/%s/size=%d", framing, size), func(t *testing.T) {
				req, err := http.NewRequest(http.MethodPost, "http://"+s.addr()+"/u", newPayload(size))
				if err != nil {
					t.Fatal(err)
				}
				req.ContentLength = size
				if framing == "chunked" {
					req.ContentLength = -1
				}
				resp, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				got, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if want := fmt.Sprintf("%d %s <nil>", size, payloadDigest(t, size)); err != nil || string(got) != want {
					t.Errorf("backend got %q, %v; want %q", got, err, want)
				}
			})
		}
	}
}

// Regression: a streamed body with a Content-Length went to the client
// through fasthttp's 4 KiB writer buffer, which is flushed only when full,
// so up to 4 KiB of a body that arrived in pieces waited for the next piece
// (forever, for a backend that waits for its client). What has arrived from
// the backend now reaches the client without waiting for more.
func TestStreamedBodyNotHeldBack(t *testing.T) {
	for _, tc := range []struct{ first, total int }{
		{10000, 20000},
		// Less than fasthttp's 4 KiB writer holds: the header goes first.
		{1, 4096},
		{100, 10000},
		{3000, 20000},   // spliced
		{100, 64 << 10}, // spliced
	} {
		t.Run(fmt.Sprintf("%d-of-%d", tc.first, tc.total), func(t *testing.T) { heldBack(t, tc.first, tc.total) })
	}
}

// heldBack has a backend send first bytes of a total-byte Content-Length
// body, then wait until the client has them: they must reach it at once,
// intact, and then the rest.
func heldBack(t *testing.T, first, total int) {
	t.Helper()
	sent := make(chan struct{})
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(total))
		_, _ = w.Write(bytes.Repeat([]byte("a"), first))
		w.(http.Flusher).Flush()
		select {
		case <-sent:
		case <-time.After(10 * time.Second):
		}
		_, _ = w.Write(bytes.Repeat([]byte("b"), total-first))
	}))
	s := startOneBackendProxy(t, oneBackend{Addr: be})
	c := dialWithDeadline(t, s.addr(), 5*time.Second)
	defer c.Close()
	if _, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	got := make([]byte, first)
	t0 := time.Now()
	if n, err := io.ReadFull(resp.Body, got); err != nil {
		t.Fatalf("got %d bytes of the first %d before the backend sent more: %v", n, first, err)
	}
	if d := time.Since(t0); d > 150*time.Millisecond {
		t.Errorf("first %d: they came %v after the header, while the backend paused", first, d)
	}
	close(sent)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	rest, err := io.ReadAll(resp.Body)
	want := append(bytes.Repeat([]byte("a"), first), bytes.Repeat([]byte("b"), total-first)...)
	if err != nil || !bytes.Equal(append(got, rest...), want) {
		t.Errorf("first %d: got %d more bytes, %v; want %d, intact", first, len(rest), err, total-first)
	}
}
