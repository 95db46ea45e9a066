package l4

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"portico/lb"
)

// testTimeout bounds every wait in the tests.
const testTimeout = 60 * time.Second

// testListener is a listener config with the defaults filled in.
func testListener(mod func(*ListenerConfig)) ListenerConfig {
	lc := ListenerConfig{Name: "test", Address: "127.0.0.1:0", Pool: "p", Loops: 1}
	if mod != nil {
		mod(&lc)
	}
	c := Config{Listeners: []ListenerConfig{lc}}
	c.SetDefaults()
	return c.Listeners[0]
}

// newTestPool builds a pool over addrs.
func newTestPool(t testing.TB, name, policy string, addrs ...string) *lb.Pool {
	t.Helper()
	return newTestPoolConfig(t, name, lb.PoolConfig{Policy: policy}, addrs...)
}

// newTestPoolConfig builds a pool from pc over addrs; maglev hashes the
// client IP.
func newTestPoolConfig(t testing.TB, name string, pc lb.PoolConfig, addrs ...string) *lb.Pool {
	t.Helper()
	if pc.Policy == lb.PolicyMaglev {
		pc.HashKey = "client_ip"
	}
	for i, a := range addrs {
		pc.Backends = append(pc.Backends, lb.BackendConfig{Name: name + strconv.Itoa(i), Address: a})
	}
	p, err := lb.NewPool(name, pc)
	if err != nil {
		t.Fatalf("NewPool: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// testLogger logs to the test at debug level when L4_LOG is set.
func testLogger() *slog.Logger {
	if os.Getenv("L4_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// startProxy runs a server with the given listeners and returns it and the
// address of each listener.
func startProxy(t testing.TB, pools map[string]*lb.Pool, lcs ...ListenerConfig) (*Server, *metrics.Set, []string) {
	t.Helper()
	set := metrics.NewSet()
	s, err := New(Config{Listeners: lcs}, pools, testLogger(), set)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := s.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		// No drain: tests leave flows open, which are cut at once.
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := s.Shutdown(ctx); err != nil && err.Error() != context.Canceled.Error() {
			t.Errorf("Shutdown: %v", err)
		}
	})
	var addrs []string
	for _, a := range s.Addrs() {
		addrs = append(addrs, a.String())
	}
	return s, set, addrs
}

// tcpServer is a loopback TCP server that runs handle for each connection.
type tcpServer struct {
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]bool
}

func newTCPServer(t testing.TB, handle func(net.Conn)) *tcpServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &tcpServer{ln: ln, conns: map[net.Conn]bool{}}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns[c] = true
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer func() {
					s.mu.Lock()
					delete(s.conns, c)
					s.mu.Unlock()
					c.Close()
				}()
				handle(c)
			}()
		}
	}()
	t.Cleanup(s.close)
	return s
}

func (s *tcpServer) addr() string { return s.ln.Addr().String() }

func (s *tcpServer) close() {
	s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// echo copies what it reads back, and half-closes when the client does.
func echo(c net.Conn) {
	io.Copy(c, c)
	c.(*net.TCPConn).CloseWrite()
}

// dial connects to addr with a deadline for the whole test exchange.
func dial(t testing.TB, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	c.SetDeadline(time.Now().Add(testTimeout))
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// waitFor polls cond until it holds, for state that has no signal (metrics
// and counters of the proxy).
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// metricValue reads one series from a metrics set.
func metricValue(set *metrics.Set, name string) float64 {
	var sb strings.Builder
	set.WritePrometheus(&sb)
	for _, line := range strings.Split(sb.String(), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

func isClosedErr(err error) bool {
	return err == nil || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed)
}

// deadAddress returns a loopback address where nothing listens: a port
// just closed, so a connect to it is refused.
func deadAddress(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
