package l7

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// streamSize is the body size of the big transfers.
const streamSize = 512 << 20

// maxHeapGrowth is how far the heap may grow above its level before a big
// transfer; a proxy that buffered a body would exceed it many times over.
const maxHeapGrowth = 64 << 20

// payload is a deterministic byte stream of a given length: ChaCha8 with a
// fixed seed, so every run and every side produces the same bytes.
type payload struct {
	r    *rand.ChaCha8
	left int64
}

func newPayload(n int64) *payload {
	return &payload{r: rand.NewChaCha8([32]byte{'p', 'o', 'r', 't', 'i', 'c', 'o'}), left: n}
}

func (p *payload) Read(b []byte) (int, error) {
	if p.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(b)) > p.left {
		b = b[:p.left]
	}
	n, _ := p.r.Read(b)
	p.left -= int64(n)
	return n, nil
}

var payloadDigests sync.Map // int64 -> string

// payloadDigest is the hex SHA-256 of newPayload(n), computed once per size.
func payloadDigest(t testing.TB, n int64) string {
	t.Helper()
	if d, ok := payloadDigests.Load(n); ok {
		return d.(string)
	}
	h := sha256.New()
	if _, err := io.CopyBuffer(h, newPayload(n), make([]byte, 64<<10)); err != nil {
		t.Fatal(err)
	}
	d := hex.EncodeToString(h.Sum(nil))
	payloadDigests.Store(n, d)
	return d
}

// hashReader reads r to the end and returns its length and hex SHA-256.
func hashReader(r io.Reader) (int64, string, error) {
	h := sha256.New()
	n, err := io.CopyBuffer(h, r, make([]byte, 64<<10))
	return n, hex.EncodeToString(h.Sum(nil)), err
}

// heapWatch samples the live heap every 2ms from a goroutine, since the
// proxy runs in the test process.
type heapWatch struct {
	base, peak uint64
	stop, done chan struct{}
}

const heapObjects = "/memory/classes/heap/objects:bytes"

func readHeap(s []metrics.Sample) uint64 {
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// watchHeap collects garbage, records the heap as the baseline and starts
// sampling.
func watchHeap() *heapWatch {
	s := []metrics.Sample{{Name: heapObjects}}
	runtime.GC()
	w := &heapWatch{base: readHeap(s), stop: make(chan struct{}), done: make(chan struct{})}
	w.peak = w.base
	go func() {
		defer close(w.done)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			if v := readHeap(s); v > w.peak {
				w.peak = v
			}
			select {
			case <-w.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return w
}

// growth stops sampling and returns how far the peak rose above the baseline.
func (w *heapWatch) growth() uint64 {
	close(w.stop)
	<-w.done
	return w.peak - w.base
}

func checkHeap(t *testing.T, w *heapWatch, what string, start time.Time, size int64) {
	t.Helper()
	d := time.Since(start)
	g := w.growth()
	t.Logf("%s: %d MiB in %v (%.0f MiB/s); heap baseline %.1f MiB, peak %.1f MiB above it",
		what, size>>20, d.Round(time.Millisecond), float64(size)/(1<<20)/d.Seconds(), float64(w.base)/(1<<20), float64(g)/(1<<20))
	if g > maxHeapGrowth {
		t.Errorf("heap grew %d MiB during the transfer; want at most %d MiB", g>>20, maxHeapGrowth>>20)
	}
}

// streamClient returns an HTTP client for one test; its idle connections are
// closed when the test ends.
// getDigest GETs url and returns the length and sha256 of the response body
// and the error that ended reading it, as hashReader does.
func getDigest(t *testing.T, ctx context.Context, client *http.Client, url string) (int64, string, error) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return hashReader(resp.Body)
}

func streamClient(t *testing.T) *http.Client {
	tr := &http.Transport{DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// bigTransferTimeouts lets a 512 MiB body take up to the client's deadline
// on a slow (race-detector, shared) machine: fasthttp applies the upstream
// timeouts to a whole body, not to each read or write (see
// TestStreamSlowerThanUpstreamTimeouts).
const bigTransferTimeouts = "response_timeout = \"2m\"\nwrite_timeout = \"2m\""

func TestStreamUpload(t *testing.T) {
	const size = streamSize
	want := payloadDigest(t, size)
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, sum, err := hashReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(w, "%d %s %d %s", n, sum, r.ContentLength, strings.Join(r.TransferEncoding, ","))
	}))
	s := startOneBackendProxy(t, oneBackend{Addr: be, Upstream: bigTransferTimeouts})
	client := streamClient(t)
	for _, tc := range []struct {
		name    string
		length  int64 // request Content-Length; -1 sends it chunked
		framing string
	}{
		{"content-length", size, strconv.FormatInt(size, 10) + " "},
		{"chunked", -1, "-1 chunked"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+s.addr()+"/upload", newPayload(size))
			if err != nil {
				t.Fatal(err)
			}
			req.ContentLength = tc.length
			w := watchHeap()
			start := time.Now()
			resp, err := client.Do(req)
			if err != nil {
				w.growth()
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			checkHeap(t, w, "upload "+tc.name, start, size)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("got status %d %q; want 200", resp.StatusCode, body)
			}
			if got, want := string(body), fmt.Sprintf("%d %s %s", size, want, tc.framing); got != want {
				t.Errorf("backend got %q; want %q (length, sha256, Content-Length, Transfer-Encoding)", got, want)
			}
		})
	}
}

