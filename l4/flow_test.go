package l4

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/panjf2000/gnet/v2"

	"portico/conntrack"
	"portico/lb"
)

// smallMarks makes backpressure start early: 64 KiB / 16 KiB.
func smallMarks(lc *ListenerConfig) {
	lc.HighWater, lc.LowWater, lc.MaxFlowBuffer = 64<<10, 16<<10, 2*(64<<10+readChunk)
}

// acceptOne returns a listener and a channel that yields its first
// connection.
func acceptOne(t *testing.T) (net.Listener, <-chan *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ch := make(chan *net.TCPConn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(ch)
			return
		}
		c.SetDeadline(time.Now().Add(testTimeout))
		t.Cleanup(func() { c.Close() })
		ch <- c.(*net.TCPConn)
	}()
	return ln, ch
}

func recv(t *testing.T, ch <-chan *net.TCPConn) *net.TCPConn {
	t.Helper()
	select {
	case c, ok := <-ch:
		if !ok {
			t.Fatal("backend accept failed")
		}
		return c
	case <-time.After(testTimeout):
		t.Fatal("backend got no connection")
	}
	return nil
}

// writeAsync writes size bytes of a stream to w and reports their SHA-256.
func writeAsync(w io.Writer, seed uint64, size int64, closeWrite bool) <-chan []byte {
	ch := make(chan []byte, 1)
	go func() {
		h := sha256.New()
		newStream(seed).send(w, size, h)
		if closeWrite {
			w.(*net.TCPConn).CloseWrite()
		}
		ch <- h.Sum(nil)
	}()
	return ch
}

// TestHalfCloseClient: the client's FIN reaches the backend as EOF, and the
// backend's reply, sent after it, still reaches the client in full.
func TestHalfCloseClient(t *testing.T) {
	ln, backend := acceptOne(t)
	pools := map[string]*lb.Pool{"p": newTestPool(t, "p", "round_robin", ln.Addr().String())}
	_, set, addrs := startProxy(t, pools, testListener(nil))
	c := dial(t, addrs[0])
	c.Write([]byte("request"))
	c.CloseWrite()
	b := recv(t, backend)
	req, err := io.ReadAll(b)
	if err != nil || string(req) != "request" {
		t.Fatalf("backend read: got %q, %v; want %q, EOF", req, err, "request")
	}
	const size = 8 << 20
	sum := writeAsync(b, 3, size, true)
	r := readAll(c)
	if want := <-sum; r.err != nil || r.n != size || !bytes.Equal(r.sum, want) {
		t.Fatalf("client got %d bytes (%v); want %d intact", r.n, r.err, size)
	}
	waitFor(t, "flow to end", func() bool {
		return metricValue(set, `portico_l4_flows_closed_total{listener="test",reason="done"}`) == 1
	})
	// The reply after the FIN went through splice(2).
	if got := metricValue(set, `portico_l4_splices_total{listener="test"}`); got != 1 {
		t.Errorf("splices: got %v; want 1", got)
	}
	if got := metricValue(set, `portico_l4_bytes_total{listener="test",direction="backend_to_client"}`); got != size {
		t.Errorf("bytes backend to client: got %v; want %d", got, size)
	}
}

// TestHalfCloseBackend: the backend's FIN reaches the client, which keeps
// sending; the backend reads everything.
func TestHalfCloseBackend(t *testing.T) {
	ln, backend := acceptOne(t)
	pools := map[string]*lb.Pool{"p": newTestPool(t, "p", "round_robin", ln.Addr().String())}
	_, _, addrs := startProxy(t, pools, testListener(nil))
	c := dial(t, addrs[0])
	c.Write([]byte("x"))
	b := recv(t, backend)
	b.Write([]byte("bye"))
	b.CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "bye" {
		t.Fatalf("client read: got %q, %v; want %q, EOF", got, err, "bye")
	}
	const size = 8 << 20
	sum := writeAsync(c, 4, size, true)
	r := readAll(b)
	if want := <-sum; r.err != nil || r.n != size+1 {
		t.Fatalf("backend got %d bytes (%v); want %d", r.n, r.err, size+1)
	} else {
		_ = want
	}
}

