package bench

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func startSink(t *testing.T) (*SinkSource, string) {
	t.Helper()
	ln := listen(t)
	s := NewSinkSource(nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	return s, ln.Addr().String()
}

func TestBulkDirect(t *testing.T) {
	s, addr := startSink(t)
	const size = 3<<20 + 17
	res := Bulk(context.Background(), BulkConfig{Addr: addr, Conns: 4, Bytes: size, Timeout: 20 * time.Second})
	if res.Err != nil || res.Errors != 0 {
		t.Fatalf("Bulk: %d errors, first %v", res.Errors, res.Err)
	}
	if got, want := res.Bytes, int64(2*4*size); got != want {
		t.Errorf("got %d bytes; want %d", got, want)
	}
	if got, want := s.Verified.Load(), int64(4*size); got != want {
		t.Errorf("server verified %d bytes; want %d", got, want)
	}
}

// corrupter is a one-connection TCP relay that flips one byte of the
// client's stream at offset at (counting the bulk header).
func corrupter(t *testing.T, backend string, at int) string {
	t.Helper()
	ln := listen(t)
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		b, err := net.Dial("tcp", backend)
		if err != nil {
			return
		}
		defer b.Close()
		go func() { _, _ = io.Copy(c, b); c.Close() }()
		buf := make([]byte, 32<<10)
		pos := 0
		for {
			n, err := c.Read(buf)
			if n > 0 {
				if at >= pos && at < pos+n {
					buf[at-pos] ^= 0x40
				}
				pos += n
				if _, werr := b.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	return ln.Addr().String()
}

func TestBulkDetectsCorruption(t *testing.T) {
	s, addr := startSink(t)
	relay := corrupter(t, addr, bulkHeader+1<<20+5)
	res := Bulk(context.Background(), BulkConfig{Addr: relay, Conns: 1, Bytes: 2 << 20, Timeout: 10 * time.Second})
	if res.Errors != 1 || res.Err == nil {
		t.Fatalf("got %d errors (%v); want 1", res.Errors, res.Err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.Failed.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := s.Failed.Load(); got != 1 {
		t.Errorf("server counted %d failed connections; want 1", got)
	}
}

func TestBulkTimeout(t *testing.T) {
	// A server that accepts and never answers: the run must end by its
	// timeout with an error.
	ln := listen(t)
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			defer c.Close()
			time.Sleep(3 * time.Second)
		}
	}()
	start := time.Now()
	res := Bulk(context.Background(), BulkConfig{Addr: ln.Addr().String(), Conns: 1, Bytes: 1 << 30, Timeout: 300 * time.Millisecond})
	if res.Err == nil || !strings.Contains(res.Err.Error(), "deadline") {
		t.Fatalf("got %v; want a deadline error", res.Err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %s; want about 300ms", d)
	}
}
