package l4

import (
	"bufio"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"portico/lb"
)

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// waitListening waits until addr accepts connections.
func waitListening(t *testing.T, addr string) {
	t.Helper()
	waitFor(t, addr+" to listen", func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// redisServer runs redis-server on a loopback port in a temp dir.
func redisServer(t *testing.T) (addr string, cmd *exec.Cmd) {
	t.Helper()
	port := freePort(t)
	cmd = exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", t.TempDir(), "--protected-mode", "no")
	if err := cmd.Start(); err != nil {
		t.Fatalf("redis-server: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	waitListening(t, addr)
	return addr, cmd
}

// redisConn is a minimal RESP client: enough for SET, GET and INFO.
type redisConn struct {
	c net.Conn
	r *bufio.Reader
}

func dialRedis(addr string, from net.IP) (*redisConn, error) {
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: from}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(testTimeout))
	return &redisConn{c, bufio.NewReader(c)}, nil
}

func (r *redisConn) do(args ...string) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := io.WriteString(r.c, b.String()); err != nil {
		return "", err
	}
	line, err := r.r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimSuffix(line, "\r\n")
	switch line[0] {
	case '+':
		return line[1:], nil
	case '-':
		return "", fmt.Errorf("redis: %s", line[1:])
	case '$':
		n, _ := strconv.Atoi(line[1:])
		if n < 0 {
			return "", nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r.r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}
	return line, nil
}

// port asks the server which port it serves: the backend behind the proxy.
func (r *redisConn) port() (string, error) {
	info, err := r.do("INFO", "server")
	if err != nil {
		return "", err
	}
	for _, l := range strings.Split(info, "\r\n") {
		if p, ok := strings.CutPrefix(l, "tcp_port:"); ok {
			return p, nil
		}
	}
	return "", fmt.Errorf("no tcp_port in INFO")
}

// TestRedis: two redis-server instances behind a listener. redis-benchmark
// and a Go client run SET/GET through portico; least_conn and maglev (on
// the client IP, clients on 127.0.0.2-17) spread clients over both; when
// one redis dies, new clients go to the other.
func TestRedis(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server not installed (scripts/test.sh installs it)")
	}
	for _, policy := range []string{lb.PolicyLeastConn, lb.PolicyMaglev} {
		t.Run(policy, func(t *testing.T) {
			a1, r1 := redisServer(t)
			a2, _ := redisServer(t)
			// Passive checks eject the dead redis at its first refused
			// connect; a retry goes elsewhere meanwhile.
			pc := lb.PoolConfig{Policy: policy, Outlier: lb.OutlierConfig{ConsecutiveFailures: 1}}
			pools := map[string]*lb.Pool{"p": newTestPoolConfig(t, "p", pc, a1, a2)}
			_, _, addrs := startProxy(t, pools, testListener(nil))
			proxy := addrs[0]

			// Clients from 16 source addresses, all open at once.
			const clients = 16
			seen := map[string]int{}
			var conns []*redisConn
			for i := range clients {
				rc, err := dialRedis(proxy, net.IPv4(127, 0, 0, byte(2+i)))
				if err != nil {
					t.Fatal(err)
				}
				defer rc.c.Close()
				conns = append(conns, rc)
				key, val := "k"+strconv.Itoa(i), "v"+strconv.Itoa(i)
				if _, err := rc.do("SET", key, val); err != nil {
					t.Fatalf("SET: %v", err)
				}
				if got, err := rc.do("GET", key); err != nil || got != val {
					t.Fatalf("GET %s: got %q, %v; want %q", key, got, err, val)
				}
				p, err := rc.port()
				if err != nil {
					t.Fatal(err)
				}
				seen[p]++
			}
			if len(seen) != 2 {
				t.Fatalf("clients per backend port: %v; want both backends used", seen)
			}
			t.Logf("%s: clients per backend port %v", policy, seen)

			if b, err := exec.LookPath("redis-benchmark"); err == nil {
				host, port, _ := net.SplitHostPort(proxy)
				n := "20000"
				if raceEnabled {
					n = "2000"
				}
				out, err := exec.Command(b, "-h", host, "-p", port, "-n", n, "-c", "20", "-t", "set,get", "-q").CombinedOutput()
				if err != nil || !strings.Contains(string(out), "requests per second") {
					t.Fatalf("redis-benchmark: %v\n%s", err, out)
				}
				t.Logf("redis-benchmark through portico:\n%s", strings.TrimSpace(string(out)))
			}

			// One redis dies: new clients all land on the other.
			_, deadPort, _ := net.SplitHostPort(a1)
			r1.Process.Kill()
			r1.Wait()
			for i := range 8 {
				rc, err := dialRedis(proxy, net.IPv4(127, 0, 0, byte(2+i)))
				if err != nil {
					t.Fatal(err)
				}
				p, err := rc.port()
				rc.c.Close()
				if err != nil {
					t.Fatalf("client %d after the kill: %v", i, err)
				}
				if p == deadPort {
					t.Fatalf("client %d reached the dead redis", i)
				}
			}
		})
	}
}

// pgBin finds PostgreSQL's server binaries.
func pgBin() string {
	m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(m) == 0 {
		if p, err := exec.LookPath("initdb"); err == nil {
			return filepath.Dir(p)
		}
		return ""
	}
	return filepath.Dir(m[len(m)-1])
}

// TestPostgres: a PostgreSQL server behind a listener; psql runs queries
// through portico, including a large COPY result that exercises
// backpressure, byte for byte the same as without the proxy.
func TestPostgres(t *testing.T) {
	bin := pgBin()
	psql, err := exec.LookPath("psql")
	if bin == "" || err != nil {
		t.Skip("PostgreSQL not installed (scripts/test.sh installs it)")
	}
	// PostgreSQL refuses to run as root: run it as the postgres user.
	var asUser []string
	dir := t.TempDir()
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Skip("running as root and there is no postgres user to run PostgreSQL as")
		}
		runuser, err := exec.LookPath("runuser")
		if err != nil {
			t.Skip("running as root without runuser to drop privileges for PostgreSQL")
		}
		asUser = []string{runuser, "-u", "postgres", "--"}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		for d := dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
			os.Chmod(d, 0o755)
		}
		os.Chown(dir, uid, gid)
	}
	run := func(name string, args ...string) {
		t.Helper()
		full := append(append(asUser[:len(asUser):len(asUser)], filepath.Join(bin, name)), args...)
		out, err := exec.Command(full[0], full[1:]...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", name, err, out)
		}
	}
	data := filepath.Join(dir, "data")
	run("initdb", "-D", data, "-A", "trust", "-U", "portico", "--no-sync")
	port := freePort(t)
	run("pg_ctl", "-D", data, "-w", "-l", filepath.Join(dir, "log"), "-o",
		fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off", port, dir), "start")
	t.Cleanup(func() {
		full := append(append(asUser[:len(asUser):len(asUser)], filepath.Join(bin, "pg_ctl")), "-D", data, "-m", "immediate", "stop")
		exec.Command(full[0], full[1:]...).Run()
	})
	pgAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	pools := map[string]*lb.Pool{"p": newTestPool(t, "p", "round_robin", pgAddr)}
	_, _, addrs := startProxy(t, pools, testListener(smallMarks))
	_, proxyPort, _ := net.SplitHostPort(addrs[0])

	query := func(port, sql string) (int64, []byte, time.Duration) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, psql, "-h", "127.0.0.1", "-p", port, "-U", "portico", "-d", "postgres",
			"-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql)
		cmd.Env = append(os.Environ(), "PGCONNECT_TIMEOUT=5")
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		start := time.Now()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		n, _ := io.Copy(h, out)
		if err := cmd.Wait(); err != nil {
			t.Fatalf("psql -p %s %q: %v\n%s", port, sql, err, stderr.String())
		}
		return n, h.Sum(nil), time.Since(start)
	}

	n, _, _ := query(proxyPort, "SELECT version()")
	if n == 0 {
		t.Fatal("SELECT version() through portico: no output")
	}
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			query(proxyPort, fmt.Sprintf("CREATE TABLE t%d AS SELECT g FROM generate_series(1, 1000) g; SELECT sum(g) FROM t%d", i, i))
		}()
	}
	wg.Wait()

	rows := 2_000_000
	if raceEnabled || testing.Short() {
		rows = 200_000
	}
	copySQL := fmt.Sprintf("COPY (SELECT g, md5(g::text), repeat('x', 64) FROM generate_series(1, %d) g) TO STDOUT", rows)
	nDirect, sumDirect, _ := query(strconv.Itoa(port), copySQL)
	nProxy, sumProxy, took := query(proxyPort, copySQL)
	if nProxy != nDirect || string(sumProxy) != string(sumDirect) {
		t.Fatalf("COPY through portico: %d bytes, sha256 %x; direct: %d bytes, %x", nProxy, sumProxy, nDirect, sumDirect)
	}
	t.Logf("COPY of %d rows (%d MiB) through portico in %s", rows, nProxy>>20, took.Round(time.Millisecond))
}
