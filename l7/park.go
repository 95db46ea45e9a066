package l7

import (
	"container/heap"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
	"golang.org/x/sys/unix"
)

// Parking idle keep-alive connections.
//
// fasthttp serves each connection on a goroutine of its own, and a
// keep-alive connection waiting for its next request keeps that goroutine:
// an 8 KiB stack, about 17 KiB of memory per idle connection all told,
// where NGINX keeps under 1 KiB. So a plain-HTTP listener with many open
// connections parks the idle ones. fasthttp reports a connection idle
// through ConnState when it is done with a request, then reads the next
// one; if nothing has arrived, that read (readOrPark) ends as if the client
// had closed, fasthttp ends the connection quietly, and Close hands the
// socket to the listener's parker instead of closing it. The parker
// watches every parked socket with one epoll set of its own (itself
// watched by Go's netpoller, so no thread blocks on it) and, when a
// request arrives, serves the connection again with fasthttp's ServeConn
// on a new goroutine. While parked, a connection is only its socket and
// its countConn: Go's net.Conn (its netFD, addresses and poll descriptor,
// about 0.5 KiB) is closed after the socket is duplicated, and made again
// from it on wake-up (net.FileConn).
//
// Parking costs about ten system calls per park and wake-up, so it is done only where
// memory matters and the wait is likely to be long: while the listener
// has more than above connections open, for a connection that has not
// waited before or whose last wait was at least gap. A busy connection
// (wrk's, a pool of clients) keeps its goroutine, until it has waited
// sweep: then the parker's sweep ends its wait (a read deadline in the
// past) and it is parked.
//
// TLS connections are not parked: fasthttp reports them idle as a
// *tls.Conn, which is not a countConn, and crypto/tls could not resume
// reading a connection after an error anyway.

// parkPolicy says when a listener parks idle connections.
type parkPolicy struct {
	above int64         // park only while more connections than this are open
	gap   time.Duration // park a connection whose last wait was at least this
	sweep time.Duration // park a connection still waiting after this; 0: 1s
}

// defaultParking: 100 busy connections cost about 2 MiB as
// goroutines, and are not slowed down by parking.
var defaultParking = parkPolicy{above: 100, gap: 50 * time.Millisecond, sweep: time.Second}

// errParked ends fasthttp's wait for a request on a connection being parked;
// fasthttp reads any error there as the client's close.
var errParked = errors.New("idle connection parked")

// parkState is the part of a countConn that parking uses. idleNext, raw
// and lastWait belong to the goroutine serving the connection; the rest is
// guarded by the parker's mutex once the connection is handed to it.
type parkState struct {
	idleNext bool        // fasthttp is done with a request: the next Read waits for one
	parkReq  atomic.Bool // readOrPark chose to park: Close parks
	parked   bool        // in the parker's set
	fd       int32       // while parked: the socket, owned by the parker; before, readOrPark's duplicate for park
	heapIdx  int32       // in the parker's expiry heap, -1 when not
	raw      syscall.RawConn
	lastWait time.Duration // the last wait for a request; 0: none yet
	parkedAt int64         // monotonic nanoseconds (monoNow)

	// waiting is when readOrPark began to wait (monoNow), 0 when it is not
	// waiting, or swept once the parker's sweep has claimed the wait.
	waiting atomic.Int64
}

// swept marks a wait the sweep has ended.
const swept = -1

