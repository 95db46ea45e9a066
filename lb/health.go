package lb

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Active health checks: one goroutine per backend, owned by the pool (Close
// stops them). Each checks at once, then interval after each check ends.
// rise passes in a row bring a down backend up (through slow start); fall
// failures in a row take an up backend down. A backend starts up; if its
// very first check fails it goes down at once, so that a dead backend in a
// new pool is found within one timeout rather than fall intervals.

// checker runs one pool's checks; its settings are fixed.
type checker struct {
	cfg    HealthCheckConfig
	lo, hi int // passing statuses, for http
	dialer net.Dialer
	client *http.Client
	tr     *http.Transport
}

func newChecker(cfg HealthCheckConfig) *checker {
	c := &checker{cfg: cfg}
	if cfg.Type == "http" {
		c.lo, c.hi, _ = parseStatusRange(cfg.ExpectStatus)
		c.tr = &http.Transport{
			Proxy:                  nil,
			DialContext:            c.dialer.DialContext,
			DisableKeepAlives:      true, // each check also proves that the backend accepts connections
			DisableCompression:     true,
			MaxResponseHeaderBytes: 64 << 10,
		}
		c.client = &http.Client{
			Transport:     c.tr,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	return c
}

// check runs one check of addr, bounded by the configured timeout.
func (c *checker) check(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	if c.cfg.Type == "tcp" {
		conn, err := c.dialer.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return conn.Close()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+c.cfg.Path, nil)
	if err != nil {
		return err
	}
	if c.cfg.Host != "" {
		req.Host = c.cfg.Host
	}
	req.Header.Set("User-Agent", "portico-health-check")
	resp, err := c.client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
	resp.Body.Close()
	if resp.StatusCode < c.lo || resp.StatusCode > c.hi {
		return fmt.Errorf("got status %d; want %s", resp.StatusCode, c.cfg.ExpectStatus)
	}
	return nil
}

func (c *checker) close() {
	if c.tr != nil {
		c.tr.CloseIdleConnections()
	}
}

// startCheckLocked starts b's checker goroutine, if the pool has checks.
func (p *Pool) startCheckLocked(b *Backend) {
	if p.checker == nil || p.closed {
		return
	}
	ctx, cancel := context.WithCancel(p.ctx)
	b.h.stopCheck = cancel
	p.wg.Add(1)
	go p.runChecks(ctx, b)
}

func (p *Pool) runChecks(ctx context.Context, b *Backend) {
	defer p.wg.Done()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := p.checker.check(ctx, b.Address)
		if ctx.Err() != nil {
			return
		}
		p.checked(b, err)
		t.Reset(p.checker.cfg.Interval)
	}
}

// checked applies one check's result to b's state.
func (p *Pool) checked(b *Backend, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || b.h.stopCheck == nil {
		return // the pool closed or b was removed while the check ran
	}
	cfg := &p.checker.cfg
	fresh := b.h.fresh
	b.h.fresh = false
	changed := false
	if err == nil {
		b.m.checkPass.Inc()
		b.h.passes++
		b.h.fails = 0
		if b.h.down && b.h.passes >= cfg.Rise {
			b.h.down = false
			b.h.reason = fmt.Sprintf("passed %d %s health checks in a row", b.h.passes, cfg.Type)
			p.startRampLocked(b, time.Now())
			changed = true
		}
	} else {
		b.m.checkFail.Inc()
		b.h.fails++
		b.h.passes = 0
		if p.log.Enabled(p.ctx, slog.LevelDebug) {
			p.log.Debug("health check failed", "pool", p.Name, "backend", b.Name, "address", b.Address, "in_a_row", b.h.fails, "error", err)
		}
		if !b.h.down && (b.h.fails >= cfg.Fall || fresh) {
			b.h.down = true
			b.h.rampFrom = time.Time{}
			b.h.reason = fmt.Sprintf("failed %d %s health checks in a row: %v", b.h.fails, cfg.Type, err)
			changed = true
		}
	}
	if changed {
		p.rebuildAndScheduleLocked(time.Now())
	}
}
