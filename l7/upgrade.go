package l7

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"portico/lb"
)

// isUpgrade reports a request asking to switch protocols (WebSocket and the
// like): an Upgrade header and "upgrade" among the Connection options.
func isUpgrade(h *fasthttp.RequestHeader) bool {
	if len(h.Peek("Upgrade")) == 0 {
		return false
	}
	conn := h.Peek("Connection")
	for len(conn) > 0 {
		var tok []byte
		if i := bytes.IndexByte(conn, ','); i >= 0 {
			tok, conn = conn[:i], conn[i+1:]
		} else {
			tok, conn = conn, nil
		}
		if bytes.EqualFold(bytes.TrimSpace(tok), []byte("upgrade")) {
			return true
		}
	}
	return false
}

// tunnel forwards an upgrade request to a backend over a fresh connection.
// If the backend switches protocols, the client connection is hijacked and
// bytes are copied both ways until each side has closed; otherwise the
// backend's answer is relayed as an ordinary response.
func (s *Server) tunnel(ctx *fasthttp.RequestCtx, snap *snapshot, rt *route, st *reqState) {
	p := rt.pool
	u := &snap.upstream
	var backend net.Conn
	var picked *lb.Backend
	var lease lb.Lease // released when the tunnel or the handshake ends
	var lastErr error
	var lastKind int
	var tried uint64
	hash := requestHash(ctx, p.HashKey())
	for attempt := 0; attempt <= snap.retries; attempt++ {
		b, err := p.pickUntried(hash, attempt, tried)
		if err != nil {
			lastErr = err
			break
		}
		tried |= backendBit(b.Backend)
		c, err := net.DialTimeout("tcp", b.Address, u.ConnectTimeout)
		if err == nil {
			backend, picked, lease = c, b.Backend, b
			break
		}
		b.Release(lb.Failure)
		kind, _, _, _ := classify(err)
		p.errors[b.Index][kind].Inc()
		lastErr, lastKind, picked = err, kind, b.Backend
	}
	if backend == nil {
		_, status, reason, _ := classify(lastErr)
		if picked != nil {
			st.backend = picked.Name
			s.logUpstreamError(rt, picked, kindNames[lastKind], lastErr)
		}
		s.fail(ctx, rt.metrics, status, reason)
		return
	}
	st.backend = picked.Name

	// The request line carries the path as prepare left it in the URI
	// (normalised, rewritten), as Request.Write would send it.
	up := &st.up
	up.URI().DisablePathNormalizing = true
	up.Header.SetRequestURIBytes(up.URI().RequestURI())
	_ = backend.SetWriteDeadline(time.Now().Add(u.WriteTimeout))
	_, err := backend.Write(up.Header.Header())
	br := acquireHeadReader(backend, u.MaxResponseHeaderBytes)
	defer releaseHeadReader(br)
	resp := &ctx.Response
	if err == nil {
		_ = backend.SetReadDeadline(time.Now().Add(u.ResponseTimeout))
		err = resp.Header.Read(br)
	}
	if err != nil {
		backend.Close()
		lease.Release(lb.Failure)
		kind, status, reason, _ := classify(err)
		p.errors[picked.Index][kind].Inc()
		s.logUpstreamError(rt, picked, kindNames[kind], err)
		s.fail(ctx, rt.metrics, status, reason)
		return
	}
	if resp.StatusCode() != fasthttp.StatusSwitchingProtocols {
		// Relay the refusal as a normal response and drop the connection.
		err := resp.ReadBody(br, 1<<20)
		backend.Close()
		if err != nil || resp.StatusCode() >= 500 {
			lease.Release(lb.Failure)
		} else {
			lease.Release(lb.Success)
		}
		if err != nil {
			s.fail(ctx, rt.metrics, fasthttp.StatusBadGateway, "bad response from backend")
			return
		}
		removeHopHeaders(&resp.Header)
		resp.Header.ResetConnectionClose()
		return
	}
	_ = backend.SetDeadline(time.Time{})
	// The backend's 101 head goes to the client as it is (fasthttp must not
	// write its own), followed by what the backend sent after it.
	head := resp.Header.AppendBytes(make([]byte, 0, 256+br.Buffered()))
	rest, _ := br.Peek(br.Buffered())
	head = append(head, rest...)
	ctx.HijackSetNoResponse(true)
	s.tunnels.Add(1)
	ctx.Hijack(func(client net.Conn) {
		defer s.tunnels.Done()
		defer lease.Release(lb.Success)
		s.pipe(client, backend, head)
	})
}

// headReaders holds the buffers that read a backend's answer to an upgrade
// request; the tunnel itself does not need them.
var headReaders sync.Pool

// acquireHeadReader returns a reader of c whose buffer, size bytes, is the
// largest response head it accepts.
func acquireHeadReader(c net.Conn, size int) *bufio.Reader {
	if br, _ := headReaders.Get().(*bufio.Reader); br != nil && br.Size() == size {
		br.Reset(c)
		return br
	}
	return bufio.NewReaderSize(c, size)
}

func releaseHeadReader(br *bufio.Reader) {
	br.Reset(nil)
	headReaders.Put(br)
}

// pipe sends head to the client, then copies bytes both ways until both
// directions have ended. The clean end (EOF) of one direction becomes a
// write shutdown of the other side, so half-closed protocols work; an error
// in either direction closes both connections, as does the end of the
// server's drain window. pipe closes backend; fasthttp closes client after
// pipe returns.
//
// client is fasthttp's hijacked connection: its reads go through the
// server's buffer, which holds any bytes the client sent right after its
// request, but it has no CloseWrite and its Close does nothing, so those
// are done on the connection beneath it.
func (s *Server) pipe(client, backend net.Conn, head []byte) {
	defer backend.Close()
	raw := client
	if u, ok := client.(interface{ UnsafeConn() net.Conn }); ok {
		raw = u.UnsafeConn()
	}
	done := make(chan error, 2)
	go func() { done <- halfCopy(backend, backend, client) }()
	go func() {
		_, err := client.Write(head)
		if err == nil {
			err = halfCopy(client, raw, backend)
		}
		done <- err
	}()
	cut := func() {
		raw.Close()
		backend.Close()
	}
	closing := s.closing
	for left := 2; left > 0; {
		select {
		case err := <-done:
			left--
			if err != nil && left > 0 {
				cut()
			}
		case <-closing:
			closing = nil
			cut()
		}
	}
}

// halfCopy copies src to dst until EOF, then shuts down dstConn (dst or the
// connection beneath it) for writing. It returns nil only if both worked.
func halfCopy(dst io.Writer, dstConn, src net.Conn) error {
	if _, err := io.Copy(dst, src); err != nil {
		return err
	}
	if cw, ok := dstConn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return dstConn.Close()
}
