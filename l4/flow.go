package l4

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"syscall"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"

	"portico/lb"
)

// A flow is one proxied connection: a client leg and a backend leg, both on
// the same event loop. Every field of a flow and of its legs is touched only
// on that loop, so nothing here takes a lock.
//
// # Reading and writing
//
// gnet reads each socket and calls OnTraffic with at most readChunk bytes;
// the flow writes them to the other socket itself, with write(2), and
// queues what the kernel does not take in that leg's own queue. gnet's
// outbound buffer is never used: gnet drops it when a socket closes, and it
// offers no way to learn that it drained. When a write leaves bytes queued,
// a goroutine waits for the socket to become writable on Go's poller (through
// a dup of the socket, the leg's conn) and hands the flush back to the loop.
//
// # Backpressure
//
// gnet never stops reading a socket it watches. When the bytes queued for a
// leg pass HighWater, the flow parks the other leg, the one it reads from: it
// keeps a dup of the socket and returns gnet.Close, so gnet forgets the
// socket without shutting it down. Nobody reads it, its receive buffer
// fills, and TCP's window stops the sender. When the queue drains below
// LowWater, the socket is handed back to the same loop with Enroll. Unread
// bytes are never lost: OnTraffic has taken all of them before it parks.
//
// # Closing
//
// A socket's EOF (gnet closes it; OnClose still sees it open) becomes a
// write shutdown of the other socket once that socket's queue is written;
// the other direction carries on through the dup. A flow ends normally when
// both sides have reached EOF and both queues are empty, so no byte is lost
// on close; on a reset, an error or a timeout it is cut.
type flow struct {
	lp      *loop
	client  leg
	backend leg
	state   flowState
	routes  *routeTable // TLS passthrough: the routes to match the ClientHello against
	sni     string      // server name of the ClientHello; "" without one
	lease   lb.Lease
	leased  bool
	start   int64 // accept time, nanotime
	last    int64 // last byte moved, on the loop's coarse clock
	dialBy  int64 // deadline of the backend connection while dialing

	prev, next *flow // the loop's list of flows, for the sweep
}

type flowState uint8

const (
	stateHello   flowState = iota // TLS passthrough: waiting for the ClientHello
	stateDialing                  // waiting for the backend
	stateOpen                     // both legs connected
	stateClosed
)

// leg is one socket of a flow and the bytes queued for it.
type leg struct {
	f    *flow
	peer *leg

	// c is the gnet conn reading this socket. It is nil before the socket
	// is registered, while it is parked and after EOF. A gnet conn that has
	// been closed keeps its old fd number, which the kernel soon reuses for
	// another connection: nothing may call a closed conn, so every close
	// sets c to nil first.
	c gnet.Conn

	// conn is portico's own dup of the socket, made the first time it is
	// needed: to wait for writability, to keep the socket open while
	// parked or after EOF. wfd is its descriptor; -1 without conn.
	conn *net.TCPConn
	rc   syscall.RawConn
	wfd  int

	q    []byte // bytes queued for this socket, from q[qoff]
	qoff int

	waiting     bool  // a goroutine waits for the socket to be writable
	parked      bool  // not read, for backpressure
	enrolling   bool  // a parked socket was handed back to the loop; OnOpen pending
	enrollBy    int64 // deadline of that hand-over
	eof         bool  // no more bytes will be read from this socket
	shutPending bool  // shut the write side down once q is empty
	shut        bool  // the write side is shut down

	writable gnet.Runnable // runs onWritable on the loop
}

// maxIdleQueue is the largest queue buffer kept for reuse once it is empty;
// larger ones are dropped so that a burst does not pin memory.
const maxIdleQueue = 256 << 10

func newFlow(lp *loop, c gnet.Conn) *flow {
	f := &flow{lp: lp, start: nanotime(), last: lp.now}
	f.client = leg{f: f, peer: &f.backend, c: c, wfd: -1}
	f.backend = leg{f: f, peer: &f.client, wfd: -1}
	for _, g := range []*leg{&f.client, &f.backend} {
		g.writable = gnet.RunnableFunc(func(context.Context) error { g.onWritable(); return nil })
	}
	return f
}