// downloadHandler serves newPayload(size), with a Content-Length
// unless the query asks for chunked.
func downloadHandler(size int64) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("framing") != "chunked" {
			w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = io.CopyBuffer(w, newPayload(size), make([]byte, 32<<10))
	}
}

func TestStreamDownload(t *testing.T) {
	const size = streamSize
	want := payloadDigest(t, size)
	be := startBackend(t, downloadHandler(size))
	s := startOneBackendProxy(t, oneBackend{Addr: be, Upstream: bigTransferTimeouts})
	client := streamClient(t)
	for _, tc := range []struct {
		name    string
		query   string
		length  int64 // the Content-Length the client must see; -1 for chunked
		chunked bool
	}{
		{"content-length", "", size, false},
		{"chunked", "?framing=chunked", -1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.addr()+"/download"+tc.query, nil)
			if err != nil {
				t.Fatal(err)
			}
			w := watchHeap()
			start := time.Now()
			resp, err := client.Do(req)
			if err != nil {
				w.growth()
				t.Fatal(err)
			}
			n, sum, err := hashReader(resp.Body)
			resp.Body.Close()
			checkHeap(t, w, "download "+tc.name, start, size)
			if err != nil {
				t.Fatalf("read body after %d bytes: %v", n, err)
			}
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("got status %d; want 200", resp.StatusCode)
			}
			if resp.ContentLength != tc.length {
				t.Errorf("got Content-Length %d; want %d", resp.ContentLength, tc.length)
			}
			if chunked := len(resp.TransferEncoding) > 0 && resp.TransferEncoding[0] == "chunked"; chunked != tc.chunked {
				t.Errorf("got Transfer-Encoding %q; want chunked=%v", resp.TransferEncoding, tc.chunked)
			}
			if n != size || sum != want {
				t.Errorf("got %d bytes sha256 %s; want %d bytes sha256 %s", n, sum, size, want)
			}
		})
	}
}

// startCountingBackend is startBackend that also counts the connections the
// backend accepts.
func startCountingBackend(t *testing.T, h http.Handler) (addr string, conns *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conns = new(atomic.Int64)
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ConnState: func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), conns
}

// upstreamClient returns the proxy's client for the backend at addr.
func upstreamClient(t *testing.T, s *Server, addr string) interface{ ConnsCount() int } {
	t.Helper()
	s.clientsMu.Lock()
	defer s.clientsMu.Unlock()
	for k, c := range s.clients {
		if k.addr == addr {
			return c
		}
	}
	t.Fatalf("no upstream client for %s", addr)
	return nil
}

