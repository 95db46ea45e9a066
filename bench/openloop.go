package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// OpenLoopConfig is one constant-rate run.
type OpenLoopConfig struct {
	// Addr is the host:port to send to.
	Addr string
	// Path is the request path. Default "/small".
	Path string
	// Rate is the requests per second, sent on schedule whether earlier
	// ones have been answered or not. Required.
	Rate float64
	// Duration is how long requests are started for. Required.
	Duration time.Duration
	// Timeout bounds each request, counted from its due time. Default 2s.
	Timeout time.Duration
	// MaxConns bounds the connections to Addr. Default 256.
	MaxConns int
}

// OpenLoopResult is the outcome of an open-loop run. Every request is
// started on schedule, in a goroutine of its own, whether earlier ones have
// been answered or not, and its latency counts from that start: time spent
// waiting for a connection behind a slow request is in it (no coordinated
// omission). The runner's own timer granularity (Go sleeps for at least
// about a millisecond, so requests start in small batches) is not: it shows
// in Lag instead.
type OpenLoopResult struct {
	// Sent is the number of requests due in the run; OK of them got a 2xx.
	Sent, OK int
	// Errors counts failures: transport errors, timeouts, non-2xx answers.
	Errors int
	// FirstErr is the first failure.
	FirstErr error
	// Duration is from the first due time to the last answer.
	Duration time.Duration
	// Latency percentiles of the OK requests.
	P50, P90, P99, P999, Max time.Duration
	// Lag is the largest delay between a request's due time and the moment
	// the runner started it: a millisecond or two is timer granularity;
	// much more means the runner's CPU was busy and the rate was not kept.
	Lag time.Duration
}

// String formats r on one line.
func (r OpenLoopResult) String() string {
	return fmt.Sprintf("sent=%d ok=%d errors=%d p50=%s p90=%s p99=%s p99.9=%s max=%s lag=%s",
		r.Sent, r.OK, r.Errors, r.P50, r.P90, r.P99, r.P999, r.Max, r.Lag)
}

// OpenLoop sends GET requests at cfg.Rate for cfg.Duration and waits for the
// last answer (at most cfg.Timeout more).
func OpenLoop(ctx context.Context, cfg OpenLoopConfig) (OpenLoopResult, error) {
	if cfg.Rate <= 0 || cfg.Duration <= 0 {
		return OpenLoopResult{}, fmt.Errorf("cannot run open loop: rate %g and duration %s must be positive", cfg.Rate, cfg.Duration)
	}
	if cfg.Path == "" {
		cfg.Path = "/small"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 256
	}
	hc := &fasthttp.HostClient{
		Addr:                          cfg.Addr,
		MaxConns:                      cfg.MaxConns,
		MaxConnWaitTimeout:            cfg.Timeout,
		MaxIdleConnDuration:           time.Minute,
		ReadTimeout:                   cfg.Timeout,
		WriteTimeout:                  cfg.Timeout,
		NoDefaultUserAgentHeader:      true,
		DisableHeaderNamesNormalizing: true,
	}
	defer hc.CloseIdleConnections()

	n := int(cfg.Rate * cfg.Duration.Seconds())
	interval := time.Duration(float64(time.Second) / cfg.Rate)
	lat := make([]time.Duration, n) // -1: failed
	var errs atomic.Int64
	var firstErr atomic.Pointer[error]
	var wg sync.WaitGroup
	uri := "http://" + cfg.Addr + cfg.Path
	var lag time.Duration

	do := func(i int, start, deadline time.Time) {
		defer wg.Done()
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI(uri)
		err := hc.DoDeadline(req, resp, deadline)
		if err == nil && (resp.StatusCode() < 200 || resp.StatusCode() > 299) {
			err = fmt.Errorf("status %d", resp.StatusCode())
		}
		if err != nil {
			lat[i] = -1
			errs.Add(1)
			firstErr.CompareAndSwap(nil, &err)
			return
		}
		lat[i] = time.Since(start)
	}

	start := time.Now()
	i := 0
loop:
	for i < n {
		now := time.Now()
		// Start every request due by now: after an oversleep the runner
		// catches up at once rather than shifting the schedule.
		for i < n {
			due := start.Add(time.Duration(i) * interval)
			if due.After(now) {
				break
			}
			lag = max(lag, now.Sub(due))
			wg.Add(1)
			go do(i, now, due.Add(cfg.Timeout))
			i++
		}
		if i == n {
			break
		}
		select {
		case <-ctx.Done():
			break loop
		case <-time.After(time.Until(start.Add(time.Duration(i) * interval))):
		}
	}
	wg.Wait()
	res := OpenLoopResult{Sent: i, Duration: time.Since(start), Lag: lag}
	ok := lat[:0]
	for _, d := range lat[:i] {
		if d >= 0 {
			ok = append(ok, d)
		}
	}
	res.OK = len(ok)
	res.Errors = int(errs.Load())
	if p := firstErr.Load(); p != nil {
		res.FirstErr = *p
	}
	sortDurations(ok)
	res.P50, res.P90, res.P99, res.P999 = Percentile(ok, 50), Percentile(ok, 90), Percentile(ok, 99), Percentile(ok, 99.9)
	if len(ok) > 0 {
		res.Max = ok[len(ok)-1]
	}
	return res, ctx.Err()
}
