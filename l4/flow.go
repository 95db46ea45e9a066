package l4

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"syscall"
	"time"
	"unsafe"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"

	"portico/conntrack"
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
// queues what the kernel does not take in that leg's own queue. When gnet's
// read filled its buffer, the flow moves what else the socket holds with
// splice(2) (pipe.go). The loop's own system calls on sockets are raw ones
// (rawio.go). gnet's outbound buffer is never used: gnet drops it when a
// socket closes, and it offers no way to learn that it drained. When a write leaves bytes queued,
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
// LowWater, the socket is handed back to the same loop (registerFD, else
// Enroll). Unread
// bytes are never lost: OnTraffic has taken all of them before it parks.
// A parked socket is still written to, through the dup, so both legs of a
// flow congested both ways can be parked at once and its memory stays under
// 2 × (HighWater + readChunk); MaxFlowBuffer only catches a socket that
// could not be parked (no descriptor left for the dup).
//
// gnet's conn of a parked socket keeps the old descriptor number, which the
// kernel soon gives to another connection: a leg drops its reference before
// gnet closes it, and every call goes through the leg's current conn. With
// Enroll (a gnet other than the pinned one), the hand-over back is checked
// first (Enroll of a socket whose peer has gone fails silently inside gnet's
// worker) and watched by the sweep (Enroll can report success without
// OnOpen ever running); nothing on the loop waits on Enroll's channel.
//
// # Closing
//
// A socket's EOF (gnet closes it; OnClose still sees it open) becomes a
// write shutdown of the other socket once that socket's queue is written
// (or its close, when that ends the flow); the other direction carries on
// through a dup. A flow ends normally when
// both sides have reached EOF and both queues are empty, so no byte is lost
// on close; on a reset, an error or a timeout it is cut.
//
// Once one side has reached EOF, its FIN has been passed on and nothing is
// queued for it, the rest of the other direction is usually a bulk reply:
// the flow hands both sockets to a goroutine that moves it with splice(2)
// (net.TCPConn.ReadFrom), which copies nothing through user space.
type flow struct {
	lp      *loop
	client  leg
	backend leg
	state   flowState
	routes  *routeTable // the listener's routes, until the flow is routed
	sni     string      // server name of the ClientHello; "" without one
	lease   lb.Lease
	leased  bool
	ct      conntrack.ID   // in the server's flow table; 0 when not in it
	peer    netip.AddrPort // the client: its socket's peer, or what its PROXY header says
	proxyOK bool           // the first bytes have passed the PROXY policy
	// The backend being dialed (dial.go): the pool and key of the picks,
	// the attempt in progress, the backends tried (a set of backendBit),
	// and why the flow ends if no attempt is left. pool is nil once open.
	pool    *lb.Pool
	key     lb.Key
	attempt int
	tried   uint64
	why     closeReason
	dialErr error
	bid     conntrack.BackendID // the flow table's ID of the leased backend
	// spliceOut: the spliced direction is backend to client.
	spliceOut bool
	start     int64 // accept time, nanotime
	last      int64 // last byte moved, on the loop's coarse clock
	dialBy    int64 // deadline of the backend connection while dialing

	prev, next *flow // the loop's list of flows, for the sweep
}

type flowState uint8

const (
	stateProxy   flowState = iota // waiting for a PROXY protocol header from a trusted peer
	stateHello                    // TLS passthrough: waiting for the ClientHello
	stateDialing                  // waiting for the backend
	stateOpen                     // both legs connected
	stateSpliced                  // half-closed; a goroutine splices the rest of the other direction
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

	// wfd is portico's own dup of the socket, made the first time it is
	// needed: to keep the socket open while parked or after EOF (own);
	// -1 without one. conn wraps it on Go's poller, made only to wait for
	// writability or to splice (pollable); wfd is then conn's descriptor.
	wfd  int
	conn *net.TCPConn
	rc   syscall.RawConn

	q queue // bytes queued for this socket

	connecting  bool  // the backend, dialed on the loop, is not confirmed connected yet
	waiting     bool  // a goroutine waits for the socket to be writable
	parked      bool  // not read, for backpressure
	enrolling   bool  // a parked socket was handed back to the loop; OnOpen pending
	enrollBy    int64 // deadline of that hand-over
	eof         bool  // no more bytes will be read from this socket
	shutPending bool  // shut the write side down once q is empty
	shut        bool  // the write side is shut down

	// waitGen numbers the waits for writability: a wait's task acts only
	// while it is the latest, so one left over from a connect attempt
	// that failed (connectFailed) cannot act for, or block, the next.
	waitGen uint32
}