// upstreamErrors sums the proxy's upstream error counters over every pool,
// backend and kind.
func upstreamErrors(s *Server) uint64 {
	var n uint64
	for _, rt := range s.snap.Load().router.routes {
		if rt.pool == nil {
			continue
		}
		for _, kinds := range rt.pool.errors {
			for _, c := range kinds {
				n += c.(interface{ Get() uint64 }).Get()
			}
		}
	}
	return n
}

// TestStreamedResponseReleasesUpstreamConn: with one upstream connection
// allowed, sequential streamed responses all succeed on that one connection,
// so each is returned to the pool when its body ends.
func TestStreamedResponseReleasesUpstreamConn(t *testing.T) {
	const size = 256 << 10
	be, conns := startCountingBackend(t, downloadHandler(size))
	s := startOneBackendProxy(t, oneBackend{Addr: be, Upstream: "max_conns = 1\nmax_conn_wait = \"2s\""})
	client := streamClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	want := payloadDigest(t, size)
	for i := range 50 {
		q := ""
		if i%2 == 1 {
			q = "?framing=chunked"
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.addr()+"/"+q, nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		n, sum, err := hashReader(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || n != size || sum != want {
			t.Fatalf("request %d: got status %d, %d bytes, sha256 %s, err %v; want 200, %d bytes, %s", i, resp.StatusCode, n, sum, err, size, want)
		}
	}
	if got := conns.Load(); got != 1 {
		t.Errorf("backend accepted %d connections; want 1 (kept alive and reused)", got)
	}
}

// fasthttpBackground are goroutines that fasthttp keeps after a request is
// done: idle server workers, the worker pool's cleaner (which sleeps out its
// 10s period even after the server stops), the client's idle-connection
// cleaner, and the process-wide Date updater and dialer DNS cache cleaner
// started by the first server and the first dial.
var fasthttpBackground = []goleak.Option{
	goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).workerFunc"),
	goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
	goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"),
	goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
	goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*TCPDialer).tcpAddrsClean"),
}

