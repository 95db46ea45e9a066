package l4

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"

	"portico/conntrack"
	"portico/lb"
)

// Connecting to a backend.
//
// On the loop (the usual way): socket(2) and a non-blocking connect(2),
// then the connecting socket goes straight into the loop's epoll set
// (registerFD), all in the callback that routed the flow: no goroutine, no
// dup, no Go poller. The connect is confirmed by the first byte the socket
// takes (the client's bytes are written as soon as they are there; over
// loopback the handshake is done before connect(2) returns) or sends, or
// by a getpeername(2) probe at the attempt's deadline when neither side
// has spoken. An error from connect, write or read, or the deadline, fails
// the attempt over to another backend. Until the confirmation the
// client's bytes stay queued, so a retry resends them all.
//
// Off the loop: when gnet is not the version registerFD was written for, or
// a backend's address is a host name (resolving it could block the loop),
// a goroutine dials with net.Dialer and hands the connection to the loop
// with Enroll.

// connect starts connecting f to a backend of pool.
func (f *flow) connect(pool *lb.Pool) {
	l := f.lp.l
	var key lb.Key
	switch pool.HashKey().Source {
	case lb.HashClientIP:
		key.Hash = hashAddr(f.peer.Addr())
	case lb.HashSNI:
		if f.sni != "" {
			key.Hash = lb.HashString(f.sni)
		}
	}
	v := l.sendProxy
	if v == 0 {
		v = proxyVersion(pool.SendProxy())
	}
	if v != 0 {
		// The header goes before the client's bytes held so far.
		g := &f.backend
		var q queue
		q.push(&f.lp.chunks, AppendProxyHeader(make([]byte, 0, 64), v, f.peer, f.localAddr()))
		for g.queued() > 0 {
			b := g.q.front()
			q.push(&f.lp.chunks, b)
			g.q.discard(&f.lp.chunks, len(b))
		}
		g.q = q
	}
	f.state = stateDialing
	f.pool, f.key, f.why = pool, key, closeNoBackend
	l.srv.flows.SetState(f.ct, conntrack.StateConnecting)
	if f.lp.elp == nil {
		f.dialOff(0, 0)
		return
	}
	f.dialNext()
}

// dialNext starts the next connect attempt on the loop, or ends the flow
// when none is left.
func (f *flow) dialNext() {
	l := f.lp.l
	g := &f.backend
	for ; f.attempt <= *l.cfg.ConnectRetries; f.attempt++ {
		lease, err := pickUntried(f.pool, f.key, f.attempt, f.tried)
		if err != nil {
			f.dialErr = err
			break
		}
		bit := backendBit(lease.Backend)
		f.tried |= bit
		t := f.lp.target(f.pool, lease.Backend)
		if t.sa == nil {
			lease.Release(lb.Canceled)
			f.dialOff(f.attempt, f.tried&^bit)
			return
		}
		fd, err := connectSocket(t)
		if err == nil {
			g.connecting = true // registerFD's OnOpen sets g.c
			if err = registerFD(f.lp.elp, fd, t.sa, t.addr, g); err != nil {
				g.connecting = false
			}
		}
		if err != nil {
			f.failAttempt(lease, t.id, err)
			if l.srv.ctx.Err() != nil {
				break
			}
			continue
		}
		f.lease, f.leased, f.bid = lease, true, t.id
		f.dialBy = nanotime() + int64(l.cfg.ConnectTimeout)
		f.pushConnecting()
		return
	}
	f.end(nil, f.why, f.dialErr)
}

// dialOff hands the remaining connect attempts to a goroutine.
func (f *flow) dialOff(attempt int, tried uint64) {
	l := f.lp.l
	f.dialBy = nanotime() + l.dialBudget
	l.srv.dials.Add(1)
	go l.srv.dial(f, f.lp.el, f.pool, f.key, attempt, tried, l.cfg.ConnectTimeout, *l.cfg.ConnectRetries, &l.m)
}

// connectSocket opens a non-blocking socket and starts connecting it.
func connectSocket(t *target) (int, error) {
	fd, err := unix.Socket(t.family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, os.NewSyscallError("socket", err)
	}
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	switch err = unix.Connect(fd, t.sa); err {
	case nil, unix.EINPROGRESS, unix.EINTR: // EINTR: it goes on in the background
		return fd, nil
	}
	unix.Close(fd)
	return -1, os.NewSyscallError("connect", err)
}

// failAttempt counts a failed connect attempt.
func (f *flow) failAttempt(lease lb.Lease, bid conntrack.BackendID, err error) {
	l := f.lp.l
	lease.Release(lb.Failure)
	l.m.connectErrors.Inc()
	l.srv.flows.ConnectError(bid)
	f.why, f.dialErr = closeConnectFailed, fmt.Errorf("dial backend %s: %w", lease.Name, err)
}

// pushConnecting writes the backend's queue to its connecting socket: the
// first byte taken confirms the connect; nothing taken yet means the
// handshake is still on, and the flow waits for writability.
func (f *flow) pushConnecting() {
	g := &f.backend
	if g.queued() == 0 || g.waiting {
		return
	}
	n, err := writeSome(g.c.Fd(), g.q.front())
	switch {
	case n > 0 && err != nil:
		// The backend took a prefix and then failed: the flow cannot move
		// to another backend without sending those bytes twice.
		g.q.discard(&f.lp.chunks, n)
		g.connecting = false
		f.end(nil, closeReset, err)
	case err != nil:
		f.connectFailed(err)
	case n == 0:
		if err := g.waitWritable(); err != nil {
			f.connectFailed(err)
		}
	default:
		g.q.discard(&f.lp.chunks, n)
		f.established()
	}
}

