package l7

import (
	"errors"
	"io"
	"sync"

	"github.com/valyala/fasthttp"

	"portico/l7/cache"
)

// A cached route's backend response streams to the client while it is
// stored: cacheBody is the client response's body stream over the
// backend's. A goroutine (pump) reads the body into the entry's buffer at
// the backend's pace and the client is sent what has come so far; the
// entry is stored on a clean end and dropped on an error, a cut, or once
// the body outgrows max_object_bytes (the rest then streams through
// unstored).
//
// fasthttp's Response has no way to hand its body stream to another
// Response without closing it (SetBodyStream, Reset and the rest close the
// old stream first, which for a HostClient stream closes the backend
// connection). So forward has the HostClient read a cached route's response
// into cacheTx's own Response (cacheTx.upstream), and moveResponse copies
// its header into the client's response (by a parse, which keeps the
// origin's Date; see date.go), whose body stream becomes the tee. The copy
// costs a miss one header parse; hits do not see it.

// cacheBody is a client response's body stream over a backend's; see above.
// fasthttp calls Read on the connection's goroutine after the handler has
// returned, then CloseWithError once; nothing else touches it.
type cacheBody struct {
	up *fasthttp.Response // the backend's response; released at close
	r  io.Reader          // its body stream

	// While storing: the entry, its body so far and where it goes.
	storing bool
	rc      *routeCache
	key     []byte
	vary    *fasthttp.Request // its header: the fields a varying entry is stored for
	e       *cache.Entry
	buf     []byte
	max     int64
	want    int // the declared length, or -1

	// flight is the coalesced miss this response leads; left at close or
	// at the store, whichever is first, so that the waiters go upstream
	// themselves or find the entry.
	flight *cache.Flight
	closed bool

	// Pumping (see pump): a goroutine reads the backend's body into data,
	// at the backend's pace, and Read hands data on to the client at the
	// client's. mu guards data and perr; rpos is Read's alone.
	// trailers is the client's header, when the backend declared trailer
	// fields: they come after the body and are copied across at its end.
	// Such a response is not stored (storeBody).
	trailers *fasthttp.ResponseHeader

	pumping bool
	mu      sync.Mutex
	cond    sync.Cond
	data    []byte
	rpos    int
	perr    error         // how the pump ended; nil while it runs
	done    chan struct{} // closed when the pump has ended
	stored  bool          // the pump stored the entry; read after done
}

// errPumpOverflow ends a pump whose body has outgrown max_object_bytes:
// the rest is read by Read, straight from the backend.
var errPumpOverflow = errors.New("l7: cached body over max_object_bytes")

var _ fasthttp.ReadCloserWithError = (*cacheBody)(nil)

var cacheBodies = sync.Pool{New: func() any { return new(cacheBody) }}

// Read returns the body: what the pump has read, then the rest of the
// backend's stream.
func (t *cacheBody) Read(p []byte) (int, error) {
	if t.pumping {
		return t.readPumped(p)
	}
	n, err := t.r.Read(p)
	if err == io.EOF && t.trailers != nil {
		copyTrailers(t.trailers, &t.up.Header)
		t.trailers = nil
	}
	return n, err
}

// copyTrailers gives the client's response the trailer fields the backend
// sent after its body; fasthttp writes them after the last chunk. The
// client's header was written without its Trailer field (a hop-by-hop
// field, stripped), so the keys are declared again for fasthttp here.
func copyTrailers(dst, src *fasthttp.ResponseHeader) {
	for _, k := range src.PeekTrailerKeys() {
		if v := src.PeekBytes(k); len(v) > 0 && dst.AddTrailerBytes(k) == nil {
			dst.SetBytesKV(k, v)
		}
	}
}

// startPump has a goroutine read the body to its end into the entry while
// the client is sent what has come so far. The entry is then stored, and
// the coalesced waiters released, when the backend has sent the body, not
// when a slow client has taken it all. Memory is the body's, which the
// entry holds anyway; a body that outgrows max_object_bytes stops the pump
// there, and the rest goes from the backend to the client as it is read.
func (t *cacheBody) startPump() {
	t.pumping = true
	t.data, t.buf = t.buf[:0], nil // sized by storeBody when the length is known
	t.cond.L = &t.mu
	t.done = make(chan struct{})
	go t.pump()
}

func (t *cacheBody) pump() {
	defer close(t.done)
	chunk := copyBufs.Get().(*[copyBufSize]byte)
	defer copyBufs.Put(chunk)
	for {
		n, err := t.r.Read(chunk[:])
		t.mu.Lock()
		t.data = append(t.data, chunk[:n]...)
		switch {
		case err != nil:
			t.perr = err
		case int64(len(t.data)) > t.max:
			t.perr = errPumpOverflow
		}
		end, data := t.perr, t.data
		t.cond.Broadcast()
		t.mu.Unlock()
		if end == nil {
			continue
		}
		if end == io.EOF && int64(len(data)) <= t.max {
			t.buf = data
			t.stored = t.commit()
		} else {
			t.abandon()
		}
		return
	}
}