// TestStreamClientDisconnectMidDownload: a client that goes away in the
// middle of a streamed download makes the proxy close the backend
// connection (it cannot be reused with the body half read) and leaves no
// goroutine behind.
func TestStreamClientDisconnectMidDownload(t *testing.T) {
	handlerDone := make(chan error, 1)
	be, _ := startCountingBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.FormatInt(1<<40, 10))
		_, err := io.CopyBuffer(w, newPayload(1<<40), make([]byte, 32<<10))
		handlerDone <- err
	}))
	s := startOneBackendProxy(t, oneBackend{Addr: be})
	leakOpts := append([]goleak.Option{goleak.IgnoreCurrent()}, fasthttpBackground...)

	c := dialWithDeadline(t, s.addr(), 30*time.Second)
	if _, err := io.WriteString(c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.ContentLength != 1<<40 {
		t.Fatalf("got status %d length %d; want 200 length %d", resp.StatusCode, resp.ContentLength, int64(1)<<40)
	}
	if _, err := io.CopyN(io.Discard, resp.Body, 4<<20); err != nil {
		t.Fatal(err)
	}
	c.Close()

	select {
	case err := <-handlerDone:
		if err == nil {
			t.Fatal("backend wrote 1 TiB; want its write to fail once the proxy drops the connection")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("backend still writing 20s after the client left; the proxy kept the upstream connection")
	}
	// The proxy closes the upstream connection before the backend notices, so
	// its count is already down; no signal exists for it, so poll briefly.
	uc := upstreamClient(t, s, be)
	for deadline := time.Now().Add(5 * time.Second); uc.ConnsCount() != 0; {
		if time.Now().After(deadline) {
			t.Fatalf("upstream client has %d connections; want 0", uc.ConnsCount())
		}
		time.Sleep(10 * time.Millisecond)
	}
	goleak.VerifyNone(t, leakOpts...)
}

// slowReader yields n bytes of newPayload(n) in pieces, pausing between
// them, so that a transfer takes about pieces*pause in total.
type slowReader struct {
	p      *payload
	piece  int
	pause  time.Duration
	notYet bool
}

func (r *slowReader) Read(b []byte) (int, error) {
	if r.notYet {
		time.Sleep(r.pause)
	}
	r.notYet = true
	if len(b) > r.piece {
		b = b[:r.piece]
	}
	return r.p.Read(b)
}

// TestStreamSlowerThanUpstreamTimeouts pins upstream.response_timeout and
// write_timeout as documented: they bound each read of a response body and
// each write of a request body, not the whole transfer, so a body that keeps
// moving may take longer than either.
func TestStreamSlowerThanUpstreamTimeouts(t *testing.T) {
	const size, pieces, pause = 64 << 10, 8, 250 * time.Millisecond // 2s in all
	want := payloadDigest(t, size)
	stop := make(chan struct{})
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/stall-head":
			<-stop
			return
		case "/stall-body":
			w.Header().Set("Content-Length", strconv.Itoa(size))
			_, _ = io.CopyN(w, newPayload(size), size/2)
			http.NewResponseController(w).Flush()
			<-stop
			return
		}
		if r.Method == http.MethodPost {
			n, sum, err := hashReader(r.Body)
			fmt.Fprintf(w, "%d %s %v", n, sum, err)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(size))
		rc := http.NewResponseController(w)
		buf := make([]byte, size/pieces)
		p := newPayload(size)
		for i := 0; i < pieces; i++ {
			if i > 0 {
				time.Sleep(pause)
			}
			n, _ := p.Read(buf)
			if _, err := w.Write(buf[:n]); err != nil {
				return
			}
			_ = rc.Flush()
		}
	}))
	t.Cleanup(func() { close(stop) }) // before the backend closes
	s := startOneBackendProxy(t, oneBackend{Addr: be, Upstream: "response_timeout = \"1s\"\nwrite_timeout = \"1s\""})
	client := streamClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// The timeouts still cut a backend that stops sending.
	t.Run("no response", func(t *testing.T) {
		start := time.Now()
		if st, body := doRequest(t, client, http.MethodGet, "http://"+s.addr()+"/stall-head", nil); st != http.StatusGatewayTimeout {
			t.Errorf("got %d %q; want 504", st, body)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("504 after %v; want about 1s", d)
		}
	})
	t.Run("body stalls", func(t *testing.T) {
		n, _, err := getDigest(t, ctx, client, "http://"+s.addr()+"/stall-body")
		if err == nil || n >= size {
			t.Errorf("got %d bytes, err %v; want the body cut short", n, err)
		}
	})

	t.Run("download", func(t *testing.T) {
		n, sum, err := getDigest(t, ctx, client, "http://"+s.addr()+"/")
		if err != nil || n != size || sum != want {
			t.Errorf("got %d bytes sha256 %s err %v; want %d bytes sha256 %s", n, sum, err, size, want)
		}
	})
	t.Run("upload", func(t *testing.T) {
		body := &slowReader{p: newPayload(size), piece: size / pieces, pause: pause}
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+s.addr()+"/", body)
		req.ContentLength = size
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := fmt.Sprintf("%d %s <nil>", size, want); resp.StatusCode != 200 || string(got) != want {
			t.Errorf("got %d %q; want 200 %q", resp.StatusCode, got, want)
		}
	})
}

