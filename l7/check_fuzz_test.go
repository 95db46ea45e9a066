package l7

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// framingBackend is a raw TCP backend that reads what the proxy sends with a
// strict HTTP/1.1 parser and records every framing fault. It answers each
// complete request with 200, a marker header and Connection: close, so that
// each upstream connection carries one request.
type framingBackend struct {
	ln net.Listener

	mu     sync.Mutex
	active int           // connections accepted and not yet done
	idle   chan struct{} // closed when active drops to 0
	reqs   []wireRequest // complete requests in arrival order, barrier excluded
	faults []string
}

const (
	framingMarker  = "X-Framing-Backend: ok"
	framingBarrier = "/__framing_barrier__"
)

func startFramingBackend(t testing.TB) *framingBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fb := &framingBackend{ln: ln, idle: make(chan struct{})}
	close(fb.idle)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fb.mu.Lock()
			if fb.active == 0 {
				fb.idle = make(chan struct{})
			}
			fb.active++
			fb.mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				fb.serve(c)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return fb
}

func (fb *framingBackend) serve(c net.Conn) {
	defer func() {
		c.Close()
		fb.mu.Lock()
		fb.active--
		if fb.active == 0 {
			close(fb.idle)
		}
		fb.mu.Unlock()
	}()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	var got strings.Builder
	br := bufio.NewReader(io.TeeReader(c, &got))
	req, err := readWireRequest(br, false)
	switch {
	case err == io.EOF:
		return // nothing sent: the proxy gave up before the first byte
	case errors.Is(err, io.ErrUnexpectedEOF):
		return // the proxy aborted a request whose body broke: allowed
	case err != nil:
		fb.fault(fmt.Sprintf("%v in %q", err, got.String()))
		return
	}
	if req.target != framingBarrier {
		fb.mu.Lock()
		fb.reqs = append(fb.reqs, req)
		fb.mu.Unlock()
	}
	_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\n"+framingMarker+"\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
	// The proxy must close now; anything more is a second request the proxy
	// framed into the first one's connection.
	if n, _ := br.Read(make([]byte, 1)); n > 0 {
		fb.fault(fmt.Sprintf("bytes after a complete request in %q", got.String()))
	}
}

func (fb *framingBackend) fault(s string) {
	fb.mu.Lock()
	fb.faults = append(fb.faults, s)
	fb.mu.Unlock()
}

// settle waits until every connection accepted so far is done, and returns
// the complete requests and the faults seen so far.
func (fb *framingBackend) settle(t testing.TB) ([]wireRequest, []string) {
	t.Helper()
	fb.mu.Lock()
	idle := fb.idle
	fb.mu.Unlock()
	select {
	case <-idle:
	case <-time.After(10 * time.Second):
		t.Fatal("backend connections did not finish")
	}
	fb.mu.Lock()
	defer fb.mu.Unlock()
	return fb.reqs[:len(fb.reqs):len(fb.reqs)], append([]string(nil), fb.faults...)
}

// wireRequest is a request as read off the wire, its body de-chunked.
type wireRequest struct {
	method, target string
	body           []byte
	chunked        bool
}

