package l4

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"portico/lb"
)

func TestProxyEcho(t *testing.T) {
	be := newTCPServer(t, echo)
	pools := map[string]*lb.Pool{"p": newTestPool(t, "p", "round_robin", be.addr())}
	_, set, addrs := startProxy(t, pools, testListener(nil))
	for i := range 3 {
		c := dial(t, addrs[0])
		msg := fmt.Sprintf("hello %d\n", i)
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(c, got); err != nil {
			t.Fatalf("read: %v", err)
		}
		if string(got) != msg {
			t.Fatalf("got %q; want %q", got, msg)
		}
		c.Close()
	}
	waitFor(t, "flows to close", func() bool { return metricValue(set, `portico_l4_flows_active{listener="test"}`) == 0 })
	if got := metricValue(set, `portico_l4_flows_accepted_total{listener="test"}`); got != 3 {
		t.Fatalf("accepted: got %v; want 3", got)
	}
}

// TestEarlyBytesHeld: bytes a client sends before the backend is connected
// are held and delivered, in order, once it is.
func TestEarlyBytesHeld(t *testing.T) {
	gate := make(chan struct{})
	var got bytes.Buffer
	done := make(chan struct{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// A backend that accepts only when the gate opens: the connect
	// completes in the kernel, but nothing is read before.
	go func() {
		<-gate
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(&got, c)
		close(done)
	}()
	pools := map[string]*lb.Pool{"p": newTestPool(t, "p", "round_robin", ln.Addr().String())}
	_, _, addrs := startProxy(t, pools, testListener(nil))
	c := dial(t, addrs[0])
	want := bytes.Repeat([]byte("early bytes "), 10000)
	if _, err := c.Write(want); err != nil {
		t.Fatal(err)
	}
	c.CloseWrite()
	close(gate)
	select {
	case <-done:
	case <-time.After(testTimeout):
		t.Fatal("backend did not get EOF")
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Fatalf("backend got %d bytes; want %d", got.Len(), len(want))
	}
}

// TestConnectRetry: a dead backend is skipped for a live one.
func TestConnectRetry(t *testing.T) {
	be := newTCPServer(t, echo)
	deadAddr := deadAddress(t)
	pools := map[string]*lb.Pool{"p": newTestPool(t, "p", "round_robin", deadAddr, be.addr())}
	_, set, addrs := startProxy(t, pools, testListener(nil))
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := dial(t, addrs[0])
			c.Write([]byte("x"))
			b := make([]byte, 1)
			if _, err := io.ReadFull(c, b); err != nil {
				t.Errorf("read: %v", err)
			}
		}()
	}
	wg.Wait()
	if metricValue(set, `portico_l4_connect_errors_total{listener="test"}`) == 0 {
		t.Fatal("no connect error counted")
	}
}

// TestNoBackend: with every connect failing, the client is closed.
func TestNoBackend(t *testing.T) {
	deadAddr := deadAddress(t)
	pools := map[string]*lb.Pool{"p": newTestPool(t, "p", "round_robin", deadAddr)}
	_, set, addrs := startProxy(t, pools, testListener(nil))
	c := dial(t, addrs[0])
	if _, err := c.Read(make([]byte, 1)); !isClosedErr(err) && err == nil {
		t.Fatalf("read: got %v; want EOF or reset", err)
	}
	waitFor(t, "connect_failed count", func() bool {
		return metricValue(set, `portico_l4_flows_closed_total{listener="test",reason="connect_failed"}`) == 1
	})
}

// TestMaxFlows: connections over max_flows are refused at accept and
// counted; the flow table lists the live ones.
func TestMaxFlows(t *testing.T) {
	be := newTCPServer(t, echo)
	pools := map[string]*lb.Pool{"p": newTestPool(t, "p", "round_robin", be.addr())}
	s, set, addrs := startProxy(t, pools, testListener(func(lc *ListenerConfig) { lc.MaxFlows = 2 }))
	var open []*net.TCPConn
	for range 2 {
		c := dial(t, addrs[0])
		c.Write([]byte("x"))
		io.ReadFull(c, make([]byte, 1))
		open = append(open, c)
	}
	if n := s.Flows().Len(); n != 2 {
		t.Fatalf("flow table: got %d flows; want 2", n)
	}
	c := dial(t, addrs[0])
	if n, _ := io.Copy(io.Discard, c); n != 0 {
		t.Fatalf("third client: got %d bytes; want the connection closed", n)
	}
	if got := metricValue(set, `portico_l4_flows_closed_total{listener="test",reason="refused"}`); got != 1 {
		t.Fatalf("refused: got %v; want 1", got)
	}
	open[0].Close()
	waitFor(t, "a slot to free", func() bool { return s.Flows().Len() == 1 })
	c = dial(t, addrs[0])
	c.Write([]byte("y"))
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatalf("client after a close: %v", err)
	}
}