// readOrPark is fasthttp's wait for the next request on a keep-alive
// connection, on a listener that parks: it reads what has arrived, and if
// nothing has, it either parks the connection (returning errParked, so that
// fasthttp closes it, which parks it) or waits as a plain read does. ok is
// false when the connection cannot be read this way.
func (c *countConn) readOrPark(p []byte) (n int, err error, ok bool) {
	raw := c.rawConn()
	if raw == nil {
		return 0, nil, false
	}
	pk := c.ln.pk
	r := rawReads.Get().(*rawRead)
	r.b, r.waitStart, r.waiting = p, 0, &c.waiting
	r.park = c.lastWait == 0 || c.lastWait >= pk.policy.gap
	for {
		r.n, r.err = 0, nil
		err = raw.Read(r.fn)
		if err == nil {
			err = r.err
		}
		if c.waiting.Swap(0) == swept {
			// The sweep ended this wait with a read deadline in the past,
			// or is about to (under the parker's lock). Park, or, if a
			// request came first, put the deadline back.
			pk.mu.Lock()
			pk.mu.Unlock()
			if r.n == 0 && isTimeout(err) {
				r.park = true
			} else {
				_ = c.arm()
			}
			break
		}
		if r.n == 0 && err != nil && !r.park && c.early(err) {
			continue
		}
		break
	}
	n, park, waitStart := r.n, r.park, r.waitStart
	r.b, r.err, r.waiting = nil, nil, nil
	rawReads.Put(r)
	if park {
		// The socket is duplicated for park now, while the wait can still
		// go on here if it cannot be (no descriptor to spare: EMFILE):
		// once errParked is returned, fasthttp is done with the connection
		// and a failed park could only close it.
		if fd, ok := dupSocket(raw); ok {
			c.fd = int32(fd)
			c.parkReq.Store(true)
			return 0, errParked, true
		}
		_ = c.Conn.SetReadDeadline(c.deadline) // the sweep may have ended it
		return 0, nil, false
	}
	c.lastWait = time.Nanosecond // came without a wait
	if waitStart != 0 {
		c.lastWait = time.Duration(monoNow() - waitStart)
	}
	if n > 0 {
		c.m.bytesIn.Add(n)
	}
	return n, err, true
}

// rawRead is the state of one readOrPark read, pooled so that a connection
// holds none of it while it waits.
type rawRead struct {
	b         []byte
	n         int
	err       error
	park      bool  // park if nothing has arrived; false once something has
	waitStart int64 // when the read first found nothing (monoNow); 0: not yet
	waiting   *atomic.Int64
	fn        func(fd uintptr) bool
}

var rawReads = sync.Pool{New: func() any {
	r := new(rawRead)
	r.fn = r.read
	return r
}}

// read is the read on the socket; false waits for it to become readable
// (or for the read deadline).
func (r *rawRead) read(fd uintptr) bool {
	for {
		n, err := syscall.Read(int(fd), r.b)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			if r.park {
				return true
			}
			if r.waitStart == 0 {
				r.waitStart = monoNow()
			}
			// Not over swept: the sweep's mark must reach readOrPark.
			r.waiting.CompareAndSwap(0, r.waitStart)
			return false
		case err != nil:
			r.err = os.NewSyscallError("read", err)
		case n == 0:
			r.err = io.EOF
		}
		r.park = false
		r.n = max(n, 0)
		return true
	}
}

// monoNow is a monotonic clock in nanoseconds.
func monoNow() int64 { return int64(time.Since(monoBase)) }

var monoBase = time.Now()

// parker holds one listener's parked connections.
type parker struct {
	policy  parkPolicy
	srv     *fasthttp.Server
	log     *slog.Logger
	metrics *serverMetrics // open connections (sweepWaits), parked count
	ln      atomic.Pointer[countListener]

	ep   *os.File // the epoll set, watched by Go's netpoller
	epfd int
	// spare is a descriptor held in reserve (/dev/null) for a wake-up's
	// duplicate of the socket when the process has none to spare
	// (EMFILE); -1: none. Guarded by mu.
	spare int
	raw   syscall.RawConn
	done  chan struct{}

	mu        sync.Mutex
	conns     map[int32]*countConn // parked, by socket
	expiry    expiryHeap
	armed     time.Time // the epoll file's read deadline: the next expiry or sweep
	nextSweep time.Time
	closed    bool
}

// newParker makes a parker serving woken connections with srv, and starts
// its loop.
func newParker(pol parkPolicy, srv *fasthttp.Server, log *slog.Logger, m *serverMetrics) (*parker, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("parking: epoll_create1: %w", err)
	}
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("parking: %w", err)
	}
	ep := os.NewFile(uintptr(epfd), "portico-park")
	raw, err := ep.SyscallConn()
	if err != nil {
		ep.Close()
		return nil, fmt.Errorf("parking: %w", err)
	}
	p := &parker{policy: pol, srv: srv, log: log, metrics: m, ep: ep, epfd: epfd, raw: raw, spare: openSpare(),
		done: make(chan struct{}), conns: map[int32]*countConn{}}
	go p.loop()
	return p, nil
}

