package l4

import (
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"portico/lb"
)

// loopsDialOnLoop reports whether every loop of s's first listener dials
// its backends itself (registerFD) rather than off the loop.
func loopsDialOnLoop(s *Server) bool {
	loops := s.listeners[0].loopArr.Load()
	if loops == nil || len(*loops) == 0 {
		return false
	}
	for _, lp := range *loops {
		if lp.elp == nil {
			return false
		}
	}
	return true
}

// TestDialOnLoop: with the pinned gnet, backends are dialed on the loop;
// an echo goes through, and no dial goroutine is left behind.
func TestDialOnLoop(t *testing.T) {
	be := newTCPServer(t, echo)
	pools := map[string]*lb.Pool{"p": newTestPool(t, "p", "round_robin", be.addr())}
	s, set, addrs := startProxy(t, pools, testListener(nil))
	c := dial(t, addrs[0])
	c.Write([]byte("ping"))
	got := make([]byte, 4)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "ping" {
		t.Fatalf("got %q, %v; want %q", got, err, "ping")
	}
	if !loopsDialOnLoop(s) {
		t.Fatal("backends dialed off the loop; want on the loop with gnet " + gnetVersion)
	}
	c.Close()
	waitFor(t, "flow to close", func() bool { return metricValue(set, `portico_l4_flows_active{listener="test"}`) == 0 })
}

// TestBackendSpeaksFirst: a backend that greets first (SMTP, MySQL) is
// confirmed connected by its greeting; the client sends nothing before.
func TestBackendSpeaksFirst(t *testing.T) {
	be := newTCPServer(t, func(c net.Conn) {
		c.Write([]byte("220 hello\r\n"))
		echo(c)
	})
	pools := map[string]*lb.Pool{"p": newTestPool(t, "p", "round_robin", be.addr())}
	_, _, addrs := startProxy(t, pools, testListener(nil))
	c := dial(t, addrs[0])
	got := make([]byte, len("220 hello\r\n"))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "220 hello\r\n" {
		t.Fatalf("greeting: got %q, %v; want %q", got, err, "220 hello\r\n")
	}
	c.Write([]byte("QUIT\r\n"))
	got = make([]byte, 6)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "QUIT\r\n" {
		t.Fatalf("echo: got %q, %v; want %q", got, err, "QUIT\r\n")
	}
}

// TestSilentFlowOutlivesConnectTimeout: a connected flow in which neither
// side has sent a byte is confirmed at the connect deadline, not cut.
func TestSilentFlowOutlivesConnectTimeout(t *testing.T) {
	be := newTCPServer(t, echo)
	pools := map[string]*lb.Pool{"p": newTestPool(t, "p", "round_robin", be.addr())}
	_, set, addrs := startProxy(t, pools, testListener(func(lc *ListenerConfig) {
		lc.ConnectTimeout = 100 * time.Millisecond
	}))
	c := dial(t, addrs[0])
	time.Sleep(500 * time.Millisecond)
	c.Write([]byte("late"))
	got := make([]byte, 4)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "late" {
		t.Fatalf("got %q, %v; want %q", got, err, "late")
	}
	if n := metricValue(set, `portico_l4_connect_errors_total{listener="test"}`); n != 0 {
		t.Fatalf("connect errors: got %v; want 0", n)
	}
}

// TestConnectRetryHeldBytes: the bytes held while the first backend
// refuses reach the second one whole, after the PROXY header.
func TestConnectRetryHeldBytes(t *testing.T) {
	got := make(chan string, 1)
	be := newTCPServer(t, func(c net.Conn) {
		b, _ := io.ReadAll(c)
		got <- string(b)
	})
	deadAddr := deadAddress(t)
	pools := map[string]*lb.Pool{"p": newTestPool(t, "p", "round_robin", deadAddr, be.addr())}
	_, set, addrs := startProxy(t, pools, testListener(func(lc *ListenerConfig) { lc.SendProxy = "v1" }))
	for i := range 2 { // round robin: one of the two starts on the dead backend
		c := dial(t, addrs[0])
		msg := "request " + strconv.Itoa(i)
		c.Write([]byte(msg))
		c.CloseWrite()
		select {
		case b := <-got:
			hdr := "PROXY TCP4 127.0.0.1 127.0.0.1 " + strconv.Itoa(c.LocalAddr().(*net.TCPAddr).Port) + " " + strconv.Itoa(c.RemoteAddr().(*net.TCPAddr).Port) + "\r\n"
			if b != hdr+msg {
				t.Fatalf("backend got %q; want %q", b, hdr+msg)
			}
		case <-time.After(testTimeout):
			t.Fatal("backend got nothing")
		}
		c.Close()
	}
	if metricValue(set, `portico_l4_connect_errors_total{listener="test"}`) == 0 {
		t.Fatal("no connect error counted")
	}
}

// TestDialHostName: a backend named by host name is dialed off the loop,
// where resolving it cannot block the loop.
func TestDialHostName(t *testing.T) {
	be := newTCPServer(t, echo)
	_, port, _ := net.SplitHostPort(be.addr())
	pools := map[string]*lb.Pool{"p": newTestPool(t, "p", "round_robin", "localhost:"+port)}
	_, _, addrs := startProxy(t, pools, testListener(nil))
	c := dial(t, addrs[0])
	c.Write([]byte("ping"))
	got := make([]byte, 4)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "ping" {
		t.Fatalf("got %q, %v; want %q", got, err, "ping")
	}
}

// blackholeAddress returns a loopback address whose listener's accept queue
// is full, so the kernel drops SYNs to it and a connect stays in progress
// until it times out. It skips the test where the kernel does otherwise.
func blackholeAddress(t *testing.T) string {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(sa.(*unix.SockaddrInet4).Port)
	filler, err := net.Dial("tcp", addr) // takes the one place in the queue
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { filler.Close() })
	if c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond); err == nil {
		c.Close()
		t.Skip("a full accept queue does not drop SYNs here")
	}
	return addr
}

// TestConnectTimeoutRetrySendsHeldBytes: the client's bytes, written while
// the first backend's connect hangs (the loop waits for writability), go
// to the next backend as soon as that connect times out, not one connect
// timeout later. A wait left over from the failed attempt once kept the
// retry from writing until its own deadline.
func TestConnectTimeoutRetrySendsHeldBytes(t *testing.T) {
	hole := blackholeAddress(t)
	be := newTCPServer(t, echo)
	pools := map[string]*lb.Pool{"p": newTestPool(t, "p", "round_robin", hole, be.addr())}
	const timeout = 1200 * time.Millisecond
	_, _, addrs := startProxy(t, pools, testListener(func(lc *ListenerConfig) { lc.ConnectTimeout = timeout }))
	for i := range 2 { // round robin: one of the two starts on the blackhole
		start := time.Now()
		c := dial(t, addrs[0])
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, 4)
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(c, got); err != nil || string(got) != "ping" {
			t.Fatalf("flow %d: got %q, %v", i, got, err)
		}
		if d := time.Since(start); d > timeout+timeout/2+300*time.Millisecond {
			t.Fatalf("flow %d: echo after %v; want about one connect timeout (%v) at most", i, d, timeout)
		}
		c.Close()
	}
}
