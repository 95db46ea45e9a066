package l7

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestParkedWakeAfterEarlyDeadline: the parker's epoll file can reach its
// read deadline while, as the parker reckons, nothing is due yet. The loop
// must arm the deadline again, not spin on the expired one without
// polling: a parked connection must still be woken.
func TestParkedWakeAfterEarlyDeadline(t *testing.T) {
	s := startProxy(t, oneBackend{Addr: echoPathBackend(t)}.toml(), func(c *Config) {
		c.Listeners[0].parking = &parkPolicy{sweep: time.Hour}
	})
	c := dialWithDeadline(t, s.addr(), 10*time.Second)
	defer c.Close()
	br := bufio.NewReader(c)
	roundTrip(t, c, br, "GET /1 HTTP/1.1\r\nHost: x\r\n\r\n")
	waitParked(t, s, 1)
	// The file's deadline (armed for the next sweep, an hour on) passes
	// now, while the next sweep, as the parker reckons it, is still an
	// hour away.
	pk := s.listeners[0].pk
	_ = pk.ep.SetReadDeadline(time.Now())
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if resp, body := roundTrip(t, c, br, "GET /2 HTTP/1.1\r\nHost: x\r\n\r\n"); resp.StatusCode != 200 || body != "GET /2 " {
		t.Fatalf("status %d body %q", resp.StatusCode, body)
	}
}

// TestMaxConnsWokenNotRefused: on a listener with max_conns, a request that
// arrives just as its connection is parked is served, not refused by
// fasthttp's Concurrency (which counted the connection twice for a
// moment: the ServeConn that parked it had not yet let go of its count
// when the wake-up's ServeConn took one).
func TestMaxConnsWokenNotRefused(t *testing.T) {
	s := startProxy(t, oneBackend{Addr: echoPathBackend(t), Listener: "max_conns = 1"}.toml(), parkAlways)
	c := dialWithDeadline(t, s.addr(), 30*time.Second)
	defer c.Close()
	br := bufio.NewReader(c)
	// The next request follows each response after a varying pause, so that
	// some arrive between the server's empty read and the end of its park.
	end := time.Now().Add(3 * time.Second)
	sink := 0
	for i := 0; time.Now().Before(end); i++ {
		for j := range i % 97 * 20 {
			sink += j * j
		}
		resp, body := roundTrip(t, c, br, fmt.Sprintf("GET /r%d HTTP/1.1\r\nHost: x\r\n\r\n", i))
		if resp.StatusCode != 200 || resp.Close {
			t.Fatalf("request %d: status %d close %v body %q", i, resp.StatusCode, resp.Close, body)
		}
	}
	_ = sink
}

// limitDescriptors makes the lowest free file descriptor the process's
// limit (RLIMIT_NOFILE): no new descriptor can be made until restore is
// called (also at the test's end). ok is false if the limit cannot be set.
func limitDescriptors(t *testing.T) (restore func(), ok bool) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return func() {}, false
	}
	free, err := unix.Dup(0)
	if err != nil {
		return func() {}, false
	}
	unix.Close(free)
	low := lim
	low.Cur = uint64(free)
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &low); err != nil {
		return func() {}, false
	}
	var once sync.Once
	restore = func() {
		once.Do(func() {
			if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
				t.Errorf("restore RLIMIT_NOFILE: %v", err)
			}
		})
	}
	t.Cleanup(restore)
	return restore, true
}

// TestParkingWithoutSpareDescriptor: when the process has no file
// descriptor to spare (EMFILE), a parked connection is still woken and
// served (the parker holds a descriptor in reserve for net.FileConn's
// duplicate), and an idle connection that cannot be parked (park
// duplicates the socket) waits for its next request with its goroutine,
// as it would without parking: neither is closed under the client.
func TestParkingWithoutSpareDescriptor(t *testing.T) {
	for _, tc := range []struct {
		name  string
		limit string // the request whose backend handler sets the limit; "": the test does, while the connection is parked
	}{
		{"parked, then woken", ""},
		{"waiting, cannot park", "/limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			restore := func() {}
			limited := false
			limit := func() {
				mu.Lock()
				defer mu.Unlock()
				restore, limited = limitDescriptors(t)
			}
			be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/limit" {
					limit()
				}
				fmt.Fprintf(w, "%s %s", r.Method, r.URL.Path)
			}))
			s := startProxy(t, oneBackend{Addr: be}.toml(), parkAlways)
			c := dialWithDeadline(t, s.addr(), 10*time.Second)
			defer c.Close()
			br := bufio.NewReader(c)
			roundTrip(t, c, br, "GET /1 HTTP/1.1\r\nHost: x\r\n\r\n")
			waitParked(t, s, 1)
			if tc.limit == "" {
				limit()
			} else {
				roundTrip(t, c, br, "GET "+tc.limit+" HTTP/1.1\r\nHost: x\r\n\r\n")
			}
			mu.Lock()
			ok := limited
			mu.Unlock()
			if !ok {
				t.Skip("cannot lower RLIMIT_NOFILE")
			}
			for _, path := range []string{"/3", "/4"} {
				resp, body := roundTrip(t, c, br, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n")
				if resp.StatusCode != 200 || body != "GET "+path || resp.Close {
					t.Fatalf("%s: status %d close %v body %q", path, resp.StatusCode, resp.Close, body)
				}
			}
			mu.Lock()
			restore()
			mu.Unlock()
			roundTrip(t, c, br, "GET /5 HTTP/1.1\r\nHost: x\r\n\r\n")
			waitParked(t, s, 1) // parks again once it can
			if got := s.metrics.conns.Load(); got != 1 {
				t.Errorf("active connections %d, want 1", got)
			}
		})
	}
}

// TestAcceptSurvivesEMFILE: an accept that fails for want of a file
// descriptor (EMFILE) is retried, as net/http does; fasthttp's Serve,
// which takes any accept error but a timeout as permanent, must not see it
// and stop serving the listener for good.
func TestAcceptSurvivesEMFILE(t *testing.T) {
	s := startProxy(t, oneBackend{Addr: echoPathBackend(t)}.toml())
	addr := s.Addrs()[0].(*net.TCPAddr)
	// The client's socket is made before the limit and connected under it.
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	restore, ok := limitDescriptors(t)
	if !ok {
		unix.Close(fd)
		t.Skip("cannot lower RLIMIT_NOFILE")
	}
	sa := &unix.SockaddrInet4{Port: addr.Port}
	copy(sa.Addr[:], addr.IP.To4())
	cerr := unix.Connect(fd, sa)
	// No signal marks the server's failed accept: give it the time to try.
	time.Sleep(100 * time.Millisecond)
	restore()
	if cerr != nil {
		unix.Close(fd)
		t.Fatalf("connect: %v", cerr)
	}
	f := os.NewFile(uintptr(fd), "client")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	resp, body := roundTrip(t, c, bufio.NewReader(c), "GET /after HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp.StatusCode != 200 || body != "GET /after " {
		t.Fatalf("status %d body %q", resp.StatusCode, body)
	}
}
