package l4

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"portico/lb"
)

// echoOnce writes msg on c and checks that it comes back.
func echoOnce(t *testing.T, c io.ReadWriter, msg string) {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("write %q: %v", msg, err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
		t.Fatalf("echo: got %q, %v; want %q", buf, err, msg)
	}
}

// shutdownAsync runs Shutdown(ctx) and returns its result, once there is one.
func shutdownAsync(s *Server, ctx context.Context) <-chan error {
	r := make(chan error, 1)
	go func() { r <- s.Shutdown(ctx) }()
	return r
}

// countGoroutines counts the goroutines, but for the workers of gnet's
// shared goroutine pool (ants), which outlive an engine by design: idle
// workers expire after 10 s, and the pool's own two goroutines stay.
func countGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if g != "" && !strings.Contains(g, "github.com/panjf2000/ants/") {
			count++
		}
	}
	return count
}

// waitGoroutines waits until no more goroutines run than before, as
// counted by countGoroutines.
func waitGoroutines(t *testing.T, before int) {
	t.Helper()
	waitFor(t, "goroutines to end", func() bool { return countGoroutines() <= before })
}

// TestShutdownDrains: once Shutdown starts, a flow in progress keeps
// working, a new connection is refused, and Shutdown returns nil when the
// flow's client closes.
func TestShutdownDrains(t *testing.T) {
	be := newTCPServer(t, echo)
	before := countGoroutines()
	pools := map[string]*lb.Pool{"p": newTestPool(t, "p", "round_robin", be.addr())}
	s, set, addrs := startProxy(t, pools, testListener(nil))
	c := dial(t, addrs[0])
	echoOnce(t, c, "before")

	res := shutdownAsync(s, context.Background())
	waitFor(t, "drain to start", s.draining.Load)
	for i := 0; i < 10; i++ {
		echoOnce(t, c, "during the drain")
	}

	// A new connection is reset at accept (or refused); it never reaches
	// the backend.
	if n, err := dialAndRead(addrs[0]); err == nil {
		t.Fatalf("new connection during the drain: read %d bytes, no error; want reset", n)
	}
	if got := metricValue(set, `portico_l4_flows_closed_total{listener="test",reason="refused"}`); got != 1 {
		t.Fatalf("refused during the drain: got %v; want 1", got)
	}
	select {
	case err := <-res:
		t.Fatalf("Shutdown returned %v with a flow in progress", err)
	default:
	}
	echoOnce(t, c, "after")

	c.CloseWrite() // the echo backend closes in turn: the flow ends
	if _, err := io.ReadAll(c); err != nil {
		t.Fatalf("reading to EOF: %v", err)
	}
	select {
	case err := <-res:
		if err != nil {
			t.Fatalf("Shutdown: got %v; want nil", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("Shutdown did not return after the last flow ended")
	}
	if got := metricValue(set, `portico_l4_flows_closed_total{listener="test",reason="done"}`); got != 1 {
		t.Fatalf("flows done: got %v; want 1", got)
	}
	c.Close()
	waitGoroutines(t, before)
}

// TestShutdownDrainCut: a flow still open when ctx ends is cut, and
// Shutdown returns ctx's error promptly.
func TestShutdownDrainCut(t *testing.T) {
	be := newTCPServer(t, echo)
	before := countGoroutines()
	pools := map[string]*lb.Pool{"p": newTestPool(t, "p", "round_robin", be.addr())}
	s, set, addrs := startProxy(t, pools, testListener(nil))
	c := dial(t, addrs[0])
	echoOnce(t, c, "hello")

	const drain = 200 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	start := time.Now()
	res := shutdownAsync(s, ctx)
	select {
	case err := <-res:
		if err != context.DeadlineExceeded {
			t.Fatalf("Shutdown: got %v; want %v", err, context.DeadlineExceeded)
		}
	case <-time.After(testTimeout):
		t.Fatal("Shutdown did not return after its context ended")
	}
	if d := time.Since(start); d < drain || d > drain+2*time.Second {
		t.Fatalf("Shutdown took %v; want about %v", d, drain)
	}
	// The flow was cut: the client sees its end.
	if n, err := c.Read(make([]byte, 1)); n != 0 || !isClosedErr(err) && !isResetErr(err) {
		t.Fatalf("client read after the cut: got %d, %v; want EOF", n, err)
	}
	if got := metricValue(set, `portico_l4_flows_closed_total{listener="test",reason="shutdown"}`); got != 1 {
		t.Fatalf("flows cut: got %v; want 1", got)
	}
	c.Close()
	waitGoroutines(t, before)
}

// dialAndRead connects to addr, an echo proxy, sends a byte and reads: it
// returns the bytes read before an error, and the error (a refused dial, a
// reset, EOF). A connection proxied to the echo backend reads the byte back
// and returns no error.
func dialAndRead(addr string) (int, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(testTimeout))
	c.Write([]byte("x")) // may fail already: the error is the read's
	n, err := c.Read(make([]byte, 1))
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return n, nil // kept open: not refused
	}
	return n, err
}

func isResetErr(err error) bool { return errors.Is(err, syscall.ECONNRESET) }
