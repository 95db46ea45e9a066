package l7

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
	"golang.org/x/sys/unix"
)

// countingListener counts active connections and bytes in both directions,
// and keeps the open connections for cutConns. pk, when not nil, takes the
// listener's idle keep-alive connections (park.go); limit is then the most
// connections the listener keeps open, parked ones included (0: no limit).
func (m *serverMetrics) countingListener(ln net.Listener, pk *parker, limit int) net.Listener {
	cl := &countListener{Listener: ln, m: m, pk: pk, limit: int64(limit)}
	if pk != nil {
		pk.ln.Store(cl)
	}
	return cl
}

type countListener struct {
	net.Listener
	m     *serverMetrics
	pk    *parker
	limit int64
	open  atomic.Int64 // this listener's connections not yet closed
}

func (l *countListener) Accept() (net.Conn, error) {
	var backoff time.Duration
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			// fasthttp's Serve ends on any accept error but a timeout, and
			// the listener with it. Running out of descriptors or memory
			// passes: wait and accept again, as net/http does.
			if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
				errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			return nil, err
		}
		// fasthttp's Concurrency counts the connections it is serving, which
		// parked ones are not; so with a parker max_conns is kept here, over
		// every open connection, as HAProxy's maxconn does.
		if l.limit > 0 && l.open.Load() >= l.limit {
			rejectConn(c)
			continue
		}
		cc := &countConn{Conn: c, m: l.m, ln: l, ip: appendIP(nil, c.RemoteAddr()),
			parkState: parkState{fd: -1, heapIdx: -1}}
		l.open.Add(1)
		l.m.conns.Add(1)
		l.m.openMu.Lock()
		l.m.open[cc] = struct{}{}
		l.m.openMu.Unlock()
		return cc, nil
	}
}

// rejectResponse is what a connection over max_conns gets before it is
// closed (fasthttp answers the same when its Concurrency is full).
const rejectResponse = "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: 37\r\n\r\nThe listener's max_conns is reached.\n"

func rejectConn(c net.Conn) {
	_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	_, _ = c.Write([]byte(rejectResponse))
	_ = c.Close()
}

// cutConns closes every client connection still open, tunnels and parked
// ones included: the end of a drain.
func (m *serverMetrics) cutConns() {
	m.openMu.Lock()
	conns := make([]*countConn, 0, len(m.open))
	for c := range m.open {
		conns = append(conns, c)
	}
	m.openMu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

// connState is every listener's fasthttp.Server.ConnState: it tells a
// countConn that fasthttp is done with a request, so that its next Read is
// the wait for the next one (readOrPark), and that the next request has
// begun: a pipelined request already in fasthttp's buffer goes active
// without a Read, and the Reads that finish it are not a wait.
func connState(c net.Conn, st fasthttp.ConnState) {
	if cc, ok := c.(*countConn); ok {
		switch st {
		case fasthttp.StateIdle:
			cc.idleNext = true
		case fasthttp.StateActive:
			cc.idleNext = false
		}
	}
}

// countConn is a client connection as fasthttp sees it: it counts bytes,
// keeps the client's IP text, reads ahead on the first byte of a request
// (readFirst) and can be parked while idle (park.go).
type countConn struct {
	net.Conn
	m      *serverMetrics
	ln     *countListener
	ip     []byte // the client's IP as text, for appendClientIP; read-only
	closed atomic.Bool

	// What readFirst read past the first byte, for the Reads that follow;
	// nil when nothing is held.
	ahead          *aheadBuf
	aheadR, aheadW int

	// The read deadline fasthttp asked for and the one armed on the socket
	// (clientdeadline.go); zero: none.
	deadline, armed time.Time

	parkState
}

func (c *countConn) Read(p []byte) (int, error) {
	if c.ahead != nil {
		return c.readAhead(p), nil
	}
	if c.idleNext {
		// fasthttp's wait for the next request on a keep-alive connection.
		c.idleNext = false
		if pk := c.ln.pk; pk != nil && c.ln.open.Load() > pk.policy.above {
			if n, err, ok := c.readOrPark(p); ok {
				return n, err
			}
		}
	}
	if len(p) == 1 {
		return c.readFirst(p)
	}
	n, err := c.readConn(p)
	if n > 0 {
		c.m.bytesIn.Add(n)
	}
	return n, err
}

// aheadBuf is the buffer readFirst reads into. A request head usually fits;
// the rest of a larger one is read by the next Reads as before.
type aheadBuf [4096]byte

var aheadBufs = sync.Pool{New: func() any { return new(aheadBuf) }}

// readFirst is fasthttp's read of the first byte of a connection's first
// request (with ReduceMemoryUsage it reads that byte alone, into a 1-byte
// slice, then reads the rest of the request with a second read(2)). Here
// the first read takes whatever has arrived, into a pooled buffer that the
// next Read hands over: one read(2) instead of two, and no buffer held
// while the connection waits. Nothing else in the server reads a client
// connection one byte at a time.
func (c *countConn) readFirst(p []byte) (int, error) {
	b := aheadBufs.Get().(*aheadBuf)
	n, err := c.readConn(b[:])
	return c.took(p, b, n, err)
}

// took hands the first byte of n read into b to p and keeps the rest.
func (c *countConn) took(p []byte, b *aheadBuf, n int, err error) (int, error) {
	if n <= 0 {
		aheadBufs.Put(b)
		return 0, err
	}
	c.m.bytesIn.Add(n)
	p[0] = b[0]
	if n == 1 {
		aheadBufs.Put(b)
	} else {
		c.ahead, c.aheadR, c.aheadW = b, 1, n
	}
	// A read that returned bytes and an error returns the bytes; the error
	// comes again on the next read of the socket.
	return 1, nil
}

// readAhead copies held bytes to p, and gives the buffer back once empty.
func (c *countConn) readAhead(p []byte) int {
	n := copy(p, c.ahead[c.aheadR:c.aheadW])
	c.aheadR += n
	if c.aheadR == c.aheadW {
		aheadBufs.Put(c.ahead)
		c.ahead = nil
	}
	return n
}

func (c *countConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if n > 0 {
		c.m.bytesOut.Add(n)
	}
	return n, err
}

// Close closes the connection, unless readOrPark has just chosen to park
// it: then fasthttp, which saw the end of a keep-alive connection, hands it
// to the parker instead.
func (c *countConn) Close() error {
	if pk := c.ln.pk; pk != nil {
		if c.parkReq.CompareAndSwap(true, false) && pk.park(c) {
			return nil
		}
		if fd, ok := pk.claim(c); ok {
			c.finish()
			return unix.Close(fd)
		}
	}
	c.finish()
	return c.Conn.Close()
}

// finish counts the connection closed, once.
func (c *countConn) finish() {
	if c.closed.CompareAndSwap(false, true) {
		c.ln.open.Add(-1)
		c.m.conns.Add(-1)
		c.m.openMu.Lock()
		delete(c.m.open, c)
		c.m.openMu.Unlock()
	}
}

// CloseWrite half-closes a TCP connection, for tunnels.
func (c *countConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// rawConn returns the connection's syscall.RawConn, made once per net.Conn
// (park.go makes a new net.Conn on a wake-up).
func (c *countConn) rawConn() syscall.RawConn {
	if c.raw == nil {
		sc, ok := c.Conn.(syscall.Conn)
		if !ok {
			return nil
		}
		raw, err := sc.SyscallConn()
		if err != nil {
			return nil
		}
		c.raw = raw
	}
	return c.raw
}
