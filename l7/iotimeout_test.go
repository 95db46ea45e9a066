package l7

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

// deadlineCounter counts the deadlines set on a connection.
type deadlineCounter struct {
	net.Conn
	reads, writes int
}

func (c *deadlineCounter) SetReadDeadline(t time.Time) error {
	c.reads++
	return c.Conn.SetReadDeadline(t)
}

func (c *deadlineCounter) SetWriteDeadline(t time.Time) error {
	c.writes++
	return c.Conn.SetWriteDeadline(t)
}

// TestIOTimeoutConnMovesDeadlinesRarely pins the cost side of ioTimeoutConn:
// back-to-back reads and writes set a deadline once, not once each.
func TestIOTimeoutConnMovesDeadlinesRarely(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	dc := &deadlineCounter{Conn: a}
	c := &ioTimeoutConn{netConn: dc, read: time.Minute, write: time.Minute}
	go func() {
		buf := make([]byte, 1)
		for {
			if _, err := b.Read(buf); err != nil {
				return
			}
			if _, err := b.Write(buf); err != nil {
				return
			}
		}
	}()
	buf := make([]byte, 1)
	for i := 0; i < 100; i++ {
		if _, err := c.Write(buf); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
	if dc.reads != 1 || dc.writes != 1 {
		t.Fatalf("got %d read and %d write deadlines for 100 exchanges; want 1 and 1", dc.reads, dc.writes)
	}
}

// TestIOTimeoutConnBoundsEachRead pins the semantics that stream_test.go
// relies on: each read may wait the whole timeout (bytes that keep coming
// just inside it never time out, however long the transfer), and a stall is
// cut by the timeout plus deadlineSlack.
func TestIOTimeoutConnBoundsEachRead(t *testing.T) {
	const timeout = 200 * time.Millisecond
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	c := &ioTimeoutConn{netConn: a, read: timeout}
	go func() {
		for i := 0; i < 5; i++ {
			time.Sleep(timeout * 3 / 4)
			if _, err := b.Write([]byte{byte(i)}); err != nil {
				return
			}
		}
	}()
	buf := make([]byte, 1)
	for i := 0; i < 5; i++ { // 750 ms in all, well past the first deadline
		if _, err := c.Read(buf); err != nil {
			t.Fatalf("read %d: %v; want each read to wait up to %v", i, err, timeout)
		}
	}
	start := time.Now()
	_, err := c.Read(buf)
	d := time.Since(start)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("stalled read: got %v; want %v", err, os.ErrDeadlineExceeded)
	}
	if d < timeout || d > timeout+deadlineSlack(timeout)+100*time.Millisecond {
		t.Fatalf("stalled read cut after %v; want between %v and %v", d, timeout, timeout+deadlineSlack(timeout))
	}
}
