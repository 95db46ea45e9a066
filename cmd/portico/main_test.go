package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// syncBuffer is an io.Writer that tests can read and wait on while run
// writes its log to it.
type syncBuffer struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	wake chan struct{} // closed and replaced on every write
}

func newSyncBuffer() *syncBuffer { return &syncBuffer{wake: make(chan struct{})} }

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n, err := b.buf.Write(p)
	close(b.wake)
	b.wake = make(chan struct{})
	return n, err
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *syncBuffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Len()
}

// waitFor waits until the text written from offset on contains s, and
// returns that text.
func (b *syncBuffer) waitFor(t *testing.T, from int, s string) string {
	t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for {
		b.mu.Lock()
		text, wake := b.buf.String()[from:], b.wake
		b.mu.Unlock()
		if strings.Contains(text, s) {
			return text
		}
		select {
		case <-wake:
		case <-deadline.C:
			t.Fatalf("got log\n%s\nwant a line with %q within 10s", text, s)
		}
	}
}

// freeAddr returns a loopback address that was free a moment ago, for the
// demo backends, whose addresses the pools must name.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startBackend serves h on a loopback port and returns its address.
func startBackend(t *testing.T, h http.Handler) string {
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

// textBackend answers every request with body.
func textBackend(t *testing.T, body string) string {
	return startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, body)
	}))
}

// portico is one run of the command in this process.
type portico struct {
	t      *testing.T
	path   string // of the config file
	sigs   chan os.Signal
	done   chan struct{} // closed when run returns
	code   int           // run's exit code, once done is closed
	p      *process
	stdout *syncBuffer
	stderr *syncBuffer
	client *http.Client
}

// startPortico writes cfg to a temporary config.toml and runs portico on it
// until it serves. The test's cleanup stops it if the test did not.
func startPortico(t *testing.T, cfg string) *portico {
	t.Helper()
	pc := &portico{
		t:      t,
		path:   filepath.Join(t.TempDir(), "config.toml"),
		sigs:   make(chan os.Signal, 1),
		done:   make(chan struct{}),
		stdout: newSyncBuffer(),
		stderr: newSyncBuffer(),
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}},
	}
	pc.writeConfig(cfg)
	ready := make(chan *process, 1)
	go func() {
		pc.code = run([]string{"-config", pc.path}, pc.stdout, pc.stderr, pc.sigs, ready)
		close(pc.done)
	}()
	select {
	case pc.p = <-ready:
	case <-pc.done:
		t.Fatalf("run returned %d before serving; log:\n%s", pc.code, pc.stderr)
	case <-time.After(10 * time.Second):
		t.Fatalf("run did not serve within 10s; log:\n%s", pc.stderr)
	}
	t.Cleanup(func() {
		pc.client.CloseIdleConnections()
		select {
		case <-pc.done:
			return
		default:
		}
		select {
		case pc.sigs <- syscall.SIGTERM:
		case <-pc.done:
			return
		}
		select {
		case <-pc.done:
		case <-time.After(15 * time.Second):
			t.Errorf("run did not return within 15s of SIGTERM")
		}
	})
	return pc
}

func (pc *portico) writeConfig(cfg string) {
	pc.t.Helper()
	if err := os.WriteFile(pc.path, []byte(cfg), 0o644); err != nil {
		pc.t.Fatal(err)
	}
}

// url is the address of path on the first HTTP listener.
func (pc *portico) url(path string) string {
	return "http://" + pc.p.httpAddrs()[0].String() + path
}

func (pc *portico) adminURL(path string) string {
	return "http://" + pc.p.admin.addr().String() + path
}

// signal sends sig and returns the log offset from which to wait for its
// effect.
func (pc *portico) signal(sig os.Signal) int {
	mark := pc.stderr.Len()
	select {
	case pc.sigs <- sig:
	case <-time.After(5 * time.Second):
		pc.t.Fatalf("run does not take signals")
	}
	return mark
}

// wait waits for run to return and returns its exit code.
func (pc *portico) wait(within time.Duration) int {
	pc.t.Helper()
	select {
	case <-pc.done:
		return pc.code
	case <-time.After(within):
		pc.t.Fatalf("run did not return within %s; log:\n%s", within, pc.stderr)
		return -1
	}
}

// get fetches url and returns the status, headers and body.
func (pc *portico) get(url string, header ...string) (int, http.Header, string) {
	pc.t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		pc.t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := pc.client.Do(req)
	if err != nil {
		pc.t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		pc.t.Fatalf("GET %s: reading body: %v", url, err)
	}
	return resp.StatusCode, resp.Header, string(body)
}

