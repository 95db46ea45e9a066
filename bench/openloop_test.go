package bench

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

func serve(t *testing.T, h fasthttp.RequestHandler) string {
	t.Helper()
	ln := listen(t)
	s := &fasthttp.Server{Handler: h}
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(ln) }()
	t.Cleanup(func() { _ = s.Shutdown(); <-done })
	return ln.Addr().String()
}

func TestOpenLoopRate(t *testing.T) {
	addr := serve(t, NewUpstream().Handle)
	res, err := OpenLoop(context.Background(), OpenLoopConfig{Addr: addr, Rate: 2000, Duration: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent != 1000 || res.OK != 1000 || res.Errors != 0 {
		t.Fatalf("got %v; want 1000 sent and ok", res)
	}
	if res.Duration < 490*time.Millisecond || res.Duration > 3*time.Second {
		t.Errorf("took %s; want about 500ms", res.Duration)
	}
	if !(res.P50 > 0 && res.P50 <= res.P99 && res.P99 <= res.Max) {
		t.Errorf("percentiles out of order: %v", res)
	}
}

// A backend that stalls every request for a while: an open-loop runner
// must count the queueing behind the stall (coordinated omission), so p50
// is far above the service time of the requests that did not stall.
func TestOpenLoopCountsQueueing(t *testing.T) {
	var stalled = make(chan struct{})
	addr := serve(t, func(ctx *fasthttp.RequestCtx) {
		select {
		case <-stalled:
		default:
			time.Sleep(300 * time.Millisecond) // the first request only
			close(stalled)
		}
		ctx.SetBodyString("ok")
	})
	res, err := OpenLoop(context.Background(), OpenLoopConfig{Addr: addr, Rate: 1000, Duration: 400 * time.Millisecond, MaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors != 0 {
		t.Fatalf("got %v; want no errors", res)
	}
	// With one connection, every request due during the 300ms stall waited
	// for it: at least 3/4 of them saw more than 50ms.
	if res.P50 < 50*time.Millisecond {
		t.Errorf("got p50 %s; want above 50ms (queueing counted from the due time)", res.P50)
	}
}

func TestOpenLoopErrors(t *testing.T) {
	// A port nothing listens on: every request fails, none hangs.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	res, err := OpenLoop(context.Background(), OpenLoopConfig{Addr: addr, Rate: 200, Duration: 100 * time.Millisecond, Timeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors != res.Sent || res.Sent != 20 || res.FirstErr == nil {
		t.Fatalf("got %v (%v); want 20 sent, 20 errors", res, res.FirstErr)
	}
}

func TestUpstreamBodySize(t *testing.T) {
	for path, want := range map[string]int{"/small": 64, "/64k": 65536, "/rr3/small": 64, "/100": 100, "/": 64, "/x/999999999": 64} {
		if got := BodySize([]byte(path)); got != want {
			t.Errorf("BodySize(%q): got %d; want %d", path, got, want)
		}
	}
}

func TestPercentile(t *testing.T) {
	d := make([]time.Duration, 100)
	for i := range d {
		d[i] = time.Duration(i + 1)
	}
	for p, want := range map[float64]time.Duration{50: 50, 99: 99, 100: 100, 0: 1, 99.9: 100} {
		if got := Percentile(d, p); got != want {
			t.Errorf("Percentile(%g): got %d; want %d", p, got, want)
		}
	}
	if got := Percentile(nil, 50); got != 0 {
		t.Errorf("Percentile(nil): got %d; want 0", got)
	}
}
