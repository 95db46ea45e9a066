package l7

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"
)

// wsBackend is a WebSocket echo server. A text message "ping-me" makes it
// ping the client; its pong handler then sends "pong:<data>". /deny and /bad
// refuse the upgrade with 403 and 400.
type wsBackend struct {
	addr    string
	headers chan http.Header // the request headers of each upgrade
	closed  chan error       // how each echo loop ended
}

func startWSBackend(t *testing.T) *wsBackend {
	t.Helper()
	b := &wsBackend{headers: make(chan http.Header, 16), closed: make(chan error, 16)}
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		b.headers <- r.Header.Clone()
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		c.SetPongHandler(func(data string) error {
			return c.WriteMessage(websocket.TextMessage, []byte("pong:"+data))
		})
		for {
			mt, msg, err := c.ReadMessage()
			if err != nil {
				b.closed <- err
				return
			}
			if mt == websocket.TextMessage && string(msg) == "ping-me" {
				err = c.WriteControl(websocket.PingMessage, []byte("srv"), time.Now().Add(5*time.Second))
			} else {
				err = c.WriteMessage(mt, msg)
			}
			if err != nil {
				b.closed <- err
				return
			}
		}
	})
	mux.HandleFunc("/deny", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Reason", "policy")
		http.Error(w, "denied", http.StatusForbidden)
	})
	mux.HandleFunc("/bad", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "bad upgrade", http.StatusBadRequest)
	})
	b.addr = startBackend(t, mux)
	return b
}

func dialWS(t *testing.T, proxy, path string) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	c, resp, err := d.DialContext(ctx, "ws://"+proxy+path, nil)
	if c != nil {
		t.Cleanup(func() { c.Close() })
		_ = c.SetReadDeadline(time.Now().Add(time.Minute))
		_ = c.SetWriteDeadline(time.Now().Add(time.Minute))
	}
	return c, resp, err
}

// waitFor returns the next value from ch, failing the test after 10s.
func waitFor[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
	var zero T
	return zero
}

