package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"reflect"

	"github.com/VictoriaMetrics/metrics"

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
	if a := *cfg.Admin.Address; a != "" {
		if p.admin, err = startAdmin(a, p.set, log); err != nil {
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
	if err := p.http.Swap(&cfg.HTTP, pools); err != nil {
		closePools(pools)
		return err
	}
	closePools(p.pools)
	p.pools = pools
	var restart []string
	if !reflect.DeepEqual(cfg.HTTP.Listeners, p.cfg.HTTP.Listeners) {
		restart = append(restart, "http.listeners")
	}
	if cfg.HTTP.AccessLog != p.cfg.HTTP.AccessLog {
		restart = append(restart, "http.access_log")
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
	next.Admin, next.Demo, next.Log.Format = p.cfg.Admin, p.cfg.Demo, p.cfg.Log.Format
	p.cfg = &next
	return nil
}

// stop drains the HTTP listeners until ctx ends, then closes everything.
func (p *process) stop(ctx context.Context) error {
	var err error
	if p.http != nil {
		err = p.http.Shutdown(ctx)
	}
	closePools(p.pools)
	p.admin.close(ctx)
	if p.demo != nil {
		p.demo.close(ctx)
	}
	return err
}

// httpAddrs returns the bound HTTP listener addresses.
func (p *process) httpAddrs() []net.Addr { return p.http.Addrs() }
