package l7

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/valyala/fasthttp"
	"golang.org/x/sys/unix"
)

// A large Content-Length body on an uncached route goes from the backend
// socket to the client socket with splice(2), through a pipe, as HAProxy
// does: the bytes are not copied into portico and out again.
//
// The pieces:
//
//   - spliceConn is the TCP connection under a backend connection's
//     ioTimeoutConn (backendConn puts it there the first time fasthttp asks
//     for the connection's LocalAddr, which it does before each request).
//     The first Read after a request has been written is capped at
//     headerReadCap, so that the response header comes in without most of
//     a large body behind it.
//   - forward, once a streamed response qualifies (offerSplice), registers
//     the backend connection for the client connection, with the body
//     stream that fasthttp is about to copy.
//   - fasthttp writes the header and the first bytes of the body through
//     its 4 KiB writer, then hands the rest to countConn.ReadFrom. There,
//     when the registration matches the stream, spliceCopy arms the
//     backend connection: while armed, a Read that fasthttp's reader makes
//     of the socket (its buffer is then empty, so every byte before it has
//     been sent) moves what the socket has, up to what the body still
//     lacks, to the client with splice and reports it as read. The bytes
//     reported that way come back up through fasthttp's reader and are
//     counted, not written: spliceCopy knows how many are pending.
//
// Deadlines still apply: the wait for the backend's bytes is under the read
// deadline ioTimeoutConn sets before each Read (response_timeout), and
// each Read moves only what the socket has, as a read(2) would; the wait
// for the client is under its write deadline.

// headerReadCap bounds the first read of a response: the header and, for a
// large body, enough of it to fill fasthttp's 4 KiB writer after the
// header, the rest of the body staying in the socket for splice. A header
// larger than this takes more reads, as before.
const headerReadCap = 8 << 10

// spliceMinBody is the smallest Content-Length spliced.
const spliceMinBody = 16 << 10

// spliceConn is a backend TCP connection that can splice to a client.
type spliceConn struct {
	*net.TCPConn
	rc   syscall.RawConn
	addr spliceAddr

	firstRead bool // a request was written: cap the next read
	firstFull bool // that read filled headerReadCap (headerFlushNeeded)

	// Registration (spliceReg): the client connection and the body stream
	// this connection's response is for.
	key    atomic.Pointer[countConn]
	stream io.Reader
	resp   *fasthttp.Response // whose body stream is stream
	dstTC  *net.TCPConn
	dst    syscall.RawConn

	// While spliceCopy runs.
	armed   bool
	limit   int64 // bytes of the body the socket may still give
	pending int64 // bytes spliced that the readers above have not returned yet
	werr    error // the client's write failed
	pipe    *splicePipe

	// Scratch for the RawConn callbacks (method values made once).
	drainFn, pumpFn, sendFn func(fd uintptr) bool
	pushFn, peekFn          func(fd uintptr)
	peekBuf                 [1]byte
	dirty                   bool // the socket has more than the body (peek)
	want, got, left         int
	out                     []byte
	serr                    error
	corked                  bool // bytes sent with MSG_MORE wait in the client socket
}

// spliceAddr is a backend connection's local address, and the way from a
// fasthttp.Response (Response.LocalAddr) back to the connection.
type spliceAddr struct {
	net.Addr
	sc *spliceConn
}

func newSpliceConn(tc *net.TCPConn) *spliceConn {
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	sc := &spliceConn{TCPConn: tc, rc: rc}
	sc.addr = spliceAddr{Addr: tc.LocalAddr(), sc: sc}
	sc.drainFn, sc.pumpFn, sc.sendFn, sc.pushFn, sc.peekFn = sc.drain, sc.pump, sc.send, sc.push, sc.peek
	return sc
}

// splicer returns the spliceConn under c, putting it there on first use.
func (c backendConn) splicer() *spliceConn {
	switch nc := c.ioTimeoutConn.netConn.(type) {
	case *spliceConn:
		return nc
	case *net.TCPConn:
		if sc := newSpliceConn(nc); sc != nil {
			c.ioTimeoutConn.netConn = sc
			return sc
		}
	}
	return nil
}

// LocalAddr returns the connection's local address; fasthttp passes it on
// to the response (Response.LocalAddr), where offerSplice finds it.
func (c backendConn) LocalAddr() net.Addr {
	if sc := c.splicer(); sc != nil {
		return &sc.addr
	}
	return c.ioTimeoutConn.LocalAddr()
}

