// Command benchtool is the Go side of scripts/bench.sh: the benchmark
// harness, its backends and its load tools.
//
//	benchtool run [flags]          run the benchmark (see scripts/bench.sh)
//	benchtool upstream -addr A,B   serve the fasthttp backend on A, B, ...
//	benchtool sink -addr A         serve the bulk sink/source on A
//	benchtool openloop -addr A     a constant-rate run against A
//	benchtool bulk -addr A         a verified bulk run against A
//	benchtool report DIR           rewrite DIR's report.md and chart.svg from samples.jsonl
//	                               (and report.json, for the context)
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"syscall"
	"time"

	"portico/bench"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: benchtool run|upstream|sink|openloop|bulk|report [flags]")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "run":
		err = run(ctx, args)
	case "upstream":
		err = upstream(ctx, args)
	case "sink":
		err = sink(ctx, args)
	case "openloop":
		err = openloop(ctx, args)
	case "bulk":
		err = bulk(ctx, args)
	case "report":
		err = report(args)
	default:
		err = fmt.Errorf("unknown command %q", cmd)
	}
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "benchtool:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	var cfg bench.HarnessConfig
	fs.StringVar(&cfg.Root, "root", ".", "repository root")
	fs.StringVar(&cfg.Portico, "portico", "", "portico binary (required)")
	fs.StringVar(&cfg.Tool, "tool", os.Args[0], "this binary, for the backends")
	fs.StringVar(&cfg.OutDir, "out", "", "results directory (required)")
	fs.StringVar(&cfg.WorkDir, "work", "", "directory for logs and scratch files (default OUT/work)")
	fs.IntVar(&cfg.Seconds, "seconds", 10, "length of one measurement in seconds")
	fs.IntVar(&cfg.Reps, "reps", 3, "repetitions of each workload on each target")
	only := fs.String("only", "", "run only the workloads this regexp matches; workloads: "+strings.Join(bench.WorkloadNames(), " "))
	targets := fs.String("targets", "", "comma-separated targets (default direct,portico,haproxy,nginx)")
	fs.Float64Var(&cfg.Rate, "rate", 5000, "requests per second of l7-rate")
	bulkMiB := fs.Uint64("bulk-mib", 256, "MiB each way on each of l4-bulk's 8 connections")
	fs.IntVar(&cfg.IdleConns, "conns", 10000, "connections of conns-10k")
	fs.StringVar(&cfg.ProxyCPUs, "proxy-cpus", "", "taskset CPU list of the proxy under test")
	fs.StringVar(&cfg.OtherCPUs, "other-cpus", "", "taskset CPU list of everything else")
	perf := fs.String("perf", "", "comma-separated workloads to record portico's CPU profile (perf) during, in an extra run each")
	fs.StringVar(&cfg.Command, "command", "", "the command line to show in the report")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if cfg.Portico == "" || cfg.OutDir == "" {
		return errors.New("run: -portico and -out are required")
	}
	if *only != "" {
		re, err := regexp.Compile(*only)
		if err != nil {
			return fmt.Errorf("run: -only: %w", err)
		}
		cfg.Only = re
	}
	if *targets != "" {
		cfg.Targets = strings.Split(*targets, ",")
	}
	cfg.BulkBytes = *bulkMiB << 20
	if *perf != "" {
		cfg.Perf = strings.Split(*perf, ",")
	}
	h, err := bench.NewHarness(cfg)
	if err != nil {
		return err
	}
	return h.Run(ctx)
}

func listenAll(list string) ([]net.Listener, error) {
	var lns []net.Listener
	for _, a := range strings.Split(list, ",") {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return nil, fmt.Errorf("cannot listen: %w", err)
		}
		lns = append(lns, ln)
	}
	return lns, nil
}

func upstream(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("upstream", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:19001", "comma-separated addresses to serve")
	if err := fs.Parse(args); err != nil {
		return err
	}
	lns, err := listenAll(*addr)
	if err != nil {
		return err
	}
	return bench.NewUpstream().Serve(ctx, lns...)
}

func sink(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("sink", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:19101", "address to serve")
	if err := fs.Parse(args); err != nil {
		return err
	}
	lns, err := listenAll(*addr)
	if err != nil {
		return err
	}
	s := bench.NewSinkSource(slog.New(slog.NewTextHandler(os.Stderr, nil)))
	err = s.Serve(ctx, lns[0])
	fmt.Fprintf(os.Stderr, "sink: verified %d bytes, sent %d, %d connections failed\n", s.Verified.Load(), s.Sent.Load(), s.Failed.Load())
	return err
}

func openloop(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("openloop", flag.ContinueOnError)
	var cfg bench.OpenLoopConfig
	fs.StringVar(&cfg.Addr, "addr", "127.0.0.1:18080", "host:port")
	fs.StringVar(&cfg.Path, "path", "/small", "request path")
	fs.Float64Var(&cfg.Rate, "rate", 1000, "requests per second")
	fs.DurationVar(&cfg.Duration, "duration", 5*time.Second, "how long to send")
	if err := fs.Parse(args); err != nil {
		return err
	}
	r, err := bench.OpenLoop(ctx, cfg)
	fmt.Println(r)
	if r.FirstErr != nil {
		fmt.Println("first error:", r.FirstErr)
	}
	return err
}

func bulk(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bulk", flag.ContinueOnError)
	var cfg bench.BulkConfig
	fs.StringVar(&cfg.Addr, "addr", "127.0.0.1:19101", "host:port")
	fs.IntVar(&cfg.Conns, "conns", 8, "connections")
	mib := fs.Uint64("mib", 64, "MiB each way per connection")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg.Bytes = *mib << 20
	r := bench.Bulk(ctx, cfg)
	fmt.Printf("%.2f GiB verified in %s (%.2f GiB/s), %d failed connections\n",
		float64(r.Bytes)/(1<<30), r.Duration, float64(r.Bytes)/(1<<30)/r.Duration.Seconds(), r.Errors)
	return r.Err
}

func report(args []string) error {
	if len(args) != 1 {
		return errors.New("usage: benchtool report DIR")
	}
	dir := args[0]
	var r bench.Report
	if b, err := os.ReadFile(dir + "/report.json"); err == nil {
		if err := json.Unmarshal(b, &r); err != nil {
			return fmt.Errorf("cannot read %s/report.json: %w", dir, err)
		}
	} else {
		r.Command = "(rebuilt from " + dir + "/samples.jsonl)"
	}
	f, err := os.Open(dir + "/samples.jsonl")
	if err != nil {
		return err
	}
	defer f.Close()
	if r.Samples, err = bench.ReadSamples(f); err != nil {
		return err
	}
	for name, write := range map[string]func(*os.File, bench.Report) error{
		"report.md": func(f *os.File, r bench.Report) error { return bench.WriteMarkdown(f, r) },
		"chart.svg": func(f *os.File, r bench.Report) error { return bench.WriteSVG(f, r) },
	} {
		out, err := os.Create(dir + "/" + name)
		if err != nil {
			return err
		}
		if err := write(out, r); err != nil {
			out.Close()
			return err
		}
		if err := out.Close(); err != nil {
			return err
		}
	}
	return nil
}