func (g *leg) queued() int { return len(g.q) - g.qoff }

// fd is the socket's descriptor for writes: the dup when there is one, else
// gnet's while its conn is open; -1 when the socket is not connected yet.
func (g *leg) fd() int {
	if g.conn != nil {
		return g.wfd
	}
	if g.c != nil {
		return g.c.Fd()
	}
	return -1
}

// send writes b to the socket, queuing what the kernel does not take. Bytes
// for a socket not connected yet are queued until it is.
func (g *leg) send(b []byte) error {
	if g.queued() > 0 {
		g.q = append(g.q, b...)
		return nil
	}
	fd := g.fd()
	if fd < 0 {
		g.q = append(g.q[:0], b...)
		g.qoff = 0
		return nil
	}
	n, err := writeSome(fd, b)
	if err != nil {
		return err
	}
	if n < len(b) {
		g.q = append(g.q[:0], b[n:]...)
		g.qoff = 0
		return g.waitWritable()
	}
	return nil
}

// flush writes as much of the queue as the kernel takes and waits for
// writability if some is left.
func (g *leg) flush() error {
	fd := g.fd()
	if g.queued() == 0 || fd < 0 {
		return nil
	}
	n, err := writeSome(fd, g.q[g.qoff:])
	if err != nil {
		return err
	}
	g.qoff += n
	switch {
	case g.queued() == 0:
		if cap(g.q) > maxIdleQueue {
			g.q = nil
		} else {
			g.q = g.q[:0]
		}
		g.qoff = 0
		return nil
	case g.qoff > len(g.q)/2:
		g.q = g.q[:copy(g.q, g.q[g.qoff:])]
		g.qoff = 0
	}
	return g.waitWritable()
}

// writeSome writes b to a non-blocking socket until the kernel refuses more.
func writeSome(fd int, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := unix.Write(fd, b[n:])
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return n, nil
		case err != nil:
			return n, os.NewSyscallError("write", err)
		}
		n += m
	}
	return n, nil
}

// own makes the leg's dup of its socket, if it has none, from gnet's
// descriptor, which must be open.
func (g *leg) own() error {
	if g.conn != nil {
		return nil
	}
	if g.c == nil {
		panic("BUG: l4: own called on a leg with neither conn")
	}
	conn, err := fileConn(g.c.Fd())
	if err != nil {
		return err
	}
	rc, err := conn.SyscallConn()
	if err == nil {
		err = rc.Control(func(fd uintptr) { g.wfd = int(fd) })
	}
	if err != nil {
		conn.Close()
		return fmt.Errorf("cannot use dup of socket: %w", err)
	}
	g.conn, g.rc = conn, rc
	return nil
}

// fileConn returns a *net.TCPConn on a dup of fd; fd stays the caller's.
func fileConn(fd int) (*net.TCPConn, error) {
	nfd, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("cannot dup socket: %w", os.NewSyscallError("fcntl", err))
	}
	f := os.NewFile(uintptr(nfd), "l4")
	c, err := net.FileConn(f) // dups again
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("cannot dup socket: %w", err)
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("cannot dup socket: %T is not TCP", c)
	}
	return tc, nil
}

// waitWritable starts a goroutine that waits until the socket is writable
// and then runs onWritable on the loop. The goroutine ends then, or when the
// leg's conn is closed.
func (g *leg) waitWritable() error {
	if g.waiting {
		return nil
	}
	if err := g.own(); err != nil {
		return err
	}
	g.waiting = true
	go awaitWritable(g.rc, g.f.lp.el, g.writable)
	return nil
}

func awaitWritable(rc syscall.RawConn, el gnet.EventLoop, task gnet.Runnable) {
	// RawConn.Write calls f, and while f returns false waits for the
	// poller to report the socket writable; the loop does the writing.
	first := true
	_ = rc.Write(func(uintptr) bool {
		if first {
			first = false
			return false
		}
		return true
	})
	_ = el.Execute(context.Background(), task)
}