// waitPump waits for the pump to end and reports whether it stored the
// entry; Read then returns what it read.
func (t *cacheBody) waitPump() bool {
	<-t.done
	return t.stored
}

// readPumped is Read while pumping.
func (t *cacheBody) readPumped(p []byte) (int, error) {
	t.mu.Lock()
	for t.rpos == len(t.data) && t.perr == nil {
		t.cond.Wait()
	}
	if t.rpos < len(t.data) {
		n := copy(p, t.data[t.rpos:])
		t.rpos += n
		t.mu.Unlock()
		return n, nil
	}
	err := t.perr
	t.data, t.rpos = nil, 0
	t.mu.Unlock()
	if err == errPumpOverflow { // the pump has ended: the rest is Read's
		return t.r.Read(p)
	}
	return 0, err
}

// commit stores the entry if the body is whole, and reports whether it did.
func (t *cacheBody) commit() bool {
	if t.want >= 0 && len(t.buf) != t.want {
		t.abandon()
		return false
	}
	body := t.buf
	if cap(body)-len(body) > len(body)/4 {
		body = append([]byte(nil), body...) // no slack held in the budget
	}
	t.e.SetBody(body)
	var h cache.HeaderGetter = nilHeader{}
	if t.vary != nil {
		h = &t.vary.Header
	}
	t.rc.prepareEntry(t.e)
	t.rc.c.Put(t.key, t.e, h)
	t.stop()
	return true
}

func (t *cacheBody) abandon() { t.stop() }

// stop ends storing and wakes the waiters of the flight.
func (t *cacheBody) stop() {
	if !t.storing {
		return
	}
	t.storing = false
	t.buf, t.e = nil, nil
	if t.flight != nil {
		t.rc.c.Leave(t.key, t.flight)
		t.flight = nil
	}
}

// CloseWithError is called by fasthttp once the body has been written, or
// has failed to be: a body not read to its end is not stored, and the
// backend connection is closed rather than reused.
func (t *cacheBody) CloseWithError(err error) error {
	if t.closed {
		return nil
	}
	t.closed = true
	var cerr error
	closed := false
	if t.pumping {
		select {
		case <-t.done:
		default:
			// The client is gone with the pump still reading: stop it
			// (closing the stream interrupts its Read) and wait for it.
			cerr, closed = t.closeStream(err), true
			<-t.done
		}
	}
	t.abandon()
	if !closed {
		cerr = t.closeStream(err)
	}
	fasthttp.ReleaseResponse(t.up)
	if t.vary != nil {
		fasthttp.ReleaseRequest(t.vary)
	}
	*t = cacheBody{}
	cacheBodies.Put(t)
	return cerr
}

// closeStream closes the backend's body stream.
func (t *cacheBody) closeStream(err error) error {
	if rc, ok := t.r.(fasthttp.ReadCloserWithError); ok {
		return rc.CloseWithError(err)
	}
	return t.up.CloseBodyStream()
}

// nilHeader is the request header of an entry that does not vary.
type nilHeader struct{}

func (nilHeader) Peek(string) []byte { return nil }

// moveResponse makes the client's response the backend's response up: the
// status and header copied (the client's response keeps the server's
// NoDefaultDate, so the origin's Date goes out), the body streamed from up
// through t, or copied when up has no stream (HEAD, 204, 304), t then
// storing it at once. It takes up, and t unless the body streams, over; t
// may be nil for a body that is not stored.
func moveResponse(ctx *fasthttp.RequestCtx, up *fasthttp.Response, t *cacheBody) {
	resp := &ctx.Response
	h := &resp.Header
	if parseHeader(h, up.StatusCode(), up.Header.StatusMessage(), up.Header.All()) != nil {
		// Not a header fasthttp parses back (it read it, so unlikely):
		// copied field by field, the Date replaced by fasthttp's.
		h.SetStatusCode(up.StatusCode())
		for k, v := range up.Header.All() {
			h.AddBytesKV(k, v)
		}
	}
	if !up.IsBodyStream() {
		cl := up.Header.ContentLength()
		resp.SetBody(up.Body())
		h.SetContentLength(cl)
		if t != nil {
			if t.storing {
				t.buf, t.want = append([]byte(nil), up.Body()...), -1
				t.commit()
			}
			t.up = up
			_ = t.CloseWithError(nil)
		} else {
			fasthttp.ReleaseResponse(up)
		}
		return
	}
	if t == nil {
		t = cacheBodies.Get().(*cacheBody)
	}
	t.up, t.r = up, up.BodyStream()
	if len(up.Header.PeekTrailerKeys()) > 0 {
		t.trailers = h
	}
	resp.SetBodyStream(t, up.Header.ContentLength())
}