// park takes c over: the duplicate of its socket that readOrPark made
// goes into the parked set and Go's connection is closed. false if it
// cannot (the duplicate is then closed, c is as it was, and the caller
// closes it).
func (p *parker) park(c *countConn) bool {
	fd := int(c.fd)
	if fd < 0 {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		unix.Close(fd)
		c.fd = -1
		return false
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: int32(fd)}
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		unix.Close(fd)
		c.fd = -1
		p.log.Warn("cannot park an idle connection", "error", err)
		return false
	}
	_ = c.Conn.Close() // the socket stays open through fd
	c.Conn, c.raw = nil, nil
	c.parked, c.parkedAt = true, monoNow()
	p.conns[c.fd] = c
	p.metrics.parked.Add(1)
	if !c.deadline.IsZero() {
		heap.Push(&p.expiry, c)
		if c.heapIdx == 0 {
			p.armLocked()
		}
	}
	return true
}

// dupSocket duplicates the socket beneath raw (close-on-exec).
func dupSocket(raw syscall.RawConn) (int, bool) {
	fd := -1
	var err error
	if cerr := raw.Control(func(s uintptr) { fd, err = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); cerr != nil || err != nil {
		return -1, false
	}
	return fd, true
}

// claim takes c out of the parked set if it is there, for Close: the
// socket, which the caller closes, and true. The lock also orders the
// caller's use of c.Conn after a wake-up that set it.
func (p *parker) claim(c *countConn) (fd int, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !c.parked {
		return -1, false
	}
	fd = int(c.fd)
	p.removeLocked(c)
	return fd, true
}

func (p *parker) removeLocked(c *countConn) {
	delete(p.conns, c.fd)
	if c.heapIdx >= 0 {
		heap.Remove(&p.expiry, int(c.heapIdx))
	}
	c.parked, c.fd = false, -1
	p.metrics.parked.Add(-1)
}

// loop waits for parked connections to become readable, serves them again,
// and closes those whose read deadline passes, until close.
func (p *parker) loop() {
	defer close(p.done)
	var events [128]unix.EpollEvent
	n := 0
	wait := func(fd uintptr) bool {
		var err error
		n, err = unix.EpollWait(int(fd), events[:], 0)
		if err != nil {
			n = 0
		}
		return n > 0
	}
	sweepEvery := p.policy.sweep
	if sweepEvery <= 0 {
		sweepEvery = time.Second
	}
	p.mu.Lock()
	p.nextSweep = time.Now().Add(sweepEvery)
	p.armLocked()
	p.mu.Unlock()
	for {
		err := p.raw.Read(wait)
		if err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				return // the file was closed: close was called
			}
			// The deadline passed and stays passed until it is set again:
			// arm it again even if the next expiry or sweep is the time it
			// was armed for (one that fired a hair early, or was set from
			// outside). Left expired, every Read would fail at once
			// without polling: a busy loop that wakes nothing.
			p.mu.Lock()
			p.armed = time.Time{}
			p.mu.Unlock()
		}
		for _, ev := range events[:n] {
			p.wake(ev.Fd)
		}
		n = 0
		if now := time.Now(); !now.Before(p.nextSweep) {
			p.sweepWaits(now, sweepEvery)
		}
		p.expire()
	}
}

// sweepWaits ends the waits that have lasted sweepEvery, on connections
// readOrPark did not park (they had been busy), so that they park.
func (p *parker) sweepWaits(now time.Time, sweepEvery time.Duration) {
	p.mu.Lock()
	p.nextSweep = now.Add(sweepEvery)
	p.mu.Unlock()
	if ln := p.ln.Load(); ln == nil || ln.open.Load() <= p.policy.above {
		return
	}
	old := monoNow() - int64(sweepEvery)
	var waits []*countConn
	m := p.metrics
	m.openMu.Lock()
	for c := range m.open {
		if w := c.waiting.Load(); w > 0 && w <= old && c.ln.pk == p {
			waits = append(waits, c)
		}
	}
	m.openMu.Unlock()
	past := time.Unix(1, 0)
	for _, c := range waits {
		p.mu.Lock()
		// w <= old again: the wait seen may have ended and a new one begun.
		if w := c.waiting.Load(); w > 0 && w <= old && c.waiting.CompareAndSwap(w, swept) {
			_ = c.Conn.SetReadDeadline(past)
		}
		p.mu.Unlock()
	}
}

