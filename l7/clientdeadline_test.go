package l7

import (
	"bufio"
	"io"
	"testing"
	"time"
)

// TestClientDeadlinesKeepAlive checks the client timeouts on a kept-alive
// connection, where the deadline armed on the socket lags the one asked
// for (clientdeadline.go), with and without parking. header_timeout is
// shorter than the idle waits, so the armed header deadline of the last
// request passes during the wait and must not end it.
func TestClientDeadlinesKeepAlive(t *testing.T) {
	for _, tt := range []struct {
		name string
		mods []func(*Config)
	}{
		{"goroutine", nil},
		{"parked", []func(*Config){parkAlways}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			listener := `header_timeout = "150ms"
idle_timeout = "1s"`
			s := startProxy(t, oneBackend{Addr: echoPathBackend(t), Listener: listener}.toml(), tt.mods...)

			t.Run("idle past header_timeout, then a request", func(t *testing.T) {
				c := dialWithDeadline(t, s.addr(), 10*time.Second)
				defer c.Close()
				br := bufio.NewReader(c)
				for i := range 2 {
					if resp, body := roundTrip(t, c, br, "GET /x HTTP/1.1\r\nHost: x\r\n\r\n"); resp.StatusCode != 200 || body != "GET /x " {
						t.Fatalf("request %d: status %d body %q", i, resp.StatusCode, body)
					}
					time.Sleep(400 * time.Millisecond) // idle: longer than header_timeout, shorter than idle_timeout
				}
			})

			t.Run("a stalled header after an idle wait gets 408", func(t *testing.T) {
				c := dialWithDeadline(t, s.addr(), 10*time.Second)
				defer c.Close()
				br := bufio.NewReader(c)
				roundTrip(t, c, br, "GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
				time.Sleep(400 * time.Millisecond)
				start := time.Now()
				io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nX-Half: ")
				resp, body := readResponse(t, br)
				if took := time.Since(start); resp.StatusCode != 408 || took < 100*time.Millisecond || took > 900*time.Millisecond {
					t.Fatalf("status %d %q after %s; want 408 after header_timeout (150ms)", resp.StatusCode, body, took)
				}
			})

			t.Run("idle_timeout closes", func(t *testing.T) {
				c := dialWithDeadline(t, s.addr(), 10*time.Second)
				defer c.Close()
				br := bufio.NewReader(c)
				roundTrip(t, c, br, "GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
				start := time.Now()
				if _, err := br.ReadByte(); err != io.EOF {
					t.Fatalf("read on an idle connection: %v, want EOF", err)
				}
				if took := time.Since(start); took < 900*time.Millisecond || took > 3*time.Second {
					t.Fatalf("idle connection closed after %s; want idle_timeout (1s)", took)
				}
			})
		})
	}
}
