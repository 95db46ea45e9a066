package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"

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

func buildPools(cfg *Config) (map[string]*lb.Pool, error) {
	pools := make(map[string]*lb.Pool, len(cfg.Pools))
	for name, pc := range cfg.Pools {
		p, err := lb.NewPool(name, pc)
		if err != nil {
			return nil, err
		}
		pools[name] = p
	}
	return pools, nil
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
	pools, err := buildPools(cfg)
	if err != nil {
		p.stop(context.Background())
		return nil, err
	}
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
// Listener, admin and demo settings need a restart; a change to them is
// logged and otherwise ignored. On error the running config stays live.
func (p *process) reload(cfg *Config) error {
	pools, err := buildPools(cfg)
	if err != nil {
		return err
	}
	if err := p.http.Swap(&cfg.HTTP, pools); err != nil {
		return err
	}
	if fmt.Sprint(cfg.HTTP.Listeners) != fmt.Sprint(p.cfg.HTTP.Listeners) || *cfg.Admin.Address != *p.cfg.Admin.Address ||
		fmt.Sprint(cfg.Demo) != fmt.Sprint(p.cfg.Demo) || cfg.HTTP.AccessLog != p.cfg.HTTP.AccessLog {
		p.log.Warn("config reloaded; changes to listeners, admin, demo and access_log take effect at restart")
	}
	l, _ := parseLevel(cfg.Log.Level)
	p.level.Set(l)
	p.cfg = cfg
	return nil
}

// stop drains the HTTP listeners until ctx ends, then closes everything.
func (p *process) stop(ctx context.Context) error {
	var err error
	if p.http != nil {
		err = p.http.Shutdown(ctx)
	}
	p.admin.close(ctx)
	if p.demo != nil {
		p.demo.close(ctx)
	}
	return err
}

// httpAddrs returns the bound HTTP listener addresses.
func (p *process) httpAddrs() []net.Addr { return p.http.Addrs() }
