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
	var backend net.Conn
	var picked *lb.Backend
	var lastErr error
	for attempt := 0; attempt <= snap.upstream.Retries; attempt++ {
		b, err := p.Pick(lb.Key{Attempt: uint32(attempt)})
		if err != nil {
			lastErr = err
			break
		}
		c, err := net.DialTimeout("tcp", b.Address, snap.upstream.ConnectTimeout)
		if err == nil {
			backend, picked = c, b
			break
		}
		kind, _, _, _ := classify(err)
		p.errors[b.Index][kind].Inc()
		lastErr, picked = err, b
	}
	if backend == nil {
		_, status, reason, _ := classify(lastErr)
		if picked != nil {
			st.backend = picked.Name
			s.logUpstreamError(rt, picked, "refused", lastErr)
		}
		s.fail(ctx, rt.metrics, status, reason)
		return
	}
	st.backend = picked.Name
	_ = backend.SetDeadline(time.Now().Add(snap.upstream.ResponseTimeout))
	bw := bufio.NewWriter(backend)
	err := st.up.Header.Write(bw)
	if err == nil {
		err = bw.Flush()
	}
	br := bufio.NewReader(backend)
	resp := &ctx.Response
	if err == nil {
		resp.SkipBody = true
		err = resp.Header.Read(br)
	}
	if err != nil {
		backend.Close()
		kind, status, reason, _ := classify(err)
		p.errors[picked.Index][kind].Inc()
		s.logUpstreamError(rt, picked, kindNames[kind], err)
		s.fail(ctx, rt.metrics, status, reason)
		return
	}
	if resp.StatusCode() != fasthttp.StatusSwitchingProtocols {
		// Relay the refusal as a normal response and drop the connection.
		resp.SkipBody = false
		err := resp.ReadBody(br, 1<<20)
		backend.Close()
		if err != nil {
			s.fail(ctx, rt.metrics, fasthttp.StatusBadGateway, "bad response from backend")
		}
		removeHopHeaders(&resp.Header)
		resp.Header.ResetConnectionClose()
		return
	}
	_ = backend.SetDeadline(time.Time{})
	// Send the backend's 101 head as it is; fasthttp must not write its own.
	head := append([]byte(nil), resp.Header.Header()...)
	ctx.HijackSetNoResponse(true)
	s.tunnels.Add(1)
	ctx.Hijack(func(client net.Conn) {
		defer s.tunnels.Done()
		defer backend.Close()
		if _, err := client.Write(head); err != nil {
			return
		}
		s.pipe(client, backend, br)
	})
}

// pipe copies both ways until both directions have ended; a FIN from one
// side becomes a write shutdown on the other. Shutdown of the server closes
// both.
func (s *Server) pipe(client, backend net.Conn, backendBuf *bufio.Reader) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		_, _ = io.Copy(backend, client)
		closeWrite(backend)
	}()
	go func() {
		defer wg.Done()
		_, _ = io.Copy(client, backendBuf)
		closeWrite(client)
	}()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-s.closing:
		// The server's drain window has ended: cut the tunnel.
		client.Close()
		backend.Close()
		<-done
	}
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
		return
	}
	_ = c.Close()
}
