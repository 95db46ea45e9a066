package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// HarnessConfig is one benchmark run (scripts/bench.sh fills it from its
// flags).
type HarnessConfig struct {
	// Root is the repository root: the peers' configs are in
	// Root/scripts/peers.
	Root string
	// Portico and Tool are the paths of the portico binary and of this
	// package's command (which serves the backends).
	Portico, Tool string
	// OutDir receives samples.jsonl, report.md, chart.svg and, with Perf,
	// profile.txt.
	OutDir string
	// WorkDir receives the processes' logs and scratch files (NGINX's
	// prefix, the wrk script, perf data). Default OutDir/work.
	WorkDir string
	// Seconds is the length of one measurement; Reps the repetitions of
	// every workload on every target, interleaved.
	Seconds, Reps int
	// Only, when set, selects the workloads whose name it matches.
	Only *regexp.Regexp
	// Targets to run; default all: direct, portico, haproxy, nginx.
	Targets []string
	// Rate is the request rate of the open-loop workload. Default 5000.
	Rate float64
	// BulkBytes is the byte count each way on each of the 8 bulk
	// connections. Default 256 MiB.
	BulkBytes uint64
	// IdleConns is the connection count of conns-10k. Default 10000.
	IdleConns int
	// ProxyCPUs and OtherCPUs are taskset CPU lists: the proxy under test
	// runs on ProxyCPUs, the backends and load generators on OtherCPUs.
	// Empty: no pinning.
	ProxyCPUs, OtherCPUs string
	// Perf lists the workloads during an extra run of which portico's CPU
	// profile is recorded (perf record), to profile-WORKLOAD.txt. Empty:
	// none.
	Perf []string
	// Command is the command line, for the report.
	Command string
	// Log receives progress lines. Default os.Stderr.
	Log io.Writer
}

// Ports of the backends and of the proxies' listeners; they match the
// configs in scripts/peers.
const (
	upstreamAddr1 = "127.0.0.1:19001"
	upstreamAddr2 = "127.0.0.1:19002"
	upstreamAddr3 = "127.0.0.1:19003"
	redisPort     = "16379"
	redisAddr     = "127.0.0.1:" + redisPort
	sinkAddr      = "127.0.0.1:19101"
)

// endpoints are where a target serves each kind of workload.
type endpoints struct{ l7, l4http, l4redis, l4bulk string }

func proxyEndpoints(base int) endpoints {
	a := func(off int) string { return fmt.Sprintf("127.0.0.1:%d", base+off) }
	return endpoints{l7: a(0), l4http: a(1), l4redis: a(2), l4bulk: a(3)}
}

// target is one thing the workloads run against.
type target struct {
	name string
	ep   endpoints
	// start launches the proxy (nil for direct).
	start func() (*proc, error)
	p     *proc
	// noL4 says why the target cannot run L4 workloads ("": it can).
	noL4 string
	// noCache says why the target cannot run l7-cache ("": it can).
	noCache string
}

// pids returns the target's process tree (nil for direct).
func (t *target) pids() []int {
	if t.p == nil {
		return nil
	}
	tree, err := ProcTree(t.p.cmd.Process.Pid)
	if err != nil {
		return []int{t.p.cmd.Process.Pid}
	}
	return tree
}

// Harness runs the benchmark. Create it with NewHarness; Run it once.
type Harness struct {
	cfg      HarnessConfig
	targets  []*target
	backends []*proc
	samples  []Sample
	notes    []string
	versions []string
	out      *os.File // samples.jsonl
}

// NewHarness checks cfg and fills its defaults.
func NewHarness(cfg HarnessConfig) (*Harness, error) {
	if cfg.Seconds <= 0 || cfg.Reps <= 0 {
		return nil, fmt.Errorf("cannot run: seconds (%d) and reps (%d) must be positive", cfg.Seconds, cfg.Reps)
	}
	if cfg.Rate <= 0 {
		cfg.Rate = 5000
	}
	if cfg.BulkBytes == 0 {
		cfg.BulkBytes = 256 << 20
	}
	if cfg.IdleConns <= 0 {
		cfg.IdleConns = 10000
	}
	if len(cfg.Targets) == 0 {
		cfg.Targets = []string{TargetDirect, TargetPortico, TargetHAProxy, TargetNGINX}
	}
	if cfg.Log == nil {
		cfg.Log = os.Stderr
	}
	if cfg.WorkDir == "" {
		cfg.WorkDir = filepath.Join(cfg.OutDir, "work")
	}
	for _, d := range []string{cfg.OutDir, filepath.Join(cfg.WorkDir, "logs")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("cannot create %s: %w", d, err)
		}
	}
	return &Harness{cfg: cfg}, nil
}

