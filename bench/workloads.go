package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

// workload is one row group of the report.
type workload struct {
	info WorkloadInfo
	// run measures the workload once for about seconds on t. The harness
	// adds the proxy's CPU time.
	run func(ctx context.Context, h *Harness, t *target, seconds int) (Sample, error)
	// needsL4: it goes through the TCP listeners; needsCache: through a
	// caching route; noDirect: it measures the proxy alone.
	needsL4, needsCache, noDirect bool
	// warm: run it once for a second before the first measurement.
	warm bool
}

// workloads in report order.
var workloads = []workload{
	{info: WorkloadInfo{"l7-small", "`wrk -t1 -c64` GETs of a 64-byte response over keep-alive connections, through the HTTP proxy", 0.8},
		run: wrkRun(func(ep endpoints) string { return "http://" + ep.l7 + "/small" }, false), warm: true},
	{info: WorkloadInfo{"l7-64k", "the same with a 64 KiB response", 0.8},
		run: wrkRun(func(ep endpoints) string { return "http://" + ep.l7 + "/64k" }, false), warm: true},
	{info: WorkloadInfo{"l7-rr3", "l7-small balanced round robin over three backends (direct: one backend)", 0.8},
		run: wrkRun(func(ep endpoints) string { return "http://" + ep.l7 + "/rr3/small" }, false), warm: true},
	{info: WorkloadInfo{"l7-rate", "l7-small's request at a constant rate (open loop, `--rate`, default 5,000/s): every request starts on schedule whatever became of earlier ones, so p99 is comparable at equal offered load (goal: no worse than the best peer's)", 0},
		run: openLoopRun, warm: true},
	{info: WorkloadInfo{"l7-cache", "l7-small served from the proxy's cache (a response cacheable for 5 minutes)", 0.8},
		run: wrkRun(func(ep endpoints) string { return "http://" + ep.l7 + "/cache/small" }, false), needsCache: true, warm: true},
	{info: WorkloadInfo{"l4-ka", "`wrk -t1 -c64` HTTP keep-alive GETs of 64 bytes through the TCP listener", 0.8},
		run: wrkRun(func(ep endpoints) string { return "http://" + ep.l4http + "/small" }, false), needsL4: true, warm: true},
	{info: WorkloadInfo{"l4-close", "the same with `Connection: close`: a new TCP connection (and backend connection) per request", 0.8},
		run: wrkRun(func(ep endpoints) string { return "http://" + ep.l4http + "/small" }, true), needsL4: true, warm: true},
	{info: WorkloadInfo{"l4-redis", "`redis-benchmark -t set,get -c 50` through the TCP listener; cost per command", 0.8},
		run: redisRun(1), needsL4: true},
	{info: WorkloadInfo{"l4-redis-p16", "the same with `-P 16` (16 pipelined commands)", 0.8},
		run: redisRun(16), needsL4: true},
	{info: WorkloadInfo{"l4-bulk", "8 connections each moving `--bulk-mib` (default 256 MiB) each way at once through the TCP listener, every byte verified; cost per GiB moved (both ways counted)", 0.8},
		run: bulkRun, needsL4: true},
	{info: WorkloadInfo{"conns-10k", "`--conns` keep-alive connections (default 10,000; 9,500 where the open file limit is below 21,000, as HAProxy needs two descriptors each), one request each, then held idle: growth of the proxy's RSS per connection, on a freshly started proxy", 1},
		run: idleRun, noDirect: true},
}

// WorkloadNames lists the workloads in report order.
func WorkloadNames() []string {
	var out []string
	for _, w := range workloads {
		out = append(out, w.info.Name)
	}
	return out
}

// runCmd runs args pinned to the load CPUs with a time bound and returns
// their standard output.
func (h *Harness) runCmd(ctx context.Context, bound time.Duration, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	args = pinned(h.cfg.OtherCPUs, args...)
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		return stdout.Bytes(), fmt.Errorf("%s: killed after %s", args[0], bound)
	}
	if err != nil {
		return stdout.Bytes(), fmt.Errorf("%s: %w: %s", args[0], err, tail(stderr.Bytes(), 300))
	}
	return stdout.Bytes(), nil
}

// wrkRun runs `wrk -t1 -c64` on the URL, with Connection: close when close.
func wrkRun(url func(endpoints) string, close bool) func(context.Context, *Harness, *target, int) (Sample, error) {
	return func(ctx context.Context, h *Harness, t *target, seconds int) (Sample, error) {
		script := filepath.Join(h.cfg.WorkDir, "wrk-report.lua")
		if _, err := os.Stat(script); err != nil {
			if err := os.WriteFile(script, []byte(WrkScript), 0o644); err != nil {
				return Sample{}, fmt.Errorf("cannot write wrk script: %w", err)
			}
		}
		args := []string{"wrk", "-t1", "-c64", "-d", strconv.Itoa(seconds) + "s", "--timeout", "2s", "-s", script}
		if close {
			args = append(args, "-H", "Connection: close")
		}
		args = append(args, url(t.ep))
		out, err := h.runCmd(ctx, time.Duration(seconds)*time.Second+20*time.Second, args...)
		if err != nil {
			return Sample{}, err
		}
		r, err := ParseWrk(out)
		if err != nil {
			return Sample{}, err
		}
		if r.Requests == 0 {
			return Sample{}, fmt.Errorf("wrk: no request completed: %s", tail(out, 300))
		}
		return Sample{Unit: UnitReq, Ops: float64(r.Requests), Seconds: float64(r.DurationUS) / 1e6,
			P50: float64(r.P50US), P99: float64(r.P99US), Errors: r.Errors + r.StatusErrors}, nil
	}
}