// onWritable runs on the loop when the socket may take more of the queue.
func (g *leg) onWritable() {
	g.waiting = false
	dbg("writable client=%v q=%d", g == &g.f.client, g.queued())
	f := g.f
	if f.state == stateClosed || g.conn == nil {
		return
	}
	before := g.queued()
	if err := g.flush(); err != nil {
		f.end(nil, closeReset, err)
		return
	}
	if g.queued() < before {
		f.last = f.lp.now
	}
	f.drained(g)
}

// drained acts on what the draining of g's queue allows: reading the peer
// again, shutting g's write side down, ending the flow.
func (f *flow) drained(g *leg) {
	if g.peer.parked && !g.peer.enrolling && g.queued() < f.lp.l.cfg.LowWater {
		g.peer.unpark()
		if f.state == stateClosed {
			return
		}
	}
	if g.shutPending && g.queued() == 0 && g.fd() >= 0 {
		g.shutdownWrite()
	}
	f.maybeDone()
}

// park stops reading g, the current conn of OnTraffic, which has taken all
// its inbound bytes: it keeps a dup of the socket and drops every reference
// to the gnet conn. The caller returns gnet.Close. It returns false when the
// socket cannot be kept; the flow then reads on, under MaxFlowBuffer.
func (g *leg) park() bool {
	if err := g.own(); err != nil {
		g.f.lp.l.srv.log.Warn("cannot pause reading a tcp connection", "listener", g.f.lp.l.cfg.Name, "error", err)
		return false
	}
	g.c = nil
	g.parked = true
	g.f.lp.l.m.parks.Inc()
	dbg("park client=%v peerq=%d", g == &g.f.client, g.peer.queued())
	return true
}

// unpark hands a parked socket back to the loop. OnOpen ends the hand-over,
// or the sweep does after enrollTimeout: gnet's Enroll may report success
// and never open the conn, so nothing waits on its result channel.
func (g *leg) unpark() {
	f := g.f
	dbg("unpark client=%v", g == &g.f.client)
	// Enroll of a socket whose peer is gone fails inside gnet's worker
	// without a word (the address it reads is nil): catch that here.
	if _, err := unix.Getpeername(g.wfd); err != nil {
		f.end(nil, closeReset, fmt.Errorf("%w: %w", ErrPeerGone, os.NewSyscallError("getpeername", err)))
		return
	}
	nc, err := fileConn(g.wfd)
	if err != nil {
		f.end(nil, closeReset, err)
		return
	}
	if _, err := f.lp.el.Enroll(gnet.NewContext(context.Background(), g), nc); err != nil {
		nc.Close()
		f.end(nil, closeShutdown, fmt.Errorf("cannot resume reading: %w", err))
		return
	}
	g.enrolling = true
	g.enrollBy = nanotime() + int64(enrollTimeout)
}

// opened runs in OnOpen for a socket the flow handed to the loop: the
// backend once dialed, or a parked socket coming back.
func (g *leg) opened(c gnet.Conn) gnet.Action {
	f := g.f
	if f.state == stateClosed || g.c != nil {
		return gnet.Close // OnClose ignores it: g.c is not c
	}
	g.c = c
	dbg("opened client=%v enrolling=%v", g == &g.f.client, g.enrolling)
	if g.enrolling {
		g.enrolling, g.parked = false, false
		return gnet.None
	}
	// The backend is connected.
	f.state = stateOpen
	f.last = f.lp.now
	// A PROXY protocol header would be written here, before the held bytes.
	if err := g.flush(); err != nil {
		g.c = nil
		f.end(nil, closeReset, err)
		return gnet.Close
	}
	f.drained(g)
	return gnet.None
}

// closeWrite shuts the socket's write side down once its queue is written:
// the other side has sent everything it will send.
func (g *leg) closeWrite() {
	g.shutPending = true
	if g.queued() == 0 && g.fd() >= 0 {
		g.shutdownWrite()
	}
}

func (g *leg) shutdownWrite() {
	g.shutPending, g.shut = false, true
	_ = unix.Shutdown(g.fd(), unix.SHUT_WR)
}

func (f *flow) maybeDone() {
	c, b := &f.client, &f.backend
	if f.state != stateClosed && c.eof && b.eof && c.queued() == 0 && b.queued() == 0 {
		f.end(nil, closeDone, nil)
	}
}

