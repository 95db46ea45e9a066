package l7

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// accessLogProxy starts a proxy that logs to a file in format: route "app"
// (path prefix /app) to backend "be1", which answers "hello", or streams
// "chunked" without a length on /app/chunked. It returns the proxy and the
// log's path.
func accessLogProxy(t *testing.T, format string) (*Server, string) {
	t.Helper()
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/app/chunked" {
			io.WriteString(w, "chunked")
			w.(http.Flusher).Flush()
			return
		}
		w.Header().Set("Content-Length", "5")
		io.WriteString(w, "hello")
	}))
	path := filepath.Join(t.TempDir(), "access.log")
	s := startOneBackendProxy(t, oneBackend{
		Addr:    be,
		HTTP:    fmt.Sprintf("[http.access_log]\nenabled = true\nformat = %q\npath = %q", format, path),
		Route:   "name = \"app\"\nmatch.path_prefix = \"/app\"",
		Backend: `name = "be1"`,
	})
	return s, path
}

// rawExchange sends raw request bytes on a new connection and returns the
// responses read, one per request, as status and X-Request-Id.
type rawResponse struct {
	status    int
	requestID string
	body      string
}

func rawExchange(t *testing.T, addr string, reqs ...string) []rawResponse {
	t.Helper()
	c := dialWithDeadline(t, addr, 10*time.Second)
	defer c.Close()
	br := bufio.NewReader(c)
	var out []rawResponse
	for _, req := range reqs {
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		method, _, _ := strings.Cut(req, " ")
		r, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			t.Fatalf("request %q: reading response: %v", req, err)
		}
		body, err := io.ReadAll(r.Body)
		r.Body.Close()
		if err != nil {
			t.Fatalf("request %q: reading body: %v", req, err)
		}
		out = append(out, rawResponse{r.StatusCode, r.Header.Get("X-Request-Id"), string(body)})
	}
	return out
}

// shutdownAndRead stops the proxy, which must flush the log, and returns
// the log's lines.
func shutdownAndRead(t *testing.T, s *Server, path string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) == 0 || b[len(b)-1] != '\n' {
		t.Fatalf("got log %q; want whole lines", b)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// nastyURI holds quotes, a backslash, a byte that is not UTF-8 and an
// escaped newline. fasthttp refuses raw control bytes and DEL in a request
// line (TestAccessLogControlBytes).
const nastyURI = "/app/\"q\"\\x\xff%0A?k=\"v\""

func TestAccessLogJSON(t *testing.T) {
	s, path := accessLogProxy(t, "json")
	got := rawExchange(t, s.addr(),
		"GET /app/a?x=1 HTTP/1.1\r\nHost: example.com\r\n\r\n",
		"GET /nope HTTP/1.1\r\nHost: example.com\r\nX-Request-Id: client-id\r\n\r\n",
		"HEAD /app/h HTTP/1.1\r\nHost: example.com\r\n\r\n",
		"GET /app/chunked HTTP/1.1\r\nHost: example.com\r\n\r\n",
		"GET "+nastyURI+" HTTP/1.1\r\nHost: example.com\r\nX-Request-Id: id\"with\\quote\r\n\r\n",
	)
	got = append(got, rawExchange(t, s.addr(), "GET /app/old HTTP/1.0\r\nHost: example.com\r\n\r\n")...)
	lines := shutdownAndRead(t, s, path)
	if len(lines) != len(got) {
		t.Fatalf("got %d lines; want %d, one per request:\n%s", len(lines), len(got), strings.Join(lines, "\n"))
	}
	type entry struct {
		Time       string   `json:"time"`
		Client     string   `json:"client"`
		Method     string   `json:"method"`
		URI        string   `json:"uri"`
		Protocol   string   `json:"protocol"`
		Host       string   `json:"host"`
		Status     int      `json:"status"`
		Bytes      *int     `json:"bytes"`
		DurationMS *float64 `json:"duration_ms"`
		Route      string   `json:"route"`
		Backend    string   `json:"backend"`
		RequestID  string   `json:"request_id"`
	}
	intp := func(n int) *int { return &n }
	want := []entry{
		{Method: "GET", URI: "/app/a?x=1", Protocol: "HTTP/1.1", Host: "example.com", Status: 200, Bytes: intp(5), Route: "app", Backend: "be1", RequestID: got[0].requestID},
		{Method: "GET", URI: "/nope", Protocol: "HTTP/1.1", Host: "example.com", Status: 404, Bytes: intp(len(got[1].body)), Route: "none"},
		{Method: "HEAD", URI: "/app/h", Protocol: "HTTP/1.1", Host: "example.com", Status: 200, Bytes: intp(0), Route: "app", Backend: "be1", RequestID: got[2].requestID},
		{Method: "GET", URI: "/app/chunked", Protocol: "HTTP/1.1", Host: "example.com", Status: 200, Bytes: nil, Route: "app", Backend: "be1", RequestID: got[3].requestID},
		{Method: "GET", URI: strings.ToValidUTF8(nastyURI, "\uFFFD"), Protocol: "HTTP/1.1", Host: "example.com", Status: 200, Bytes: intp(5), Route: "app", Backend: "be1", RequestID: `id"with\quote`},
		{Method: "GET", URI: "/app/old", Protocol: "HTTP/1.0", Host: "example.com", Status: 200, Bytes: intp(5), Route: "app", Backend: "be1", RequestID: got[5].requestID},
	}
	for i, line := range lines {
		if !utf8.ValidString(line) {
			t.Errorf("line %d is not UTF-8: %q", i, line)
		}
		var e entry
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Errorf("line %d: %v in %q", i, err, line)
			continue
		}
		if _, err := time.Parse(time.RFC3339Nano, e.Time); err != nil {
			t.Errorf("line %d: got time %q; want RFC 3339: %v", i, e.Time, err)
		}
		if e.DurationMS == nil || *e.DurationMS < 0 {
			t.Errorf("line %d: got duration_ms %v; want a number >= 0", i, e.DurationMS)
		}
		if e.Client != "127.0.0.1" {
			t.Errorf("line %d: got client %q; want %q", i, e.Client, "127.0.0.1")
		}
		w := want[i]
		w.Time, w.Client, w.DurationMS = e.Time, e.Client, e.DurationMS
		if (w.Bytes == nil) != (e.Bytes == nil) || w.Bytes != nil && *w.Bytes != *e.Bytes {
			t.Errorf("line %d: got bytes %s; want %s", i, fmtIntp(e.Bytes), fmtIntp(w.Bytes))
		}
		w.Bytes = e.Bytes
		if e != w {
			t.Errorf("line %d:\ngot  %+v\nwant %+v\nline %s", i, e, w, line)
		}
	}
	if got[0].requestID == "" || got[0].requestID == got[2].requestID {
		t.Errorf("got request ids %q and %q; want distinct ids from the proxy", got[0].requestID, got[2].requestID)
	}
}