// TestHalfCloseWithQueuedReply pins the bug where gnet's close on EOF
// dropped the bytes still queued for the closing socket: the client sends
// its FIN while megabytes of the reply are queued in the proxy, then reads
// them all.
func TestHalfCloseWithQueuedReply(t *testing.T) {
	ln, backend := acceptOne(t)
	pools := map[string]*lb.Pool{"p": newTestPool(t, "p", "round_robin", ln.Addr().String())}
	_, set, addrs := startProxy(t, pools, testListener(smallMarks))
	c := dial(t, addrs[0])
	c.SetReadBuffer(16 << 10)
	c.Write([]byte("x"))
	b := recv(t, backend)
	const size = 32 << 20
	sum := writeAsync(b, 5, size, true)
	// Wait until the proxy has paused reading the backend: the reply
	// fills the proxy's queue for the client.
	waitFor(t, "a pause", func() bool {
		return metricValue(set, `portico_l4_backpressure_pauses_total{listener="test"}`) > 0
	})
	c.CloseWrite()
	r := readAll(c)
	if want := <-sum; r.err != nil || r.n != size || !bytes.Equal(r.sum, want) {
		t.Fatalf("client got %d bytes (%v); want %d intact", r.n, r.err, size)
	}
	if n, err := io.Copy(io.Discard, b); err != nil || n != 1 {
		t.Fatalf("backend: got %d bytes, %v; want 1, EOF", n, err)
	}
}

// TestBothDirectionsCongested: client and backend both send 16 MiB before
// reading anything. Both sockets get paused and memory stays bounded; when
// both read, every byte arrives both ways, and the last-resort cap is not
// hit.
func TestBothDirectionsCongested(t *testing.T) {
	ln, backend := acceptOne(t)
	pools := map[string]*lb.Pool{"p": newTestPool(t, "p", "round_robin", ln.Addr().String())}
	_, set, addrs := startProxy(t, pools, testListener(smallMarks))
	c := dial(t, addrs[0])
	const size = 16 << 20
	up := writeAsync(c, 6, size, true)
	b := recv(t, backend)
	down := writeAsync(b, 7, size, true)
	waitFor(t, "both sides paused", func() bool {
		return metricValue(set, `portico_l4_backpressure_pauses_total{listener="test"}`) >= 2
	})
	var wg sync.WaitGroup
	var atBackend, atClient bulkResult
	wg.Add(2)
	go func() { defer wg.Done(); atBackend = readAll(b) }()
	go func() { defer wg.Done(); atClient = readAll(c) }()
	wg.Wait()
	if want := <-up; atBackend.n != size || !bytes.Equal(atBackend.sum, want) {
		t.Errorf("backend got %d bytes (%v); want %d intact", atBackend.n, atBackend.err, size)
	}
	if want := <-down; atClient.n != size || !bytes.Equal(atClient.sum, want) {
		t.Errorf("client got %d bytes (%v); want %d intact", atClient.n, atClient.err, size)
	}
	if n := metricValue(set, `portico_l4_flows_closed_total{listener="test",reason="buffer_cap"}`); n != 0 {
		t.Errorf("buffer_cap closes: got %v; want 0", n)
	}
}

