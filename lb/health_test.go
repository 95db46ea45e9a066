package lb

import (
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// tcpServer accepts and closes connections on a loopback port until
// stopped; start it again on the same address to bring it back.
type tcpServer struct {
	addr     string
	ln       net.Listener
	accepted chan struct{} // one value per accepted connection, if there is room
}

func startTCP(t *testing.T, addr string) *tcpServer {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s := &tcpServer{addr: ln.Addr().String(), ln: ln, accepted: make(chan struct{}, 1)}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
			select {
			case s.accepted <- struct{}{}:
			default:
			}
		}
	}()
	t.Cleanup(func() { s.ln.Close() })
	return s
}

func (s *tcpServer) stop() { s.ln.Close() }

// TestHealthTCP: a backend whose TCP server goes away is taken down after
// fall failed connects, logged and counted once, gets no picks, and comes
// back after rise good ones when the server returns.
func TestHealthTCP(t *testing.T) {
	srv, other := startTCP(t, "127.0.0.1:0"), startTCP(t, "127.0.0.1:0")
	log, lines := newLogRecorder()
	set := metrics.NewSet()
	c := PoolConfig{Policy: PolicyRoundRobin, Backends: []BackendConfig{{Name: "a", Address: srv.addr}, {Name: "b", Address: other.addr}}}
	c.HealthCheck = HealthCheckConfig{Type: "tcp", Interval: 10 * time.Millisecond, Timeout: 500 * time.Millisecond, Rise: 2, Fall: 2}
	p := newTestPool(t, c, WithLogger(log), WithMetrics(set))
	a := p.Backends()[0]

	<-srv.accepted // the first check passed: a starts up
	srv.stop()
	skipped := waitLog(t, lines, 5*time.Second, "backend down", "backend=a", "reason=failed 2 tcp health checks in a row", "connection refused")
	if n := countPrefix(skipped, "health check failed"); n != 2 {
		t.Errorf("%d failed checks logged before the change; want 2 (fall)", n)
	}
	if a.State() != Down {
		t.Errorf("state %s; want down", a.State())
	}
	for range 10 {
		l, err := p.Pick(Key{})
		if err != nil || l.Name != "b" {
			t.Fatalf("pick while a is down: %v, %v; want b", l.Backend, err)
		}
		l.Release(Success)
	}
	// Three more failed checks: still one state change.
	for range 3 {
		skipped = append(skipped, waitLog(t, lines, 5*time.Second, "health check failed", "backend=a")...)
	}
	if n := countPrefix(skipped, "backend down"); n != 0 {
		t.Errorf("%d more \"backend down\" lines while a stayed down; want 0", n)
	}

	srv = startTCP(t, srv.addr)
	waitLog(t, lines, 5*time.Second, "backend up", "backend=a", "reason=passed 2 tcp health checks in a row")
	if a.State() != Up {
		t.Errorf("state %s; want up", a.State())
	}
	labels := `{pool="test",backend="a",state=`
	if down, up := set.GetOrCreateCounter(`portico_lb_backend_state_changes_total`+labels+`"down"}`).Get(),
		set.GetOrCreateCounter(`portico_lb_backend_state_changes_total`+labels+`"up"}`).Get(); down != 1 || up != 1 {
		t.Errorf("state changes counted: down %d, up %d; want 1 and 1", down, up)
	}
	if n := set.GetOrCreateCounter(`portico_lb_health_checks_total{pool="test",backend="a",result="fail"}`).Get(); n < 5 {
		t.Errorf("failed checks counted %d; want at least 5", n)
	}

	p.Close()
	// Close waited for the checkers' WaitGroup; each may still be returning
	// from its last frame, so allow it a moment, as goleak does.
	for deadline := time.Now().Add(time.Second); stacksContain("(*Pool).runChecks"); {
		if time.Now().After(deadline) {
			t.Fatal("a checker goroutine is still running a second after Close")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestHealthHTTP: a backend answering the check path with a status outside
// expect_status goes down and comes back; then its server goes away
// altogether and returns.
func TestHealthHTTP(t *testing.T) {
	var status atomic.Int32
	status.Store(200)
	var host atomic.Value
	checks := make(chan struct{}, 1024)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			w.WriteHeader(404)
			return
		}
		host.Store(r.Host)
		w.WriteHeader(int(status.Load()))
		select {
		case checks <- struct{}{}:
		default:
		}
	})
	startHTTP := func(addr string) (*http.Server, string) {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: handler, ReadHeaderTimeout: time.Second}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
		return srv, ln.Addr().String()
	}
	srv, addr := startHTTP("127.0.0.1:0")
	log, lines := newLogRecorder()
	c := PoolConfig{Policy: PolicyWeightedRoundRobin, Backends: []BackendConfig{{Name: "web", Address: addr}}}
	c.HealthCheck = HealthCheckConfig{Type: "http", Interval: 10 * time.Millisecond, Timeout: time.Second, Rise: 1, Fall: 2,
		Path: "/healthz", Host: "svc.internal", ExpectStatus: "200-299"}
	p := newTestPool(t, c, WithLogger(log))
	<-checks
	if got := host.Load(); got != "svc.internal" {
		t.Errorf("check sent Host %q; want %q", got, "svc.internal")
	}

	status.Store(503)
	waitLog(t, lines, 5*time.Second, "backend down", "backend=web", "got status 503; want 200-299")
	_, err := p.Pick(Key{})
	if want := `pool "test": all 1 backends down: lb: no backend available`; err == nil || err.Error() != want {
		t.Errorf("pick with the only backend down: %v; want %q", err, want)
	}
	status.Store(204)
	waitLog(t, lines, 5*time.Second, "backend up", "backend=web", "reason=passed 1 http health checks in a row")

	srv.Close()
	waitLog(t, lines, 5*time.Second, "backend down", "backend=web", "connection refused")
	startHTTP(addr)
	waitLog(t, lines, 5*time.Second, "backend up", "backend=web")
	if l, err := p.Pick(Key{}); err != nil {
		t.Errorf("pick after recovery: %v", err)
	} else {
		l.Release(Success)
	}
}

// TestHealthFirstCheckFails: a backend that is dead when the pool starts
// goes down on its first failed check, not after fall of them.
func TestHealthFirstCheckFails(t *testing.T) {
	dead := startTCP(t, "127.0.0.1:0")
	dead.stop()
	log, lines := newLogRecorder()
	c := PoolConfig{Policy: PolicyRoundRobin, Backends: []BackendConfig{{Name: "dead", Address: dead.addr}}}
	c.HealthCheck = HealthCheckConfig{Type: "tcp", Interval: time.Hour, Timeout: time.Second, Rise: 2, Fall: 5}
	newTestPool(t, c, WithLogger(log))
	waitLog(t, lines, 5*time.Second, "backend down", "backend=dead", "reason=failed 1 tcp health checks in a row")
}

func countPrefix(lines []string, prefix string) int {
	n := 0
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			n++
		}
	}
	return n
}

func stacksContain(s string) bool {
	buf := make([]byte, 1<<20)
	return strings.Contains(string(buf[:runtime.Stack(buf, true)]), s)
}