func (h *Harness) logf(format string, args ...any) {
	fmt.Fprintf(h.cfg.Log, "bench: "+format+"\n", args...)
}

func (h *Harness) note(format string, args ...any) {
	n := fmt.Sprintf(format, args...)
	h.notes = append(h.notes, n)
	h.logf("%s", n)
}

// Close stops every process the harness started.
func (h *Harness) Close() {
	for _, t := range h.targets {
		t.p.stop()
		t.p = nil
	}
	for _, p := range h.backends {
		p.stop()
	}
	h.backends = nil
	if h.out != nil {
		h.out.Close()
	}
}

// setup starts the backends and the proxies.
func (h *Harness) setup() error {
	all := []string{upstreamAddr1, upstreamAddr2, upstreamAddr3, redisAddr, sinkAddr}
	for _, base := range []int{18080, 18180, 18280} {
		ep := proxyEndpoints(base)
		all = append(all, ep.l7, ep.l4http, ep.l4redis, ep.l4bulk)
	}
	if err := checkPortsFree(all); err != nil {
		return err
	}
	other := h.cfg.OtherCPUs
	up, err := h.startProc("upstream", other, nil, []string{upstreamAddr1, upstreamAddr2, upstreamAddr3},
		h.cfg.Tool, "upstream", "-addr", upstreamAddr1+","+upstreamAddr2+","+upstreamAddr3)
	if err != nil {
		return err
	}
	h.backends = append(h.backends, up)
	sink, err := h.startProc("sink", other, nil, []string{sinkAddr}, h.cfg.Tool, "sink", "-addr", sinkAddr)
	if err != nil {
		return err
	}
	h.backends = append(h.backends, sink)
	if h.wants(isRedis) {
		rd, err := h.startProc("redis", other, nil, []string{redisAddr}, "redis-server", "--port", redisPort,
			"--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--protected-mode", "no", "--maxclients", "10000")
		if err != nil {
			return err
		}
		h.backends = append(h.backends, rd)
	}

	peers := filepath.Join(h.cfg.Root, "scripts", "peers")
	for _, name := range h.cfg.Targets {
		t := &target{name: name}
		switch name {
		case TargetDirect:
			t.ep = endpoints{l7: upstreamAddr1, l4http: upstreamAddr1, l4redis: redisAddr, l4bulk: sinkAddr}
		case TargetPortico:
			t.ep = proxyEndpoints(18080)
			conf := filepath.Join(peers, "portico-cache.toml")
			if out, err := exec.Command(h.cfg.Portico, "-check", "-config", conf).CombinedOutput(); err != nil {
				t.noCache = "portico does not accept [http.cache] yet (" + firstLine(out) + ")"
				conf = filepath.Join(peers, "portico.toml")
			}
			t.start = func() (*proc, error) {
				return h.startProc("portico", h.cfg.ProxyCPUs, []string{"GOMAXPROCS=1"}, []string{t.ep.l7},
					h.cfg.Portico, "-config", conf)
			}
		case TargetHAProxy:
			t.ep = proxyEndpoints(18180)
			t.start = func() (*proc, error) {
				return h.startProc("haproxy", h.cfg.ProxyCPUs, nil, []string{t.ep.l7, t.ep.l4http, t.ep.l4redis, t.ep.l4bulk},
					"haproxy", "-db", "-f", filepath.Join(peers, "haproxy.cfg"))
			}
		case TargetNGINX:
			t.ep = proxyEndpoints(18280)
			prefix := filepath.Join(h.cfg.WorkDir, "nginx")
			if err := os.MkdirAll(prefix, 0o755); err != nil {
				return fmt.Errorf("cannot create %s: %w", prefix, err)
			}
			t.start = func() (*proc, error) {
				return h.startProc("nginx", h.cfg.ProxyCPUs, nil, []string{t.ep.l7, t.ep.l4http, t.ep.l4redis, t.ep.l4bulk},
					"nginx", "-p", prefix+"/", "-c", filepath.Join(peers, "nginx.conf"), "-e", "stderr", "-g", "daemon off;")
			}
		default:
			return fmt.Errorf("cannot run: unknown target %q", name)
		}
		if t.start != nil {
			p, err := t.start()
			if err != nil {
				return err
			}
			t.p = p
		}
		h.targets = append(h.targets, t)
	}
	// Portico's L4 listeners may not exist yet in this build: the L4
	// workloads then skip portico.
	for _, t := range h.targets {
		if t.name != TargetPortico {
			continue
		}
		for _, a := range []string{t.ep.l4http, t.ep.l4redis, t.ep.l4bulk} {
			if c, err := net.DialTimeout("tcp", a, time.Second); err != nil {
				t.noL4 = fmt.Sprintf("portico's TCP listener %s is not available (%v)", a, err)
				break
			} else {
				c.Close()
			}
		}
	}
	return nil
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return s
}

