package l7

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// scrapeMetrics returns the server's metrics as series -> value.
func scrapeMetrics(t *testing.T, s *Server) (map[string]float64, string) {
	t.Helper()
	var b bytes.Buffer
	s.metrics.set.WritePrometheus(&b)
	out := map[string]float64{}
	for _, line := range strings.Split(b.String(), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if i < 0 || err != nil {
			t.Fatalf("bad metrics line %q", line)
		}
		out[line[:i]] = v
	}
	return out, b.String()
}

// exchangeAndClose sends req on its own connection and reads until the
// proxy closes it; it returns the status and the number of bytes received.
func exchangeAndClose(t *testing.T, addr, req string) (status int, n int) {
	t.Helper()
	c := dialWithDeadline(t, addr, 10*time.Second)
	defer c.Close()
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("request %q: %v", req, err)
	}
	if _, err := fmt.Sscanf(string(resp), "HTTP/1.1 %d", &status); err != nil {
		t.Fatalf("request %q: got %q: %v", req, resp, err)
	}
	return status, len(resp)
}

func TestMetricsAfterRequests(t *testing.T) {
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello")
	}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close() // nothing listens: connections are refused
	s := startProxy(t, fmt.Sprintf(`
[http]
[[http.listeners]]
address = "127.0.0.1:0"
[[http.routes]]
name = "app"
pool = "web"
match.path_prefix = "/app"
[[http.routes]]
name = "down"
pool = "dead"
match.path_prefix = "/down"
[pools.web]
[[pools.web.backends]]
name = "be1"
address = %q
[pools.dead]
[[pools.dead.backends]]
name = "gone"
address = %q
`, be, dead))

	// Every series exists, at zero, before the first request.
	m, text := scrapeMetrics(t, s)
	for _, series := range []string{
		`portico_http_requests_total{route="app",code="2xx"}`,
		`portico_http_requests_total{route="none",code="4xx"}`,
		`portico_http_upstream_errors_total{pool="dead",backend="gone",kind="refused"}`,
		`portico_http_connections_active`,
		`portico_http_bytes_received_total`,
		`portico_http_bytes_sent_total`,
	} {
		if v, ok := m[series]; !ok || v != 0 {
			t.Errorf("before any request: got %s = %v (present %v); want 0\n%s", series, v, ok, text)
		}
	}

	var sent, received int
	for _, r := range []struct {
		path   string
		status int
	}{
		{"/app/secret-1", 200},
		{"/app/secret-2?token=secret-3", 200},
		{"/app/secret-4", 200},
		{"/nowhere/secret-5", 404},
		{"/down/secret-6", 502},
	} {
		req := "GET " + r.path + " HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
		status, n := exchangeAndClose(t, s.addr(), req)
		if status != r.status {
			t.Errorf("GET %s: got status %d; want %d", r.path, status, r.status)
		}
		sent += len(req)
		received += n
	}

	// The proxy closes each connection after its response; the gauge drops
	// when the server side closes, which no event marks: poll.
	deadline := time.Now().Add(5 * time.Second)
	for {
		m, text = scrapeMetrics(t, s)
		if m[`portico_http_connections_active`] == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("got portico_http_connections_active %v 5s after the last connection closed; want 0", m[`portico_http_connections_active`])
		}
		time.Sleep(5 * time.Millisecond)
	}

	want := map[string]float64{
		`portico_http_requests_total{route="app",code="2xx"}`:                           3,
		`portico_http_requests_total{route="app",code="4xx"}`:                           0,
		`portico_http_requests_total{route="app",code="5xx"}`:                           0,
		`portico_http_requests_total{route="none",code="4xx"}`:                          1,
		`portico_http_requests_total{route="none",code="2xx"}`:                          0,
		`portico_http_requests_total{route="down",code="5xx"}`:                          1,
		`portico_http_request_duration_seconds_count{route="app"}`:                      3,
		`portico_http_request_duration_seconds_bucket{route="app",le="+Inf"}`:           3,
		`portico_http_request_duration_seconds_count{route="none"}`:                     1,
		`portico_http_request_duration_seconds_count{route="down"}`:                     1,
		`portico_http_upstream_errors_total{pool="web",backend="be1",kind="refused"}`:   0,
		`portico_http_upstream_errors_total{pool="web",backend="be1",kind="timeout"}`:   0,
		`portico_http_upstream_errors_total{pool="dead",backend="gone",kind="timeout"}`: 0,
		`portico_http_upstream_errors_total{pool="dead",backend="gone",kind="reset"}`:   0,
		`portico_http_bytes_received_total`:                                             float64(sent),
		`portico_http_bytes_sent_total`:                                                 float64(received),
	}
	for series, v := range want {
		if got, ok := m[series]; !ok || got != v {
			t.Errorf("got %s = %v (present %v); want %v", series, got, ok, v)
		}
	}
	// One per attempt; how many attempts a refused connect gets is the
	// retry policy's business.
	if got := m[`portico_http_upstream_errors_total{pool="dead",backend="gone",kind="refused"}`]; got < 1 {
		t.Errorf("got %v refused connections to gone; want at least 1", got)
	}
	if got := m[`portico_http_request_duration_seconds_sum{route="app"}`]; got <= 0 || got > 10 {
		t.Errorf("got duration sum %v for route app; want a few milliseconds", got)
	}
	// Buckets are cumulative and end at the count.
	prev := 0.0
	bucket := regexp.MustCompile(`^portico_http_request_duration_seconds_bucket\{route="app",le="([^"]+)"\}$`)
	les := 0
	for _, line := range strings.Split(text, "\n") {
		i := strings.LastIndexByte(line, ' ')
		if i < 0 || !bucket.MatchString(line[:i]) {
			continue
		}
		les++
		v := m[line[:i]]
		if v < prev {
			t.Errorf("bucket %s = %v is below the one before it (%v)", line[:i], v, prev)
		}
		prev = v
	}
	if les < 2 || prev != 3 {
		t.Errorf("got %d buckets for route app ending at %v; want several, ending at 3", les, prev)
	}

	// No raw request data in any label: routes, pools and backends by name.
	labels := regexp.MustCompile(`\{[^}]*\}`)
	for _, l := range labels.FindAllString(text, -1) {
		if strings.Contains(l, "secret") || strings.Contains(l, "/") {
			t.Errorf("label set %s holds request data", l)
		}
	}
}

func TestMetricsConnectionsActive(t *testing.T) {
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	s := startOneBackendProxy(t, oneBackend{Addr: be})
	var conns []net.Conn
	for i := 0; i < 3; i++ {
		c := dialWithDeadline(t, s.addr(), 10*time.Second)
		defer c.Close()
		// A response proves that the server accepted the connection.
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		conns = append(conns, c)
	}
	if m, _ := scrapeMetrics(t, s); m[`portico_http_connections_active`] != 3 {
		t.Errorf("got portico_http_connections_active %v with 3 kept-alive connections; want 3", m[`portico_http_connections_active`])
	}
	for _, c := range conns {
		c.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		m, _ := scrapeMetrics(t, s)
		if m[`portico_http_connections_active`] == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("got portico_http_connections_active %v 5s after the clients closed; want 0", m[`portico_http_connections_active`])
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestQuoteLabel(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"api", `"api"`},
		{`we"ird`, `"we\"ird"`},
		{`back\slash`, `"back\\slash"`},
		{"new\nline", `"new\nline"`},
	} {
		if got := quoteLabel(tt.in); got != tt.want {
			t.Errorf("quoteLabel(%q): got %s; want %s", tt.in, got, tt.want)
		}
	}
}