// readWireRequest reads one request as RFC 9112 frames it. Strict is for
// what portico sends upstream: CRLF everywhere, "chunked" in lower case, no
// chunk extensions. Lenient (lenient true) is for what a client may send and
// a careful server may accept: empty lines before the request line, a bare
// LF ending the request line, OWS and any case in the framing values, chunk
// extensions. Both refuse what no careful server accepts: both
// Content-Length and Transfer-Encoding, a repeated framing field, a coding
// other than chunked, obs-fold, bare CR or LF in fields, control bytes.
// It returns io.EOF if br is empty and io.ErrUnexpectedEOF if the request
// is cut short.
func readWireRequest(br *bufio.Reader, lenient bool) (wireRequest, error) {
	var req wireRequest
	line, err := wireLine(br, lenient)
	for lenient && err == nil && line == "" {
		line, err = wireLine(br, lenient)
	}
	if err != nil {
		return req, err
	}
	var rest, proto string
	var ok1, ok2 bool
	req.method, rest, ok1 = strings.Cut(line, " ")
	req.target, proto, ok2 = strings.Cut(rest, " ")
	if !ok1 || !ok2 || !validHeaderName(req.method) || req.target == "" || strings.ContainsAny(req.target, " \t") ||
		(proto != "HTTP/1.1" && proto != "HTTP/1.0") {
		return req, fmt.Errorf("bad request line %q", line)
	}
	var cl, te, host int
	var length int64
	for {
		line, err := wireLine(br, false)
		if err != nil {
			return req, unexpected(err)
		}
		if line == "" {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			return req, fmt.Errorf("obs-fold line %q", line)
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok || !validHeaderName(name) {
			return req, fmt.Errorf("bad field line %q", line)
		}
		if lenient {
			value = strings.Trim(value, " \t")
		} else {
			value = strings.TrimPrefix(value, " ")
		}
		switch strings.ToLower(name) {
		case "content-length":
			cl++
			if length, err = strconv.ParseInt(value, 10, 64); err != nil || length < 0 || strings.ContainsAny(value, "+-") {
				return req, fmt.Errorf("bad Content-Length %q", value)
			}
		case "transfer-encoding":
			te++
			if value != "chunked" && !(lenient && strings.EqualFold(value, "chunked")) {
				return req, fmt.Errorf("bad Transfer-Encoding %q", value)
			}
		case "host":
			host++
		}
	}
	switch {
	case cl > 0 && te > 0:
		return req, errors.New("both Content-Length and Transfer-Encoding")
	case cl > 1 || te > 1:
		return req, errors.New("repeated framing field")
	case host != 1 && !lenient:
		return req, fmt.Errorf("%d Host fields", host)
	case te == 1 && proto != "HTTP/1.1":
		return req, errors.New("chunked HTTP/1.0 request")
	}
	var body bytes.Buffer
	if te == 0 {
		if _, err := io.CopyN(&body, br, length); err != nil {
			return req, unexpected(err)
		}
		req.body = body.Bytes()
		return req, nil
	}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return req, io.ErrUnexpectedEOF
		}
		if !strings.HasSuffix(line, "\r\n") {
			return req, fmt.Errorf("bare LF in chunk size line %q", line)
		}
		line = line[:len(line)-2]
		size := line
		if lenient {
			if i := strings.IndexAny(line, " \t;"); i >= 0 {
				size = line[:i]
				ext := strings.TrimLeft(line[i:], " \t")
				if ext != "" && ext[0] != ';' || strings.ContainsAny(ext, "\r\n") {
					return req, fmt.Errorf("bad chunk extension in %q", line)
				}
			}
		}
		n, err := strconv.ParseUint(size, 16, 63)
		if err != nil || size == "" || strings.ContainsAny(size, "+-xX_") {
			return req, fmt.Errorf("bad chunk size line %q", line)
		}
		if n == 0 {
			break
		}
		if _, err := io.CopyN(&body, br, int64(n)); err != nil {
			return req, unexpected(err)
		}
		if crlf, err := wireLine(br, false); err != nil || crlf != "" {
			return req, fmt.Errorf("no CRLF after chunk data: %q %v", crlf, unexpected(err))
		}
	}
	req.chunked = true
	if lenient {
		// portico reads nothing after a chunked request (fasthttp is lax
		// in trailer sections, see finish), so the section cannot move a
		// boundary and is not judged.
		req.body = body.Bytes()
		return req, nil
	}
	for { // trailer section
		line, err := wireLine(br, false)
		if err != nil {
			return req, unexpected(err)
		}
		if line == "" {
			req.body = body.Bytes()
			return req, nil
		}
		if name, _, ok := strings.Cut(line, ":"); !ok || !validHeaderName(name) {
			return req, fmt.Errorf("bad trailer line %q", line)
		}
	}
}

