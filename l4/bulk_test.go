package l4

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"portico/lb"
)

// TestMain lets the test binary run as a bare proxy process (see
// startProxyProcess), so that memory tests measure the proxy alone.
func TestMain(m *testing.M) {
	if os.Getenv("L4_PROXY_CHILD") != "" {
		os.Exit(runProxyChild())
	}
	os.Exit(m.Run())
}

// runProxyChild runs a one-listener proxy to $L4_BACKEND with the marks
// $L4_HIGH and $L4_LOW, prints "ADDR host:port", serves until stdin ends,
// then prints "HWM <peak RSS in bytes>".
func runProxyChild() int {
	high, _ := strconv.Atoi(os.Getenv("L4_HIGH"))
	low, _ := strconv.Atoi(os.Getenv("L4_LOW"))
	pool, err := lb.NewPool("p", lb.PoolConfig{Backends: []lb.BackendConfig{{Address: os.Getenv("L4_BACKEND")}}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	lc := testListener(func(lc *ListenerConfig) {
		lc.HighWater, lc.LowWater, lc.MaxFlowBuffer = high, low, max(16<<20, 4*high)
	})
	s, err := New(Config{Listeners: []ListenerConfig{lc}}, map[string]*lb.Pool{"p": pool}, testLogger(), nil)
	if err == nil {
		err = s.Start()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("ADDR %s\n", s.Addrs()[0])
	io.Copy(io.Discard, os.Stdin)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.Shutdown(ctx)
	fmt.Printf("HWM %d\n", procStatus(os.Getpid(), "VmHWM"))
	return 0
}

// procStatus reads a "kB" field of /proc/PID/status, in bytes.
func procStatus(pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n << 10
		}
	}
	return -1
}

// proxyProcess is the test binary running as a proxy.
type proxyProcess struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Scanner
	addr  string
}

func startProxyProcess(t testing.TB, backend string, high, low int) *proxyProcess {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "L4_PROXY_CHILD=1", "L4_BACKEND="+backend,
		"L4_HIGH="+strconv.Itoa(high), "L4_LOW="+strconv.Itoa(low))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proxyProcess{cmd: cmd, stdin: stdin, out: bufio.NewScanner(stdout)}
	t.Cleanup(func() {
		p.stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	if !p.out.Scan() {
		t.Fatalf("proxy process: no address")
	}
	p.addr = strings.TrimPrefix(p.out.Text(), "ADDR ")
	return p
}

// stop ends the process and returns its peak RSS and CPU time.
func (p *proxyProcess) stop(t testing.TB) (hwm int64, cpu time.Duration) {
	t.Helper()
	p.stdin.Close()
	for p.out.Scan() {
		if v, ok := strings.CutPrefix(p.out.Text(), "HWM "); ok {
			hwm, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("proxy process: %v", err)
	}
	return hwm, p.cmd.ProcessState.UserTime() + p.cmd.ProcessState.SystemTime()
}

// stream is a deterministic byte stream: a random block, each chunk stamped
// with its sequence number, so that a lost, repeated or reordered chunk
// changes the SHA-256.
type stream struct {
	block []byte
	seq   uint64
}

func newStream(seed uint64) *stream {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, 1<<20)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return &stream{block: b}
}

const streamChunk = 128 << 10

// next returns the next chunk, at most n bytes.
func (s *stream) next(n int64) []byte {
	off := int(s.seq%8) * streamChunk
	c := s.block[off : off+int(min(n, streamChunk))]
	if len(c) >= 8 {
		binary.LittleEndian.PutUint64(c, s.seq)
	}
	s.seq++
	return c
}

// send writes size bytes of s to w, hashing them.
func (s *stream) send(w io.Writer, size int64, h hash.Hash) error {
	for size > 0 {
		c := s.next(size)
		h.Write(c)
		if _, err := w.Write(c); err != nil {
			return err
		}
		size -= int64(len(c))
	}
	return nil
}

// bulkResult is what one side of a bulk transfer got.
type bulkResult struct {
	n   int64
	sum []byte
	err error
}

func readAll(r io.Reader) bulkResult {
	h := sha256.New()
	n, err := io.CopyBuffer(h, r, make([]byte, 256<<10))
	return bulkResult{n, h.Sum(nil), err}
}

// bulkSizes returns the transfer size and stall: 1 GiB and 3 s normally,
// 64 MiB and 1 s under the race detector or -short.
func bulkSizes() (int64, time.Duration) {
	if raceEnabled || testing.Short() {
		return 64 << 20, time.Second
	}
	return 1 << 30, 3 * time.Second
}

// upload sends size bytes from a client through proxy to the backend ln,
// which stalls for stall before reading; it checks every byte arrived.
func upload(t *testing.T, ln net.Listener, proxy string, size int64, stall time.Duration) time.Duration {
	t.Helper()
	got := make(chan bulkResult, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- bulkResult{err: err}
			return
		}
		defer c.Close()
		time.Sleep(stall) // the stalled backend: not a synchronisation
		got <- readAll(c)
	}()
	start := time.Now()
	c := dial(t, proxy)
	h := sha256.New()
	if err := newStream(1).send(c, size, h); err != nil {
		t.Fatalf("client write: %v", err)
	}
	c.CloseWrite()
	r := <-got
	took := time.Since(start)
	if r.err != nil {
		t.Fatalf("backend read: %v", r.err)
	}
	if r.n != size || !bytes.Equal(r.sum, h.Sum(nil)) {
		t.Fatalf("backend got %d bytes, sha256 %x; want %d, %x", r.n, r.sum, size, h.Sum(nil))
	}
	return took
}

