package bench

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"strconv"
	"strings"
)

// WrkScript is the wrk Lua script whose done hook prints the one line
// ParseWrk reads.
const WrkScript = `done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH requests=%d duration_us=%d errors=%d status_errors=%d p50_us=%d p99_us=%d\n",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99)))
end
`

// WrkResult is what ParseWrk reads from a run of wrk with WrkScript.
type WrkResult struct {
	Requests, DurationUS, Errors, StatusErrors int64
	P50US, P99US                               int64
}

// ParseWrk finds the "BENCH ..." line that WrkScript prints in wrk's output.
func ParseWrk(out []byte) (WrkResult, error) {
	var r WrkResult
	for line := range bytes.Lines(out) {
		rest, ok := bytes.CutPrefix(bytes.TrimSpace(line), []byte("BENCH "))
		if !ok {
			continue
		}
		fields := map[string]*int64{
			"requests": &r.Requests, "duration_us": &r.DurationUS, "errors": &r.Errors,
			"status_errors": &r.StatusErrors, "p50_us": &r.P50US, "p99_us": &r.P99US,
		}
		for _, f := range strings.Fields(string(rest)) {
			k, v, _ := strings.Cut(f, "=")
			if p, ok := fields[k]; ok {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					return r, fmt.Errorf("cannot parse wrk field %q: %w", f, err)
				}
				*p = n
				delete(fields, k)
			}
		}
		if len(fields) > 0 {
			return r, fmt.Errorf("cannot parse wrk output: line %q lacks fields", line)
		}
		return r, nil
	}
	return r, fmt.Errorf("cannot parse wrk output: no BENCH line in %q", tail(out, 400))
}

// RedisResult is one test line of `redis-benchmark --csv`.
type RedisResult struct {
	Test         string
	RPS          float64
	P50MS, P99MS float64
}

// ParseRedisCSV reads the output of `redis-benchmark --csv` (Redis 7: test,
// rps, avg, min, p50, p95, p99 and max latency in ms).
func ParseRedisCSV(out []byte) ([]RedisResult, error) {
	recs, err := csv.NewReader(bytes.NewReader(out)).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("cannot parse redis-benchmark csv: %w", err)
	}
	if len(recs) < 2 {
		return nil, fmt.Errorf("cannot parse redis-benchmark csv: no test lines in %q", tail(out, 400))
	}
	col := map[string]int{}
	for i, h := range recs[0] {
		col[h] = i
	}
	for _, h := range []string{"test", "rps", "p50_latency_ms", "p99_latency_ms"} {
		if _, ok := col[h]; !ok {
			return nil, fmt.Errorf("cannot parse redis-benchmark csv: no %q column in %q", h, recs[0])
		}
	}
	var res []RedisResult
	for _, rec := range recs[1:] {
		var r RedisResult
		r.Test = rec[col["test"]]
		var e1, e2, e3 error
		r.RPS, e1 = strconv.ParseFloat(rec[col["rps"]], 64)
		r.P50MS, e2 = strconv.ParseFloat(rec[col["p50_latency_ms"]], 64)
		r.P99MS, e3 = strconv.ParseFloat(rec[col["p99_latency_ms"]], 64)
		if e1 != nil || e2 != nil || e3 != nil {
			return nil, fmt.Errorf("cannot parse redis-benchmark csv line %q", rec)
		}
		res = append(res, r)
	}
	return res, nil
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
