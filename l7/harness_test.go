package l7

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/VictoriaMetrics/metrics"

	"portico/lb"
)

// testConfig is the part of portico's config.toml that an l7 test needs.
type testConfig struct {
	HTTP  Config                   `toml:"http"`
	Pools map[string]lb.PoolConfig `toml:"pools"`
}

// startProxy decodes tomlText (an [http] section and [pools.*]), starts the
// server on the listeners given (use 127.0.0.1:0) and returns it; the test's
// cleanup shuts it down. Placeholders are not expanded: build tomlText with
// fmt.Sprintf and the backends' addresses.
func startProxy(t testing.TB, tomlText string, mods ...func(*Config)) *Server {
	t.Helper()
	var tc testConfig
	md, err := toml.Decode(tomlText, &tc)
	if err != nil {
		t.Fatalf("decode config: %v", err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		t.Fatalf("unknown config keys: %v", und)
	}
	tc.HTTP.SetDefaults()
	names := map[string]bool{}
	pools := map[string]*lb.Pool{}
	for name, pc := range tc.Pools {
		pc.SetDefaults()
		if err := pc.Validate("pools." + name); err != nil {
			t.Fatalf("pool config: %v", err)
		}
		p, err := lb.NewPool(name, pc)
		if err != nil {
			t.Fatal(err)
		}
		names[name], pools[name] = true, p
	}
	if err := tc.HTTP.Validate("http", names); err != nil {
		t.Fatalf("http config: %v", err)
	}
	for _, mod := range mods {
		mod(&tc.HTTP)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	s, err := New(tc.HTTP, pools, log, metrics.NewSet())
	if err != nil {
		t.Fatalf("new server: %v", err)
	}
	if err := s.Start(); err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	return s
}

// addr is the address of the server's first listener.
func (s *Server) addr() string { return s.Addrs()[0].String() }

// startBackend serves h on a loopback port (net/http, a real server) and
// returns its address.
func startBackend(t testing.TB, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// oneBackend is the config of a proxy with one listener on 127.0.0.1:0 and one
// route to the pool "web", which holds the one backend at Addr. Every other
// field is optional TOML lines that go inside one table each, so that no table
// is opened twice.
type oneBackend struct {
	Addr     string // the backend's address
	HTTP     string // keys of [http], then any [http.*] tables but [http.upstream]
	Upstream string // keys of [http.upstream]; the table is left out when empty
	Listener string // keys of the [[http.listeners]] table
	Route    string // keys of the [[http.routes]] table, then its sub-tables
	Pool     string // keys of [pools.web]
	Backend  string // keys of the [[pools.web.backends]] table besides address
}

// toml is the config text, for startProxy.
func (c oneBackend) toml() string {
	upstream := ""
	if c.Upstream != "" {
		upstream = "[http.upstream]\n" + c.Upstream
	}
	return fmt.Sprintf(`
[http]
%s
%s
[[http.listeners]]
address = "127.0.0.1:0"
%s
[[http.routes]]
pool = "web"
%s
[pools.web]
%s
[[pools.web.backends]]
address = %q
%s
`, c.HTTP, upstream, c.Listener, c.Route, c.Pool, c.Addr, c.Backend)
}

// startOneBackendProxy starts a proxy with the config c (see oneBackend).
func startOneBackendProxy(t testing.TB, c oneBackend) *Server {
	t.Helper()
	return startProxy(t, c.toml())
}

// dialWithDeadline connects to addr for a test that writes and reads raw
// bytes, with timeout as the deadline of every read and write from now; the
// caller closes the connection.
func dialWithDeadline(t testing.TB, addr string, timeout time.Duration) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(timeout))
	return c
}

// runClients runs n clients at once, each on a keep-alive connection of
// its own to addr (every read and write within 20 s), with each(i, c, br);
// every error each returns fails the test.
func runClients(t *testing.T, addr string, n int, each func(i int, c net.Conn, br *bufio.Reader) error) {
	t.Helper()
	errs := make(chan error, n)
	for i := range n {
		go func() {
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(20 * time.Second))
			errs <- each(i, c, bufio.NewReader(c))
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// getBody sends a GET of path on c and reads the response's body.
func getBody(c net.Conn, br *bufio.Reader, path string) ([]byte, error) {
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		return nil, err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return io.ReadAll(resp.Body)
}
