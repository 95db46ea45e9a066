package l4

import (
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"portico/lb"
)

// expectClosed reads from c until it is closed by the proxy, within limit.
func expectClosed(t *testing.T, c net.Conn, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	c.SetReadDeadline(start.Add(limit))
	_, err := io.Copy(io.Discard, c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("connection still open after %s", limit)
	}
	return time.Since(start)
}

func TestTimeouts(t *testing.T) {
	be := newTCPServer(t, echo)
	pools := map[string]*lb.Pool{"p": newTestPool(t, "p", "round_robin", be.addr())}
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }

	t.Run("idle", func(t *testing.T) {
		_, set, addrs := startProxy(t, pools, testListener(func(lc *ListenerConfig) {
			d := ms(300)
			lc.IdleTimeout = &d
		}))
		c := dial(t, addrs[0])
		// Traffic keeps it open past the timeout.
		for i := range 4 {
			if i > 0 {
				time.Sleep(ms(100)) // activity spread over 300 ms
			}
			c.Write([]byte("ping"))
			io.ReadFull(c, make([]byte, 4))
		}
		// Measured from the last byte: the close comes at the first sweep
		// past 300 ms, not earlier (a sleep here would eat into the margin).
		took := expectClosed(t, c, 10*time.Second)
		if took < ms(200) {
			t.Fatalf("closed %s after the last byte; want about 300ms", took)
		}
		waitFor(t, "idle count", func() bool {
			return metricValue(set, `portico_l4_flows_closed_total{listener="test",reason="idle_timeout"}`) == 1
		})
	})

	t.Run("idle_spliced", func(t *testing.T) {
		ln, backend := acceptOne(t)
		pools := map[string]*lb.Pool{"p": newTestPool(t, "p", "round_robin", ln.Addr().String())}
		_, set, addrs := startProxy(t, pools, testListener(func(lc *ListenerConfig) {
			d := ms(300)
			lc.IdleTimeout = &d
		}))
		c := dial(t, addrs[0])
		c.Write([]byte("x"))
		c.CloseWrite()
		b := recv(t, backend)
		io.Copy(io.Discard, b)
		// A reply that starts, goes to splice(2), then stalls.
		b.Write(make([]byte, 3*spliceStep/2))
		n, _ := io.Copy(io.Discard, c)
		if n != 3*spliceStep/2 {
			t.Fatalf("client got %d bytes; want %d", n, 3*spliceStep/2)
		}
		waitFor(t, "idle count", func() bool {
			return metricValue(set, `portico_l4_flows_closed_total{listener="test",reason="idle_timeout"}`) == 1 &&
				metricValue(set, `portico_l4_splices_total{listener="test"}`) == 1
		})
	})

	t.Run("max_lifetime", func(t *testing.T) {
		_, set, addrs := startProxy(t, pools, testListener(func(lc *ListenerConfig) { lc.MaxLifetime = ms(300) }))
		c := dial(t, addrs[0])
		c.Write([]byte("ping"))
		expectClosed(t, c, 10*time.Second)
		waitFor(t, "lifetime count", func() bool {
			return metricValue(set, `portico_l4_flows_closed_total{listener="test",reason="max_lifetime"}`) == 1
		})
	})

	t.Run("client_hello", func(t *testing.T) {
		_, set, addrs := startProxy(t, pools, testListener(func(lc *ListenerConfig) {
			lc.Pool, lc.DefaultPool, lc.ClientHelloTimeout = "", "p", ms(300)
		}))
		// A slowloris: the first bytes of a hello, then nothing.
		c := dial(t, addrs[0])
		c.Write([]byte{22, 3, 1, 0, 200, 1})
		expectClosed(t, c, 10*time.Second)
		waitFor(t, "hello timeout count", func() bool {
			return metricValue(set, `portico_l4_flows_closed_total{listener="test",reason="hello_timeout"}`) == 1
		})
	})

	t.Run("connect", func(t *testing.T) {
		// A listener whose accept queue is full drops SYNs: connects hang.
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			t.Fatal(err)
		}
		if err := unix.Listen(fd, 0); err != nil {
			t.Fatal(err)
		}
		sa, _ := unix.Getsockname(fd)
		addr := (&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: sa.(*unix.SockaddrInet4).Port}).String()
		for range 4 { // fill the queue
			if c, err := net.DialTimeout("tcp", addr, ms(200)); err == nil {
				defer c.Close()
			}
		}
		if c, err := net.DialTimeout("tcp", addr, ms(200)); err == nil {
			c.Close()
			t.Skip("the kernel accepted a connect past the backlog")
		}
		pools := map[string]*lb.Pool{"p": newTestPool(t, "p", "round_robin", addr)}
		_, set, addrs := startProxy(t, pools, testListener(func(lc *ListenerConfig) {
			n := 0
			lc.ConnectTimeout, lc.ConnectRetries = ms(200), &n
		}))
		c := dial(t, addrs[0])
		took := expectClosed(t, c, 10*time.Second)
		if took > 5*time.Second {
			t.Fatalf("closed after %s; want about 200ms", took)
		}
		waitFor(t, "connect_failed count", func() bool {
			return metricValue(set, `portico_l4_flows_closed_total{listener="test",reason="connect_failed"}`) == 1
		})
	})
}

// TestMulticore: several loops on SO_REUSEPORT sockets share the port; many
// concurrent clients each get their own echo.
func TestMulticore(t *testing.T) {
	be := newTCPServer(t, echo)
	pools := map[string]*lb.Pool{"p": newTestPool(t, "p", "round_robin", be.addr())}
	_, set, addrs := startProxy(t, pools, testListener(func(lc *ListenerConfig) { lc.Loops = 4 }))
	const clients = 64
	errs := make(chan error, clients)
	for i := range clients {
		go func() {
			c, err := net.DialTimeout("tcp", addrs[0], 5*time.Second)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(testTimeout))
			msg := []byte{byte(i), 1, 2, 3}
			c.Write(msg)
			got := make([]byte, 4)
			if _, err := io.ReadFull(c, got); err != nil || got[0] != byte(i) {
				errs <- err
				return
			}
			errs <- nil
		}()
	}
	for range clients {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if got := metricValue(set, `portico_l4_flows_accepted_total{listener="test"}`); got != clients {
		t.Fatalf("accepted: got %v; want %d", got, clients)
	}
}