func newFlow(lp *loop, c gnet.Conn) *flow {
	f := &flow{lp: lp, start: nanotime(), last: lp.now, proxyOK: true}
	f.client = leg{f: f, peer: &f.backend, c: c, wfd: -1}
	f.backend = leg{f: f, peer: &f.client, wfd: -1}
	return f
}

func (g *leg) queued() int { return g.q.len() }

// fd is the socket's descriptor for writes: the dup when there is one, else
// gnet's while its conn is open; -1 when the socket is not connected yet.
func (g *leg) fd() int {
	switch {
	case g.wfd >= 0:
		return g.wfd
	case g.c != nil && !g.connecting:
		return g.c.Fd()
	}
	return -1
}

// send writes b to the socket, queuing what the kernel does not take. Bytes
// for a socket not connected yet are queued until it is.
func (g *leg) send(b []byte) error {
	if g.connecting {
		g.q.push(&g.f.lp.chunks, b)
		g.f.pushConnecting()
		return nil
	}
	fd := g.fd()
	if g.queued() > 0 || fd < 0 {
		g.q.push(&g.f.lp.chunks, b)
		return nil
	}
	n, err := writeSome(fd, b)
	if err != nil {
		return err
	}
	if n < len(b) {
		g.q.push(&g.f.lp.chunks, b[n:])
		return g.waitWritable()
	}
	return nil
}

// flush writes as much of the queue as the kernel takes and waits for
// writability if some is left.
func (g *leg) flush() error {
	fd := g.fd()
	if fd < 0 {
		return nil
	}
	for g.queued() > 0 {
		b := g.q.front()
		n, err := writeSome(fd, b)
		if err != nil {
			return err
		}
		g.q.discard(&g.f.lp.chunks, n)
		if n < len(b) {
			return g.waitWritable()
		}
	}
	return nil
}

// writeSome writes b to a non-blocking socket until the kernel refuses more.
func writeSome(fd int, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := rawWrite(fd, b[n:])
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
	if g.wfd >= 0 {
		return nil
	}
	if g.c == nil {
		panic("BUG: l4: own called on a leg with neither conn")
	}
	fd, err := unix.FcntlInt(uintptr(g.c.Fd()), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("cannot dup socket: %w", os.NewSyscallError("fcntl", err))
	}
	g.wfd = fd
	return nil
}

// pollable gives the leg a conn on Go's poller, for a goroutine to wait on
// or splice with; it replaces the leg's dup, made first if need be.
func (g *leg) pollable() error {
	if g.conn != nil {
		return nil
	}
	if err := g.own(); err != nil {
		return err
	}
	conn, err := fileConn(g.wfd)
	if err != nil {
		return err
	}
	var nfd int
	rc, err := conn.SyscallConn()
	if err == nil {
		err = rc.Control(func(fd uintptr) { nfd = int(fd) })
	}
	if err != nil {
		conn.Close()
		return fmt.Errorf("cannot use dup of socket: %w", err)
	}
	unix.Close(g.wfd)
	g.wfd, g.conn, g.rc = nfd, conn, rc
	return nil
}