func fmtIntp(p *int) string {
	if p == nil {
		return "null"
	}
	return strconv.Itoa(*p)
}

func TestAccessLogCommon(t *testing.T) {
	s, path := accessLogProxy(t, "common")
	got := rawExchange(t, s.addr(),
		"GET /app/a?x=1 HTTP/1.1\r\nHost: example.com\r\n\r\n",
		"POST /nope HTTP/1.1\r\nHost: example.com\r\nContent-Length: 2\r\n\r\nhi",
		"GET /app/chunked HTTP/1.1\r\nHost: example.com\r\n\r\n",
		"GET "+nastyURI+" HTTP/1.1\r\nHost: example.com\r\n\r\n",
	)
	lines := shutdownAndRead(t, s, path)
	if len(lines) != len(got) {
		t.Fatalf("got %d lines; want %d, one per request:\n%s", len(lines), len(got), strings.Join(lines, "\n"))
	}
	clf := regexp.MustCompile(`^127\.0\.0\.1 - - \[(\d\d/[A-Z][a-z][a-z]/\d{4}:\d\d:\d\d:\d\d [+-]\d{4})\] "([^"]*)" (\d{3}) (\d+|-)$`)
	want := []struct{ request, status, bytes string }{
		{"GET /app/a?x=1 HTTP/1.1", "200", "5"},
		{"POST /nope HTTP/1.1", "404", strconv.Itoa(len(got[1].body))},
		{"GET /app/chunked HTTP/1.1", "200", "-"},
		{`GET /app/\x22q\x22\x5cx\xff%0A?k=\x22v\x22 HTTP/1.1`, "200", "5"},
	}
	for i, line := range lines {
		m := clf.FindStringSubmatch(line)
		if m == nil {
			t.Errorf("line %d: got %q; want Common Log Format", i, line)
			continue
		}
		if _, err := time.Parse("02/Jan/2006:15:04:05 -0700", m[1]); err != nil {
			t.Errorf("line %d: bad time %q: %v", i, m[1], err)
		}
		if m[2] != want[i].request || m[3] != want[i].status || m[4] != want[i].bytes {
			t.Errorf("line %d: got %q %s %s; want %q %s %s", i, m[2], m[3], m[4], want[i].request, want[i].status, want[i].bytes)
		}
	}
}