// proxyConfig is a config with one listener, admin, and route "default"
// to pool web on backend.
func proxyConfig(drain, backend string) string {
	return fmt.Sprintf(`
[admin]
address = "127.0.0.1:0"

[shutdown]
drain_timeout = %q

[pools.web]
  [[pools.web.backends]]
  name = "be"
  address = %q

[[http.listeners]]
name = "main"
address = "127.0.0.1:0"

[[http.routes]]
name = "default"
pool = "web"
`, drain, backend)
}

func TestRunVersion(t *testing.T) {
	stdout, stderr := newSyncBuffer(), newSyncBuffer()
	if code := run([]string{"-version"}, stdout, stderr, nil, nil); code != 0 {
		t.Fatalf("got exit code %d; want 0", code)
	}
	if got, want := stdout.String(), "portico dev "+runtime.Version()+"\n"; got != want {
		t.Errorf("got stdout %q; want %q", got, want)
	}
	if got := stderr.String(); got != "" {
		t.Errorf("got stderr %q; want nothing", got)
	}
}

func TestRunFlags(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStderr string // a part of it
	}{
		{"unknown flag", []string{"-nope"}, 2, "flag provided but not defined: -nope"},
		{"flag without value", []string{"-config"}, 2, "flag needs an argument: -config"},
		{"positional argument", []string{"config.toml"}, 2, `unexpected argument "config.toml"`},
		{"help", []string{"-h"}, 0, "Usage of portico"},
		{"missing config", []string{"-config", "/nonexistent/portico.toml"}, 1, "cannot read config: open /nonexistent/portico.toml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr := newSyncBuffer(), newSyncBuffer()
			if code := run(tt.args, stdout, stderr, nil, nil); code != tt.wantCode {
				t.Errorf("got exit code %d; want %d", code, tt.wantCode)
			}
			if got := stderr.String(); !strings.Contains(got, tt.wantStderr) {
				t.Errorf("got stderr %q; want it to contain %q", got, tt.wantStderr)
			}
			if got := stdout.String(); got != "" {
				t.Errorf("got stdout %q; want nothing", got)
			}
		})
	}
}