// TestParkedConnFdReuse pins the stale-handle bug: after a socket is
// paused, gnet's closed conn keeps the old fd number, and the kernel hands
// it to the next accepted connection. Bytes for the paused client must
// still reach it, and none may reach the new client.
func TestParkedConnFdReuse(t *testing.T) {
	var mu sync.Mutex
	var backends []*net.TCPConn
	got := make(chan struct{}, 16)
	stop := make(chan struct{})
	be := newTCPServer(t, func(c net.Conn) {
		mu.Lock()
		backends = append(backends, c.(*net.TCPConn))
		mu.Unlock()
		got <- struct{}{}
		<-stop // the test reads and writes
	})
	t.Cleanup(func() { close(stop) })
	pools := map[string]*lb.Pool{"p": newTestPool(t, "p", "round_robin", be.addr())}
	_, set, addrs := startProxy(t, pools, testListener(smallMarks))

	// Client A fills the stalled backend A: A's client socket is paused.
	a := dial(t, addrs[0])
	<-got
	const size = 32 << 20
	upA := writeAsync(a, 8, size, false)
	waitFor(t, "client A paused", func() bool {
		return metricValue(set, `portico_l4_backpressure_pauses_total{listener="test"}`) >= 1
	})
	// Client B most likely gets A's old fd number in the proxy.
	bc := dial(t, addrs[0])
	<-got
	mu.Lock()
	beA, beB := backends[0], backends[1]
	mu.Unlock()
	// Each backend answers its own client.
	beA.Write([]byte("for A"))
	beB.Write([]byte("for B"))
	buf := make([]byte, 5)
	if _, err := io.ReadFull(a, buf); err != nil || string(buf) != "for A" {
		t.Fatalf("client A read: got %q, %v; want %q", buf, err, "for A")
	}
	if _, err := io.ReadFull(bc, buf); err != nil || string(buf) != "for B" {
		t.Fatalf("client B read: got %q, %v; want %q", buf, err, "for B")
	}
	// B echoes through its own flow only.
	bc.Write([]byte("from B"))
	beB.SetReadDeadline(time.Now().Add(testTimeout))
	if _, err := io.ReadFull(beB, buf[:5]); err != nil || string(buf[:5]) != "from " {
		t.Fatalf("backend B read: got %q, %v", buf, err)
	}
	// Backend A reads again: A's upload arrives whole.
	r := make(chan bulkResult, 1)
	go func() { r <- readAll(io.LimitReader(beA, size)) }()
	res := <-r
	if want := <-upA; res.n != size || !bytes.Equal(res.sum, want) {
		t.Fatalf("backend A got %d bytes; want %d intact", res.n, size)
	}
}

// TestUnparkPeerGone: a paused client that resets before reading resumes
// must not be handed back to gnet (whose worker fails on a socket without
// a peer): the flow is closed as reset, and the proxy keeps serving.
func TestUnparkPeerGone(t *testing.T) {
	ln, backend := acceptOne(t)
	pools := map[string]*lb.Pool{"p": newTestPool(t, "p", "round_robin", ln.Addr().String())}
	_, set, addrs := startProxy(t, pools, testListener(smallMarks))
	c := dial(t, addrs[0])
	b := recv(t, backend)
	c.SetWriteBuffer(64 << 10)
	done := writeAsync(c, 9, 32<<20, false)
	waitFor(t, "client paused", func() bool {
		return metricValue(set, `portico_l4_backpressure_pauses_total{listener="test"}`) >= 1
	})
	c.SetLinger(0)
	c.Close() // a reset
	<-done
	go io.Copy(io.Discard, b) // the backend drains: the proxy resumes A
	waitFor(t, "reset close", func() bool {
		return metricValue(set, `portico_l4_flows_closed_total{listener="test",reason="reset"}`) == 1
	})
}

// TestEnrollWatchdog: a socket handed back to the loop that never opens
// (gnet's Enroll can report success without OnOpen) is cut by the sweep.
func TestEnrollWatchdog(t *testing.T) {
	s := newBareServer(t)
	l, _ := newListener(s, 0, testListener(nil))
	lp := newLoop(l, fakeLoop{})
	f := newFlow(lp, nil)
	f.client.c = nil
	f.state = stateOpen
	lp.link(f)
	l.m.active.Add(1)
	f.client.parked, f.client.enrolling = true, true
	f.client.enrollBy = nanotime() - 1
	lp.sweep()
	if f.state != stateClosed {
		t.Fatalf("flow state after sweep: got %d; want closed", f.state)
	}
	if got := metricValue(s.set, `portico_l4_flows_closed_total{listener="test",reason="enroll_timeout"}`); got != 1 {
		t.Fatalf("enroll_timeout closes: got %v; want 1", got)
	}
}