// restart stops and starts a target's proxy: a fresh process, for memory
// measurements.
func (h *Harness) restart(t *target) error {
	if t.start == nil {
		return nil
	}
	t.p.stop()
	t.p = nil
	p, err := t.start()
	if err != nil {
		return err
	}
	t.p = p
	return nil
}

// wants reports whether any selected workload satisfies f.
func (h *Harness) wants(f func(string) bool) bool {
	for _, w := range workloads {
		if h.selected(w.info.Name) && f(w.info.Name) {
			return true
		}
	}
	return false
}

func isRedis(name string) bool { return strings.HasPrefix(name, "l4-redis") }

func (h *Harness) selected(name string) bool {
	return h.cfg.Only == nil || h.cfg.Only.MatchString(name)
}

// Run starts everything, runs the selected workloads Reps times against
// every target, interleaved (each repetition rotates the target order, so
// that slow drifts of the machine hit every target alike), and writes the
// results. Every load is bounded in time.
func (h *Harness) Run(ctx context.Context) error {
	defer h.Close()
	var err error
	h.out, err = os.Create(filepath.Join(h.cfg.OutDir, "samples.jsonl"))
	if err != nil {
		return fmt.Errorf("cannot create samples file: %w", err)
	}
	h.versions = versions(h.cfg.Portico)
	if err := h.setup(); err != nil {
		return err
	}
	var sel []workload
	for _, w := range workloads {
		if h.selected(w.info.Name) {
			sel = append(sel, w)
		}
	}
	if len(sel) == 0 {
		return fmt.Errorf("cannot run: no workload matches %q", h.cfg.Only)
	}
	skipped := map[string]bool{}
	skip := func(w workload, t *target) string {
		switch {
		case w.needsL4 && t.noL4 != "":
			return t.noL4
		case w.needsCache && t.noCache != "":
			return t.noCache
		case w.noDirect && t.name == TargetDirect:
			return "-" // not a proxy measurement
		}
		return ""
	}
	for rep := 0; rep < h.cfg.Reps; rep++ {
		for _, w := range sel {
			n := len(h.targets)
			for i := range n {
				t := h.targets[(i+rep)%n]
				if why := skip(w, t); why != "" {
					if why != "-" && !skipped[w.info.Name+t.name] {
						skipped[w.info.Name+t.name] = true
						h.note("%s on %s skipped: %s", w.info.Name, t.name, why)
					}
					continue
				}
				if err := ctx.Err(); err != nil {
					return h.finish(err)
				}
				if t.p != nil && !t.p.alive() {
					h.logf("%s died (%v); restarting it", t.name, t.p.err)
					h.note("%s died during the run and was restarted", t.name)
					if err := h.restart(t); err != nil {
						return h.finish(err)
					}
				}
				if rep == 0 && w.warm {
					if _, err := w.run(ctx, h, t, 1); err != nil {
						h.logf("%s on %s: warm-up: %v", w.info.Name, t.name, err)
					}
				}
				s, err := h.measure(ctx, w, t, rep)
				if err != nil {
					h.note("%s on %s, rep %d: %v", w.info.Name, t.name, rep+1, err)
					continue
				}
				h.record(s)
			}
		}
	}
	if len(h.cfg.Perf) > 0 {
		rows := []string{"| workload | target | syscalls per unit | context switches per unit |", "|---|---|--:|--:|"}
		for _, name := range h.cfg.Perf {
			h.profile(ctx, name)
			rows = append(rows, h.syscalls(ctx, name)...)
		}
		if len(rows) > 2 {
			file := filepath.Join(h.cfg.OutDir, "syscalls.md")
			if err := os.WriteFile(file, []byte(strings.Join(rows, "\n")+"\n"), 0o644); err != nil {
				h.note("cannot write syscall counts: %v", err)
			} else {
				h.logf("syscall counts in %s", file)
			}
		}
	}
	return h.finish(nil)
}

