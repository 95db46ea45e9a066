package l4

import (
	"bytes"
	"io"
	"math/rand/v2"
	"net"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (dialed, accepted *net.TCPConn) {
	t.Helper()
	ln, ch := acceptOne(t)
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(testTimeout))
	return c.(*net.TCPConn), recv(t, ch)
}

// rawFd returns a non-blocking dup of c's descriptor, closed at cleanup.
func rawFd(t *testing.T, c *net.TCPConn) int {
	t.Helper()
	f, err := c.File()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	fd := int(f.Fd())
	syscall.SetNonblock(fd, true)
	return fd
}

// TestSpliceRest drives spliceRest between two real sockets: a client that
// has sent more than the backend's socket takes. The bytes the backend's
// socket took and those queued for it, in that order, are what the client
// sent, and the flow waits for the backend to be writable.
func TestSpliceRest(t *testing.T) {
	s := newBareServer(t)
	l, _ := newListener(s, 0, testListener(nil))
	lp := newLoop(l, fakeLoop{})
	defer lp.pipe.close()

	sender, srcConn := tcpPair(t)
	dstConn, reader := tcpPair(t)
	src, dst := rawFd(t, srcConn), rawFd(t, dstConn)
	// A backend socket that takes little: small buffers, nobody reading.
	_ = unix.SetsockoptInt(dst, unix.SOL_SOCKET, unix.SO_SNDBUF, 16<<10)
	reader.SetReadBuffer(16 << 10)
	srcConn.SetReadBuffer(1 << 20) // the client's socket holds a lot

	data := make([]byte, 4<<20)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	go sender.Write(data) // ends when the test closes the connection

	// Wait until the client's socket holds more than the backend's takes.
	deadline := time.Now().Add(testTimeout)
	for {
		n, err := unix.IoctlGetInt(src, unix.SIOCINQ)
		if err != nil {
			t.Fatal(err)
		}
		if n >= 256<<10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("client socket holds %d bytes; want 256 KiB", n)
		}
		time.Sleep(time.Millisecond) // polling a condition with a deadline
	}

	client := &fakeConn{fd: src}
	f := newFlow(lp, client)
	client.ctx = &f.client
	f.state = stateOpen
	f.backend.c = &fakeConn{fd: dst, ctx: &f.backend}
	defer f.backend.release(false) // ends the wait for writability

	n, err := f.client.spliceRest(src)
	if err != nil {
		t.Fatalf("spliceRest: %v", err)
	}
	q := f.backend.queued()
	if n < 256<<10 || q == 0 || q > min(spliceChunk, l.cfg.HighWater) {
		t.Fatalf("spliceRest moved %d bytes and queued %d; want at least 256 KiB moved and 1 to %d queued",
			n, q, min(spliceChunk, l.cfg.HighWater))
	}
	t.Logf("spliced %d bytes, %d of them queued", n, q)
	if !f.backend.waiting {
		t.Fatal("backend does not wait for writability with bytes queued")
	}
	got := make([]byte, n-q, n)
	if _, err := io.ReadFull(reader, got); err != nil {
		t.Fatalf("backend read: %v", err)
	}
	for f.backend.queued() > 0 {
		b := f.backend.q.front()
		got = append(got, b...)
		f.backend.q.discard(&lp.chunks, len(b))
	}
	if !bytes.Equal(got, data[:n]) {
		t.Fatal("the backend's bytes then the queue's are not the client's first bytes")
	}
}