// end closes the flow: both sockets, the lease, the loop's entry. cur is
// the conn whose callback is running, which the caller closes by returning
// gnet.Close (or which gnet is closing); nil when none.
func (f *flow) end(cur gnet.Conn, why closeReason, err error) {
	if f.state == stateClosed {
		return
	}
	open := f.state == stateOpen
	f.state = stateClosed
	for _, g := range []*leg{&f.client, &f.backend} {
		if c := g.c; c != nil {
			g.c = nil
			if c != cur {
				_ = f.lp.el.Close(c)
			}
		}
		if g.conn != nil {
			if why == closeReset {
				_ = g.conn.SetLinger(0) // pass the reset on
			}
			g.conn.Close()
			g.conn, g.rc, g.wfd = nil, nil, -1
		}
		g.q, g.qoff = nil, 0
	}
	if f.leased {
		outcome := lb.Success
		if !open {
			outcome = lb.Canceled
		}
		f.lease.Release(outcome)
		f.leased = false
	}
	l := f.lp.l
	f.lp.unlink(f)
	l.m.active.Add(-1)
	l.m.closed[why].Inc()
	if why > closeReset && why != closeShutdown && l.srv.log.Enabled(context.Background(), slog.LevelDebug) {
		l.srv.log.Debug("tcp connection closed", "listener", l.cfg.Name, "reason", why.String(), "error", err)
	}
}

// connect starts dialing a backend of pool off the loop.
func (f *flow) connect(pool *lb.Pool) {
	l := f.lp.l
	var key lb.Key
	switch pool.HashKey().Source {
	case lb.HashClientIP:
		if c := f.client.c; c != nil {
			key.Hash = hashAddr(c.RemoteAddr())
		}
	case lb.HashSNI:
		if f.sni != "" {
			key.Hash = lb.HashString(f.sni)
		}
	}
	f.state = stateDialing
	f.dialBy = nanotime() + l.dialBudget
	l.srv.dials.Add(1)
	go l.srv.dial(f, f.lp.el, pool, key, l.cfg.ConnectTimeout, *l.cfg.ConnectRetries, &l.m)
}

// hashAddr hashes the IP of a TCP address for lb.Key: the 4-byte form of an
// IPv4 address, so that a v4-mapped IPv6 client hashes alike.
func hashAddr(a net.Addr) uint64 {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return 0
	}
	if ip4 := ta.IP.To4(); ip4 != nil {
		return lb.Hash(ip4)
	}
	return lb.Hash(ta.IP)
}

// dial picks a backend and connects to it, trying others after a failure,
// and hands the outcome to f's loop. It runs on its own goroutine, which
// ends within (retries+1) × timeout or when the server shuts down.
func (s *Server) dial(f *flow, el gnet.EventLoop, pool *lb.Pool, key lb.Key, timeout time.Duration, retries int, m *listenerMetrics) {
	defer s.dials.Done()
	d := net.Dialer{Timeout: timeout}
	why, err := closeNoBackend, error(nil)
	var tried uint64
	for attempt := 0; attempt <= retries; attempt++ {
		lease, perr := pickUntried(pool, key, attempt, tried)
		if perr != nil {
			err = perr
			break
		}
		tried |= backendBit(lease.Backend)
		nc, derr := d.DialContext(s.ctx, "tcp", lease.Address)
		if derr != nil {
			lease.Release(lb.Failure)
			m.connectErrors.Inc()
			why, err = closeConnectFailed, fmt.Errorf("dial backend %s: %w", lease.Name, derr)
			if s.ctx.Err() != nil {
				break
			}
			continue
		}
		tc := nc.(*net.TCPConn)
		task := gnet.RunnableFunc(func(context.Context) error { f.dialed(lease, tc); return nil })
		if el.Execute(context.Background(), task) != nil {
			nc.Close()
			lease.Release(lb.Canceled)
		}
		return
	}
	_ = el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
		f.end(nil, why, err)
		return nil
	}))
}