// release closes the leg's own descriptor, if any; with reset, so that
// the peer gets a reset.
func (g *leg) release(reset bool) {
	if g.wfd < 0 {
		return
	}
	if reset {
		_ = unix.SetsockoptLinger(g.wfd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	}
	if g.conn != nil {
		g.conn.Close()
	} else {
		_ = rawClose(g.wfd)
	}
	g.wfd, g.conn, g.rc = -1, nil, nil
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
	if err := g.pollable(); err != nil {
		return err
	}
	g.waiting = true
	g.waitGen++
	gen := g.waitGen
	go awaitWritable(g.rc, g.f.lp.el, gnet.RunnableFunc(func(context.Context) error { g.onWritable(gen); return nil }))
	return nil
}

func awaitWritable(rc syscall.RawConn, el gnet.EventLoop, task gnet.Runnable) {
	// RawConn.Write clears the poller's readiness, then calls f, and while
	// f returns false waits for the poller to report the socket writable;
	// the loop does the writing. The first call polls the socket itself: it
	// may have drained after the loop's write and before the clearing, and
	// then no readiness edge would come.
	first := true
	_ = rc.Write(func(fd uintptr) bool {
		if first {
			first = false
			pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
			n, err := unix.Poll(pfd, 0)
			return err != nil || n > 0
		}
		return true
	})
	_ = el.Execute(context.Background(), task)
}

// onWritable runs on the loop when the socket may take more of the queue,
// for the wait numbered gen; a stale wait does nothing.
func (g *leg) onWritable(gen uint32) {
	if gen != g.waitGen {
		return
	}
	g.waiting = false
	f := g.f
	if f.state == stateClosed || f.state == stateSpliced || g.conn == nil {
		return
	}
	if g.connecting {
		f.pushConnecting()
		return
	}
	before := g.queued()
	if err := g.flush(); err != nil {
		f.end(nil, closeReset, err)
		return
	}
	if g.queued() < before {
		f.lp.now = nanotime()
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
		g.f.lp.l.warn("cannot pause reading a tcp connection; it reads on under max_flow_buffer", "error", err)
		return false
	}
	g.c = nil
	g.parked = true
	g.f.lp.l.m.parks.Inc()
	g.f.lp.l.srv.flows.SetState(g.f.ct, conntrack.StateParked)
	return true
}

// unpark hands a parked socket back to the loop: at once with registerFD
// (gnet gets a dup of its own), else with Enroll. OnOpen ends the hand-over,
// or the sweep does after enrollTimeout: gnet's Enroll may report success
// and never open the conn, so nothing waits on its result channel.
func (g *leg) unpark() {
	f := g.f
	if f.lp.elp != nil {
		fd, err := unix.FcntlInt(uintptr(g.wfd), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			f.end(nil, closeReset, fmt.Errorf("cannot resume reading: %w", os.NewSyscallError("fcntl", err)))
			return
		}
		g.enrolling = true // OnOpen, before registerFD returns, ends it
		if err := registerFD(f.lp.elp, fd, nil, nil, g); err != nil {
			g.enrolling = false
			f.end(nil, closeShutdown, fmt.Errorf("cannot resume reading: %w", err))
			return
		}
		if g.enrolling && f.state != stateClosed {
			// OnOpen did not take the socket (gnet closed it at once):
			// nothing would ever read it again.
			g.enrolling = false
			f.end(nil, closeReset, errResumeNotOpened)
		}
		return
	}
	// Enroll of a socket without a peer address fails inside gnet's worker
	// without a word (the address it reads is nil). A TCP connection loses
	// its peer address when it is reset, and when both FINs have crossed
	// while it was parked; its receive buffer may still hold the peer's
	// last bytes, and nothing more will come: read them here.
	if _, err := unix.Getpeername(g.wfd); err != nil {
		g.drain()
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

// drain reads a parked socket whose connection is over (see unpark) up to
// the peer's high-water mark: to its EOF, which ends the parking, or until
// the peer's queue is full again, for the next unpark to go on.
func (g *leg) drain() {
	f, l := g.f, g.f.lp.l
	if f.lp.scratch == nil {
		f.lp.scratch = make([]byte, readChunk)
	}
	for g.peer.queued() <= l.cfg.HighWater {
		n, err := unix.Read(g.wfd, f.lp.scratch)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return // still parked: the sweep's timeouts apply
		case err != nil:
			f.end(nil, closeReset, fmt.Errorf("%w: %w", ErrPeerGone, os.NewSyscallError("read", err)))
			return
		case n == 0:
			g.parked, g.eof = false, true
			g.peer.closeWrite()
			f.maybeDone()
			return
		}
		b := f.lp.scratch[:n]
		if g == &f.client {
			l.m.bytesIn.Add(n)
			l.srv.flows.AddBytes(f.ct, n, 0)
		} else {
			l.m.bytesOut.Add(n)
			l.srv.flows.AddBytes(f.ct, 0, n)
		}
		f.lp.now = nanotime()
		f.last = f.lp.now
		if err := g.peer.send(b); err != nil {
			f.end(nil, closeReset, err)
			return
		}
	}
}

// opened runs in OnOpen for a socket the flow handed to the loop: the
// backend once dialed, or a parked socket coming back.
func (g *leg) opened(c gnet.Conn) gnet.Action {
	f := g.f
	if g.connecting && g.c == nil {
		// registerFD of a dial on the loop: the rest is the dialer's.
		g.c = c
		return gnet.None
	}
	if f.state == stateClosed || g.c != nil {
		return gnet.Close // OnClose ignores it: g.c is not c
	}
	g.c = c
	if g.enrolling {
		g.enrolling, g.parked = false, false
		f.setOpenState()
		return gnet.None
	}
	// The backend, dialed off the loop, is connected.
	f.state = stateOpen
	f.pool = nil
	f.last = f.lp.now
	f.setOpenState()
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
		if g.eof && g.peer.eof && g.peer.queued() == 0 {
			// Both ways are done and the flow ends now: closing the
			// socket, whose bytes have all been read, sends the FIN.
			g.shutPending, g.shut = false, true
			return
		}
		g.shutdownWrite()
	}
}

func (g *leg) shutdownWrite() {
	g.shutPending, g.shut = false, true
	_ = rawShutdown(g.fd(), unix.SHUT_WR)
}

// setOpenState records an open flow's state in the flow table.
func (f *flow) setOpenState() {
	st := conntrack.StateEstablished
	switch {
	case f.client.parked || f.backend.parked:
		st = conntrack.StateParked
	case f.client.eof || f.backend.eof:
		st = conntrack.StateHalfClosed
	}
	f.lp.l.srv.flows.SetState(f.ct, st)
}

// localAddr is the address the client connected to, for a PROXY header.
func (f *flow) localAddr() netip.AddrPort {
	fd := f.client.fd()
	if fd < 0 {
		return netip.AddrPort{}
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return netip.AddrPort{}
	}
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr), uint16(a.Port))
	}
	return netip.AddrPort{}
}