func TestUpgradeWebSocket(t *testing.T) {
	be := startWSBackend(t)
	s := startOneBackendProxy(t, oneBackend{Addr: be.addr})
	leakOpts := append([]goleak.Option{goleak.IgnoreCurrent()}, fasthttpBackground...)
	c, resp, err := dialWS(t, s.addr(), "/ws")
	if err != nil {
		t.Fatalf("dial: %v (response %v)", err, resp)
	}
	h := waitFor(t, be.headers, "the upgrade request")
	for _, kv := range [][2]string{{"X-Forwarded-For", "127.0.0.1"}, {"Upgrade", "websocket"}, {"Connection", "Upgrade"}, {"Sec-Websocket-Version", "13"}} {
		if got := h.Get(kv[0]); !strings.EqualFold(got, kv[1]) {
			t.Errorf("backend got %s %q; want %q", kv[0], got, kv[1])
		}
	}

	t.Run("echo", func(t *testing.T) {
		for _, size := range []int{0, 1, 125, 126, 127, 65535, 65536, 1 << 20, 3<<20 + 7} {
			bin, err := io.ReadAll(newPayload(int64(size)))
			if err != nil {
				t.Fatal(err)
			}
			text := bytes.Repeat([]byte("abcdefghijklmnopqrstuvwxyz0123456789"), size/36+1)[:size]
			for _, m := range []struct {
				typ  int
				data []byte
			}{{websocket.TextMessage, text}, {websocket.BinaryMessage, bin}} {
				if err := c.WriteMessage(m.typ, m.data); err != nil {
					t.Fatalf("write %d bytes: %v", size, err)
				}
				typ, got, err := c.ReadMessage()
				if err != nil {
					t.Fatalf("read %d bytes: %v", size, err)
				}
				if typ != m.typ || !bytes.Equal(got, m.data) {
					t.Errorf("echo of a %d-byte message of type %d: got type %d, %d bytes; want the same", size, m.typ, typ, len(got))
				}
			}
		}
	})

	t.Run("ping", func(t *testing.T) {
		pongs := make(chan string, 1)
		c.SetPongHandler(func(data string) error { pongs <- data; return nil })
		if err := c.WriteControl(websocket.PingMessage, []byte("cli"), time.Now().Add(5*time.Second)); err != nil {
			t.Fatal(err)
		}
		if err := c.WriteMessage(websocket.TextMessage, []byte("after-ping")); err != nil {
			t.Fatal(err)
		}
		if _, got, err := c.ReadMessage(); err != nil || string(got) != "after-ping" {
			t.Fatalf("got %q, %v; want %q", got, err, "after-ping")
		}
		select {
		case got := <-pongs:
			if got != "cli" {
				t.Errorf("got pong %q; want %q", got, "cli")
			}
		default:
			t.Error("no pong arrived before the echo that followed the ping")
		}
		// The other way: the backend pings, our default handler answers.
		if err := c.WriteMessage(websocket.TextMessage, []byte("ping-me")); err != nil {
			t.Fatal(err)
		}
		if _, got, err := c.ReadMessage(); err != nil || string(got) != "pong:srv" {
			t.Fatalf("got %q, %v; want %q", got, err, "pong:srv")
		}
	})

	t.Run("close", func(t *testing.T) {
		msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye")
		if err := c.WriteMessage(websocket.CloseMessage, msg); err != nil {
			t.Fatal(err)
		}
		_, _, err := c.ReadMessage()
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != websocket.CloseNormalClosure {
			t.Errorf("client got %v; want a close frame with code 1000", err)
		}
		err = waitFor(t, be.closed, "the backend's echo loop to end")
		if !errors.As(err, &ce) || ce.Code != websocket.CloseNormalClosure || ce.Text != "bye" {
			t.Errorf("backend got %v; want close 1000 %q", err, "bye")
		}
		// Both sides gone: the tunnel and its goroutines end.
		c.Close()
		goleak.VerifyNone(t, leakOpts...)
	})
}

func TestUpgradeRefusedIsRelayed(t *testing.T) {
	be := startWSBackend(t)
	s := startOneBackendProxy(t, oneBackend{Addr: be.addr})
	for _, tc := range []struct {
		path, body, reason string
		status             int
	}{
		{"/deny", "denied\n", "policy", http.StatusForbidden},
		{"/bad", "bad upgrade\n", "", http.StatusBadRequest},
	} {
		t.Run(tc.path, func(t *testing.T) {
			_, resp, err := dialWS(t, s.addr(), tc.path)
			if !errors.Is(err, websocket.ErrBadHandshake) || resp == nil {
				t.Fatalf("got %v; want %v with a response", err, websocket.ErrBadHandshake)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status || string(body) != tc.body || resp.Header.Get("X-Reason") != tc.reason {
				t.Errorf("got %d %q X-Reason %q; want %d %q X-Reason %q",
					resp.StatusCode, body, resp.Header.Get("X-Reason"), tc.status, tc.body, tc.reason)
			}
		})
	}
}

func TestUpgradeBackendDown(t *testing.T) {
	s := startOneBackendProxy(t, oneBackend{Addr: deadAddr(t)})
	_, resp, err := dialWS(t, s.addr(), "/ws")
	if !errors.Is(err, websocket.ErrBadHandshake) || resp == nil {
		t.Fatalf("got %v; want %v with a response", err, websocket.ErrBadHandshake)
	}
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("got status %d; want 502", resp.StatusCode)
	}
}

// rawBackend speaks a made-up protocol after "Upgrade: echo". On /echo it
// sends "hello\n", echoes what it reads and, at EOF, sends "bye\n" and
// closes. On /sink it sends "hello\n", half-closes at once and reports the
// length and SHA-256 of everything it then reads.
type rawBackend struct {
	addr    string
	headers chan http.Header
	echoEOF chan struct{}
	sunk    chan string
}