// TestProxyProtocol: a trusted load balancer's PROXY header sets the client
// address, which the backend then gets in portico's own header; an
// untrusted peer that sends a header is closed.
func TestProxyProtocol(t *testing.T) {
	ln, backend := acceptOne(t)
	pools := map[string]*lb.Pool{"p": newTestPool(t, "p", "round_robin", ln.Addr().String())}
	_, set, addrs := startProxy(t, pools,
		testListener(func(lc *ListenerConfig) {
			lc.Name, lc.SendProxy, lc.AcceptProxyFrom = "trusting", "v1", []string{"127.0.0.0/8"}
		}),
		testListener(func(lc *ListenerConfig) {
			lc.Name, lc.AcceptProxyFrom = "distrusting", []string{"10.0.0.0/8"}
		}))
	c := dial(t, addrs[0])
	c.Write([]byte("PROXY TCP4 192.0.2.7 198.51.100.1 40000 443\r\nhello"))
	b := recv(t, backend)
	_, port, _ := net.SplitHostPort(addrs[0])
	want := "PROXY TCP4 192.0.2.7 127.0.0.1 40000 " + port + "\r\nhello"
	got := make([]byte, len(want))
	if _, err := io.ReadFull(b, got); err != nil || string(got) != want {
		t.Fatalf("backend got %q, %v; want %q", got, err, want)
	}

	u := dial(t, addrs[1])
	u.Write([]byte("PROXY TCP4 192.0.2.7 198.51.100.1 40000 443\r\n"))
	if n, _ := io.Copy(io.Discard, u); n != 0 {
		t.Fatalf("untrusted header: got %d bytes; want the connection closed", n)
	}
	if got := metricValue(set, `portico_l4_flows_closed_total{listener="distrusting",reason="bad_proxy"}`); got != 1 {
		t.Fatalf("bad_proxy: got %v; want 1", got)
	}
}

// TestPoolSendProxy: a pool's send_proxy puts a PROXY header with the
// client's address before the client's bytes; a pool without it sends the
// bytes alone; a listener's own send_proxy takes precedence over the pool's.
func TestPoolSendProxy(t *testing.T) {
	lnV2, beV2 := acceptOne(t)
	lnPlain, bePlain := acceptOne(t)
	lnOver, beOver := acceptOne(t)
	pools := map[string]*lb.Pool{
		"v2":    newTestPoolConfig(t, "v2", lb.PoolConfig{Policy: "round_robin", SendProxy: "v2"}, lnV2.Addr().String()),
		"plain": newTestPool(t, "plain", "round_robin", lnPlain.Addr().String()),
		"over":  newTestPoolConfig(t, "over", lb.PoolConfig{Policy: "round_robin", SendProxy: "v2"}, lnOver.Addr().String()),
	}
	_, _, addrs := startProxy(t, pools,
		testListener(func(lc *ListenerConfig) { lc.Name, lc.Pool = "v2", "v2" }),
		testListener(func(lc *ListenerConfig) { lc.Name, lc.Pool = "plain", "plain" }),
		testListener(func(lc *ListenerConfig) { lc.Name, lc.Pool, lc.SendProxy = "over", "over", "v1" }))

	// readHeader reads what the backend got before "hello": a PROXY header,
	// parsed, or nothing.
	readHeader := func(b *net.TCPConn) (ProxyHeader, []byte) {
		t.Helper()
		b.SetReadDeadline(time.Now().Add(testTimeout))
		var buf []byte
		chunk := make([]byte, 512)
		for !bytes.HasSuffix(buf, []byte("hello")) {
			n, err := b.Read(chunk)
			if err != nil {
				t.Fatalf("backend read: got %q, %v", buf, err)
			}
			buf = append(buf, chunk[:n]...)
		}
		rest := buf[:len(buf)-len("hello")]
		if len(rest) == 0 {
			return ProxyHeader{}, nil
		}
		h, need, err := ParseProxyHeader(rest)
		if err != nil || need > 0 || h.Len != len(rest) {
			t.Fatalf("backend got %q before the client's bytes: %v, need %d", rest, err, need)
		}
		return h, rest
	}
	f := func(addr string, backend <-chan *net.TCPConn, wantVersion ProxyVersion) {
		t.Helper()
		c := dial(t, addr)
		if _, err := c.Write([]byte("hello")); err != nil {
			t.Fatal(err)
		}
		h, raw := readHeader(recv(t, backend))
		if wantVersion == 0 {
			if raw != nil {
				t.Fatalf("%s: backend got %q before the client's bytes; want nothing", addr, raw)
			}
			return
		}
		client := c.LocalAddr().(*net.TCPAddr).AddrPort()
		if h.Version != wantVersion || h.Src != client || h.Dst.Port() != c.RemoteAddr().(*net.TCPAddr).AddrPort().Port() {
			t.Fatalf("%s: header v%d %s -> %s; want v%d %s -> port %d",
				addr, h.Version, h.Src, h.Dst, wantVersion, client, c.RemoteAddr().(*net.TCPAddr).Port)
		}
	}
	f(addrs[0], beV2, ProxyV2)
	f(addrs[1], bePlain, 0)
	f(addrs[2], beOver, ProxyV1)
}
