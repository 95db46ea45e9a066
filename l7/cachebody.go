package l7

import (
	"io"
	"sync"

	"github.com/valyala/fasthttp"

	"portico/l7/cache"
)

// A cached route's backend response streams to the client while it is
// stored: cacheBody is the client response's body stream, a tee over the
// backend's that keeps what passes in the entry's body buffer, stores the
// entry on a clean end, and drops it on an error, a cut, or once the body
// outgrows max_object_bytes (the rest then streams through unstored).
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

	// pend is read ahead by fill and not yet returned by Read; err ends
	// the body after it (io.EOF, or the backend's error).
	pend []byte
	err  error

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
}

var _ fasthttp.ReadCloserWithError = (*cacheBody)(nil)

var cacheBodies = sync.Pool{New: func() any { return new(cacheBody) }}

// Read returns the body, keeping it while storing.
func (t *cacheBody) Read(p []byte) (int, error) {
	if len(t.pend) > 0 {
		n := copy(p, t.pend)
		t.pend = t.pend[n:]
		return n, nil
	}
	if t.err != nil {
		return 0, t.err
	}
	n, err := t.r.Read(p)
	if t.storing {
		t.keep(p[:n], err)
	}
	return n, err
}

func (t *cacheBody) keep(b []byte, err error) {
	if int64(len(t.buf)+len(b)) > t.max {
		t.abandon() // too big: the rest streams through
		return
	}
	t.buf = append(t.buf, b...)
	switch {
	case err == io.EOF:
		t.commit()
	case err != nil:
		t.abandon()
	}
}

// fill reads the body ahead, in the handler, up to one byte over the
// limit, and stores the entry if that was all of it; it reports whether it
// did. Read then returns what was read first.
func (t *cacheBody) fill() bool {
	b, err := io.ReadAll(io.LimitReader(t.r, t.max+1))
	t.pend = b
	switch {
	case err != nil:
		t.err = err
		t.abandon()
	case int64(len(b)) > t.max:
		t.abandon()
	default:
		t.err = io.EOF
		t.buf = b
		return t.commit()
	}
	return false
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
	t.abandon()
	var cerr error
	if rc, ok := t.r.(fasthttp.ReadCloserWithError); ok {
		cerr = rc.CloseWithError(err)
	} else {
		cerr = t.up.CloseBodyStream()
	}
	fasthttp.ReleaseResponse(t.up)
	if t.vary != nil {
		fasthttp.ReleaseRequest(t.vary)
	}
	*t = cacheBody{}
	cacheBodies.Put(t)
	return cerr
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
	resp.SetBodyStream(t, up.Header.ContentLength())
}