func startRawBackend(t *testing.T) *rawBackend {
	t.Helper()
	b := &rawBackend{headers: make(chan http.Header, 4), echoEOF: make(chan struct{}, 4), sunk: make(chan string, 4)}
	hijack := func(w http.ResponseWriter, r *http.Request) (*net.TCPConn, *bufio.Reader) {
		b.headers <- r.Header.Clone()
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return nil, nil
		}
		_ = c.SetDeadline(time.Now().Add(time.Minute))
		// The head and the first protocol bytes in one write, so that the
		// proxy reads them together.
		_, err = c.Write([]byte("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\nhello\n"))
		if err != nil {
			c.Close()
			return nil, nil
		}
		return c.(*net.TCPConn), brw.Reader
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		c, br := hijack(w, r)
		if c == nil {
			return
		}
		defer c.Close()
		if _, err := io.Copy(c, br); err != nil {
			return
		}
		b.echoEOF <- struct{}{}
		_, _ = c.Write([]byte("bye\n"))
		_ = c.CloseWrite()
	})
	mux.HandleFunc("/sink", func(w http.ResponseWriter, r *http.Request) {
		c, br := hijack(w, r)
		if c == nil {
			return
		}
		defer c.Close()
		_ = c.CloseWrite()
		n, sum, err := hashReader(br)
		b.sunk <- fmt.Sprintf("%d %s %v", n, sum, err)
	})
	b.addr = startBackend(t, mux)
	return b
}

// dialRaw sends an upgrade request for path followed at once by early and
// returns the connection, positioned after the 101 head.
func dialRaw(t *testing.T, proxy, path, early string) (*net.TCPConn, *bufio.Reader) {
	t.Helper()
	c := dialWithDeadline(t, proxy, time.Minute).(*net.TCPConn)
	t.Cleanup(func() { c.Close() })
	req := "GET " + path + " HTTP/1.1\r\nHost: raw.test\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n" + early
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Upgrade") != "echo" {
		t.Fatalf("got %d Upgrade %q; want 101 Upgrade %q", resp.StatusCode, resp.Header.Get("Upgrade"), "echo")
	}
	return c, br
}

func TestUpgradeRawTunnel(t *testing.T) {
	be := startRawBackend(t)
	s := startOneBackendProxy(t, oneBackend{Addr: be.addr})
	data, err := io.ReadAll(newPayload(1<<20 + 3)) // every byte value, many times
	if err != nil {
		t.Fatal(err)
	}

	t.Run("client closes first", func(t *testing.T) {
		const early = "early bytes, sent with the request|"
		c, br := dialRaw(t, s.addr(), "/echo", early)
		h := waitFor(t, be.headers, "the upgrade request")
		if got := h.Get("Upgrade"); got != "echo" {
			t.Errorf("backend got Upgrade %q; want %q", got, "echo")
		}
		want := "hello\n" + early
		got := make([]byte, len(want))
		if _, err := io.ReadFull(br, got); err != nil || string(got) != want {
			t.Fatalf("got %q, %v; want %q", got, err, want)
		}
		werr := make(chan error, 1)
		go func() {
			_, err := c.Write(data)
			if err == nil {
				err = c.CloseWrite()
			}
			werr <- err
		}()
		rest, err := io.ReadAll(br)
		if err != nil {
			t.Fatalf("read echo after %d bytes: %v", len(rest), err)
		}
		if err := waitFor(t, werr, "the writer"); err != nil {
			t.Fatal(err)
		}
		waitFor(t, be.echoEOF, "the backend to see EOF")
		if !bytes.Equal(rest, append(data[:len(data):len(data)], "bye\n"...)) {
			t.Errorf("got %d bytes back; want the %d sent and %q", len(rest), len(data), "bye\n")
		}
	})

	t.Run("backend closes first", func(t *testing.T) {
		c, br := dialRaw(t, s.addr(), "/sink", "")
		waitFor(t, be.headers, "the upgrade request")
		// Our side is still open for writing: the EOF must come from the
		// backend's half-close alone.
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		got, err := io.ReadAll(br)
		if err != nil || string(got) != "hello\n" {
			t.Fatalf("got %q, %v; want %q then EOF", got, err, "hello\n")
		}
		if _, err := c.Write(data); err != nil {
			t.Fatal(err)
		}
		if err := c.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		want := fmt.Sprintf("%d %s <nil>", len(data), hex.EncodeToString(sum[:]))
		if got := waitFor(t, be.sunk, "the backend's sink"); got != want {
			t.Errorf("backend read %s; want %s", got, want)
		}
	})
}