func (f *flow) maybeDone() {
	c, b := &f.client, &f.backend
	if f.state != stateClosed && c.eof && b.eof && c.queued() == 0 && b.queued() == 0 {
		f.end(nil, closeDone, nil)
	}
}

// end closes the flow: both sockets, the lease, the loop's entry. cur is
// the conn whose callback is running, which the caller closes by returning
// gnet.Close (or which gnet is closing); nil when none. The loop's cur is
// never closed here either: its callback returns gnet.Close when it finds
// its flow closed.
func (f *flow) end(cur gnet.Conn, why closeReason, err error) {
	if f.state == stateClosed {
		return
	}
	open := f.state == stateOpen || f.state == stateSpliced
	f.state = stateClosed
	for _, g := range []*leg{&f.client, &f.backend} {
		if c := g.c; c != nil {
			g.c = nil
			if c != cur && c != f.lp.cur {
				_ = f.lp.el.Close(c)
			}
		}
		g.release(why == closeReset) // a reset is passed on
		g.q.reset(&f.lp.chunks)
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
	if f.ct != 0 {
		l.srv.flows.Remove(f.ct)
		f.ct = 0
	}
	f.lp.unlink(f)
	l.m.active.Add(-1)
	if l.srv.live.Add(-1) == 0 {
		l.srv.checkDrained()
	}
	l.m.closed[why].Inc()
	if why != closeDone && why != closeShutdown && l.srv.log.Enabled(context.Background(), slog.LevelDebug) {
		l.srv.log.Debug("tcp connection closed", "listener", l.cfg.Name, "reason", why.String(), "error", err)
	}
}

// loop is what one event loop keeps for one listener; touched only on that
// loop, except el, which is safe for concurrent use.
type loop struct {
	l      *listener
	el     gnet.EventLoop
	shard  int // the loop's shard of the flow table
	chunks chunkPool
	// scratch is a read buffer for draining parked sockets and the pipe;
	// made on first use.
	scratch []byte
	pipe    loopPipe
	parser  HelloParser
	now     int64 // nanotime at the last sweep, accept or read
	head    *flow

	// elp is the gnet event loop for registerFD; nil: backends are
	// dialed off the loop.
	elp unsafe.Pointer
	// cur is the conn whose OnOpen, OnTraffic or OnClose is running, if
	// any: flow.end leaves it to the callback to close.
	cur gnet.Conn
	// targets caches the parsed addresses of backends.
	targets map[*lb.Backend]*target

	sweepTask gnet.Runnable
}

func newLoop(l *listener, el gnet.EventLoop) *loop {
	lp := &loop{l: l, el: el, now: nanotime(), shard: int(l.srv.nextShard.Add(1) - 1), elp: loopPointer(el),
		pipe: loopPipe{r: -1, w: -1}}
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
		case (f.state == stateHello || f.state == stateProxy) && now-f.start > l.hello:
			f.end(nil, closeHelloTimeout, ErrHelloTimeout)
		case f.state == stateDialing && now > f.dialBy:
			if f.backend.connecting {
				f.connectDue()
			} else {
				f.end(nil, closeEnrollTimeout, ErrConnectTimeout)
			}
		case l.lifetime > 0 && now-f.start > l.lifetime:
			f.end(nil, closeLifetime, nil)
		case l.idle > 0 && now-f.last > l.idle && f.state != stateSpliced:
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
	if l.srv.draining.Load() {
		// Shutdown drains: no new flow. The reset tells the client at once.
		_ = unix.SetsockoptLinger(c.Fd(), unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
		l.m.closed[closeRefused].Inc()
		return nil, gnet.Close
	}
	lp := l.loopFor(c.EventLoop())
	lp.now = nanotime()
	peer := addrPort(c.RemoteAddr())
	id, err := l.srv.flows.Insert(lp.shard, conntrack.Flow{Listener: l.ctID, Client: peer})
	if err != nil {
		l.m.closed[closeRefused].Inc()
		return nil, gnet.Close
	}
	f := newFlow(lp, c)
	f.ct, f.peer = id, peer
	c.SetContext(&f.client)
	lp.link(f)
	l.srv.live.Add(1)
	l.m.accepted.Inc()
	l.m.active.Add(1)
	f.routes = l.srv.snap.Load().routes[l.idx]
	switch {
	case l.acceptProxy == nil:
	case l.acceptProxy.Trusts(peer.Addr()):
		f.state = stateProxy
		return nil, gnet.None
	default:
		f.proxyOK = false
	}
	lp.cur = c
	action := f.route(c)
	lp.cur = nil
	if f.state == stateClosed {
		return nil, gnet.Close
	}
	return nil, action
}

// route starts a flow whose PROXY header, if any, is done: it waits for the
// ClientHello, or dials the listener's pool.
func (f *flow) route(c gnet.Conn) gnet.Action {
	if f.routes.tls() {
		f.state = stateHello
		if c.InboundBuffered() > 0 {
			return f.onHello(c)
		}
		return gnet.None
	}
	pool := f.routes.pool
	f.routes = nil
	f.connect(pool)
	if f.state == stateClosed { // every backend refused at once
		return gnet.None
	}
	if c.InboundBuffered() > 0 {
		// Bytes after a PROXY header: gnet calls OnTraffic again only when
		// more arrive, so take them now; they wait for the backend.
		data, _ := c.Next(-1)
		f.lp.l.m.bytesIn.Add(len(data))
		f.lp.l.srv.flows.AddBytes(f.ct, len(data), 0)
		_ = f.backend.send(data)
	}
	return gnet.None
}

// onProxy reads the PROXY protocol header a trusted peer must send first.
func (f *flow) onProxy(c gnet.Conn) gnet.Action {
	buf, _ := c.Peek(-1)
	l := f.lp.l
	h, need, err := l.acceptProxy.Check(f.peer.Addr(), buf)
	if err != nil {
		f.end(c, closeBadProxy, err)
		return gnet.Close
	}
	if need > 0 {
		return gnet.None
	}
	c.Discard(h.Len)
	if h.Src.IsValid() {
		if err := l.srv.flows.SetClient(f.ct, h.Src); err != nil {
			f.end(c, closeRefused, err)
			return gnet.Close
		}
		f.peer = h.Src
	}
	f.proxyOK = true
	return f.route(c)
}

// checkProxy holds the first bytes of an untrusted peer of a listener that
// accepts PROXY headers until they cannot start one: such a peer must not
// pose as the load balancer. It reports whether forwarding may go on; when
// not, action says what to return.
func (f *flow) checkProxy(c gnet.Conn) (ok bool, action gnet.Action) {
	buf, _ := c.Peek(-1)
	_, need, err := f.lp.l.acceptProxy.Check(f.peer.Addr(), buf)
	switch {
	case err != nil:
		f.end(c, closeBadProxy, err)
		return false, gnet.Close
	case need > 0:
		return false, gnet.None // gnet keeps the bytes
	}
	f.proxyOK = true
	return true, gnet.None
}

// OnTraffic moves what a socket sent to the other one.
func (l *listener) OnTraffic(c gnet.Conn) gnet.Action {
	g, _ := c.Context().(*leg)
	if g == nil || g.c != c {
		return gnet.Close
	}
	lp := g.f.lp
	lp.cur = c
	action := l.onTraffic(g, c)
	lp.cur = nil
	if g.f.state == stateClosed {
		return gnet.Close
	}
	return action
}

func (l *listener) onTraffic(g *leg, c gnet.Conn) gnet.Action {
	f := g.f
	if g.connecting {
		// The backend spoke first: it is connected.
		f.established()
		if f.state == stateClosed {
			return gnet.Close
		}
	}
	switch {
	case f.state == stateProxy:
		return f.onProxy(c)
	case f.state == stateHello:
		return f.onHello(c)
	case !f.proxyOK && g == &f.client:
		if ok, action := f.checkProxy(c); !ok {
			return action
		}
	}
	buf, _ := c.Next(-1)
	if len(buf) == 0 {
		return gnet.None
	}
	// One clock read per read of up to 64 KiB: the idle timeout is never
	// early.
	f.lp.now = nanotime()
	f.last = f.lp.now
	g.count(len(buf))
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
	if f.state == stateClosed {
		return gnet.Close // no backend could be connected
	}
	if len(buf) >= readChunk && f.state == stateOpen && p.queued() == 0 && !p.connecting {
		// gnet's buffer was full: the socket likely holds more (pipe.go).
		n, err := g.spliceRest(c.Fd())
		g.count(n)
		if err != nil {
			f.end(c, closeReset, err)
			return gnet.Close
		}
	}
	if q := p.queued(); q > l.cfg.HighWater {
		if q+g.queued() > l.cfg.MaxFlowBuffer {
			l.warn("tcp connection over max_flow_buffer: closed", "queued", q+g.queued())
			f.end(c, closeBufferCap, nil)
			return gnet.Close
		}
		if g.park() {
			return gnet.Close
		}
	}
	if p.eof && g.shut && p.queued() == 0 && !p.waiting && p.wfd >= 0 {
		return f.splice(g)
	}
	return gnet.None
}

// count adds n bytes read from g to the metrics and the flow table.
func (g *leg) count(n int) {
	f := g.f
	l := f.lp.l
	if g == &f.client {
		l.m.bytesIn.Add(n)
		l.srv.flows.AddBytes(f.ct, n, 0)
	} else {
		l.m.bytesOut.Add(n)
		l.srv.flows.AddBytes(f.ct, 0, n)
	}
}

// splice hands the rest of the flow to a goroutine: g, the current conn of
// OnTraffic, is the only side still sending, and everything for its peer
// has been written. The caller returns the result.
func (f *flow) splice(g *leg) gnet.Action {
	if err := g.pollable(); err != nil {
		return gnet.None // the event loop carries on
	}
	if err := g.peer.pollable(); err != nil {
		return gnet.None
	}
	g.c = nil
	f.state = stateSpliced
	f.spliceOut = g == &f.backend
	f.lp.l.m.splices.Inc()
	srv := f.lp.l.srv
	srv.dials.Add(1)
	go srv.splice(f, f.lp.el, g.peer.conn, g.conn, time.Duration(f.lp.l.idle))
	return gnet.Close
}

// spliceStep is how many bytes a spliced flow must move within the idle
// timeout for it to count as active.
const spliceStep = 1 << 20

// splice moves what src sends to dst until src's EOF, then passes the EOF
// on and tells f's loop. Closing either conn ends it early; so does idle
// (0: none), when a step of spliceStep bytes takes longer.
func (s *Server) splice(f *flow, el gnet.EventLoop, dst, src *net.TCPConn, idle time.Duration) {
	defer s.dials.Done()
	var n int64
	var err error
	for {
		if idle > 0 {
			deadline := time.Now().Add(idle)
			src.SetReadDeadline(deadline)
			dst.SetWriteDeadline(deadline)
		}
		var m int64
		m, err = dst.ReadFrom(&io.LimitedReader{R: src, N: spliceStep})
		n += m
		if err != nil || m < spliceStep {
			break
		}
	}
	if err == nil {
		err = dst.CloseWrite()
	}
	_ = el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
		f.spliced(n, err)
		return nil
	}))
}