func TestRunCheck(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.toml")
	if err := os.WriteFile(good, []byte(proxyConfig("1s", "127.0.0.1:9")), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, stderr := newSyncBuffer(), newSyncBuffer()
	if code := run([]string{"-check", "-config", good}, stdout, stderr, nil, nil); code != 0 {
		t.Errorf("good file: got exit code %d; want 0; stderr:\n%s", code, stderr)
	}
	if got, want := stdout.String(), good+": config ok\n"; got != want {
		t.Errorf("good file: got stdout %q; want %q", got, want)
	}
	if got := stderr.String(); got != "" {
		t.Errorf("good file: got stderr %q; want nothing", got)
	}

	bad := filepath.Join(dir, "bad.toml")
	src := lines(
		`[admin]`,
		`address = "127.0.0.1:0"`,
		`colour = "red"`,
		`[[http.listeners]]`,
		`address = "127.0.0.1:0"`,
		`[[http.routes]]`,
		`pool = "nope"`,
		`[shutdown]`,
		`drain_timeout = "-1s"`,
	)
	if err := os.WriteFile(bad, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, stderr = newSyncBuffer(), newSyncBuffer()
	if code := run([]string{"-check", "-config", bad}, stdout, stderr, nil, nil); code != 1 {
		t.Errorf("bad file: got exit code %d; want 1", code)
	}
	want := lines(
		bad+`: line 3: admin.colour: unknown key`,
		bad+`: line 7: http.routes[0].pool: pool "nope" is not defined`,
		bad+`: line 9: shutdown.drain_timeout: must not be negative, got -1s`,
	)
	if got := stderr.String(); got != want {
		t.Errorf("bad file: got stderr\n%s\nwant\n%s", got, want)
	}
	if got := stdout.String(); got != "" {
		t.Errorf("bad file: got stdout %q; want nothing", got)
	}
}

func TestRunCannotStart(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cfg := strings.Replace(proxyConfig("1s", "127.0.0.1:9"), `address = "127.0.0.1:0"
`, fmt.Sprintf("address = %q\n", busy.Addr().String()), 2)
	path := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, stderr := newSyncBuffer(), newSyncBuffer()
	if code := run([]string{"-config", path}, stdout, stderr, make(chan os.Signal), nil); code != 1 {
		t.Errorf("got exit code %d; want 1", code)
	}
	if got, want := stderr.String(), "cannot listen on "+busy.Addr().String(); !strings.Contains(got, want) {
		t.Errorf("got log\n%s\nwant it to contain %q", got, want)
	}
}

// demoResponse is what a demo backend answers.
type demoResponse struct {
	Name    string            `json:"name"`
	Request string            `json:"request"`
	Headers map[string]string `json:"headers"`
}

func TestRunDemoRoundRobin(t *testing.T) {
	demo := []string{freeAddr(t), freeAddr(t), freeAddr(t)}
	echo := freeAddr(t)
	pc := startPortico(t, fmt.Sprintf(`
[admin]
address = "127.0.0.1:0"

[demo]
http = [%q, %q, %q]
tcp_echo = %q

[pools.web]
  [[pools.web.backends]]
  name = "demo-1"
  address = %[1]q
  [[pools.web.backends]]
  name = "demo-2"
  address = %[2]q
  [[pools.web.backends]]
  name = "demo-3"
  address = %[3]q

[[http.listeners]]
address = "127.0.0.1:0"

[[http.routes]]
name = "default"
pool = "web"
  [http.routes.headers]
  response_set = { "X-Served-By" = "{backend}" }
`, demo[0], demo[1], demo[2], echo))

	hex32 := regexp.MustCompile(`^[0-9a-f]{32}$`)
	for i, want := range []string{"demo-1", "demo-2", "demo-3"} {
		status, h, body := pc.get(pc.url("/hello?x=1"), "X-Test", "yes")
		if status != 200 {
			t.Fatalf("GET %d: got status %d; want 200; body %q", i, status, body)
		}
		var d demoResponse
		if err := json.Unmarshal([]byte(body), &d); err != nil {
			t.Fatalf("GET %d: body %q is not the demo's JSON: %v", i, body, err)
		}
		if d.Name != want {
			t.Errorf("GET %d: got backend %q; want %q (round robin)", i, d.Name, want)
		}
		if got := h.Get("X-Served-By"); got != want {
			t.Errorf("GET %d: got X-Served-By %q; want %q", i, got, want)
		}
		if got, want := d.Request, "GET /hello?x=1 HTTP/1.1"; got != want {
			t.Errorf("GET %d: got request line %q; want %q", i, got, want)
		}
		for k, want := range map[string]string{
			"X-Test":            "yes",
			"X-Forwarded-For":   "127.0.0.1",
			"X-Forwarded-Proto": "http",
			"Via":               "1.1 portico",
		} {
			if got := d.Headers[k]; got != want {
				t.Errorf("GET %d: backend got %s %q; want %q", i, k, got, want)
			}
		}
		if id := d.Headers["X-Request-Id"]; !hex32.MatchString(id) || h.Get("X-Request-Id") != id {
			t.Errorf("GET %d: got X-Request-Id %q upstream and %q on the response; want the same 32 hex digits", i, id, h.Get("X-Request-Id"))
		}
	}

	c, err := net.DialTimeout("tcp", echo, 5*time.Second)
	if err != nil {
		t.Fatalf("dial demo echo: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "ping\n")
	if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || line != "ping\n" {
		t.Errorf("echo: got %q, %v; want %q", line, err, "ping\n")
	}
}

func TestRunAdminMetrics(t *testing.T) {
	be := textBackend(t, "ok")
	dead := freeAddr(t) // nothing listens: connections are refused
	pc := startPortico(t, fmt.Sprintf(`
[admin]
address = "127.0.0.1:0"

[pools.app]
  [[pools.app.backends]]
  name = "be"
  address = %q

[pools.down]
  [[pools.down.backends]]
  name = "dead"
  address = %q

[[http.listeners]]
address = "127.0.0.1:0"

[[http.routes]]
name = "app"
pool = "app"
match.path_prefix = "/app"

[[http.routes]]
name = "down"
pool = "down"
match.path_prefix = "/down"
`, be, dead))
	for _, r := range []struct {
		path   string
		status int
	}{{"/app/a", 200}, {"/app/b?q=secret", 200}, {"/nowhere/x", 404}, {"/down/y", 502}} {
		if status, _, body := pc.get(pc.url(r.path)); status != r.status {
			t.Errorf("GET %s: got status %d; want %d; body %q", r.path, status, r.status, body)
		}
	}
	status, h, body := pc.get(pc.adminURL("/metrics"))
	if status != 200 {
		t.Fatalf("GET /metrics: got status %d; want 200", status)
	}
	if got, want := h.Get("Content-Type"), "text/plain; version=0.0.4; charset=utf-8"; got != want {
		t.Errorf("GET /metrics: got Content-Type %q; want %q", got, want)
	}
	for _, want := range []string{
		`portico_http_requests_total{route="app",code="2xx"} 2`,
		`portico_http_requests_total{route="none",code="4xx"} 1`,
		`portico_http_requests_total{route="down",code="5xx"} 1`,
		`go_goroutines `,
	} {
		if !strings.Contains(body, "\n"+want) {
			t.Errorf("GET /metrics: no line %q in\n%s", want, body)
		}
	}
	// One per attempt: the request and its retries.
	refused := regexp.MustCompile(`\nportico_http_upstream_errors_total\{pool="down",backend="dead",kind="refused"\} [1-9]`)
	if !refused.MatchString(body) {
		t.Errorf("GET /metrics: no refused connections to backend dead counted in\n%s", body)
	}
	for _, raw := range []string{"/app/a", "/nowhere", "secret"} {
		if strings.Contains(body, raw) {
			t.Errorf("GET /metrics: raw path %q appears in the metrics", raw)
		}
	}
	if status, _, body := pc.get(pc.adminURL("/healthz")); status != 200 || body != "ok\n" {
		t.Errorf("GET /healthz: got %d %q; want 200 %q", status, body, "ok\n")
	}
}

// slowBackend answers each request only once the test closes release; it
// signals on arrived when a request is in.
func slowBackend(t *testing.T) (addr string, arrived <-chan struct{}, release chan struct{}) {
	in := make(chan struct{}, 16)
	release = make(chan struct{})
	addr = startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		in <- struct{}{}
		<-release
		io.WriteString(w, "slow done")
	}))
	return addr, in, release
}

type result struct {
	status int
	body   string
	err    error
}

// getAsync starts a GET and returns where its result will arrive. The
// client has no timeout of its own that a test could mistake for a cut
// connection; tests bound their wait instead.
func (pc *portico) getAsync(path string) <-chan result {
	out := make(chan result, 1)
	client := &http.Client{Transport: &http.Transport{}}
	go func() {
		defer client.CloseIdleConnections()
		resp, err := client.Get(pc.url(path))
		if err != nil {
			out <- result{err: err}
			return
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		out <- result{resp.StatusCode, string(body), err}
	}()
	return out
}

func waitArrived(t *testing.T, arrived <-chan struct{}) {
	t.Helper()
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("the request did not reach the backend within 10s")
	}
}

func TestRunSIGTERMDrainsRequestInFlight(t *testing.T) {
	be, arrived, release := slowBackend(t)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	pc := startPortico(t, proxyConfig("10s", be))
	addr := pc.p.httpAddrs()[0].String()
	res := pc.getAsync("/slow")
	waitArrived(t, arrived)

	mark := pc.signal(syscall.SIGTERM)
	pc.stderr.waitFor(t, mark, "shutting down")
	// New connections are refused once the listener closes; no event
	// marks that moment, so poll.
	for deadline := time.Now().Add(5 * time.Second); ; {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatalf("the listener still accepts connections 5s after SIGTERM")
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case <-pc.done:
		t.Fatalf("run returned %d while a request was in flight; want it to wait", pc.code)
	default:
	}

	close(release)
	select {
	case r := <-res:
		if r.err != nil || r.status != 200 || r.body != "slow done" {
			t.Errorf("request in flight: got %d %q, %v; want 200 %q", r.status, r.body, r.err, "slow done")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the request in flight did not complete within 10s")
	}
	if code := pc.wait(10 * time.Second); code != 0 {
		t.Errorf("got exit code %d; want 0", code)
	}
	if log := pc.stderr.String(); strings.Contains(log, "drain cut short") {
		t.Errorf("got log\n%s\nwant no cut drain", log)
	}
}

func TestRunSIGTERMCutsRequestPastDrainTimeout(t *testing.T) {
	be, arrived, release := slowBackend(t)
	t.Cleanup(func() { close(release) }) // runs before the backend closes
	pc := startPortico(t, proxyConfig("200ms", be))
	res := pc.getAsync("/slow")
	waitArrived(t, arrived)

	start := time.Now()
	pc.signal(syscall.SIGTERM)
	if code := pc.wait(10 * time.Second); code != 0 {
		t.Errorf("got exit code %d; want 0", code)
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("run returned %s after SIGTERM; want it to drain for 200ms first", d)
	}
	select {
	case r := <-res:
		if r.err == nil {
			t.Errorf("request in flight: got %d %q; want the connection cut", r.status, r.body)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the request in flight was not cut within 5s of the drain's end")
	}
	if got, want := pc.stderr.String(), "drain cut short"; !strings.Contains(got, want) {
		t.Errorf("got log\n%s\nwant a line with %q", got, want)
	}
}

func TestRunSecondSIGTERMCutsDrain(t *testing.T) {
	be, arrived, release := slowBackend(t)
	t.Cleanup(func() { close(release) }) // runs before the backend closes
	pc := startPortico(t, proxyConfig("1m", be))
	res := pc.getAsync("/slow")
	waitArrived(t, arrived)

	pc.stderr.waitFor(t, pc.signal(syscall.SIGTERM), "shutting down")
	pc.signal(syscall.SIGTERM)
	if code := pc.wait(10 * time.Second); code != 0 {
		t.Errorf("got exit code %d; want 0", code)
	}
	select {
	case r := <-res:
		if r.err == nil {
			t.Errorf("request in flight: got %d %q; want the connection cut", r.status, r.body)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the request in flight was not cut within 5s of the second SIGTERM")
	}
	if got, want := pc.stderr.String(), "second stop signal"; !strings.Contains(got, want) {
		t.Errorf("got log\n%s\nwant a line with %q", got, want)
	}
}

func TestRunSIGHUPReloads(t *testing.T) {
	a, b := textBackend(t, "A"), textBackend(t, "B")
	config := func(listener, pool string) string {
		return fmt.Sprintf(`
[admin]
address = "127.0.0.1:0"

[demo]
http = []
tcp_echo = ""

[pools.a]
  [[pools.a.backends]]
  address = %q
[pools.b]
  [[pools.b.backends]]
  address = %q

[[http.listeners]]
name = %q
address = "127.0.0.1:0"

[[http.routes]]
name = "default"
pool = %q
`, a, b, listener, pool)
	}
	pc := startPortico(t, config("main", "a"))
	if _, _, body := pc.get(pc.url("/")); body != "A" {
		t.Fatalf("before reload: got body %q; want %q", body, "A")
	}

	pc.writeConfig(config("main", "b"))
	log := pc.stderr.waitFor(t, pc.signal(syscall.SIGHUP), "config reloaded")
	if _, _, body := pc.get(pc.url("/")); body != "B" {
		t.Errorf("after reload: got body %q; want %q", body, "B")
	}
	// Regression: a [demo] section compared by its printed pointers looked
	// changed on every reload.
	if strings.Contains(log, "take effect at restart") {
		t.Errorf("got log\n%s\nwant no restart warning: only a route changed", log)
	}

	pc.writeConfig(strings.Replace(config("main", "b"), `pool = "b"`, `pool = "nope"`, 1))
	log = pc.stderr.waitFor(t, pc.signal(syscall.SIGHUP), "config reload failed")
	if want := `http.routes[0].pool: pool \"nope\" is not defined`; !strings.Contains(log, want) {
		t.Errorf("got log\n%s\nwant the problem %s", log, want)
	}
	if _, _, body := pc.get(pc.url("/")); body != "B" {
		t.Errorf("after a failed reload: got body %q; want %q (the running config)", body, "B")
	}

	pc.writeConfig("[http\n")
	pc.stderr.waitFor(t, pc.signal(syscall.SIGHUP), "config reload failed")
	if _, _, body := pc.get(pc.url("/")); body != "B" {
		t.Errorf("after a reload of a broken file: got body %q; want %q", body, "B")
	}

	pc.writeConfig(config("renamed", "a"))
	log = pc.stderr.waitFor(t, pc.signal(syscall.SIGHUP), "config reloaded")
	if want := `take effect at restart" sections=[http.listeners]`; !strings.Contains(log, want) {
		t.Errorf("got log\n%s\nwant %q", log, want)
	}
	if _, _, body := pc.get(pc.url("/")); body != "A" {
		t.Errorf("after the last reload: got body %q; want %q", body, "A")
	}

	pc.signal(syscall.SIGTERM)
	if code := pc.wait(10 * time.Second); code != 0 {
		t.Errorf("got exit code %d; want 0", code)
	}
}

// TestBinaryShippedConfig does what a user does: build portico, run it
// with the shipped config.toml (ports moved to free ones), try it, and stop
// it with SIGTERM.
func TestBinaryShippedConfig(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "portico")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, goTool, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	src := shippedConfig(t)
	addrs := map[string]string{}
	for _, a := range []string{"127.0.0.1:8080", "127.0.0.1:9901", "127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003", "127.0.0.1:9101"} {
		if !strings.Contains(src, `"`+a+`"`) {
			t.Fatalf("config.toml does not use %s any more; update this test", a)
		}
		addrs[a] = freeAddr(t)
		src = strings.ReplaceAll(src, `"`+a+`"`, `"`+addrs[a]+`"`)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(bin)
	cmd.Dir = dir
	stderr := newSyncBuffer()
	cmd.Stdout, cmd.Stderr = io.Discard, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{}) // closed when the process has exited
	var exitErr error
	go func() { exitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			cmd.Process.Kill()
			<-exited
		}
	})
	stderr.waitFor(t, 0, "portico started")
	// It runs itself again with sysmon kept out of its deep sleep (sysmon.go).
	if env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", cmd.Process.Pid)); err == nil {
		if !strings.Contains("\x00"+string(env), "\x00GODEBUG=") || !strings.Contains(string(env), sysmonSetting) {
			t.Errorf("the running portico's environment has no GODEBUG with %s", sysmonSetting)
		}
	}

	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	resp, err := client.Get("http://" + addrs["127.0.0.1:8080"] + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var d demoResponse
	if err := json.Unmarshal(body, &d); err != nil || resp.StatusCode != 200 || d.Name != "demo-1" {
		t.Errorf("GET /: got %d %q; want 200 and demo-1's JSON", resp.StatusCode, body)
	}
	if got := resp.Header.Get("X-Served-By"); got != "demo-1" {
		t.Errorf("GET /: got X-Served-By %q; want %q", got, "demo-1")
	}
	resp, err = client.Get("http://" + addrs["127.0.0.1:9901"] + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := `portico_http_requests_total{route="default",code="2xx"} 1`; !strings.Contains(string(body), want) {
		t.Errorf("GET /metrics: no %q in\n%s", want, body)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
		if exitErr != nil {
			t.Errorf("got %v; want exit status 0; log:\n%s", exitErr, stderr)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("portico did not exit within 15s of SIGTERM; log:\n%s", stderr)
	}
	if got := stderr.String(); !strings.Contains(got, "msg=stopped") {
		t.Errorf("got log\n%s\nwant a line with msg=stopped", got)
	}
}

// TestRunAdminFlows: GET /flows lists the live L4 flows with their listener,
// and rejects a bad limit.
func TestRunAdminFlows(t *testing.T) {
	echo := freeAddr(t)
	pc := startPortico(t, fmt.Sprintf(`
[admin]
address = "127.0.0.1:0"

[demo]
http = []
tcp_echo = %q

[pools.echo]
  [[pools.echo.backends]]
  address = %[1]q

[[http.listeners]]
address = "127.0.0.1:0"

[[tcp.listeners]]
name = "echo"
address = "127.0.0.1:0"
pool = "echo"
`, echo))
	c, err := net.DialTimeout("tcp", pc.p.tcp.Addrs()[0].String(), 5*time.Second)
	if err != nil {
		t.Fatalf("dial tcp listener: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "ping\n")
	if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || line != "ping\n" {
		t.Fatalf("echo through the tcp listener: got %q, %v; want %q", line, err, "ping\n")
	}
	status, _, body := pc.get(pc.adminURL("/flows?limit=10"))
	if status != 200 {
		t.Fatalf("GET /flows: got status %d; want 200; body %q", status, body)
	}
	var snap struct {
		Active    int `json:"active"`
		Listeners []struct {
			Name   string `json:"name"`
			Active int    `json:"active"`
		} `json:"listeners"`
	}
	if err := json.Unmarshal([]byte(body), &snap); err != nil {
		t.Fatalf("GET /flows: %v in %q", err, body)
	}
	if snap.Active != 1 || len(snap.Listeners) != 1 || snap.Listeners[0].Name != "echo" || snap.Listeners[0].Active != 1 {
		t.Errorf("GET /flows: got %+v; want 1 active flow on listener echo", snap)
	}
	if status, _, _ := pc.get(pc.adminURL("/flows?limit=x")); status != 400 {
		t.Errorf("GET /flows?limit=x: got status %d; want 400", status)
	}
}