// TestUpgradeShutdownCutsTunnels: tunnels still open when the drain window
// of Shutdown ends are closed on both sides, and nothing is left running.
func TestUpgradeShutdownCutsTunnels(t *testing.T) {
	opts := append([]goleak.Option{goleak.IgnoreCurrent()}, fasthttpBackground...)
	t.Cleanup(func() { goleak.VerifyNone(t, opts...) }) // runs last
	be := startWSBackend(t)
	s := startOneBackendProxy(t, oneBackend{Addr: be.addr})
	c, resp, err := dialWS(t, s.addr(), "/ws")
	if err != nil {
		t.Fatalf("dial: %v (response %v)", err, resp)
	}
	if err := c.WriteMessage(websocket.TextMessage, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if _, got, err := c.ReadMessage(); err != nil || string(got) != "hi" {
		t.Fatalf("got %q, %v; want %q", got, err, "hi")
	}

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		done <- s.Shutdown(ctx)
	}()
	if err := waitFor(t, done, "Shutdown to return"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown returned %v; want %v, the tunnel being cut", err, context.DeadlineExceeded)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, _, err := c.ReadMessage(); err == nil || isTimeout(err) {
		t.Errorf("client read got %v; want the connection closed", err)
	}
	if err := waitFor(t, be.closed, "the backend's echo loop to end"); err == nil {
		t.Error("backend loop ended without error; want the connection closed")
	}
}

// TestUpgradeRewritesPath: the route's path rewrite applies to upgrade
// requests too, which are written to the backend by hand.
func TestUpgradeRewritesPath(t *testing.T) {
	be := startWSBackend(t)
	s := startOneBackendProxy(t, oneBackend{Addr: be.addr, Route: `[http.routes.rewrite]
strip_prefix = "/chat"`})
	c, resp, err := dialWS(t, s.addr(), "/chat/ws")
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial /chat/ws: %v (status %d); want the backend's /ws", err, status)
	}
	if err := c.WriteMessage(websocket.TextMessage, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if _, got, err := c.ReadMessage(); err != nil || string(got) != "hi" {
		t.Fatalf("got %q, %v; want %q", got, err, "hi")
	}
}

// TestUpgradeWithBodyDoesNotHang: an upgrade request that declares a body
// (curl --http2 sends one for h2c) is answered at once, refused (checkRequest
// says 400) or sent as a plain request; the tunnel, which sends no body,
// must not leave the backend waiting for one.
func TestUpgradeWithBodyDoesNotHang(t *testing.T) {
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s upgrade=%q", r.Method, body, r.Header.Get("Upgrade"))
	}))
	s := startOneBackendProxy(t, oneBackend{Addr: be, Upstream: "response_timeout = \"20s\""})
	c := dialWithDeadline(t, s.addr(), 10*time.Second)
	defer c.Close()
	req := "POST / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\nContent-Length: 5\r\n\r\nhello"
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	if plain := `POST hello upgrade=""`; resp.StatusCode != 400 && (resp.StatusCode != 200 || string(got) != plain) {
		t.Errorf("got %d %q; want 400, or 200 %q", resp.StatusCode, got, plain)
	}
}