// measure runs one workload once on one target and takes the proxy's CPU
// time around it.
func (h *Harness) measure(ctx context.Context, w workload, t *target, rep int) (Sample, error) {
	pids, p := t.pids(), t.p
	before := ProcCPU(pids)
	s, err := w.run(ctx, h, t, h.cfg.Seconds)
	if err != nil {
		return s, err
	}
	if len(pids) > 0 && t.p == p { // not restarted by the workload
		s.CPU = (ProcCPU(pids) - before).Seconds()
	}
	s.Workload, s.Target, s.Rep = w.info.Name, t.name, rep
	return s, nil
}

func (h *Harness) record(s Sample) {
	h.samples = append(h.samples, s)
	_ = WriteSamples(h.out, []Sample{s})
	line := fmt.Sprintf("rep %d %-10s %-8s", s.Rep+1, s.Workload, s.Target)
	if s.Unit == UnitConn {
		line += fmt.Sprintf(" %d conns, %s", int(s.Ops), fmtCost(s.Unit, s.RSSPerConn))
	} else {
		line += " " + fmtRate(s.Unit, s.Rate())
		if s.CPU > 0 {
			line += fmt.Sprintf(", %s, core %.0f%%", fmtCost(s.Unit, s.CPUPerOp()), 100*s.Core())
		}
		if s.P99 > 0 {
			line += fmt.Sprintf(", p50 %s, p99 %s", fmtMicros(s.P50), fmtMicros(s.P99))
		}
	}
	if s.Errors > 0 {
		line += fmt.Sprintf(", %d errors", s.Errors)
	}
	h.logf("%s", line)
}

// finish writes the report (report.md, and report.json for `benchtool
// report`) and chart, whatever happened before.
func (h *Harness) finish(runErr error) error {
	rep := h.Report()
	var errs []error
	if runErr != nil {
		errs = append(errs, runErr)
	}
	for name, write := range map[string]func(io.Writer, Report) error{"report.md": WriteMarkdown, "chart.svg": WriteSVG} {
		f, err := os.Create(filepath.Join(h.cfg.OutDir, name))
		if err != nil {
			errs = append(errs, fmt.Errorf("cannot create %s: %w", name, err))
			continue
		}
		if err := write(f, rep); err != nil {
			errs = append(errs, fmt.Errorf("cannot write %s: %w", name, err))
		}
		if err := f.Close(); err != nil {
			errs = append(errs, fmt.Errorf("cannot write %s: %w", name, err))
		}
	}
	if b, err := json.MarshalIndent(rep, "", "  "); err == nil {
		if err := os.WriteFile(filepath.Join(h.cfg.OutDir, "report.json"), b, 0o644); err != nil {
			errs = append(errs, fmt.Errorf("cannot write report.json: %w", err))
		}
	}
	h.logf("results in %s", h.cfg.OutDir)
	return errors.Join(errs...)
}

// Report returns the report of the samples so far.
func (h *Harness) Report() Report {
	var infos []WorkloadInfo
	for _, w := range workloads {
		if h.selected(w.info.Name) {
			infos = append(infos, w.info)
		}
	}
	return Report{
		Command:   h.cfg.Command,
		When:      time.Now(),
		Machine:   machine(),
		Pinning:   h.pinning(),
		Versions:  h.versions,
		Workloads: infos,
		Samples:   h.samples,
		Notes:     h.notes,
	}
}

func (h *Harness) pinning() string {
	if h.cfg.ProxyCPUs == "" {
		return "Pinning: none (a single CPU): the proxy shares its core with the load."
	}
	return fmt.Sprintf("Pinning: the proxy under test runs alone on CPU %s (taskset; portico with GOMAXPROCS=1, HAProxy with nbthread 1, NGINX with one worker); the backends, Redis, wrk, redis-benchmark and the Go load tools run on CPU %s.",
		h.cfg.ProxyCPUs, h.cfg.OtherCPUs)
}