// wireLine reads a line ended by CRLF (or by a bare LF if bareLF), with no
// other CR or LF and no control byte but HTAB in it.
func wireLine(br *bufio.Reader, bareLF bool) (string, error) {
	line, err := br.ReadString('\n')
	if err != nil {
		if line == "" && err == io.EOF {
			return "", io.EOF
		}
		return "", io.ErrUnexpectedEOF
	}
	switch {
	case strings.HasSuffix(line, "\r\n"):
		line = line[:len(line)-2]
	case bareLF:
		line = line[:len(line)-1]
	default:
		return "", fmt.Errorf("bare LF in %q", line)
	}
	for i := 0; i < len(line); i++ {
		if c := line[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return "", fmt.Errorf("control byte %#x in %q", c, line)
		}
	}
	return line, nil
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// FuzzCheckRequest sends arbitrary bytes to the proxy as one client
// connection. A strict parser at the backend checks that every request
// forwarded is framed without doubt (one Host, never both Content-Length
// and Transfer-Encoding, only chunked, bodies exactly as framed, nothing
// after them). A second, lenient parser reads the client's bytes as a
// careful server would: the requests the backend received complete must be
// the first requests it reads, with the same methods and bodies, so portico
// never frames the stream differently. Last, the client must get one
// backend answer per request the backend read.
func FuzzCheckRequest(f *testing.F) {
	const chunkedHead = "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
	const next = "GET /next HTTP/1.1\r\nHost: x\r\n\r\n"
	for _, seed := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
		"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;e=1\r\nhello\r\n0\r\nX-T: 1\r\n\r\n",
		"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /s HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n\r\nGET /s HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
		"GET /a HTTP/1.1\r\nHost: x\r\n\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\rA5\r\nhello\r\n0\r\n\r\n",
		"GET http://u@evil/x HTTP/1.1\r\nHost: good\r\n\r\n",
		"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 3\r\n\r\nabc",
		"POST /a HTTP/1.0\r\nHost: x\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nhiGET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /a HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi",
		"HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nX: a\x7f\r\n\r\n",
		"\r\nPOST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\nGET /b HTTP/1.1\nHost: x\r\n\r\n",
		// Trailer sections: fasthttp parses them while the body streams.
		chunkedHead + "0\r\nX: 1\n\r\n" + next,
		chunkedHead + "0\r\nX: 1\r\n\n" + next,
		chunkedHead + "0\r\n\n" + next,
		chunkedHead + "0\r\nX: a\r\n b\r\n\r\n" + next,
		chunkedHead + "0\r\nX\x00: 1\r\n\r\n" + next,
		chunkedHead + "0\r\n X: 1\r\n\r\n" + next,
		chunkedHead + "0\r\nX: a\rb\r\n\r\n" + next,
		chunkedHead + "0\r\nX: 1\r\n",
	} {
		f.Add([]byte(seed))
	}
	fb := startFramingBackend(f)
	s := startOneBackendProxy(f, oneBackend{Addr: fb.ln.Addr().String(), Listener: `header_timeout = "2s"
body_timeout = "2s"`})
	barrier := func(t *testing.T) {
		rc := dialCheck(t, s.addr())
		if resp, _ := rc.exchange("GET " + framingBarrier + " HTTP/1.1\r\nHost: x\r\n\r\n"); resp.StatusCode != 200 {
			t.Fatalf("barrier: got %d; want 200", resp.StatusCode)
		}
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if len(raw) > 1<<16 {
			return
		}
		before, faultsBefore := fb.settle(t)
		c, err := net.Dial("tcp", s.addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write(raw); err != nil {
			t.Fatalf("write: %v", err)
		}
		_ = c.(*net.TCPConn).CloseWrite()
		out, err := io.ReadAll(c)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("proxy still had the connection open 10s after the client's EOF; got %q", out)
		}
		// Every upstream connection of this input was dialled before the
		// proxy closed ours; the barrier's is accepted after all of them.
		barrier(t)
		after, faults := fb.settle(t)
		if faults = faults[len(faultsBefore):]; len(faults) > 0 {
			t.Fatalf("backend got a badly framed request for input %q:\n%s", raw, strings.Join(faults, "\n"))
		}
		got := after[len(before):]
		var want []wireRequest
		for br := bufio.NewReader(bytes.NewReader(raw)); ; {
			req, err := readWireRequest(br, true)
			if err != nil {
				break
			}
			if want = append(want, req); req.chunked {
				break // the proxy closes after a chunked request
			}
		}
		if len(got) > len(want) {
			t.Fatalf("backend read %d requests; a careful parser reads %d in %q", len(got), len(want), raw)
		}
		for i := range got {
			if got[i].method != want[i].method || !bytes.Equal(got[i].body, want[i].body) {
				t.Fatalf("request %d: backend read %s %q; a careful parser reads %s %q in %q",
					i, got[i].method, got[i].body, want[i].method, want[i].body, raw)
			}
		}
		if n := strings.Count(string(out), framingMarker); n != len(got) {
			t.Fatalf("client got %d backend answers; backend read %d requests; input %q, output %q", n, len(got), raw, out)
		}
	})
}