// pickUntried picks a backend for a connect attempt, passing over those in
// tried (a set of backendBit): a policy may hand a retry the backend that
// just failed (round robin over two backends does when picks interleave),
// so it is asked again, at most once per backend. Each new ask adds the pool
// size to Attempt, which perturbs a hashing policy. When every backend has
// been tried, the last pick is returned.
func pickUntried(p *lb.Pool, key lb.Key, attempt int, tried uint64) (lb.Lease, error) {
	n := len(p.Backends())
	key.Attempt = uint32(attempt)
	b, err := p.Pick(key)
	for i := 1; i <= n && err == nil && tried&backendBit(b.Backend) != 0; i++ {
		b.Release(lb.Canceled)
		key.Attempt = uint32(attempt + i*n)
		b, err = p.Pick(key)
	}
	return b, err
}

// backendBit is b's member of a set of tried backends; backends past the
// 64th are not tracked.
func backendBit(b *lb.Backend) uint64 {
	if b.Index >= 64 {
		return 0
	}
	return 1 << b.Index
}

// dialed runs on the loop with a connected backend socket.
func (f *flow) dialed(lease lb.Lease, nc *net.TCPConn) {
	if f.state != stateDialing {
		nc.Close()
		lease.Release(lb.Canceled)
		return
	}
	f.lease, f.leased = lease, true
	if _, err := f.lp.el.Enroll(gnet.NewContext(context.Background(), &f.backend), nc); err != nil {
		nc.Close()
		f.end(nil, closeShutdown, err)
		return
	}
	// OnOpen of the backend, or the sweep at dialBy, ends the wait.
	f.dialBy = nanotime() + int64(enrollTimeout)
}

// loop is what one event loop keeps for one listener; touched only on that
// loop, except el, which is safe for concurrent use.
type loop struct {
	l      *listener
	el     gnet.EventLoop
	parser HelloParser
	now    int64 // coarse clock: nanotime at the last sweep or accept
	head   *flow

	sweepTask gnet.Runnable
}

func newLoop(l *listener, el gnet.EventLoop) *loop {
	lp := &loop{l: l, el: el, now: nanotime()}
	lp.sweepTask = gnet.RunnableFunc(func(context.Context) error { lp.sweep(); return nil })
	return lp
}

func (lp *loop) link(f *flow) {
	f.next = lp.head
	if lp.head != nil {
		lp.head.prev = f
	}
	lp.head = f
}

func (lp *loop) unlink(f *flow) {
	if f.prev != nil {
		f.prev.next = f.next
	} else if lp.head == f {
		lp.head = f.next
	}
	if f.next != nil {
		f.next.prev = f.prev
	}
	f.prev, f.next = nil, nil
}

// sweep ends the flows past a deadline.
func (lp *loop) sweep() {
	now := nanotime()
	lp.now = now
	l := lp.l
	for f := lp.head; f != nil; {
		next := f.next
		switch {
		case f.state == stateHello && now-f.start > l.hello:
			f.end(nil, closeHelloTimeout, ErrHelloTimeout)
		case f.state == stateDialing && now > f.dialBy:
			f.end(nil, closeEnrollTimeout, ErrConnectTimeout)
		case l.lifetime > 0 && now-f.start > l.lifetime:
			f.end(nil, closeLifetime, nil)
		case l.idle > 0 && now-f.last > l.idle:
			f.end(nil, closeIdle, nil)
		case f.client.enrolling && now > f.client.enrollBy, f.backend.enrolling && now > f.backend.enrollBy:
			f.end(nil, closeEnrollTimeout, ErrEnrollTimeout)
		}
		f = next
	}
}

// closeAll ends every flow of the loop; for Shutdown, once the loop has
// stopped.
func (lp *loop) closeAll() {
	for lp.head != nil {
		lp.head.end(nil, closeShutdown, nil)
	}
}

// OnOpen starts a flow for an accepted client, or finishes the hand-over of
// a socket a flow gave to the loop.
func (l *listener) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	if g, ok := c.Context().(*leg); ok {
		return nil, g.opened(c)
	}
	lp := l.loopFor(c.EventLoop())
	lp.now = nanotime()
	f := newFlow(lp, c)
	c.SetContext(&f.client)
	lp.link(f)
	l.m.accepted.Inc()
	l.m.active.Add(1)
	routes := l.srv.snap.Load().routes[l.idx]
	if routes.tls() {
		f.state, f.routes = stateHello, routes
		return nil, gnet.None
	}
	f.connect(routes.pool)
	return nil, gnet.None
}