// download sends size bytes from the backend ln through proxy to a client
// that stalls for stall before reading; it checks every byte arrived.
func download(t *testing.T, ln net.Listener, proxy string, size int64, stall time.Duration) time.Duration {
	t.Helper()
	sum := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			sum <- nil
			return
		}
		defer c.Close()
		h := sha256.New()
		if err := newStream(2).send(c, size, h); err != nil {
			t.Errorf("backend write: %v", err)
		}
		sum <- h.Sum(nil)
	}()
	start := time.Now()
	c := dial(t, proxy)
	time.Sleep(stall) // the stalled client: not a synchronisation
	r := readAll(c)
	took := time.Since(start)
	want := <-sum
	if r.err != nil {
		t.Fatalf("client read: %v", r.err)
	}
	if r.n != size || !bytes.Equal(r.sum, want) {
		t.Fatalf("client got %d bytes, sha256 %x; want %d, %x", r.n, r.sum, size, want)
	}
	return took
}

// TestStalledBackendBoundedMemory: a backend that stops reading while a
// client sends 1 GiB (or a stalled client reading a 1 GiB reply) keeps the
// proxy process under 64 MiB of RSS, and every byte arrives.
func TestStalledBackendBoundedMemory(t *testing.T) {
	size, stall := bulkSizes()
	for _, dir := range []string{"upload", "download"} {
		t.Run(dir, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			p := startProxyProcess(t, ln.Addr().String(), 4<<20, 2<<20)
			idle := procStatus(p.cmd.Process.Pid, "VmRSS")
			var took time.Duration
			if dir == "upload" {
				took = upload(t, ln, p.addr, size, stall)
			} else {
				took = download(t, ln, p.addr, size, stall)
			}
			hwm, cpu := p.stop(t)
			t.Logf("%s of %d MiB with a %s stall: %s, peak RSS %.1f MiB (%.1f MiB idle), proxy CPU %s",
				dir, size>>20, stall, took.Round(time.Millisecond), float64(hwm)/(1<<20), float64(idle)/(1<<20), cpu.Round(time.Millisecond))
			if !raceEnabled && hwm > 64<<20 {
				t.Fatalf("peak RSS %d MiB; want under 64 MiB", hwm>>20)
			}
		})
	}
}