func (sc *spliceConn) Write(p []byte) (int, error) {
	sc.firstRead, sc.firstFull = true, false
	if sc.key.Load() != nil {
		spliceReg.drop(sc) // a new request: the last response is done with
	}
	return sc.TCPConn.Write(p)
}

func (sc *spliceConn) Close() error {
	spliceReg.drop(sc)
	return sc.TCPConn.Close()
}

func (sc *spliceConn) Read(p []byte) (int, error) {
	if sc.armed && sc.limit > 0 && len(p) > 0 {
		if sc.pipe == nil {
			if sc.pipe = getPipe(); sc.pipe == nil {
				// No pipe (out of descriptors?): copy. A read may wait
				// for the backend: what waits for it in the client socket
				// goes now, as drain sends it.
				if sc.corked {
					sc.corked = false
					_ = sc.dst.Control(sc.pushFn)
				}
				return sc.TCPConn.Read(p)
			}
		}
		return sc.spliceRead(len(p))
	}
	if sc.firstRead {
		sc.firstRead = false
		if len(p) > headerReadCap {
			p = p[:headerReadCap]
		}
		n, err := sc.TCPConn.Read(p)
		sc.firstFull = n == headerReadCap
		return n, err
	}
	return sc.TCPConn.Read(p)
}

// spliceRead moves up to n bytes of the body, what the socket has (waiting
// for the first if none has come), to the client, and reports them read.
func (sc *spliceConn) spliceRead(n int) (int, error) {
	sc.want, sc.got, sc.serr = int(min(int64(n), sc.limit)), 0, nil
	if err := sc.rc.Read(sc.drainFn); err != nil {
		return 0, sc.opError("read", err)
	}
	if sc.serr != nil {
		return 0, sc.opError("read", sc.serr)
	}
	if sc.got == 0 {
		return 0, io.EOF
	}
	sc.left, sc.serr = sc.got, nil
	err := sc.dst.Write(sc.pumpFn)
	if err == nil {
		err = sc.serr
	}
	if err != nil {
		// Bytes may be left in the pipe: it is not reused. The backend's
		// bytes are gone from its socket, so its connection is done too.
		sc.pipe.close()
		sc.pipe = nil
		sc.werr = &net.OpError{Op: "write", Net: "tcp", Source: sc.dstTC.LocalAddr(), Addr: sc.dstTC.RemoteAddr(), Err: err}
		return 0, sc.werr
	}
	sc.limit -= int64(sc.got)
	sc.pending += int64(sc.got)
	return sc.got, nil
}

func (sc *spliceConn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: sc.addr.Addr, Addr: sc.TCPConn.RemoteAddr(), Err: err}
}