// connectFailed drops the connecting socket after an error and tries the
// next backend.
func (f *flow) connectFailed(err error) {
	g := &f.backend
	g.connecting = false
	g.waiting = false
	g.waitGen++ // a wait on this socket is stale now
	if c := g.c; c != nil {
		g.c = nil
		if c != f.lp.cur {
			_ = f.lp.el.Close(c)
		}
	}
	g.release(false)
	f.leased = false
	f.failAttempt(f.lease, f.bid, err)
	f.attempt++
	if f.lp.l.srv.ctx.Err() != nil {
		f.end(nil, f.why, f.dialErr)
		return
	}
	f.dialNext()
}

// connectDue runs at a connect attempt's deadline: a socket connected
// without a byte either way is confirmed; else the attempt has failed.
func (f *flow) connectDue() {
	if _, err := unix.Getpeername(f.backend.c.Fd()); err == nil {
		f.established()
		return
	}
	f.connectFailed(ErrConnectTimeout)
}

// established makes the flow open once its backend is connected on the
// loop, and writes what is queued for it.
func (f *flow) established() {
	g := &f.backend
	g.connecting = false
	f.state = stateOpen
	f.pool = nil
	f.last = f.lp.now
	f.lp.l.srv.flows.SetBackend(f.ct, f.bid)
	f.setOpenState()
	if err := g.flush(); err != nil {
		f.end(nil, closeReset, err)
		return
	}
	f.drained(g)
}

// target is a backend's address in the forms a dial on the loop needs.
type target struct {
	sa     unix.Sockaddr // nil: not an IP address; dialed off the loop
	addr   *net.TCPAddr
	family int
	id     conntrack.BackendID
}

// maxTargets bounds a loop's cache of backend addresses; pools rebuilt by
// reloads bring new backends, and the cache starts over past it.
const maxTargets = 4096

// target returns backend b's address, parsed once per loop.
func (lp *loop) target(pool *lb.Pool, b *lb.Backend) *target {
	if t := lp.targets[b]; t != nil {
		return t
	}
	if lp.targets == nil || len(lp.targets) >= maxTargets {
		lp.targets = map[*lb.Backend]*target{}
	}
	t := &target{id: lp.l.srv.backendID(pool.Name, b)}
	if ap, err := netip.ParseAddrPort(b.Address); err == nil {
		t.addr = net.TCPAddrFromAddrPort(ap)
		if a := ap.Addr(); a.Is4() {
			t.family, t.sa = unix.AF_INET, &unix.SockaddrInet4{Port: int(ap.Port()), Addr: a.As4()}
		} else if a.Zone() == "" {
			t.family, t.sa = unix.AF_INET6, &unix.SockaddrInet6{Port: int(ap.Port()), Addr: a.As16()}
		}
	}
	lp.targets[b] = t
	return t
}

// hashAddr hashes an IP address for lb.Key: the 4-byte form of an IPv4
// address, so that a v4-mapped IPv6 client hashes alike; 0 (no key) for
// the zero Addr.
func hashAddr(a netip.Addr) uint64 {
	a = a.Unmap()
	switch {
	case a.Is4():
		b := a.As4()
		return lb.Hash(b[:])
	case a.Is6():
		b := a.As16()
		return lb.Hash(b[:])
	}
	return 0
}

// addrPort converts a gnet address.
func addrPort(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort()
	}
	return netip.AddrPort{}
}

// dial picks a backend and connects to it, trying others after a failure,
// and hands the outcome to f's loop. It starts at attempt, with the
// backends in tried already tried. It runs on its own goroutine, which
// ends within (retries+1) × timeout or when the server shuts down.
func (s *Server) dial(f *flow, el gnet.EventLoop, pool *lb.Pool, key lb.Key, attempt int, tried uint64, timeout time.Duration, retries int, m *listenerMetrics) {
	defer s.dials.Done()
	d := net.Dialer{Timeout: timeout}
	why, err := closeNoBackend, error(nil)
	for ; attempt <= retries; attempt++ {
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
			s.flows.ConnectError(s.backendID(pool.Name, lease.Backend))
			why, err = closeConnectFailed, fmt.Errorf("dial backend %s: %w", lease.Name, derr)
			if s.ctx.Err() != nil {
				break
			}
			continue
		}
		tc := nc.(*net.TCPConn)
		bid := s.backendID(pool.Name, lease.Backend)
		task := gnet.RunnableFunc(func(context.Context) error { f.dialed(lease, bid, tc); return nil })
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

// dialed runs on the loop with a backend socket connected off the loop.
func (f *flow) dialed(lease lb.Lease, bid conntrack.BackendID, nc *net.TCPConn) {
	if f.state != stateDialing {
		nc.Close()
		lease.Release(lb.Canceled)
		return
	}
	f.lease, f.leased = lease, true
	f.lp.l.srv.flows.SetBackend(f.ct, bid)
	if _, err := f.lp.el.Enroll(gnet.NewContext(context.Background(), &f.backend), nc); err != nil {
		nc.Close()
		f.end(nil, closeShutdown, err)
		return
	}
	// OnOpen of the backend, or the sweep at dialBy, ends the wait.
	f.dialBy = nanotime() + int64(enrollTimeout)
}