// TestAccessLogControlBytes sends control bytes and DEL in the request line
// and in header values. fasthttp refuses them all before the handler runs,
// except a tab in a header value, which HTTP allows and which reaches the
// JSON log through request_id. Whatever the log holds must be well formed,
// and a good request after them logs one line.
func TestAccessLogControlBytes(t *testing.T) {
	for _, format := range []string{"json", "common"} {
		t.Run(format, func(t *testing.T) {
			s, path := accessLogProxy(t, format)
			var reqs []string
			for c := 0; c <= 0x7f; c++ {
				if c >= 0x20 && c < 0x7f || c == '\r' || c == '\n' {
					continue
				}
				reqs = append(reqs,
					fmt.Sprintf("GET /app/%c HTTP/1.1\r\nHost: h\r\n\r\n", c),
					fmt.Sprintf("GET /app/x HTTP/1.1\r\nHost: h\r\nX-Request-Id: a%cb\r\n\r\n", c))
			}
			for _, r := range reqs {
				want := 400
				if strings.Contains(r, "a\tb") {
					want = 200
				}
				if resp := rawExchange(t, s.addr(), r)[0]; resp.status != want {
					t.Errorf("request %q: got status %d; want %d", r, resp.status, want)
				}
			}
			rawExchange(t, s.addr(), "GET /app/last HTTP/1.1\r\nHost: h\r\n\r\n")
			lines := shutdownAndRead(t, s, path)
			tabs := 0
			for i, line := range lines {
				for _, c := range []byte(line) {
					if c < 0x20 || c == 0x7f {
						t.Errorf("line %d holds control byte %#x: %q", i, c, line)
					}
				}
				if format == "json" {
					var m map[string]any
					if err := json.Unmarshal([]byte(line), &m); err != nil {
						t.Errorf("line %d: %v in %q", i, err, line)
					}
					if m["request_id"] == "a\tb" {
						tabs++
					}
				} else if strings.Count(line, `"`) != 2 {
					t.Errorf("line %d: got %d quotes; want the two around the request: %q", i, strings.Count(line, `"`), line)
				}
			}
			if format == "json" && tabs != 1 {
				t.Errorf("got log\n%s\nwant one line with request_id %q", strings.Join(lines, "\n"), "a\tb")
			}
			if last := lines[len(lines)-1]; !strings.Contains(last, "/app/last") {
				t.Errorf("got last line %q; want the good request's", last)
			}
		})
	}
}

// TestAccessLogEscaping checks the two escapers on every byte value: a
// JSON string always parses back to the input (invalid UTF-8 as U+FFFD),
// and a Common Log Format field is printable ASCII without quotes that
// decodes back to the input.
func TestAccessLogEscaping(t *testing.T) {
	var all []byte
	for c := 0; c < 256; c++ {
		all = append(all, byte(c))
	}
	inputs := [][]byte{all, []byte("plain /path?q=1"), []byte("héllo ☃ \"q\" \\ \x00"), []byte("\xe2\x98"), nil}
	for _, in := range inputs {
		js := appendJSONString(nil, in)
		var out string
		if err := json.Unmarshal(js, &out); err != nil {
			t.Errorf("appendJSONString(%q) = %s: %v", in, js, err)
		} else if want := strings.ToValidUTF8(string(in), "\uFFFD"); out != want && !validSameRunes(out, string(in)) {
			t.Errorf("appendJSONString(%q) decodes to %q; want %q", in, out, want)
		}
		if !utf8.Valid(js) {
			t.Errorf("appendJSONString(%q) = %q is not UTF-8", in, js)
		}

		p := appendPrintable(nil, in)
		for _, c := range p {
			if c < 0x20 || c >= 0x7f || c == '"' {
				t.Errorf("appendPrintable(%q) = %q holds %#x", in, p, c)
				break
			}
		}
		if got := unescapeHex(t, string(p)); got != string(in) {
			t.Errorf("appendPrintable(%q) = %q decodes to %q", in, p, got)
		}
	}
}

// validSameRunes reports whether out is in with each invalid UTF-8 byte
// replaced by U+FFFD (strings.ToValidUTF8 replaces runs of them by one).
func validSameRunes(out, in string) bool {
	var b strings.Builder
	for i := 0; i < len(in); {
		r, n := utf8.DecodeRuneInString(in[i:])
		b.WriteRune(r) // RuneError for an invalid byte
		i += n
	}
	return out == b.String()
}

func unescapeHex(t *testing.T, s string) string {
	t.Helper()
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && s[i+1] == 'x' {
			n, err := strconv.ParseUint(s[i+2:i+4], 16, 8)
			if err != nil {
				t.Fatalf("bad escape in %q: %v", s, err)
			}
			b.WriteByte(byte(n))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// TestAccessLogFlushedAtShutdown checks that lines buffered less than the
// one-second flush period reach the file at Shutdown, and that a second
// Shutdown (the harness's cleanup) neither panics nor writes.
func TestAccessLogFlushedAtShutdown(t *testing.T) {
	s, path := accessLogProxy(t, "common")
	const n = 20
	reqs := make([]string, n)
	for i := range reqs {
		reqs[i] = fmt.Sprintf("GET /app/%d HTTP/1.1\r\nHost: h\r\n\r\n", i)
	}
	start := time.Now()
	rawExchange(t, s.addr(), reqs...)
	lines := shutdownAndRead(t, s, path)
	if time.Since(start) > 900*time.Millisecond {
		t.Logf("note: slow run; the periodic flush may have written the lines")
	}
	if len(lines) != n {
		t.Fatalf("got %d lines after Shutdown; want %d", len(lines), n)
	}
	for i, line := range lines {
		if want := fmt.Sprintf(`"GET /app/%d HTTP/1.1" 200 5`, i); !strings.HasSuffix(line, want) {
			t.Errorf("line %d: got %q; want it to end %q", i, line, want)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Errorf("second Shutdown: got %v; want nil", err)
	}
}
