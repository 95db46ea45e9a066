package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"reflect"
	"sync"

	"github.com/VictoriaMetrics/metrics"

	"portico/l4"
	"portico/l7"
	"portico/lb"
)

// process is a running portico: the parts started from one config.
type process struct {
	log   *slog.Logger
	level *slog.LevelVar
	cfg   *Config
	set   *metrics.Set
	demo  *demo
	http  *l7.Server
	tcp   *l4.Server
	admin *admin
	pools map[string]*lb.Pool // closed when replaced or stopped
}

func newLogger(c LogConfig, w io.Writer) (*slog.Logger, *slog.LevelVar) {
	level := new(slog.LevelVar)
	l, _ := parseLevel(c.Level)
	level.Set(l)
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), level
	}
	return slog.New(slog.NewTextHandler(w, opts)), level
}

// buildPools builds cfg's pools; a pool named in prev (the running ones)
// hands its backends' health over to its successor.
func buildPools(cfg *Config, log *slog.Logger, set *metrics.Set, prev map[string]*lb.Pool) (map[string]*lb.Pool, error) {
	pools := make(map[string]*lb.Pool, len(cfg.Pools))
	for name, pc := range cfg.Pools {
		p, err := lb.NewPool(name, pc, lb.WithLogger(log), lb.WithMetrics(set), lb.WithPrevious(prev[name]))
		if err != nil {
			closePools(pools)
			return nil, err
		}
		pools[name] = p
	}
	return pools, nil
}

// closePools stops the pools' health checks; leases taken from them still
// release.
func closePools(pools map[string]*lb.Pool) {
	for _, p := range pools {
		p.Close()
	}
}

// start opens everything the config asks for. On error it closes what it
// opened.
func start(cfg *Config, log *slog.Logger, level *slog.LevelVar) (*process, error) {
	p := &process{log: log, level: level, cfg: cfg, set: metrics.NewSet()}
	var err error
	if cfg.Demo != nil {
		if p.demo, err = startDemo(cfg.Demo, log); err != nil {
			return nil, err
		}
	}
	pools, err := buildPools(cfg, log, p.set, nil)
	if err != nil {
		p.stop(context.Background())
		return nil, err
	}
	p.pools = pools
	if p.http, err = l7.New(cfg.HTTP, pools, log, p.set); err != nil {
		p.stop(context.Background())
		return nil, err
	}
	if err = p.http.Start(); err != nil {
		p.http = nil
		p.stop(context.Background())
		return nil, err
	}
	if p.tcp, err = l4.New(cfg.TCP, pools, log, p.set); err != nil {
		p.stop(context.Background())
		return nil, err
	}
	if err = p.tcp.Start(); err != nil {
		p.tcp = nil
		p.stop(context.Background())
		return nil, err
	}
	if a := *cfg.Admin.Address; a != "" {
		if p.admin, err = startAdmin(a, p.set, log, p.http, p.tcp.Flows()); err != nil {
			p.stop(context.Background())
			return nil, err
		}
	}
	return p, nil
}

// reload swaps in the routes, pools and header settings of a new config.
// Listener, access log, admin, demo and log format settings need a restart;
// a change to them is logged and otherwise ignored. On error the running
// config stays live.
func (p *process) reload(cfg *Config) error {
	pools, err := buildPools(cfg, p.log, p.set, p.pools)
	if err != nil {
		return err
	}
	// TCP routes and pools swap like HTTP's; anything else about a TCP
	// listener needs a restart, and so does adding or removing one (the
	// running listeners then keep the pools they have).
	tcpRestart := !sameTCPListeners(cfg.TCP, p.cfg.TCP)
	tcpSwap := len(cfg.TCP.Listeners) == len(p.cfg.TCP.Listeners)
	if tcpSwap {
		if err := p.tcp.Swap(&cfg.TCP, pools); err != nil {
			closePools(pools)
			return err
		}
	}
	if err := p.http.Swap(&cfg.HTTP, pools); err != nil {
		if tcpSwap {
			_ = p.tcp.Swap(&p.cfg.TCP, p.pools)
		}
		closePools(pools)
		return err
	}
	closePools(p.pools)
	p.pools = pools
	p.http.SetCacheBudget(cfg.HTTP.Cache.MaxBytes)
	var restart []string
	if !reflect.DeepEqual(cfg.HTTP.Listeners, p.cfg.HTTP.Listeners) {
		restart = append(restart, "http.listeners")
	}
	if cfg.HTTP.AccessLog != p.cfg.HTTP.AccessLog {
		restart = append(restart, "http.access_log")
	}
	if tcpRestart {
		restart = append(restart, "tcp.listeners")
	}
	if *cfg.Admin.Address != *p.cfg.Admin.Address {
		restart = append(restart, "admin")
	}
	if !reflect.DeepEqual(cfg.Demo, p.cfg.Demo) {
		restart = append(restart, "demo")
	}
	if cfg.Log.Format != p.cfg.Log.Format {
		restart = append(restart, "log.format")
	}
	if len(restart) > 0 {
		p.log.Warn("config reloaded; changes to these take effect at restart", "sections", restart)
	}
	l, _ := parseLevel(cfg.Log.Level)
	p.level.Set(l)
	// p.cfg describes what runs: the restart-only settings stay the running
	// ones, so that the next reload compares against them too.
	next := *cfg
	next.HTTP.Listeners, next.HTTP.AccessLog = p.cfg.HTTP.Listeners, p.cfg.HTTP.AccessLog
	if tcpRestart {
		// The listeners that run, with the routes that run on them.
		next.TCP.Listeners = append([]l4.ListenerConfig(nil), p.cfg.TCP.Listeners...)
		for i := range next.TCP.Listeners {
			if tcpSwap {
				n, o := &next.TCP.Listeners[i], cfg.TCP.Listeners[i]
				n.Pool, n.Routes, n.DefaultPool = o.Pool, o.Routes, o.DefaultPool
			}
		}
	}
	next.Admin, next.Demo, next.Log.Format = p.cfg.Admin, p.cfg.Demo, p.cfg.Log.Format
	p.cfg = &next
	return nil
}

// stop drains the HTTP and TCP listeners together until ctx ends (both
// stop accepting at once), then closes everything.
func (p *process) stop(ctx context.Context) error {
	var httpErr, tcpErr error
	var wg sync.WaitGroup
	if p.http != nil {
		wg.Add(1)
		go func() { defer wg.Done(); httpErr = p.http.Shutdown(ctx) }()
	}
	if p.tcp != nil {
		tcpErr = p.tcp.Shutdown(ctx)
	}
	wg.Wait()
	err := errors.Join(httpErr, tcpErr)
	closePools(p.pools)
	p.admin.close(ctx)
	if p.demo != nil {
		p.demo.close(ctx)
	}
	return err
}

// httpAddrs returns the bound HTTP listener addresses.
func (p *process) httpAddrs() []net.Addr { return p.http.Addrs() }

// sameTCPListeners reports whether two [tcp] sections differ at most in
// what a reload can swap: each listener's pool, routes and default pool.
func sameTCPListeners(a, b l4.Config) bool {
	if len(a.Listeners) != len(b.Listeners) {
		return false
	}
	for i := range a.Listeners {
		x, y := a.Listeners[i], b.Listeners[i]
		x.Pool, x.Routes, x.DefaultPool = "", nil, ""
		y.Pool, y.Routes, y.DefaultPool = "", nil, ""
		if !reflect.DeepEqual(x, y) {
			return false
		}
	}
	return true
}