// drain splices what the backend socket has, up to want, into the pipe;
// false (wait for the socket) when it has nothing yet.
func (sc *spliceConn) drain(fd uintptr) bool {
	for {
		n, err := unix.Splice(int(fd), nil, sc.pipe.w, nil, sc.want, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
		switch err {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			if sc.corked {
				// The backend has nothing more yet: what waits for it
				// in the client socket goes now.
				sc.corked = false
				_ = sc.dst.Control(sc.pushFn)
			}
			return false
		}
		sc.got, sc.serr = int(max(n, 0)), err
		return true
	}
}

// pump splices the pipe's left bytes to the client socket; false (wait for
// room) when the socket is full.
func (sc *spliceConn) pump(fd uintptr) bool {
	for sc.left > 0 {
		n, err := unix.Splice(sc.pipe.r, nil, int(fd), nil, sc.left, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
		switch err {
		case nil:
			sc.left -= int(n)
			sc.corked = false
		case unix.EINTR:
		case unix.EAGAIN:
			return false
		default:
			sc.serr = err
			return true
		}
	}
	return true
}

// push sends what MSG_MORE held back in the client socket (setting
// TCP_NODELAY, which Go has on already, pushes pending frames).
func (sc *spliceConn) push(fd uintptr) {
	_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
}

// peek notes whether the backend socket holds anything (bytes, its EOF or
// an error) once the body has been spliced.
func (sc *spliceConn) peek(fd uintptr) {
	for {
		_, _, err := unix.Recvfrom(int(fd), sc.peekBuf[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		if err == unix.EINTR {
			continue
		}
		sc.dirty = err != unix.EAGAIN
		return
	}
}

// send writes out to the client with MSG_MORE: the bytes wait for the
// splice that follows them and leave in the same segments.
func (sc *spliceConn) send(fd uintptr) bool {
	for len(sc.out) > 0 {
		n, err := unix.SendmsgN(int(fd), sc.out, nil, nil, unix.MSG_MORE|unix.MSG_NOSIGNAL)
		switch err {
		case nil:
			sc.out = sc.out[n:]
		case unix.EINTR:
		case unix.EAGAIN:
			return false
		default:
			sc.serr = err
			return true
		}
	}
	return true
}

// spliceCopy copies the rest of a registered body (lr, over the backend
// stream sc is registered with) to the client c: bytes fasthttp's reader
// already holds are written, the rest is spliced by sc's Reads. resp is
// the backend's response whose body this is.
func spliceCopy(c *countConn, sc *spliceConn, lr *io.LimitedReader, resp *fasthttp.Response) (n int64, err error) {
	buf := copyBufs.Get().(*[copyBufSize]byte)
	defer copyBufs.Put(buf)
	sc.armed, sc.pending, sc.werr, sc.corked = true, 0, nil, false
	defer func() {
		if sc.corked { // not followed by a splice: an error or a short body
			sc.corked = false
			_ = sc.dst.Control(sc.pushFn)
		}
		sc.armed, sc.limit, sc.pending = false, 0, 0
		if sc.pipe != nil {
			putPipe(sc.pipe)
			sc.pipe = nil
		}
	}()
	empty := 0
	for {
		sc.limit = lr.N - sc.pending
		nr, rerr := lr.Read(buf[:])
		if sc.werr != nil {
			return n, sc.werr
		}
		if nr == 0 && rerr == nil {
			if empty++; empty >= 100 {
				return n, io.ErrNoProgress
			}
			continue
		}
		empty = 0
		if nr > 0 {
			if sc.pending > 0 {
				// Spliced bytes come back on their own: never mixed with
				// bytes that were read, which fasthttp's reader hands out
				// before it reads the socket again.
				if int64(nr) > sc.pending {
					return n, errSpliceMixed
				}
				sc.pending -= int64(nr)
				n += int64(nr)
				c.m.bytesOut.Add(nr)
			} else if lr.N > 0 && rerr == nil {
				// More follows, most of it spliced: hold these back for it.
				sc.out, sc.serr = buf[:nr], nil
				werr := sc.dst.Write(sc.sendFn)
				sent := nr - len(sc.out)
				sc.out = nil
				sc.corked = sent > 0
				if werr == nil {
					werr = sc.serr
				}
				n += int64(sent)
				if sent > 0 {
					c.m.bytesOut.Add(sent)
				}
				if werr != nil {
					return n, werr
				}
			} else {
				nw, werr := writeFull(c, buf[:nr])
				n += int64(nw)
				if werr != nil {
					return n, werr
				}
			}
		}
		if rerr == io.EOF {
			if sc.pipe != nil {
				// The body's last bytes were spliced, exactly as many as
				// it lacked: anything the backend sent past them is still
				// in the socket (a read would have taken it into fasthttp's
				// buffer, which is dropped), and would be read as the
				// answer to the connection's next request. Such a
				// connection is not reused (fasthttp checks when the body
				// stream is closed), as nginx does not reuse one.
				sc.dirty = false
				_ = sc.rc.Control(sc.peekFn)
				if sc.dirty && resp != nil {
					resp.SetConnectionClose()
				}
			}
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
	}
}

var errSpliceMixed = errors.New("l7: spliced and read body bytes mixed")

// spliceReg maps a client connection to the backend connection whose
// response it is about to be sent (offerSplice, takeSplice). An entry
// lasts until it is taken, or the backend connection is written again or
// closed, so entries left by a response that was never sent (the client
// went away) do not pile up.
type spliceRegistry struct {
	mu sync.Mutex
	n  atomic.Int32
	m  map[*countConn]*spliceConn
}

var spliceReg = spliceRegistry{m: map[*countConn]*spliceConn{}}

// offerSplice registers resp's backend connection for the client of ctx
// when resp's body may be spliced: a streamed Content-Length body of at
// least spliceMinBody, from a plain TCP backend connection of ours, to a
// plain TCP client connection.
func offerSplice(ctx *fasthttp.RequestCtx, resp *fasthttp.Response) {
	if resp.Header.ContentLength() < spliceMinBody || ctx.IsHead() {
		return
	}
	cc, ok := ctx.Conn().(*countConn)
	if !ok {
		return
	}
	tc, ok := cc.Conn.(*net.TCPConn)
	if !ok {
		return
	}
	la, ok := resp.LocalAddr().(*spliceAddr)
	if !ok {
		return
	}
	rc := cc.rawConn() // made once per connection
	if rc == nil {
		return
	}
	sc := la.sc
	sc.dstTC, sc.dst = tc, rc
	r := &spliceReg
	r.mu.Lock()
	if old := r.m[cc]; old != nil && old != sc {
		old.key.Store(nil)
		old.stream, old.resp = nil, nil
		r.n.Add(-1)
	}
	if k := sc.key.Load(); k != nil && k != cc {
		delete(r.m, k)
		r.n.Add(-1)
	}
	if r.m[cc] != sc {
		r.m[cc] = sc
		r.n.Add(1)
	}
	sc.key.Store(cc)
	sc.stream, sc.resp = resp.BodyStream(), resp
	r.mu.Unlock()
}

// takeSplice returns the backend connection registered for c, and the
// response it was registered with, if r is that response's body stream; it
// removes the registration.
func takeSplice(c *countConn, r io.Reader) (*spliceConn, *io.LimitedReader, *fasthttp.Response) {
	if spliceReg.n.Load() == 0 {
		return nil, nil, nil
	}
	reg := &spliceReg
	reg.mu.Lock()
	sc := reg.m[c]
	if sc == nil {
		reg.mu.Unlock()
		return nil, nil, nil
	}
	delete(reg.m, c)
	reg.n.Add(-1)
	sc.key.Store(nil)
	stream, resp := sc.stream, sc.resp
	sc.stream, sc.resp = nil, nil
	reg.mu.Unlock()
	lr, ok := r.(*io.LimitedReader)
	if !ok || stream == nil || lr.R != stream {
		return nil, nil, nil
	}
	return sc, lr, resp
}

// drop removes sc's registration, if any.
func (r *spliceRegistry) drop(sc *spliceConn) {
	r.mu.Lock()
	if k := sc.key.Load(); k != nil {
		if r.m[k] == sc {
			delete(r.m, k)
			r.n.Add(-1)
		}
		sc.key.Store(nil)
		sc.stream, sc.resp = nil, nil
	}
	r.mu.Unlock()
}

// splicePipe is a pipe for splice; pipes are kept for reuse, empty.
type splicePipe struct{ r, w int }

var splicePipes = make(chan *splicePipe, 64)

// getPipe returns a pipe, or nil when none can be made.
func getPipe() *splicePipe {
	select {
	case p := <-splicePipes:
		return p
	default:
	}
	var fds [2]int
	if err := pipe2(fds[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return nil
	}
	_, _ = unix.FcntlInt(uintptr(fds[1]), unix.F_SETPIPE_SZ, copyBufSize*2)
	return &splicePipe{r: fds[0], w: fds[1]}
}

// pipe2 makes a pipe (a variable for tests).
var pipe2 = unix.Pipe2

func putPipe(p *splicePipe) {
	select {
	case splicePipes <- p:
	default:
		p.close()
	}
}

func (p *splicePipe) close() {
	unix.Close(p.r)
	unix.Close(p.w)
}

// headerFlushNeeded reports whether resp's header should be sent before
// its body (fasthttp's ImmediateHeaderFlush). fasthttp's 4 KiB writer
// holds the header and the start of the body until 4 KiB of it have come
// (bufio.Writer.ReadFrom), which for a body that comes slowly means the
// client gets nothing meanwhile; sending the header alone first costs a
// write. It is not needed when the response's first read from a backend
// of ours filled headerReadCap: enough of the body is already in hand to
// fill the writer, which is flushed then, and what follows is written as
// it comes (countConn.ReadFrom). Bodies under 4 KiB are left alone.
func headerFlushNeeded(resp *fasthttp.Response) bool {
	if resp.Header.ContentLength() < 4096 {
		return false
	}
	la, ok := resp.LocalAddr().(*spliceAddr)
	return !ok || !la.sc.firstFull
}
