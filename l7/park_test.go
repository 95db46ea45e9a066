package l7

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// parkAlways makes every listener park a connection whenever it waits for
// a request.
func parkAlways(c *Config) {
	for i := range c.Listeners {
		c.Listeners[i].parking = &parkPolicy{}
	}
}

// echoPathBackend answers every request with its method and path.
func echoPathBackend(t *testing.T) string {
	return startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.Path, body)
	}))
}

// waitParked waits, at most 5 s, until the server holds n parked connections.
func waitParked(t *testing.T, s *Server, n int64) {
	t.Helper()
	waitCount(t, "parked connections", &s.metrics.parked, n)
}

// waitCount waits, at most 5 s, until count reads n.
func waitCount(t *testing.T, what string, count *atomic.Int64, n int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for count.Load() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d, want %d", what, count.Load(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// roundTrip sends raw on c and reads one response.
func roundTrip(t *testing.T, c net.Conn, br *bufio.Reader, raw string) (*http.Response, string) {
	t.Helper()
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatalf("write: %v", err)
	}
	return readResponse(t, br)
}

func readResponse(t *testing.T, br *bufio.Reader) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return resp, string(body)
}

func TestParkedConnectionServesAgain(t *testing.T) {
	s := startProxy(t, oneBackend{Addr: echoPathBackend(t)}.toml(), parkAlways)
	c := dialWithDeadline(t, s.addr(), 10*time.Second)
	defer c.Close()
	br := bufio.NewReader(c)
	for i := range 5 {
		waitParked(t, s, int64(min(i, 1)))
		path := fmt.Sprintf("/r%d", i)
		var resp *http.Response
		var body string
		switch i {
		case 2: // the request arrives in pieces: the first byte alone
			io.WriteString(c, "G")
			time.Sleep(20 * time.Millisecond) // let the server read the lone byte
			resp, body = roundTrip(t, c, br, "ET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n")
		case 3: // with a body
			resp, body = roundTrip(t, c, br, "POST "+path+" HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
		default:
			resp, body = roundTrip(t, c, br, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n")
		}
		want := "GET " + path + " "
		if i == 3 {
			want = "POST " + path + " hello"
		}
		if resp.StatusCode != 200 || body != want || resp.Close {
			t.Fatalf("request %d: status %d, close %v, body %q, want 200 %q", i, resp.StatusCode, resp.Close, body, want)
		}
	}
	waitParked(t, s, 1)
	if got := s.metrics.conns.Load(); got != 1 {
		t.Fatalf("active connections %d, want 1 (a parked one counts)", got)
	}
}

// TestSweepParksBusyConnection: a connection whose last wait was short is
// not parked when it waits, but the sweep parks it once the wait lasts.
func TestSweepParksBusyConnection(t *testing.T) {
	s := startProxy(t, oneBackend{Addr: echoPathBackend(t)}.toml(), func(c *Config) {
		c.Listeners[0].parking = &parkPolicy{gap: time.Hour, sweep: 20 * time.Millisecond}
	})
	c := dialWithDeadline(t, s.addr(), 10*time.Second)
	defer c.Close()
	br := bufio.NewReader(c)
	roundTrip(t, c, br, "GET /1 HTTP/1.1\r\nHost: x\r\n\r\n")
	waitParked(t, s, 1) // a first wait parks at once
	// Woken after a wait shorter than gap: this wait does not park at
	// once, the sweep parks it.
	if resp, body := roundTrip(t, c, br, "GET /2 HTTP/1.1\r\nHost: x\r\n\r\n"); body != "GET /2 " {
		t.Fatalf("status %d body %q", resp.StatusCode, body)
	}
	waitParked(t, s, 1)
	if resp, body := roundTrip(t, c, br, "GET /3 HTTP/1.1\r\nHost: x\r\n\r\n"); body != "GET /3 " || resp.Close {
		t.Fatalf("status %d close %v body %q", resp.StatusCode, resp.Close, body)
	}
}

func TestParkedPipelineAndLargeHead(t *testing.T) {
	s := startProxy(t, oneBackend{Addr: echoPathBackend(t)}.toml(), parkAlways)
	c := dialWithDeadline(t, s.addr(), 10*time.Second)
	defer c.Close()
	br := bufio.NewReader(c)
	roundTrip(t, c, br, "GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
	waitParked(t, s, 1)
	// Three requests in one write, the second with a head larger than the
	// read-ahead buffer: all are answered, in order.
	big := "GET /big HTTP/1.1\r\nHost: x\r\nX-Pad: " + strings.Repeat("p", 6000) + "\r\n\r\n"
	io.WriteString(c, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"+big+"GET /c HTTP/1.1\r\nHost: x\r\n\r\n")
	for _, want := range []string{"GET /a ", "GET /big ", "GET /c "} {
		if resp, body := readResponse(t, br); resp.StatusCode != 200 || body != want {
			t.Fatalf("status %d body %q, want 200 %q", resp.StatusCode, body, want)
		}
	}
	// A request, and the start of the next one: the rest of it, coming
	// later, is waited for, not parked (which would lose the start).
	waitParked(t, s, 1)
	io.WriteString(c, "GET /d HTTP/1.1\r\nHost: x\r\n\r\nGET /e HTT")
	if resp, body := readResponse(t, br); resp.StatusCode != 200 || body != "GET /d " {
		t.Fatalf("status %d body %q, want 200 %q", resp.StatusCode, body, "GET /d ")
	}
	time.Sleep(50 * time.Millisecond) // let the server find the rest missing
	if s.metrics.parked.Load() != 0 {
		t.Fatal("a connection holding half a request was parked")
	}
	if resp, body := roundTrip(t, c, br, "P/1.1\r\nHost: x\r\n\r\n"); resp.StatusCode != 200 || body != "GET /e " {
		t.Fatalf("status %d body %q, want 200 %q", resp.StatusCode, body, "GET /e ")
	}
}

func TestParkedConnectionIdleTimeout(t *testing.T) {
	s := startProxy(t, oneBackend{Addr: echoPathBackend(t), Listener: `idle_timeout = "300ms"`}.toml(), parkAlways)
	c := dialWithDeadline(t, s.addr(), 10*time.Second)
	defer c.Close()
	br := bufio.NewReader(c)
	roundTrip(t, c, br, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	start := time.Now()
	waitParked(t, s, 1)
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("read on an idle connection: %v, want EOF", err)
	}
	if idle := time.Since(start); idle < 250*time.Millisecond {
		t.Fatalf("closed after %s, before idle_timeout (300ms)", idle)
	}
	waitParked(t, s, 0)
	waitCount(t, "active connections after the idle close", &s.metrics.conns, 0)
}

func TestParkedClientCloses(t *testing.T) {
	s := startProxy(t, oneBackend{Addr: echoPathBackend(t)}.toml(), parkAlways)
	c := dialWithDeadline(t, s.addr(), 10*time.Second)
	roundTrip(t, c, bufio.NewReader(c), "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	waitParked(t, s, 1)
	c.Close()
	waitParked(t, s, 0)
	waitCount(t, "active connections after the client closed", &s.metrics.conns, 0)
}

func TestShutdownClosesParked(t *testing.T) {
	s := startProxy(t, oneBackend{Addr: echoPathBackend(t)}.toml(), parkAlways)
	c := dialWithDeadline(t, s.addr(), 10*time.Second)
	defer c.Close()
	br := bufio.NewReader(c)
	roundTrip(t, c, br, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	waitParked(t, s, 1)
	done := make(chan error, 1)
	go func() { done <- s.Shutdown(t.Context()) }()
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("read on a parked connection during shutdown: %v, want EOF", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("shutdown: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("shutdown did not end")
	}
}

func TestMaxConnsCountsParked(t *testing.T) {
	s := startProxy(t, oneBackend{Addr: echoPathBackend(t), Listener: "max_conns = 2"}.toml(), parkAlways)
	for range 2 {
		c := dialWithDeadline(t, s.addr(), 10*time.Second)
		defer c.Close()
		roundTrip(t, c, bufio.NewReader(c), "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	}
	waitParked(t, s, 2)
	c := dialWithDeadline(t, s.addr(), 10*time.Second)
	defer c.Close()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("third connection: %v, want a 503", err)
	}
	if resp.StatusCode != 503 {
		t.Fatalf("third connection: status %d, want 503", resp.StatusCode)
	}
}

// TestParkingUnderLoad runs connections above the default threshold through
// repeated park and wake cycles at once (and, under -race, checks the
// hand-overs between the goroutines and the parker).
func TestParkingUnderLoad(t *testing.T) {
	s := startProxy(t, oneBackend{Addr: echoPathBackend(t)}.toml(), func(c *Config) {
		c.Listeners[0].parking = &parkPolicy{above: 8, gap: time.Millisecond, sweep: 3 * time.Millisecond}
	})
	runClients(t, s.addr(), 40, func(i int, c net.Conn, br *bufio.Reader) error {
		for r := range 4 {
			path := fmt.Sprintf("/c%d/r%d", i, r)
			body, err := getBody(c, br, path)
			if err != nil {
				return err
			}
			if string(body) != "GET "+path+" " {
				return fmt.Errorf("%s: body %q", path, body)
			}
			time.Sleep(time.Duration(r) * 2 * time.Millisecond) // waits long and short
		}
		return nil
	})
}