// wake serves the connection on socket fd again, if it is parked: Go's
// connection is made again from the socket, and fasthttp serves it on a
// new goroutine.
func (p *parker) wake(fd int32) {
	p.mu.Lock()
	c := p.conns[fd]
	if c == nil || p.closed {
		p.mu.Unlock()
		return
	}
	parkedAt := c.parkedAt
	p.removeLocked(c)
	// Out of the set before fd closes: the registration would outlive fd
	// while FileConn's duplicate keeps the socket open.
	_ = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, int(fd), nil)
	f := os.NewFile(uintptr(fd), "")
	nc, err := net.FileConn(f)
	spent := false
	if err != nil && (errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)) && p.spare >= 0 {
		// No descriptor for the duplicate: it takes the spare's, and the
		// spare the one fd leaves, once closed below.
		unix.Close(p.spare)
		p.spare, spent = -1, true
		nc, err = net.FileConn(f)
	}
	f.Close()
	if spent {
		p.spare = openSpare()
	}
	if err == nil {
		c.Conn, c.armed = nc, time.Time{}
	}
	p.mu.Unlock()
	if err != nil {
		p.log.Warn("cannot wake a parked connection", "error", err)
		c.finish()
		return
	}
	c.lastWait = max(time.Duration(monoNow()-parkedAt), time.Nanosecond)
	go p.srv.ServeConn(c) //nolint:errcheck // fasthttp logs what it must
}

// openSpare opens a descriptor to hold in reserve, or returns -1.
func openSpare() int {
	fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1
	}
	return fd
}

// expire closes the parked connections whose read deadline has passed, and
// arms the epoll file's deadline for the next one.
func (p *parker) expire() {
	now := time.Now()
	var dead []*countConn
	p.mu.Lock()
	for len(p.expiry) > 0 && !p.expiry[0].deadline.After(now) {
		c := p.expiry[0]
		unix.Close(int(c.fd))
		p.removeLocked(c)
		dead = append(dead, c)
	}
	p.armLocked()
	p.mu.Unlock()
	for _, c := range dead {
		c.finish()
	}
}

// armLocked sets the epoll file's read deadline to the next expiry or
// sweep, whichever comes first.
func (p *parker) armLocked() {
	next := p.nextSweep
	if len(p.expiry) > 0 && p.expiry[0].deadline.Before(next) {
		next = p.expiry[0].deadline
	}
	if !next.Equal(p.armed) {
		p.armed = next
		_ = p.ep.SetReadDeadline(next)
	}
}

// close stops parking: it closes every parked connection and the epoll
// set, and waits for the loop to end. Connections fasthttp closes later
// are closed, not parked.
func (p *parker) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	if p.spare >= 0 {
		unix.Close(p.spare)
		p.spare = -1
	}
	conns := make([]*countConn, 0, len(p.conns))
	for _, c := range p.conns {
		unix.Close(int(c.fd))
		p.removeLocked(c)
		conns = append(conns, c)
	}
	p.mu.Unlock()
	for _, c := range conns {
		c.finish()
	}
	p.ep.Close()
	<-p.done
}

// expiryHeap orders parked connections by read deadline.
type expiryHeap []*countConn

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].deadline.Before(h[j].deadline) }
func (h expiryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx, h[j].heapIdx = int32(i), int32(j)
}
func (h *expiryHeap) Push(x any) {
	c := x.(*countConn)
	c.heapIdx = int32(len(*h))
	*h = append(*h, c)
}
func (h *expiryHeap) Pop() any {
	old := *h
	c := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	c.heapIdx = -1
	return c
}