// openLoopRun sends l7-small's request at the configured rate.
func openLoopRun(ctx context.Context, h *Harness, t *target, seconds int) (Sample, error) {
	r, err := OpenLoop(ctx, OpenLoopConfig{Addr: t.ep.l7, Path: "/small", Rate: h.cfg.Rate,
		Duration: time.Duration(seconds) * time.Second, Timeout: 2 * time.Second, MaxConns: 512})
	if err != nil {
		return Sample{}, err
	}
	if r.Lag > 20*time.Millisecond {
		h.logf("open loop on %s fell %s behind schedule: its latencies are not to be trusted", t.name, r.Lag)
	}
	// The rate is over the schedule: the wait for the last answers is not
	// idle time of the offered load.
	return Sample{Unit: UnitReq, Ops: float64(r.OK), Seconds: float64(seconds), Errors: int64(r.Errors),
		P50: float64(r.P50.Microseconds()), P99: float64(r.P99.Microseconds())}, nil
}

// redisRun runs redis-benchmark's SET and GET tests with pipeline depth p.
// Its request count follows the run length (it has no duration flag).
func redisRun(p int) func(context.Context, *Harness, *target, int) (Sample, error) {
	return func(ctx context.Context, h *Harness, t *target, seconds int) (Sample, error) {
		perSec := 15000
		if p > 1 {
			perSec = 100000
		}
		n := perSec * seconds / 2 // per test: SET, then GET
		host, port := splitAddr(t.ep.l4redis)
		start := time.Now()
		out, err := h.runCmd(ctx, time.Duration(seconds)*6*time.Second+20*time.Second, "redis-benchmark",
			"-h", host, "-p", port, "-t", "set,get", "-c", "50", "-n", strconv.Itoa(n), "-P", strconv.Itoa(p), "--csv")
		if err != nil {
			return Sample{}, err
		}
		wall := time.Since(start)
		rs, err := ParseRedisCSV(out)
		if err != nil {
			return Sample{}, err
		}
		if len(rs) != 2 {
			return Sample{}, fmt.Errorf("redis-benchmark: got %d tests; want SET and GET", len(rs))
		}
		s := Sample{Unit: UnitOp, Ops: float64(2 * n), Seconds: wall.Seconds()}
		for _, r := range rs {
			s.P50 += r.P50MS * 1000 / 2 // the mean of the two tests
			s.P99 = max(s.P99, r.P99MS*1000)
		}
		return s, nil
	}
}

func splitAddr(a string) (string, string) {
	for i := len(a) - 1; i >= 0; i-- {
		if a[i] == ':' {
			return a[:i], a[i+1:]
		}
	}
	return a, ""
}

// bulkRun moves BulkBytes each way on 8 connections (scaled down for a
// warm-up-length run).
func bulkRun(ctx context.Context, h *Harness, t *target, seconds int) (Sample, error) {
	r := Bulk(ctx, BulkConfig{Addr: t.ep.l4bulk, Conns: 8, Bytes: h.cfg.BulkBytes, Timeout: 3 * time.Minute})
	s := Sample{Unit: UnitGiB, Ops: float64(r.Bytes) / (1 << 30), Seconds: r.Duration.Seconds(), Errors: int64(r.Errors)}
	if r.Err != nil {
		return s, r.Err
	}
	return s, nil
}

// idleRun restarts the proxy, warms it with a few requests, then holds
// IdleConns idle keep-alive connections and reports its RSS growth per
// connection.
func idleRun(ctx context.Context, h *Harness, t *target, seconds int) (Sample, error) {
	if err := h.restart(t); err != nil {
		return Sample{}, err
	}
	warm, err := HoldIdle(ctx, t.ep.l7, "/small", 64, 16)
	warm.Close()
	if err != nil {
		return Sample{}, fmt.Errorf("warm-up: %w", err)
	}
	time.Sleep(500 * time.Millisecond)
	pids := t.pids()
	before := ProcRSS(pids)
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	ic, err := HoldIdle(ctx, t.ep.l7, "/small", h.cfg.IdleConns, 128)
	defer ic.Close()
	opened := time.Since(start)
	time.Sleep(time.Second)
	after := ProcRSS(pids)
	s := Sample{Unit: UnitConn, Ops: float64(ic.Len()), Seconds: opened.Seconds(),
		Errors: int64(h.cfg.IdleConns - ic.Len())}
	if ic.Len() > 0 {
		s.RSSPerConn = float64(after-before) / float64(ic.Len())
	}
	if err != nil {
		return s, fmt.Errorf("held %d of %d connections: %w", ic.Len(), h.cfg.IdleConns, err)
	}
	return s, nil
}