// TestBufferCap: when a socket cannot be paused (here its descriptor is
// bad, so it cannot be dup'ed), the flow reads on until max_flow_buffer,
// then is closed and counted.
func TestBufferCap(t *testing.T) {
	s := newBareServer(t)
	lc := testListener(smallMarks)
	l, _ := newListener(s, 0, lc)
	lp := newLoop(l, fakeLoop{})
	// The backend: a real socket that nobody reads.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	bconn, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer bconn.Close()
	file, err := bconn.(*net.TCPConn).File()
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	bfd := int(file.Fd())
	syscall.SetNonblock(bfd, true)

	client := &fakeConn{fd: -1}
	f := newFlow(lp, client)
	client.ctx = &f.client
	f.state = stateOpen
	lp.link(f)
	l.m.active.Add(1)
	backend := &fakeConn{fd: bfd, ctx: &f.backend}
	f.backend.c = backend

	chunk := bytes.Repeat([]byte("x"), readChunk)
	for i := 0; ; i++ {
		client.data = chunk
		if l.OnTraffic(client) != gnet.Close {
			continue
		}
		if f.state != stateClosed {
			t.Fatalf("OnTraffic returned Close after %d chunks, flow not closed (parked: %v)", i, f.client.parked)
		}
		break
	}
	if got := metricValue(s.set, `portico_l4_flows_closed_total{listener="test",reason="buffer_cap"}`); got != 1 {
		t.Fatalf("buffer_cap closes: got %v; want 1", got)
	}
}

// fakeConn is the part of a gnet.Conn that OnTraffic uses; other methods
// panic.
type fakeConn struct {
	gnet.Conn
	fd   int
	ctx  any
	data []byte
}

func (c *fakeConn) Fd() int            { return c.fd }
func (c *fakeConn) Context() any       { return c.ctx }
func (c *fakeConn) SetContext(ctx any) { c.ctx = ctx }
func (c *fakeConn) Next(int) ([]byte, error) {
	b := c.data
	c.data = nil
	return b, nil
}

// fakeLoop is an event loop that runs nothing.
type fakeLoop struct{ gnet.EventLoop }

func (fakeLoop) Execute(context.Context, gnet.Runnable) error { return nil }
func (fakeLoop) Close(gnet.Conn) error                        { return nil }

func newSetForTest() *metrics.Set { return metrics.NewSet() }

// newBareServer is a Server with no listener, for tests that drive a flow
// by hand.
func newBareServer(t *testing.T) *Server {
	t.Helper()
	table, err := conntrack.New(conntrack.WithShards(1))
	if err != nil {
		t.Fatal(err)
	}
	return &Server{log: testLogger(), set: newSetForTest(), flows: table}
}

// TestParkedSocketFinsCrossed pins the bug where a paused client's socket,
// once both FINs had crossed (the client's, unread, and portico's, passing
// the backend's on), had lost its peer address and was cut as reset: its
// receive buffer still held the end of the upload. It is read directly.
func TestParkedSocketFinsCrossed(t *testing.T) {
	ln, backend := acceptOne(t)
	pools := map[string]*lb.Pool{"p": newTestPool(t, "p", "round_robin", ln.Addr().String())}
	_, set, addrs := startProxy(t, pools, testListener(smallMarks))
	c := dial(t, addrs[0])
	b := recv(t, backend)
	// The client sends until the proxy pauses it, then whatever the
	// buffers still take, then its FIN.
	stop := make(chan struct{})
	type sent struct {
		n   int64
		sum []byte
	}
	up := make(chan sent, 1)
	go func() {
		h := sha256.New()
		st := newStream(11)
		var n int64
		for {
			select {
			case <-stop:
				c.CloseWrite()
				up <- sent{n, h.Sum(nil)}
				return
			default:
			}
			chunk := st.next(16 << 10)
			m, _ := c.Write(chunk)
			h.Write(chunk[:m])
			n += int64(m)
		}
	}()
	waitFor(t, "client paused", func() bool {
		return metricValue(set, `portico_l4_backpressure_pauses_total{listener="test"}`) >= 1
	})
	c.SetWriteDeadline(time.Now().Add(200 * time.Millisecond)) // unblocks a full write
	close(stop)
	u := <-up
	b.Write([]byte("bye"))
	b.CloseWrite()
	c.SetReadDeadline(time.Now().Add(testTimeout))
	if got, err := io.ReadAll(c); err != nil || string(got) != "bye" {
		t.Fatalf("client read: got %q, %v; want %q, EOF", got, err, "bye")
	}
	r := readAll(b)
	if r.n != u.n || !bytes.Equal(r.sum, u.sum) {
		t.Fatalf("backend got %d bytes (%v); want %d intact", r.n, r.err, u.n)
	}
}
