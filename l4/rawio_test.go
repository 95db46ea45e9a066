package l4

import (
	"testing"

	"golang.org/x/sys/unix"
)

// TestRawIO checks the raw system calls against a non-blocking socket pair:
// errors come back as errnos (EAGAIN, EBADF), bytes and EOF as read(2)
// and write(2) give them.
func TestRawIO(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	a, b := fds[0], fds[1]
	defer unix.Close(b)
	buf := make([]byte, 16)

	if _, err := rawRead(b, buf); err != unix.EAGAIN {
		t.Fatalf("rawRead of an empty socket: got %v; want EAGAIN", err)
	}
	if n, err := rawWrite(a, []byte("hello")); n != 5 || err != nil {
		t.Fatalf("rawWrite: got %d, %v; want 5, nil", n, err)
	}
	if n, err := rawRead(b, buf); n != 5 || err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("rawRead: got %d %q, %v; want 5 \"hello\", nil", n, buf[:n], err)
	}
	if err := rawShutdown(a, unix.SHUT_WR); err != nil {
		t.Fatalf("rawShutdown: %v", err)
	}
	if n, err := rawRead(b, buf); n != 0 || err != nil {
		t.Fatalf("rawRead after the peer's shutdown: got %d, %v; want EOF (0, nil)", n, err)
	}
	if err := rawClose(a); err != nil {
		t.Fatalf("rawClose: %v", err)
	}
	// Not a closed descriptor: another test's socket may have its number.
	if _, err := rawWrite(-1, buf); err != unix.EBADF {
		t.Fatalf("rawWrite to a bad descriptor: got %v; want EBADF", err)
	}
	if err := rawClose(-1); err != unix.EBADF {
		t.Fatalf("rawClose of a bad descriptor: got %v; want EBADF", err)
	}
}