// spliced ends a spliced flow on its loop.
func (f *flow) spliced(n int64, err error) {
	if f.state != stateSpliced {
		return // cut meanwhile
	}
	l := f.lp.l
	if f.spliceOut {
		l.m.bytesOut.Add(int(n))
		l.srv.flows.AddBytes(f.ct, 0, int(n))
	} else {
		l.m.bytesIn.Add(int(n))
		l.srv.flows.AddBytes(f.ct, int(n), 0)
	}
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		f.end(nil, closeIdle, nil)
	case err != nil:
		f.end(nil, closeReset, err)
	default:
		f.end(nil, closeDone, nil)
	}
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
	f.proxyOK = true // a ClientHello is not a PROXY header
	data, _ := c.Next(-1)
	f.lp.l.m.bytesIn.Add(len(data))
	f.lp.l.srv.flows.AddBytes(f.ct, len(data), 0)
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
	lp := g.f.lp
	prev := lp.cur
	lp.cur = c
	l.onClose(g, c, err)
	lp.cur = prev
	return gnet.None
}

func (l *listener) onClose(g *leg, c gnet.Conn, err error) {
	f := g.f
	if g.connecting && err != nil {
		// A backend dialed on the loop, closed before a byte moved: a
		// failed connect, unless it was an orderly close of a connected
		// socket.
		cerr := err
		if errors.Is(err, io.EOF) {
			e, gerr := unix.GetsockoptInt(c.Fd(), unix.SOL_SOCKET, unix.SO_ERROR)
			switch {
			case gerr != nil:
				cerr = os.NewSyscallError("getsockopt", gerr)
			case e != 0:
				cerr = os.NewSyscallError("connect", unix.Errno(e))
			default:
				cerr = nil
			}
		}
		if cerr != nil {
			g.c = nil
			f.connectFailed(cerr)
			return
		}
		f.established()
		if f.state == stateClosed {
			return
		}
	}
	if err != nil && errors.Is(err, io.EOF) && f.state >= stateDialing {
		// Half-close. gnet closes its descriptor after OnClose returns;
		// a dup keeps the socket for the bytes still to write to it.
		if !g.peer.eof || g.queued() > 0 {
			if oerr := g.own(); oerr != nil {
				g.c = nil
				f.end(nil, closeReset, oerr)
				return
			}
		}
		g.c = nil
		g.eof = true
		g.peer.closeWrite()
		f.maybeDone()
		if f.state == stateOpen {
			f.setOpenState()
		}
		return
	}
	g.c = nil
	why := closeReset
	switch {
	case err == nil:
		why = closeShutdown
	case f.state == stateHello:
		why = closeBadHello
	case f.state == stateProxy:
		why = closeBadProxy
	}
	f.end(nil, why, err)
	return
}

// clockBase anchors nanotime.
var clockBase = time.Now()

// nanotime is a monotonic clock in nanoseconds.
func nanotime() int64 { return int64(time.Since(clockBase)) }

func numCPU() int { return runtime.NumCPU() }
