package l7

import (
	"io"
	"sync"
)

// A streamed body, the backend's response to the client or the client's
// request to the backend, is copied by fasthttp with bufio.Writer.ReadFrom:
// the writer's 4 KiB buffer is filled and flushed, one write(2) per 4 KiB,
// unless the connection beneath the buffer is an io.ReaderFrom, to which
// the copy is handed once the buffer has been flushed. countConn (client
// side) and backendConn (backend side) are such connections, so the rest
// of the body goes in copyBufSize pieces: a 64 KiB response costs two or
// three writes, not sixteen, and the reader at the other end is woken as
// many times fewer.

// copyBufSize is the piece a streamed body is copied in: a read of up to
// this much, then a write of what it got. Each body being copied holds one
// buffer; idle connections hold none.
const copyBufSize = 64 << 10

var copyBufs = sync.Pool{New: func() any { return new([copyBufSize]byte) }}

// copyInPieces copies r to w until r's EOF, writing whatever each read
// returns straight away (nothing is held back for a fuller write, so a body
// that trickles goes on as it comes). It returns nil at EOF, as io.Copy
// does.
func copyInPieces(w io.Writer, r io.Reader) (n int64, err error) {
	buf := copyBufs.Get().(*[copyBufSize]byte)
	defer copyBufs.Put(buf)
	empty := 0
	for {
		nr, rerr := r.Read(buf[:])
		if nr == 0 && rerr == nil {
			if empty++; empty >= 100 { // as bufio: a reader that makes no progress
				return n, io.ErrNoProgress
			}
			continue
		}
		empty = 0
		if nr > 0 {
			nw, werr := writeFull(w, buf[:nr])
			n += int64(nw)
			if werr != nil {
				return n, werr
			}
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
	}
}

// writeFull writes b to w; a short write without an error is
// io.ErrShortWrite.
func writeFull(w io.Writer, b []byte) (int, error) {
	n, err := w.Write(b)
	if err == nil && n != len(b) {
		err = io.ErrShortWrite
	}
	return n, err
}

// ReadFrom copies r to the client in copyBufSize pieces, counting the bytes
// sent; a body registered for splice (splice.go)
// goes by spliceCopy.
func (c *countConn) ReadFrom(r io.Reader) (int64, error) {
	if sc, lr, resp := takeSplice(c, r); sc != nil {
		return spliceCopy(c, sc, lr, resp)
	}
	return copyInPieces(c, r)
}

// backendConn is a backend connection with ReadFrom, so that a streamed
// request body goes to the backend in copyBufSize pieces; each write keeps
// its own deadline (ioTimeoutConn).
type backendConn struct{ *ioTimeoutConn }

// ReadFrom copies r to the backend in copyBufSize pieces.
func (c backendConn) ReadFrom(r io.Reader) (int64, error) { return copyInPieces(c.ioTimeoutConn, r) }