// TestStreamUploadBodyLimit: max_body_bytes holds for streamed bodies of
// either framing, and a body cut off at the limit is not passed on as if it
// were complete.
func TestStreamUploadBodyLimit(t *testing.T) {
	const limit = 1 << 20
	got := make(chan string, 4)
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, sum, err := hashReader(r.Body)
		got <- fmt.Sprintf("%d %s %v", n, sum, err)
		fmt.Fprint(w, n)
	}))
	s := startOneBackendProxy(t, oneBackend{Addr: be, Listener: fmt.Sprintf("max_body_bytes = %d", limit)})
	client := streamClient(t)
	post := func(t *testing.T, size, length int64) int {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+s.addr()+"/", newPayload(size))
		req.ContentLength = length
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	t.Run("chunked at the limit", func(t *testing.T) {
		if st := post(t, limit, -1); st != 200 {
			t.Errorf("got status %d; want 200", st)
		}
		if g, want := waitFor(t, got, "the backend"), fmt.Sprintf("%d %s <nil>", limit, payloadDigest(t, limit)); g != want {
			t.Errorf("backend read %s; want %s", g, want)
		}
	})
	t.Run("chunked over the limit", func(t *testing.T) {
		if st := post(t, limit+1, -1); st != http.StatusRequestEntityTooLarge {
			t.Errorf("got status %d; want 413", st)
		}
		if g := waitFor(t, got, "the backend"); strings.HasSuffix(g, "<nil>") {
			t.Errorf("backend read %s; want an incomplete body", g)
		}
		if n := upstreamErrors(s); n != 0 {
			t.Errorf("%d upstream errors counted; want 0, the body was too large", n)
		}
	})
	t.Run("content-length over the limit", func(t *testing.T) {
		// Refused once fasthttp has pre-read the first 8 KiB of the body
		// (it does before the handler runs), the rest unsent: a client that
		// sends the whole body at once may get a reset instead of the 413,
		// as fasthttp does not linger on close.
		c := dialWithDeadline(t, s.addr(), 30*time.Second)
		defer c.Close()
		if _, err := fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", limit+1); err != nil {
			t.Fatal(err)
		}
		if _, err := io.CopyN(c, newPayload(8<<10), 8<<10); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("got status %d; want 413", resp.StatusCode)
		}
		select {
		case g := <-got:
			t.Errorf("backend read %s; want no request", g)
		default:
		}
	})
	t.Run("chunked at the limit then cut", func(t *testing.T) {
		// The client sends a chunk of exactly the limit and goes away before
		// the last chunk: the backend must not get a complete body.
		c := dialWithDeadline(t, s.addr(), 30*time.Second)
		defer c.Close()
		body, _ := io.ReadAll(newPayload(limit))
		msg := fmt.Appendf(nil, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n", limit, body)
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		_ = c.(*net.TCPConn).CloseWrite()
		if g := waitFor(t, got, "the backend"); strings.HasSuffix(g, "<nil>") {
			t.Errorf("backend read %s; want an incomplete body", g)
		}
	})
}

// TestStreamClientDisconnectMidUpload: a client that goes away in the middle
// of a streamed upload leaves the backend with an incomplete body (never a
// complete-looking one) and the proxy with no upstream connection.
func TestStreamClientDisconnectMidUpload(t *testing.T) {
	got := make(chan string, 1)
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _, err := hashReader(r.Body)
		got <- fmt.Sprintf("%d %v", n, err)
	}))
	s := startOneBackendProxy(t, oneBackend{Addr: be})
	leakOpts := append([]goleak.Option{goleak.IgnoreCurrent(),
		// The backend's lingering close after the broken body, not ours.
		goleak.IgnoreAnyFunction("net/http.(*conn).closeWriteAndWait")}, fasthttpBackground...)
	c := dialWithDeadline(t, s.addr(), 30*time.Second)
	if _, err := io.WriteString(c, "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 67108864\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(c, newPayload(1<<40), 4<<20); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if g := waitFor(t, got, "the backend"); strings.HasSuffix(g, "<nil>") {
		t.Errorf("backend read %s; want an incomplete body", g)
	}
	uc := upstreamClient(t, s, be)
	defer func() {
		if n := upstreamErrors(s); n != 0 {
			t.Errorf("%d upstream errors counted; want 0, the client broke the exchange", n)
		}
	}()
	for deadline := time.Now().Add(5 * time.Second); uc.ConnsCount() != 0; {
		if time.Now().After(deadline) {
			t.Fatalf("upstream client has %d connections; want 0", uc.ConnsCount())
		}
		time.Sleep(10 * time.Millisecond)
	}
	goleak.VerifyNone(t, leakOpts...)
}
