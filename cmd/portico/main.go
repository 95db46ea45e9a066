// Command portico is an L4/L7 load balancer, reverse proxy and API gateway.
//
//	portico [-config ./config.toml] [-check] [-version]
//
// SIGINT and SIGTERM stop accepting, let requests in flight finish within
// shutdown.drain_timeout and exit 0; a second one cuts the drain short.
// SIGHUP reloads routes and pools from the config file; a bad file is
// reported and the running config stays.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	keepSysmonAwake()
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr, sigs, nil))
}

// run is main without the process globals: it parses args, loads the config
// and serves until a stop signal. ready, if not nil, receives the running
// process once it serves (for tests).
func run(args []string, stdout, stderr io.Writer, sigs <-chan os.Signal, ready chan<- *process) int {
	fs := flag.NewFlagSet("portico", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "./config.toml", "path of the config file")
	check := fs.Bool("check", false, "validate the config, print every error and exit (1 on any error)")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "portico: unexpected argument %q (the config file is given with -config)\n", fs.Arg(0))
		fs.Usage()
		return 2
	}
	if *showVersion {
		fmt.Fprintf(stdout, "portico %s %s\n", buildVersion(), runtime.Version())
		return 0
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if *check {
		fmt.Fprintf(stdout, "%s: config ok\n", *path)
		return 0
	}
	log, level := newLogger(cfg.Log, stderr)
	p, err := start(cfg, log, level)
	if err != nil {
		log.Error("cannot start", "error", err)
		return 1
	}
	log.Info("portico started", "version", buildVersion(), "config", *path)
	if ready != nil {
		ready <- p
	}
	for sig := range sigs {
		if sig == syscall.SIGHUP {
			next, err := loadConfig(*path)
			if err == nil {
				err = p.reload(next)
			}
			if err != nil {
				log.Error("config reload failed; the running config stays", "config", *path, "error", err)
			} else {
				log.Info("config reloaded", "config", *path)
			}
			continue
		}
		break
	}
	log.Info("shutting down", "drain_timeout", p.cfg.Shutdown.DrainTimeout)
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.Shutdown.DrainTimeout)
	defer cancel()
	go func() {
		// A second SIGINT or SIGTERM cuts the drain short.
		for {
			select {
			case sig, ok := <-sigs:
				if !ok {
					return
				}
				if sig != syscall.SIGHUP {
					log.Warn("second stop signal; cutting the drain short", "signal", sig.String())
					cancel()
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	if err := p.stop(ctx); err != nil {
		log.Warn("drain cut short", "error", err)
	}
	log.Info("stopped")
	return 0
}

func buildVersion() string {
	if version != "dev" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return version
}