// FuzzScanHeaderBlock compares scanHeaderBlock with a plain line-splitting
// reading of the same rules, and checks it never panics.
func FuzzScanHeaderBlock(f *testing.F) {
	for _, seed := range []string{
		"\r\n", "Host: x\r\n\r\n", "Host: x\r\nContent-Length: 5\r\n\r\n", "Transfer-Encoding: chunked\r\n\r\n",
		"X: a\r\n b\r\n\r\n", "X: a\nY: b\r\n\r\n", "X : a\r\n\r\n", "X: \x7f\r\n\r\n", "Content_Length: 1\r\n\r\n",
		"Host: [::1]:80\r\nUpgrade: h2c\r\n\r\n", "X: " + strings.Repeat("abcdefg\t", 4) + "\x80\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var f headerFacts
		status, reason := scanHeaderBlock(raw, &f)
		want, wantOK := referenceScan(string(raw))
		if ok := status == 0; ok != wantOK || (ok && f != want) {
			t.Fatalf("scanHeaderBlock(%q) = %d %q %+v; the reference says ok=%v %+v", raw, status, reason, f, wantOK, want)
		}
	})
}

// referenceScan reads a header block the slow, obvious way.
func referenceScan(raw string) (f headerFacts, ok bool) {
	block, found := strings.CutSuffix(raw, "\r\n")
	if !found {
		return f, false
	}
	if block == "" {
		return f, true
	}
	block, found = strings.CutSuffix(block, "\r\n")
	if !found {
		return f, false
	}
	for _, line := range strings.Split(block, "\r\n") {
		name, value, found := strings.Cut(line, ":")
		if !found || !validHeaderName(name) {
			return f, false
		}
		for i := 0; i < len(value); i++ {
			if c := value[i]; (c < 0x20 && c != '\t') || c == 0x7f {
				return f, false
			}
		}
		value = strings.Trim(value, " \t")
		switch lower := strings.ToLower(name); lower {
		case "host":
			f.host++
			if !validHostField([]byte(value)) {
				return f, false
			}
		case "upgrade":
			f.upgrade = true
		case "content-length":
			f.contentLength++
			if value == "" || len(value) > 18 || strings.Trim(value, "0123456789") != "" {
				return f, false
			}
			f.body = f.body || strings.Trim(value, "0") != ""
		case "transfer-encoding":
			f.transferEncoding++
			f.body = true
			if !strings.EqualFold(value, "chunked") {
				return f, false
			}
		default:
			if strings.ReplaceAll(lower, "_", "-") == "content-length" || strings.ReplaceAll(lower, "_", "-") == "transfer-encoding" {
				return f, false
			}
		}
	}
	return f, true
}