// OnTraffic moves what a socket sent to the other one.
func (l *listener) OnTraffic(c gnet.Conn) gnet.Action {
	g, _ := c.Context().(*leg)
	if g == nil || g.c != c {
		return gnet.Close
	}
	f := g.f
	if f.state == stateHello {
		return f.onHello(c)
	}
	buf, _ := c.Next(-1)
	if len(buf) == 0 {
		return gnet.None
	}
	f.last = f.lp.now
	if g == &f.client {
		l.m.bytesIn.Add(len(buf))
	} else {
		l.m.bytesOut.Add(len(buf))
	}
	p := g.peer
	if p.shut {
		// The peer's write side is shut because g had reached EOF; g
		// cannot send more.
		panic("BUG: l4: bytes for a socket shut down")
	}
	if err := p.send(buf); err != nil {
		f.end(c, closeReset, err)
		return gnet.Close
	}
	if q := p.queued(); q > l.cfg.HighWater {
		if q+g.queued() > l.cfg.MaxFlowBuffer {
			l.srv.log.Warn("tcp connection over max_flow_buffer: closed", "listener", l.cfg.Name, "queued", q+g.queued())
			f.end(c, closeBufferCap, nil)
			return gnet.Close
		}
		if g.park() {
			return gnet.Close
		}
	}
	return gnet.None
}

// onHello reads the ClientHello of a TLS passthrough flow without consuming
// it, and once it is whole, routes the flow by its server name.
func (f *flow) onHello(c gnet.Conn) gnet.Action {
	buf, _ := c.Peek(-1)
	h, need, err := f.lp.parser.Parse(buf)
	if err != nil {
		f.end(c, closeBadHello, err)
		return gnet.Close
	}
	if need > 0 {
		return gnet.None // gnet keeps the bytes for the next call
	}
	pool := f.routes.match(h.ServerName)
	if pool == nil {
		f.end(c, closeNoRoute, fmt.Errorf("%w: %q", ErrNoRoute, h.ServerName))
		return gnet.Close
	}
	f.sni = h.ServerName
	f.routes = nil
	data, _ := c.Next(-1)
	f.lp.l.m.bytesIn.Add(len(data))
	f.last = f.lp.now
	_ = f.backend.send(data) // held until the backend is connected
	f.connect(pool)
	return gnet.None
}

// OnClose handles a socket gnet closed: EOF, an error, or the engine
// stopping. A conn that is not its leg's current one was closed by the
// flow (parked or cut) and is ignored.
func (l *listener) OnClose(c gnet.Conn, err error) gnet.Action {
	g, _ := c.Context().(*leg)
	if g == nil || g.c != c {
		return gnet.None
	}
	f := g.f
	if err != nil && errors.Is(err, io.EOF) && f.state != stateHello {
		// Half-close. gnet closes its descriptor after OnClose returns;
		// a dup keeps the socket for the bytes still to write to it.
		if !g.peer.eof || g.queued() > 0 {
			if oerr := g.own(); oerr != nil {
				g.c = nil
				f.end(nil, closeReset, oerr)
				return gnet.None
			}
		}
		g.c = nil
		g.eof = true
		g.peer.closeWrite()
		f.maybeDone()
		return gnet.None
	}
	g.c = nil
	why := closeReset
	switch {
	case err == nil:
		why = closeShutdown
	case f.state == stateHello:
		why = closeBadHello
	}
	f.end(nil, why, err)
	return gnet.None
}

// clockBase anchors nanotime.
var clockBase = time.Now()

// nanotime is a monotonic clock in nanoseconds.
func nanotime() int64 { return int64(time.Since(clockBase)) }

func numCPU() int { return runtime.NumCPU() }

func dbg(format string, args ...any) {
	if os.Getenv("L4_DBG") != "" {
		fmt.Fprintf(os.Stderr, format+"\n", args...)
	}
}
